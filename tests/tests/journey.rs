//! The whole journey on a real node, driven the way a user drives it: `helm install` the
//! chart with the images built here (tests/scripts/images.sh), `kubectl apply` an
//! UploadBucket and an app annotated for injection, then headless Chromium opens the app's
//! page through its Service and uploads straight to Ceph RGW by PUT, POST form and
//! multipart. The operator and the signer run as pods on the node tests/scripts/node.sh
//! starts (kubelet + containerd + kube-proxy); the signer's credentials come from RGW's STS
//! with the token the kubelet projected; the cluster's service-account issuer is registered
//! in RGW as the OIDC provider, as on EKS.
//!
//! Names: RGW is reached as `rgw.storage.test` (pods: hostAliases; Chromium: a resolver
//! rule), which also proves that hostname lookups work in the minimal images. The app is
//! `http://shop.test` (a Service with a fixed ClusterIP); `http://other.test` is the same
//! app on an origin the bucket's CORS rules do not list.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{Value, json};
use uploadbucket_tests::browser::{chromium, repo, run_page_with};
use uploadbucket_tests::{helm, require_or_skip, s3_server};

const RELEASE: &str = "uploadbucket-operator";
/// The operator's leader Lease (in [`SYSTEM`]; the operator's default name).
const LEASE: &str = "uploadbucket-operator";
const SYSTEM: &str = "uploadbucket-system";
const APP_NS: &str = "shop";
/// What Pod Security "restricted" asks of every container (with the pod's `runAsNonRoot` and
/// `seccompProfile`): the app's namespace and the operator's enforce that level, so the API
/// server itself refuses either pod, the injected signer included, if it ever drifts.
const RESTRICTED_CONTAINER: &str = "{allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}";
const RGW_HOST: &str = "rgw.storage.test";
// From the low band of the Service range, which Kubernetes keeps for addresses chosen by
// hand (random allocation takes it last).
const APP_IP: &str = "10.96.0.12";
const OTHER_IP: &str = "10.96.0.13";
const APP_IMAGE: &str = "docker.io/uploadbucket/example-web:test";
const MIB: i64 = 1024 * 1024;

/// The cluster node.sh started (its env file, sourced by tests/run.sh).
struct Node {
    kubeconfig: String,
    ip: String,
    issuer: String,
    thumbprint: String,
}

