//! Command line: `uploadbucket-operator [run]` and `uploadbucket-operator crd`.
//!
//! In: flags and their environment variables. Out: a running controller and admin server,
//! or the CRD YAML on stdout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tracing::info;

use crate::aws::rgw::Backend;
use crate::aws::s3::{S3Buckets, S3Options};
use crate::controller::{self, Context, desired::Defaults};
use crate::metrics::Metrics;

#[derive(Parser, Debug)]
#[command(
    name = "uploadbucket-operator",
    version,
    about = "Kubernetes operator for UploadBucket: S3 buckets for direct browser uploads"
)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the controller (the default).
    Run(Box<RunArgs>),
    /// Print the UploadBucket CustomResourceDefinition as YAML.
    Crd,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Region of buckets whose spec names none. Default: the AWS SDK's (AWS_REGION, profile).
    #[arg(long, env = "UPLOADBUCKET_REGION")]
    pub region: Option<String>,
    /// S3 endpoint of an S3-compatible store (e.g. http://rgw.example:7480). Default: AWS.
    #[arg(long, env = "UPLOADBUCKET_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Path-style S3 addressing, needed by most S3-compatible stores.
    #[arg(long, env = "UPLOADBUCKET_S3_PATH_STYLE")]
    pub s3_path_style: bool,
    /// Which S3 implementation: `aws` or `rgw` (Ceph RADOS Gateway, with its gaps worked around).
    #[arg(long, env = "UPLOADBUCKET_S3_BACKEND", value_enum, default_value_t = Backend::Aws)]
    pub s3_backend: Backend,
    /// Prefix of every bucket name, e.g. your company name: derived names get it, and a
    /// `spec.bucketName` without it is refused. Scope the operator's IAM policy to it
    /// (`arn:aws:s3:::<prefix>*`).
    #[arg(long, env = "UPLOADBUCKET_BUCKET_NAME_PREFIX", default_value = "", value_parser = name_prefix)]
    pub bucket_name_prefix: String,
    /// Existing buckets an UploadBucket may adopt (with `spec.adoptExistingBucket: true`),
    /// comma-separated names or patterns with `*` (e.g. `legacy-photos,media-*`). Default:
    /// none. Any namespace that may create UploadBuckets can adopt a listed bucket that no
    /// other UploadBucket manages, so list only buckets meant for tenants. A listed bucket
    /// is never emptied or deleted, whatever its tags say: with `deletionPolicy: Delete`,
    /// deleting its UploadBucket only releases it.
    #[arg(long, env = "UPLOADBUCKET_ADOPTABLE_BUCKETS", value_delimiter = ',', value_parser = adoptable_pattern)]
    pub adoptable_buckets: Vec<String>,
    /// Seconds between full re-checks of each bucket (repairs drift made behind our back).
    /// An object's first re-check comes at a point its uid fixes, half a period to one and a
    /// half after its first pass, so objects made together are re-checked spread out.
    #[arg(long, env = "UPLOADBUCKET_RESYNC_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(10..))]
    pub resync_seconds: u64,
    /// Most UploadBuckets reconciled at once (0: no limit). Each holds S3 and IAM
    /// connections while it runs; a burst of new objects beyond this waits its turn.
    #[arg(
        long,
        env = "UPLOADBUCKET_MAX_CONCURRENT_RECONCILES",
        default_value_t = 16
    )]
    pub max_concurrent_reconciles: u16,
    /// Most of those slots one namespace may hold at once, so that one tenant's failing or
    /// slow objects cannot take them all. 0: three quarters of --max-concurrent-reconciles
    /// (at least 1). The last quarter of the slots goes only to namespaces holding none.
    #[arg(
        long,
        env = "UPLOADBUCKET_MAX_CONCURRENT_RECONCILES_PER_NAMESPACE",
        default_value_t = 0
    )]
    pub max_concurrent_reconciles_per_namespace: u16,
    /// Longest wait for one attempt of one AWS call (connect to answer), in seconds. A call is
    /// tried at most --aws-max-attempts times, so a slow or unreachable endpoint holds a
    /// reconcile slot at most about attempts × this long.
    #[arg(long, env = "UPLOADBUCKET_AWS_ATTEMPT_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub aws_attempt_timeout_seconds: u64,
    /// Attempts per AWS call. Throttling (`SlowDown`, `Throttling`, `TooManyRequests`), 5xx
    /// answers and dropped connections are retried with the SDK's adaptive mode: a rate
    /// limiter per client that slows every call of the operator down while the service
    /// throttles.
    #[arg(long, env = "UPLOADBUCKET_AWS_MAX_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub aws_max_attempts: u32,
    /// Watch only this namespace. Default: all namespaces.
    #[arg(long, env = "UPLOADBUCKET_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Reconcile only the UploadBuckets whose labels match this selector (e.g.
    /// `shard=a`, `tier in (gold,silver)`), to split a cluster's objects between operators.
    /// Objects outside it are left alone, finalizers included. Not a boundary between
    /// tenants: whoever may edit an object may change its labels (and so which operator, if
    /// any, acts on it); use --watch-namespace for that. Default: all of them.
    #[arg(long, env = "UPLOADBUCKET_WATCH_SELECTOR")]
    pub watch_selector: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "UPLOADBUCKET_ADMIN_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub admin_listen: SocketAddr,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "UPLOADBUCKET_LOG_JSON")]
    pub log_json: bool,
    /// How the signers' pods get their upload role's credentials: `irsa` (a projected
    /// service-account token exchanged with STS; needs --oidc-provider-arn or --oidc-issuer)
    /// or `pod-identity` (EKS Pod Identity: the operator keeps an association per service
    /// account; needs --eks-cluster-arn and the EKS Pod Identity Agent add-on).
    #[arg(long, env = "UPLOADBUCKET_CREDENTIAL_MODE", value_enum, default_value_t = CredentialMode::Irsa)]
    pub credential_mode: CredentialMode,
    /// ARN of the EKS cluster (arn:aws:eks:<region>:<account>:cluster/<name>), for
    /// --credential-mode pod-identity: its associations, and the upload roles' trust.
    #[arg(long, env = "UPLOADBUCKET_EKS_CLUSTER_ARN")]
    pub eks_cluster_arn: Option<String>,
    /// EKS endpoint of an EKS-compatible API (tests). Default: AWS.
    #[arg(long, env = "UPLOADBUCKET_EKS_ENDPOINT")]
    pub eks_endpoint: Option<String>,
    /// IAM ARN of the cluster's OIDC provider (arn:aws:iam::<account>:oidc-provider/<issuer>).
    /// Enables an IRSA role per UploadBucket. Without it (and without --oidc-issuer) no roles
    /// are managed.
    #[arg(long, env = "UPLOADBUCKET_OIDC_PROVIDER_ARN")]
    pub oidc_provider_arn: Option<String>,
    /// The cluster's service-account issuer (e.g. https://oidc.eks.eu-west-1.amazonaws.com/id/ABC),
    /// when the provider ARN is not given: the ARN is built with the account id.
    #[arg(
        long,
        env = "UPLOADBUCKET_OIDC_ISSUER",
        conflicts_with = "oidc_provider_arn"
    )]
    pub oidc_issuer: Option<String>,
    /// The operator's AWS account id (12 digits). With --s3-backend aws every bucket call
    /// names it as the bucket's expected owner, so S3 refuses buckets of other accounts; also
    /// the account of --oidc-issuer's provider ARN. Default: asked of STS (GetCallerIdentity);
    /// when set, STS is still asked (once, 5 s) and start-up fails if it names another.
    #[arg(long, env = "UPLOADBUCKET_AWS_ACCOUNT_ID", value_parser = account_id)]
    pub aws_account_id: Option<String>,
    /// IAM path of the roles the operator creates.
    #[arg(
        long,
        env = "UPLOADBUCKET_IAM_ROLE_PATH",
        default_value = "/uploadbucket/"
    )]
    pub iam_role_path: String,
    /// ARN of a permissions boundary policy attached to every role.
    #[arg(long, env = "UPLOADBUCKET_IAM_PERMISSIONS_BOUNDARY")]
    pub iam_permissions_boundary: Option<String>,
    /// IAM endpoint of an IAM-compatible service (e.g. Ceph RGW). Default: AWS.
    #[arg(long, env = "UPLOADBUCKET_IAM_ENDPOINT")]
    pub iam_endpoint: Option<String>,
    /// Elect a leader through a Lease, so that several replicas can run: each serves the
    /// webhook, only the leader reconciles. A leader that loses its Lease exits.
    #[arg(long, env = "UPLOADBUCKET_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Namespace of the leader Lease. Default: POD_NAMESPACE, else `default`.
    #[arg(long, env = "UPLOADBUCKET_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "UPLOADBUCKET_LEADER_ELECTION_LEASE",
        default_value = "uploadbucket-operator"
    )]
    pub leader_election_lease: String,
    /// Seconds a leader holds the Lease without renewing it; a standby takes over after that.
    #[arg(long, env = "UPLOADBUCKET_LEADER_ELECTION_LEASE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=300))]
    pub leader_election_lease_seconds: u64,
    /// On SIGTERM, keep answering the webhook this many seconds (not ready meanwhile) before
    /// exiting, so that the API server stops sending reviews here before nothing answers
    /// them: endpoints drop a terminating pod a moment after it gets the signal, and a
    /// review sent to a pod that is gone waits out the webhook's timeout and fails the pod.
    #[arg(long, env = "UPLOADBUCKET_SHUTDOWN_DELAY_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub shutdown_delay_seconds: u64,
    #[command(flatten)]
    pub webhook: WebhookArgs,
}

