//! The bucket's lifecycle rules the operator owns. Pure.
//!
//! In: the spec (`lifecycle`, and `uploads` for the key prefix and verification). Out: the
//! rules, in canonical order: abort incomplete multipart uploads, expire uploads, and with
//! verification expire the incoming area. Everyone else's rules are kept by `apply`.

use crate::aws::{LifecycleRule, canonical_lifecycle};
use crate::crd::UploadBucketSpec;
use uploadbucket_sidecar::config::incoming_prefix;

/// Lifecycle rule ids the operator owns (all start with `aws::OWN_ID_PREFIX`).
pub const RULE_ABORT_MULTIPART: &str = "uploadbucket-abort-incomplete-multipart";
pub const RULE_EXPIRE: &str = "uploadbucket-expire-uploads";
pub const RULE_EXPIRE_PENDING: &str = "uploadbucket-expire-pending";

/// Pure: the operator's lifecycle rules for `spec`, canonical.
pub(super) fn lifecycle_rules(spec: &UploadBucketSpec) -> Vec<LifecycleRule> {
    let mut lifecycle = Vec::new();
    if spec.lifecycle.abort_incomplete_multipart_upload_days > 0 {
        lifecycle.push(LifecycleRule {
            id: RULE_ABORT_MULTIPART.to_owned(),
            prefix: String::new(),
            enabled: true,
            abort_incomplete_multipart_upload_days: Some(
                spec.lifecycle.abort_incomplete_multipart_upload_days,
            ),
            expiration_days: None,
            noncurrent_days: None,
            tag: None,
        });
    }
    if let Some(days) = spec.lifecycle.expiration_days {
        lifecycle.push(LifecycleRule {
            id: RULE_EXPIRE.to_owned(),
            prefix: spec.uploads.key_prefix.clone(),
            enabled: true,
            abort_incomplete_multipart_upload_days: None,
            expiration_days: Some(days),
            noncurrent_days: None,
            tag: None,
        });
    }
    // Uploads nobody verified, and the refused ones kept in quarantine, go away by
    // themselves: everything in the incoming area, with a versioned bucket's replaced and
    // deleted versions there.
    if spec.uploads.verification.enabled {
        let days = spec.uploads.verification.pending_expiration_days;
        lifecycle.push(LifecycleRule {
            id: RULE_EXPIRE_PENDING.to_owned(),
            prefix: incoming_prefix(&spec.uploads.key_prefix),
            enabled: true,
            abort_incomplete_multipart_upload_days: None,
            expiration_days: Some(days),
            noncurrent_days: spec.versioning.then_some(days),
            tag: None,
        });
    }
    canonical_lifecycle(lifecycle)
}
