//! The `UploadBucket` API (`uploadbucket.io/v1alpha1`).
//!
//! In: nothing (types only). Out: the Rust types the controller reads and the CRD schema
//! (`uploadbucket-operator crd`). Doc comments here become `kubectl explain` text, so they
//! are written for the platform engineer who applies the resource.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default largest object: 10 MiB.
pub const DEFAULT_MAX_SIZE_BYTES: i64 = 10 * 1024 * 1024;
/// Default presigned-URL lifetime, as in the original sample.
pub const DEFAULT_EXPIRES_SECONDS: i64 = 300;
/// Longest presigned-URL lifetime SigV4 allows (7 days).
pub const MAX_EXPIRES_SECONDS: i64 = 604_800;
/// S3's largest object (5 TiB).
pub const MAX_SIZE_BYTES_LIMIT: i64 = 5 * 1024 * 1024 * 1024 * 1024;

/// An S3 bucket for direct-from-browser uploads, with its CORS rules, public-access block,
/// encryption and lifecycle kept in shape by the uploadbucket operator.
// Several printer columns share `type_ = "string"`, which clippy mistakes for a repeat.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "uploadbucket.io",
    version = "v1alpha1",
    kind = "UploadBucket",
    plural = "uploadbuckets",
    shortname = "ub",
    namespaced,
    status = "UploadBucketStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "An UploadBucket: an S3 bucket made for uploads straight from browsers and apps, kept in shape by the uploadbucket operator (CORS, public-access block, encryption, lifecycle, tags), with an IAM role that the pods of `spec.serviceAccountNames` assume to sign upload URLs. Apply it in the app's namespace; annotate the app's pods `uploadbucket.io/inject: <name>` to get the signer sidecar. Reference: docs/reference/uploadbucket-api.md.",
    printcolumn(
        name = "Bucket",
        type_ = "string",
        description = "S3 bucket name",
        json_path = ".status.bucketName"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        description = "Whether the bucket is provisioned as specified",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        description = "Why the bucket is (not) ready",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        description = "Time since creation",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new(
    "has(self.bucketName) == has(oldSelf.bucketName) && (!has(self.bucketName) || self.bucketName == oldSelf.bucketName)"
).message("bucketName is immutable: it cannot be set, changed or removed after creation").reason(Reason::FieldValueForbidden).field_path(".bucketName"))]
#[x_kube(validation = Rule::new(
    "has(self.region) == has(oldSelf.region) && (!has(self.region) || self.region == oldSelf.region)"
).message("region is immutable: it cannot be set, changed or removed after creation").reason(Reason::FieldValueForbidden).field_path(".region"))]
#[x_kube(validation = Rule::new("!has(self.adoptExistingBucket) || !self.adoptExistingBucket || has(self.bucketName)").message("adoptExistingBucket needs bucketName: the existing bucket to adopt").field_path(".adoptExistingBucket"))]
#[x_kube(validation = Rule::new("!has(self.adoptExistingBucket) || !self.adoptExistingBucket || !has(self.deletionPolicy) || self.deletionPolicy == 'Retain'").message("an adopted bucket is never deleted by the operator: deletionPolicy must be Retain with adoptExistingBucket").field_path(".deletionPolicy"))]
#[x_kube(validation = Rule::new("!has(self.bucketName) || !(self.bucketName.startsWith('xn--') || self.bucketName.startsWith('sthree-') || self.bucketName.startsWith('amzn-s3-demo-') || self.bucketName.endsWith('-s3alias') || self.bucketName.endsWith('--ol-s3') || self.bucketName.endsWith('--x-s3') || self.bucketName.endsWith('.mrap') || self.bucketName.contains('..') || self.bucketName.contains('.-') || self.bucketName.contains('-.') || self.bucketName.matches('^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$'))").message("bucketName is a name S3 refuses: no IP-address form, no 'xn--', 'sthree-' or 'amzn-s3-demo-' prefix, no '-s3alias', '--ol-s3', '--x-s3' or '.mrap' suffix, no '..', '.-' or '-.'").reason(Reason::FieldValueInvalid).field_path(".bucketName"))]
#[serde(rename_all = "camelCase")]
pub struct UploadBucketSpec {
    /// Name of the S3 bucket. Default: derived from the operator's bucket-name prefix, the
    /// namespace and name, plus a short hash of the object's uid (a valid,
    /// globally-unlikely-to-collide S3 name of at most 63 characters). 3-63 characters of
    /// lowercase letters, digits, '.' and '-', starting and ending with a letter or digit; no
    /// IP-address form, no `xn--`/`sthree-` prefix, no `-s3alias`/`--ol-s3` suffix. When the
    /// operator has a bucket-name prefix, the name must start with it. A bucket that already
    /// exists is never taken over: it must have been created by this object, or be adopted
    /// (see `adoptExistingBucket`). Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    )]
    pub bucket_name: Option<String>,