/// The sidecar-injecting admission webhook.
#[derive(Args, Debug, Clone)]
pub struct WebhookArgs {
    /// Directory with the webhook's serving certificate (tls.crt, tls.key), e.g. a mounted
    /// kubernetes.io/tls Secret; re-read when it changes. Without it the webhook is off.
    #[arg(long, env = "UPLOADBUCKET_WEBHOOK_CERT_DIR")]
    pub webhook_cert_dir: Option<std::path::PathBuf>,
    /// Address the webhook serves HTTPS on.
    #[arg(
        long,
        env = "UPLOADBUCKET_WEBHOOK_LISTEN",
        default_value = "0.0.0.0:8443"
    )]
    pub webhook_listen: SocketAddr,
    /// Image of the injected signer.
    #[arg(long, env = "UPLOADBUCKET_SIDECAR_IMAGE", default_value = concat!("uploadbucket/sidecar:", env!("CARGO_PKG_VERSION")))]
    pub sidecar_image: String,
    /// imagePullPolicy of the injected signer (Always, IfNotPresent, Never). Default: Kubernetes'.
    #[arg(long, env = "UPLOADBUCKET_SIDECAR_IMAGE_PULL_POLICY", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub sidecar_image_pull_policy: Option<String>,
    /// Inject a native sidecar (init container with restartPolicy Always; Kubernetes 1.29+),
    /// which starts before the app and outlives it. `false` adds a plain container.
    #[arg(long, env = "UPLOADBUCKET_SIDECAR_NATIVE", default_value_t = true, action = clap::ArgAction::Set)]
    pub sidecar_native: bool,
    /// S3 endpoint the signer writes into URLs; browsers must reach it. Default: --s3-endpoint.
    #[arg(long, env = "UPLOADBUCKET_SIDECAR_S3_ENDPOINT")]
    pub sidecar_s3_endpoint: Option<String>,
    /// STS endpoint the signer exchanges its token at (S3-compatible stores). Default: AWS.
    #[arg(long, env = "UPLOADBUCKET_SIDECAR_STS_ENDPOINT")]
    pub sidecar_sts_endpoint: Option<String>,
    /// Lifetime of the signer's projected service-account token (the kubelet renews it).
    #[arg(long, env = "UPLOADBUCKET_SIDECAR_TOKEN_SECONDS", default_value_t = 86_400, value_parser = clap::value_parser!(i64).range(600..))]
    pub sidecar_token_seconds: i64,
    /// Where the EKS Pod Identity Agent serves credentials, for --credential-mode
    /// pod-identity (http://[fd00:ec2::23]/v1/credentials on IPv6 clusters).
    #[arg(
        long,
        env = "UPLOADBUCKET_SIDECAR_POD_IDENTITY_AGENT_URL",
        default_value = "http://169.254.170.23/v1/credentials"
    )]
    pub sidecar_pod_identity_agent_url: String,
    /// CPU request of the signer: millicores such as 10m, or cores such as 0.5; at least
    /// 1m, the smallest amount Kubernetes represents. The signer idles at next to no CPU and
    /// signs a URL in microseconds, so the default suits most pods.
    #[arg(
        long,
        env = "UPLOADBUCKET_SIDECAR_CPU_REQUEST",
        default_value = "10m",
        value_parser = cpu_quantity
    )]
    pub sidecar_cpu_request: String,
    /// CPU limit of the signer, as --sidecar-cpu-request; at least the request. Default: none,
    /// so that a burst of signing is never throttled (the request reserves the signer's share).
    #[arg(long, env = "UPLOADBUCKET_SIDECAR_CPU_LIMIT", value_parser = cpu_quantity)]
    pub sidecar_cpu_limit: Option<String>,
    /// Memory request of the signer, a Kubernetes quantity such as 16Mi; at least 16Mi. The
    /// signer idles at about 5 MiB of RSS (4.7-5.0 MiB in the benchmark of 2026-12-07, with
    /// keys or IRSA), mostly the C library and its own code pages, and each credentials load
    /// runs a helper process of about 11 MiB for some 50 ms in the same container. A request
    /// under what the container uses has the kubelet see the signer above its request, which
    /// puts its pod first in line for eviction when the node runs short of memory; 16Mi covers
    /// the signer, a load's helper, and the page cache and socket buffers the container is
    /// charged for.
    #[arg(
        long,
        env = "UPLOADBUCKET_SIDECAR_MEMORY_REQUEST",
        default_value = "16Mi",
        value_parser = memory_request
    )]
    pub sidecar_memory_request: String,
    /// Memory limit of the signer, a Kubernetes quantity such as 64Mi; at least 32Mi, and at
    /// least --sidecar-memory-request (the API server refuses a pod whose limit is under its
    /// request). The floor: the signer's RSS peaks at 9.5 MiB under the benchmark's load
    /// (POST /uploads at concurrency 64, 2026-12-07), a credentials load adds a helper process
    /// of about 11 MiB for some 50 ms, and the benchmark leaves out work that also takes memory
    /// (JWKS documents of up to 1 MiB fetched over TLS, up to 1,024 remembered tokens,
    /// verification's reads); under about twice that peak an OOM kill would restart the signer
    /// while its pod's uploads fail. A limit such as 8Mi is under even the idle RSS, so the
    /// signer would be killed as it starts, again and again.
    #[arg(
        long,
        env = "UPLOADBUCKET_SIDECAR_MEMORY_LIMIT",
        default_value = "64Mi",
        value_parser = memory_limit
    )]
    pub sidecar_memory_limit: String,
    /// Give every injected signer a metrics-only listener on this port of the pod's IP
    /// (`GET /metrics` and nothing else), for the chart's PodMonitor. A pod's annotation
    /// `uploadbucket.io/metrics-port` (a port, or `off`) overrides it. Default: none.
    #[arg(long, env = "UPLOADBUCKET_SIDECAR_METRICS_PORT", value_parser = clap::value_parser!(u16).range(1024..))]
    pub sidecar_metrics_port: Option<u16>,
}

