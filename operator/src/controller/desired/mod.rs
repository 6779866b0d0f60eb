//! What the bucket should look like. Pure: no client, no clock, no I/O.
//!
//! In: an `UploadBucket` (spec, metadata, recorded status) and the operator's [`Defaults`].
//! Out: the names it may use ([`resolve`]) and a [`DesiredBucket`] in canonical form, or a
//! [`SpecError`] naming the field at fault and what is allowed. Nothing here decides that a
//! bucket is this object's: that is `claim`'s job, against what S3 holds.
//!
//! [`desired`] builds one part at a time, each in a module of its own, in the order a spec's
//! first error is reported: the bucket's name and region (`names`), the fields that are only
//! checked (`validate`), `spec.tags` (`tags`), `encryption`, CORS and public read (`access`),
//! `lifecycle` rules, `notifications`. The operator's settings they start from are
//! `defaults`.

mod access;
mod defaults;
mod encryption;
mod lifecycle;
mod names;
mod notifications;
mod tags;
mod validate;

pub use access::RULE_CORS;
pub use defaults::{Defaults, glob_match};
pub use lifecycle::{RULE_ABORT_MULTIPART, RULE_EXPIRE, RULE_EXPIRE_PENDING};
pub use names::{
    Names, bucket_ref, derive_bucket_name, derive_role_name, recorded_names, resolve,
    validate_bucket_name,
};
pub use notifications::NOTIFY_ID;
pub use tags::{
    MANAGED_BY, RESERVED_TAG_PREFIX, TAG_ADOPTED, TAG_MANAGED_BY, TAG_NAME, TAG_NAMESPACE, TAG_UID,
    merge_tags, ownership_tags,
};
pub use validate::{SpecError, validate_content_type};

use std::collections::BTreeMap;

use crate::aws::{
    BucketRef, CorsRule, Encryption, LifecycleRule, Notification, PublicAccessBlock, policy,
};
use crate::crd::UploadBucket;

/// The bucket as it should be.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredBucket {
    pub bucket: BucketRef,
    pub arn: String,
    pub cors: Vec<CorsRule>,
    pub lifecycle: Vec<LifecycleRule>,
    pub public_access_block: PublicAccessBlock,
    /// Enforce `BucketOwnerEnforced` (ACLs off); false where the backend lacks the API.
    pub acls_disabled: bool,
    /// `None`: the backend cannot set it and the spec does not need it.
    pub encryption: Option<Encryption>,
    /// `spec.tags`; the ownership tags come from [`ownership_tags`].
    pub spec_tags: BTreeMap<String, String>,
    pub versioning: bool,
    /// The operator's bucket-policy statements (Sids starting with
    /// `policy::OWN_SID_PREFIX`), canonical and sorted; others' statements are never here.
    pub policy_statements: Vec<serde_json::Value>,
    /// The operator's event notifications, sorted.
    pub notifications: Vec<Notification>,
}

/// Pure: the whole desired state, or the first spec field at fault.
pub fn desired(ub: &UploadBucket, defaults: &Defaults) -> Result<DesiredBucket, SpecError> {
    let spec = &ub.spec;
    let backend = defaults.backend;
    let bucket = bucket_ref(ub, defaults)?;
    validate::origins(&spec.cors)?;
    validate::uploads(&spec.uploads)?;
    tags::check_spec_tags(&spec.tags)?;
    let encryption = encryption::encryption(&spec.encryption, backend)?;
    let cors = access::cors_rules(&spec.cors);
    let lifecycle = lifecycle::lifecycle_rules(spec);
    let (public_access_block, policy_statements) =
        access::public_read(&spec.uploads, &bucket, backend)?;
    let notifications = notifications::notifications(spec, &bucket, backend)?;
    Ok(DesiredBucket {
        notifications,
        arn: policy::bucket_arn(&bucket.region, &bucket.name),
        policy_statements,
        cors,
        lifecycle,
        public_access_block,
        acls_disabled: backend.has_ownership_controls(),
        encryption,
        spec_tags: spec.tags.clone(),
        versioning: spec.versioning,
        bucket,
    })
}

