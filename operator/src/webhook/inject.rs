//! Sidecar injection, pure: a Pod and the UploadBucket it names in, a JSON patch (or a
//! refusal a person can act on) out. No client, no clock; the handler in `mod.rs` looks the
//! UploadBucket up and turns the outcome into an AdmissionResponse.
//!
//! What a pod annotated `uploadbucket.io/inject: <name>` gets:
//! - a container `uploadbucket-signer` (a native sidecar: an init container with
//!   `restartPolicy: Always`, so it is listening before the app starts and stops after it),
//!   configured through the sidecar's env contract from the UploadBucket's spec and status;
//! - a projected service-account token mounted into the signer only: audience
//!   `sts.amazonaws.com` with `AWS_ROLE_ARN` / `AWS_WEB_IDENTITY_TOKEN_FILE` (IRSA), or
//!   audience `pods.eks.amazonaws.com` with `AWS_CONTAINER_CREDENTIALS_FULL_URI` /
//!   `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (EKS Pod Identity, whose own webhook is told to
//!   skip the app's containers, and whose variables are taken out of them if it came first);
//! - `UPLOADBUCKET_SIGNER_URL` in every app container, so apps need not hard-code the port;
//! - the annotation `uploadbucket.io/injected: <bucket>` for whoever reads the pod later.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, ExecAction, PodSpec, Probe,
    ProjectedVolumeSource, ResourceRequirements, SeccompProfile, SecurityContext,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{Value, json};
use uploadbucket_sidecar::config::Config;

use crate::controller::status::{BUCKET_READY, ROLE_READY};
use crate::crd::{OnFailure, UploadBucket};

/// Pod annotation naming the UploadBucket (in the pod's namespace) to sign for.
pub const ANNOTATION_INJECT: &str = "uploadbucket.io/inject";
/// Optional pod annotation: the loopback port the signer listens on (default 8787).
pub const ANNOTATION_PORT: &str = "uploadbucket.io/port";
/// Optional pod annotation: the port of the signer's metrics-only listener on the pod IP, or
/// `off` (overrides the operator's `--sidecar-metrics-port`).
pub const ANNOTATION_METRICS_PORT: &str = "uploadbucket.io/metrics-port";
/// Set on pods whose signer serves metrics on the pod IP: what the chart's PodMonitor selects.
pub const LABEL_SIGNER_METRICS: &str = "uploadbucket.io/signer-metrics";
/// Label of every pod the signer was injected into: what a NetworkPolicy selects to let the
/// pods that sign reach STS, S3 or an identity provider (a policy applies to the whole pod:
/// Kubernetes has no per-container egress rules).
pub const LABEL_SIGNER: &str = "uploadbucket.io/signer";
/// Name of the signer's metrics port (what the PodMonitor scrapes).
pub const METRICS_PORT_NAME: &str = "ub-metrics";
/// Set on injected pods: the bucket the signer signs for.
pub const ANNOTATION_INJECTED: &str = "uploadbucket.io/injected";
/// Name of the injected container.
pub const CONTAINER_NAME: &str = "uploadbucket-signer";
/// Name of the projected token volume.
pub const TOKEN_VOLUME: &str = "uploadbucket-token";
/// Where the token is mounted in the signer.
pub const TOKEN_DIR: &str = "/var/run/secrets/uploadbucket.io/serviceaccount";
/// The token's file name in [`TOKEN_DIR`] under EKS Pod Identity.
pub const POD_IDENTITY_TOKEN: &str = "eks-pod-identity-token";
/// Audience of EKS Pod Identity tokens.
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";
/// Pod annotation of EKS's own webhook: containers it gives no Pod Identity credentials.
pub const ANNOTATION_EKS_SKIP: &str = "eks.amazonaws.com/skip-containers";
/// What EKS's webhook adds to every container it does not skip: its volume, mounted here,
/// and the two variables of the container credential provider.
const EKS_VOLUME: &str = "eks-pod-identity-token";
const ENV_CONTAINER_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
const ENV_CONTAINER_TOKEN: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
/// Env var pointing app containers at the signer.
pub const ENV_SIGNER_URL: &str = "UPLOADBUCKET_SIGNER_URL";
/// Default port of the signer.
pub const DEFAULT_PORT: u16 = 8787;

