//! Golden tests for injection (`testdata/pod-*.yaml` in, `*.patch.json` out; regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p uploadbucket-operator webhook`) and the `/mutate` handler.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use axum::body::Body;
use base64::Engine as _;
use http::Request;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::inject::{self, Outcome, Settings};
use super::*;

fn testdata() -> PathBuf {
    manifest_dir().join("testdata")
}

/// Cargo's `CARGO_MANIFEST_DIR` at run time: the build cache is shared between checkouts, and
/// the path compiled in may be another checkout's.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

fn buckets() -> Vec<UploadBucket> {
    let text = std::fs::read_to_string(testdata().join("uploadbuckets.yaml")).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| UploadBucket::deserialize(doc).expect("UploadBucket fixture"))
        .collect()
}

fn find<'a>(all: &'a [UploadBucket], ns: &str, name: &str) -> Option<&'a UploadBucket> {
    all.iter().find(|b| {
        b.metadata.namespace.as_deref() == Some(ns) && b.metadata.name.as_deref() == Some(name)
    })
}

fn settings() -> Settings {
    Settings {
        image: "uploadbucket/sidecar:test".into(),
        ..Settings::default()
    }
}

fn pods() -> Vec<(String, Pod)> {
    let mut files: Vec<_> = std::fs::read_dir(testdata())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("pod-") && n.ends_with(".yaml")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 9, "golden pods missing: {files:?}");
    files
        .into_iter()
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            let pod: Pod = serde_yaml::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (stem, pod)
        })
        .collect()
}

fn decide(pod: &Pod, all: &[UploadBucket]) -> Outcome {
    let ns = pod.metadata.namespace.clone().unwrap();
    let bucket = inject::requested(pod).and_then(|name| find(all, &ns, name));
    inject::inject(pod, &ns, bucket, &settings())
}

fn outcome_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::NotRequested => json!({"outcome": "not-requested"}),
        Outcome::AlreadyInjected => json!({"outcome": "already-injected"}),
        Outcome::Deny(message) => json!({"outcome": "denied", "message": message}),
        Outcome::Inject(patch) => serde_json::to_value(patch).unwrap(),
    }
}

#[test]
fn golden_patches() {
    let all = buckets();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    assert!(
        !(update && std::env::var_os("CI").is_some()),
        "UPDATE_GOLDEN is set under CI: a check that rewrites what it checks proves nothing"
    );
    let mut stale = Vec::new();
    for (stem, pod) in pods() {
        let got = serde_json::to_string_pretty(&outcome_json(&decide(&pod, &all))).unwrap() + "\n";
        let path = testdata().join(format!("{stem}.patch.json"));
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            if update {
                std::fs::write(&path, &got).unwrap();
            } else {
                stale.push(format!("--- {}\n{got}", path.display()));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "golden files differ (UPDATE_GOLDEN=1 rewrites them; review the diff):\n{}",
        stale.join("\n")
    );
}

#[test]
fn every_refusal_says_what_to_change() {
    let all = buckets();
    let denied: Vec<(String, String)> = pods()
        .into_iter()
        .filter_map(|(stem, pod)| match decide(&pod, &all) {
            Outcome::Deny(m) => Some((stem, m)),
            _ => None,
        })
        .collect();
    let expect = [
        (
            "pod-unknown-bucket",
            ["no UploadBucket \"fotos\"", "fix the annotation"],
        ),
        (
            "pod-wrong-service-account",
            ["service account \"default\"", "web, worker"],
        ),
        ("pod-bad-port", ["uploadbucket.io/port", "1024 to 65535"]),
        (
            "pod-port-taken",
            [
                "container \"app\" already uses port 8787",
                "uploadbucket.io/port",
            ],
        ),
        (
            "pod-bucket-not-ready",
            ["shop/pending has no usable bucket", "lacks s3:CreateBucket"],
        ),
        (
            "pod-host-network",
            ["hostNetwork", "remove hostNetwork: true"],
        ),
        (
            "pod-mounts-token",
            [
                "container \"app\" mounts the volume \"uploadbucket-token\"",
                "remove that volumeMount",
            ],
        ),
        (
            "pod-init-mounts-token",
            [
                "container \"copy-token\" mounts the volume \"uploadbucket-token\"",
                "remove that volumeMount",
            ],
        ),
        (
            "pod-volume-name-taken",
            [
                "already has a volume named \"uploadbucket-token\"",
                "rename that volume",
            ],
        ),
    ];
    assert_eq!(denied.len(), expect.len(), "{denied:#?}");
    for (stem, needles) in expect {
        let message = &denied
            .iter()
            .find(|(s, _)| s == stem)
            .unwrap_or_else(|| panic!("{stem} not denied"))
            .1;
        for n in needles {
            assert!(message.contains(n), "{stem}: {message:?} lacks {n:?}");
        }
    }
}

fn apply(pod: &Pod, patch: &json_patch::Patch) -> Pod {
    let mut doc = serde_json::to_value(pod).unwrap();
    json_patch::patch(&mut doc, patch).expect("patch applies to the pod it was made for");
    serde_json::from_value(doc).expect("patched pod is a Pod")
}

fn env_of<'a>(c: &'a k8s_openapi::api::core::v1::Container, name: &str) -> Vec<&'a str> {
    c.env
        .iter()
        .flatten()
        .filter(|e| e.name == name)
        .map(|e| e.value.as_deref().unwrap_or(""))
        .collect()
}