    /// Take over management of the existing bucket named in `bucketName`. Allowed only for
    /// names the cluster admin lists in the operator's `--adoptable-buckets`. An adopted
    /// bucket is never emptied or deleted by the operator; the operator adds its own tags,
    /// CORS rule, lifecycle rules and policy statements beside everyone else's, and removes
    /// only those when this object is deleted. Default: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt_existing_bucket: bool,

    /// AWS region of the bucket, such as `eu-west-1`. Default: the operator's region.
    /// Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z]{2}(-[a-z0-9]+)+-[0-9]+$"))]
    pub region: Option<String>,

    /// Which web origins may upload from a browser (the bucket's CORS rules).
    #[serde(default)]
    pub cors: CorsSpec,

    /// The rules the signer sidecar enforces on every presigned URL.
    #[serde(default)]
    pub uploads: UploadsSpec,

    /// Server-side encryption of stored objects. Default: SSE-S3 (AES256).
    #[serde(default)]
    pub encryption: EncryptionSpec,

    /// Lifecycle rules: clean up abandoned multipart uploads, optionally expire objects.
    #[serde(default)]
    pub lifecycle: LifecycleSpec,

    /// Keep every version of every object (S3 versioning). Default: false. Once enabled,
    /// turning it off suspends versioning; S3 cannot disable it again.
    #[serde(default)]
    pub versioning: bool,

    /// Tell the app when an upload lands: S3 event notifications (`s3:ObjectCreated:*` under
    /// the key prefix).
    #[serde(default, skip_serializing_if = "NotificationsSpec::is_empty")]
    pub notifications: NotificationsSpec,

    /// Extra tags for the bucket. Keys starting with `uploadbucket.io/` are reserved for the
    /// operator's own ownership tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('uploadbucket.io/'))").message("tag keys starting with uploadbucket.io/ are reserved for the operator"))]
    #[x_kube(validation = Rule::new("self.size() <= 40").message("at most 40 tags (S3 allows 50; the operator uses some)"))]
    pub tags: BTreeMap<String, String>,

    /// What happens to the bucket when this UploadBucket is deleted: `Retain` (default) keeps
    /// the bucket and its objects; `Delete` removes the bucket if it is empty (see
    /// `emptyOnDelete`).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// With `deletionPolicy: Delete`, first delete every object, version and unfinished
    /// multipart upload in the bucket. Default: false, so a bucket holding data is never
    /// removed by accident: deletion waits, with a condition saying why.
    #[serde(default)]
    pub empty_on_delete: bool,

    /// Service accounts of this namespace whose pods may use the bucket's IAM role (IRSA).
    /// Default: every service account of the namespace. Anyone who can create pods in a
    /// namespace can run them as any of its service accounts, so the namespace is the real
    /// boundary; naming accounts narrows it for pods you do not write yourself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 50),
        inner(
            regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
            length(max = 253)
        )
    )]
    pub service_account_names: Vec<String>,
}