impl Node {
    fn from_env(test: &str) -> Option<Node> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (
            var("UPLOADBUCKET_NODE_KUBECONFIG"),
            var("UPLOADBUCKET_NODE_IP"),
            var("UPLOADBUCKET_NODE_ISSUER"),
            var("UPLOADBUCKET_NODE_ISSUER_THUMBPRINT"),
        ) {
            (Some(kubeconfig), Some(ip), Some(issuer), Some(thumbprint)) => Some(Node {
                kubeconfig,
                ip,
                issuer,
                thumbprint,
            }),
            _ => require_or_skip(
                test,
                "no cluster with a node is running (UPLOADBUCKET_NODE_KUBECONFIG unset)",
                "run tests/run.sh, which builds the images and starts tests/scripts/node.sh",
            ),
        }
    }

    /// Runs a command with this cluster's KUBECONFIG; stdout, or Err(stderr + stdout).
    fn try_run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("run {program}: {e}"));
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "{}{stdout}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            ))
        }
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.try_run("kubectl", args, None)
            .unwrap_or_else(|e| panic!("kubectl {}: {e}\n{}", args.join(" "), self.state()))
    }

    fn apply(&self, manifest: &str) -> String {
        self.try_run("kubectl", &["apply", "-f", "-"], Some(manifest))
            .unwrap_or_else(|e| panic!("kubectl apply: {e}\n{manifest}\n{}", self.state()))
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&all)).expect("kubectl -o json")
    }

    /// What a person debugging a failure looks at: pods, events, the operator's logs.
    fn state(&self) -> String {
        let get = |args: &[&str]| {
            self.try_run("kubectl", args, None)
                .unwrap_or_else(|e| format!("({e})"))
        };
        format!(
            "--- pods\n{}--- events\n{}--- operator logs\n{}",
            get(&["get", "pods", "-A", "-o", "wide"]),
            get(&["get", "events", "-A", "--sort-by=.lastTimestamp"]),
            get(&[
                "logs",
                "-n",
                SYSTEM,
                "-l",
                "app.kubernetes.io/name=uploadbucket-operator",
                "--all-containers",
                "--tail=40",
                "--prefix"
            ]),
        )
    }

    /// Waits until `check` returns Some, polling every half second.
    async fn wait<T>(&self, what: &str, secs: u64, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after {secs} s waiting for {what}\n{}",
                self.state()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Runs `node -e SCRIPT` in the app container of `pod` (the example app's image has
    /// Node.js and nothing else: no shell).
    fn node_in_app(&self, pod: &str, script: &str) -> String {
        self.kubectl(&[
            "exec", "-n", APP_NS, pod, "-c", "app", "--", "node", "-e", script,
        ])
    }
}

/// What the platform engineer sets on the command line besides examples/helm/values-rgw.yaml:
/// the store's endpoints, the cluster's OIDC provider, and the name RGW is known by.
fn set_values(node: &Node, rgw: &str, provider_arn: &str) -> Vec<String> {
    [
        format!("aws.s3Endpoint={rgw}"),
        format!("aws.iamEndpoint={rgw}"),
        format!("sidecar.stsEndpoint={rgw}"),
        format!("irsa.oidcProviderArn={provider_arn}"),
        format!("hostAliases[0].ip={}", node.ip),
        format!("hostAliases[0].hostnames[0]={RGW_HOST}"),
    ]
    .into_iter()
    .flat_map(|v| ["--set".to_owned(), v])
    .collect()
}

fn upload_bucket(name: &str) -> String {
    format!(
        r#"apiVersion: uploadbucket.io/v1alpha1
kind: UploadBucket
metadata:
  name: {name}
  namespace: {APP_NS}
spec:
  serviceAccountNames: [web]
  cors:
    allowedOrigins: ["http://shop.test"]
  uploads:
    allowedContentTypes: ["image/jpeg"]
    maxSizeBytes: 12582912
"#
    )
}

/// The app: examples/web/server.js in the example image, annotated for the signer, with no
/// Kubernetes token of its own; two Services with fixed addresses (the page's two origins).
fn app(node_ip: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: web, namespace: {APP_NS}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {APP_NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata:
      labels: {{app: web}}
      annotations:
        uploadbucket.io/inject: avatars
        uploadbucket.io/metrics-port: "9464"
    spec:
      serviceAccountName: web
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 5
      hostAliases: [{{ip: "{node_ip}", hostnames: [{RGW_HOST}]}}]
      securityContext: {{runAsNonRoot: true, seccompProfile: {{type: RuntimeDefault}}}}
      containers:
        - name: app
          image: {APP_IMAGE}
          imagePullPolicy: IfNotPresent
          securityContext: {RESTRICTED_CONTAINER}
          ports: [{{containerPort: 3000}}]
          readinessProbe: {{httpGet: {{path: /, port: 3000}}, periodSeconds: 2}}
          # Where the bucket is, from the UploadBucket's outputs ConfigMap.
          envFrom: [{{configMapRef: {{name: avatars-bucket}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {APP_NS}}}
spec:
  clusterIP: {APP_IP}
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 3000}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-other-origin, namespace: {APP_NS}}}
spec:
  clusterIP: {OTHER_IP}
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 3000}}]
"#
    )
}

/// A bare pod annotated for injection (to see whether the webhook injects it).
fn probe_pod(name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {APP_NS}
  annotations: {{uploadbucket.io/inject: avatars}}
spec:
  serviceAccountName: web
  automountServiceAccountToken: false
  securityContext: {{runAsNonRoot: true, seccompProfile: {{type: RuntimeDefault}}}}
  containers:
    - {{name: app, image: {APP_IMAGE}, imagePullPolicy: IfNotPresent, securityContext: {RESTRICTED_CONTAINER}}}
"#
    )
}

/// Labels `namespace` to enforce Pod Security "restricted", and proves the API server
/// enforces it there: a pod that asks for nothing of the level is refused, naming the policy.
fn enforce_restricted(node: &Node, namespace: &str) {
    node.kubectl(&[
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    ]);
    let loose = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: loose, namespace: {namespace}}}\n\
         spec: {{containers: [{{name: app, image: {APP_IMAGE}}}]}}\n"
    );
    let refused = node
        .try_run(
            "kubectl",
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&loose),
        )
        .expect_err("a pod that is not restricted-compliant must be refused");
    assert!(
        refused.contains("violates PodSecurity \"restricted:latest\""),
        "{namespace}: refused, but not by Pod Security: {refused}"
    );
}

