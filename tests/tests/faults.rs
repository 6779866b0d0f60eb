//! The operator binary under faults, against the real API server and Ceph RGW (S3 and IAM),
//! with RGW behind a proxy the test takes down: what happens to objects reconciling when the
//! store goes away, how hard the operator knocks meanwhile, and that nothing is made twice.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use serde_json::json;
use uploadbucket_operator::crd::UploadBucket;
use uploadbucket_tests::cluster::{
    Operator, cluster_and_s3, create_upload_bucket, namespace, start_operator, wait_for,
};
use uploadbucket_tests::{CuttableProxy, rgw_admin, unique_name};

/// Every AWS request the operator has sent (all services, reads and writes).
async fn requests(operator: &Operator) -> u64 {
    let mut total = 0;
    for service in ["s3", "iam", "sns"] {
        for kind in ["read", "write"] {
            total += operator
                .metric(&format!(
                    "uploadbucket_aws_requests_total{{service=\"{service}\",kind=\"{kind}\"}}"
                ))
                .await;
        }
    }
    total
}

/// 50 UploadBuckets are created and RGW goes away while they reconcile, for 30 s. The
/// operator backs off (each object's retries double from 1 s; the SDK's own retries come on
/// top) instead of hammering, the failures are counted by reason, and once RGW is back every
/// object becomes Ready with exactly one bucket (carrying its uid) and one role.
#[tokio::test]
async fn an_rgw_outage_while_50_objects_reconcile_ends_with_each_ready_once() {
    let test = "faults::an_rgw_outage_while_50_objects_reconcile_ends_with_each_ready_once";
    let Some((client, kubeconfig, server)) = cluster_and_s3(test).await else {
        return;
    };
    let Some(conf) = uploadbucket_tests::rgw_conf(test) else {
        return;
    };
    let ns = namespace(&client, "ub-outage").await;
    let proxy =
        CuttableProxy::start(server.endpoint.trim_start_matches("http://").to_owned()).await;
    let via = format!("http://127.0.0.1:{}", proxy.port);
    let provider_arn = server
        .register_oidc_provider(
            &format!("https://{ns}.issuer.test"),
            "0123456789abcdef0123456789abcdef01234567",
        )
        .await;
    let prefix = format!("{}-", unique_name("out"));
    let operator = start_operator(
        &kubeconfig,
        &server,
        &ns,
        &[
            ("UPLOADBUCKET_S3_ENDPOINT", via.clone()),
            ("UPLOADBUCKET_IAM_ENDPOINT", via.clone()),
            ("UPLOADBUCKET_OIDC_PROVIDER_ARN", provider_arn),
            ("UPLOADBUCKET_BUCKET_NAME_PREFIX", prefix.clone()),
        ],
    );
    let ubs: Api<UploadBucket> = Api::namespaced(client.clone(), &ns);
    const N: usize = 50;
    for i in 0..N {
        create_upload_bucket(
            &ubs,
            &format!("b{i:02}"),
            json!({"cors": {"allowedOrigins": ["https://shop.example.com"]}, "deletionPolicy": "Delete"}),
        )
        .await;
    }
    // Some are mid-way when RGW goes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.down(true);
    let reconciles = || operator.metric("uploadbucket_reconciles_total");
    let (sent, passes) = (requests(&operator).await, reconciles().await);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (sent, passes) = (
        requests(&operator).await - sent,
        reconciles().await - passes,
    );
    proxy.down(false);
    let metrics = reqwest::get(format!("{}/metrics", operator.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("uploadbucket_reconcile_failures_total{"))
        .collect();
    eprintln!("during the 30 s outage: {passes} reconciles, {sent} requests; {failures:?}");
    // Backoff from 1 s doubling: at most 6 passes per object in 30 s (1+2+4+8+16 s apart;
    // events in between, such as its own status write, wait for it); a pass stops at its
    // first failed call, which the SDK tries at most 3 times.
    assert!(
        passes <= (N * 6) as u64,
        "{passes} reconciles in 30 s for {N} objects"
    );
    assert!(
        sent <= passes * 3,
        "{sent} requests for {passes} reconciles"
    );
    assert!(
        failures.iter().any(|l| !l.ends_with(" 0")),
        "the outage shows in the failure metrics: {failures:?}"
    );

    // Back: every object Ready (transient backoff is capped at 60 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let list = ubs.list(&ListParams::default()).await.unwrap();
        let waiting: Vec<String> = list
            .items
            .iter()
            .filter_map(|u| {
                let ready = u.condition("Ready");
                ready.is_none_or(|c| c.status != "True").then(|| {
                    format!(
                        "{}: {:?}",
                        u.metadata.name.as_deref().unwrap_or_default(),
                        ready.map(|c| (&c.reason, &c.message))
                    )
                })
            })
            .collect();
        if waiting.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not Ready 120 s after the outage: {waiting:#?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let objects = ubs.list(&ListParams::default()).await.unwrap().items;
    let uids: BTreeSet<String> = objects
        .iter()
        .map(|u| u.metadata.uid.clone().unwrap())
        .collect();

    // Exactly one bucket per object, tagged with its uid; one role per object.
    let raw = server
        .raw_client(&server.access_key, &server.secret_key)
        .await;
    let listed = raw.list_buckets().send().await.unwrap();
    let buckets: Vec<String> = listed
        .buckets()
        .iter()
        .filter_map(|b| b.name())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    assert_eq!(buckets.len(), N, "{buckets:?}");
    let mut tagged = BTreeSet::new();
    for b in &buckets {
        let tags = raw.get_bucket_tagging().bucket(b).send().await.unwrap();
        let uid = tags
            .tag_set()
            .iter()
            .find(|t| t.key() == "uploadbucket.io/uid")
            .map(|t| t.value().to_owned())
            .unwrap_or_else(|| panic!("{b} has no uid tag"));
        tagged.insert(uid);
    }
    assert_eq!(tagged, uids, "each bucket belongs to exactly one object");
    let recorded: BTreeSet<String> = objects
        .iter()
        .map(|u| u.status.as_ref().unwrap().bucket_name.clone().unwrap())
        .collect();
    assert_eq!(recorded, buckets.iter().cloned().collect());
    let roles: serde_json::Value =
        serde_json::from_str(&rgw_admin(&conf, &["role", "list"])).unwrap();
    let wanted: BTreeSet<String> = objects
        .iter()
        .map(|u| u.status.as_ref().unwrap().role_name.clone().unwrap())
        .collect();
    let existing: Vec<String> = roles
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["RoleName"].as_str())
        .filter(|n| wanted.contains(*n))
        .map(str::to_owned)
        .collect();
    assert_eq!(existing.len(), N, "one role per object: {existing:?}");

    ubs.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    wait_for("all 50 deleted", 120, || {
        let ubs = ubs.clone();
        async move {
            ubs.list(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        }
    })
    .await;
    drop(operator);
    let _ = Api::<Namespace>::all(client.clone())
        .delete(&ns, &DeleteParams::default())
        .await;
}
