//! What the bucket should look like. Pure: no client, no clock, no I/O.
//!
//! In: an `UploadBucket` (spec, metadata, recorded status) and the operator's defaults.
//! Out: the names it may use ([`resolve`]) and a [`DesiredBucket`] in canonical form, or a
//! [`SpecError`] naming the field at fault and what is allowed. Nothing here decides that a
//! bucket is this object's: that is `claim`'s job, against what S3 holds.

use std::collections::BTreeMap;

use kube::ResourceExt;
use sha2::{Digest, Sha256};

use crate::aws::rgw::Backend;
use crate::aws::{
    BucketRef, CorsRule, Encryption, LifecycleRule, Notification, NotifyTarget, PublicAccessBlock,
    canonical_cors, canonical_lifecycle, policy,
};
use crate::crd::{EncryptionType, UploadBucket};
use uploadbucket_sidecar::config::{incoming_prefix, verified_prefix};

/// Tag keys the operator writes on every bucket it manages.
pub const TAG_MANAGED_BY: &str = "uploadbucket.io/managed-by";
pub const TAG_NAMESPACE: &str = "uploadbucket.io/namespace";
pub const TAG_NAME: &str = "uploadbucket.io/name";
pub const TAG_UID: &str = "uploadbucket.io/uid";
/// `"true"` on a bucket the operator adopted rather than created: it is never emptied or
/// deleted, and versioning is never suspended on it.
pub const TAG_ADOPTED: &str = "uploadbucket.io/adopted";
pub const MANAGED_BY: &str = "uploadbucket-operator";
/// Tag keys starting with this belong to the operator (and are refused in `spec.tags`).
pub const RESERVED_TAG_PREFIX: &str = "uploadbucket.io/";

/// Lifecycle and CORS rule ids the operator owns (all start with `aws::OWN_ID_PREFIX`).
pub const RULE_ABORT_MULTIPART: &str = "uploadbucket-abort-incomplete-multipart";
pub const RULE_EXPIRE: &str = "uploadbucket-expire-uploads";
pub const RULE_EXPIRE_PENDING: &str = "uploadbucket-expire-pending";
pub const NOTIFY_ID: &str = "uploadbucket-uploads";
pub const RULE_CORS: &str = "uploadbucket-cors";

/// The operator's defaults that a spec may leave out.
#[derive(Clone, Debug)]
pub struct Defaults {
    pub region: String,
    pub backend: Backend,
    /// Prepended to derived bucket names (e.g. a company prefix), may be empty. When set,
    /// names a spec chooses must start with it too.
    pub bucket_name_prefix: String,
    /// Existing buckets the cluster admin allows an UploadBucket to adopt: exact names or
    /// patterns where `*` stands for any run of characters. Empty: no adoption.
    pub adoptable_buckets: Vec<String>,
}

impl Defaults {
    /// Whether the admin allows adopting the bucket `name`.
    pub fn may_adopt(&self, name: &str) -> bool {
        self.adoptable_buckets.iter().any(|p| glob_match(p, name))
    }
}

/// `*`-only glob: `legacy-*` matches `legacy-photos`; `*` matches everything.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// An invalid spec: a person has to change it. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: &'static str,
    pub message: String,
}

impl SpecError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

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

/// The names one reconcile works with. Pure data: none of it is proof of ownership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub bucket: BucketRef,
    /// The name is this object's own derived name (no `spec.bucketName`), whose uid hash no
    /// other object can produce.
    pub derived: bool,
    /// The spec asks to adopt an existing bucket.
    pub adopt: bool,
    /// The IAM role name, always derived from namespace, name and uid.
    pub role: String,
}