/// A bucket-name prefix: characters S3 allows in names, at most 40 so derived names keep
/// room for the namespace, name and hash.
fn name_prefix(s: &str) -> Result<String, String> {
    let ok = s.len() <= 40
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && (s.is_empty() || s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a bucket-name prefix; allowed: up to 40 lowercase letters, digits, '-' and '.', starting with a letter or digit, such as \"acme-\""
        ))
    }
}

/// A bucket name or a pattern of one with `*`.
fn adoptable_pattern(s: &str) -> Result<String, String> {
    let s = s.trim();
    let ok = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == '*'
        });
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a bucket name or pattern; allowed: lowercase letters, digits, '-', '.' and '*' for any run of characters, such as \"legacy-*\""
        ))
    }
}

/// Memory suffixes the signer's flags take, with their multipliers (bytes).
const MEMORY_SUFFIXES: &[(&str, f64)] = &[
    ("", 1.0),
    ("k", 1e3),
    ("M", 1e6),
    ("G", 1e9),
    ("T", 1e12),
    ("Ki", 1024.0),
    ("Mi", 1048576.0),
    ("Gi", 1073741824.0),
    ("Ti", 1099511627776.0),
];
/// CPU suffixes: cores, or millicores.
const CPU_SUFFIXES: &[(&str, f64)] = &[("", 1.0), ("m", 0.001)];
/// The least memory request the signer takes (see --sidecar-memory-request).
pub const SIGNER_MIN_MEMORY_REQUEST: &str = "16Mi";
/// The least memory limit the signer takes (see --sidecar-memory-limit).
pub const SIGNER_MIN_MEMORY_LIMIT: &str = "32Mi";