#[test]
fn patched_pods_have_one_signer_and_reinvocation_adds_nothing() {
    let all = buckets();
    let mut injected = 0;
    for (stem, pod) in pods() {
        let Outcome::Inject(patch) = decide(&pod, &all) else {
            continue;
        };
        injected += 1;
        let patched = apply(&pod, &patch);
        let spec = patched.spec.as_ref().unwrap();
        let signers: Vec<_> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .filter(|c| c.name == inject::CONTAINER_NAME)
            .collect();
        assert_eq!(signers.len(), 1, "{stem}");
        let signer = signers[0];
        // Native sidecar, first among init containers, so it runs before them.
        assert_eq!(
            spec.init_containers.as_ref().unwrap()[0].name,
            inject::CONTAINER_NAME,
            "{stem}"
        );
        assert_eq!(signer.restart_policy.as_deref(), Some("Always"));
        assert_eq!(
            env_of(signer, "UPLOADBUCKET_BUCKET"),
            ["shop-photos-3f9a1c"]
        );
        assert_eq!(
            env_of(signer, "AWS_ROLE_ARN"),
            ["arn:aws:iam::123456789012:role/uploadbucket/ub-shop-photos-3f9a1c"]
        );
        assert_eq!(
            env_of(signer, "UPLOADBUCKET_ALLOWED_CONTENT_TYPES"),
            ["image/jpeg,image/png"]
        );
        // The token reaches the signer only.
        let token_mounts = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .filter(|c| {
                c.volume_mounts
                    .iter()
                    .flatten()
                    .any(|m| m.name == inject::TOKEN_VOLUME)
            })
            .count();
        assert_eq!(token_mounts, 1, "{stem}");
        let token_volumes: Vec<_> = spec
            .volumes
            .iter()
            .flatten()
            .filter(|v| v.name == inject::TOKEN_VOLUME)
            .collect();
        assert_eq!(token_volumes.len(), 1, "{stem}");
        let projection = token_volumes[0]
            .projected
            .as_ref()
            .unwrap()
            .sources
            .as_ref()
            .unwrap()[0]
            .service_account_token
            .as_ref()
            .unwrap();
        assert_eq!(projection.audience.as_deref(), Some("sts.amazonaws.com"));
        // Every app container finds the signer, once.
        for c in &spec.containers {
            assert_eq!(
                env_of(c, inject::ENV_SIGNER_URL).len(),
                1,
                "{stem}/{}",
                c.name
            );
        }
        // Whatever was there is still there.
        assert_eq!(
            spec.containers.len(),
            pod.spec.as_ref().unwrap().containers.len()
        );
        assert_eq!(
            spec.volumes.iter().flatten().count(),
            pod.spec.as_ref().unwrap().volumes.iter().flatten().count() + 1
        );
        assert_eq!(decide(&patched, &all), Outcome::AlreadyInjected, "{stem}");
    }
    assert_eq!(injected, 2);
}

#[test]
fn port_annotation_moves_the_signer_and_the_app_url() {
    let all = buckets();
    let (_, pod) = pods()
        .into_iter()
        .find(|(s, _)| s == "pod-existing-lists")
        .unwrap();
    let Outcome::Inject(patch) = decide(&pod, &all) else {
        panic!("not injected")
    };
    let patched = apply(&pod, &patch);
    let spec = patched.spec.unwrap();
    let signer = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(env_of(signer, "UPLOADBUCKET_LISTEN"), ["127.0.0.1:9090"]);
    let app = &spec.containers[0];
    assert_eq!(
        env_of(app, inject::ENV_SIGNER_URL),
        ["http://127.0.0.1:9090"]
    );
    assert_eq!(env_of(app, "LOG_LEVEL"), ["info"]);
}

