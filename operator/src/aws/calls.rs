//! Counts every request the AWS SDK clients send, as `uploadbucket_aws_requests_total
//! {service, kind}`: what a reconcile costs, and that a resync of unchanged objects writes
//! nothing.

use std::sync::Arc;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use crate::metrics::{CallLabels, Metrics};

#[derive(Debug)]
struct CallCounter {
    service: &'static str,
    metrics: Arc<Metrics>,
}

/// An interceptor counting `service`'s requests into `metrics` (one per attempt).
pub fn counter(service: &'static str, metrics: Arc<Metrics>) -> SharedInterceptor {
    SharedInterceptor::new(CallCounter { service, metrics })
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

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "UploadBucketCallCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = context.request();
        let body = req.body().bytes().unwrap_or_default();
        let kind = if is_read(req.method(), body) {
            "read"
        } else {
            "write"
        };
        self.metrics
            .aws_requests
            .get_or_create(&CallLabels {
                service: self.service,
                kind,
            })
            .inc();
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
