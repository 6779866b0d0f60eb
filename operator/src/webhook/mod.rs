//! The mutating admission webhook: `POST /mutate` with an AdmissionReview of a Pod in, an
//! AdmissionReview with a JSON patch (or a denial) out. Side effects: none per review when the
//! UploadBucket the pod names is in the watch cache ([`CachedLookup`]), else one read of it.
//! The decision itself is [`inject::inject`], pure.
//!
//! Never a 5xx: a review that cannot be read is answered `invalid`, a failed lookup is a
//! denial saying what failed (the pod's controller retries), so the API server always gets
//! an answer it can show to the person creating the pod.

pub mod inject;
pub mod tls;

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use tracing::{info, warn};

use crate::crd::UploadBucket;
use crate::metrics::{Metrics, Review};
use inject::{Outcome, Settings};

/// Reads the UploadBucket a pod names.
#[async_trait]
pub trait BucketLookup: Send + Sync {
    /// `Ok(None)` when there is no such object.
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<UploadBucket>, String>;
}

/// [`BucketLookup`] through the Kubernetes API.
pub struct KubeLookup(pub kube::Client);

#[async_trait]
impl BucketLookup for KubeLookup {
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<UploadBucket>, String> {
        Api::<UploadBucket>::namespaced(self.0.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| e.to_string())
    }
}

/// [`BucketLookup`] from the process's watch of UploadBuckets ([`crate::watch::Objects`]):
/// no API call per review. An object the cache does not hold (not yet seen, another
/// namespace than the one watched, outside `--watch-selector`) or holds as not Ready (a
/// status update the watch has not brought yet) is read from the API, so a pod created right
/// after its UploadBucket turns Ready is not refused for a stale copy.
pub struct CachedLookup {
    store: kube::runtime::reflector::Store<UploadBucket>,
    api: KubeLookup,
}

impl CachedLookup {
    /// Looks objects up in `store`, or else through `client`.
    pub fn new(store: kube::runtime::reflector::Store<UploadBucket>, client: kube::Client) -> Self {
        Self {
            store,
            api: KubeLookup(client),
        }
    }
}

#[async_trait]
impl BucketLookup for CachedLookup {
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<UploadBucket>, String> {
        let key = kube::runtime::reflector::ObjectRef::new(name).within(namespace);
        match self.store.get(&key) {
            Some(ub)
                if ub
                    .condition(crate::controller::status::READY)
                    .is_some_and(|c| c.status == "True") =>
            {
                Ok(Some((*ub).clone()))
            }
            _ => self.api.get(namespace, name).await,
        }
    }
}

#[derive(Clone)]
pub struct WebhookState {
    pub settings: Arc<Settings>,
    pub lookup: Arc<dyn BucketLookup>,
    pub metrics: Arc<Metrics>,
}

/// `/mutate` and a plain `/healthz` (for the API server's TLS checks and probes).
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state)
}

async fn mutate(State(state): State<WebhookState>, body: axum::body::Bytes) -> Json<Answer> {
    let review: AdmissionReview<Pod> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "Unreadable admission review");
            state.metrics.webhook(Review::Invalid);
            return Json(Answer::from(AdmissionResponse::invalid(format!(
                "not an AdmissionReview of a Pod: {e}"
            ))));
        }
    };
    let request: AdmissionRequest<Pod> = match review.try_into() {
        Ok(r) => r,
        Err(_) => {
            state.metrics.webhook(Review::Invalid);
            return Json(Answer::from(AdmissionResponse::invalid(
                "the AdmissionReview has no request",
            )));
        }
    };
    let started = std::time::Instant::now();
    let response = review_pod(&state, &request).await;
    state
        .metrics
        .webhook_duration
        .observe(started.elapsed().as_secs_f64());
    Json(Answer::from(response))
}

/// The AdmissionReview answered, its patch a base64 string as the API server's Go types
/// write `[]byte`. kube's `AdmissionReview` writes the patch as an array of numbers, one per
/// byte, which the API server reads too, but at about 2.6 times the bytes (the test pod's
/// patch: 7,531 bytes against 2,902), with a number written here and parsed there for every
/// byte of the patch.
#[derive(serde::Serialize)]
pub struct Answer {
    #[serde(flatten)]
    types: kube::core::TypeMeta,
    response: AnswerResponse,
}

#[derive(serde::Serialize)]
struct AnswerResponse {
    /// Everything but the patch, which is taken out.
    #[serde(flatten)]
    response: AdmissionResponse,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
}

impl From<AdmissionResponse> for Answer {
    fn from(mut response: AdmissionResponse) -> Self {
        use base64::Engine as _;
        let patch = response
            .patch
            .take()
            .map(|p| base64::engine::general_purpose::STANDARD.encode(p));
        // Not serialized with the response (kube skips it there): moved, not copied.
        let types = std::mem::take(&mut response.types);
        Answer {
            types,
            response: AnswerResponse { response, patch },
        }
    }
}

/// The answer for one request.
pub async fn review_pod(
    state: &WebhookState,
    request: &AdmissionRequest<Pod>,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    let pod = match (&request.operation, &request.object) {
        (Operation::Create, Some(pod)) => pod,
        // Registered for CREATE only; anything else passes untouched.
        _ => return response,
    };
    let Some(wanted) = inject::requested(pod) else {
        state.metrics.webhook(Review::Skipped);
        return response;
    };
    let namespace = request
        .namespace
        .clone()
        .or_else(|| pod.metadata.namespace.clone())
        .unwrap_or_default();
    let pod_name = pod
        .metadata
        .name
        .clone()
        .or_else(|| pod.metadata.generate_name.clone().map(|g| format!("{g}*")))
        .unwrap_or_default();
    let bucket = if wanted.trim().is_empty() {
        None
    } else {
        match state.lookup.get(&namespace, wanted.trim()).await {
            Ok(b) => b,
            Err(e) => {
                warn!(%namespace, pod = %pod_name, bucket = wanted, error = %e, "Cannot read UploadBucket");
                state.metrics.webhook(Review::Error);
                return response.deny(format!(
                    "uploadbucket: cannot read UploadBucket {namespace}/{wanted} to inject the signer ({e}); try again"
                ));
            }
        }
    };
    match inject::inject(pod, &namespace, bucket.as_ref(), &state.settings) {
        Outcome::NotRequested | Outcome::AlreadyInjected => {
            state.metrics.webhook(Review::Skipped);
            response
        }
        Outcome::Deny(message) => {
            info!(%namespace, pod = %pod_name, bucket = wanted, %message, "Pod refused");
            state.metrics.webhook(Review::Denied);
            response.deny(format!("uploadbucket: {message}"))
        }
        Outcome::Inject(patch) => match response.clone().with_patch(patch) {
            Ok(r) => {
                info!(%namespace, pod = %pod_name, bucket = wanted, "Signer injected");
                state.metrics.webhook(Review::Injected);
                r
            }
            Err(e) => {
                warn!(error = %e, "Cannot serialize patch");
                state.metrics.webhook(Review::Error);
                response
                    .deny("uploadbucket: internal error building the patch; see the operator log")
            }
        },
    }
}

#[cfg(test)]
mod tests;
