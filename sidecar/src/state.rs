//! What every handler shares: the configuration, the presigner, credentials, the store,
//! metrics, quotas and the end-user token checker, built once per process.
//!
//! In: the validated config and the side-effecting parts. Out: [`AppState`], cheap to clone.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;

use crate::config::Config;
use crate::credentials::CredentialSource;
use crate::metrics::Metrics;
use crate::presign::Presigner;
use crate::store::ObjectStore;

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    /// Where URLs put uploads (the key prefix, or its incoming area when verification is on).
    pub upload_prefix: String,
    /// Where `verify` puts what it accepted (with verification on).
    pub verified_prefix: String,
    /// Turns per owner folder for counting open multipart uploads and creating one.
    pub multipart_creates: crate::limits::Stripes,
    /// Keys `verify` is working on in this process.
    pub verifying: crate::limits::InProgress,
    pub presigner: Presigner,
    pub credentials: Arc<dyn CredentialSource>,
    pub store: Arc<dyn ObjectStore>,
    pub metrics: Metrics,
    /// Upload starts per owner per minute (this process's share).
    pub limiter: crate::limits::RateLimiter,
    /// The clock; tests pin it.
    pub now: fn() -> SystemTime,
    /// Presign `POST /uploads` PUT URLs with aws-sdk-s3 instead of the fast signer. Only for
    /// benchmarking the two against each other (`--signer sdk`).
    pub sdk_signer: Option<aws_sdk_s3::Client>,
    /// The answer of `POST /bench/ceiling`, when benchmarking (`--bench-ceiling`).
    pub bench_ceiling: Option<Bytes>,
    /// End-user tokens, when the bucket requires them (`uploads.auth.jwt`).
    pub auth: Option<Arc<crate::auth::Authenticator>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        config: Config,
        presigner: Presigner,
        credentials: Arc<dyn CredentialSource>,
        store: Arc<dyn ObjectStore>,
    ) -> Self {
        Self(Arc::new(Inner {
            auth: config
                .jwt
                .issuer
                .is_some()
                .then(|| Arc::new(crate::auth::Authenticator::new(&config.jwt))),
            limiter: crate::limits::RateLimiter::new(config.urls_per_minute),
            upload_prefix: config.upload_prefix().into_owned(),
            verified_prefix: crate::config::verified_prefix(&config.key_prefix),
            verifying: Default::default(),
            multipart_creates: Default::default(),
            config,
            presigner,
            credentials,
            store,
            metrics: Metrics::default(),
            now: SystemTime::now,
            sdk_signer: None,
            bench_ceiling: None,
        }))
    }

    /// The same state with `change` made to it; only while building it, before it is shared.
    fn changed(self, what: &str, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner =
            Arc::try_unwrap(self.0).unwrap_or_else(|_| panic!("{what} before sharing the state"));
        change(&mut inner);
        Self(Arc::new(inner))
    }

    /// The same state presigning PUTs with aws-sdk-s3 (benchmark baseline).
    pub fn with_sdk_signer(self, client: aws_sdk_s3::Client) -> Self {
        self.changed("with_sdk_signer", |i| i.sdk_signer = Some(client))
    }

    /// The same state serving `POST /bench/ceiling` with a JSON answer of `bytes` bytes
    /// (benchmark: the exchange of `POST /uploads` without the signing).
    pub fn with_bench_ceiling(self, bytes: usize) -> Self {
        let pad = bytes.saturating_sub(r#"{"ceiling":""}"#.len());
        let answer = format!(r#"{{"ceiling":"{}"}}"#, "x".repeat(pad));
        self.changed("with_bench_ceiling", |i| {
            i.bench_ceiling = Some(Bytes::from(answer));
        })
    }

    /// The same state with another clock (tests).
    pub fn with_clock(self, now: fn() -> SystemTime) -> Self {
        self.changed("with_clock", |i| i.now = now)
    }
}