/// Tests of the whole desired state, through [`desired`]: each part, and which field a spec's
/// first error names.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::NotifyTarget;
    use crate::aws::rgw::Backend;
    use crate::crd::UploadBucketSpec;
    use defaults::tests::defaults;
    use names::tests::ub;

    fn spec(json: serde_json::Value) -> UploadBucketSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn full_desired_state() {
        let u = ub(
            "shop",
            "photos",
            spec(serde_json::json!({
                "cors": {"allowedOrigins": ["https://shop.example.com"], "exposeHeaders": ["x-amz-request-id"]},
                "uploads": {"keyPrefix": "photos/", "allowedContentTypes": ["image/*"]},
                "lifecycle": {"abortIncompleteMultipartUploadDays": 2, "expirationDays": 30},
                "tags": {"team": "shop"}
            })),
        );
        let d = desired(&u, &defaults()).unwrap();
        assert_eq!(d.bucket.region, "eu-west-1");
        assert_eq!(d.arn, format!("arn:aws:s3:::{}", d.bucket.name));
        assert_eq!(
            d.cors,
            vec![CorsRule {
                id: RULE_CORS.into(),
                allowed_origins: vec!["https://shop.example.com".into()],
                allowed_methods: vec!["POST".into(), "PUT".into()],
                allowed_headers: vec!["*".into()],
                expose_headers: vec!["etag".into(), "x-amz-request-id".into()],
                max_age_seconds: Some(3000),
            }]
        );
        assert_eq!(d.lifecycle.len(), 2);
        assert_eq!(d.lifecycle[0].id, RULE_ABORT_MULTIPART);
        assert_eq!(
            d.lifecycle[0].abort_incomplete_multipart_upload_days,
            Some(2)
        );
        assert_eq!(d.lifecycle[1].prefix, "photos/");
        assert_eq!(d.lifecycle[1].expiration_days, Some(30));
        assert_eq!(
            d.public_access_block,
            PublicAccessBlock {
                block_public_acls: true,
                ignore_public_acls: true,
                block_public_policy: true,
                restrict_public_buckets: true
            }
        );
        assert!(d.acls_disabled);
        assert_eq!(d.encryption, Some(Encryption::SseS3));
        assert!(d.policy_statements.is_empty());
        assert_eq!(d.spec_tags.get("team").map(String::as_str), Some("shop"));
        let own = ownership_tags(&u, false);
        assert_eq!(
            own.get(TAG_UID).map(String::as_str),
            Some("0f8fad5b-d9cb-469f-a165-70867728950e")
        );
        assert_eq!(own.get(TAG_NAMESPACE).map(String::as_str), Some("shop"));
        assert_eq!(own.get(TAG_ADOPTED), None);
        assert_eq!(
            ownership_tags(&u, true)
                .get(TAG_ADOPTED)
                .map(String::as_str),
            Some("true")
        );
    }

    #[test]
    fn verification_expires_the_incoming_area_and_its_old_versions() {
        let verified = |extra: serde_json::Value| {
            let mut whole = serde_json::json!({"uploads": {"keyPrefix": "in/",
                "verification": {"enabled": true, "pendingExpirationDays": 3}}});
            whole
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            desired(&ub("a", "b", spec(whole)), &defaults()).unwrap()
        };
        let on = verified(serde_json::json!({}));
        let rule = on
            .lifecycle
            .iter()
            .find(|r| r.id == RULE_EXPIRE_PENDING)
            .expect("pending rule");
        // Everything there: pending, quarantined, replaced; never the verified area.
        assert_eq!(rule.prefix, "in/incoming/");
        assert_eq!(rule.expiration_days, Some(3));
        assert_eq!(rule.tag, None);
        assert_eq!(rule.noncurrent_days, None);
        let versioned = verified(serde_json::json!({"versioning": true}));
        let rule = versioned
            .lifecycle
            .iter()
            .find(|r| r.id == RULE_EXPIRE_PENDING)
            .unwrap();
        assert_eq!(rule.noncurrent_days, Some(3));
        let off = desired(&ub("a", "b", UploadBucketSpec::default()), &defaults()).unwrap();
        assert!(off.lifecycle.iter().all(|r| r.id != RULE_EXPIRE_PENDING));
        // Events name the uploads to verify.
        let notified = verified(
            serde_json::json!({"notifications": {"sqsQueueArn": "arn:aws:sqs:eu-west-1:123456789012:uploads"}}),
        );
        assert_eq!(notified.notifications[0].prefix, "in/incoming/");
    }

    #[test]
    fn notifications_follow_the_backend() {
        let rgw = Defaults {
            backend: Backend::Rgw,
            ..defaults()
        };
        let http = spec(serde_json::json!({"uploads": {"keyPrefix": "in/"},
            "notifications": {"httpEndpoint": "http://hooks.app.svc:8080/uploads"}}));
        let d = desired(&ub("a", "b", http.clone()), &rgw).unwrap();
        assert_eq!(
            d.notifications,
            [Notification {
                id: NOTIFY_ID.into(),
                prefix: "in/".into(),
                target: NotifyTarget::Topic {
                    name: format!("uploadbucket-{}", d.bucket.name),
                    push_endpoint: "http://hooks.app.svc:8080/uploads".into(),
                },
            }]
        );
        let sqs = spec(serde_json::json!({"notifications":
            {"sqsQueueArn": "arn:aws:sqs:eu-west-1:123456789012:uploads"}}));
        let d = desired(&ub("a", "b", sqs.clone()), &defaults()).unwrap();
        assert!(
            matches!(&d.notifications[0].target, NotifyTarget::Queue { arn } if arn.ends_with(":uploads"))
        );
        // Each target only where it works, and one at a time.
        let field = |s, d: &Defaults| desired(&ub("a", "b", s), d).unwrap_err().field;
        assert_eq!(field(http, &defaults()), "spec.notifications.httpEndpoint");
        assert_eq!(field(sqs, &rgw), "spec.notifications.sqsQueueArn");
        let both = spec(
            serde_json::json!({"notifications": {"httpEndpoint": "http://x",
            "sqsQueueArn": "arn:aws:sqs:eu-west-1:123456789012:q"}}),
        );
        assert_eq!(field(both, &defaults()), "spec.notifications");
        assert!(
            desired(&ub("a", "b", spec(serde_json::json!({}))), &defaults())
                .unwrap()
                .notifications
                .is_empty()
        );
    }

    #[test]
    fn no_origins_means_no_cors_and_zero_days_no_abort_rule() {
        let d = desired(
            &ub(
                "a",
                "b",
                spec(serde_json::json!({"lifecycle": {"abortIncompleteMultipartUploadDays": 0}})),
            ),
            &defaults(),
        )
        .unwrap();
        assert!(d.cors.is_empty());
        assert!(d.lifecycle.is_empty());
    }

    #[test]
    fn public_read_opens_only_the_policy_side_and_only_the_verified_area() {
        let unverified = spec(serde_json::json!({"uploads": {"publicRead": true}}));
        let err = desired(&ub("a", "b", unverified), &defaults()).unwrap_err();
        assert_eq!(err.field, "spec.uploads.publicRead");
        let d = desired(
            &ub(
                "a",
                "b",
                spec(serde_json::json!({"uploads": {"publicRead": true,
                    "verification": {"enabled": true}}})),
            ),
            &defaults(),
        )
        .unwrap();
        assert!(
            d.public_access_block.block_public_acls && d.public_access_block.ignore_public_acls
        );
        assert!(
            !d.public_access_block.block_public_policy
                && !d.public_access_block.restrict_public_buckets
        );
        assert_eq!(d.policy_statements.len(), 1);
        assert_eq!(
            d.policy_statements[0]["Resource"],
            format!("arn:aws:s3:::{}/uploads/verified/*", d.bucket.name)
        );
    }

    #[test]
    fn rgw_backend_skips_what_it_lacks() {
        let mut defs = defaults();
        defs.backend = Backend::Rgw;
        let d = desired(&ub("a", "b", UploadBucketSpec::default()), &defs).unwrap();
        assert!(!d.acls_disabled);
        assert_eq!(d.encryption, None);
        assert!(!d.public_access_block.block_public_acls);
        let kms =
            spec(serde_json::json!({"encryption": {"type": "SSE-KMS", "kmsKeyId": "alias/x"}}));
        let err = desired(&ub("a", "b", kms), &defs).unwrap_err();
        assert_eq!(err.field, "spec.encryption.type");
    }

    #[test]
    fn invalid_specs_name_the_field() {
        let cases = [
            (
                serde_json::json!({"bucketName": "Bad_Name"}),
                "spec.bucketName",
            ),
            (serde_json::json!({"region": "mars"}), "spec.region"),
            (
                serde_json::json!({"cors": {"allowedOrigins": ["https://a.example.com/"]}}),
                "spec.cors.allowedOrigins",
            ),
            (
                serde_json::json!({"uploads": {"keyPrefix": "/abs/"}}),
                "spec.uploads.keyPrefix",
            ),
            (
                serde_json::json!({"uploads": {"keyPrefix": "a/../b/"}}),
                "spec.uploads.keyPrefix",
            ),
            (
                serde_json::json!({"uploads": {"keyPrefix": "noslash"}}),
                "spec.uploads.keyPrefix",
            ),
            (
                serde_json::json!({"uploads": {"allowedContentTypes": []}}),
                "spec.uploads.allowedContentTypes",
            ),
            (
                serde_json::json!({"uploads": {"allowedContentTypes": ["jpeg"]}}),
                "spec.uploads.allowedContentTypes",
            ),
            (
                serde_json::json!({"uploads": {"maxSizeBytes": 0}}),
                "spec.uploads.maxSizeBytes",
            ),
            (
                serde_json::json!({"uploads": {"expiresSeconds": 604801}}),
                "spec.uploads.expiresSeconds",
            ),
            (
                serde_json::json!({"tags": {"uploadbucket.io/uid": "x"}}),
                "spec.tags",
            ),
            (
                serde_json::json!({"encryption": {"type": "SSE-KMS"}}),
                "spec.encryption.kmsKeyId",
            ),
        ];
        for (json, field) in cases {
            let err = desired(&ub("a", "b", spec(json.clone())), &defaults()).unwrap_err();
            assert_eq!(err.field, field, "{json}");
            assert!(!err.message.is_empty());
        }
    }

    /// What the signer would refuse at start is refused at reconcile, naming the field.
    #[test]
    fn jwt_settings_the_signer_cannot_run_with_are_refused() {
        let jwt = |j: serde_json::Value| spec(serde_json::json!({"uploads": {"auth": {"jwt": j}}}));
        let ok = jwt(
            serde_json::json!({"issuer": "https://login.example.com/", "audiences": ["api://u"],
            "requiredClaims": {"scope": "uploads:write"}}),
        );
        desired(&ub("a", "b", ok), &defaults()).unwrap();
        for (bad, field, says) in [
            (
                serde_json::json!({"issuer": "login.example.com", "audiences": ["api://u"]}),
                "spec.uploads.auth.jwt",
                "https://",
            ),
            (
                serde_json::json!({"issuer": "https://x/", "audiences": [" "]}),
                "spec.uploads.auth.jwt",
                "at least one audience",
            ),
            (
                serde_json::json!({"issuer": "https://x/", "audiences": ["a"], "requiredClaims": {"a=b": "c"}}),
                "spec.uploads.auth.jwt.requiredClaims",
                "\"a=b\"",
            ),
            (
                serde_json::json!({"issuer": "https://x/", "audiences": ["a"], "requiredClaims": {"scope": "a,b"}}),
                "spec.uploads.auth.jwt.requiredClaims",
                "\"scope\"",
            ),
        ] {
            let e = desired(&ub("a", "b", jwt(bad.clone())), &defaults()).unwrap_err();
            assert_eq!(e.field, field, "{bad}");
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
    }
}
