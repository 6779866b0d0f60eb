//! Who may reach the bucket from outside: browsers (the CORS rule) and, with public read,
//! anyone reading verified uploads (the public access block and the bucket policy). Pure.
//!
//! In: `spec.cors`, `spec.uploads`, the bucket and the backend. Out: the operator's CORS
//! rule, the public access block and the operator's policy statements, or a [`SpecError`]
//! for public read without verification.

use serde_json::Value;

use crate::aws::rgw::Backend;
use crate::aws::{BucketRef, CorsRule, PublicAccessBlock, canonical_cors, policy};
use crate::crd::{CorsSpec, UploadsSpec};
use uploadbucket_sidecar::config::verified_prefix;

use super::validate::SpecError;

/// The CORS rule id the operator owns (it starts with `aws::OWN_ID_PREFIX`).
pub const RULE_CORS: &str = "uploadbucket-cors";

/// Pure: the operator's CORS rule, canonical; none without allowed origins.
pub(super) fn cors_rules(cors: &CorsSpec) -> Vec<CorsRule> {
    if cors.allowed_origins.is_empty() {
        return Vec::new();
    }
    let mut expose = cors.expose_headers.clone();
    expose.push("ETag".to_owned());
    canonical_cors(vec![CorsRule {
        id: RULE_CORS.to_owned(),
        allowed_origins: cors.allowed_origins.clone(),
        allowed_methods: cors
            .allowed_methods
            .iter()
            .map(|m| m.as_str().to_owned())
            .collect(),
        allowed_headers: cors.allowed_headers.clone(),
        expose_headers: expose,
        max_age_seconds: Some(cors.max_age_seconds),
    }])
}

/// Pure: the public access block and the operator's bucket-policy statements (canonical),
/// both closed unless `uploads.publicRead`, which needs verification.
pub(super) fn public_read(
    uploads: &UploadsSpec,
    bucket: &BucketRef,
    backend: Backend,
) -> Result<(PublicAccessBlock, Vec<Value>), SpecError> {
    let public = uploads.public_read;
    if public && !uploads.verification.enabled {
        return Err(SpecError::new(
            "spec.uploads.publicRead",
            "serves verified uploads only: set spec.uploads.verification.enabled: true too",
        ));
    }
    // A public-read bucket policy is refused while BlockPublicPolicy is on, and ignored while
    // RestrictPublicBuckets is on; ACLs stay blocked either way.
    let public_access_block = backend.public_access_block(PublicAccessBlock {
        block_public_acls: true,
        ignore_public_acls: true,
        block_public_policy: !public,
        restrict_public_buckets: !public,
    });

    // Public read reaches the verified area only: nothing unverified is ever served.
    let public_policy = public.then(|| {
        policy::public_read_policy(
            &bucket.region,
            &bucket.name,
            &verified_prefix(&uploads.key_prefix),
        )
    });
    Ok((
        public_access_block,
        policy::own_statements(public_policy.as_ref()),
    ))
}
