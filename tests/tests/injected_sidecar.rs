//! The container the webhook injects, run for real: its env (made by the operator's pure
//! `inject` from an UploadBucket) parsed by the sidecar binary gives exactly the bucket's
//! rules, the signer it starts enforces them, and its probe command works.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Container;
use serde_json::{Value, json};
use uploadbucket_operator::webhook::inject::Settings;
use uploadbucket_sidecar::config::Config;
use uploadbucket_tests::{bin_path, spawn_service, wait_healthy};

/// The signer container injected into testdata/pod-basic.yaml for UploadBucket shop/photos.
fn injected_signer() -> Container {
    uploadbucket_tests::injected_signer(&Settings {
        image: "uploadbucket/sidecar:test".into(),
        ..Settings::default()
    })
}

fn env_map(c: &Container) -> BTreeMap<String, String> {
    c.env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn injected_env_parses_to_the_bucket_rules() {
    let env = env_map(&injected_signer());
    let out = std::process::Command::new(bin_path("uploadbucket-sidecar"))
        .arg("config")
        .env_clear()
        .envs(&env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: Config = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config.bucket, "shop-photos-3f9a1c");
    assert_eq!(config.region.as_deref(), Some("eu-west-1"));
    assert_eq!(config.key_prefix, "avatars/");
    assert_eq!(config.allowed_content_types, ["image/jpeg", "image/png"]);
    assert_eq!(config.max_size_bytes, 5_242_880);
    assert_eq!(config.expires_seconds, 120);
    assert_eq!(config.listen.to_string(), "127.0.0.1:8787");
    assert!(!config.allow_non_loopback);
    assert_eq!(
        env["AWS_WEB_IDENTITY_TOKEN_FILE"],
        "/var/run/secrets/uploadbucket.io/serviceaccount/token"
    );
}

/// Runs the container's probe command (its binary path swapped for the built one).
fn run_probe(container: &Container, url: &str) -> (bool, String) {
    let command = container
        .startup_probe
        .as_ref()
        .and_then(|p| p.exec.as_ref())
        .and_then(|e| e.command.clone())
        .expect("exec startup probe");
    assert_eq!(command[..2], ["/uploadbucket-sidecar", "probe"]);
    let out = std::process::Command::new(bin_path("uploadbucket-sidecar"))
        .arg("probe")
        .arg(url)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the injected container as the kubelet would, with test credentials instead of a
/// projected token, on ports of its own choosing (read from its log) and the `extra` env;
/// the process and the addresses logged with `listening`.
fn run_injected(
    signer: &Container,
    extra: &[(&str, &str)],
    listening: &[&str],
) -> (uploadbucket_tests::Child, Vec<String>) {
    let mut env = env_map(signer);
    env.remove("AWS_ROLE_ARN");
    env.remove("AWS_WEB_IDENTITY_TOKEN_FILE");
    env.insert("UPLOADBUCKET_LISTEN".into(), "127.0.0.1:0".into());
    env.insert(
        "RUST_LOG".into(),
        "warn,uploadbucket_sidecar::cli=info".into(),
    );
    env.insert("AWS_ACCESS_KEY_ID".into(), "AKIDEXAMPLEINJECTED00".into());
    env.insert(
        "AWS_SECRET_ACCESS_KEY".into(),
        "injectedsecretinjectedsecretinjected0000".into(),
    );
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let mut cmd = std::process::Command::new(bin_path("uploadbucket-sidecar"));
    cmd.args(signer.args.clone().unwrap_or_default())
        .env_clear()
        .envs(&env);
    spawn_service(cmd, "sidecar", listening)
}

#[tokio::test]
async fn the_injected_signer_enforces_the_bucket_rules_and_its_probe_works() {
    let signer = injected_signer();
    let (_child, addrs) = run_injected(&signer, &[], &["Signer listening"]);
    let base = format!("http://{}", addrs[0]);
    wait_healthy(&base).await;

    let (ok, stderr) = run_probe(&signer, &format!("{base}/healthz"));
    assert!(ok, "{stderr}");
    let (_closed, closed) = uploadbucket_tests::refusing_port();
    let (ok, stderr) = run_probe(&signer, &format!("http://127.0.0.1:{closed}/healthz"));
    assert!(!ok);
    assert!(stderr.contains("cannot connect"), "{stderr}");
    let (ok, stderr) = run_probe(&signer, &format!("{base}/no-such-path"));
    assert!(!ok);
    assert!(stderr.contains("404"), "{stderr}");

    let http = reqwest::Client::new();
    let refused = http
        .post(format!("{base}/uploads"))
        .json(&json!({"contentType": "application/pdf", "filename": "cv.pdf"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("image/jpeg, image/png"),
        "{body}"
    );
    let too_big = http
        .post(format!("{base}/uploads"))
        .json(&json!({"contentType": "image/png", "size": 5_242_881}))
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);
    let ok = http
        .post(format!("{base}/uploads"))
        .json(&json!({"contentType": "image/png", "filename": "me.png", "size": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    let body: Value = ok.json().await.unwrap();
    assert!(
        body["key"].as_str().unwrap().starts_with("avatars/"),
        "{body}"
    );
    let url = body["uploadURL"].as_str().unwrap();
    assert!(
        url.starts_with("https://shop-photos-3f9a1c.s3.eu-west-1.amazonaws.com/avatars/"),
        "{url}"
    );
    assert!(url.contains("X-Amz-Expires=120"), "{url}");
}

/// The metrics-only listener (what the webhook turns on with `uploadbucket.io/metrics-port`,
/// there on 0.0.0.0 so Prometheus reaches it on the pod IP): `GET /metrics` answers with the
/// signer's series, every other path and method of the signing API is refused there, and
/// scrapes are not counted as signer requests.
#[tokio::test]
async fn the_metrics_listener_serves_metrics_and_nothing_else() {
    let signer = injected_signer();
    let (_child, addrs) = run_injected(
        &signer,
        &[("UPLOADBUCKET_METRICS_LISTEN", "127.0.0.1:0")],
        &["Signer listening", "Metrics listening"],
    );
    let (base, metrics) = (
        format!("http://{}", addrs[0]),
        format!("http://{}", addrs[1]),
    );
    wait_healthy(&base).await;
    let http = reqwest::Client::new();
    let signed = http
        .post(format!("{base}/uploads"))
        .json(&json!({"contentType": "image/png", "size": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 201);

    let scrape = || async {
        let r = http.get(format!("{metrics}/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    let text = scrape().await;
    assert!(
        text.contains("uploadbucket_signer_requests_total{route=\"Uploads\",outcome=\"Ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("uploadbucket_signer_credentials_ready 1"),
        "{text}"
    );
    for (method, path) in [
        ("POST", "/uploads"),
        ("GET", "/uploads?contentType=image/png"),
        ("GET", "/s3/params?type=image/png"),
        ("POST", "/s3/multipart"),
        ("POST", "/uploads/multipart"),
        ("POST", "/uploads/verify"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/"),
    ] {
        let r = http
            .request(method.parse().unwrap(), format!("{metrics}{path}"))
            .json(&json!({"contentType": "image/png", "size": 1000}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path} on the metrics listener");
        let body = r.text().await.unwrap();
        assert!(!body.contains("X-Amz-"), "{method} {path}: {body}");
    }
    let post = http
        .post(format!("{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    // Neither the scrapes nor the refusals above reached the signer's counters.
    let counted = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("uploadbucket_signer_requests_total{"))
            .map(str::to_owned)
            .collect()
    };
    let after = scrape().await;
    assert_eq!(counted(&after), counted(&text), "{after}");
}
