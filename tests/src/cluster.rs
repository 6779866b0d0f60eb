//! Helpers of the tests against a real Kubernetes API server: a client for it (or a loud
//! skip), the CRD, namespaces, waiting for conditions, and the operator binary as a process.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt};
use serde_json::json;
use uploadbucket_operator::crd::UploadBucket;

use crate::{Child, bin_path, unique_name};

/// A client for the test cluster, or `None` after a loud SKIPPED (a failure when servers
/// are required).
pub async fn cluster(test: &str) -> Option<(Client, String)> {
    let path = std::env::var("UPLOADBUCKET_TEST_KUBECONFIG")
        .ok()
        .filter(|p| !p.is_empty());
    let Some(path) = path else {
        return crate::require_or_skip(
            test,
            "no Kubernetes API server is configured (UPLOADBUCKET_TEST_KUBECONFIG unset)",
            "tests/run.sh starts one; or point it at any cluster's kubeconfig",
        );
    };
    Some((client_of(&path).await, path))
}

/// A client for the cluster of the kubeconfig at `path`.
pub async fn client_of(path: &str) -> Client {
    uploadbucket_operator::cli::install_crypto_provider();
    let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("client")
}

pub async fn ensure_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "uploadbuckets.uploadbucket.io",
        &PatchParams::apply("uploadbucket-tests").force(),
        &Patch::Apply(UploadBucket::crd()),
    )
    .await
    .expect("apply CRD");
    let established = kube::runtime::wait::await_condition(
        crds,
        "uploadbuckets.uploadbucket.io",
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(30), established)
        .await
        .expect("CRD established within 30 s")
        .unwrap();
}

pub async fn namespace(client: &Client, base: &str) -> String {
    let name = unique_name(base);
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .expect("create namespace");
    name
}

pub fn api_error(e: kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message,
        other => panic!("expected an API error, got {other}"),
    }
}

pub fn is_local(kubeconfig: &str) -> bool {
    std::fs::read_to_string(kubeconfig)
        .map(|k| {
            k.contains("server: https://127.0.0.1:") || k.contains("server: https://localhost:")
        })
        .unwrap_or(false)
}

pub fn webhook_certificate(dir: &std::path::Path) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.self_signed(&key).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    cert.pem()
}

pub async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    secs: u64,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the UploadBucket is Ready=True; returns it.
pub async fn wait_ready(ubs: &Api<UploadBucket>, name: &str) -> UploadBucket {
    wait_for(&format!("{name} Ready=True"), 90, || {
        let ubs = ubs.clone();
        async move {
            let ub = ubs.get(name).await.ok()?;
            (ub.condition("Ready")?.status == "True").then_some(ub)
        }
    })
    .await
}

/// Waits until `name` is Ready=False for `reason`; returns the object.
pub async fn wait_not_ready(ubs: &Api<UploadBucket>, name: &str, reason: &str) -> UploadBucket {
    wait_for(&format!("{name} Ready=False/{reason}"), 60, || {
        let ubs = ubs.clone();
        async move {
            let ub = ubs.get(name).await.ok()?;
            let ready = ub.condition("Ready")?;
            (ready.status == "False" && ready.reason == reason).then_some(ub)
        }
    })
    .await
}

/// Waits until the UploadBucket is gone (its finalizer has run).
pub async fn wait_gone(ubs: &Api<UploadBucket>, name: &str) {
    wait_for(&format!("{name} to be gone"), 60, || {
        let ubs = ubs.clone();
        async move { ubs.get_opt(name).await.ok()?.is_none().then_some(()) }
    })
    .await
}

/// [`cluster_and_s3`] and a new namespace named from `ns_base`: (client, kubeconfig, S3
/// server, namespace).
pub async fn cluster_s3_namespace(
    test: &str,
    ns_base: &str,
) -> Option<(Client, String, crate::S3Server, String)> {
    let (client, kubeconfig, server) = cluster_and_s3(test).await?;
    let ns = namespace(&client, ns_base).await;
    Some((client, kubeconfig, server, ns))
}