/// Pure: the bucket and role names of `ub`, or the spec field at fault.
pub fn resolve(ub: &UploadBucket, defaults: &Defaults) -> Result<Names, SpecError> {
    let bucket = bucket_ref(ub, defaults)?;
    let spec = &ub.spec;
    if spec.adopt_existing_bucket {
        if spec.bucket_name.is_none() {
            return Err(SpecError::new(
                "spec.adoptExistingBucket",
                "needs spec.bucketName: the existing bucket to adopt",
            ));
        }
        if spec.deletion_policy != crate::crd::DeletionPolicy::Retain {
            return Err(SpecError::new(
                "spec.deletionPolicy",
                "must be Retain with spec.adoptExistingBucket: the operator never deletes a bucket it adopted",
            ));
        }
    } else if let Some(name) = &spec.bucket_name {
        let prefix = &defaults.bucket_name_prefix;
        if !name.starts_with(prefix.as_str()) {
            return Err(SpecError::new(
                "spec.bucketName",
                format!(
                    "{name:?} must start with {prefix:?}: the cluster admin limits this operator to bucket names with that prefix"
                ),
            ));
        }
    }
    let derived = spec.bucket_name.is_none()
        && bucket.name == derive_bucket_name(ub, &defaults.bucket_name_prefix);
    Ok(Names {
        bucket,
        derived,
        adopt: spec.adopt_existing_bucket,
        role: derive_role_name(ub),
    })
}

/// Pure: the names cleanup works with: the bucket status recorded as proven, else the one it
/// recorded as being created; `None` when neither (nothing was ever provisioned). Unlike
/// [`resolve`], a spec that became invalid does not stop a deletion.
pub fn recorded_names(ub: &UploadBucket, defaults: &Defaults) -> Option<Names> {
    let st = ub.status.as_ref()?;
    let name = st
        .bucket_name
        .clone()
        .or_else(|| st.creating_bucket.clone())?;
    let region = st
        .region
        .clone()
        .or_else(|| ub.spec.region.clone())
        .unwrap_or_else(|| defaults.region.clone());
    Some(Names {
        derived: ub.spec.bucket_name.is_none()
            && name == derive_bucket_name(ub, &defaults.bucket_name_prefix),
        bucket: BucketRef { name, region },
        adopt: ub.spec.adopt_existing_bucket,
        role: derive_role_name(ub),
    })
}

/// The bucket name and region this object manages: what status recorded, else the spec's,
/// else derived. A spec that tries to move a recorded name is refused. A recorded name is no
/// proof of ownership (status can be written by others); `claim` checks the bucket itself.
pub fn bucket_ref(ub: &UploadBucket, defaults: &Defaults) -> Result<BucketRef, SpecError> {
    let status = ub.status.as_ref();
    let recorded_name = status.and_then(|s| s.bucket_name.clone());
    let recorded_region = status.and_then(|s| s.region.clone());
    if let Some(name) = &ub.spec.bucket_name {
        validate_bucket_name(name).map_err(|m| SpecError::new("spec.bucketName", m))?;
    }
    if let Some(region) = &ub.spec.region {
        validate_region(region).map_err(|m| SpecError::new("spec.region", m))?;
    }
    let name = match (recorded_name, &ub.spec.bucket_name) {
        (Some(rec), Some(spec)) if &rec != spec => {
            return Err(SpecError::new(
                "spec.bucketName",
                format!(
                    "is immutable: this UploadBucket manages bucket {rec:?}; create a new UploadBucket for {spec:?}"
                ),
            ));
        }
        (Some(rec), _) => rec,
        (None, Some(spec)) => spec.clone(),
        (None, None) => derive_bucket_name(ub, &defaults.bucket_name_prefix),
    };
    let region = match (recorded_region, &ub.spec.region) {
        (Some(rec), Some(spec)) if &rec != spec => {
            return Err(SpecError::new(
                "spec.region",
                format!("is immutable: the bucket lives in {rec:?}"),
            ));
        }
        (Some(rec), _) => rec,
        (None, Some(spec)) => spec.clone(),
        (None, None) => defaults.region.clone(),
    };
    Ok(BucketRef { name, region })
}