/// How injected containers look; from the operator's flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Image of the signer.
    pub image: String,
    /// `imagePullPolicy` of the signer; `None` leaves Kubernetes' default.
    pub image_pull_policy: Option<String>,
    /// Inject as a native sidecar (init container with `restartPolicy: Always`, Kubernetes
    /// 1.29+) rather than as a plain container.
    pub native_sidecar: bool,
    /// Whether the operator manages upload roles: then the pod gets the role and a token.
    pub irsa: bool,
    /// EKS Pod Identity (credential mode `pod-identity`): where the agent serves
    /// credentials. `None`: IRSA.
    pub pod_identity_agent_url: Option<String>,
    /// Audience of the projected token (what STS expects).
    pub token_audience: String,
    /// Lifetime of the projected token; the kubelet renews it at 80%.
    pub token_expiration_seconds: i64,
    /// S3 endpoint written into signed URLs (S3-compatible stores); `None` for AWS.
    pub endpoint_url: Option<String>,
    /// Path-style URLs (S3-compatible stores).
    pub path_style: bool,
    /// STS endpoint for the web-identity exchange (S3-compatible stores); `None` for AWS.
    pub sts_endpoint_url: Option<String>,
    /// Uploads grant the bucket owner full control (stores without S3 Object Ownership,
    /// such as Ceph RGW, where objects otherwise belong to the uploading web identity).
    pub bucket_owner_full_control: bool,
    /// The operator's S3 backend, which the signer needs for backend-only requests.
    pub s3_backend: uploadbucket_sidecar::config::S3Backend,
    /// CPU request of the signer (a Kubernetes quantity).
    pub cpu_request: String,
    /// CPU limit of the signer; `None`: no limit.
    pub cpu_limit: Option<String>,
    /// Memory request of the signer.
    pub memory_request: String,
    /// Memory limit of the signer.
    pub memory_limit: String,
    /// Port of the signer's metrics-only listener on the pod IP; `None`: no such listener
    /// unless the pod's annotation asks.
    pub metrics_port: Option<u16>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            image: "uploadbucket/sidecar:latest".into(),
            image_pull_policy: None,
            native_sidecar: true,
            irsa: true,
            pod_identity_agent_url: None,
            token_audience: "sts.amazonaws.com".into(),
            token_expiration_seconds: 86_400,
            endpoint_url: None,
            path_style: false,
            sts_endpoint_url: None,
            bucket_owner_full_control: false,
            s3_backend: Default::default(),
            cpu_request: "10m".into(),
            cpu_limit: None,
            memory_request: "16Mi".into(),
            memory_limit: "64Mi".into(),
            metrics_port: None,
        }
    }
}

/// What to do with a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The pod does not ask for a signer.
    NotRequested,
    /// The pod already has the signer (re-invocation, or a pod created from an injected
    /// pod's spec): nothing to add.
    AlreadyInjected,
    /// Admit with this patch.
    Inject(Patch),
    /// Refuse the pod, with a message saying what to change.
    Deny(String),
}

/// The UploadBucket name a pod asks for, if it asks.
pub fn requested(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION_INJECT)
        .map(String::as_str)
}

