//! The sidecar's configuration: the env contract between the operator's webhook (which
//! writes these variables into the injected container) and the sidecar (which parses them).
//!
//! In: flags and environment variables. Out: a validated [`Config`], or an error naming the
//! variable and what it allows. Kept free of heavy dependencies: the operator builds it with
//! the sidecar's default features off.

use std::net::SocketAddr;

use clap::Args;
use serde::{Deserialize, Serialize};

/// Default largest object: 10 MiB.
pub const DEFAULT_MAX_SIZE_BYTES: u64 = 10 * 1024 * 1024;
/// Default URL lifetime, as in the original sample.
pub const DEFAULT_EXPIRES_SECONDS: u64 = 300;
/// SigV4 presigned URLs live at most 7 days.
pub const MAX_EXPIRES_SECONDS: u64 = 604_800;
/// Default listen address: loopback, so only containers of the same pod can sign.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";

pub const ENV_BUCKET: &str = "UPLOADBUCKET_BUCKET";
pub const ENV_REGION: &str = "UPLOADBUCKET_REGION";
pub const ENV_LISTEN: &str = "UPLOADBUCKET_LISTEN";
pub const ENV_KEY_PREFIX: &str = "UPLOADBUCKET_KEY_PREFIX";
pub const ENV_ALLOWED_CONTENT_TYPES: &str = "UPLOADBUCKET_ALLOWED_CONTENT_TYPES";
pub const ENV_MAX_SIZE_BYTES: &str = "UPLOADBUCKET_MAX_SIZE_BYTES";
pub const ENV_EXPIRES_SECONDS: &str = "UPLOADBUCKET_EXPIRES_SECONDS";
pub const ENV_ENDPOINT: &str = "AWS_ENDPOINT_URL_S3";
pub const ENV_PATH_STYLE: &str = "UPLOADBUCKET_PATH_STYLE";
pub const ENV_ALLOW_NON_LOOPBACK: &str = "UPLOADBUCKET_ALLOW_NON_LOOPBACK";
pub const ENV_METADATA_KEYS: &str = "UPLOADBUCKET_ALLOWED_METADATA";
pub const ENV_ALLOW_UNSIZED_PUT: &str = "UPLOADBUCKET_ALLOW_UNSIZED_PUT";
pub const ENV_PUBLIC_READ: &str = "UPLOADBUCKET_PUBLIC_READ";
pub const ENV_BUCKET_OWNER_FULL_CONTROL: &str = "UPLOADBUCKET_BUCKET_OWNER_FULL_CONTROL";
pub const ENV_VERIFY: &str = "UPLOADBUCKET_VERIFY";
pub const ENV_VERIFY_QUARANTINE: &str = "UPLOADBUCKET_VERIFY_QUARANTINE";
pub const ENV_REQUIRE_OWNER: &str = "UPLOADBUCKET_REQUIRE_OWNER";
pub const ENV_URLS_PER_MINUTE: &str = "UPLOADBUCKET_URLS_PER_MINUTE";
pub const ENV_MAX_OPEN_MULTIPART: &str = "UPLOADBUCKET_MAX_OPEN_MULTIPART";
pub const ENV_METRICS_LISTEN: &str = "UPLOADBUCKET_METRICS_LISTEN";
pub const ENV_S3_BACKEND: &str = "UPLOADBUCKET_S3_BACKEND";
pub const ENV_JWT_ISSUER: &str = "UPLOADBUCKET_JWT_ISSUER";
pub const ENV_JWT_AUDIENCES: &str = "UPLOADBUCKET_JWT_AUDIENCES";
pub const ENV_JWT_JWKS_URI: &str = "UPLOADBUCKET_JWT_JWKS_URI";
pub const ENV_JWT_OWNER_CLAIM: &str = "UPLOADBUCKET_JWT_OWNER_CLAIM";
pub const ENV_JWT_REQUIRED_CLAIMS: &str = "UPLOADBUCKET_JWT_REQUIRED_CLAIMS";
/// The claim that names the owner when none is set.
pub const DEFAULT_OWNER_CLAIM: &str = "sub";

