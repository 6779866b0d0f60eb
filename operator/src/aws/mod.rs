//! A narrow view of the cloud: the S3 bucket calls the controller makes, over our own
//! plain types so that desired state and comparisons never depend on SDK types.
//!
//! In: bucket names and settings. Out: what S3 holds, or a classified [`AwsError`].
//! `s3.rs` implements [`BucketApi`] with aws-sdk-s3 (side effects); `policy.rs` builds policy
//! documents (pure); `rgw.rs` holds everything specific to Ceph RGW as a backend.

pub mod calls;
pub mod eks;
pub mod iam;
pub mod policy;
pub mod rgw;
pub mod s3;

use crate::reasons::Reason;
use std::collections::BTreeMap;

use async_trait::async_trait;

/// Ids of the CORS and lifecycle rules the operator writes start with this; a rule with any
/// other id (or none) belongs to someone else and is kept as it is.
pub const OWN_ID_PREFIX: &str = "uploadbucket-";

/// Whether a rule id is one of the operator's.
pub fn is_own_id(id: Option<&str>) -> bool {
    id.is_some_and(|id| id.starts_with(OWN_ID_PREFIX))
}

/// One CORS rule, in canonical form (lists sorted and deduplicated) so that what S3 returns
/// compares equal to what we asked for whatever order it was stored in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct CorsRule {
    pub id: String,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age_seconds: Option<i32>,
}

impl CorsRule {
    /// Sorts and deduplicates every list. Header names are case-insensitive, so they are
    /// lowercased too.
    pub fn canonical(mut self) -> Self {
        fn tidy(v: &mut Vec<String>) {
            v.sort();
            v.dedup();
        }
        for h in self
            .allowed_headers
            .iter_mut()
            .chain(self.expose_headers.iter_mut())
        {
            *h = h.to_ascii_lowercase();
        }
        tidy(&mut self.allowed_origins);
        tidy(&mut self.allowed_methods);
        tidy(&mut self.allowed_headers);
        tidy(&mut self.expose_headers);
        self
    }
}

/// Canonical form of a whole CORS configuration: each rule canonical, rules sorted.
pub fn canonical_cors(rules: Vec<CorsRule>) -> Vec<CorsRule> {
    let mut rules: Vec<CorsRule> = rules.into_iter().map(CorsRule::canonical).collect();
    rules.sort();
    rules
}

/// Where the operator sends a bucket's ObjectCreated events.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NotifyTarget {
    /// An SNS-style topic the operator keeps, pushing to an HTTP endpoint (S3-compatible
    /// stores: Ceph RGW's bucket notifications).
    Topic { name: String, push_endpoint: String },
    /// An SQS queue (AWS); its policy must let S3 send to it.
    Queue { arn: String },
}

/// One event notification of the operator's (id starting with [`OWN_ID_PREFIX`]):
/// `s3:ObjectCreated:*` under `prefix`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Notification {
    pub id: String,
    pub prefix: String,
    pub target: NotifyTarget,
}

/// One lifecycle rule, reduced to what the operator manages. S3 may return a rule's prefix
/// as `Filter.Prefix` or as the legacy top-level `Prefix`: both land in `prefix`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct LifecycleRule {
    pub id: String,
    pub prefix: String,
    pub enabled: bool,
    pub abort_incomplete_multipart_upload_days: Option<i32>,
    pub expiration_days: Option<i32>,
    /// Noncurrent versions (a versioned bucket's replaced and deleted objects) expire this
    /// many days after they stopped being current.
    pub noncurrent_days: Option<i32>,
    /// Only objects carrying this tag (key, value), besides the prefix.
    pub tag: Option<(String, String)>,
}

/// Canonical form of a lifecycle configuration: rules sorted by id.
pub fn canonical_lifecycle(mut rules: Vec<LifecycleRule>) -> Vec<LifecycleRule> {
    rules.sort();
    rules
}

/// The bucket's public-access block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PublicAccessBlock {
    pub block_public_acls: bool,
    pub ignore_public_acls: bool,
    pub block_public_policy: bool,
    pub restrict_public_buckets: bool,
}

/// Default server-side encryption of the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encryption {
    SseS3,
    SseKms { key_id: String },
}

/// Versioning state as S3 reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Versioning {
    /// Never enabled.
    #[default]
    Off,
    Enabled,
    Suspended,
}