/// Browser-facing CORS rules of the bucket.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorsSpec {
    /// Origins (scheme://host[:port]) allowed to upload from a browser, such as
    /// `https://app.example.com`. `*` allows any origin. Empty: no browser uploads.
    #[serde(default)]
    #[schemars(length(max = 100), inner(regex(pattern = r"^(\*|https?://[^/\s]+)$")))]
    pub allowed_origins: Vec<String>,

    /// HTTP methods the browser may use. Default: PUT and POST.
    #[serde(default = "default_methods")]
    #[schemars(length(min = 1))]
    pub allowed_methods: Vec<CorsMethod>,

    /// Request headers the browser may send. Default: `*`, because presigned requests carry
    /// signed headers such as `content-type` that vary by client.
    #[serde(default = "default_allowed_headers")]
    pub allowed_headers: Vec<String>,

    /// Response headers readable from JavaScript. `ETag` is always added: multipart uploads
    /// need it to complete.
    #[serde(default)]
    pub expose_headers: Vec<String>,

    /// How long a browser may cache a preflight answer, in seconds. Default: 3000.
    #[serde(default = "default_max_age")]
    #[schemars(range(min = 0, max = 86400))]
    pub max_age_seconds: i32,
}

impl Default for CorsSpec {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allowed_methods: default_methods(),
            allowed_headers: default_allowed_headers(),
            expose_headers: Vec::new(),
            max_age_seconds: default_max_age(),
        }
    }
}

fn default_methods() -> Vec<CorsMethod> {
    vec![CorsMethod::Put, CorsMethod::Post]
}
fn default_allowed_headers() -> Vec<String> {
    vec!["*".to_owned()]
}
fn default_max_age() -> i32 {
    3000
}

/// An HTTP method a browser may use against the bucket.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum CorsMethod {
    /// Upload with a presigned PUT (single request or multipart part).
    Put,
    /// Upload with a presigned POST form.
    Post,
    /// Download (needs `uploads.allowDownloads` on the signer side to be useful).
    Get,
    /// Metadata requests.
    Head,
    /// Delete objects (rarely wanted from a browser).
    Delete,
}

impl CorsMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            CorsMethod::Put => "PUT",
            CorsMethod::Post => "POST",
            CorsMethod::Get => "GET",
            CorsMethod::Head => "HEAD",
            CorsMethod::Delete => "DELETE",
        }
    }
}

/// Rules the signer sidecar applies to every presigned URL it hands out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.publicRead) || !self.publicRead || (has(self.verification) && has(self.verification.enabled) && self.verification.enabled)").message("publicRead serves verified uploads only: set verification.enabled: true too").field_path(".publicRead"))]
pub struct UploadsSpec {
    /// Every object key starts with this prefix. Default: `uploads/`. Must be empty or end
    /// with `/`; no leading `/`, no `..`.
    #[serde(default = "default_key_prefix")]
    #[schemars(length(max = 512), regex(pattern = r"^([A-Za-z0-9!_.*'()-]+/)*$"))]
    #[x_kube(validation = Rule::new("!self.contains('..')").message("keyPrefix must not contain '..'"))]
    pub key_prefix: String,