/// Deletes the UploadBucket `name` and waits for its finalizer to let go, within a minute.
pub async fn delete_and_wait(ubs: &Api<UploadBucket>, name: &str) {
    ubs.delete(name, &kube::api::DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    wait_gone(ubs, name).await;
}

/// Deletes the test's namespace `ns` (best effort: the API server may be going away).
pub async fn delete_namespace(client: &Client, ns: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(ns, &kube::api::DeleteParams::default())
        .await;
}

/// Waits up to `seconds` until the CORS of `bucket` (read with the plain client `raw`) allows
/// exactly `origin` in its first rule; `what` names the wait.
pub async fn wait_cors(
    raw: &aws_sdk_s3::Client,
    bucket: &str,
    origin: &str,
    what: &str,
    seconds: u64,
) {
    wait_for(what, seconds, || async {
        let cors = raw.get_bucket_cors().bucket(bucket).send().await.ok()?;
        (cors.cors_rules().first()?.allowed_origins() == [origin]).then_some(())
    })
    .await;
}

/// The API server (with the CRD installed) and the S3 server, for a test of the operator
/// against both; `None` (a skip, or a failure when servers are required) without either.
pub async fn cluster_and_s3(test: &str) -> Option<(Client, String, crate::S3Server)> {
    let (client, kubeconfig) = cluster(test).await?;
    let server = crate::s3_server(test)?;
    ensure_crd(&client).await;
    Some((client, kubeconfig, server))
}

/// How long [`Operator::settled`] waits for the operator's counters to hold still.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(60);

/// A running `uploadbucket-operator run`.
pub struct Operator {
    pub child: Child,
    /// `http://<ip:port>` of its admin server (`/metrics`, `/healthz`, `/readyz`).
    pub admin: String,
    /// `<ip:port>` of its webhook, when it serves one (`UPLOADBUCKET_WEBHOOK_CERT_DIR` given).
    pub webhook: Option<String>,
}

/// Starts `uploadbucket-operator run` against this cluster and RGW, watching `ns` (every
/// namespace with `""`), with the extra settings given. Its admin server (and webhook, when
/// `extra` gives it a certificate folder) bind port 0; the addresses come from its log.
pub fn start_operator(
    kubeconfig: &str,
    server: &crate::S3Server,
    ns: &str,
    extra: &[(&str, String)],
) -> Operator {
    let webhook = extra
        .iter()
        .any(|(k, _)| *k == "UPLOADBUCKET_WEBHOOK_CERT_DIR");
    let mut cmd = std::process::Command::new(bin_path("uploadbucket-operator"));
    cmd.arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KUBECONFIG", kubeconfig)
        .env("AWS_ACCESS_KEY_ID", &server.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &server.secret_key)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("UPLOADBUCKET_REGION", "us-east-1")
        .env("UPLOADBUCKET_S3_BACKEND", "rgw")
        .env("UPLOADBUCKET_S3_ENDPOINT", &server.endpoint)
        .env("UPLOADBUCKET_S3_PATH_STYLE", "true")
        // On the AWS backend the operator asks STS for its account (the buckets' owner).
        .env("AWS_ENDPOINT_URL_STS", &server.endpoint)
        .envs((!ns.is_empty()).then_some(("UPLOADBUCKET_WATCH_NAMESPACE", ns)))
        .env("UPLOADBUCKET_ADMIN_LISTEN", "127.0.0.1:0")
        .env("UPLOADBUCKET_WEBHOOK_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info,kube=warn,aws=warn")
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())));
    let mut wanted = vec!["Admin server listening"];
    if webhook {
        wanted.push("Webhook listening");
    }
    let (child, addrs) = crate::spawn_service(cmd, "operator", &wanted);
    Operator {
        child,
        admin: format!("http://{}", addrs[0]),
        webhook: addrs.get(1).cloned(),
    }
}

impl Operator {
    /// Waits up to `limit` for the process to exit, by a blocking wait (not a poll), so the
    /// moment returned is when it exited, to within a scheduler tick. Past `limit` it is
    /// killed and the test fails with `what`.
    pub async fn exit_within(
        self,
        limit: Duration,
        what: &str,
    ) -> (std::process::ExitStatus, std::time::SystemTime) {
        let pid = self.child.0.id();
        let mut waiting = tokio::task::spawn_blocking(move || {
            let mut me = self;
            let status = me.child.0.wait().expect("wait for the operator");
            (status, std::time::SystemTime::now())
        });
        match tokio::time::timeout(limit, &mut waiting).await {
            Ok(exited) => exited.expect("the waiting thread"),
            Err(_) => {
                // Ends the blocked wait, which would otherwise hold the runtime's shutdown.
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                let _ = waiting.await;
                panic!("{what}: still running {limit:?} later (killed now)");
            }
        }
    }