/// The metrics-only listener: on from the operator's setting or the pod's annotation (which
/// may also turn it off), with a named container port and the label the PodMonitor selects;
/// bad or clashing ports refused with the annotation named.
#[test]
fn metrics_port_from_the_setting_or_the_annotation() {
    let all = buckets();
    let (_, base) = pods().into_iter().find(|(s, _)| s == "pod-basic").unwrap();
    let with = |annotation: Option<&str>| {
        let mut pod = base.clone();
        if let Some(a) = annotation {
            pod.metadata
                .annotations
                .get_or_insert_default()
                .insert(inject::ANNOTATION_METRICS_PORT.into(), a.into());
        }
        pod
    };
    let on = Settings {
        metrics_port: Some(9464),
        ..settings()
    };
    let signer_of = |pod: &Pod, s: &Settings| {
        let Outcome::Inject(patch) = inject::inject(pod, "shop", find(&all, "shop", "photos"), s)
        else {
            panic!("not injected")
        };
        let patched = apply(pod, &patch);
        let labels = patched.metadata.labels.clone().unwrap_or_default();
        let signer = patched.spec.unwrap().init_containers.unwrap().remove(0);
        (signer, labels)
    };
    let mut labelled = with(None);
    labelled.metadata.labels = Some([("app".to_owned(), "web".to_owned())].into());
    for (pod, s, want) in [
        (with(None), &on, Some(9464)),
        (labelled, &on, Some(9464)),
        (with(Some("9100")), &settings(), Some(9100)),
        (with(Some(" 9100 ")), &on, Some(9100)),
        (with(Some("off")), &on, None),
        (with(None), &settings(), None),
    ] {
        let (signer, labels) = signer_of(&pod, s);
        let listen: Vec<String> = want.iter().map(|p| format!("0.0.0.0:{p}")).collect();
        assert_eq!(env_of(&signer, "UPLOADBUCKET_METRICS_LISTEN"), listen);
        let ports: Vec<(Option<String>, i32)> = signer
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone(), p.container_port))
            .collect();
        assert_eq!(
            ports,
            want.map(|p| (Some(inject::METRICS_PORT_NAME.to_owned()), p))
                .into_iter()
                .collect::<Vec<_>>()
        );
        assert_eq!(
            labels.get(inject::LABEL_SIGNER_METRICS).map(String::as_str),
            want.map(|_| "true")
        );
        // The signing API stays on loopback.
        assert_eq!(env_of(&signer, "UPLOADBUCKET_LISTEN"), ["127.0.0.1:8787"]);
        // The pod's own labels are kept.
        for (k, v) in pod.metadata.labels.iter().flatten() {
            assert_eq!(labels.get(k), Some(v));
        }
    }
    for (value, says) in [
        ("80", "1024 to 65535"),
        ("metrics", "1024 to 65535"),
        ("8787", "the signer's own port"),
    ] {
        let Outcome::Deny(message) = inject::inject(
            &with(Some(value)),
            "shop",
            find(&all, "shop", "photos"),
            &on,
        ) else {
            panic!("{value} not refused")
        };
        assert!(
            message.contains(inject::ANNOTATION_METRICS_PORT) && message.contains(says),
            "{message}"
        );
    }
    // A port an app container already uses.
    let mut pod = with(Some("8080"));
    pod.spec.as_mut().unwrap().containers[0].ports =
        Some(vec![k8s_openapi::api::core::v1::ContainerPort {
            container_port: 8080,
            ..Default::default()
        }]);
    let Outcome::Deny(message) = inject::inject(&pod, "shop", find(&all, "shop", "photos"), &on)
    else {
        panic!("clash not refused")
    };
    assert!(
        message.contains("already uses port 8080")
            && message.contains(inject::ANNOTATION_METRICS_PORT),
        "{message}"
    );
}

#[test]
fn without_irsa_there_is_no_role_and_no_token() {
    let all = buckets();
    let (_, pod) = pods().into_iter().find(|(s, _)| s == "pod-basic").unwrap();
    let s = Settings {
        irsa: false,
        native_sidecar: false,
        ..settings()
    };
    let Outcome::Inject(patch) = inject::inject(&pod, "shop", find(&all, "shop", "photos"), &s)
    else {
        panic!("not injected")
    };
    let patched = apply(&pod, &patch);
    let spec = patched.spec.unwrap();
    assert!(spec.volumes.is_none());
    let signer = spec
        .containers
        .iter()
        .find(|c| c.name == inject::CONTAINER_NAME)
        .unwrap();
    assert!(signer.restart_policy.is_none());
    assert!(env_of(signer, "AWS_ROLE_ARN").is_empty());
    assert!(signer.volume_mounts.is_none());
}

/// On RGW (no Object Ownership) the signer grants the bucket owner full control of uploads;
/// on AWS it does not (the bucket owner owns every object already).
#[test]
fn rgw_signers_grant_the_bucket_owner_full_control() {
    use crate::aws::rgw::Backend;
    let all = buckets();
    let (_, pod) = pods().into_iter().find(|(s, _)| s == "pod-basic").unwrap();
    for (backend, want) in [(Backend::Rgw, vec!["true"]), (Backend::Aws, vec![])] {
        let s = Settings {
            bucket_owner_full_control: !backend.owner_owns_uploads(),
            ..settings()
        };
        let ub = find(&all, "shop", "photos");
        let Outcome::Inject(patch) = inject::inject(&pod, "shop", ub, &s) else {
            panic!("not injected")
        };
        let spec = apply(&pod, &patch).spec.unwrap();
        let signer = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(
            env_of(signer, "UPLOADBUCKET_BUCKET_OWNER_FULL_CONTROL"),
            want,
            "{backend:?}"
        );
    }
}

