//! Signer metrics (`uploadbucket_signer_*`): requests by route and outcome, latency.
//!
//! In: each request's matched route, status and duration. Out: OpenMetrics text.
//! Labels are enums, so recording a request allocates nothing.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Route {
    Uploads,
    LegacyUploads,
    Params,
    Multipart,
    Verify,
    Other,
}

impl Route {
    pub const ALL: [Route; 6] = [
        Route::Uploads,
        Route::LegacyUploads,
        Route::Params,
        Route::Multipart,
        Route::Verify,
        Route::Other,
    ];

    pub fn of(path: &str) -> Self {
        match path {
            "/uploads" => Route::Uploads,
            "/s3/params" => Route::Params,
            "/uploads/verify" => Route::Verify,
            p if p.contains("/multipart") => Route::Multipart,
            _ => Route::Other,
        }
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    Ok,
    ClientError,
    ServerError,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: Route,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: Route,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    credentials_ready: Gauge,
    credential_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("uploadbucket_signer");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 50 µs .. 2.5 s: signing is microseconds, multipart calls are S3 round trips.
            Histogram::new([
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.025, 0.1, 0.5, 2.5,
            ])
        });
        registry.register(
            "requests",
            "Signer HTTP requests by route and outcome",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Signer request latency by route",
            latency.clone(),
        );
        let credentials_ready = Gauge::default();
        registry.register(
            "credentials_ready",
            "1 when the last attempt to get AWS credentials (any signing request or /readyz) succeeded, 0 when it failed",
            credentials_ready.clone(),
        );
        let credential_failures = Counter::default();
        registry.register(
            "credential_failures",
            "Attempts to get AWS credentials that failed (web-identity token refused, STS unreachable)",
            credential_failures.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            credentials_ready,
            credential_failures,
        }
    }
}

impl Metrics {
    pub fn record(&self, route: Route, status: u16, took: Duration) {
        let outcome = match status {
            0..=399 => Outcome::Ok,
            400..=499 => Outcome::ClientError,
            _ => Outcome::ServerError,
        };
        self.requests
            .get_or_create(&RequestLabels { route, outcome })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
    }

    /// Records the outcome of an attempt to get credentials.
    pub fn credentials(&self, ok: bool) {
        // Written only on a change: every request records, and a store on every one would
        // bounce the cache line between the worker threads.
        let ready = i64::from(ok);
        if self.credentials_ready.get() != ready {
            self.credentials_ready.set(ready);
        }
        if !ok {
            self.credential_failures.inc();
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