/// Which S3 implementation the bucket lives on: requests only one of them needs are sent
/// only there (never inferred from an endpoint).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum S3Backend {
    /// Amazon S3 (and stores that speak its documented API).
    #[default]
    Aws,
    /// Ceph RGW: its own names for a copy's preconditions.
    Rgw,
}

/// The object tag that says where an upload stands when verification is on: every URL signs
/// it as [`STATE_PENDING`]; `verify` replaces it with [`STATE_VERIFIED`] or
/// [`STATE_QUARANTINED`]. The bucket's lifecycle rule expires pending objects.
pub const STATE_TAG: &str = "uploadbucket-state";
pub const STATE_PENDING: &str = "pending";
pub const STATE_VERIFIED: &str = "verified";
pub const STATE_QUARANTINED: &str = "quarantined";

/// Types a browser may run script from when it renders them: a `type/*` pattern never admits
/// them; only an exact entry does.
pub const SCRIPT_CAPABLE_TYPES: &[&str] = &[
    "image/svg+xml",
    "text/html",
    "application/xhtml+xml",
    "application/javascript",
    "text/javascript",
    "application/ecmascript",
    "text/ecmascript",
    "application/xml",
    "text/xml",
];

/// The media types a `type/*` entry admits: formats a browser displays or downloads but never
/// runs script from, each with a file signature or a text form `verify` can check. Anything
/// else (`text/xsl`, `application/rss+xml`, `image/x-anything`, every `+xml` type) must be
/// listed exactly. Kept sorted; documented in docs/guides/calling-the-signer.md (Content types).
pub const WILDCARD_TYPES: &[&str] = &[
    "application/gzip",
    "application/msword",
    "application/pdf",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/x-7z-compressed",
    "application/x-tar",
    "application/zip",
    "audio/aac",
    "audio/flac",
    "audio/mp4",
    "audio/mpeg",
    "audio/ogg",
    "audio/wav",
    "audio/webm",
    "audio/x-wav",
    "font/otf",
    "font/ttf",
    "font/woff",
    "font/woff2",
    "image/avif",
    "image/bmp",
    "image/gif",
    "image/heic",
    "image/heif",
    "image/jpeg",
    "image/png",
    "image/tiff",
    "image/webp",
    "text/csv",
    "text/plain",
    "video/mp4",
    "video/mpeg",
    "video/ogg",
    "video/quicktime",
    "video/webm",
    "video/x-matroska",
];

/// With verification on, URLs name keys under `<keyPrefix>incoming/` and `verify` copies what
/// it accepted to `<keyPrefix>verified/`, a place no URL ever names: what is there holds
/// exactly the bytes verify checked. Public read and the app's downloads cover the verified
/// area only; the lifecycle rule empties the incoming one.
pub const INCOMING_AREA: &str = "incoming/";
pub const VERIFIED_AREA: &str = "verified/";

/// Where URLs put uploads when verification is on.
pub fn incoming_prefix(key_prefix: &str) -> String {
    format!("{key_prefix}{INCOMING_AREA}")
}

/// Where `verify` puts what it accepted.
pub fn verified_prefix(key_prefix: &str) -> String {
    format!("{key_prefix}{VERIFIED_AREA}")
}

/// End-user tokens: with an issuer set, every call that starts, continues or verifies an
/// upload needs `Authorization: Bearer <JWT>` and the owner comes from the token.
#[derive(Args, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtConfig {
    /// Require a JWT from this OpenID Connect issuer (`uploads.auth.jwt.issuer`, such as
    /// https://login.example.com/): every call that starts, continues or verifies an upload
    /// needs `Authorization: Bearer <token>` signed by one of the issuer's keys, and the
    /// upload's owner is the token's owner claim. Default: none (the app names the owner).
    #[arg(long = "jwt-issuer", env = ENV_JWT_ISSUER)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,

    /// Audiences a token may be for (its `aud` must hold one), comma-separated
    /// (`uploads.auth.jwt.audiences`; required with an issuer).
    #[arg(long = "jwt-audiences", env = ENV_JWT_AUDIENCES, value_delimiter = ',')]
    #[serde(default)]
    pub audiences: Vec<String>,

    /// Where the issuer's keys (JWKS) are. Default: the `jwks_uri` of the issuer's OpenID
    /// Connect discovery document (`<issuer>/.well-known/openid-configuration`)
    /// (`uploads.auth.jwt.jwksURI`).
    #[arg(long = "jwt-jwks-uri", env = ENV_JWT_JWKS_URI)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,

    /// The token claim that names the upload's owner (`uploads.auth.jwt.ownerClaim`).
    #[arg(long = "jwt-owner-claim", env = ENV_JWT_OWNER_CLAIM, default_value = DEFAULT_OWNER_CLAIM)]
    #[serde(default = "default_owner_claim")]
    pub owner_claim: String,

    /// Claims every token must carry, comma-separated `name=value`: the claim equals the
    /// value, or is a list holding it, or a space-separated string holding it (`scope`)
    /// (`uploads.auth.jwt.requiredClaims`).
    #[arg(long = "jwt-required-claims", env = ENV_JWT_REQUIRED_CLAIMS, value_delimiter = ',')]
    #[serde(default)]
    pub required_claims: Vec<String>,
}