/// `uploads.verification` reaches the signer's env: on, and quarantine when asked.
#[test]
fn verification_settings_reach_the_signer() {
    let (_, pod) = pods().into_iter().find(|(s, _)| s == "pod-basic").unwrap();
    for (verification, verify, quarantine) in [
        (serde_json::json!({"enabled": true}), vec!["true"], vec![]),
        (
            serde_json::json!({"enabled": true, "onFailure": "Quarantine"}),
            vec!["true"],
            vec!["true"],
        ),
        (serde_json::json!({}), vec![], vec![]),
    ] {
        let mut all = buckets();
        let photos = all
            .iter_mut()
            .find(|b| b.metadata.name.as_deref() == Some("photos"))
            .unwrap();
        photos.spec.uploads.verification = serde_json::from_value(verification.clone()).unwrap();
        let Outcome::Inject(patch) = decide(&pod, &all) else {
            panic!("not injected")
        };
        let spec = apply(&pod, &patch).spec.unwrap();
        let signer = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(
            env_of(signer, "UPLOADBUCKET_VERIFY"),
            verify,
            "{verification}"
        );
        assert_eq!(
            env_of(signer, "UPLOADBUCKET_VERIFY_QUARANTINE"),
            quarantine,
            "{verification}"
        );
    }
    // uploads.requireOwner too.
    let mut all = buckets();
    let photos = all
        .iter_mut()
        .find(|b| b.metadata.name.as_deref() == Some("photos"))
        .unwrap();
    photos.spec.uploads.require_owner = true;
    let Outcome::Inject(patch) = decide(&pod, &all) else {
        panic!("not injected")
    };
    let spec = apply(&pod, &patch).spec.unwrap();
    let signer = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(env_of(signer, "UPLOADBUCKET_REQUIRE_OWNER"), ["true"]);
}

