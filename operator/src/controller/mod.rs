//! The UploadBucket controller: reconcile = finalizer(apply | cleanup).
//!
//! In: UploadBucket watch events. Out: S3 calls (through [`BucketApi`]), status written with
//! server-side apply, Events, metrics. An apply reads top-down, one step to a module, each
//! saying what goes in and what comes out: the provisioning pass
//! ([`provision`](mod@provision): the names and the desired state, pure, from [`desired`] ->
//! prove the bucket is this object's ([`claim`], the one place a bucket becomes ours) ->
//! [`apply`] its settings -> the [`role`] and its [`association`]s -> the [`outputs`]
//! ConfigMap) -> one status write (`outcome`, over [`status`]). The cleanup path
//! ([`cleanup`]) acts only on what is proven the object's own: a bucket [`claim`] proves
//! ours again.

pub mod apply;
pub mod association;
pub mod claim;
pub mod cleanup;
pub mod desired;
mod outcome;
pub mod outputs;
pub mod provision;
pub mod role;
pub mod status;

use crate::reasons::Reason;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as Finalized, finalizer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info, instrument, warn};

use crate::aws::eks::PodIdentityApi;
use crate::aws::iam::IamApi;
use crate::aws::{AwsError, BucketApi};
use crate::crd::UploadBucket;
use crate::metrics::Metrics;
use claim::ClaimError;
use cleanup::cleanup_object;
use desired::{Defaults, SpecError};
use outcome::next_status;
use provision::provision;
use role::RoleSettings;
use status::READY;

/// Finalizer that keeps the object until cleanup has run.
pub const FINALIZER: &str = "uploadbucket.io/cleanup";

/// Wait before retrying a failure a person must fix (a name taken, access denied).
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Longest wait between retries of a transient failure (the store unreachable, throttling):
/// the backoff doubles from 1 s up to this, so an object is back at most this long after an
/// outage ends.
const TRANSIENT_BACKOFF_CAP: Duration = Duration::from_secs(60);

/// Waits (retries and resyncs) are spread by up to this fraction below their nominal length,
/// so objects created or failing together do not come back together.
const JITTER: f64 = 0.25;
/// When a namespace already holds its share of the reconcile slots, its next object waits
/// about this long (jittered) and tries again.
const SHARE_WAIT: Duration = Duration::from_secs(2);

/// Pure: `d` shortened by `fraction` × `r` (`r` in 0..1).
fn spread(d: Duration, fraction: f64, r: f64) -> Duration {
    d.mul_f64(1.0 - fraction * r.clamp(0.0, 1.0))
}

/// A failing object's retry schedule.
struct Backoff {
    /// Consecutive transient failures (0 for a failure a person must fix).
    failures: u32,
    /// No pass before this, unless the spec changes or the object is being deleted.
    until: Instant,
    /// The generation that failed.
    generation: Option<i64>,
}

/// An object's last full, successful pass: until the resync is due, a pass of the same
/// object (same uid, generation, labels and annotations, Ready in status) only checks the
/// outputs ConfigMap, the one output another party may change without touching the object.
/// Such passes come from the operator's own writes (its status, the finalizer, the ConfigMap)
/// and would otherwise re-read every setting in AWS right after writing it.
struct Settled {
    uid: String,
    generation: Option<i64>,
    /// Hash of the labels and annotations: `kubectl annotate` forces a full pass.
    meta: u64,
    at: Instant,
}

impl Settled {
    fn of(ub: &UploadBucket) -> Self {
        Settled {
            uid: ub.uid().unwrap_or_default(),
            generation: ub.metadata.generation,
            meta: meta_hash(ub),
            at: Instant::now(),
        }
    }

    /// How long `ub` can go without a full pass, if this record still describes it.
    fn covers(&self, ub: &UploadBucket, resync: Duration) -> Option<Duration> {
        let ready = ub.status.as_ref().is_some_and(|s| {
            s.observed_generation == ub.metadata.generation
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == READY && c.status == "True")
        });
        (ready
            && self.uid == ub.uid().unwrap_or_default()
            && self.generation == ub.metadata.generation
            && self.meta == meta_hash(ub))
        .then(|| resync.checked_sub(self.at.elapsed()))
        .flatten()
        .filter(|left| !left.is_zero())
    }
}

fn meta_hash(ub: &UploadBucket) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ub.metadata.labels.hash(&mut h);
    ub.metadata.annotations.hash(&mut h);
    h.finish()
}

