//! What every reconcile shares: the clients and settings ([`Context`]), and the operator's
//! memory of each object between passes: its retry schedule after a failure ([`Backoff`]),
//! its last full pass ([`Settled`]), and the reconcile slots each namespace holds ([`Slot`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use tracing::debug;

use crate::aws::BucketApi;
use crate::aws::eks::PodIdentityApi;
use crate::aws::iam::IamApi;
use crate::crd::UploadBucket;
use crate::metrics::Metrics;

use super::desired::Defaults;
use super::role::RoleSettings;
use super::status;

/// Wait before retrying a failure a person must fix (a name taken, access denied).
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Longest wait between retries of a transient failure (the store unreachable, throttling):
/// the backoff doubles from 1 s up to this, so an object is back at most this long after an
/// outage ends.
pub(super) const TRANSIENT_BACKOFF_CAP: Duration = Duration::from_secs(60);

/// Retry waits are spread by up to this fraction below their nominal length, so objects
/// failing together do not come back together (resyncs spread by [`first_resync`]).
pub(super) const JITTER: f64 = 0.25;
/// When a namespace already holds its share of the reconcile slots, its next object waits
/// about this long (jittered) and tries again.
pub(super) const SHARE_WAIT: Duration = Duration::from_secs(2);

/// Pure: `d` shortened by `fraction` × `r` (`r` in 0..1).
pub(super) fn spread(d: Duration, fraction: f64, r: f64) -> Duration {
    d.mul_f64(1.0 - fraction * r.clamp(0.0, 1.0))
}

/// A failing object's retry schedule.
pub(super) struct Backoff {
    /// Consecutive transient failures (0 for a failure a person must fix).
    pub(super) failures: u32,
    /// No pass before this, unless the spec changes or the object is being deleted.
    pub(super) until: Instant,
    /// The object (uid) and generation that failed: a recreated object or a spec change
    /// starts over.
    pub(super) uid: String,
    pub(super) generation: Option<i64>,
}

/// An object's last full, successful pass: until the resync is due, a pass of the same
/// object (same uid, generation, labels and annotations, Ready in status) only checks the
/// outputs ConfigMap, the one output another party may change without touching the object.
/// Such passes come from the operator's own writes (its status, the finalizer, the ConfigMap)
/// and would otherwise re-read every setting in AWS right after writing it.
///
/// Kept for every object, so kept small: no strings; the map is keyed by the object's uid
/// ([`uid_key`]), which also tells a recreated object (a new uid) from the one recorded.
pub(super) struct Settled {
    generation: Option<i64>,
    /// Hash of the labels and annotations: `kubectl annotate` forces a full pass.
    meta: u64,
    /// When the next full pass (the resync) is due.
    due: Instant,
}

impl Settled {
    /// The record of a full, successful pass of `ub` just made; `previous`: the record of its
    /// last one, if this process made one. The next full pass is due a resync period later;
    /// the first one after the object was made or the operator started, at a point of the
    /// period fixed by the uid ([`first_resync`]), so that objects made (or found) together
    /// are re-checked spread over the whole period, not in a burst one period on.
    /// Returns it with the wait until that next pass.
    pub(super) fn after_pass(
        ub: &UploadBucket,
        previous: Option<&Settled>,
        resync: Duration,
    ) -> (Self, Duration) {
        let wait = match previous {
            Some(_) => resync,
            None => first_resync(&ub.uid().unwrap_or_default(), resync),
        };
        let settled = Settled {
            generation: ub.metadata.generation,
            meta: meta_hash(ub),
            due: Instant::now() + wait,
        };
        (settled, wait)
    }

    /// How long `ub` can go without a full pass, if this record still describes it.
    pub(super) fn covers(&self, ub: &UploadBucket) -> Option<Duration> {
        let ready = ub.status.as_ref().is_some_and(|s| {
            s.observed_generation == ub.metadata.generation && status::is_ready(s)
        });
        (ready && self.generation == ub.metadata.generation && self.meta == meta_hash(ub))
            .then(|| self.due.checked_duration_since(Instant::now()))
            .flatten()
            .filter(|left| !left.is_zero())
    }
}