#[test]
fn a_bucket_without_a_role_is_not_ready_when_irsa_is_on() {
    let mut all = buckets();
    let photos = all
        .iter_mut()
        .find(|b| b.metadata.name.as_deref() == Some("photos"))
        .unwrap();
    photos.status.as_mut().unwrap().role_arn = None;
    let (_, pod) = pods().into_iter().find(|(s, _)| s == "pod-basic").unwrap();
    match decide(&pod, &all) {
        Outcome::Deny(m) => assert!(m.contains("has no IAM role yet"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_example_app_is_injected_for_the_example_bucket() {
    let read =
        |f: &str| std::fs::read_to_string(manifest_dir().join("../examples").join(f)).unwrap();
    let mut ub: UploadBucket = serde_yaml::from_str(&read("uploadbucket.yaml")).unwrap();
    // As the operator leaves it once provisioned.
    ub.status = find(&buckets(), "shop", "photos").unwrap().status.clone();
    let deployment: k8s_openapi::api::apps::v1::Deployment =
        serde_yaml::Deserializer::from_str(&read("app.yaml"))
            .map(|d| serde_yaml::Value::deserialize(d).unwrap())
            .find(|d| d["kind"] == "Deployment")
            .map(|d| serde_yaml::from_value(d).unwrap())
            .unwrap();
    let template = deployment.spec.unwrap().template;
    let pod = Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: template.spec,
        ..Default::default()
    };
    let Outcome::Inject(patch) = inject::inject(&pod, "shop", Some(&ub), &settings()) else {
        panic!("examples/app.yaml is not injected")
    };
    let patched = apply(&pod, &patch);
    let signer = &patched.spec.unwrap().init_containers.unwrap()[0];
    assert_eq!(
        env_of(signer, "UPLOADBUCKET_ALLOWED_CONTENT_TYPES"),
        ["image/jpeg,image/png,image/webp"]
    );
}

// ----- the HTTP handler -----

struct FixtureLookup {
    buckets: Vec<UploadBucket>,
    fail: bool,
    calls: Mutex<Vec<String>>,
}

#[async_trait]
impl BucketLookup for FixtureLookup {
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<UploadBucket>, String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("{namespace}/{name}"));
        if self.fail {
            return Err("connection refused".into());
        }
        Ok(find(&self.buckets, namespace, name).cloned())
    }
}

fn state(fail: bool) -> (WebhookState, Arc<FixtureLookup>) {
    let lookup = Arc::new(FixtureLookup {
        buckets: buckets(),
        fail,
        calls: Mutex::new(Vec::new()),
    });
    (
        WebhookState {
            settings: Arc::new(settings()),
            lookup: lookup.clone(),
            metrics: Arc::new(Metrics::default()),
        },
        lookup,
    )
}

fn review(pod: &Pod, operation: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

async fn post(state: WebhookState, body: String) -> (http::StatusCode, Value) {
    let response = router(state)
        .oneshot(
            Request::post("/mutate")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn pod(stem: &str) -> Pod {
    pods().into_iter().find(|(s, _)| s == stem).unwrap().1
}

#[tokio::test]
async fn mutate_answers_with_the_golden_patch() {
    let (state, lookup) = state(false);
    let metrics = state.metrics.clone();
    let (status, body) = post(state, review(&pod("pod-basic"), "CREATE").to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    let response = &body["response"];
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    // A base64 string, as Go writes []byte (kube's own type writes an array of numbers).
    let patch: Vec<u8> = match &response["patch"] {
        Value::String(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        other => panic!("patch is not a base64 string: {other}"),
    };
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(testdata().join("pod-basic.patch.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&patch).unwrap(), golden);
    assert_eq!(*lookup.calls.lock().unwrap(), ["shop/photos"]);
    assert!(
        metrics
            .encode()
            .contains("uploadbucket_webhook_reviews_total{outcome=\"injected\"} 1")
    );
}

/// The answer is kube's AdmissionReview field for field, but for the patch's encoding: every
/// outcome (injected, denied, skipped, with warnings) written both ways and compared.
#[tokio::test]
async fn the_answer_is_kubes_review_with_a_base64_patch() {
    for (stem, operation) in [
        ("pod-basic", "CREATE"),
        ("pod-wrong-service-account", "CREATE"),
        ("pod-not-requested", "CREATE"),
        ("pod-basic", "UPDATE"),
    ] {
        let (state, _) = state(false);
        let review: AdmissionReview<Pod> =
            serde_json::from_value(review(&pod(stem), operation)).unwrap();
        let request: AdmissionRequest<Pod> = review.try_into().unwrap();
        let mut response = review_pod(&state, &request).await;
        response.warnings = Some(vec!["a warning".into()]);
        response
            .audit_annotations
            .insert("uploadbucket.io/note".into(), "kept".into());
        let mut kubes = serde_json::to_value(response.clone().into_review()).unwrap();
        if let Some(Value::Array(bytes)) = kubes["response"].get("patch") {
            let bytes: Vec<u8> = bytes.iter().map(|b| b.as_u64().unwrap() as u8).collect();
            kubes["response"]["patch"] = base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into();
        }
        let ours = serde_json::to_value(Answer::from(response)).unwrap();
        assert_eq!(ours, kubes, "{stem} {operation}");
    }
}

#[tokio::test]
async fn mutate_denies_with_the_reason() {
    let (state, _) = state(false);
    let (status, body) = post(
        state,
        review(&pod("pod-wrong-service-account"), "CREATE").to_string(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], false);
    let message = body["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("uploadbucket: service account \"default\""),
        "{message}"
    );
    assert!(body["response"].get("patch").is_none());
}

#[tokio::test]
async fn mutate_skips_pods_without_the_annotation_and_updates() {
    let (state, lookup) = state(false);
    let (_, body) = post(
        state.clone(),
        review(&pod("pod-not-requested"), "CREATE").to_string(),
    )
    .await;
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none());
    let (_, body) = post(state, review(&pod("pod-basic"), "UPDATE").to_string()).await;
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none());
    assert!(
        lookup.calls.lock().unwrap().is_empty(),
        "no lookups for pods that do not ask"
    );
}

#[tokio::test]
async fn a_failed_lookup_is_a_denial_not_a_5xx() {
    let (state, _) = state(true);
    let metrics = state.metrics.clone();
    let (status, body) = post(state, review(&pod("pod-basic"), "CREATE").to_string()).await;
    // Counted as an error (the operator's trouble), not as a denial of a pod.
    let text = metrics.encode();
    assert!(
        text.contains("uploadbucket_webhook_reviews_total{outcome=\"error\"} 1")
            && !text.contains("outcome=\"denied\""),
        "{text}"
    );
    assert!(
        text.contains("uploadbucket_webhook_review_duration_seconds_count 1"),
        "{text}"
    );
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], false);
    let message = body["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot read UploadBucket shop/photos")
            && message.contains("connection refused"),
        "{message}"
    );
}

#[tokio::test]
async fn garbage_is_answered_invalid() {
    let (state, _) = state(false);
    let metrics = state.metrics.clone();
    let (status, body) = post(state.clone(), "{not json".into()).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], false);
    assert_eq!(body["response"]["status"]["reason"], "InvalidRequest");
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    let (_, body) = post(
        state,
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string(),
    )
    .await;
    assert_eq!(body["response"]["allowed"], false);
    assert!(
        metrics
            .encode()
            .contains("uploadbucket_webhook_reviews_total{outcome=\"invalid\"} 2")
    );
}

// ----- TLS -----

fn write_cert(dir: &Path, names: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap()
            .self_signed(&key)
            .unwrap();
    // Each file is replaced whole (write, then rename), as a mounted Secret's are.
    for (name, text) in [("tls.key", key.serialize_pem()), ("tls.crt", cert.pem())] {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
    cert.pem()
}

#[test]
fn bad_certificate_files_name_the_file() {
    let dir = tempdir();
    assert!(matches!(
        tls::CertStore::load(&dir),
        Err(tls::TlsError::Read { .. })
    ));
    std::fs::write(dir.join("tls.crt"), "hello").unwrap();
    std::fs::write(dir.join("tls.key"), "world").unwrap();
    let e = tls::CertStore::load(&dir).unwrap_err().to_string();
    assert!(e.contains("tls.crt") && e.contains("no CERTIFICATE"), "{e}");
    // A key that does not belong to the certificate.
    write_cert(&dir, &["a.example"]);
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.join("tls.key"), other.serialize_pem()).unwrap();
    let e = tls::CertStore::load(&dir).unwrap_err().to_string();
    assert!(e.contains("tls.key") && e.contains("does not match"), "{e}");
}