/// A Kubernetes quantity in base units (bytes, cores): a plain decimal number (`64`, `0.5`)
/// with one of `suffixes`. Signs and exponents (`1e3`), which Kubernetes also reads, are
/// refused, as the chart's schema refuses them. `None` when it is none of these.
fn quantity(s: &str, suffixes: &[(&str, f64)]) -> Option<f64> {
    let number = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let (_, scale) = suffixes.iter().find(|(x, _)| *x == &s[number.len()..])?;
    let digits = number.chars().filter(char::is_ascii_digit).count();
    let dots = number.chars().filter(|c| *c == '.').count();
    if digits == 0 || dots > 1 || digits + dots != number.len() {
        return None;
    }
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// Checked here, where the error names the flag, rather than by the API server refusing
/// every injected pod.
fn memory_quantity(s: &str) -> Result<String, String> {
    match quantity(s, MEMORY_SUFFIXES) {
        Some(n) if n > 0.0 => Ok(s.to_owned()),
        _ => Err(format!(
            "{s:?} is not a memory quantity; use a number with Ki, Mi, Gi, Ti, k, M, G or T, such as 64Mi"
        )),
    }
}

/// A memory quantity of at least `floor`; `why` says what the floor is for.
fn memory_at_least(s: &str, floor: &str, why: &str) -> Result<String, String> {
    let s = memory_quantity(s)?;
    let bytes = |q: &str| quantity(q, MEMORY_SUFFIXES).unwrap_or_default();
    if bytes(&s) < bytes(floor) {
        return Err(format!("{s} is below {floor}, {why}"));
    }
    Ok(s)
}

fn memory_request(s: &str) -> Result<String, String> {
    memory_at_least(
        s,
        SIGNER_MIN_MEMORY_REQUEST,
        "the least the signer asks for: it idles at about 5 MiB of RSS, and each credentials load adds a helper process of about 11 MiB for a moment",
    )
}

fn memory_limit(s: &str) -> Result<String, String> {
    memory_at_least(
        s,
        SIGNER_MIN_MEMORY_LIMIT,
        "the least the signer runs in: under load with a credentials load's helper beside it the container uses about 20 MiB, and a signer killed for memory fails its pod's uploads",
    )
}

fn cpu_quantity(s: &str) -> Result<String, String> {
    match quantity(s, CPU_SUFFIXES) {
        Some(n) if n >= 0.001 => Ok(s.to_owned()),
        _ => Err(format!(
            "{s:?} is not a CPU quantity of at least 1m; use millicores such as 10m, or cores such as 0.5"
        )),
    }
}

/// `limit` (a flag and its value) is at least `request`, or the error says which flags to
/// change and why.
fn limit_not_under_request(
    limit: (&str, &str),
    request: (&str, &str),
    suffixes: &[(&str, f64)],
) -> anyhow::Result<()> {
    let env = |flag: &str| {
        format!(
            "UPLOADBUCKET_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        )
    };
    let value = |q: &str| quantity(q, suffixes).unwrap_or_default();
    anyhow::ensure!(
        value(limit.1) >= value(request.1),
        "{} {} ({}) is below {} {} ({}): the API server refuses a container whose limit is under its request, so every pod given a signer would be refused; raise the limit or lower the request",
        limit.0,
        limit.1,
        env(limit.0),
        request.0,
        request.1,
        env(request.0),
    );
    Ok(())
}

impl WebhookArgs {
    /// The signer's requests and limits make a container the API server admits: each limit
    /// at least its request. (Each value's form and floor are checked as the flags are read.)
    pub fn check_resources(&self) -> anyhow::Result<()> {
        limit_not_under_request(
            ("--sidecar-memory-limit", &self.sidecar_memory_limit),
            ("--sidecar-memory-request", &self.sidecar_memory_request),
            MEMORY_SUFFIXES,
        )?;
        if let Some(limit) = &self.sidecar_cpu_limit {
            limit_not_under_request(
                ("--sidecar-cpu-limit", limit),
                ("--sidecar-cpu-request", &self.sidecar_cpu_request),
                CPU_SUFFIXES,
            )?;
        }
        Ok(())
    }

    /// Injection settings; `roles` says whether the operator manages roles and how pods get
    /// their credentials, and the S3 flags are the defaults for the signer's endpoint.
    pub fn settings(
        &self,
        roles: Option<CredentialMode>,
        s3_endpoint: Option<&str>,
        s3_path_style: bool,
        backend: crate::aws::rgw::Backend,
    ) -> crate::webhook::inject::Settings {
        crate::webhook::inject::Settings {
            image: self.sidecar_image.clone(),
            image_pull_policy: self.sidecar_image_pull_policy.clone(),
            native_sidecar: self.sidecar_native,
            irsa: roles.is_some(),
            pod_identity_agent_url: (roles == Some(CredentialMode::PodIdentity))
                .then(|| self.sidecar_pod_identity_agent_url.clone()),
            token_expiration_seconds: self.sidecar_token_seconds,
            endpoint_url: self
                .sidecar_s3_endpoint
                .clone()
                .or(s3_endpoint.map(str::to_owned)),
            path_style: s3_path_style,
            sts_endpoint_url: self.sidecar_sts_endpoint.clone(),
            cpu_request: self.sidecar_cpu_request.clone(),
            cpu_limit: self.sidecar_cpu_limit.clone(),
            memory_request: self.sidecar_memory_request.clone(),
            memory_limit: self.sidecar_memory_limit.clone(),
            metrics_port: self.sidecar_metrics_port,
            bucket_owner_full_control: !backend.owner_owns_uploads(),
            s3_backend: match backend {
                crate::aws::rgw::Backend::Rgw => uploadbucket_sidecar::config::S3Backend::Rgw,
                crate::aws::rgw::Backend::Aws => uploadbucket_sidecar::config::S3Backend::Aws,
            },
            ..Default::default()
        }
    }
}

/// How pods get their credentials: the operator's `--credential-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CredentialMode {
    /// IAM roles for service accounts: a projected token exchanged with STS.
    Irsa,
    /// EKS Pod Identity: EKS assumes the role for associated service accounts.
    PodIdentity,
}

/// `arn:<partition>:eks:<region>:<account>:cluster/<name>`, checked.
fn eks_cluster_arn(arn: &str) -> anyhow::Result<()> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "eks"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5]
            .strip_prefix("cluster/")
            .is_some_and(|n| !n.is_empty() && !n.contains('/'));
    anyhow::ensure!(
        ok,
        "--eks-cluster-arn {arn:?} is not an EKS cluster ARN; expected arn:aws:eks:<region>:<12-digit account>:cluster/<name> (aws eks describe-cluster --name <name> --query cluster.arn)"
    );
    Ok(())
}