/// Everything a reconcile needs.
pub struct Context {
    pub client: Client,
    pub buckets: Arc<dyn BucketApi>,
    pub defaults: Defaults,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Periodic re-check of every bucket, which repairs drift made behind our back.
    pub resync: Duration,
    /// Upload roles, when the cluster's OIDC provider (IRSA) or EKS cluster (Pod Identity)
    /// is configured.
    pub roles: Option<(Arc<dyn IamApi>, RoleSettings)>,
    /// EKS Pod Identity associations of the roles (credential mode `pod-identity`).
    pub eks: Option<Arc<dyn PodIdentityApi>>,
    /// The S3 endpoint the operator uses (`None`: AWS), published to workloads in each
    /// object's ConfigMap ([`outputs`]).
    pub s3_endpoint: Option<String>,
    /// Most objects reconciled at once (0: no limit).
    pub concurrency: u16,
    /// Only UploadBuckets whose labels match this selector are reconciled (`None`: all).
    pub watch_selector: Option<String>,
    /// Most reconcile slots one namespace may hold at once (0: no limit), so a tenant's
    /// broken or slow objects cannot take all of [`Context::concurrency`].
    pub namespace_share: u16,
    /// How much waits are spread ([`JITTER`]; tests that check nominal waits set 0).
    pub jitter: f64,
    /// Retry schedules of failing objects.
    failures: Mutex<HashMap<String, Backoff>>,
    /// Last full successful pass of each object.
    settled: Mutex<HashMap<String, Settled>>,
    /// Reconciles running per namespace.
    running: Mutex<HashMap<String, u16>>,
}

