//! Prometheus metrics of the operator, all prefixed `uploadbucket_`.
//!
//! In: reconcile outcomes. Out: the text exposition served on `/metrics`.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// How the webhook answered a pod admission review (the `outcome` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Review {
    /// The signer was added.
    Injected,
    /// Nothing to do: the pod does not ask, or already has the signer.
    Skipped,
    /// Refused for a reason the pod's author can act on.
    Denied,
    /// The UploadBucket could not be read, or the patch not built.
    Error,
    /// Not a Pod admission review.
    Invalid,
}

impl Review {
    pub const ALL: [Review; 5] = [
        Review::Injected,
        Review::Skipped,
        Review::Denied,
        Review::Error,
        Review::Invalid,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Review::Injected => "injected",
            Review::Skipped => "skipped",
            Review::Denied => "denied",
            Review::Error => "error",
            Review::Invalid => "invalid",
        }
    }
}

/// An AWS API request: the service (`s3`, `iam`, `sns`) and whether it reads or writes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub service: &'static str,
    pub kind: &'static str,
}

/// An AWS service (`s3`, `iam`, `sns`, `eks`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: &'static str,
}

/// The controller's and the webhook's metrics.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    /// Passes put off because the object's namespace held its share of the slots.
    pub deferred: Counter,
    /// Passes that found the object as its last full pass left it (only the outputs checked).
    pub unchanged: Counter,
    pub failures: Family<ReasonLabels, Counter>,
    pub duration: Histogram,
    pub webhook_reviews: Family<OutcomeLabels, Counter>,
    pub webhook_duration: Histogram,
    pub aws_requests: Family<CallLabels, Counter>,
    /// Those sent in passes of objects not Ready when the pass began: what objects cost
    /// until they are Ready, apart from the resyncs of those that are.
    pub aws_requests_until_ready: Family<ServiceLabels, Counter>,
    /// `uploadbucket_ready`: no series until the controller names its objects
    /// ([`Metrics::ready_from`]).
    ready: ReadyGauge,
}

/// Shows `each` every UploadBucket as (namespace, name, whether its Ready condition is True),
/// stopping at the first error `each` returns.
pub type ReadySource =
    Box<dyn Fn(&mut dyn FnMut(&str, &str, bool) -> fmt::Result) -> fmt::Result + Send + Sync>;

const READY_HELP: &str = "1 when the UploadBucket's Ready condition is True, else 0 (the leader's view; gone once the object is deleted)";

/// `uploadbucket_ready{namespace,name}`, read at each scrape from the objects the controller
/// works from (the watch's cache): nothing is kept per object for it, where a gauge family
/// held a map entry and two label strings per object.
#[derive(Clone, Default)]
struct ReadyGauge(Arc<OnceLock<ReadySource>>);

impl fmt::Debug for ReadyGauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadyGauge")
    }
}