    /// Content types a client may upload: exact (`image/png`) or a whole type (`image/*`).
    /// Default: `image/jpeg`.
    #[serde(default = "default_content_types")]
    #[schemars(
        length(min = 1, max = 64),
        inner(regex(pattern = r"^[a-z0-9][a-z0-9!#$&^_.+-]*/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*)$"))
    )]
    pub allowed_content_types: Vec<String>,

    /// Largest object a client may upload, in bytes. Default: 10485760 (10 MiB).
    #[serde(default = "default_max_size")]
    #[schemars(range(min = 1, max = 5497558138880_i64))]
    pub max_size_bytes: i64,

    /// Lifetime of a presigned URL in seconds. Default: 300. At most 604800 (7 days).
    #[serde(default = "default_expires")]
    #[schemars(range(min = 1, max = 604800))]
    pub expires_seconds: i64,

    /// Let anyone read verified uploads over plain HTTPS (the original sample's public-read
    /// ACL). Needs `verification.enabled`: done with a bucket policy granting `s3:GetObject` on
    /// `<keyPrefix>verified/` only, where nothing but verified objects ever is; uploads not
    /// (yet) verified stay private. Default: false.
    #[serde(default)]
    pub public_read: bool,

    /// Let pods using the bucket's IAM role read objects under the key prefix (`s3:GetObject`,
    /// e.g. to sign download URLs); with verification, objects in `<keyPrefix>verified/`
    /// only. Default: false: the role can only upload.
    #[serde(default)]
    pub allow_downloads: bool,

    /// Let the signer hand out PUT URLs without a signed size (`GET /uploads` without `size`),
    /// as the original sample did. RISK: anyone holding such a URL can store an object of any
    /// size, up to S3's 5 GiB per PUT, whatever `maxSizeBytes` says. Default: false: a PUT URL
    /// always signs the exact size, and clients that cannot state it get a POST form whose
    /// policy carries the size range.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unsized_put: bool,

    /// Check uploads after the fact: URLs put uploads under `<keyPrefix>incoming/`; the app
    /// calls the signer's `POST /uploads/verify`, which reads the upload's first bytes and,
    /// only if its type matches them, copies exactly those bytes to `<keyPrefix>verified/`
    /// (a key no URL names) and answers that key. A lifecycle rule empties the incoming area
    /// after `pendingExpirationDays`, so unchecked and refused uploads go away by themselves.
    #[serde(default, skip_serializing_if = "VerificationSpec::is_off")]
    pub verification: VerificationSpec,

    /// Every upload must name an `owner` (the app's id of its user, set by the app's backend):
    /// its keys go under `<keyPrefix><owner>/`, and every later call (multipart parts,
    /// completion, abort, verify) must name the same owner. Default: false (owner optional).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_owner: bool,

    /// Per-owner quotas (requests without an owner count as one owner).
    #[serde(default, skip_serializing_if = "LimitsSpec::is_off")]
    pub limits: LimitsSpec,

    /// Who may ask the signer for URLs. Default: any container of the pod, naming any owner.
    #[serde(default, skip_serializing_if = "AuthSpec::is_off")]
    pub auth: AuthSpec,
}

/// `spec.uploads.limits`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Uploads an owner may start per minute, counted by each signer pod on its own (a pod
    /// answers 429 with Retry-After beyond it). 0: no limit.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100000))]
    pub urls_per_minute: i32,

    /// Multipart uploads an owner may have in progress at once, counted from S3, so across
    /// all pods. 0: no limit.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10000))]
    pub open_multipart_uploads: i32,
}

impl LimitsSpec {
    fn is_off(&self) -> bool {
        *self == Self::default()
    }
}

/// `spec.uploads.auth`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Require the end user's token (a JWT from your identity provider) on every call that
    /// starts, continues or verifies an upload, and take the upload's owner from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSpec>,
}

impl AuthSpec {
    fn is_off(&self) -> bool {
        self.jwt.is_none()
    }
}

