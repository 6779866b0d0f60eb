//! Many UploadBuckets under one operator binary, on the real API server and Ceph RGW: a
//! namespace, IRSA provider and bucket-name prefix of a test's own, and the checks the fault
//! tests make of what RGW holds.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use serde_json::json;
use uploadbucket_operator::crd::UploadBucket;

use crate::cluster::{
    Operator, cluster_and_s3, create_labeled_upload_bucket, create_upload_bucket, namespace,
    start_operator, wait_for, wait_ready,
};
use crate::store_proxy::{Misbehaviour, StoreProxy};
use crate::{CuttableProxy, S3Server, rgw_admin_output, unique_name};

/// Waits until the UploadBuckets of `ubs` are all gone (their finalizers have run).
pub async fn wait_all_deleted(ubs: &Api<UploadBucket>) {
    wait_for("every UploadBucket deleted", 120, || {
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
}

/// The UploadBuckets of `ubs` that are not Ready, with their Ready condition.
pub async fn not_ready(ubs: &Api<UploadBucket>) -> Vec<String> {
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
    waiting
}

/// Waits until every UploadBucket of `ubs` is Ready.
pub async fn wait_all_ready(ubs: &Api<UploadBucket>, secs: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let waiting = not_ready(ubs).await;
        if waiting.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not Ready after {secs} s: {waiting:#?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits (up to `secs`) until the CORS rule of the UploadBucket `name` (in `fleet`'s
/// namespace) caches preflights for `max_age` seconds in RGW: its edit has been applied.
pub async fn wait_cors_max_age(fleet: &Fleet, name: &str, max_age: i32, secs: u64) {
    let raw = fleet
        .server
        .raw_client(&fleet.server.access_key, &fleet.server.secret_key)
        .await;
    let ub = fleet.ubs().get(name).await.unwrap();
    let bucket = ub
        .status
        .and_then(|s| s.bucket_name)
        .expect("a bucket in status");
    wait_for(
        &format!("maxAgeSeconds {max_age} in {name}'s bucket CORS"),
        secs,
        || {
            let (raw, bucket) = (raw.clone(), bucket.clone());
            async move {
                let cors = raw.get_bucket_cors().bucket(&bucket).send().await.ok()?;
                (cors.cors_rules().first()?.max_age_seconds() == Some(max_age)).then_some(())
            }
        },
    )
    .await;
}

/// The buckets in RGW whose names start with `prefix`.
pub async fn buckets_named(server: &S3Server, prefix: &str) -> Vec<String> {
    let raw = server.admin_client().await;
    let listed = raw.list_buckets().send().await.unwrap();
    listed
        .buckets()
        .iter()
        .filter_map(|b| b.name())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// The names of every IAM role in RGW. With no role left at all, `radosgw-admin role list`
/// fails (its index object `role_paths.` is gone: ENOENT) rather than listing none. It also
/// fails when a role is deleted between its listing of the ids and its read of each (another
/// test's operator deleting its roles meanwhile): that is tried again.
pub fn rgw_roles(conf: &str) -> Vec<String> {
    let mut attempts = 0;
    let out = loop {
        let out = rgw_admin_output(conf, &["role", "list"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            break out;
        }
        if stderr.contains("role_paths.: (2) No such file or directory") {
            return Vec::new();
        }
        attempts += 1;
        assert!(
            attempts < 20 && stderr.contains("failed reading role info"),
            "radosgw-admin role list (attempt {attempts}): {stderr}"
        );
        eprintln!("radosgw-admin role list: a role went away while it listed; listing again");
        std::thread::sleep(Duration::from_millis(100));
    };
    let roles: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    roles
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["RoleName"].as_str().map(str::to_owned))
        .collect()
}

/// RGW holds exactly `n` buckets named with `prefix` and `n` roles of namespace `ns`, and
/// they are the objects' own: each bucket tagged with the uid of exactly one UploadBucket and
/// recorded in its status, each role the one its status names. Nothing leaked (made for no
/// object or twice), nothing orphaned (an object without its bucket or role).
pub async fn assert_each_owns_one_bucket_and_role(
    ubs: &Api<UploadBucket>,
    server: &S3Server,
    conf: &str,
    prefix: &str,
    ns: &str,
    n: usize,
) {
    let objects = ubs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(objects.len(), n, "UploadBuckets");
    let buckets = buckets_named(server, prefix).await;
    assert_eq!(buckets.len(), n, "buckets named {prefix}*: {buckets:?}");
    let raw = server.admin_client().await;
    let mut tagged = BTreeSet::new();
    for b in &buckets {
        let tags = raw.get_bucket_tagging().bucket(b).send().await.unwrap();
        let uid = tags
            .tag_set()
            .iter()
            .find(|t| t.key() == "uploadbucket.io/uid")
            .map(|t| t.value().to_owned())
            .unwrap_or_else(|| panic!("{b} has no uid tag"));
        assert!(tagged.insert(uid.clone()), "two buckets carry uid {uid}");
    }
    let uids: BTreeSet<String> = objects
        .iter()
        .map(|u| u.metadata.uid.clone().unwrap())
        .collect();
    assert_eq!(tagged, uids, "each bucket belongs to exactly one object");
    let status = |u: &UploadBucket| u.status.clone().unwrap_or_default();
    let recorded: BTreeSet<String> = objects
        .iter()
        .filter_map(|u| status(u).bucket_name)
        .collect();
    assert_eq!(recorded, buckets.iter().cloned().collect());
    let existing: BTreeSet<String> = rgw_roles(conf)
        .into_iter()
        .filter(|n| n.starts_with(&format!("ub-{ns}-")))
        .collect();
    let wanted: BTreeSet<String> = objects.iter().filter_map(|u| status(u).role_name).collect();
    assert_eq!(wanted.len(), n, "every object names its role");
    assert_eq!(
        existing, wanted,
        "one role per object, no other role of {ns}"
    );
}

/// A namespace, an IRSA provider and a bucket name prefix of a test's own, and the operator
/// started for them (again after a kill) with the settings given.
pub struct Fleet {
    pub client: kube::Client,
    pub kubeconfig: String,
    pub server: S3Server,
    pub conf: String,
    pub ns: String,
    pub prefix: String,
    pub settings: Vec<(&'static str, String)>,
}

impl Fleet {
    pub async fn new(test: &str, base: &str) -> Option<Fleet> {
        let (client, kubeconfig, server) = cluster_and_s3(test).await?;
        let conf = crate::rgw_conf(test)?;
        let ns = namespace(&client, base).await;
        let provider_arn = server
            .register_oidc_provider(
                &format!("https://{ns}.issuer.test"),
                "0123456789abcdef0123456789abcdef01234567",
            )
            .await;
        let prefix = format!("{}-", unique_name(base));
        let settings = vec![
            ("UPLOADBUCKET_IAM_ENDPOINT", server.endpoint.clone()),
            ("UPLOADBUCKET_OIDC_PROVIDER_ARN", provider_arn),
            ("UPLOADBUCKET_BUCKET_NAME_PREFIX", prefix.clone()),
        ];
        Some(Fleet {
            client,
            kubeconfig,
            server,
            conf,
            ns,
            prefix,
            settings,
        })
    }

    /// Sets the operator's environment variable `key` (for the next start).
    pub fn set(&mut self, key: &'static str, value: &str) {
        self.settings.retain(|(k, _)| *k != key);
        self.settings.push((key, value.to_owned()));
    }

    /// The operator's S3 and IAM calls go to `endpoint` (a proxy in front of the store).
    pub fn store_via(&mut self, endpoint: &str) {
        self.set("UPLOADBUCKET_S3_ENDPOINT", endpoint);
        self.set("UPLOADBUCKET_IAM_ENDPOINT", endpoint);
    }

    /// The operator's S3 and IAM calls go through a proxy the test can cut or slow.
    pub async fn behind_cuttable_proxy(&mut self) -> CuttableProxy {
        let proxy = CuttableProxy::start(
            self.server
                .endpoint
                .trim_start_matches("http://")
                .to_owned(),
        )
        .await;
        self.store_via(&format!("http://127.0.0.1:{}", proxy.port));
        proxy
    }

    pub fn ubs(&self) -> Api<UploadBucket> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn operator(&self) -> Operator {
        start_operator(&self.kubeconfig, &self.server, &self.ns, &self.settings)
    }

    pub async fn create(&self, n: usize) {
        for i in 0..n {
            create_upload_bucket(
                &self.ubs(),
                &format!("b{i:02}"),
                json!({"cors": {"allowedOrigins": ["https://shop.example.com"]}, "deletionPolicy": "Delete"}),
            )
            .await;
        }
    }

    pub async fn assert_owned_once(&self, n: usize) {
        let ubs = self.ubs();
        assert_each_owns_one_bucket_and_role(
            &ubs,
            &self.server,
            &self.conf,
            &self.prefix,
            &self.ns,
            n,
        )
        .await;
    }

    /// Deletes the test's UploadBuckets through the running `operator`, then the namespace.
    pub async fn cleanup(self, operator: Operator) {
        let ubs = self.ubs();
        ubs.delete_collection(&DeleteParams::default(), &ListParams::default())
            .await
            .unwrap();
        wait_all_deleted(&ubs).await;
        drop(operator);
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.ns, &DeleteParams::default())
            .await;
    }
}

/// What [`fairness`] saw.
pub struct Fairness {
    /// How long each of B's objects took from creation to Ready.
    pub waits: Vec<Duration>,
    /// A's requests per second at the store while it kept failing.
    pub a_rate: f64,
}

/// Namespace A holds failing objects, `failing` of each kind: `hang` (every call hangs at the
/// store), `deny` (every call refused with AccessDenied), `taken` (the bucket belongs to
/// another account); then namespace B creates `tries` objects one after the other, each
/// timed until Ready. The operator watches both namespaces (only this run's objects: a label
/// selector), with `settings` on top of the fleet's.
pub async fn fairness(
    test: &str,
    base: &str,
    failing: &[(&str, usize)],
    tries: usize,
    settings: &[(&'static str, &str)],
) -> Option<Fairness> {
    let mut f = Fleet::new(test, base).await?;
    let proxy = StoreProxy::start(
        &f.server.endpoint,
        Misbehaviour {
            hold_marker: Some("-hang-".into()),
            hold: Duration::from_secs(600),
            deny_marker: Some("-deny-".into()),
            taken_marker: Some("-taken-".into()),
            ..Default::default()
        },
    )
    .await;
    f.store_via(&proxy.endpoint);
    for (k, v) in settings {
        f.set(k, v);
    }
    let b_ns = namespace(&f.client, &format!("{base}-b")).await;
    // Every namespace (A's and B's), but only this run's objects: other tests' leftovers on
    // a shared API server are not this operator's to reconcile.
    let run = unique_name("run");
    f.set(
        "UPLOADBUCKET_WATCH_SELECTOR",
        &format!("test.uploadbucket.io/run={run}"),
    );
    let label = json!({"test.uploadbucket.io/run": run});
    let operator = start_operator(&f.kubeconfig, &f.server, "", &f.settings);
    let a = f.ubs();
    let b: Api<UploadBucket> = Api::namespaced(f.client.clone(), &b_ns);
    let mut a_count = 0;
    for (kind, n) in failing {
        for i in 0..*n {
            create_labeled_upload_bucket(
                &a,
                &format!("{kind}-{i:03}"),
                label.clone(),
                json!({"serviceAccountNames": ["web"]}),
            )
            .await;
        }
        a_count += n;
    }
    wait_for("A's objects failing at the store", 60, || async {
        (proxy.held() + proxy.refused() >= 3).then_some(())
    })
    .await;

    let mut waits = Vec::new();
    for i in 0..tries {
        let started = Instant::now();
        create_labeled_upload_bucket(
            &b,
            &format!("quick-{i:02}"),
            label.clone(),
            json!({"serviceAccountNames": ["web"]}),
        )
        .await;
        wait_ready(&b, &format!("quick-{i:02}")).await;
        waits.push(started.elapsed());
    }

    // A's request rate while it keeps failing.
    let seen = || proxy.held() + proxy.refused();
    let before = seen();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let a_rate = (seen() - before) as f64 / 30.0;
    let not_ready_a = a
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|u| u.condition("Ready").is_none_or(|c| c.status != "True"))
        .count();
    assert_eq!(not_ready_a, a_count, "A's objects cannot be Ready");

    // Let A's calls through again so cleanup can delete what exists.
    proxy.calm();
    b.delete_collection(&Default::default(), &Default::default())
        .await
        .unwrap();
    wait_all_deleted(&b).await;
    let _ = Api::<Namespace>::all(f.client.clone())
        .delete(&b_ns, &Default::default())
        .await;
    f.cleanup(operator).await;
    Some(Fairness { waits, a_rate })
}