/// How upload roles are made, from the flags: `None` when the operator makes none.
/// How upload roles are made, from the flags; `bucket_account`: the operator's account on
/// AWS (the roles' S3 grants reach only its buckets), `None` elsewhere.
pub(crate) async fn role_settings(
    args: &RunArgs,
    sdk: &aws_config::SdkConfig,
    bucket_account: Option<&str>,
) -> anyhow::Result<Option<crate::controller::role::RoleSettings>> {
    let path = &args.iam_role_path;
    anyhow::ensure!(
        path.starts_with('/') && path.ends_with('/'),
        "--iam-role-path {path:?} must start and end with '/'"
    );
    let trust = match args.credential_mode {
        CredentialMode::Irsa => match irsa_trust(args, sdk).await? {
            Some(trust) => trust,
            None => return Ok(None),
        },
        CredentialMode::PodIdentity => {
            anyhow::ensure!(
                args.oidc_provider_arn.is_none() && args.oidc_issuer.is_none(),
                "--oidc-provider-arn and --oidc-issuer are for --credential-mode irsa; with pod-identity give --eks-cluster-arn only"
            );
            let arn = args.eks_cluster_arn.clone().context(
                "--credential-mode pod-identity needs --eks-cluster-arn (arn:aws:eks:<region>:<account>:cluster/<name>)",
            )?;
            eks_cluster_arn(&arn)?;
            crate::controller::role::Trust::PodIdentity { cluster_arn: arn }
        }
    };
    Ok(Some(crate::controller::role::RoleSettings {
        trust,
        role_path: path.clone(),
        permissions_boundary: args.iam_permissions_boundary.clone(),
        tag_roles: args.s3_backend.has_role_tags(),
        bucket_account: bucket_account.map(str::to_owned),
    }))
}

/// The OIDC provider ARN and issuer from the flags, asking STS for the account if needed.
async fn irsa_trust(
    args: &RunArgs,
    sdk: &aws_config::SdkConfig,
) -> anyhow::Result<Option<crate::controller::role::Trust>> {
    let arn = match (&args.oidc_provider_arn, &args.oidc_issuer) {
        (Some(arn), _) => arn.clone(),
        (None, Some(issuer)) => {
            let account = discover_account(args, sdk, "the OIDC provider's ARN").await?;
            let host_path = issuer.trim_start_matches("https://").trim_end_matches('/');
            format!(
                "arn:{}:iam::{account}:oidc-provider/{host_path}",
                crate::aws::policy::partition(sdk.region().map(|r| r.as_ref()).unwrap_or(""))
            )
        }
        (None, None) => return Ok(None),
    };
    let issuer = crate::aws::policy::issuer_of_provider(&arn)
        .with_context(|| format!("--oidc-provider-arn {arn:?} is not an OIDC provider ARN (arn:aws:iam::<account>:oidc-provider/<issuer>)"))?
        .to_owned();
    Ok(Some(crate::controller::role::Trust::Irsa {
        provider_arn: arn,
        issuer,
    }))
}

/// `--aws-account-id`: twelve digits, as AWS writes account ids.
fn account_id(v: &str) -> Result<String, String> {
    if v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()) {
        Ok(v.to_owned())
    } else {
        Err(format!(
            "{v:?} is not an AWS account id: twelve digits, e.g. 123456789012 (aws sts get-caller-identity --query Account)"
        ))
    }
}

/// The operator's AWS account id, from STS GetCallerIdentity (which needs no permission).
/// `--aws-account-id` stands in when STS cannot be reached (asked once, for at most 5 s),
/// and must agree with it when it can: a wrong account would make every bucket call refused
/// as another account's, and the operator's own buckets left behind. `what` says what the
/// account is for, in the errors.
async fn discover_account(
    args: &RunArgs,
    sdk: &aws_config::SdkConfig,
    what: &str,
) -> anyhow::Result<String> {
    let mut config = aws_sdk_sts::config::Builder::from(sdk);
    if args.aws_account_id.is_some() {
        config = config
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(5))
                    .build(),
            );
    }
    let asked = aws_sdk_sts::Client::from_conf(config.build())
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| aws_sdk_sts::error::DisplayErrorContext(e).to_string());
    let said = asked.as_ref().ok().and_then(|out| out.account());
    match (&args.aws_account_id, said) {
        (Some(given), Some(sts)) if given != sts => anyhow::bail!(
            "--aws-account-id {given} is not the account of the operator's credentials: STS GetCallerIdentity names {sts} (the account is needed for {what}); correct the flag (UPLOADBUCKET_AWS_ACCOUNT_ID; chart value irsa.accountId) or leave it out"
        ),
        (Some(given), None) => {
            let why = asked
                .err()
                .unwrap_or_else(|| "no account in the answer".to_owned());
            tracing::warn!(error = %why, account = %given, "STS GetCallerIdentity did not confirm the account; taking --aws-account-id unchecked for {what}");
            Ok(given.clone())
        }
        (Some(given), Some(_)) => Ok(given.clone()),
        (None, Some(sts)) => Ok(sts.to_owned()),
        (None, None) => anyhow::bail!(
            "cannot discover the AWS account id for {what} (STS GetCallerIdentity: {}); set --aws-account-id (UPLOADBUCKET_AWS_ACCOUNT_ID; chart value irsa.accountId)",
            asked
                .err()
                .unwrap_or_else(|| "no account in the answer".to_owned())
        ),
    }
}

/// Makes ring rustls' process-wide provider. The binary links both ring (kube's client) and
/// aws-lc-rs (the AWS SDK's), and with two providers compiled in rustls will not pick one:
/// kube's TLS client would panic at its first connection. Repeatable.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        install_crypto_provider();
        match self.command {
            Some(Command::Crd) => {
                print!("{}", crate::crd::crd_yaml());
                Ok(())
            }
            Some(Command::Run(args)) => run(*args).await,
            None => run(self.run).await,
        }
    }
}

fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,kube=warn,aws=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        // Colours only on a terminal: a pod's log is a file, where escape codes are noise.
        use std::io::IsTerminal;
        builder.with_ansi(std::io::stdout().is_terminal()).init();
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_tracing(args.log_json);
    args.webhook.check_resources()?;
    let attempt = Duration::from_secs(args.aws_attempt_timeout_seconds);
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(
            aws_config::retry::RetryConfig::adaptive().with_max_attempts(args.aws_max_attempts),
        )
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(attempt.min(Duration::from_secs(5)))
                .operation_attempt_timeout(attempt)
                // Every attempt plus the retries' backoff (at most 20 s each in the SDK).
                .operation_timeout((attempt + Duration::from_secs(20)) * args.aws_max_attempts)
                .build(),
        );
    if let Some(region) = &args.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(client) = args.s3_backend.http_client() {
        loader = loader.http_client(client);
    }
    let sdk = loader.load().await;
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .context("no AWS region: set --region / UPLOADBUCKET_REGION or AWS_REGION")?;
    let metrics = Arc::new(Metrics::default());
    // On AWS every bucket call names the account as the bucket's expected owner.
    let account_id = if args.s3_backend.refuses_other_owners() {
        Some(discover_account(&args, &sdk, "the buckets' expected owner").await?)
    } else {
        None
    };
    let buckets = S3Buckets::new(
        sdk.clone(),
        S3Options {
            endpoint_url: args.s3_endpoint.clone(),
            force_path_style: args.s3_path_style,
            interceptors: Vec::new(),
            backend: args.s3_backend,
            metrics: Some(metrics.clone()),
            account_id: account_id.clone(),
        },
    );
    if args.eks_cluster_arn.is_some() && args.credential_mode != CredentialMode::PodIdentity {
        anyhow::bail!("--eks-cluster-arn is for --credential-mode pod-identity");
    }
    let roles = role_settings(&args, &sdk, account_id.as_deref()).await?;
    let iam = roles.as_ref().map(|_| {
        crate::aws::iam::IamRoles::new(&sdk, args.iam_endpoint.as_deref(), metrics.clone())
    });
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration (in-cluster or KUBECONFIG)")?;
    let ready = Arc::new(AtomicBool::new(false));
    let mut ctx = Context::new(
        client,
        Arc::new(buckets),
        Defaults {
            region: region.clone(),
            backend: args.s3_backend,
            bucket_name_prefix: args.bucket_name_prefix.clone(),
            adoptable_buckets: args.adoptable_buckets.clone(),
        },
        metrics.clone(),
        Duration::from_secs(args.resync_seconds),
    )
    .with_s3_endpoint(args.s3_endpoint.clone())
    .with_concurrency(
        args.max_concurrent_reconciles,
        args.max_concurrent_reconciles_per_namespace,
    )
    .with_watch_selector(args.watch_selector.clone());
    match (iam, roles) {
        (Some(iam), Some(settings)) => {
            match &settings.trust {
                crate::controller::role::Trust::Irsa { provider_arn, .. } => {
                    info!(provider = %provider_arn, "Upload roles enabled (IRSA)")
                }
                crate::controller::role::Trust::PodIdentity { cluster_arn } => {
                    info!(cluster = %cluster_arn, "Upload roles enabled (EKS Pod Identity)");
                    ctx = ctx.with_pod_identity(Arc::new(crate::aws::eks::EksAssociations::new(
                        &sdk,
                        cluster_arn,
                        args.eks_endpoint.as_deref(),
                        metrics.clone(),
                    )));
                }
            }
            if settings.permissions_boundary.is_none() && args.s3_backend == Backend::Aws {
                tracing::warn!(
                    "Upload roles get no permissions boundary (--iam-permissions-boundary); see docs/upload-role-boundary.json"
                );
            }
            ctx = ctx.with_roles(Arc::new(iam), settings);
        }
        _ => info!("Upload roles disabled (no --oidc-provider-arn)"),
    }
    let roles_on = ctx.roles.is_some().then_some(args.credential_mode);
    let ctx = Arc::new(ctx);
    // One watch for the webhook and the controller (on standbys, the webhook's alone).
    let objects = Arc::new(crate::watch::Objects::new(
        ctx.client.clone(),
        args.watch_namespace.as_deref(),
        args.watch_selector.clone(),
    ));

    if let Some(dir) = &args.webhook.webhook_cert_dir {
        let certs = Arc::new(
            crate::webhook::tls::CertStore::load(dir)
                .context("cannot load the webhook certificate (--webhook-cert-dir)")?,
        );
        let settings = args.webhook.settings(
            roles_on,
            args.s3_endpoint.as_deref(),
            args.s3_path_style,
            args.s3_backend,
        );
        let state = crate::webhook::WebhookState {
            settings: Arc::new(settings),
            // Watched on every replica, leader or not: standbys serve the webhook too.
            lookup: Arc::new(crate::webhook::CachedLookup::new(
                objects.store(),
                ctx.client.clone(),
            )),
            metrics: metrics.clone(),
        };
        let listen = args.webhook.webhook_listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (--webhook-listen)"))?;
        // The bound address (port 0 picks a free one).
        let address = listener.local_addr().unwrap_or(listen);
        info!(%address, image = %args.webhook.sidecar_image, "Webhook listening");
        tokio::spawn(crate::webhook::tls::serve(
            listener,
            crate::webhook::router(state),
            certs,
            Duration::from_secs(30),
        ));
    } else {
        info!("Webhook disabled (no --webhook-cert-dir)");
    }

    let listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--admin-listen)", args.admin_listen))?;
    let address = listener.local_addr().unwrap_or(args.admin_listen);
    info!(%address, %region, backend = ?args.s3_backend, "Admin server listening");
    let admin = crate::admin::router(crate::admin::AdminState {
        metrics,
        ready: ready.clone(),
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, admin).await {
            tracing::error!(error = %e, "Admin server stopped");
        }
    });
    let result = if args.leader_election {
        lead(ctx, &objects, &args, ready.clone()).await
    } else {
        controller::run(ctx, &objects, args.watch_namespace.clone(), ready.clone()).await
    };
    // Stopped by a signal (a failure exits at once): the webhook and the admin server keep
    // answering for the delay, not ready, while the endpoints drop this pod.
    if result.is_ok() && args.shutdown_delay_seconds > 0 {
        ready.store(false, std::sync::atomic::Ordering::Relaxed);
        info!(
            seconds = args.shutdown_delay_seconds,
            "Stopping: the webhook answers a little longer"
        );
        tokio::time::sleep(Duration::from_secs(args.shutdown_delay_seconds)).await;
    }
    result
}