/// Decides what `pod` (in `namespace`) gets, given the UploadBucket its annotation names
/// (`None` when there is no such object).
pub fn inject(
    pod: &Pod,
    namespace: &str,
    bucket: Option<&UploadBucket>,
    settings: &Settings,
) -> Outcome {
    let Some(name) = requested(pod) else {
        return Outcome::NotRequested;
    };
    let Some(spec) = pod.spec.as_ref() else {
        return Outcome::Deny("the pod has no spec".into());
    };
    if has_signer(spec) {
        // Reinvoked after another webhook changed the pod (or the pod came with a container
        // of the signer's name): under Pod Identity, whatever containers it now has get no
        // credentials from EKS's webhook either.
        if settings.pod_identity_agent_url.is_some() && settings.irsa {
            let mut ops = Vec::new();
            app_containers(pod, spec, None, true, 0, &mut ops);
            if !ops.is_empty() {
                return Outcome::Inject(Patch(ops));
            }
        }
        return Outcome::AlreadyInjected;
    }
    match plan(pod, spec, namespace, name, bucket, settings) {
        Ok(patch) => Outcome::Inject(patch),
        Err(message) => Outcome::Deny(message),
    }
}

fn has_signer(spec: &PodSpec) -> bool {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.name == CONTAINER_NAME)
}