#[test]
fn reload_swaps_only_on_change() {
    let dir = tempdir();
    write_cert(&dir, &["a.example"]);
    let store = tls::CertStore::load(&dir).unwrap();
    assert!(!store.reload().unwrap());
    write_cert(&dir, &["b.example"]);
    assert!(store.reload().unwrap());
    std::fs::write(dir.join("tls.key"), "broken").unwrap();
    assert!(store.reload().is_err(), "a broken update is reported");
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ub-webhook-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

#[tokio::test]
async fn serves_mutate_over_tls_and_picks_up_a_rotated_certificate() {
    let dir = tempdir();
    let first = write_cert(&dir, &["webhook.test"]);
    std::fs::write(dir.join("ca-1.pem"), &first).unwrap();
    let certs = Arc::new(tls::CertStore::load(&dir).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (state, _) = state(false);
    let server = tokio::spawn(tls::serve(
        listener,
        router(state),
        certs,
        std::time::Duration::from_millis(200),
    ));
    let body = dir.join("review.json");
    std::fs::write(&body, review(&pod("pod-basic"), "CREATE").to_string()).unwrap();
    let (d, b) = (dir.clone(), body.clone());
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || curl(&d, &b, port, "ca-1.pem"))
        .await
        .unwrap();
    assert!(ok, "{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");

    // Rotate: the new certificate is served without a restart; the old CA no longer verifies.
    let second = write_cert(&dir, &["webhook.test"]);
    std::fs::write(dir.join("ca-2.pem"), &second).unwrap();
    // Picked up at a reload tick (200 ms here): poll for it, with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (d, b) = (dir.clone(), body.clone());
        let (ok_new, _, stderr_new) =
            tokio::task::spawn_blocking(move || curl(&d, &b, port, "ca-2.pem"))
                .await
                .unwrap();
        if ok_new {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was not served within 10 s: {stderr_new}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (d, b) = (dir.clone(), body.clone());
    let (ok_old, _, _) = tokio::task::spawn_blocking(move || curl(&d, &b, port, "ca-1.pem"))
        .await
        .unwrap();
    assert!(!ok_old, "the replaced certificate is no longer served");
    server.abort();
}

/// POSTs the review file with curl, trusting only `ca`; (success, stdout, stderr).
fn curl(dir: &Path, body: &Path, port: u16, ca: &str) -> (bool, String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--http1.1", "--cacert"])
        .arg(dir.join(ca))
        .args(["--resolve", &format!("webhook.test:{port}:127.0.0.1")])
        .args(["-H", "content-type: application/json", "--data-binary"])
        .arg(format!("@{}", body.display()))
        .arg(format!("https://webhook.test:{port}/mutate"))
        .output()
        .expect("curl runs (tests/run.sh installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn env_pairs(c: &Value) -> Vec<(String, String)> {
    c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// EKS Pod Identity: the signer gets the agent's address and a token with EKS's audience, in
/// its own volume; the app gets neither. Whichever webhook runs first: EKS's is told to skip
/// every other container, and what it gave them already is taken out (the user's own
/// container-credential settings stay).
#[test]
fn pod_identity_credentials_reach_the_signer_only() {
    let all = buckets();
    let pod_identity = Settings {
        pod_identity_agent_url: Some("http://169.254.170.23/v1/credentials".into()),
        ..settings()
    };
    let eks_env = json!([
        {"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": "http://169.254.170.23/v1/credentials"},
        {"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "value": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"},
        {"name": "AWS_REGION", "value": "eu-west-1"}
    ]);
    let eks_mount = json!({"name": "eks-pod-identity-token", "mountPath": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount", "readOnly": true});
    let before_eks: Pod = serde_json::from_value(json!({
        "metadata": {"namespace": "shop", "annotations": {
            "uploadbucket.io/inject": "photos", "eks.amazonaws.com/skip-containers": "debug"}},
        "spec": {"serviceAccountName": "web",
            "initContainers": [{"name": "migrate", "image": "m"}],
            "containers": [{"name": "app", "image": "a"}, {"name": "local", "image": "l",
                "env": [{"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": "http://127.0.0.1:9911/creds"}]}]}
    }))
    .unwrap();
    let after_eks: Pod = serde_json::from_value(json!({
        "metadata": {"namespace": "shop", "annotations": {"uploadbucket.io/inject": "photos"}},
        "spec": {"serviceAccountName": "web",
            "volumes": [{"name": "eks-pod-identity-token", "projected": {"sources": [{"serviceAccountToken": {"audience": "pods.eks.amazonaws.com", "path": "eks-pod-identity-token"}}]}}],
            "initContainers": [{"name": "migrate", "image": "m", "env": eks_env, "volumeMounts": [eks_mount]}],
            "containers": [{"name": "app", "image": "a", "env": eks_env,
                "volumeMounts": [eks_mount, {"name": "data", "mountPath": "/data"}]}]}
    }))
    .unwrap();
    for (case, pod, skip) in [
        (
            "before EKS's webhook",
            &before_eks,
            "app,debug,local,migrate",
        ),
        ("after EKS's webhook", &after_eks, "app,migrate"),
    ] {
        let Outcome::Inject(patch) =
            inject::inject(pod, "shop", find(&all, "shop", "photos"), &pod_identity)
        else {
            panic!("{case}: not injected");
        };
        let p = serde_json::to_value(apply(pod, &patch)).unwrap();
        assert_eq!(
            p["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"], skip,
            "{case}"
        );
        let inits = p["spec"]["initContainers"].as_array().unwrap();
        let signer = &inits[0];
        assert_eq!(signer["name"], inject::CONTAINER_NAME, "{case}");
        let env = env_pairs(signer);
        let has = |k: &str, v: &str| env.iter().any(|(a, b)| a == k && b == v);
        assert!(
            has(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials"
            ),
            "{case}: {env:?}"
        );
        assert!(
            has(
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                "/var/run/secrets/uploadbucket.io/serviceaccount/eks-pod-identity-token"
            ),
            "{case}: {env:?}"
        );
        assert!(
            !env.iter()
                .any(|(k, _)| k.starts_with("AWS_ROLE_ARN") || k == "AWS_WEB_IDENTITY_TOKEN_FILE"),
            "{case}: {env:?}"
        );
        let volume = p["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == inject::TOKEN_VOLUME)
            .expect("the signer's token volume");
        let token = &volume["projected"]["sources"][0]["serviceAccountToken"];
        assert_eq!(token["audience"], "pods.eks.amazonaws.com", "{case}");
        assert_eq!(token["path"], "eks-pod-identity-token", "{case}");
        // No other container holds credentials EKS gave, nor mounts its token.
        for c in inits[1..]
            .iter()
            .chain(p["spec"]["containers"].as_array().unwrap())
        {
            let env = env_pairs(c);
            assert!(
                !env.iter()
                    .any(|(k, v)| k == "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
                        || (k == "AWS_CONTAINER_CREDENTIALS_FULL_URI"
                            && v.contains("169.254.170.23"))),
                "{case}: {} has {env:?}",
                c["name"]
            );
            assert!(
                !c["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|m| m["name"] == "eks-pod-identity-token"
                        || m["name"] == inject::TOKEN_VOLUME),
                "{case}: {}",
                c["name"]
            );
        }
        let app = &p["spec"]["containers"][0];
        let app_env = env_pairs(app);
        assert!(
            app_env.iter().any(|(k, _)| k == inject::ENV_SIGNER_URL),
            "{case}"
        );
        if case == "after EKS's webhook" {
            // What was not EKS's credentials stays.
            assert!(app_env.contains(&("AWS_REGION".into(), "eu-west-1".into())));
            assert_eq!(
                app["volumeMounts"],
                json!([{"name": "data", "mountPath": "/data"}])
            );
        } else {
            let local = env_pairs(&p["spec"]["containers"][1]);
            assert!(
                local.contains(&(
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
                    "http://127.0.0.1:9911/creds".into()
                )),
                "{local:?}"
            );
        }
    }
    // IRSA mode leaves EKS's annotation alone.
    let Outcome::Inject(patch) = inject::inject(
        &before_eks,
        "shop",
        find(&all, "shop", "photos"),
        &settings(),
    ) else {
        panic!("not injected");
    };
    let p = serde_json::to_value(apply(&before_eks, &patch)).unwrap();
    assert_eq!(
        p["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"],
        "debug"
    );
}

/// Pod Identity, on reinvocation (another webhook added a container after ours ran, and EKS's
/// gave it credentials): the new container joins the skip list and loses what EKS gave it,
/// however the agent's address is spelled; the signer keeps its own. A pod that already holds
/// a container of the signer's name gets the same. A container mounting its own token for
/// EKS's audience is refused.
#[test]
fn pod_identity_holds_on_reinvocation_and_refuses_own_eks_tokens() {
    let all = buckets();
    let settings = Settings {
        pod_identity_agent_url: Some("http://169.254.170.23/v1/credentials".into()),
        ..settings()
    };
    let ub = find(&all, "shop", "photos");
    let Outcome::Inject(patch) =
        inject::inject(&pod_identity_pod(json!([])), "shop", ub, &settings)
    else {
        panic!("not injected");
    };
    let mut injected = serde_json::to_value(apply(&pod_identity_pod(json!([])), &patch)).unwrap();
    // Another webhook adds a proxy; EKS's gives it credentials, in spellings of its address.
    for (uri, token) in [
        (
            "http://169.254.170.23/v1/credentials",
            "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token",
        ),
        (
            "HTTP://169.254.170.23:80/v1/credentials",
            "/var/run/secrets//pods.eks.amazonaws.com/serviceaccount/./eks-pod-identity-token",
        ),
        (
            "http://[FD00:EC2:0::23]/v1/credentials",
            "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token",
        ),
    ] {
        let mut pod = injected.clone();
        pod["spec"]["containers"].as_array_mut().unwrap().push(json!({
            "name": "istio-proxy", "image": "proxy",
            "env": [{"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": uri},
                    {"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "value": token}],
            "volumeMounts": [{"name": "eks-pod-identity-token", "mountPath": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"}]
        }));
        let pod: Pod = serde_json::from_value(pod).unwrap();
        let Outcome::Inject(again) = inject::inject(&pod, "shop", ub, &settings) else {
            panic!("{uri}: nothing done on reinvocation");
        };
        let p = serde_json::to_value(apply(&pod, &again)).unwrap();
        assert_eq!(
            p["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"], "app,istio-proxy",
            "{uri}"
        );
        let proxy = &p["spec"]["containers"][1];
        assert_eq!(proxy["env"], json!([]), "{uri}");
        assert_eq!(proxy["volumeMounts"], json!([]), "{uri}");
        let signer = &p["spec"]["initContainers"][0];
        assert!(
            env_pairs(signer)
                .iter()
                .any(|(k, _)| k == "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
            "{uri}"
        );
        // Nothing more to do the next time.
        let settled: Pod = serde_json::from_value(p).unwrap();
        assert_eq!(
            inject::inject(&settled, "shop", ub, &settings),
            Outcome::AlreadyInjected
        );
    }
    // A pod that brings a container named like the signer: the others are still skipped.
    let squat: Pod = serde_json::from_value(json!({
        "metadata": {"namespace": "shop", "annotations": {"uploadbucket.io/inject": "photos"}},
        "spec": {"serviceAccountName": "web", "containers": [
            {"name": "app", "image": "a"}, {"name": inject::CONTAINER_NAME, "image": "fake"}]}
    }))
    .unwrap();
    let Outcome::Inject(patch) = inject::inject(&squat, "shop", ub, &settings) else {
        panic!("the squatter's pod is left to EKS");
    };
    let p = serde_json::to_value(apply(&squat, &patch)).unwrap();
    assert_eq!(
        p["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"],
        "app"
    );
    // Its own token for EKS's audience: refused, naming the container and the volume.
    injected = serde_json::to_value(pod_identity_pod(
        json!([{"name": "my-token", "projected": {"sources": [
        {"serviceAccountToken": {"audience": "pods.eks.amazonaws.com", "path": "t"}}]}}]),
    ))
    .unwrap();
    injected["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "my-token", "mountPath": "/t"}]);
    let pod: Pod = serde_json::from_value(injected).unwrap();
    match inject::inject(&pod, "shop", ub, &settings) {
        Outcome::Deny(m) => assert!(
            m.contains("\"app\"")
                && m.contains("\"my-token\"")
                && m.contains("pods.eks.amazonaws.com"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    // The same pod in IRSA mode is none of this webhook's business.
    assert!(matches!(
        inject::inject(&pod, "shop", ub, &self::settings()),
        Outcome::Inject(_)
    ));
}

/// A plain pod for `photos` running as `web`, with these volumes.
fn pod_identity_pod(volumes: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"namespace": "shop", "annotations": {"uploadbucket.io/inject": "photos"}},
        "spec": {"serviceAccountName": "web", "volumes": volumes, "containers": [{"name": "app", "image": "a"}]}
    }))
    .unwrap()
}

/// `uploads.auth.jwt` reaches the signer through the env contract, every field, and parses
/// back to the same settings the signer will run with.
#[test]
fn jwt_settings_reach_the_signer() {
    let (_, pod) = pods().into_iter().find(|(s, _)| s == "pod-basic").unwrap();
    let mut all = buckets();
    let photos = all
        .iter_mut()
        .find(|b| b.metadata.name.as_deref() == Some("photos"))
        .unwrap();
    photos.spec.uploads.auth = serde_json::from_value(json!({"jwt": {
        "issuer": "https://login.example.com/",
        "audiences": ["api://uploads", "spa"],
        "jwksURI": "https://login.example.com/keys",
        "ownerClaim": "email",
        "requiredClaims": {"scope": "uploads:write", "groups": "uploaders"}
    }}))
    .unwrap();
    let Outcome::Inject(patch) = decide(&pod, &all) else {
        panic!("not injected")
    };
    let spec = apply(&pod, &patch).spec.unwrap();
    let signer = &spec.init_containers.as_ref().unwrap()[0];
    for (var, want) in [
        ("UPLOADBUCKET_JWT_ISSUER", "https://login.example.com/"),
        ("UPLOADBUCKET_JWT_AUDIENCES", "api://uploads,spa"),
        (
            "UPLOADBUCKET_JWT_JWKS_URI",
            "https://login.example.com/keys",
        ),
        ("UPLOADBUCKET_JWT_OWNER_CLAIM", "email"),
        (
            "UPLOADBUCKET_JWT_REQUIRED_CLAIMS",
            "groups=uploaders,scope=uploads:write",
        ),
    ] {
        assert_eq!(env_of(signer, var), vec![want], "{var}");
    }
    // Without it, none of them.
    let Outcome::Inject(patch) = decide(&pod, &buckets()) else {
        panic!("not injected")
    };
    let spec = apply(&pod, &patch).spec.unwrap();
    let signer = &spec.init_containers.as_ref().unwrap()[0];
    assert!(
        !signer
            .env
            .iter()
            .flatten()
            .any(|e| e.name.starts_with("UPLOADBUCKET_JWT_")),
        "{:?}",
        signer.env
    );
}