impl JwtConfig {
    /// Checks and tidies the settings (blank entries dropped): an error names the variable.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        self.audiences = self
            .audiences
            .iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        self.required_claims = self
            .required_claims
            .iter()
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect();
        let Some(issuer) = self.issuer.as_deref().filter(|i| !i.is_empty()) else {
            self.issuer = None;
            for (var, set) in [
                (ENV_JWT_AUDIENCES, !self.audiences.is_empty()),
                (ENV_JWT_JWKS_URI, self.jwks_uri.is_some()),
                (ENV_JWT_REQUIRED_CLAIMS, !self.required_claims.is_empty()),
                (ENV_JWT_OWNER_CLAIM, self.owner_claim != DEFAULT_OWNER_CLAIM),
            ] {
                if set {
                    return Err(err(
                        var,
                        format!(
                            "is a JWT setting, and {ENV_JWT_ISSUER} is not set: give the issuer too, or remove it"
                        ),
                    ));
                }
            }
            return Ok(());
        };
        if !http_url(issuer) {
            return Err(err(
                ENV_JWT_ISSUER,
                format!(
                    "{issuer:?} is not an https:// (or http://) URL of an OpenID Connect issuer, such as https://login.example.com/"
                ),
            ));
        }
        if self.audiences.is_empty() {
            return Err(err(
                ENV_JWT_AUDIENCES,
                "must list at least one audience a token may be for (its aud claim), such as api://uploads",
            ));
        }
        if let Some(uri) = self.jwks_uri.as_deref().filter(|u| !http_url(u)) {
            return Err(err(
                ENV_JWT_JWKS_URI,
                format!("{uri:?} is not an https:// (or http://) URL"),
            ));
        }
        if self.owner_claim.trim().is_empty() {
            return Err(err(
                ENV_JWT_OWNER_CLAIM,
                "must name a claim, such as sub or email",
            ));
        }
        if let Some(bad) = self.required_claims.iter().find(
            |c| !matches!(c.split_once('='), Some((k, v)) if !k.trim().is_empty() && !v.is_empty()),
        ) {
            return Err(err(
                ENV_JWT_REQUIRED_CLAIMS,
                format!("{bad:?} is not name=value, such as scope=uploads:write"),
            ));
        }
        Ok(())
    }
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            audiences: Vec::new(),
            jwks_uri: None,
            owner_claim: DEFAULT_OWNER_CLAIM.to_owned(),
            required_claims: Vec::new(),
        }
    }
}