fn signer_of(pod: &Value) -> Option<&Value> {
    pod["spec"]["initContainers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == "uploadbucket-signer")
}

fn webhook_ca(node: &Node) -> Option<String> {
    let hooks = node.json(&["get", "mutatingwebhookconfigurations"]);
    hooks["items"]
        .as_array()?
        .iter()
        .find(|h| {
            h["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(RELEASE))
        })
        .and_then(|h| h["webhooks"][0]["clientConfig"]["caBundle"].as_str())
        .map(str::to_owned)
}

/// A PUT upload of `size` bytes as upload.js makes it, through the app's `/api/uploads`
/// (`app` is `http://<app>/api`).
async fn put_through_app(http: &reqwest::Client, app: &str, size: usize) -> String {
    let signed = uploadbucket_tests::sign_upload(
        http,
        app,
        json!({"filename": "photo.jpg", "contentType": "image/jpeg", "size": size}),
    )
    .await;
    let (status, text) = uploadbucket_tests::put_signed(http, &signed, jpeg(size)).await;
    assert_eq!(status, 200, "PUT: {text}");
    signed["key"].as_str().unwrap().to_owned()
}

/// A multipart upload as upload.js makes it (5 MiB parts, each part's size signed).
async fn multipart_through_app(http: &reqwest::Client, app: &str, size: usize) -> String {
    let api = format!("{app}/uploads");
    const PART: usize = 5 * 1024 * 1024;
    let data = jpeg(size);
    let created = uploadbucket_tests::json_of(
        http.post(format!("{api}/multipart"))
            .json(&json!({"filename": "big.jpg", "type": "image/jpeg", "size": size})),
    )
    .await;
    let key = created["key"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"));
    let id = created["uploadId"].as_str().unwrap();
    let chunks: Vec<&[u8]> = data.chunks(PART).collect();
    let numbers: Vec<String> = (1..=chunks.len()).map(|n| n.to_string()).collect();
    let sizes: Vec<String> = chunks.iter().map(|c| c.len().to_string()).collect();
    let batch = uploadbucket_tests::json_of(
        http.get(format!("{api}/multipart/{}/batch", enc(id)))
            .query(&[
                ("key", key),
                ("partNumbers", &numbers.join(",")),
                ("sizes", &sizes.join(",")),
            ]),
    )
    .await;
    let mut parts = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let n = i + 1;
        let url = batch["presignedUrls"][n.to_string()]
            .as_str()
            .unwrap_or_else(|| panic!("{batch}"));
        let resp = http.put(url).body(chunk.to_vec()).send().await.unwrap();
        assert_eq!(resp.status(), 200, "part {n}");
        let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
        parts.push(json!({"PartNumber": n, "ETag": etag}));
    }
    let done = http
        .post(format!("{api}/multipart/{}/complete", enc(id)))
        .query(&[("key", key)])
        .json(&json!({"parts": parts}))
        .send()
        .await
        .unwrap();
    assert!(
        done.status().is_success(),
        "complete: {}",
        done.text().await.unwrap()
    );
    key.to_owned()
}

/// `uploads/<32 hex digits: the app's session id>/<name>`.
fn assert_owned_key(key: &str) {
    let owner = key
        .strip_prefix("uploads/")
        .and_then(|k| k.split_once('/'))
        .map(|(o, _)| o)
        .unwrap_or_default();
    assert!(
        owner.len() == 32 && owner.bytes().all(|b| b.is_ascii_hexdigit()),
        "not in a session's folder: {key}"
    );
}

fn enc(s: &str) -> String {
    s.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// `size` bytes that start like a JPEG.
fn jpeg(size: usize) -> Vec<u8> {
    let mut data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    data[..4].copy_from_slice(&[0xff, 0xd8, 0xff, 0xe0]);
    data
}

#[tokio::test]
async fn helm_install_to_browser_upload_on_a_real_node() {
    let test = "helm_install_to_browser_upload_on_a_real_node";
    let Some(server) = s3_server(test) else {
        return;
    };
    let Some(node) = Node::from_env(test) else {
        return;
    };
    let Some(helm) = helm(test) else { return };
    let Some(chromium) = chromium() else { return };
    let helm = helm.to_string_lossy().into_owned();
    let rgw_port = server.endpoint.rsplit(':').next().unwrap().to_owned();
    let rgw = format!("http://{RGW_HOST}:{rgw_port}");
    let raw = server
        .raw_client(&server.access_key, &server.secret_key)
        .await;

    // Once per cluster: the platform engineer registers the cluster's service-account issuer
    // with IAM (EKS: `eksctl utils associate-iam-oidc-provider`).
    let provider_arn = server
        .register_oidc_provider(&node.issuer, &node.thumbprint)
        .await;

    assert!(
        node.try_run("kubectl", &["get", "namespace", SYSTEM], None)
            .is_err(),
        "the journey needs a fresh cluster (tests/scripts/node.sh stop DIR && start DIR IMAGES)"
    );
    // The operator, as docs/install/rgw.md installs it: its own credentials for the store in a
    // Secret.
    node.kubectl(&["create", "namespace", SYSTEM]);
    enforce_restricted(&node, SYSTEM);
    node.kubectl(&[
        "create",
        "secret",
        "generic",
        "rgw-admin",
        "-n",
        SYSTEM,
        &format!("--from-literal=access-key={}", server.access_key),
        &format!("--from-literal=secret-key={}", server.secret_key),
    ]);
    let values_file = repo().join("examples/helm/values-rgw.yaml");
    let values_file = values_file.to_str().unwrap();
    let set = set_values(&node, &rgw, &provider_arn);
    let chart = repo().join("charts/uploadbucket-operator");
    let chart = chart.to_str().unwrap();
    let helm_run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "-n",
            SYSTEM,
            "-f",
            values_file,
            "--wait",
            "--timeout",
            "180s",
        ]);
        all.extend(set.iter().map(String::as_str));
        node.try_run(&helm, &all, None)
            .unwrap_or_else(|e| panic!("helm {}: {e}\n{}", args[0], node.state()))
    };
    let t0 = std::time::Instant::now();
    helm_run(&["install", RELEASE, chart]);
    eprintln!("journey: helm install --wait took {:?}", t0.elapsed());
    let operators = node.json(&[
        "get",
        "pods",
        "-n",
        SYSTEM,
        "-l",
        "app.kubernetes.io/name=uploadbucket-operator",
    ]);
    let operators = operators["items"].as_array().unwrap();
    assert_eq!(operators.len(), 2, "two operator replicas");
    for p in operators {
        assert_eq!(p["status"]["phase"], "Running", "{p}");
        let c = &p["spec"]["containers"][0];
        assert_eq!(c["image"], "uploadbucket/operator:0.1.0");
        assert_eq!(
            p["status"]["containerStatuses"][0]["ready"], true,
            "operator ready: {p}"
        );
    }

    // An UploadBucket: bucket, CORS and an IRSA role, by the operator running as a pod.
    node.kubectl(&["create", "namespace", APP_NS]);
    enforce_restricted(&node, APP_NS);
    node.apply(&upload_bucket("avatars"));
    node.kubectl(&[
        "wait",
        "-n",
        APP_NS,
        "--for=condition=Ready",
        "uploadbucket/avatars",
        "--timeout=120s",
    ]);
    let ub = node.json(&["get", "uploadbucket", "avatars", "-n", APP_NS]);
    let bucket = ub["status"]["bucketName"].as_str().expect("bucketName");
    let role_arn = ub["status"]["roleArn"].as_str().expect("roleArn");
    assert!(bucket.starts_with("journey-"), "{bucket}");
    raw.head_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("the bucket exists in RGW");

    // The app, annotated: the webhook (served from the operator pods behind their Service)
    // adds the signer as a native sidecar.
    node.apply(&app(&node.ip));
    node.kubectl(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        APP_NS,
        "--timeout=180s",
    ]);
    let pods = node.json(&["get", "pods", "-n", APP_NS, "-l", "app=web"]);
    let pod = &pods["items"][0];
    let pod_name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    let signer = signer_of(pod).unwrap_or_else(|| panic!("no signer injected: {pod}"));
    assert_eq!(
        signer["restartPolicy"], "Always",
        "native sidecar: {signer}"
    );
    // What a NetworkPolicy selects to let the signers out (docs/guides/jwt.md, Egress).
    assert_eq!(
        pod["metadata"]["labels"]["uploadbucket.io/signer"], "true",
        "{}",
        pod["metadata"]
    );
    assert_eq!(signer["image"], "uploadbucket/sidecar:0.1.0");
    let signer_env = signer["env"].as_array().unwrap();
    let env_of = |name: &str| {
        signer_env
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .map(str::to_owned)
    };
    assert_eq!(env_of("AWS_ROLE_ARN").as_deref(), Some(role_arn));
    assert!(env_of("AWS_WEB_IDENTITY_TOKEN_FILE").is_some(), "{signer}");
    assert!(
        signer_env.iter().all(|e| e["name"] != "AWS_ACCESS_KEY_ID"),
        "the signer has no static keys: {signer}"
    );
    let app_container = &pod["spec"]["containers"][0];
    assert!(
        app_container["volumeMounts"].is_null()
            || app_container["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["name"] != "uploadbucket-token"),
        "{app_container}"
    );
    let statuses = pod["status"]["initContainerStatuses"].as_array().unwrap();
    assert!(
        statuses
            .iter()
            .any(|s| s["name"] == "uploadbucket-signer" && s["started"] == true),
        "signer started: {statuses:?}"
    );

    // Inside the app container: no AWS credentials, no token of any kind; the signer answers
    // on the pod's loopback and is ready (its credentials came from STS).
    let inside: Value = serde_json::from_str(&node.node_in_app(
        &pod_name,
        r#"const fs = require('fs');
const aws = Object.keys(process.env).filter((k) => k.startsWith('AWS_'));
const tokens = ['/var/run/secrets/kubernetes.io/serviceaccount', '/var/run/secrets/eks.amazonaws.com',
  '/var/run/secrets/uploadbucket.io'].filter((p) => fs.existsSync(p));
fetch(process.env.UPLOADBUCKET_SIGNER_URL + '/readyz').then(async (r) => {
  const ready = await r.text();
  const u = await fetch(process.env.UPLOADBUCKET_SIGNER_URL + '/uploads', {method: 'POST',
    headers: {'content-type': 'application/json'}, body: JSON.stringify({contentType: 'image/jpeg', size: 10})});
  const outputs = {name: process.env.BUCKET_NAME, host: process.env.BUCKET_HOST, role: process.env.ROLE_ARN};
  console.log(JSON.stringify({aws, tokens, outputs, signer: process.env.UPLOADBUCKET_SIGNER_URL,
    uid: process.getuid(), ready, status: r.status, upload: await u.json()}));
});"#,
    ))
    .expect("JSON from the app container");
    assert_eq!(
        inside["aws"],
        json!([]),
        "AWS variables in the app: {inside}"
    );
    assert_eq!(inside["tokens"], json!([]), "tokens in the app: {inside}");
    // The outputs ConfigMap reached the app through envFrom (no credentials in it).
    assert_eq!(
        inside["outputs"],
        json!({"name": bucket, "host": RGW_HOST, "role": role_arn}),
        "{inside}"
    );
    assert_eq!(inside["uid"], 65532, "{inside}");
    assert_eq!(inside["status"], 200, "signer /readyz: {inside}");
    assert_eq!(inside["ready"], "ready\n", "{inside}");
    assert!(
        inside["signer"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
        "{inside}"
    );
    // The pod network: other pods (an operator's webhook port) and the node's addresses
    // (RGW) are reachable; nothing outside the machine is (no route out).
    let operator_ip = operators[0]["status"]["podIP"].as_str().unwrap();
    let reach: Value = serde_json::from_str(&node.node_in_app(
        &pod_name,
        &format!(
            r#"const net = require('net');
const tryConnect = (host, port) => new Promise((done) => {{
  const s = net.connect({{host, port, timeout: 3000}});
  s.on('connect', () => {{ s.destroy(); done('connected'); }});
  s.on('timeout', () => {{ s.destroy(); done('timeout'); }});
  s.on('error', (e) => done(e.code));
}});
Promise.all([tryConnect('{operator_ip}', 8443), tryConnect('{node_ip}', {rgw_port}),
  tryConnect('1.1.1.1', 443), tryConnect('192.0.2.1', 80)])
  .then(([pod, node, internet, other]) => console.log(JSON.stringify({{pod, node, internet, other}})));"#,
            node_ip = node.ip,
        ),
    ))
    .expect("JSON from the app container");
    assert_eq!(
        reach,
        json!({"pod": "connected", "node": "connected", "internet": "ENETUNREACH", "other": "ENETUNREACH"}),
        "what the app pod can reach"
    );
    // The signer's metrics on the pod IP (as Prometheus would scrape them), and nothing
    // else there: no signing route on the metrics port, no signing API on the pod IP.
    let pod_ip = pod["status"]["podIP"].as_str().unwrap();
    assert_eq!(
        pod["metadata"]["labels"]["uploadbucket.io/signer-metrics"], "true",
        "{pod}"
    );
    let signer_ports = &signer_of(pod).unwrap()["ports"];
    assert_eq!(
        signer_ports,
        &json!([{"name": "ub-metrics", "containerPort": 9464, "protocol": "TCP"}])
    );
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let scraped = http
        .get(format!("http://{pod_ip}:9464/metrics"))
        .send()
        .await
        .expect("the metrics port on the pod IP");
    assert_eq!(scraped.status(), 200);
    let scraped = scraped.text().await.unwrap();
    for series in [
        "uploadbucket_signer_requests_total{route=\"Uploads\",outcome=\"Ok\"} 1",
        "uploadbucket_signer_credentials_ready 1",
    ] {
        assert!(scraped.contains(series), "{series} in {scraped}");
    }
    let refused = http
        .post(format!("http://{pod_ip}:9464/uploads"))
        .json(&json!({"contentType": "image/jpeg", "size": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
    let signing = http
        .post(format!("http://{pod_ip}:8787/uploads"))
        .json(&json!({"contentType": "image/jpeg", "size": 10}))
        .send()
        .await;
    assert!(
        signing.as_ref().is_err_and(|e| e.is_connect()),
        "the signing API answered on the pod IP: {signing:?}"
    );

    // The URL is signed with temporary credentials from STS (a session token; not the
    // store's admin key, which only the operator holds).
    let url = inside["upload"]["uploadURL"]
        .as_str()
        .unwrap_or_else(|| panic!("a URL: {inside}"))
        .to_owned();
    assert!(url.starts_with(&format!("{rgw}/{bucket}/")), "{url}");
    assert!(url.contains("X-Amz-Security-Token="), "{url}");
    assert!(!url.contains(&server.access_key), "{url}");

    // Chromium on the host opens the app's page through its Service and uploads by POST
    // form (the size range and the key pinned by the form's policy).
    let resolve = format!(
        "--host-resolver-rules=MAP shop.test {APP_IP}, MAP other.test {OTHER_IP}, MAP {RGW_HOST} {}",
        node.ip
    );
    let flags = [resolve];
    // kube-proxy programs the Service a moment after the pod is ready.
    let app_url = format!("http://{APP_IP}/");
    node.wait("the app's Service to answer", 30, || {
        let ok = std::process::Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "--max-time", "2", &app_url])
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(())
    })
    .await;
    // The test page on `origin` uploading `size` bytes by `method`; `shot` names its
    // screenshot.
    let upload = |origin: &str, method: &str, size: i64, shot: &'static str| {
        let url = format!("http://{origin}/harness.html?method={method}&size={size}");
        let (chromium, flags) = (&chromium, &flags);
        async move { run_page_with(chromium, &url, shot, flags).await }
    };
    let r = upload("shop.test", "POST", 400_000, "journey-POST").await;
    assert_eq!(r["ok"], true, "POST form from the app's page: {r}");
    let key = r["key"].as_str().unwrap();
    // The app's backend (server.js) names the owner from its session cookie: the key sits in
    // that browser's folder.
    assert_owned_key(key);
    uploadbucket_tests::assert_stored(&raw, bucket, key, "image/jpeg", 400_000).await;

    // PUT and multipart URLs carry the signature in their query string, and RGW 16 refuses
    // the browser's CORS preflight of any such URL signed with STS session credentials
    // (SignatureDoesNotMatch), although it answers the same preflight without the query by
    // the bucket's CORS rules and accepts the PUT itself: docs/concepts/backends.md says so,
    // and this fails the day RGW accepts them.
    let r = upload("shop.test", "PUT", 300_000, "journey-PUT-rgw16").await;
    assert_eq!(
        r["code"], "Network",
        "RGW 16 refuses the preflight of a session-signed PUT URL: {r}"
    );
    // upload.js's default, `auto`, then falls back to a POST form, and the file lands.
    let r = upload("shop.test", "auto", 200_000, "journey-auto").await;
    assert_eq!(
        (&r["ok"], &r["method"]),
        (&json!(true), &json!("POST")),
        "{r}"
    );
    let key = r["key"].as_str().unwrap();
    uploadbucket_tests::assert_stored(&raw, bucket, key, "image/jpeg", 200_000).await;
    // A client that keeps the app's session cookie, as a browser does.
    let http = reqwest::Client::builder()
        .resolve(RGW_HOST, format!("{}:{rgw_port}", node.ip).parse().unwrap())
        .cookie_store(true)
        .build()
        .unwrap();
    let preflight = |url: String| {
        http.request(reqwest::Method::OPTIONS, url)
            .header("origin", "http://shop.test")
            .header("access-control-request-method", "PUT")
            .header(
                "access-control-request-headers",
                "content-type,if-none-match",
            )
            .send()
    };
    let signed_put = url.clone();
    let refused = preflight(signed_put.clone()).await.unwrap();
    assert_eq!(refused.status(), 403, "preflight of the signed URL");
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("SignatureDoesNotMatch")
    );
    let bare = preflight(signed_put.split('?').next().unwrap().to_owned())
        .await
        .unwrap();
    assert_eq!(
        bare.status(),
        200,
        "the same preflight without the signature"
    );
    assert_eq!(
        bare.headers()["access-control-allow-origin"],
        "http://shop.test"
    );

    // The same URLs work without a browser: PUT and multipart through the app's
    // /api/uploads (its Service), straight to RGW.
    let app_api = format!("http://{APP_IP}/api");
    let key = put_through_app(&http, &app_api, 300_000).await;
    uploadbucket_tests::assert_stored(&raw, bucket, &key, "image/jpeg", 300_000).await;
    assert_owned_key(&key);
    let key = multipart_through_app(&http, &app_api, 7 * MIB as usize + 5).await;
    uploadbucket_tests::assert_stored(&raw, bucket, &key, "image/jpeg", 7 * MIB + 5).await;

    // Another session (no cookie: the app gives it its own owner) cannot end this session's
    // multipart upload; its own session can.
    let created = uploadbucket_tests::json_of(
        http.post(format!("{app_api}/uploads/multipart"))
            .json(&json!({"filename": "x.jpg", "type": "image/jpeg", "size": 6 * MIB})),
    )
    .await;
    let abort = |client: reqwest::Client| {
        let url = format!(
            "{app_api}/uploads/multipart/{}",
            enc(created["uploadId"].as_str().unwrap())
        );
        let key = created["key"].as_str().unwrap().to_owned();
        async move {
            client
                .delete(url)
                .query(&[("key", key)])
                .send()
                .await
                .unwrap()
        }
    };
    let other = abort(reqwest::Client::new()).await;
    assert_eq!(other.status(), 403, "another session's abort");
    assert!(other.text().await.unwrap().contains("OwnerMismatch"));
    let own = abort(http.clone()).await;
    assert!(own.status().is_success(), "own abort: {}", own.status());

    // A page from an origin the bucket's CORS rules do not list: refused, nothing stored.
    let count = || async {
        raw.list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .expect("list")
            .key_count()
    };
    // The same POST form as the one from http://shop.test above (same page, app and size),
    // which was stored: only the origin differs. The app's own API (same origin) signs it;
    // the browser's preflight of the form's POST to RGW is refused by the bucket's CORS
    // rules, which upload.js reports as `Network` from the storage request (a failure of the
    // app's API has the same code, hence the message: it names the storage).
    let before = count().await;
    let r = upload("other.test", "POST", 400_000, "journey-other-origin").await;
    assert_eq!(r["ok"], false, "an origin outside allowedOrigins: {r}");
    assert_eq!(r["code"], "Network", "refused by CORS: {r}");
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Could not reach the storage")),
        "refused by the storage, not the app: {r}"
    );
    assert_eq!(
        count().await,
        before,
        "nothing stored from the other origin"
    );
    // The leader's pod is deleted (force, as `kubectl delete --force` does): it gets SIGTERM,
    // gives up its Lease and the standby leads at once, before the Lease could have expired;
    // pods are still injected. (A leader killed with SIGKILL, whose Lease must expire first,
    // is cluster.rs's test.)
    let leases: kube::Api<Lease> = kube::Api::namespaced(
        uploadbucket_tests::cluster::client_of(&node.kubeconfig).await,
        SYSTEM,
    );
    let lease = || async {
        leases
            .get(LEASE)
            .await
            .expect("the operator's Lease")
            .spec
            .unwrap_or_default()
    };
    let held = lease().await;
    let leader = held.holder_identity.clone().unwrap_or_default();
    let names: Vec<&str> = operators
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    assert!(
        names.contains(&leader.as_str()),
        "the Lease names an operator pod: {held:?}"
    );
    let standby = names
        .iter()
        .find(|n| **n != leader)
        .expect("a standby")
        .to_string();
    // The Lease lasts the chart's leaderElection.leaseSeconds (as installed: the chart's
    // default unless the values set it); without a release no replica may take it before
    // `renewTime + leaseDurationSeconds`. The renewal read here is the latest or an earlier
    // one, so the expiry computed from it is never later than the real one.
    let values: Value = serde_json::from_str(
        &node
            .try_run(
                &helm,
                &[
                    "get", "values", RELEASE, "-n", SYSTEM, "--all", "-o", "json",
                ],
                None,
            )
            .unwrap_or_else(|e| panic!("helm get values: {e}")),
    )
    .expect("helm get values -o json");
    let lease_seconds = values["leaderElection"]["leaseSeconds"]
        .as_u64()
        .unwrap_or_else(|| panic!("leaderElection.leaseSeconds in {values}"));
    assert_eq!(
        held.lease_duration_seconds.map(i64::from),
        Some(lease_seconds as i64),
        "the Lease's duration is the chart's: {held:?}"
    );
    let renewed: SystemTime = held.renew_time.clone().expect("renewTime").0.into();
    let expires = renewed + Duration::from_secs(lease_seconds);
    let deleted = SystemTime::now();
    node.kubectl(&[
        "delete",
        "pod",
        &leader,
        "-n",
        SYSTEM,
        "--grace-period=0",
        "--force",
    ]);
    // Polled every 200 ms until well after the expiry, so a handover that waits for it is
    // measured and reported too, not only timed out.
    let since_deletion = || {
        SystemTime::now()
            .duration_since(deleted)
            .unwrap_or_default()
    };
    let expiry_after = expires.duration_since(deleted).unwrap_or_default();
    let mut holder = held;
    while holder.holder_identity.as_deref() != Some(standby.as_str()) {
        assert!(
            SystemTime::now() < expires + Duration::from_secs(30),
            "the standby {standby} did not lead within 30 s of the Lease's expiry \
             ({expiry_after:?} after the deletion): {holder:?}\n{}",
            node.state()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        holder = lease().await;
        let other = holder
            .holder_identity
            .as_deref()
            .filter(|h| *h != leader && *h != standby);
        assert!(
            other.is_none(),
            "{:?} after the deletion (the Lease would have expired {expiry_after:?} after it), \
             a replica started since leads, not the standby {standby}: {holder:?}\n{}",
            since_deletion(),
            node.state()
        );
    }
    let led = SystemTime::now();
    let took = since_deletion();
    eprintln!(
        "journey: leader {leader} deleted; {standby} led {took:?} later (seen; the Lease, \
         renewed {:?} before the deletion, would have expired {expiry_after:?} after it)",
        deleted.duration_since(renewed).unwrap_or_default()
    );
    assert!(
        led < expires,
        "the standby led {took:?} after the leader's deletion, not before the Lease's expiry \
         ({expiry_after:?} after it): it waited for the Lease to expire"
    );
    // The webhook stays served by the other replica (once kube-proxy has dropped the dead
    // endpoint, which takes about a second).
    let injected = node
        .wait(
            "an annotated pod injected by the remaining replica",
            20,
            || {
                let _ = node.try_run(
                    "kubectl",
                    &[
                        "delete",
                        "pod",
                        "probe-1",
                        "-n",
                        APP_NS,
                        "--ignore-not-found",
                    ],
                    None,
                );
                node.try_run(
                    "kubectl",
                    &["apply", "-f", "-"],
                    Some(&probe_pod("probe-1")),
                )
                .ok()?;
                Some(node.json(&["get", "pod", "probe-1", "-n", APP_NS]))
            },
        )
        .await;
    assert!(signer_of(&injected).is_some(), "{injected}");
    // The new leader reconciles: a new UploadBucket becomes Ready.
    node.apply(&upload_bucket("banners"));
    node.kubectl(&[
        "wait",
        "-n",
        APP_NS,
        "--for=condition=Ready",
        "uploadbucket/banners",
        "--timeout=120s",
    ]);
    assert_eq!(
        lease().await.holder_identity.as_deref(),
        Some(standby.as_str()),
        "the standby still leads"
    );
    eprintln!(
        "journey: a new UploadBucket Ready {:?} after the leader's deletion",
        deleted.elapsed().unwrap_or_default()
    );

    // helm upgrade keeps the webhook's certificate.
    let ca = webhook_ca(&node).expect("webhook configuration");
    helm_run(&["upgrade", RELEASE, chart, "--set", "resyncSeconds=120"]);
    assert_eq!(
        webhook_ca(&node).as_deref(),
        Some(ca.as_str()),
        "caBundle kept"
    );
    node.kubectl(&["delete", "pod", "probe-1", "-n", APP_NS, "--wait=false"]);
    node.apply(&probe_pod("probe-2"));
    let probe = node.json(&["get", "pod", "probe-2", "-n", APP_NS]);
    assert!(
        signer_of(&probe).is_some(),
        "injected after the upgrade: {probe}"
    );

    // helm uninstall: the bucket stays (Retain), the webhook configuration goes, and pods
    // are created as they are.
    let stored = count().await;
    node.try_run(
        &helm,
        &[
            "uninstall",
            RELEASE,
            "-n",
            SYSTEM,
            "--wait",
            "--timeout",
            "120s",
        ],
        None,
    )
    .unwrap_or_else(|e| panic!("helm uninstall: {e}\n{}", node.state()));
    assert_eq!(webhook_ca(&node), None, "webhook configuration removed");
    raw.head_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("the bucket is retained after helm uninstall");
    assert_eq!(count().await, stored, "the uploads are retained");
    node.apply(&probe_pod("probe-3"));
    let plain = node.json(&["get", "pod", "probe-3", "-n", APP_NS]);
    assert!(
        signer_of(&plain).is_none(),
        "no injection without the operator: {plain}"
    );
}

/// The backend snippet of docs/guides/browser-snippet.md is the marked part of
/// examples/web/server.js, word for word, so the code the journey runs in a pod is the code
/// the docs show.
#[test]
fn docs_show_the_example_backend() {
    let server = std::fs::read_to_string(repo().join("examples/web/server.js")).unwrap();
    let start = server
        .find("// --- the part your own backend needs")
        .expect("start marker");
    let end = server.find("// --- end ---").expect("end marker");
    let block = &server[start..end];
    let docs = std::fs::read_to_string(repo().join("docs/guides/browser-snippet.md")).unwrap();
    assert!(
        docs.contains(block),
        "docs/guides/browser-snippet.md differs from examples/web/server.js:\n{block}"
    );
}