impl Collector for ReadyGauge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let mut family = encoder.encode_descriptor("ready", READY_HELP, None, MetricType::Gauge)?;
        let Some(source) = self.0.get() else {
            return Ok(());
        };
        source(&mut |namespace, name, ready| {
            let labels = [("namespace", namespace), ("name", name)];
            ConstGauge::new(i64::from(ready)).encode(family.encode_family(&labels)?)
        })
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("uploadbucket");
        let reconciles = Counter::default();
        let deferred = Counter::default();
        registry.register(
            "reconciles_deferred",
            "Reconciles put off for a moment because their namespace held its share of the reconcile slots",
            deferred.clone(),
        );
        let unchanged = Counter::default();
        registry.register(
            "reconciles_unchanged",
            "Passes that found the object as its last full pass left it, before the resync was due: only its outputs ConfigMap was checked (no AWS call)",
            unchanged.clone(),
        );
        let failures = Family::<ReasonLabels, Counter>::default();
        // 10 ms .. ~40 s: a reconcile is a dozen S3 round trips.
        let duration =
            Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 40.0]);
        registry.register(
            "reconciles",
            "UploadBucket reconciliations started",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "UploadBucket reconciliations that failed, by reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time taken by one reconciliation",
            duration.clone(),
        );
        let webhook_reviews = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "webhook_reviews",
            "Pod admission reviews, by outcome (injected, skipped, denied: refused with a reason the pod's author can act on, error: the UploadBucket could not be read or the patch built, invalid: not a Pod review)",
            webhook_reviews.clone(),
        );
        // 100 µs .. 1 s: a review from the cache takes well under a millisecond; an API
        // fallback a round trip.
        let webhook_duration = Histogram::new([
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
        ]);
        registry.register(
            "webhook_review_duration_seconds",
            "Time taken to answer one pod admission review",
            webhook_duration.clone(),
        );
        let aws_requests_until_ready = Family::<ServiceLabels, Counter>::default();
        registry.register(
            "aws_requests_until_ready",
            "Of uploadbucket_aws_requests_total, those sent in passes of UploadBuckets that were not Ready when the pass began (not being deleted): what objects cost until they are Ready, failed tries included, apart from the resyncs of Ready ones; by service",
            aws_requests_until_ready.clone(),
        );
        let ready = ReadyGauge::default();
        registry.register_collector(Box::new(ready.clone()));
        let aws_requests = Family::<CallLabels, Counter>::default();
        registry.register(
            "aws_requests",
            "Requests sent to AWS (or the S3-compatible store), retries included, by service and kind (read: GET/HEAD, Get*/List*; write: everything else)",
            aws_requests.clone(),
        );
        Self {
            registry,
            reconciles,
            deferred,
            unchanged,
            failures,
            duration,
            webhook_reviews,
            webhook_duration,
            aws_requests,
            aws_requests_until_ready,
            ready,
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn failure(&self, reason: &str) {
        self.failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn webhook(&self, review: Review) {
        self.webhook_reviews
            .get_or_create(&OutcomeLabels {
                outcome: review.label(),
            })
            .inc();
    }

    /// From now on `uploadbucket_ready` shows the objects `source` lists (the controller
    /// calls this once it leads; a second call changes nothing).
    pub fn ready_from(&self, source: ReadySource) {
        let _ = self.ready.0.set(source);
    }

    pub fn observe(&self, took: Duration) {
        self.duration.observe(took.as_secs_f64());
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_prefixed_names_and_reasons() {
        let m = Metrics::default();
        m.reconciles.inc();
        m.failure("BucketNameTaken");
        m.observe(Duration::from_millis(20));
        let text = m.encode();
        assert!(text.contains("uploadbucket_reconciles_total 1"), "{text}");
        assert!(
            text.contains("uploadbucket_reconcile_failures_total{reason=\"BucketNameTaken\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("uploadbucket_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        // Before the controller leads: the family is described, with no series.
        assert!(text.contains("# TYPE uploadbucket_ready gauge"), "{text}");
        assert!(!text.contains("uploadbucket_ready{"), "{text}");
        // Each scrape shows the objects as the source lists them then: one gone is gone.
        let objects = Arc::new(std::sync::Mutex::new(vec![
            ("shop", "avatars", true),
            ("shop", "photos", false),
        ]));
        let listed = objects.clone();
        m.ready_from(Box::new(move |each| {
            for (ns, name, ready) in listed.lock().unwrap().iter() {
                each(ns, name, *ready)?;
            }
            Ok(())
        }));
        let text = m.encode();
        assert!(
            text.contains("uploadbucket_ready{namespace=\"shop\",name=\"photos\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("uploadbucket_ready{namespace=\"shop\",name=\"avatars\"} 1"),
            "{text}"
        );
        objects.lock().unwrap().pop();
        let text = m.encode();
        assert!(!text.contains("name=\"photos\""), "{text}");
        assert!(text.contains("name=\"avatars\"} 1"), "{text}");
    }
}