/// Signing rules and where to listen. Every field is a `--flag` and an environment variable.
#[derive(Args, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// Bucket to sign uploads for (required; checked by `validate` so the error names the
    /// variable, and so subcommands that do not sign need not give it).
    #[arg(long, env = ENV_BUCKET, default_value = "", hide_default_value = true)]
    pub bucket: String,

    /// Region of the bucket (the webhook sets it from the bucket's region). Default: AWS_REGION.
    #[arg(long, env = ENV_REGION)]
    pub region: Option<String>,

    /// Address to serve on. Loopback only unless --allow-non-loopback.
    #[arg(long, env = ENV_LISTEN, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Prefix of every object key: empty or ending in '/' (`uploads.keyPrefix`).
    #[arg(long, env = ENV_KEY_PREFIX, default_value = "uploads/")]
    pub key_prefix: String,

    /// Content types clients may upload, comma-separated: exact (image/png) or type/* (image/*)
    /// (`uploads.allowedContentTypes`).
    #[arg(long, env = ENV_ALLOWED_CONTENT_TYPES, default_value = "image/jpeg", value_delimiter = ',')]
    pub allowed_content_types: Vec<String>,

    /// Largest object in bytes (`uploads.maxSizeBytes`).
    #[arg(long, env = ENV_MAX_SIZE_BYTES, default_value_t = DEFAULT_MAX_SIZE_BYTES)]
    pub max_size_bytes: u64,

    /// Lifetime of presigned URLs in seconds, 1..604800 (`uploads.expiresSeconds`); a URL
    /// never outlives the credentials that signed it.
    #[arg(long, env = ENV_EXPIRES_SECONDS, default_value_t = DEFAULT_EXPIRES_SECONDS)]
    pub expires_seconds: u64,

    /// S3 endpoint of an S3-compatible store (e.g. http://127.0.0.1:7480; the webhook sets it
    /// from the operator's `--s3-endpoint`). Default: AWS.
    #[arg(long = "endpoint-url", env = ENV_ENDPOINT)]
    pub endpoint_url: Option<String>,

    /// Path-style URLs (endpoint/bucket/key), for S3-compatible stores. Default:
    /// virtual-hosted (bucket.endpoint/key).
    #[arg(long, env = ENV_PATH_STYLE, value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    pub path_style: bool,

    /// Allow listening on a non-loopback address (then anything that reaches it may sign).
    #[arg(long, env = ENV_ALLOW_NON_LOOPBACK, value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    pub allow_non_loopback: bool,

    /// Metadata keys clients may set (x-amz-meta-*), comma-separated. Empty: no metadata.
    /// Clients' metadata is signed into the URL, so S3 refuses any other.
    #[arg(long, env = ENV_METADATA_KEYS, value_delimiter = ',')]
    pub allowed_metadata: Vec<String>,

    /// Let `GET /uploads` and `POST /uploads` with `"method": "PUT"` hand out PUT URLs with no
    /// signed size, as the original sample did: anyone holding such a URL can store an object
    /// of any size (up to S3's 5 GiB). Default: false, so every PUT URL signs content-length.
    /// Set from `uploads.allowUnsizedPut`.
    #[arg(long, env = ENV_ALLOW_UNSIZED_PUT, value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    #[serde(default)]
    pub allow_unsized_put: bool,

    /// The bucket serves uploads to anyone (`uploads.publicRead`): objects of types that are
    /// not images, video or audio are stored with `Content-Disposition: attachment`, signed
    /// into the URL, so a browser downloads them instead of rendering them on the bucket's
    /// origin (and the verified copy keeps that header).
    #[arg(long, env = ENV_PUBLIC_READ, value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    #[serde(default)]
    pub public_read: bool,

    /// Every upload grants the bucket owner full control (`x-amz-acl:
    /// bucket-owner-full-control`, signed), for stores without S3 Object Ownership (Ceph RGW),
    /// where an object uploaded with web-identity credentials otherwise belongs to that
    /// identity and the bucket owner cannot read it. The operator sets it for `rgw`; it is
    /// signed into PUT URLs, POST forms and multipart uploads alike.
    #[arg(long, env = ENV_BUCKET_OWNER_FULL_CONTROL, value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    #[serde(default)]
    pub bucket_owner_full_control: bool,

    /// The S3 implementation (`aws` or `rgw`): a request only one store needs is sent only to
    /// that store (on `rgw`, verify's copy precondition as `x-amz-copy-if-match`). The webhook
    /// sets it from the operator's `--s3-backend`, never from an endpoint being set.
    #[arg(long, env = ENV_S3_BACKEND, value_enum, default_value = "aws")]
    #[serde(default)]
    pub s3_backend: S3Backend,

    /// Verification is on (`uploads.verification.enabled`): every upload is tagged
    /// `uploadbucket-state=pending` (signed) under `<keyPrefix>incoming/`, and
    /// `POST /uploads/verify` checks an object's bytes and copies what it accepts to
    /// `<keyPrefix>verified/`.
    #[arg(long, env = ENV_VERIFY, value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    #[serde(default)]
    pub verify: bool,

    /// An object that fails verification is tagged `quarantined` and kept, instead of
    /// deleted (`uploads.verification.onFailure: Quarantine`).
    #[arg(long, env = ENV_VERIFY_QUARANTINE, value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    #[serde(default)]
    pub verify_quarantine: bool,

    /// Every upload must name an `owner` (`uploads.requireOwner`): keys then always sit in
    /// the owner's folder, and every later call on them must name the same owner.
    #[arg(long, env = ENV_REQUIRE_OWNER, value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    #[serde(default)]
    pub require_owner: bool,

    /// Uploads an owner may start per minute, per signer process (a token bucket holding a
    /// minute's worth); more get 429 with Retry-After. 0: no limit
    /// (`uploads.limits.urlsPerMinute`).
    #[arg(long, env = ENV_URLS_PER_MINUTE, default_value_t = 0)]
    #[serde(default)]
    pub urls_per_minute: u32,

    /// Multipart uploads an owner may have in progress at once, counted from S3 (so across
    /// all signers of the bucket); another gets 429. 0: no limit
    /// (`uploads.limits.openMultipartUploads`).
    #[arg(long, env = ENV_MAX_OPEN_MULTIPART, default_value_t = 0)]
    #[serde(default)]
    pub max_open_multipart: u32,

    /// End-user tokens (`uploads.auth.jwt`): off unless an issuer is set.
    #[command(flatten)]
    #[serde(default)]
    pub jwt: JwtConfig,

    /// A second address serving `GET /metrics` and nothing else, for Prometheus to scrape
    /// from outside the pod (such as 0.0.0.0:9464); the signing API stays on --listen.
    /// Default: none (metrics only on --listen). The webhook sets it from the pod's
    /// `uploadbucket.io/metrics-port` annotation.
    #[arg(long, env = ENV_METRICS_LISTEN)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
}