fn plan(
    pod: &Pod,
    spec: &PodSpec,
    namespace: &str,
    name: &str,
    bucket: Option<&UploadBucket>,
    settings: &Settings,
) -> Result<Patch, String> {
    let name = name.trim();
    if !valid_object_name(name) {
        return Err(format!(
            "annotation {ANNOTATION_INJECT}: {name:?} is not an UploadBucket name; it must name an UploadBucket in namespace {namespace:?} (lowercase letters, digits, '-' and '.')"
        ));
    }
    let Some(ub) = bucket else {
        return Err(format!(
            "annotation {ANNOTATION_INJECT}: namespace {namespace:?} has no UploadBucket {name:?}; create it first (kubectl get uploadbuckets -n {namespace}) or fix the annotation"
        ));
    };
    if spec.host_network == Some(true) {
        return Err(format!(
            "the pod uses hostNetwork, so the signer would listen on the node's 127.0.0.1 and every process on the node could have upload URLs signed; remove hostNetwork: true from the pod, or remove the {ANNOTATION_INJECT} annotation"
        ));
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    if let Some(c) = containers.clone().find(|c| {
        c.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == TOKEN_VOLUME)
    }) {
        return Err(format!(
            "container {:?} mounts the volume {TOKEN_VOLUME:?}, which holds the signer's AWS web-identity token and is for the signer only; remove that volumeMount (the app asks the signer at $UPLOADBUCKET_SIGNER_URL instead)",
            c.name
        ));
    }
    if settings.pod_identity_agent_url.is_some() {
        // Under Pod Identity the service account's credentials are the upload role's: a
        // container with a token of EKS's audience could ask the agent for them itself.
        let own_tokens: Vec<&str> = spec
            .volumes
            .iter()
            .flatten()
            .filter(|v| v.name != EKS_VOLUME)
            .filter(|v| {
                v.projected
                    .iter()
                    .flat_map(|p| p.sources.iter().flatten())
                    .any(|s| {
                        s.service_account_token
                            .as_ref()
                            .is_some_and(|t| t.audience.as_deref() == Some(POD_IDENTITY_AUDIENCE))
                    })
            })
            .map(|v| v.name.as_str())
            .collect();
        if let Some((c, v)) = containers.clone().find_map(|c| {
            c.volume_mounts
                .iter()
                .flatten()
                .find(|m| own_tokens.contains(&m.name.as_str()))
                .map(|m| (c, m.name.clone()))
        }) {
            return Err(format!(
                "container {:?} mounts volume {v:?}, a service-account token for {POD_IDENTITY_AUDIENCE}: with EKS Pod Identity that token gets the upload role's credentials, which are for the signer only; remove the volume (the app asks the signer at $UPLOADBUCKET_SIGNER_URL instead)",
                c.name
            ));
        }
    }
    let port = port(pod)?;
    check_port_free(spec, port, ANNOTATION_PORT)?;
    let metrics_port = metrics_port(pod, settings)?;
    if let Some(m) = metrics_port {
        if m == port {
            return Err(format!(
                "annotation {ANNOTATION_METRICS_PORT}: {m} is the signer's own port; pick another"
            ));
        }
        check_port_free(spec, m, ANNOTATION_METRICS_PORT)?;
    }
    if spec
        .volumes
        .iter()
        .flatten()
        .any(|v| v.name == TOKEN_VOLUME)
    {
        return Err(format!(
            "the pod already has a volume named {TOKEN_VOLUME:?}, which the signer needs; rename that volume"
        ));
    }
    let service_account = spec
        .service_account_name
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let allowed = &ub.spec.service_account_names;
    if !allowed.is_empty() && !allowed.iter().any(|a| a == service_account) {
        return Err(format!(
            "service account {service_account:?} may not use UploadBucket {namespace}/{name}: its spec.serviceAccountNames allows {}; run the pod as one of them (spec.serviceAccountName) or add {service_account:?} to that list",
            allowed.join(", ")
        ));
    }
    let status = ub.status.clone().unwrap_or_default();
    let (Some(bucket_name), Some(region)) = (status.bucket_name.clone(), status.region.clone())
    else {
        return Err(not_ready(namespace, name, ub, "has no bucket yet"));
    };
    if !condition_true(ub, BUCKET_READY) {
        return Err(not_ready(namespace, name, ub, "has no usable bucket"));
    }
    let role_arn = if settings.irsa {
        match (&status.role_arn, condition_true(ub, ROLE_READY)) {
            (Some(arn), true) => Some(arn.clone()),
            _ => return Err(not_ready(namespace, name, ub, "has no IAM role yet")),
        }
    } else {
        None
    };

    let config = Config {
        bucket: bucket_name.clone(),
        region: Some(region.clone()),
        listen: format!("127.0.0.1:{port}")
            .parse()
            .expect("loopback address"),
        key_prefix: ub.spec.uploads.key_prefix.clone(),
        allowed_content_types: ub.spec.uploads.allowed_content_types.clone(),
        max_size_bytes: ub.spec.uploads.max_size_bytes.max(1) as u64,
        expires_seconds: ub.spec.uploads.expires_seconds.max(1) as u64,
        endpoint_url: settings.endpoint_url.clone(),
        path_style: settings.path_style,
        allow_non_loopback: false,
        allowed_metadata: Vec::new(),
        allow_unsized_put: ub.spec.uploads.allow_unsized_put,
        public_read: ub.spec.uploads.public_read,
        bucket_owner_full_control: settings.bucket_owner_full_control,
        s3_backend: settings.s3_backend,
        verify: ub.spec.uploads.verification.enabled,
        verify_quarantine: ub.spec.uploads.verification.on_failure == OnFailure::Quarantine,
        require_owner: ub.spec.uploads.require_owner,
        urls_per_minute: ub.spec.uploads.limits.urls_per_minute.max(0) as u32,
        max_open_multipart: ub.spec.uploads.limits.open_multipart_uploads.max(0) as u32,
        // Every address of the pod's network namespace: its IP (and loopback).
        metrics_listen: metrics_port.map(|m| std::net::SocketAddr::from(([0, 0, 0, 0], m))),
        jwt: ub
            .spec
            .uploads
            .auth
            .jwt
            .as_ref()
            .map(crate::crd::JwtSpec::signer_config)
            .unwrap_or_default(),
    };
    let container = signer_container(&config, &region, role_arn.as_deref(), settings);

    let mut ops = Vec::new();
    let add = |ops: &mut Vec<PatchOperation>, path: &[&str], value: Value| {
        ops.push(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(path.iter().copied()),
            value,
        }));
    };
    let container = serde_json::to_value(container).expect("container serializes");
    match (settings.native_sidecar, spec.init_containers.as_ref()) {
        // First among init containers: the others may want to upload too.
        (true, Some(inits)) if !inits.is_empty() => {
            add(&mut ops, &["spec", "initContainers", "0"], container)
        }
        (true, _) => add(&mut ops, &["spec", "initContainers"], json!([container])),
        (false, _) => add(&mut ops, &["spec", "containers", "-"], container),
    }
    if role_arn.is_some() {
        let volume = serde_json::to_value(token_volume(settings)).expect("volume serializes");
        match spec.volumes.as_ref() {
            Some(v) if !v.is_empty() => add(&mut ops, &["spec", "volumes", "-"], volume),
            _ => add(&mut ops, &["spec", "volumes"], json!([volume])),
        }
    }
    let url = format!("http://127.0.0.1:{port}");
    let pod_identity = role_arn.is_some() && settings.pod_identity_agent_url.is_some();
    // Native sidecars go first among init containers, so the others' indexes move by one;
    // JSON Patch applies in order, and the signer's add comes first.
    let init_offset = usize::from(settings.native_sidecar);
    app_containers(pod, spec, Some(&url), pod_identity, init_offset, &mut ops);
    // `requested` found an annotation, so the map exists.
    add(
        &mut ops,
        &["metadata", "annotations", ANNOTATION_INJECTED],
        json!(bucket_name),
    );
    let mut labels = vec![LABEL_SIGNER];
    if metrics_port.is_some() {
        labels.push(LABEL_SIGNER_METRICS);
    }
    match pod.metadata.labels.as_ref() {
        Some(l) if !l.is_empty() => {
            for label in labels {
                add(&mut ops, &["metadata", "labels", label], json!("true"));
            }
        }
        _ => add(
            &mut ops,
            &["metadata", "labels"],
            Value::Object(
                labels
                    .into_iter()
                    .map(|l| (l.into(), json!("true")))
                    .collect(),
            ),
        ),
    }
    Ok(Patch(ops))
}

