//! Counts every request the AWS SDK clients send, as `uploadbucket_aws_requests_total
//! {service, kind}`: what a reconcile costs, and that a resync of unchanged objects writes
//! nothing.

use std::sync::Arc;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::Request as HttpRequest;
use aws_smithy_types::config_bag::ConfigBag;

use crate::metrics::{CallLabels, Metrics, ServiceLabels};

tokio::task_local! {
    /// Set for the calls of one reconcile pass: whether its object was not Ready yet.
    static UNTIL_READY: bool;
}

/// Runs `pass` (one reconcile of one object) with its calls counted as made `until_ready`
/// (the object not Ready when the pass began) or not.
pub async fn in_pass<F: Future>(until_ready: bool, pass: F) -> F::Output {
    UNTIL_READY.scope(until_ready, pass).await
}

/// An interceptor counting `service`'s requests into `metrics` (one per attempt); also into
/// `aws_requests_until_ready` when made by a pass of an object not Ready yet ([`in_pass`]).
pub fn counter(service: &'static str, metrics: Arc<Metrics>) -> SharedInterceptor {
    on_request("UploadBucketCallCounter", move |_, read| {
        let kind = if read { "read" } else { "write" };
        metrics
            .aws_requests
            .get_or_create(&CallLabels { service, kind })
            .inc();
        if UNTIL_READY.try_with(|until| *until).unwrap_or(false) {
            metrics
                .aws_requests_until_ready
                .get_or_create(&ServiceLabels { service })
                .inc();
        }
    })
}

/// An interceptor that shows `seen` each request as it goes out (one per attempt), with
/// whether it only reads ([`is_read`]). The tests count through it too, so that they and the
/// metric classify alike.
pub fn on_request(
    name: &'static str,
    seen: impl Fn(&HttpRequest, bool) + Send + Sync + 'static,
) -> SharedInterceptor {
    SharedInterceptor::new(OnRequest { name, seen })
}

struct OnRequest<F> {
    name: &'static str,
    seen: F,
}

impl<F> std::fmt::Debug for OnRequest<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnRequest")
            .field("name", &self.name)
            .finish()
    }
}

/// Whether a request only reads: GET and HEAD (S3's REST API), or a query-protocol action
/// (IAM, STS, SNS: always POST) named Get*, List* or Describe*.
pub fn is_read(method: &str, body: &[u8]) -> bool {
    match method {
        "GET" | "HEAD" => true,
        "POST" => [&b"Action=Get"[..], b"Action=List", b"Action=Describe"]
            .iter()
            .any(|p| body.starts_with(p)),
        _ => false,
    }
}

impl<F: Fn(&HttpRequest, bool) + Send + Sync> Intercept for OnRequest<F> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = context.request();
        (self.seen)(
            req,
            is_read(req.method(), req.body().bytes().unwrap_or_default()),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::is_read;

    #[test]
    fn reads_and_writes() {
        assert!(is_read("GET", b""));
        assert!(is_read("HEAD", b""));
        assert!(is_read("POST", b"Action=GetRole&RoleName=x"));
        assert!(is_read("POST", b"Action=ListTopics"));
        assert!(!is_read("POST", b"Action=CreateRole&RoleName=x"));
        assert!(!is_read("POST", b"<Delete>..."));
        assert!(!is_read("PUT", b""));
        assert!(!is_read("DELETE", b""));
    }
}