/// `<prefix><namespace>-<name>-<8 hex of sha256(uid)>`, made a valid S3 name of at most 63
/// characters. The uid makes it unique across clusters and across re-creation, since bucket
/// names are global.
pub fn derive_bucket_name(ub: &UploadBucket, prefix: &str) -> String {
    let uid = ub.uid().unwrap_or_default();
    let ns = ub.namespace().unwrap_or_default();
    let hash = hex::encode(Sha256::digest(format!("{ns}/{}/{uid}", ub.name_any())));
    let suffix = &hash[..8];
    let raw = format!("{prefix}{ns}-{}", ub.name_any());
    // Dots are valid but break virtual-hosted TLS, so they become dashes too.
    let mut base: String = raw
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    while base.contains("--") {
        base = base.replace("--", "-");
    }
    let base = base.trim_matches('-');
    let base = if base.starts_with("xn-") || base.starts_with("sthree-") {
        format!("ub-{base}")
    } else {
        base.to_owned()
    };
    let keep = 63 - 1 - suffix.len();
    let base: String = base.chars().take(keep).collect();
    let base = base.trim_end_matches('-');
    if base.is_empty() {
        format!("ub-{suffix}")
    } else {
        format!("{base}-{suffix}")
    }
}

/// S3's bucket naming rules (general purpose buckets).
pub fn validate_bucket_name(name: &str) -> Result<(), String> {
    let allowed = "3-63 characters of lowercase letters, digits, '.' and '-', starting and ending with a letter or digit";
    if !(3..=63).contains(&name.len()) {
        return Err(format!(
            "{name:?} has {} characters; allowed: {allowed}",
            name.len()
        ));
    }
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok_chars || !ends_ok(name.chars().next()) || !ends_ok(name.chars().last()) {
        return Err(format!(
            "{name:?} is not a valid bucket name; allowed: {allowed}"
        ));
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Err(format!(
            "{name:?} has adjacent '.'/'-' characters, which S3 refuses"
        ));
    }
    if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return Err(format!(
            "{name:?} looks like an IP address, which S3 refuses"
        ));
    }
    for bad in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(bad) {
            return Err(format!("{name:?} starts with the reserved prefix {bad:?}"));
        }
    }
    for bad in ["-s3alias", "--ol-s3", "--x-s3", ".mrap"] {
        if name.ends_with(bad) {
            return Err(format!("{name:?} ends with the reserved suffix {bad:?}"));
        }
    }
    Ok(())
}

fn validate_region(region: &str) -> Result<(), String> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{region:?} is not an AWS region name such as \"eu-west-1\""
        ))
    }
}

fn validate_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match rest {
        Some(host)
            if !host.is_empty() && !host.contains('/') && !host.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{origin:?} is not an origin; allowed: \"*\" or scheme://host[:port] such as \"https://app.example.com\" (no path, no trailing slash)"
        )),
    }
}

/// `type/subtype` or `type/*`, lowercase.
pub fn validate_content_type(ct: &str) -> Result<(), String> {
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "!#$&^_.+-".contains(c))
    };
    match ct.split_once('/') {
        Some((t, s)) if token(t) && (s == "*" || token(s)) => Ok(()),
        _ => Err(format!(
            "{ct:?} is not a content type; allowed: lowercase \"type/subtype\" or \"type/*\", such as \"image/png\" or \"image/*\""
        )),
    }
}

fn validate_key_prefix(p: &str) -> Result<(), String> {
    if p.starts_with('/') {
        return Err(format!("{p:?} must not start with '/'"));
    }
    if p.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(format!("{p:?} must not contain '.' or '..' path segments"));
    }
    if !p.is_empty() && !p.ends_with('/') {
        return Err(format!(
            "{p:?} must be empty or end with '/', such as \"uploads/\""
        ));
    }
    if p.chars().any(|c| c.is_control()) {
        return Err(format!("{p:?} must not contain control characters"));
    }
    Ok(())
}