/// `spec.uploads.auth.jwt`: the signer checks `Authorization: Bearer <token>` (signature by
/// one of the issuer's published keys, RS256/RS384/RS512/PS256/PS384/PS512/ES256/ES384/EdDSA;
/// `iss`; `aud`; `exp` and `nbf` with 60 s of leeway), then puts the upload in the folder of
/// the token's owner claim. An `owner` in the request that is not the token's is refused.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtSpec {
    /// The identity provider's issuer URL, exactly as tokens carry it in `iss` (e.g.
    /// `https://login.example.com/`, `https://cognito-idp.eu-west-1.amazonaws.com/<pool id>`).
    #[schemars(
        length(min = 1, max = 1024),
        regex(pattern = r"^https?://[^\s/?#]+[^\s]*$")
    )]
    pub issuer: String,

    /// The audiences a token may be for (its `aud` must hold one of them): the API identifier
    /// or client id your provider puts there.
    #[schemars(
        length(min = 1, max = 16),
        inner(length(min = 1, max = 512), regex(pattern = r"^[^,\s]+$"))
    )]
    pub audiences: Vec<String>,

    /// Where the provider publishes its keys (JWKS). Default: the `jwks_uri` of its OpenID
    /// Connect discovery document (`<issuer>/.well-known/openid-configuration`).
    #[serde(default, rename = "jwksURI", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r"^https?://[^\s/?#]+[^\s]*$"))]
    pub jwks_uri: Option<String>,

    /// The claim that names the upload's owner (its folder). Default: `sub`.
    #[serde(default = "default_owner_claim")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[^,=\s]+$"))]
    pub owner_claim: String,

    /// Claims every token must carry, as name: value. The claim must equal the value, or be a
    /// list holding it, or a space-separated string holding it (as `scope` is), e.g.
    /// `{scope: "uploads:write"}` or `{groups: uploaders}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    pub required_claims: BTreeMap<String, String>,
}

fn default_owner_claim() -> String {
    "sub".to_owned()
}

impl JwtSpec {
    /// The signer's settings for this spec (its env contract).
    pub fn signer_config(&self) -> uploadbucket_sidecar::config::JwtConfig {
        uploadbucket_sidecar::config::JwtConfig {
            issuer: Some(self.issuer.clone()),
            audiences: self.audiences.clone(),
            jwks_uri: self.jwks_uri.clone(),
            owner_claim: self.owner_claim.clone(),
            required_claims: self
                .required_claims
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        }
    }
}

/// `spec.notifications`: where ObjectCreated events of uploads go. At most one target.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationsSpec {
    /// S3-compatible stores (Ceph RGW): POST each event to this `http(s)://` URL, through a
    /// topic the operator keeps (`uploadbucket-<bucket>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub http_endpoint: Option<String>,
    /// AWS: send each event to this SQS queue; its access policy must let S3 send to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^arn:aws[a-z-]*:sqs:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,80}(\.fifo)?$"
    ))]
    pub sqs_queue_arn: Option<String>,
}

impl NotificationsSpec {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// `spec.uploads.verification`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationSpec {
    /// Tag uploads pending and let the signer verify them. Default: false.
    #[serde(default)]
    pub enabled: bool,

    /// Days after which an object still tagged pending is deleted by the bucket's lifecycle
    /// rule. Default: 1.
    #[serde(default = "default_pending_days")]
    #[schemars(range(min = 1, max = 3650))]
    pub pending_expiration_days: i32,

    /// What `verify` does with an object that fails: `Delete` it (default), or `Quarantine`
    /// it (tag `uploadbucket-state=quarantined`, kept in the incoming area for inspection
    /// until its expiry, never public).
    #[serde(default)]
    pub on_failure: OnFailure,
}

impl VerificationSpec {
    fn is_off(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for VerificationSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            pending_expiration_days: default_pending_days(),
            on_failure: OnFailure::Delete,
        }
    }
}

fn default_pending_days() -> i32 {
    1
}

/// What happens to an upload that fails verification.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OnFailure {
    /// Delete the object.
    #[default]
    Delete,
    /// Tag it `uploadbucket-state=quarantined` and keep it.
    Quarantine,
}

impl Default for UploadsSpec {
    fn default() -> Self {
        Self {
            key_prefix: default_key_prefix(),
            allowed_content_types: default_content_types(),
            max_size_bytes: default_max_size(),
            expires_seconds: default_expires(),
            public_read: false,
            allow_downloads: false,
            allow_unsized_put: false,
            verification: VerificationSpec::default(),
            require_owner: false,
            limits: LimitsSpec::default(),
            auth: AuthSpec::default(),
        }
    }
}