/// Waits for the leader Lease, then runs the controller for as long as it is held.
async fn lead(
    ctx: Arc<Context>,
    objects: &crate::watch::Objects,
    args: &RunArgs,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let namespace = args
        .leader_election_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    let identity = ["POD_NAME", "HOSTNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| format!("uploadbucket-operator-{}", std::process::id()));
    let lease = &args.leader_election_lease;
    let seconds = args.leader_election_lease_seconds;
    let contend = || async {
        let manager = kube_lease_manager::LeaseManagerBuilder::new(ctx.client.clone(), lease)
            .with_namespace(&namespace)
            .with_identity(&identity)
            .with_duration(seconds)
            .with_grace((seconds / 5).max(1))
            .build()
            .await
            .with_context(|| {
                format!(
                    "cannot use the leader Lease {namespace}/{lease} (coordination.k8s.io; check RBAC)"
                )
            })?;
        anyhow::Ok(manager.watch().await)
    };
    let (mut leading, mut task) = contend().await?;
    // A standby serves the webhook, so it is ready too.
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    info!(%identity, lease = %format!("{namespace}/{lease}"), "Waiting to lead");
    // A standby stops on SIGTERM (a leader's controller stops on it by itself).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot handle SIGTERM")?;
    // The lease manager of a standby reads the Lease only when the holder's last renewal
    // expires, so it would not see a leader that gives the Lease up (SIGTERM) before then,
    // and a replica started meanwhile (the leader's replacement) would lead instead. A
    // standby watches the Lease, and on a release contends again with a new manager, whose
    // first read finds the Lease free.
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(ctx.client.clone(), &namespace);
    let mut release = std::pin::pin!(released(leases.clone(), lease));
    while !*leading.borrow_and_update() {
        tokio::select! {
            // A SIGTERM first: a standby told to stop never starts leading.
            biased;
            _ = term.recv() => {
                info!("Stopping (SIGTERM) while waiting to lead");
                drop(leading);
                task.abort();
                return Ok(());
            }
            changed = leading.changed() => changed.context("leader election stopped")?,
            () = &mut release => {
                info!(%identity, "The leader released the Lease: contending for it now");
                task.abort();
                // A blip of the API server at this moment must not end the standby; a
                // SIGTERM meanwhile does.
                let mut wait = Duration::from_millis(200);
                (leading, task) = loop {
                    let attempt = tokio::select! {
                        biased;
                        _ = term.recv() => {
                            info!("Stopping (SIGTERM) while waiting to lead");
                            return Ok(());
                        }
                        attempt = contend() => attempt,
                    };
                    match attempt {
                        Ok(contending) => break contending,
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "Cannot contend for the Lease yet; retrying");
                            tokio::select! {
                                biased;
                                _ = term.recv() => {
                                    info!("Stopping (SIGTERM) while waiting to lead");
                                    return Ok(());
                                }
                                () = tokio::time::sleep(wait) => {}
                            }
                            wait = (wait * 2).min(Duration::from_secs(5));
                        }
                    }
                };
                release.set(released(leases.clone(), lease));
            }
        }
    }
    info!(%identity, "Leading: starting the controller");
    let lost = async { while leading.changed().await.is_ok() && *leading.borrow() {} };
    let unsure = renewal_watchdog(ctx.client.clone(), &namespace, lease, &identity, seconds);
    let (result, release) = tokio::select! {
        r = controller::run(ctx.clone(), objects, args.watch_namespace.clone(), ready) => (r, true),
        () = lost => (Err(anyhow::anyhow!(
            "lost the leader Lease {namespace}/{lease}; exiting so that only one replica reconciles"
        )), true),
        // Cut off from the API server: releasing the Lease cannot work, so exit at once.
        () = unsure => (Err(anyhow::anyhow!(
            "could not confirm the leader Lease {namespace}/{lease} was renewed in time; stopping before a standby may take it, so that only one replica reconciles"
        )), false),
    };
    if release {
        // Closing the channel releases the Lease, so a standby takes over at once.
        drop(leading);
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    } else {
        task.abort();
    }
    result
}

/// Resolves when the Lease `name` is given up: it had a holder and then none (as a leader's
/// lease manager leaves it on release). A Lease that has no holder when the watch starts does
/// not count: a manager contending now reads it as free by itself.
async fn released(leases: kube::Api<k8s_openapi::api::coordination::v1::Lease>, name: &str) {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut holders = std::pin::pin!(watcher(leases, config).default_backoff().applied_objects());
    let mut held = false;
    while let Some(lease) = holders.next().await {
        let Ok(lease) = lease else { continue };
        let holder = lease.spec.and_then(|s| s.holder_identity);
        if held && holder.is_none() {
            return;
        }
        held = holder.is_some();
    }
    std::future::pending().await
}

/// Resolves when this replica can no longer be sure it holds the Lease. The lease manager
/// keeps trying to renew while the API server is unreachable without telling anyone, and a
/// standby takes the Lease once `renewTime + leaseDuration` has passed; so the leader reads
/// the Lease itself and gives up at [`give_up_after`] of the last renewal it saw, before that.
async fn renewal_watchdog(
    client: kube::Client,
    namespace: &str,
    lease: &str,
    identity: &str,
    duration: u64,
) {
    use k8s_openapi::api::coordination::v1::Lease;
    let leases: kube::Api<Lease> = kube::Api::namespaced(client, namespace);
    let poll = Duration::from_millis(500);
    // Just acquired: renewed now, as far as we know.
    let mut deadline = tokio::time::Instant::now() + give_up_after(duration);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return;
        }
        let read = tokio::time::timeout(left.min(Duration::from_secs(2)), leases.get(lease)).await;
        if let Ok(Ok(l)) = read {
            let spec = l.spec.unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(identity) {
                return;
            }
            if let Some(renewed) = spec.renew_time {
                let renewed: std::time::SystemTime = renewed.0.into();
                let age = std::time::SystemTime::now()
                    .duration_since(renewed)
                    .unwrap_or_default();
                let seen = tokio::time::Instant::now()
                    .checked_sub(age)
                    .unwrap_or_else(tokio::time::Instant::now);
                deadline = deadline.max(seen + give_up_after(duration));
            }
        }
        tokio::time::sleep(
            poll.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
        )
        .await;
    }
}