/// Which bucket, and where: S3 clients are regional.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketRef {
    pub name: String,
    pub region: String,
}

/// Result of asking S3 to create a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// The bucket did not exist and now does.
    New,
    /// It already existed and belongs to us: nothing to do.
    AlreadyOwned,
}

/// What one [`BucketApi::empty_some`] removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Emptied {
    /// Object versions and delete markers deleted (aborted multipart uploads not counted).
    pub objects: u64,
    /// Nothing was left to remove when the batch ended (as far as the listing showed).
    pub done: bool,
}

/// Result of a delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// It was not there: success for a repeatable cleanup.
    NotFound,
}

/// Cloud errors, classified so the controller can tell a spec problem from a transient one.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error(
        "bucket name {0:?} is already taken by another AWS account; set spec.bucketName to another name"
    )]
    BucketTaken(String),
    #[error(
        "bucket {0:?} is not empty; set spec.emptyOnDelete: true to delete its objects, or remove the objects yourself"
    )]
    BucketNotEmpty(String),
    #[error(
        "IAM role {0:?} exists and is not this UploadBucket's (its uploadbucket.io/uid tag differs); the operator leaves it alone"
    )]
    RoleManagedByOther(String),
    #[error(
        "service account {service_account:?} already has an EKS Pod Identity association that is not this UploadBucket's ({holder}); EKS allows one per service account: run the pods that sign for this UploadBucket as another service account (spec.serviceAccountNames), or remove that association"
    )]
    AssociationManagedByOther {
        service_account: String,
        /// Whose it is, as far as its tags say.
        holder: String,
    },
    #[error("{op}: access denied: {message}")]
    AccessDenied { op: &'static str, message: String },
    #[error("{op}: this S3 backend does not support it: {message}")]
    NotSupported { op: &'static str, message: String },
    #[error("{op}: {code}: {message}")]
    Api {
        op: &'static str,
        code: String,
        message: String,
    },
}

impl AwsError {
    /// Short label for metrics and Events.
    pub fn reason(&self) -> Reason {
        match self {
            AwsError::BucketTaken(_) => Reason::BucketNameTaken,
            AwsError::BucketNotEmpty(_) => Reason::BucketNotEmpty,
            AwsError::RoleManagedByOther(_) => Reason::RoleManagedByOther,
            AwsError::AssociationManagedByOther { .. } => Reason::AssociationManagedByOther,
            AwsError::AccessDenied { .. } => Reason::AccessDenied,
            AwsError::NotSupported { .. } => Reason::NotSupported,
            AwsError::Api { .. } => Reason::AwsApiError,
        }
    }

    /// Whether retrying soon can help. Name conflicts, missing permissions and unsupported
    /// features need a person to act first; they are retried slowly.
    pub fn is_transient(&self) -> bool {
        matches!(self, AwsError::Api { .. })
    }
}

/// The S3 calls the controller makes. Every getter reports "not configured" as an empty
/// value, never as an error; every setter is idempotent.
#[async_trait]
pub trait BucketApi: Send + Sync {
    /// Creates the bucket; a bucket we already own is success, one owned by someone else
    /// is [`AwsError::BucketTaken`].
    /// `tags` go into the CreateBucket request itself where the backend supports it, so the
    /// bucket is never without its ownership tags.
    async fn create_bucket(
        &self,
        bucket: &BucketRef,
        tags: &BTreeMap<String, String>,
    ) -> Result<Created, AwsError>;
    /// Whether the bucket exists (and we can see it).
    async fn bucket_exists(&self, bucket: &BucketRef) -> Result<bool, AwsError>;
    /// Whether the bucket belongs to the operator's own account (its own user, on RGW), not
    /// merely lets the operator in: bucket names are global, and another account can make a
    /// bucket under a name the operator wants and open it to the operator in its bucket
    /// policy. On AWS every bucket call carries `ExpectedBucketOwner`, so S3 answers 403 to
    /// all of them for another account's bucket; this asks GetBucketPolicy, which every
    /// implementation of that header checks (a 403 is an error: it cannot tell another
    /// account's bucket from a denied read). RGW ignores the header, so there it compares
    /// the owner GetBucketAcl names with the operator's own. One read either way.
    async fn owned_by_us(&self, bucket: &BucketRef) -> Result<bool, AwsError>;

    /// The operator's own CORS rules (ids starting with [`OWN_ID_PREFIX`]).
    async fn get_cors(&self, bucket: &BucketRef) -> Result<Vec<CorsRule>, AwsError>;
    /// Replaces the operator's own CORS rules with `rules`, keeping everyone else's exactly
    /// as they are; the configuration is deleted when no rule is left.
    async fn put_cors(&self, bucket: &BucketRef, rules: &[CorsRule]) -> Result<(), AwsError>;

    /// The operator's own lifecycle rules (ids starting with [`OWN_ID_PREFIX`]).
    async fn get_lifecycle(&self, bucket: &BucketRef) -> Result<Vec<LifecycleRule>, AwsError>;
    /// Replaces the operator's own lifecycle rules with `rules`, keeping everyone else's
    /// exactly as they are; the configuration is deleted when no rule is left.
    async fn put_lifecycle(
        &self,
        bucket: &BucketRef,
        rules: &[LifecycleRule],
    ) -> Result<(), AwsError>;

    async fn get_public_access_block(
        &self,
        bucket: &BucketRef,
    ) -> Result<Option<PublicAccessBlock>, AwsError>;
    async fn put_public_access_block(
        &self,
        bucket: &BucketRef,
        pab: PublicAccessBlock,
    ) -> Result<(), AwsError>;

    /// `Some(true)` when object ownership is `BucketOwnerEnforced` (ACLs disabled).
    async fn get_acls_disabled(&self, bucket: &BucketRef) -> Result<Option<bool>, AwsError>;
    async fn put_acls_disabled(&self, bucket: &BucketRef) -> Result<(), AwsError>;

    async fn get_encryption(&self, bucket: &BucketRef) -> Result<Option<Encryption>, AwsError>;
    async fn put_encryption(&self, bucket: &BucketRef, enc: &Encryption) -> Result<(), AwsError>;

    async fn get_tags(&self, bucket: &BucketRef) -> Result<BTreeMap<String, String>, AwsError>;
    async fn put_tags(
        &self,
        bucket: &BucketRef,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), AwsError>;

    async fn get_versioning(&self, bucket: &BucketRef) -> Result<Versioning, AwsError>;
    async fn put_versioning(&self, bucket: &BucketRef, enabled: bool) -> Result<(), AwsError>;

    /// The bucket policy as JSON, if any.
    async fn get_policy(&self, bucket: &BucketRef) -> Result<Option<serde_json::Value>, AwsError>;
    async fn put_policy(
        &self,
        bucket: &BucketRef,
        policy: &serde_json::Value,
    ) -> Result<(), AwsError>;
    async fn delete_policy(&self, bucket: &BucketRef) -> Result<(), AwsError>;

    /// The operator's own event notifications (ids starting with [`OWN_ID_PREFIX`]), sorted.
    async fn get_notifications(&self, bucket: &BucketRef) -> Result<Vec<Notification>, AwsError>;
    /// Replaces the operator's own notifications, keeping everyone else's; creates the
    /// topics they need and deletes the operator's topics of this bucket no longer used.
    async fn put_notifications(
        &self,
        bucket: &BucketRef,
        notifications: &[Notification],
    ) -> Result<(), AwsError>;

    /// Removes one batch of what keeps the bucket from being deleted: the unfinished
    /// multipart uploads of one listing page while there are any, then one page (at most
    /// `max_keys`) of object versions and delete markers. A caller that must stop when the
    /// bucket stops being its own re-checks between batches.
    async fn empty_some(&self, bucket: &BucketRef, max_keys: i32) -> Result<Emptied, AwsError>;
    /// Every batch until nothing is left, without checking anything between them: for tools
    /// and tests on buckets they made; the controller empties batch by batch.
    async fn empty_bucket(&self, bucket: &BucketRef) -> Result<u64, AwsError> {
        let mut objects = 0;
        loop {
            let batch = self.empty_some(bucket, 1000).await?;
            objects += batch.objects;
            if batch.done {
                return Ok(objects);
            }
        }
    }
    /// Deletes an empty bucket; [`AwsError::BucketNotEmpty`] otherwise.
    async fn delete_bucket(&self, bucket: &BucketRef) -> Result<Deleted, AwsError>;
}