/// The tags that mark a bucket as this object's.
pub fn ownership_tags(ub: &UploadBucket, adopted: bool) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    tags.insert(TAG_MANAGED_BY.to_owned(), MANAGED_BY.to_owned());
    tags.insert(TAG_NAMESPACE.to_owned(), ub.namespace().unwrap_or_default());
    tags.insert(TAG_NAME.to_owned(), ub.name_any());
    tags.insert(TAG_UID.to_owned(), ub.uid().unwrap_or_default());
    if adopted {
        tags.insert(TAG_ADOPTED.to_owned(), "true".to_owned());
    }
    tags
}

/// Pure: the bucket's tags with ours set: `current` minus every reserved key and every
/// `dropped` key (spec tags the operator wrote before and the spec no longer has), plus
/// `ownership` and `spec_tags`. Tags anyone else set stay.
pub fn merge_tags(
    current: &BTreeMap<String, String>,
    ownership: &BTreeMap<String, String>,
    spec_tags: &BTreeMap<String, String>,
    dropped: &[String],
) -> BTreeMap<String, String> {
    let mut tags: BTreeMap<String, String> = current
        .iter()
        .filter(|(k, _)| !k.starts_with(RESERVED_TAG_PREFIX) && !dropped.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    tags.extend(spec_tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    tags.extend(ownership.iter().map(|(k, v)| (k.clone(), v.clone())));
    tags
}

/// The whole desired state.
pub fn desired(ub: &UploadBucket, defaults: &Defaults) -> Result<DesiredBucket, SpecError> {
    let spec = &ub.spec;
    let bucket = bucket_ref(ub, defaults)?;

    for o in &spec.cors.allowed_origins {
        validate_origin(o).map_err(|m| SpecError::new("spec.cors.allowedOrigins", m))?;
    }
    validate_key_prefix(&spec.uploads.key_prefix)
        .map_err(|m| SpecError::new("spec.uploads.keyPrefix", m))?;
    if spec.uploads.allowed_content_types.is_empty() {
        return Err(SpecError::new(
            "spec.uploads.allowedContentTypes",
            "must list at least one content type, such as \"image/jpeg\" or \"image/*\"",
        ));
    }
    for ct in &spec.uploads.allowed_content_types {
        validate_content_type(ct)
            .map_err(|m| SpecError::new("spec.uploads.allowedContentTypes", m))?;
    }
    if !(1..=crate::crd::MAX_SIZE_BYTES_LIMIT).contains(&spec.uploads.max_size_bytes) {
        return Err(SpecError::new(
            "spec.uploads.maxSizeBytes",
            format!(
                "{} is out of range; allowed: 1 to {} (5 TiB)",
                spec.uploads.max_size_bytes,
                crate::crd::MAX_SIZE_BYTES_LIMIT
            ),
        ));
    }
    if !(1..=crate::crd::MAX_EXPIRES_SECONDS).contains(&spec.uploads.expires_seconds) {
        return Err(SpecError::new(
            "spec.uploads.expiresSeconds",
            format!(
                "{} is out of range; allowed: 1 to 604800 (7 days)",
                spec.uploads.expires_seconds
            ),
        ));
    }
    if let Some(jwt) = &spec.uploads.auth.jwt {
        // What the signer would refuse at start is refused here, naming the field.
        jwt.signer_config().validate().map_err(|e| {
            SpecError::new(
                "spec.uploads.auth.jwt",
                e.message.replace("UPLOADBUCKET_JWT_", ""),
            )
        })?;
        if let Some(k) = jwt
            .required_claims
            .keys()
            .find(|k| k.is_empty() || k.contains(['=', ',']) || k.chars().any(char::is_whitespace))
        {
            return Err(SpecError::new(
                "spec.uploads.auth.jwt.requiredClaims",
                format!("claim name {k:?} must be non-empty, with no '=', ',' or spaces"),
            ));
        }
        if let Some((k, _)) = jwt
            .required_claims
            .iter()
            .find(|(_, v)| v.is_empty() || v.contains(','))
        {
            return Err(SpecError::new(
                "spec.uploads.auth.jwt.requiredClaims",
                format!("the value of {k:?} must be non-empty, with no ','"),
            ));
        }
    }
    let tag_count = spec.tags.len();
    if tag_count > 40 {
        return Err(SpecError::new(
            "spec.tags",
            format!("has {tag_count} tags; allowed: at most 40"),
        ));
    }
    if let Some(k) = spec.tags.keys().find(|k| k.starts_with("uploadbucket.io/")) {
        return Err(SpecError::new(
            "spec.tags",
            format!(
                "key {k:?} is reserved: keys starting with \"uploadbucket.io/\" belong to the operator"
            ),
        ));
    }

    let encryption = match (spec.encryption.kind, &spec.encryption.kms_key_id) {
        (EncryptionType::SseKms, None) => {
            return Err(SpecError::new(
                "spec.encryption.kmsKeyId",
                "is required with type SSE-KMS: a KMS key id, alias/... or ARN",
            ));
        }
        (EncryptionType::SseS3, Some(_)) => {
            return Err(SpecError::new(
                "spec.encryption.kmsKeyId",
                "is only allowed with type SSE-KMS",
            ));
        }
        (EncryptionType::SseKms, Some(_)) if !defaults.backend.has_bucket_encryption() => {
            return Err(SpecError::new(
                "spec.encryption.type",
                "SSE-KMS is not supported by this operator's S3 backend (rgw); allowed here: SSE-S3",
            ));
        }
        (EncryptionType::SseKms, Some(key)) => Some(Encryption::SseKms {
            key_id: key.clone(),
        }),
        (EncryptionType::SseS3, None) if defaults.backend.has_bucket_encryption() => {
            Some(Encryption::SseS3)
        }
        (EncryptionType::SseS3, None) => None,
    };

    let cors = if spec.cors.allowed_origins.is_empty() {
        Vec::new()
    } else {
        let mut expose = spec.cors.expose_headers.clone();
        expose.push("ETag".to_owned());
        canonical_cors(vec![CorsRule {
            id: RULE_CORS.to_owned(),
            allowed_origins: spec.cors.allowed_origins.clone(),
            allowed_methods: spec
                .cors
                .allowed_methods
                .iter()
                .map(|m| m.as_str().to_owned())
                .collect(),
            allowed_headers: spec.cors.allowed_headers.clone(),
            expose_headers: expose,
            max_age_seconds: Some(spec.cors.max_age_seconds),
        }])
    };

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

    let public = spec.uploads.public_read;
    if public && !spec.uploads.verification.enabled {
        return Err(SpecError::new(
            "spec.uploads.publicRead",
            "serves verified uploads only: set spec.uploads.verification.enabled: true too",
        ));
    }
    // A public-read bucket policy is refused while BlockPublicPolicy is on, and ignored while
    // RestrictPublicBuckets is on; ACLs stay blocked either way.
    let public_access_block = defaults.backend.public_access_block(PublicAccessBlock {
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
            &verified_prefix(&spec.uploads.key_prefix),
        )
    });
    let notify = &spec.notifications;
    let target = match (&notify.http_endpoint, &notify.sqs_queue_arn) {
        (Some(_), Some(_)) => {
            return Err(SpecError::new(
                "spec.notifications",
                "name one target: httpEndpoint (S3-compatible stores) or sqsQueueArn (AWS)",
            ));
        }
        (Some(_), None) if defaults.backend == Backend::Aws => {
            return Err(SpecError::new(
                "spec.notifications.httpEndpoint",
                "needs an S3-compatible store that pushes to HTTP (the operator's --s3-backend rgw); on AWS use sqsQueueArn",
            ));
        }
        (None, Some(_)) if defaults.backend != Backend::Aws => {
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
    let notifications = target
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
        .collect();

    Ok(DesiredBucket {
        notifications,
        arn: policy::bucket_arn(&bucket.region, &bucket.name),
        policy_statements: policy::own_statements(public_policy.as_ref()),
        cors,
        lifecycle: canonical_lifecycle(lifecycle),
        public_access_block,
        acls_disabled: defaults.backend.has_ownership_controls(),
        encryption,
        spec_tags: spec.tags.clone(),
        versioning: spec.versioning,
        bucket,
    })
}

/// `ub-<namespace>-<name>-<8 hex of sha256(ns/name/uid)>`, at most 64 characters of the
/// ones IAM allows.
pub fn derive_role_name(ub: &UploadBucket) -> String {
    let ns = ub.namespace().unwrap_or_default();
    let hash = hex::encode(Sha256::digest(format!(
        "{ns}/{}/{}",
        ub.name_any(),
        ub.uid().unwrap_or_default()
    )));
    let base: String = format!("ub-{ns}-{}", ub.name_any())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64 - 9)
        .collect();
    format!("{base}-{}", &hash[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{UploadBucketSpec, UploadBucketStatus};

    fn defaults() -> Defaults {
        Defaults {
            region: "eu-west-1".into(),
            backend: Backend::Aws,
            bucket_name_prefix: String::new(),
            adoptable_buckets: Vec::new(),
        }
    }

    fn ub(ns: &str, name: &str, spec: UploadBucketSpec) -> UploadBucket {
        let mut ub = UploadBucket::new(name, spec);
        ub.metadata.namespace = Some(ns.into());
        ub.metadata.uid = Some("0f8fad5b-d9cb-469f-a165-70867728950e".into());
        ub
    }

    fn spec(json: serde_json::Value) -> UploadBucketSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn derived_names_are_valid_stable_and_bounded() {
        let a = derive_bucket_name(&ub("team-a", "avatars", UploadBucketSpec::default()), "");
        assert!(a.starts_with("team-a-avatars-"), "{a}");
        assert_eq!(
            a,
            derive_bucket_name(&ub("team-a", "avatars", UploadBucketSpec::default()), "")
        );
        validate_bucket_name(&a).unwrap();

        let long = derive_bucket_name(
            &ub(
                &"n".repeat(63),
                &"x.y".repeat(80),
                UploadBucketSpec::default(),
            ),
            "acme-",
        );
        assert!(long.len() <= 63, "{long}");
        validate_bucket_name(&long).unwrap();
        assert!(!long.contains('.'));

        let odd = derive_bucket_name(&ub("xn--a", "-", UploadBucketSpec::default()), "");
        validate_bucket_name(&odd).unwrap();

        let mut other = ub("team-a", "avatars", UploadBucketSpec::default());
        other.metadata.uid = Some("another-uid".into());
        assert_ne!(
            a,
            derive_bucket_name(&other, ""),
            "a re-created object gets a new bucket"
        );
    }

    #[test]
    fn bucket_name_rules() {
        for ok in ["abc", "my-bucket.v2", "a1b2c3"] {
            validate_bucket_name(ok).unwrap();
        }
        for bad in [
            "ab",
            "ABC",
            "-abc",
            "abc-",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "abc-s3alias",
            "a_b",
        ] {
            assert!(validate_bucket_name(bad).is_err(), "{bad} accepted");
        }
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

    #[test]
    fn recorded_names_win_and_cannot_be_moved() {
        let mut u = ub("a", "b", UploadBucketSpec::default());
        u.status = Some(UploadBucketStatus {
            bucket_name: Some("recorded-bucket".into()),
            region: Some("us-east-2".into()),
            ..Default::default()
        });
        let r = bucket_ref(&u, &defaults()).unwrap();
        assert_eq!(
            r,
            BucketRef {
                name: "recorded-bucket".into(),
                region: "us-east-2".into()
            }
        );

        u.spec.bucket_name = Some("someone-elses".into());
        assert_eq!(
            bucket_ref(&u, &defaults()).unwrap_err().field,
            "spec.bucketName"
        );
        u.spec.bucket_name = Some("recorded-bucket".into());
        u.spec.region = Some("eu-central-1".into());
        assert_eq!(
            bucket_ref(&u, &defaults()).unwrap_err().field,
            "spec.region"
        );
    }

    #[test]
    fn chosen_names_must_carry_the_admins_prefix_unless_adopted() {
        let mut defs = defaults();
        defs.bucket_name_prefix = "acme-".into();
        let chosen = |name: &str, adopt: bool| {
            let mut u = ub("a", "b", UploadBucketSpec::default());
            u.spec.bucket_name = Some(name.into());
            u.spec.adopt_existing_bucket = adopt;
            u
        };
        let err = resolve(&chosen("finance-data", false), &defs).unwrap_err();
        assert_eq!(err.field, "spec.bucketName");
        assert!(err.message.contains("\"acme-\""), "{}", err.message);
        let ok = resolve(&chosen("acme-photos", false), &defs).unwrap();
        assert!(!ok.derived && !ok.adopt);
        // Adoption is governed by the admin's allowlist instead (checked by `claim`).
        assert!(resolve(&chosen("finance-data", true), &defs).unwrap().adopt);
        // Derived names get the prefix and are recognised as this object's own.
        let derived = resolve(&ub("a", "b", UploadBucketSpec::default()), &defs).unwrap();
        assert!(derived.derived && derived.bucket.name.starts_with("acme-a-b-"));
        // Adoption needs a name and Retain.
        let mut u = ub("a", "b", UploadBucketSpec::default());
        u.spec.adopt_existing_bucket = true;
        assert_eq!(
            resolve(&u, &defs).unwrap_err().field,
            "spec.adoptExistingBucket"
        );
        let mut u = chosen("finance-data", true);
        u.spec.deletion_policy = crate::crd::DeletionPolicy::Delete;
        assert_eq!(resolve(&u, &defs).unwrap_err().field, "spec.deletionPolicy");
    }

    #[test]
    fn names_s3_refuses_are_refused() {
        for bad in [
            "192.168.5.4",
            "xn--bucket",
            "sthree-bucket",
            "bucket-s3alias",
            "bucket--ol-s3",
            "a..b",
            "a.-b",
            "a-.b",
        ] {
            let mut u = ub("a", "b", UploadBucketSpec::default());
            u.spec.bucket_name = Some(bad.into());
            let err = resolve(&u, &defaults()).unwrap_err();
            assert_eq!(err.field, "spec.bucketName", "{bad}");
        }
    }

    #[test]
    fn tags_of_others_stay_and_dropped_spec_tags_go() {
        let t = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let current = t(&[
            ("team", "finance"),
            ("old-spec-tag", "x"),
            (TAG_UID, "stale"),
            ("uploadbucket.io/whatever", "y"),
        ]);
        let merged = merge_tags(
            &current,
            &t(&[(TAG_UID, "u1")]),
            &t(&[("env", "prod")]),
            &["old-spec-tag".to_owned()],
        );
        assert_eq!(
            merged,
            t(&[("team", "finance"), ("env", "prod"), (TAG_UID, "u1")])
        );
    }

    #[test]
    fn adoptable_patterns() {
        for (p, n, ok) in [
            ("legacy-photos", "legacy-photos", true),
            ("legacy-photos", "legacy-photos2", false),
            ("legacy-*", "legacy-photos", true),
            ("legacy-*", "legacy-", true),
            ("legacy-*", "finance-legacy-x", false),
            ("*-media", "shop-media", true),
            ("*-media", "shop-media-x", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("*", "anything", true),
        ] {
            assert_eq!(glob_match(p, n), ok, "{p} vs {n}");
        }
        let mut defs = defaults();
        assert!(
            !defs.may_adopt("legacy-photos"),
            "nothing is adoptable by default"
        );
        defs.adoptable_buckets = vec!["legacy-*".into()];
        assert!(defs.may_adopt("legacy-photos"));
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