/// How long after its last renewal a leader stops: the renewal is due `grace` before expiry
/// (a fifth of the duration, at least 1 s), and the leader gives up halfway through that
/// grace, well before a standby may take over.
fn give_up_after(duration: u64) -> Duration {
    let grace = Duration::from_secs((duration / 5).max(1));
    Duration::from_secs(duration) - grace / 2
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_leader_gives_up_after_the_renewal_is_due_and_before_expiry() {
        for duration in [2u64, 15, 60, 300] {
            let stop = super::give_up_after(duration);
            let renewal_due = std::time::Duration::from_secs(duration - (duration / 5).max(1));
            assert!(stop > renewal_due, "{duration}: {stop:?}");
            assert!(
                stop < std::time::Duration::from_secs(duration),
                "{duration}"
            );
        }
    }

    #[test]
    fn prefix_and_adoptable_names_are_checked_naming_what_is_allowed() {
        for ok in ["", "acme-", "a1.b-"] {
            assert_eq!(super::name_prefix(ok).as_deref(), Ok(ok));
        }
        for bad in ["ACME-", "-acme", "acme_", &"a".repeat(41)] {
            let e = super::name_prefix(bad).unwrap_err();
            assert!(e.contains("lowercase letters, digits"), "{bad}: {e}");
        }
        assert_eq!(
            super::adoptable_pattern(" legacy-* ").as_deref(),
            Ok("legacy-*")
        );
        for bad in ["", "Legacy", "a/b", "x?"] {
            let e = super::adoptable_pattern(bad).unwrap_err();
            assert!(e.contains("'*' for any run of characters"), "{bad}: {e}");
        }
        use clap::Parser;
        let cli = super::Cli::try_parse_from([
            "uploadbucket-operator",
            "run",
            "--adoptable-buckets",
            "legacy-photos,media-*",
        ])
        .unwrap();
        let Some(super::Command::Run(args)) = cli.command else {
            panic!("run")
        };
        assert_eq!(args.adoptable_buckets, ["legacy-photos", "media-*"]);
    }

    #[test]
    fn eks_cluster_arns_are_checked() {
        assert!(
            super::eks_cluster_arn("arn:aws:eks:eu-west-1:123456789012:cluster/shop-prod").is_ok()
        );
        assert!(super::eks_cluster_arn("arn:aws-cn:eks:cn-north-1:123456789012:cluster/x").is_ok());
        for bad in [
            "shop-prod",
            "arn:aws:eks:eu-west-1:123456789012:nodegroup/shop/ng",
            "arn:aws:iam::123456789012:cluster/shop",
            "arn:aws:eks:eu-west-1:1234:cluster/shop",
            "arn:aws:eks::123456789012:cluster/shop",
            "arn:aws:eks:eu-west-1:123456789012:cluster/",
        ] {
            let err = super::eks_cluster_arn(bad).unwrap_err().to_string();
            assert!(
                err.contains("--eks-cluster-arn") && err.contains("cluster/<name>"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn memory_quantities() {
        for ok in ["64Mi", "128M", "1Gi", "67108864", "0.5Gi", ".5Gi", "1Ti"] {
            assert_eq!(super::memory_quantity(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "64MB", "", "Mi", "-1Mi", "lots", "1e9", "1.2.3Mi", "0Mi", "64mi",
        ] {
            let e = super::memory_quantity(bad).unwrap_err();
            assert!(e.contains("such as 64Mi"), "{bad}: {e}");
        }
    }

    #[test]
    fn signer_resources_have_floors_and_limits_not_under_requests() {
        assert!(super::memory_limit("32Mi").is_ok() && super::memory_limit("33554432").is_ok());
        for low in ["8Mi", "31Mi", "33M"] {
            let e = super::memory_limit(low).unwrap_err();
            assert!(e.contains("is below 32Mi"), "{low}: {e}");
        }
        assert!(super::memory_request("16Mi").is_ok());
        let e = super::memory_request("10Mi").unwrap_err();
        assert!(e.contains("is below 16Mi"), "{e}");
        for ok in ["1m", "10m", "0.5", "2"] {
            assert_eq!(super::cpu_quantity(ok).as_deref(), Ok(ok));
        }
        for bad in ["0", "0.5m", "10M", "m", "-1"] {
            let e = super::cpu_quantity(bad).unwrap_err();
            assert!(e.contains("at least 1m"), "{bad}: {e}");
        }
        use clap::Parser;
        let parse = |flags: &[&str]| {
            let mut argv = vec!["uploadbucket-operator", "run"];
            argv.extend(flags);
            match super::Cli::try_parse_from(argv).map(|c| c.command) {
                Ok(Some(super::Command::Run(args))) => Ok(args.webhook),
                Ok(_) => panic!("run"),
                Err(e) => Err(e.to_string()),
            }
        };
        let e = parse(&["--sidecar-memory-limit", "8Mi"]).unwrap_err();
        assert!(
            e.contains("--sidecar-memory-limit") && e.contains("below 32Mi"),
            "{e}"
        );
        let defaults = parse(&[]).unwrap();
        defaults.check_resources().unwrap();
        let e = parse(&["--sidecar-memory-request", "128Mi"])
            .unwrap()
            .check_resources()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--sidecar-memory-limit 64Mi (UPLOADBUCKET_SIDECAR_MEMORY_LIMIT) is below --sidecar-memory-request 128Mi"),
            "{e}"
        );
        let e = parse(&[
            "--sidecar-cpu-request",
            "0.5",
            "--sidecar-cpu-limit",
            "100m",
        ])
        .unwrap()
        .check_resources()
        .unwrap_err()
        .to_string();
        assert!(e.contains("--sidecar-cpu-limit 100m"), "{e}");
        parse(&["--sidecar-cpu-request", "1m", "--sidecar-cpu-limit", "1m"])
            .unwrap()
            .check_resources()
            .unwrap();
    }
}