fn default_key_prefix() -> String {
    "uploads/".to_owned()
}
fn default_content_types() -> Vec<String> {
    vec!["image/jpeg".to_owned()]
}
fn default_max_size() -> i64 {
    DEFAULT_MAX_SIZE_BYTES
}
fn default_expires() -> i64 {
    DEFAULT_EXPIRES_SECONDS
}

/// Server-side encryption of the bucket's objects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[x_kube(validation = Rule::new("self.type == 'SSE-KMS' || !has(self.kmsKeyId)").message("kmsKeyId is only allowed with type SSE-KMS"))]
#[x_kube(validation = Rule::new("self.type != 'SSE-KMS' || has(self.kmsKeyId)").message("type SSE-KMS needs kmsKeyId (a KMS key id, alias or ARN)"))]
#[serde(rename_all = "camelCase")]
pub struct EncryptionSpec {
    /// `SSE-S3` (default; keys managed by S3) or `SSE-KMS` (a KMS key of yours).
    #[serde(default, rename = "type")]
    pub kind: EncryptionType,
    /// KMS key id, alias (`alias/...`) or ARN. Required with, and only with, `SSE-KMS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub kms_key_id: Option<String>,
}

/// Encryption kind.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum EncryptionType {
    /// S3-managed keys (AES256). What AWS applies to every new bucket.
    #[default]
    #[serde(rename = "SSE-S3")]
    SseS3,
    /// AWS KMS keys.
    #[serde(rename = "SSE-KMS")]
    SseKms,
}

/// Lifecycle rules of the bucket.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleSpec {
    /// Abort multipart uploads still unfinished this many days after they started, so
    /// abandoned parts stop costing storage. Default: 1. 0 turns the rule off.
    #[serde(default = "default_abort_days")]
    #[schemars(range(min = 0, max = 3650))]
    pub abort_incomplete_multipart_upload_days: i32,

    /// Delete objects under the key prefix this many days after upload. Default: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36500))]
    pub expiration_days: Option<i32>,
}

impl Default for LifecycleSpec {
    fn default() -> Self {
        Self {
            abort_incomplete_multipart_upload_days: default_abort_days(),
            expiration_days: None,
        }
    }
}

fn default_abort_days() -> i32 {
    1
}

/// What deleting the UploadBucket does to the S3 bucket.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the bucket and its objects (default).
    #[default]
    Retain,
    /// Delete the bucket (it must be empty unless `emptyOnDelete` is true).
    Delete,
}

/// Observed state, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadBucketStatus {
    /// `Ready` (everything provisioned as specified), `BucketReady`, and `RoleReady`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The S3 bucket this object manages. Recorded only once the operator has proven the
    /// bucket is this object's (it created it, or the bucket carries this object's uid tag);
    /// every later action re-checks that tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    /// A bucket the operator is creating for this object under a name derived from its uid,
    /// recorded just before CreateBucket and kept until a pass goes through (the bucket then
    /// carries this object's tags), so that a restart or a failure mid-create still
    /// recognizes it. Never by itself a licence to write or delete: the name must also be
    /// this object's derived name and the bucket untagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creating_bucket: Option<String>,
    /// Keys of `spec.tags` the operator last wrote, so that a key dropped from the spec is
    /// removed from the bucket while tags set by anyone else stay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_tag_keys: Vec<String>,
    /// ARN of the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_arn: Option<String>,
    /// Region of the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The IAM role pods assume through IRSA, named from this object's namespace, name and
    /// uid. Recorded once the role exists; deletion acts only on that derived name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_name: Option<String>,
    /// ARN of that role: what `AWS_ROLE_ARN` is set to in injected pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The ConfigMap in this namespace (`<name>-bucket`, owned by this object) that tells
    /// workloads without the signer where the bucket is: `BUCKET_NAME`, `BUCKET_REGION`,
    /// `BUCKET_HOST`, `BUCKET_PORT`, `BUCKET_ENDPOINT`, `BUCKET_ARN`, `KEY_PREFIX`, `ROLE_ARN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_name: Option<String>,
}