/// The flags' defaults, and no bucket yet (`validate` requires one): the base of a
/// configuration made in code, `Config { bucket, ..Config::default() }`.
impl Default for Config {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            region: None,
            listen: DEFAULT_LISTEN
                .parse()
                .expect("DEFAULT_LISTEN is an address"),
            key_prefix: "uploads/".to_owned(),
            allowed_content_types: vec!["image/jpeg".to_owned()],
            max_size_bytes: DEFAULT_MAX_SIZE_BYTES,
            expires_seconds: DEFAULT_EXPIRES_SECONDS,
            endpoint_url: None,
            path_style: false,
            allow_non_loopback: false,
            allowed_metadata: Vec::new(),
            allow_unsized_put: false,
            public_read: false,
            bucket_owner_full_control: false,
            s3_backend: S3Backend::default(),
            verify: false,
            verify_quarantine: false,
            require_owner: false,
            urls_per_minute: 0,
            max_open_multipart: 0,
            jwt: JwtConfig::default(),
            metrics_listen: None,
        }
    }
}

fn default_owner_claim() -> String {
    DEFAULT_OWNER_CLAIM.to_owned()
}

/// An `http://` or `https://` URL with a host.
fn http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or_default();
        !host.is_empty() && !r.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        message: message.into(),
    }
}

/// `type/subtype` or `type/*`, lowercase token characters.
pub fn valid_content_type_pattern(ct: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|c| {
                c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || matches!(
                        c,
                        b'!' | b'#' | b'$' | b'&' | b'^' | b'_' | b'.' | b'+' | b'-'
                    )
            })
    };
    matches!(ct.split_once('/'), Some((t, s)) if token(t) && (s == "*" || token(s)))
}