/// A reconcile slot held by a namespace; released on drop.
struct Slot<'a> {
    ctx: &'a Context,
    namespace: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut running = lock(&self.ctx.running);
        if let Some(n) = running.get_mut(&self.namespace) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.namespace);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Context {
    pub fn new(
        client: Client,
        buckets: Arc<dyn BucketApi>,
        defaults: Defaults,
        metrics: Arc<Metrics>,
        resync: Duration,
    ) -> Self {
        let reporter = Reporter {
            controller: "uploadbucket-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            buckets,
            defaults,
            metrics,
            resync,
            roles: None,
            eks: None,
            s3_endpoint: None,
            concurrency: 0,
            namespace_share: 0,
            watch_selector: None,
            jitter: JITTER,
            failures: Mutex::new(HashMap::new()),
            settled: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Manage an upload role per UploadBucket too.
    pub fn with_roles(mut self, iam: Arc<dyn IamApi>, settings: RoleSettings) -> Self {
        self.roles = Some((iam, settings));
        self
    }

    /// Associate each upload role with its service accounts through EKS Pod Identity.
    pub fn with_pod_identity(mut self, eks: Arc<dyn PodIdentityApi>) -> Self {
        self.eks = Some(eks);
        self
    }

    /// Reconcile at most `n` objects at once (0: no limit), at most `per_namespace` of them
    /// from one namespace (0: three quarters of `n`, at least 1).
    pub fn with_concurrency(mut self, n: u16, per_namespace: u16) -> Self {
        self.concurrency = n;
        self.namespace_share = match (n, per_namespace) {
            (0, share) => share,
            (n, 0) => (n - n / 4).max(1),
            (n, share) => share.min(n),
        };
        self
    }

    /// Reconcile only the objects matching the label selector `selector`.
    pub fn with_watch_selector(mut self, selector: Option<String>) -> Self {
        self.watch_selector = selector;
        self
    }

    /// A slot for one reconcile in `namespace`, unless it holds its share already.
    fn slot(&self, namespace: &str) -> Option<Slot<'_>> {
        let mut running = lock(&self.running);
        let n = running.entry(namespace.to_owned()).or_default();
        if self.namespace_share != 0 && *n >= self.namespace_share {
            return None;
        }
        *n += 1;
        Some(Slot {
            ctx: self,
            namespace: namespace.to_owned(),
        })
    }

    /// The S3 endpoint workloads are told about (an S3-compatible store's URL).
    pub fn with_s3_endpoint(mut self, endpoint: Option<String>) -> Self {
        self.s3_endpoint = endpoint;
        self
    }

    /// `d` shortened by a random fraction of up to [`Context::jitter`].
    fn jittered(&self, d: Duration) -> Duration {
        spread(d, self.jitter, fastrand::f64())
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, Backoff>> {
        lock(&self.failures)
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid spec: {0}")]
    InvalidSpec(#[from] SpecError),
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Outputs(#[from] outputs::OutputsError),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// Short label for metrics and Event reasons.
    pub fn reason(&self) -> Reason {
        match self {
            Error::InvalidSpec(_) => Reason::InvalidSpec,
            Error::Claim(e) => e.reason(),
            Error::Aws(e) => e.reason(),
            Error::Kube(_) => Reason::KubeApiError,
            Error::Outputs(e) => e.reason(),
            Error::Finalizer(_) => Reason::FinalizerError,
        }
    }

    /// How long to wait before retrying; `None`: wait for the object to change.
    fn retry(&self) -> Option<Retry> {
        match self {
            Error::InvalidSpec(_) => None,
            // Not ours: check back rarely (reads only) in case the bucket is released.
            Error::Claim(e) if e.not_ours() => Some(Retry::Slow),
            // Someone else's ConfigMap under our name: a person must act.
            Error::Outputs(outputs::OutputsError::Taken(_)) => Some(Retry::Slow),
            Error::Claim(ClaimError::Aws(e)) | Error::Aws(e) if !e.is_transient() => {
                Some(Retry::Slow)
            }
            _ => Some(Retry::Backoff),
        }
    }
}

enum Retry {
    /// A person has to act (name taken, permissions, bucket not empty): check back rarely.
    Slow,
    /// Exponential from 1 s to 5 min.
    Backoff,
}

fn key(ub: &UploadBucket) -> String {
    format!("{}/{}", ub.namespace().unwrap_or_default(), ub.name_any())
}

/// One reconciliation of one UploadBucket.
#[instrument(skip_all, fields(namespace = %ub.namespace().unwrap_or_default(), name = %ub.name_any()))]
pub async fn reconcile(ub: Arc<UploadBucket>, ctx: Arc<Context>) -> Result<Action, Error> {
    // A failing object waits out its backoff even when an event (its own status write, a
    // resync) brings it back early; a spec change or a deletion does not wait.
    if ub.metadata.deletion_timestamp.is_none()
        && let Some(wait) = ctx.failures().get(&key(&ub)).and_then(|b| {
            (b.generation == ub.metadata.generation)
                .then(|| b.until.checked_duration_since(Instant::now()))
                .flatten()
        })
    {
        return Ok(Action::requeue(wait));
    }
    let ns = ub.namespace().unwrap_or_default();
    let Some(_slot) = ctx.slot(&ns) else {
        ctx.metrics.deferred.inc();
        return Ok(Action::requeue(ctx.jittered(SHARE_WAIT)));
    };
    let unchanged_for = lock(&ctx.settled)
        .get(&key(&ub))
        .and_then(|s| s.covers(&ub, ctx.resync));
    if ub.metadata.deletion_timestamp.is_none()
        && let Some(left) = unchanged_for
        && outputs_current(&ub, &ctx).await
    {
        ctx.metrics.unchanged.inc();
        return Ok(Action::requeue(left));
    }
    if ub.metadata.deletion_timestamp.is_some() {
        lock(&ctx.settled).remove(&key(&ub));
    }
    ctx.metrics.reconciles.inc();
    let started = Instant::now();
    let api: Api<UploadBucket> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, ub, |event| async {
        match event {
            Finalized::Apply(ub) => apply_object(&ub, &ctx, &api).await,
            Finalized::Cleanup(ub) => cleanup_object(&ub, &ctx, &api).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics.observe(started.elapsed());
    result
}

/// Whether the object's outputs ConfigMap holds what a full pass would write (from the names
/// and the role recorded in status). Any doubt (an error, no ConfigMap) means no.
async fn outputs_current(ub: &UploadBucket, ctx: &Context) -> bool {
    let Ok(names) = desired::resolve(ub, &ctx.defaults) else {
        return false;
    };
    let role_arn = ub.status.as_ref().and_then(|s| s.role_arn.as_deref());
    let data = outputs::data(ub, &names, role_arn, ctx.s3_endpoint.as_deref());
    outputs::is_current(&ctx.client, ub, &data).await
}

/// Decides when a failed object is tried again. Every failure is counted.
pub fn error_policy(ub: Arc<UploadBucket>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(error.reason().as_str());
    warn!(namespace = %ub.namespace().unwrap_or_default(), name = %ub.name_any(), reason = %error.reason(), %error, "Reconcile failed");
    lock(&ctx.settled).remove(&key(&ub));
    let mut failures = ctx.failures();
    let (n, delay) = match error.retry() {
        None => {
            failures.remove(&key(&ub));
            return Action::await_change();
        }
        Some(Retry::Slow) => (0, ctx.jittered(MAX_BACKOFF)),
        Some(Retry::Backoff) => {
            // The count starts over when the spec changed since the last failure.
            let n = failures
                .get(&key(&ub))
                .filter(|b| b.generation == ub.metadata.generation)
                .map_or(0, |b| b.failures)
                .saturating_add(1);
            let delay = Duration::from_secs(1u64 << (n - 1).min(16)).min(TRANSIENT_BACKOFF_CAP);
            (n, ctx.jittered(delay))
        }
    };
    failures.insert(
        key(&ub),
        Backoff {
            failures: n,
            until: Instant::now() + delay,
            generation: ub.metadata.generation,
        },
    );
    Action::requeue(delay)
}

async fn apply_object(
    ub: &UploadBucket,
    ctx: &Context,
    api: &Api<UploadBucket>,
) -> Result<Action, Error> {
    // What a pass writes on its way (the names recorded right before AWS gets something
    // new) is the status the API server holds when the pass ends: the final write starts
    // from it, or a failed pass would drop the intent (server-side apply removes fields the
    // manager no longer sends) and the bucket created just before the failure would be
    // refused as someone else's on the next pass.
    let written = std::sync::Mutex::new(None);
    let result = provision(ub, ctx, api, &written).await;
    let current = written
        .into_inner()
        .unwrap_or_default()
        .or_else(|| ub.status.clone());
    let (st, events) = next_status(ub, current.clone(), &result);
    ctx.metrics.set_ready(
        &ub.namespace().unwrap_or_default(),
        &ub.name_any(),
        st.conditions
            .iter()
            .any(|c| c.type_ == READY && c.status == "True"),
    );
    if status::differs(current.as_ref(), &st)
        && let Err(e) = status::patch_status(api, ub, &st).await
    {
        warn!(error = %e, "Could not write status");
        if result.is_ok() {
            return Err(e.into());
        }
    }
    for (type_, reason, note) in events {
        publish(ctx, ub, type_, reason, "Provision", note).await;
    }
    match result {
        Ok(_) => {
            ctx.failures().remove(&key(ub));
            lock(&ctx.settled).insert(key(ub), Settled::of(ub));
            // Spread: objects made together are not re-checked together.
            Ok(Action::requeue(ctx.jittered(ctx.resync)))
        }
        Err(failure) => Err(failure.error),
    }
}

/// Publishes an Event; a failure to do so is logged, never fatal.
async fn publish(
    ctx: &Context,
    ub: &UploadBucket,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = KubeEvent {
        type_,
        reason: reason.to_owned(),
        note: Some(status::truncate(&note, 1000)),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &ub.object_ref(&())).await {
        debug!(error = %e, "Could not publish event");
    }
}

/// Runs the controller until a shutdown signal. `namespace`: watch one namespace, or all.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    ready: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    let api: Api<UploadBucket> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let mut probe = kube::api::ListParams::default().limit(1);
    if let Some(selector) = &ctx.watch_selector {
        probe = probe.labels(selector);
    }
    if let Err(e) = api.list(&probe).await {
        if let (kube::Error::Api(status), Some(selector)) = (&e, &ctx.watch_selector)
            && status.code == 400
        {
            anyhow::bail!(
                "--watch-selector {selector:?} is not a label selector the API server takes ({}); write it as for kubectl get -l, e.g. shard=a or tier in (gold,silver)",
                status.message
            );
        }
        anyhow::bail!(
            "cannot list UploadBuckets ({e}); is the CRD installed? kubectl apply -f crds/uploadbuckets.uploadbucket.io.yaml"
        );
    }
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    info!(
        namespace = namespace.as_deref().unwrap_or("(all)"),
        "Controller started"
    );
    // The outputs ConfigMaps, and only those (by label): an edit or deletion behind our back
    // brings their UploadBucket back for repair.
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let managed = format!("{}={}", outputs::MANAGED_BY.0, outputs::MANAGED_BY.1);
    // The objects, cached without their managed fields (most of an object's memory, and
    // nothing here reads them).
    let (reader, writer) = kube::runtime::reflector::store();
    let mut selected = watcher::Config::default().any_semantic();
    if let Some(selector) = &ctx.watch_selector {
        selected = selected.labels(selector);
    }
    let objects = watcher(api, selected)
        .default_backoff()
        .modify(|ub| ub.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects();
    Controller::for_stream(objects, reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.concurrency))
        .owns(
            config_maps,
            watcher::Config::default().labels(&managed).any_semantic(),
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!(error = %e, "Reconcile ended with an error");
            }
        })
        .await;
    info!("Controller stopped");
    Ok(())
}

#[cfg(test)]
mod tests;