impl UploadBucket {
    /// The condition of the given type, if any.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
    }
}

/// The CRD as YAML, exactly as committed in `crds/`.
pub fn crd_yaml() -> String {
    let crd = UploadBucket::crd();
    let body = serde_yaml::to_string(&crd).expect("CRD serializes to YAML");
    format!(
        "# Generated by `uploadbucket-operator crd` from operator/src/crd.rs. Do not edit.\n{body}"
    )
}

/// Drops from a cached UploadBucket what the operator never reads and what is most of its
/// size: the managed fields, and `kubectl apply`'s copy of the whole object in the
/// `last-applied-configuration` annotation. Every watch cache of UploadBuckets keeps them
/// slim, so memory per object stays what the spec and status take.
pub fn slim(ub: &mut UploadBucket) {
    ub.metadata.managed_fields = None;
    if let Some(a) = ub.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_files_are_up_to_date() {
        // The CRD directory and the chart's copy (Helm installs `crds/` before templates).
        // Cargo's value at run time: the build cache is shared between checkouts, and the
        // path compiled in may be another checkout's.
        let dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
            || env!("CARGO_MANIFEST_DIR").into(),
            std::path::PathBuf::from,
        );
        for path in [
            dir.join("../crds/uploadbuckets.uploadbucket.io.yaml"),
            dir.join("../charts/uploadbucket-operator/crds/uploadbuckets.uploadbucket.io.yaml"),
        ] {
            let path = path.display().to_string();
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            if std::env::var_os("UPDATE_CRDS").is_some() {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "UPDATE_CRDS is set under CI: a check that rewrites what it checks proves nothing"
                );
                std::fs::write(&path, crd_yaml()).expect("write CRD");
                continue;
            }
            assert!(
                committed == crd_yaml(),
                "{path} is stale: run `UPDATE_CRDS=1 cargo test -p uploadbucket-operator crd_files` (or `cargo run -p uploadbucket-operator -- crd` into both files)"
            );
        }
    }

    #[test]
    fn the_example_manifest_parses() {
        let text = include_str!("../../examples/uploadbucket.yaml");
        let ub: UploadBucket = serde_yaml::from_str(text).expect("examples/uploadbucket.yaml");
        assert_eq!(ub.spec.uploads.key_prefix, "avatars/");
        assert_eq!(ub.spec.cors.allowed_origins.len(), 2);
    }

    #[test]
    fn empty_spec_gets_documented_defaults() {
        let spec: UploadBucketSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec.uploads.key_prefix, "uploads/");
        assert_eq!(spec.uploads.allowed_content_types, vec!["image/jpeg"]);
        assert_eq!(spec.uploads.expires_seconds, 300);
        assert_eq!(spec.uploads.max_size_bytes, 10 * 1024 * 1024);
        assert_eq!(
            spec.cors.allowed_methods,
            vec![CorsMethod::Put, CorsMethod::Post]
        );
        assert_eq!(spec.cors.max_age_seconds, 3000);
        assert_eq!(spec.lifecycle.abort_incomplete_multipart_upload_days, 1);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Retain);
        assert_eq!(spec.encryption.kind, EncryptionType::SseS3);
        assert!(!spec.empty_on_delete);
    }

    #[test]
    fn schema_carries_validation_rules_and_columns() {
        let yaml = crd_yaml();
        for needle in [
            "bucketName is immutable",
            "region is immutable",
            "type SSE-KMS needs kmsKeyId",
            "x-kubernetes-validations",
            "shortNames:\n    - ub",
            "jsonPath: .status.bucketName",
            "maximum: 604800",
        ] {
            assert!(yaml.contains(needle), "CRD lacks {needle:?}");
        }
    }
}