impl Config {
    /// Checks every rule; `aws_region` is the `AWS_REGION` fallback.
    pub fn validate(mut self, aws_region: Option<String>) -> Result<Self, ConfigError> {
        if self.bucket.trim().is_empty() {
            return Err(err(
                ENV_BUCKET,
                "is required: the bucket to sign uploads for",
            ));
        }
        self.region = self
            .region
            .filter(|r| !r.is_empty())
            .or(aws_region.filter(|r| !r.is_empty()));
        if self.region.is_none() {
            return Err(err(
                ENV_REGION,
                "is required (or AWS_REGION): the bucket's region, such as eu-west-1",
            ));
        }
        if !self.listen.ip().is_loopback() && !self.allow_non_loopback {
            return Err(err(
                ENV_LISTEN,
                format!(
                    "{} is not a loopback address; anything that reaches it could sign uploads. Use 127.0.0.1, or set {ENV_ALLOW_NON_LOOPBACK}=true",
                    self.listen
                ),
            ));
        }
        if let Some(m) = self.metrics_listen
            && m.port() != 0
            && m.port() == self.listen.port()
            && (m.ip() == self.listen.ip() || m.ip().is_unspecified())
        {
            return Err(err(
                ENV_METRICS_LISTEN,
                format!(
                    "{m} overlaps the signing API's {} ({ENV_LISTEN}); give the metrics listener another port",
                    self.listen
                ),
            ));
        }
        let p = &self.key_prefix;
        if p.starts_with('/')
            || p.split('/').any(|s| s == ".." || s == ".")
            || (!p.is_empty() && !p.ends_with('/'))
            || p.chars().any(char::is_control)
        {
            return Err(err(
                ENV_KEY_PREFIX,
                format!(
                    "{p:?} must be empty or end with '/', with no leading '/' and no '.' or '..' segments"
                ),
            ));
        }
        self.allowed_content_types = self
            .allowed_content_types
            .iter()
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect();
        if self.allowed_content_types.is_empty() {
            return Err(err(
                ENV_ALLOWED_CONTENT_TYPES,
                "must list at least one content type, such as image/jpeg or image/*",
            ));
        }
        if let Some(bad) = self
            .allowed_content_types
            .iter()
            .find(|c| !valid_content_type_pattern(c))
        {
            return Err(err(
                ENV_ALLOWED_CONTENT_TYPES,
                format!("{bad:?} is not type/subtype or type/*"),
            ));
        }
        if self.max_size_bytes == 0 {
            return Err(err(ENV_MAX_SIZE_BYTES, "must be at least 1"));
        }
        if !(1..=MAX_EXPIRES_SECONDS).contains(&self.expires_seconds) {
            return Err(err(
                ENV_EXPIRES_SECONDS,
                format!(
                    "{} is out of range; allowed: 1 to {MAX_EXPIRES_SECONDS}",
                    self.expires_seconds
                ),
            ));
        }
        self.allowed_metadata = self
            .allowed_metadata
            .iter()
            .map(|k| k.trim().to_ascii_lowercase())
            .filter(|k| !k.is_empty())
            .collect();
        if let Some(bad) = self.allowed_metadata.iter().find(|k| {
            !k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        }) {
            return Err(err(
                ENV_METADATA_KEYS,
                format!("{bad:?} may only hold letters, digits, '-' and '_'"),
            ));
        }
        self.jwt.validate()?;
        Ok(self)
    }

