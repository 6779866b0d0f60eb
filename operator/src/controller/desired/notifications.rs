//! The bucket's event notifications the operator owns. Pure.
//!
//! In: `spec.notifications`, `spec.uploads` (key prefix, verification), the bucket and the
//! backend. Out: at most one [`Notification`] (a topic pushing to HTTP on S3-compatible
//! stores, an SQS queue on AWS), or a [`SpecError`] for a target the backend cannot serve or
//! for two targets.

use crate::aws::rgw::Backend;
use crate::aws::{BucketRef, Notification, NotifyTarget};
use crate::crd::UploadBucketSpec;
use uploadbucket_sidecar::config::incoming_prefix;

use super::validate::SpecError;

/// The notification id the operator owns (it starts with `aws::OWN_ID_PREFIX`).
pub const NOTIFY_ID: &str = "uploadbucket-uploads";

/// Pure: the operator's notifications for `spec`: none without a target.
pub(super) fn notifications(
    spec: &UploadBucketSpec,
    bucket: &BucketRef,
    backend: Backend,
) -> Result<Vec<Notification>, SpecError> {
    let notify = &spec.notifications;
    let target = match (&notify.http_endpoint, &notify.sqs_queue_arn) {
        (Some(_), Some(_)) => {
            return Err(SpecError::new(
                "spec.notifications",
                "name one target: httpEndpoint (S3-compatible stores) or sqsQueueArn (AWS)",
            ));
        }
        (Some(_), None) if backend == Backend::Aws => {
            return Err(SpecError::new(
                "spec.notifications.httpEndpoint",
                "needs an S3-compatible store that pushes to HTTP (the operator's --s3-backend rgw); on AWS use sqsQueueArn",
            ));
        }
        (None, Some(_)) if backend != Backend::Aws => {
            return Err(SpecError::new(
                "spec.notifications.sqsQueueArn",
                "is for AWS; on this store use httpEndpoint",
            ));
        }
        (Some(url), None) => Some(NotifyTarget::Topic {
            name: crate::aws::s3::topic_name(&bucket.name),
            push_endpoint: url.clone(),
        }),
        (None, Some(arn)) => Some(NotifyTarget::Queue { arn: arn.clone() }),
        (None, None) => None,
    };
    Ok(target
        .map(|target| Notification {
            id: NOTIFY_ID.to_owned(),
            // With verification, the uploads the app must verify.
            prefix: if spec.uploads.verification.enabled {
                incoming_prefix(&spec.uploads.key_prefix)
            } else {
                spec.uploads.key_prefix.clone()
            },
            target,
        })
        .into_iter()
        .collect())
}
