//! The operator while the Kubernetes API server restarts under it (tests/scripts/kube.sh
//! restart-apiserver: the same etcd, port and certificates). Alone in its test binary, since
//! cargo runs test binaries one after another: the restart cuts every client of the shared
//! API server, and no other test may be using it meanwhile.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use uploadbucket_tests::fleet::{Fleet, wait_all_ready, wait_cors_max_age};

/// `name -> resourceVersion` of the objects `api` lists.
async fn versions<K>(api: &Api<K>) -> BTreeMap<String, String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| {
            let m = o.meta();
            (m.name.clone().unwrap(), m.resource_version.clone().unwrap())
        })
        .collect()
}

/// 20 Ready UploadBuckets; one is edited right before the API server stops, it stays down 5 s,
/// and another is edited once it is back. The operator's watches resume (both edits reach
/// the bucket: no reconcile lost), the two edits make exactly two AWS writes (one CORS write
/// each: nothing repeated for the untouched 18), and it writes no UploadBucket status or
/// ConfigMap of the untouched objects (their resourceVersions are unchanged).
#[tokio::test]
async fn an_api_server_restart_loses_no_reconcile_and_repeats_no_write() {
    let test = "apiserver_restart::an_api_server_restart_loses_no_reconcile_and_repeats_no_write";
    let Some(f) = Fleet::new(test, "ub-restart").await else {
        return;
    };
    let ubs = f.ubs();
    let config_maps: Api<ConfigMap> = Api::namespaced(f.client.clone(), &f.ns);
    let operator = f.operator();
    const N: usize = 20;
    f.create(N).await;
    wait_all_ready(&ubs, 120).await;
    let (passes0, writes0) = operator.settled().await;
    let (objects0, maps0) = (versions(&ubs).await, versions(&config_maps).await);
    assert_eq!(
        maps0.len(),
        N,
        "one outputs ConfigMap per object: {maps0:?}"
    );

    let edit = |name: &'static str, max_age: i32| {
        let ubs = ubs.clone();
        async move {
            ubs.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"cors": {"maxAgeSeconds": max_age}}})),
            )
            .await
            .unwrap();
        }
    };
    edit("b01", 101).await;
    let restart = std::time::Instant::now();
    let kubeconfig = std::path::Path::new(&f.kubeconfig);
    let out =
        std::process::Command::new(uploadbucket_tests::manifest_dir().join("scripts/kube.sh"))
            .args([
                "restart-apiserver",
                kubeconfig.parent().unwrap().to_str().unwrap(),
                "5",
            ])
            .output()
            .expect("run kube.sh");
    assert!(
        out.status.success(),
        "kube.sh restart-apiserver: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("API server restarted in {:?}", restart.elapsed());
    edit("b00", 100).await;

    for (name, max_age) in [("b00", 100), ("b01", 101)] {
        wait_cors_max_age(&f, name, max_age, 90).await;
    }
    eprintln!(
        "both edits in RGW {:?} after the restart began",
        restart.elapsed()
    );
    wait_all_ready(&ubs, 60).await;
    let (passes1, writes1) = operator.settled().await;
    eprintln!(
        "across the restart: {} reconciles, {} AWS writes",
        passes1 - passes0,
        writes1 - writes0
    );
    assert_eq!(writes1 - writes0, 2, "AWS writes for two CORS edits");
    for name in ["b00", "b01"] {
        let ub = ubs.get(name).await.unwrap();
        assert_eq!(
            ub.status.unwrap().observed_generation,
            ub.metadata.generation,
            "{name}"
        );
    }
    let (objects1, maps1) = (versions(&ubs).await, versions(&config_maps).await);
    let untouched = |m: &BTreeMap<String, String>| {
        m.iter()
            .filter(|(k, _)| !["b00", "b01"].contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        untouched(&objects1),
        untouched(&objects0),
        "status written again"
    );
    assert_eq!(maps1, maps0, "an outputs ConfigMap written again");
    f.assert_owned_once(N).await;
    f.cleanup(operator).await;
}