    /// The environment variables that make the sidecar parse back exactly this config.
    /// The webhook writes these into the injected container.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (ENV_BUCKET, self.bucket.clone()),
            (ENV_LISTEN, self.listen.to_string()),
            (ENV_KEY_PREFIX, self.key_prefix.clone()),
            (
                ENV_ALLOWED_CONTENT_TYPES,
                self.allowed_content_types.join(","),
            ),
            (ENV_MAX_SIZE_BYTES, self.max_size_bytes.to_string()),
            (ENV_EXPIRES_SECONDS, self.expires_seconds.to_string()),
            (ENV_PATH_STYLE, self.path_style.to_string()),
        ];
        if let Some(r) = &self.region {
            env.push((ENV_REGION, r.clone()));
        }
        if let Some(e) = &self.endpoint_url {
            env.push((ENV_ENDPOINT, e.clone()));
        }
        if self.allow_non_loopback {
            env.push((ENV_ALLOW_NON_LOOPBACK, "true".into()));
        }
        if !self.allowed_metadata.is_empty() {
            env.push((ENV_METADATA_KEYS, self.allowed_metadata.join(",")));
        }
        if self.allow_unsized_put {
            env.push((ENV_ALLOW_UNSIZED_PUT, "true".into()));
        }
        if self.public_read {
            env.push((ENV_PUBLIC_READ, "true".into()));
        }
        if let Some(m) = self.metrics_listen {
            env.push((ENV_METRICS_LISTEN, m.to_string()));
        }
        if self.bucket_owner_full_control {
            env.push((ENV_BUCKET_OWNER_FULL_CONTROL, "true".into()));
        }
        if self.s3_backend == S3Backend::Rgw {
            env.push((ENV_S3_BACKEND, "rgw".into()));
        }
        if self.verify {
            env.push((ENV_VERIFY, "true".into()));
        }
        if self.verify_quarantine {
            env.push((ENV_VERIFY_QUARANTINE, "true".into()));
        }
        if self.require_owner {
            env.push((ENV_REQUIRE_OWNER, "true".into()));
        }
        if self.urls_per_minute > 0 {
            env.push((ENV_URLS_PER_MINUTE, self.urls_per_minute.to_string()));
        }
        if self.max_open_multipart > 0 {
            env.push((ENV_MAX_OPEN_MULTIPART, self.max_open_multipart.to_string()));
        }
        if let Some(issuer) = &self.jwt.issuer {
            env.push((ENV_JWT_ISSUER, issuer.clone()));
            env.push((ENV_JWT_AUDIENCES, self.jwt.audiences.join(",")));
            if let Some(uri) = &self.jwt.jwks_uri {
                env.push((ENV_JWT_JWKS_URI, uri.clone()));
            }
            if self.jwt.owner_claim != DEFAULT_OWNER_CLAIM {
                env.push((ENV_JWT_OWNER_CLAIM, self.jwt.owner_claim.clone()));
            }
            if !self.jwt.required_claims.is_empty() {
                env.push((ENV_JWT_REQUIRED_CLAIMS, self.jwt.required_claims.join(",")));
            }
        }
        env
    }

    /// Whether `ct` (already lowercased, no parameters) is allowed: listed exactly, or under a
    /// `type/*` entry and one of the [`WILDCARD_TYPES`] (`image/*` never means SVG).
    pub fn allows_content_type(&self, ct: &str) -> bool {
        self.admits(ct).is_some()
    }

    /// How `ct` is allowed: `Some(true)` by an exact entry, `Some(false)` only through a
    /// `type/*` entry (verify then wants the bytes to prove the type), `None` not at all.
    pub fn admits(&self, ct: &str) -> Option<bool> {
        if self.allowed_content_types.iter().any(|p| p == ct) {
            return Some(true);
        }
        let major = ct.split_once('/')?.0;
        self.allowed_content_types
            .iter()
            .any(|p| {
                p.strip_suffix("/*") == Some(major) && WILDCARD_TYPES.binary_search(&ct).is_ok()
            })
            .then_some(false)
    }

    /// Where URLs put new uploads: the key prefix, or its incoming area when verification is on.
    pub fn upload_prefix(&self) -> std::borrow::Cow<'_, str> {
        if self.verify {
            incoming_prefix(&self.key_prefix).into()
        } else {
            self.key_prefix.as_str().into()
        }
    }

    /// The `Content-Disposition` objects of `content_type` must carry: `attachment` on a
    /// public bucket for anything but images, video and audio (which browsers do not run).
    pub fn disposition(&self, content_type: &str) -> Option<&'static str> {
        let media = ["image/", "video/", "audio/"]
            .iter()
            .any(|m| content_type.starts_with(m))
            && !SCRIPT_CAPABLE_TYPES.contains(&content_type);
        (self.public_read && !media).then_some("attachment")
    }

    /// The tag set every upload carries, in the `x-amz-tagging` header's form, when
    /// verification is on.
    pub fn tagging(&self) -> Option<&'static str> {
        self.verify.then_some("uploadbucket-state=pending")
    }

    /// The same tag set as a POST form's `tagging` field (XML).
    pub fn tagging_xml(&self) -> Option<&'static str> {
        self.verify.then_some(
            "<Tagging><TagSet><Tag><Key>uploadbucket-state</Key><Value>pending</Value></Tag></TagSet></Tagging>",
        )
    }

    /// The canned ACL every upload carries (`bucket-owner-full-control`), if any.
    pub fn acl(&self) -> Option<&'static str> {
        self.bucket_owner_full_control
            .then_some("bucket-owner-full-control")
    }

    /// The region (validated configs always have one).
    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or("us-east-1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["sidecar"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("parse").config
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = parse(&["--bucket", "b"])
            .validate(Some("eu-west-1".into()))
            .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8787");
        assert_eq!(c.key_prefix, "uploads/");
        assert_eq!(c.allowed_content_types, vec!["image/jpeg"]);
        assert_eq!(c.max_size_bytes, 10 * 1024 * 1024);
        assert_eq!(c.expires_seconds, 300);
        assert_eq!(c.region(), "eu-west-1");
        assert!(!c.path_style);
    }

    #[test]
    fn the_default_is_the_flags_defaults() {
        assert_eq!(parse(&[]), Config::default());
    }

    #[test]
    fn content_type_patterns() {
        let c = parse(&[
            "--bucket",
            "b",
            "--allowed-content-types",
            "image/*,application/pdf",
        ])
        .validate(Some("r-x-1".into()))
        .unwrap();
        assert!(c.allows_content_type("image/png"));
        assert!(c.allows_content_type("application/pdf"));
        assert!(!c.allows_content_type("application/json"));
        assert!(!c.allows_content_type("imagex/png"));
    }

    #[test]
    fn wildcards_admit_only_the_listed_safe_types() {
        let c = parse(&[
            "--bucket",
            "b",
            "--allowed-content-types",
            "image/*,text/*,application/*,video/*,audio/*,text/xsl",
        ])
        .validate(Some("r-x-1".into()))
        .unwrap();
        // The types the attacks of issue 25 got through `type/*`, and the script-capable ones.
        for t in [
            "text/x-javascript",
            "text/jscript",
            "application/x-javascript",
            "application/rss+xml",
            "application/atom+xml",
            "image/foo+xml",
            "image/x-anything",
            "image/svg+xml",
            "text/html",
            "text/xml",
            "application/xml",
            "application/xhtml+xml",
            "application/javascript",
            "application/octet-stream",
            "application/json",
        ] {
            assert_eq!(c.admits(t), None, "{t}");
        }
        assert_eq!(c.admits("image/jpeg"), Some(false));
        assert_eq!(c.admits("text/plain"), Some(false));
        assert_eq!(c.admits("application/pdf"), Some(false));
        // Listed exactly: the operator's choice, and verify knows it was not a wildcard.
        assert_eq!(c.admits("text/xsl"), Some(true));
        // binary_search needs the list sorted and free of script-capable types.
        assert!(WILDCARD_TYPES.windows(2).all(|w| w[0] < w[1]));
        assert!(
            WILDCARD_TYPES
                .iter()
                .all(|t| !SCRIPT_CAPABLE_TYPES.contains(t)
                    && !t.ends_with("+xml")
                    && !t.contains("script"))
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases: [(&[&str], &str); 6] = [
            (&["--bucket", ""], ENV_BUCKET),
            (&["--bucket", "b", "--listen", "0.0.0.0:8787"], ENV_LISTEN),
            (&["--bucket", "b", "--key-prefix", "../x/"], ENV_KEY_PREFIX),
            (
                &["--bucket", "b", "--allowed-content-types", "jpeg"],
                ENV_ALLOWED_CONTENT_TYPES,
            ),
            (
                &["--bucket", "b", "--expires-seconds", "604801"],
                ENV_EXPIRES_SECONDS,
            ),
            (
                &["--bucket", "b", "--max-size-bytes", "0"],
                ENV_MAX_SIZE_BYTES,
            ),
        ];
        for (args, var) in cases {
            let e = parse(args).validate(Some("eu-west-1".into())).unwrap_err();
            assert_eq!(e.var, var, "{args:?}: {e}");
        }
        assert_eq!(
            parse(&["--bucket", "b"]).validate(None).unwrap_err().var,
            ENV_REGION
        );
    }

    #[test]
    fn non_loopback_only_when_told() {
        let c = parse(&[
            "--bucket",
            "b",
            "--listen",
            "0.0.0.0:8787",
            "--allow-non-loopback",
        ])
        .validate(Some("eu-west-1".into()));
        assert!(c.is_ok());
    }
}