/// Pure: the wait before an object's first resync: from half a period to one and a half,
/// at a point a hash of the uid fixes (the same on every replica and restart). Objects made
/// or found together come back spread over a whole period, and none right after its first
/// pass; from then on, every period.
pub(super) fn first_resync(uid: &str, resync: Duration) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    uid.hash(&mut h);
    let point = (h.finish() % 10_000) as f64 / 10_000.0;
    resync.mul_f64(0.5 + point)
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
    /// Publishes Warnings (and folds their repeats); Normal Events go out by [`publish`].
    pub recorder: Recorder,
    /// Who publishes the Events.
    pub reporter: Reporter,
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
    pub(super) failures: Mutex<HashMap<String, Backoff>>,
    /// Last full successful pass of each object, by [`uid_key`].
    pub(super) settled: Mutex<HashMap<u128, Settled>>,
    /// Reconciles running per namespace.
    pub(super) running: Mutex<HashMap<String, u16>>,
}

/// A reconcile slot held by a namespace; released on drop.
pub(super) struct Slot<'a> {
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

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
            recorder: Recorder::new(client.clone(), reporter.clone()),
            reporter,
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
            // Leaves the reserve (see `slot`) to namespaces holding none.
            (n, 0) if n >= 2 => n - (n / 4).max(1),
            (n, 0) => n,
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
    ///
    /// Two rules: a namespace holds at most [`Context::namespace_share`] slots; and the last
    /// quarter of the slots (the reserve) goes only to a namespace holding none, so that
    /// several namespaces together cannot take them all either.
    pub(super) fn slot(&self, namespace: &str) -> Option<Slot<'_>> {
        let mut running = lock(&self.running);
        let total: u16 = running.values().sum();
        let reserve = if self.concurrency >= 2 {
            (self.concurrency / 4).max(1)
        } else {
            0
        };
        let n = running.entry(namespace.to_owned()).or_default();
        if self.namespace_share != 0 && *n >= self.namespace_share {
            return None;
        }
        if self.concurrency != 0 && *n > 0 && total >= self.concurrency - reserve {
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
    pub(super) fn jittered(&self, d: Duration) -> Duration {
        spread(d, self.jitter, fastrand::f64())
    }

    pub(super) fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, Backoff>> {
        lock(&self.failures)
    }
}

/// Pure: the object's uid as a number, the key of what the operator remembers of every
/// object ([`Settled`]): 16 bytes where `namespace/name` and the uid as text took two
/// allocations. Kubernetes uids are UUIDs, read as their 128 bits; any other text (a test's
/// uid) is hashed.
pub(super) fn uid_key(ub: &UploadBucket) -> u128 {
    let uid = ub.metadata.uid.as_deref().unwrap_or_default();
    let hex: String = uid.chars().filter(|c| *c != '-').collect();
    match u128::from_str_radix(&hex, 16) {
        Ok(n) if hex.len() == 32 && uid.len() == 36 => n,
        _ => {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            uid.hash(&mut h);
            u128::from(h.finish())
        }
    }
}

/// The object's key in the operator's memory: `namespace/name`.
pub(super) fn key(ub: &UploadBucket) -> String {
    format!("{}/{}", ub.namespace().unwrap_or_default(), ub.name_any())
}

/// Publishes an Event; a failure to do so is logged, never fatal.
pub(super) async fn publish(
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
    // Warnings repeat while an object keeps failing: the recorder folds a repeat into the
    // first Event's series, keeping each Event it sent for 6 minutes to do so. A Normal
    // Event says what changed, once: sent by a recorder of its own, it is not kept, so
    // 10,000 new objects do not leave their Events in the operator's memory.
    let once;
    let recorder = match type_ {
        EventType::Warning => &ctx.recorder,
        EventType::Normal => {
            once = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
            &once
        }
    };
    if let Err(e) = recorder.publish(&ev, &ub.object_ref(&())).await {
        debug!(error = %e, "Could not publish event");
    }
}