/// The patch for the pod's own containers (every container but the signer): the signer's
/// URL in app containers (`signer_url`), and under Pod Identity (`pod_identity`) none of the
/// credentials EKS's webhook gives every container it does not skip: its variables and token
/// mount are taken out where it ran first, and `eks.amazonaws.com/skip-containers` lists them
/// all for when it runs later, or again. `init_offset`: how far the signer's own insertion
/// moves the init containers.
fn app_containers(
    pod: &Pod,
    spec: &PodSpec,
    signer_url: Option<&str>,
    pod_identity: bool,
    init_offset: usize,
    ops: &mut Vec<PatchOperation>,
) {
    let mut add = |path: &[&str], value: Value| {
        ops.push(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(path.iter().copied()),
            value,
        }));
    };
    let mut names = Vec::new();
    for (list, containers, offset) in [
        ("containers", Some(&spec.containers), 0),
        ("initContainers", spec.init_containers.as_ref(), init_offset),
    ] {
        for (i, c) in containers.into_iter().flatten().enumerate() {
            if c.name == CONTAINER_NAME {
                continue;
            }
            names.push(c.name.clone());
            let index = (i + offset).to_string();
            let mut env: Vec<EnvVar> = c.env.clone().unwrap_or_default();
            let mut mounts: Vec<VolumeMount> = c.volume_mounts.clone().unwrap_or_default();
            let stripped = pod_identity && {
                let (e, m) = (env.len(), mounts.len());
                env.retain(|v| !from_eks(v));
                mounts.retain(|m| m.name != EKS_VOLUME);
                env.len() != e || mounts.len() != m
            };
            let url = signer_url
                .filter(|_| list == "containers")
                .filter(|_| !env.iter().any(|e| e.name == ENV_SIGNER_URL))
                .map(|u| self::env(ENV_SIGNER_URL, u));
            if stripped {
                // Whole lists only where something is taken out; otherwise an append, which
                // keeps whatever fields of the pod this build does not know.
                env.extend(url);
                add(
                    &["spec", list, &index, "env"],
                    serde_json::to_value(&env).expect("env serializes"),
                );
                add(
                    &["spec", list, &index, "volumeMounts"],
                    serde_json::to_value(&mounts).expect("mounts serialize"),
                );
            } else if let Some(url) = url {
                let url = serde_json::to_value(&url).expect("env serializes");
                match c.env.as_ref() {
                    Some(e) if !e.is_empty() => add(&["spec", list, &index, "env", "-"], url),
                    _ => add(&["spec", list, &index, "env"], json!([url])),
                }
            }
        }
    }
    if pod_identity {
        let listed = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_EKS_SKIP));
        let mut skip: Vec<String> = listed
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty() && s != CONTAINER_NAME)
                    .collect()
            })
            .unwrap_or_default();
        skip.extend(names);
        skip.sort();
        skip.dedup();
        let skip = skip.join(",");
        if listed != Some(&skip) {
            add(
                &["metadata", "annotations", ANNOTATION_EKS_SKIP],
                json!(skip),
            );
        }
    }
}