    /// The value of the sample `name` (with its labels, e.g.
    /// `uploadbucket_reconcile_failures_total{reason="AccessDenied"}`) on `/metrics`; 0 if absent.
    pub async fn metric(&self, name: &str) -> u64 {
        let value = self.sample(name).await;
        assert!(value.fract() == 0.0, "{name} is not a count: {value}");
        value as u64
    }

    /// The value of the sample `name` (a histogram's `_sum`, say) on `/metrics`; 0 if absent.
    pub async fn sample(&self, name: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map(|v| v.trim().parse().expect("a number"))
            .unwrap_or(0.0)
    }

    /// The value of the sample `name` once it reaches `at_least`, or its last value after 10 s.
    /// For a counter moved after what the test waited on: a failed pass writes its status
    /// before the controller counts the failure.
    pub async fn metric_reaching(&self, name: &str, at_least: u64) -> u64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let value = self.metric(name).await;
            if value >= at_least || tokio::time::Instant::now() >= deadline {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its whole `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.admin))
            .await
            .expect("the operator's /metrics")
            .text()
            .await
            .unwrap()
    }

    /// Its reconciles and AWS writes so far, read once both have held still for 3 s (the
    /// passes under way have finished). Fails the test if they are still moving after
    /// [`SETTLE_DEADLINE`]: an operator that never settles (a pass requeueing itself, a
    /// write that never reads back as written) is a finding, not something to wait out.
    pub async fn settled(&self) -> (u64, u64) {
        let counts = || async {
            (
                self.metric("uploadbucket_reconciles_total").await,
                self.aws_requests(Some("write")).await,
            )
        };
        let started = tokio::time::Instant::now();
        let first = counts().await;
        let mut last = first;
        loop {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let now = counts().await;
            if now == last {
                return now;
            }
            assert!(
                started.elapsed() < SETTLE_DEADLINE,
                "the operator did not settle within {SETTLE_DEADLINE:?}: (reconciles, AWS writes) \
                 went from {first:?} to {now:?} and were still moving (last 3 s: from {last:?})"
            );
            last = now;
        }
    }

    /// The AWS requests it has sent (S3, IAM and SNS; retries included) of `kind` (`read`
    /// or `write`), or of both kinds with `None`.
    pub async fn aws_requests(&self, kind: Option<&str>) -> u64 {
        let mut total = 0;
        for service in ["s3", "iam", "sns", "eks"] {
            for k in ["read", "write"] {
                if kind.is_none_or(|kind| kind == k) {
                    total += self
                        .metric(&format!(
                            "uploadbucket_aws_requests_total{{service=\"{service}\",kind=\"{k}\"}}"
                        ))
                        .await;
                }
            }
        }
        total
    }
}

/// Creates the UploadBucket `name` with `spec` in the namespace of `ubs`.
pub async fn create_upload_bucket(
    ubs: &Api<UploadBucket>,
    name: &str,
    spec: serde_json::Value,
) -> UploadBucket {
    create_labeled_upload_bucket(ubs, name, json!({}), spec).await
}

/// [`create_upload_bucket`] with `labels` (e.g. the one an operator's
/// `UPLOADBUCKET_WATCH_SELECTOR` selects).
pub async fn create_labeled_upload_bucket(
    ubs: &Api<UploadBucket>,
    name: &str,
    labels: serde_json::Value,
    spec: serde_json::Value,
) -> UploadBucket {
    let ub: UploadBucket = serde_json::from_value(json!({
        "apiVersion": "uploadbucket.io/v1alpha1", "kind": "UploadBucket",
        "metadata": {"name": name, "labels": labels}, "spec": spec
    }))
    .expect("an UploadBucket");
    ubs.create(&PostParams::default(), &ub)
        .await
        .expect("create the UploadBucket")
}

pub fn pod(name: &str, annotations: serde_json::Value, service_account: Option<&str>) -> Pod {
    let mut spec = json!({"containers": [{"name": "app", "image": "shop/web:1.4"}]});
    if let Some(sa) = service_account {
        spec["serviceAccountName"] = json!(sa);
    }
    serde_json::from_value(
        json!({"metadata": {"name": name, "annotations": annotations}, "spec": spec}),
    )
    .unwrap()
}