fn not_ready(namespace: &str, name: &str, ub: &UploadBucket, what: &str) -> String {
    let why = ub
        .condition(crate::controller::status::READY)
        .map(|c| format!(" (Ready={}, {}: {})", c.status, c.reason, c.message))
        .unwrap_or_default();
    format!(
        "UploadBucket {namespace}/{name} {what}{why}; the pod is refused until it is ready (kubectl get uploadbucket {name} -n {namespace}); its controller will retry"
    )
}

fn condition_true(ub: &UploadBucket, type_: &str) -> bool {
    ub.condition(type_).is_some_and(|c| c.status == "True")
}

/// RFC 1123 subdomain, as object names are.
fn valid_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The pod's annotation `name`, if set, as a port the signer (non-root) can listen on;
/// `off` too where `off_allowed`, as `None`.
fn annotated_port(pod: &Pod, name: &str, off_allowed: bool) -> Option<Result<Option<u16>, String>> {
    let raw = pod.metadata.annotations.as_ref()?.get(name)?;
    Some(match raw.trim() {
        "off" if off_allowed => Ok(None),
        p => match p.parse::<u16>() {
            Ok(p) if p >= 1024 => Ok(Some(p)),
            _ => Err(format!(
                "annotation {name}: {raw:?} is not a port the signer can use; allowed: 1024 to 65535 (the signer runs as non-root){}",
                if off_allowed { ", or off" } else { "" }
            )),
        },
    })
}

fn port(pod: &Pod) -> Result<u16, String> {
    match annotated_port(pod, ANNOTATION_PORT, false) {
        None => Ok(DEFAULT_PORT),
        Some(p) => Ok(p?.unwrap_or(DEFAULT_PORT)),
    }
}

/// The metrics-only listener's port: the pod's annotation, else the operator's setting.
fn metrics_port(pod: &Pod, settings: &Settings) -> Result<Option<u16>, String> {
    annotated_port(pod, ANNOTATION_METRICS_PORT, true).unwrap_or(Ok(settings.metrics_port))
}

fn check_port_free(spec: &PodSpec, port: u16, annotation: &str) -> Result<(), String> {
    let taken = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| {
            c.ports
                .iter()
                .flatten()
                .any(|p| p.container_port == i32::from(port))
        });
    match taken {
        Some(c) => Err(format!(
            "container {:?} already uses port {port}, where the signer would listen; pick another with the annotation {annotation}",
            c.name
        )),
        None => Ok(()),
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn signer_container(
    config: &Config,
    region: &str,
    role_arn: Option<&str>,
    settings: &Settings,
) -> Container {
    let mut vars: Vec<EnvVar> = config
        .to_env()
        .into_iter()
        .map(|(k, v)| env(k, v))
        .collect();
    // The SDK's own region (STS is called in the bucket's region).
    vars.push(env("AWS_REGION", region));
    let mut mounts = None;
    if let Some(arn) = role_arn {
        match &settings.pod_identity_agent_url {
            // EKS assumes the role for the pod's service account; the agent hands the
            // session to whoever shows this pod's token.
            Some(agent) => {
                vars.push(env(ENV_CONTAINER_URI, agent.clone()));
                vars.push(env(
                    ENV_CONTAINER_TOKEN,
                    format!("{TOKEN_DIR}/{POD_IDENTITY_TOKEN}"),
                ));
            }
            None => {
                vars.push(env("AWS_ROLE_ARN", arn));
                vars.push(env(
                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                    format!("{TOKEN_DIR}/token"),
                ));
            }
        }
        mounts = Some(vec![VolumeMount {
            name: TOKEN_VOLUME.into(),
            mount_path: TOKEN_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        }]);
    }
    if let Some(sts) = &settings.sts_endpoint_url {
        vars.push(env("AWS_ENDPOINT_URL_STS", sts.clone()));
    }
    // No instance metadata in a pod that has its own identity: fail fast instead of signing
    // as the node. (Pod Identity's agent is the container provider, not instance metadata.)
    vars.push(env("AWS_EC2_METADATA_DISABLED", "true"));
    let ports = config.metrics_listen.map(|m| {
        vec![ContainerPort {
            name: Some(METRICS_PORT_NAME.into()),
            container_port: i32::from(m.port()),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]
    });
    let listen = config.listen.to_string();
    // The kubelet probes from the node, which cannot reach the pod's loopback, so the
    // probe runs inside the container.
    let probe = |path: &str, period: i32, failures: i32| Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "/uploadbucket-sidecar".into(),
                "probe".into(),
                format!("http://{listen}{path}"),
            ]),
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Default::default()
    };
    let quantity = |s: &str| Quantity(s.to_owned());
    Container {
        name: CONTAINER_NAME.into(),
        image: Some(settings.image.clone()),
        image_pull_policy: settings.image_pull_policy.clone(),
        args: Some(vec!["serve".into()]),
        env: Some(vars),
        ports,
        volume_mounts: mounts,
        restart_policy: settings.native_sidecar.then(|| "Always".to_owned()),
        // The app starts once the signer listens (native sidecars hold the next container
        // until their startup probe passes).
        startup_probe: Some(probe("/healthz", 1, 30)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), quantity(&settings.cpu_request)),
                ("memory".into(), quantity(&settings.memory_request)),
            ])),
            limits: Some(
                [
                    ("memory", Some(&settings.memory_limit)),
                    ("cpu", settings.cpu_limit.as_ref()),
                ]
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_owned(), quantity(v?.as_str()))))
                .collect(),
            ),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            run_as_group: Some(65532),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A variable EKS's webhook sets for Pod Identity: the agent's address (however spelled) or a
/// token file of EKS's.
fn from_eks(v: &EnvVar) -> bool {
    let value = v.value.as_deref().unwrap_or_default();
    match v.name.as_str() {
        ENV_CONTAINER_URI => value.parse::<axum::http::Uri>().ok().is_some_and(|u| {
            let host = u.host().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            match host.parse::<std::net::IpAddr>() {
                Ok(ip) => [
                    std::net::IpAddr::from([169, 254, 170, 23]),
                    std::net::IpAddr::from([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23]),
                ]
                .contains(&ip),
                Err(_) => false,
            }
        }),
        ENV_CONTAINER_TOKEN => value.contains("pods.eks.amazonaws.com"),
        _ => false,
    }
}

fn token_volume(settings: &Settings) -> Volume {
    Volume {
        name: TOKEN_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(match settings.pod_identity_agent_url {
                    Some(_) => ServiceAccountTokenProjection {
                        audience: Some(POD_IDENTITY_AUDIENCE.into()),
                        expiration_seconds: Some(settings.token_expiration_seconds),
                        path: POD_IDENTITY_TOKEN.into(),
                    },
                    None => ServiceAccountTokenProjection {
                        audience: Some(settings.token_audience.clone()),
                        expiration_seconds: Some(settings.token_expiration_seconds),
                        path: "token".into(),
                    },
                }),
                ..Default::default()
            }]),
            default_mode: None,
        }),
        ..Default::default()
    }
}
