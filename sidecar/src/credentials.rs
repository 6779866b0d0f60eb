//! Credentials for signing, cached and refreshed ahead of expiry.
//!
//! In: the chain of [`chain`] (web identity from `AWS_ROLE_ARN` +
//! `AWS_WEB_IDENTITY_TOKEN_FILE` or EKS Pod Identity in a pod, env or profile elsewhere).
//! Out: [`Credentials`]
//! that stay valid for at least the refresh margin, so a URL signed now keeps working for
//! its whole lifetime whenever the identity provider allows it. The margin never exceeds half
//! of what the credentials lived when loaded: a URL lifetime near or above the session's
//! (an hour for web identity) would otherwise make every request refresh; URLs are cut to the
//! credentials' expiry instead (see `uploads::lifetime`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use crate::presign::Credentials;

/// Where the signer's AWS credentials come from, tried in this order:
///
/// 1. `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`);
/// 2. web identity (IRSA): `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`, through STS
///    (`AWS_ENDPOINT_URL_STS` for an S3-compatible store's STS);
/// 3. the container credentials endpoint (EKS Pod Identity):
///    `AWS_CONTAINER_CREDENTIALS_FULL_URI` + `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`;
/// 4. the shared config and credentials files (`AWS_PROFILE`), for a signer run by hand.
///
/// Built from its parts instead of aws-config's `defaults().load()`, which reads the
/// profile files and resolves a dozen settings at start-up (code a pod runs once, whose
/// pages then stay resident). The EC2 instance metadata service is never tried: the node's
/// role is not the upload role (the webhook also sets `AWS_EC2_METADATA_DISABLED` in the
/// signer). A pod has no profile files, so the profile comes last, after the sources a pod
/// does use.
pub fn chain(region: &aws_config::Region) -> SharedCredentialsProvider {
    use aws_config::ecs::EcsCredentialsProvider;
    use aws_config::environment::EnvironmentVariableCredentialsProvider;
    use aws_config::meta::credentials::CredentialsProviderChain;
    use aws_config::profile::ProfileFileCredentialsProvider;
    use aws_config::provider_config::ProviderConfig;
    use aws_config::web_identity_token::WebIdentityTokenCredentialsProvider;

    let flag = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.eq_ignore_ascii_case("true"))
    };
    let conf = ProviderConfig::default()
        .with_region(Some(region.clone()))
        .with_use_fips(flag("AWS_USE_FIPS_ENDPOINT"))
        .with_use_dual_stack(flag("AWS_USE_DUALSTACK_ENDPOINT"));
    let chain = CredentialsProviderChain::first_try(
        "Environment",
        EnvironmentVariableCredentialsProvider::new(),
    )
    .or_else(
        "WebIdentityToken",
        WebIdentityTokenCredentialsProvider::builder()
            .configure(&conf)
            .build(),
    )
    .or_else(
        "EcsContainer",
        EcsCredentialsProvider::builder().configure(&conf).build(),
    )
    .or_else(
        "Profile",
        ProfileFileCredentialsProvider::builder()
            .configure(&conf)
            .build(),
    );
    SharedCredentialsProvider::new(chain)
}

/// A source of signing credentials. Shared, not copied: a request takes a reference count,
/// not three strings (the session token is a kilobyte or so).
#[async_trait]
pub trait CredentialSource: Send + Sync {
    async fn credentials(&self) -> Result<Arc<Credentials>, String>;

    /// Credentials at hand without waiting, if any: the hot path, which needs no boxed
    /// future. `None` sends the caller to [`CredentialSource::credentials`].
    fn ready(&self) -> Option<Arc<Credentials>> {
        None
    }
}

/// Fixed credentials (dev mode, tests).
pub struct StaticCredentials(pub Arc<Credentials>);

impl StaticCredentials {
    pub fn new(credentials: Credentials) -> Self {
        Self(Arc::new(credentials))
    }
}

#[async_trait]
impl CredentialSource for StaticCredentials {
    async fn credentials(&self) -> Result<Arc<Credentials>, String> {
        Ok(self.0.clone())
    }

    fn ready(&self) -> Option<Arc<Credentials>> {
        Some(self.0.clone())
    }
}

/// The SDK's provider behind a cache that refreshes `margin` before expiry.
pub struct CachedCredentials {
    provider: SharedCredentialsProvider,
    margin: Duration,
    /// The credentials, and the margin that applies to them.
    cached: RwLock<Option<(Arc<Credentials>, Duration)>>,
    /// Held by the one load in progress; keeps the last load's error. A request that waited
    /// through a failed load takes its error instead of calling STS once more.
    refresh: tokio::sync::Mutex<Option<String>>,
    /// Loads ended, failed or not.
    loads: AtomicU64,
    now: fn() -> SystemTime,
    /// Pauses between the attempts of one load.
    backoff: &'static [Duration],
}

/// One load tries the provider this many times, pausing this long between tries: STS can
/// fail for a moment where the next call succeeds (throttling past the SDK's own retries, or
/// Ceph RGW, which answers `BucketAlreadyExists` to all but one of the concurrent first
/// sessions of a new service account while it creates the account's shadow user). Short
/// enough that a request on a misconfigured role still fails within a second.
const BACKOFF: &[Duration] = &[Duration::from_millis(100), Duration::from_millis(300)];

impl CachedCredentials {
    /// `margin`: refresh when fewer than this remain (use at least the URL lifetime).
    pub fn new(provider: SharedCredentialsProvider, margin: Duration) -> Self {
        Self {
            provider,
            margin,
            cached: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(None),
            loads: AtomicU64::new(0),
            now: SystemTime::now,
            backoff: BACKOFF,
        }
    }

    /// Pauses between attempts other than [`BACKOFF`] (tests).
    pub fn with_backoff(mut self, backoff: &'static [Duration]) -> Self {
        self.backoff = backoff;
        self
    }

    /// Reads the time from `now` instead of the system clock (tests).
    pub fn with_clock(mut self, now: fn() -> SystemTime) -> Self {
        self.now = now;
        self
    }

    fn fresh(&self, now: SystemTime) -> Option<Arc<Credentials>> {
        let guard = self.cached.read().ok()?;
        let (c, margin) = guard.as_ref()?;
        match c.expiry {
            Some(exp) if exp <= now + *margin => None,
            _ => Some(c.clone()),
        }
    }

    /// The provider's credentials, tried once more after each pause in `backoff`.
    async fn load(&self) -> Result<aws_credential_types::Credentials, String> {
        let mut pauses = self.backoff.iter();
        loop {
            match self.provider.provide_credentials().await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    let e = aws_smithy_types::error::display::DisplayErrorContext(e).to_string();
                    let Some(pause) = pauses.next() else {
                        return Err(e);
                    };
                    tracing::warn!(error = %e, retry_in = ?pause, "Loading credentials failed");
                    tokio::time::sleep(*pause).await;
                }
            }
        }
    }
}

/// The margin for credentials loaded at `now` that expire at `expiry`: the configured one, at
/// most half their lifetime.
fn margin_for(configured: Duration, now: SystemTime, expiry: Option<SystemTime>) -> Duration {
    match expiry {
        Some(exp) => configured.min(exp.duration_since(now).unwrap_or_default() / 2),
        None => configured,
    }
}

#[async_trait]
impl CredentialSource for CachedCredentials {
    async fn credentials(&self) -> Result<Arc<Credentials>, String> {
        if let Some(c) = self.fresh((self.now)()) {
            return Ok(c);
        }
        // One refresh at a time; the others wait and then take its result, or its error.
        let before = self.loads.load(Ordering::Acquire);
        let mut last_error = self.refresh.lock().await;
        if let Some(c) = self.fresh((self.now)()) {
            return Ok(c);
        }
        if let Some(e) = last_error.as_ref()
            && self.loads.load(Ordering::Acquire) != before
        {
            // A load ended while this request waited, and it failed.
            return Err(e.clone());
        }
        let loaded = self.load().await;
        *last_error = loaded.as_ref().err().cloned();
        self.loads.fetch_add(1, Ordering::Release);
        let c = loaded?;
        let creds = Arc::new(Credentials {
            access_key_id: c.access_key_id().to_owned(),
            secret_access_key: c.secret_access_key().to_owned(),
            session_token: c.session_token().map(str::to_owned),
            expiry: c.expiry(),
        });
        tracing::info!(expiry = ?creds.expiry.map(crate::presign::rfc3339), "Loaded credentials");
        let margin = margin_for(self.margin, (self.now)(), creds.expiry);
        if let Ok(mut slot) = self.cached.write() {
            *slot = Some((creds.clone(), margin));
        }
        Ok(creds)
    }

    fn ready(&self) -> Option<Arc<Credentials>> {
        self.fresh((self.now)())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A clock the test moves: seconds after a fixed start.
    static OFFSET: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    fn start() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }
    fn test_now() -> SystemTime {
        start() + Duration::from_secs(OFFSET.load(Ordering::SeqCst))
    }

    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicUsize>,
        /// `None`: credentials that never expire.
        lifetime: Option<Duration>,
        /// The first calls fail, as STS does for a moment.
        failures: usize,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            aws_credential_types::provider::future::ProvideCredentials::ready(
                if n < self.failures {
                    Err(
                        aws_credential_types::provider::error::CredentialsError::provider_error(
                            format!("BucketAlreadyExists (call {n})"),
                        ),
                    )
                } else {
                    Ok(aws_credential_types::Credentials::new(
                        format!("AKID{n}"),
                        "s",
                        Some("t".into()),
                        self.lifetime.map(|l| test_now() + l),
                        "test",
                    ))
                },
            )
        }
    }

    #[tokio::test]
    async fn caches_until_the_margin_then_refreshes() {
        // One test owns the clock.
        OFFSET.store(0, Ordering::SeqCst);
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = |lifetime: u64, margin: u64| {
            CachedCredentials::new(
                SharedCredentialsProvider::new(Counting {
                    calls: calls.clone(),
                    lifetime: Some(Duration::from_secs(lifetime)),
                    failures: 0,
                }),
                Duration::from_secs(margin),
            )
            .with_clock(test_now)
        };

        // 1-hour web-identity credentials, 5-minute URLs (+60 s): refreshed 6 minutes early.
        let c = cache(3600, 360);
        let first = c.credentials().await.unwrap();
        OFFSET.store(3600 - 361, Ordering::SeqCst);
        assert_eq!(
            c.credentials().await.unwrap().access_key_id,
            first.access_key_id
        );
        OFFSET.store(3600 - 360, Ordering::SeqCst);
        assert_ne!(
            c.credentials().await.unwrap().access_key_id,
            first.access_key_id
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        // 1-hour credentials and 1-hour URLs (margin 3660 s): the margin is cut to half the
        // lifetime, so a thousand requests make one call, not a thousand.
        OFFSET.store(0, Ordering::SeqCst);
        calls.store(0, Ordering::SeqCst);
        let c = cache(3600, 3660);
        for _ in 0..1000 {
            c.credentials().await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        OFFSET.store(1799, Ordering::SeqCst);
        c.credentials().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        OFFSET.store(1800, Ordering::SeqCst);
        c.credentials().await.unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "refreshed at half its life"
        );
    }

    const PAUSES: &[Duration] = &[Duration::from_millis(20), Duration::from_millis(20)];

    fn flaky(failures: usize) -> (CachedCredentials, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let provider = SharedCredentialsProvider::new(Counting {
            calls: calls.clone(),
            lifetime: None,
            failures,
        });
        let cache = CachedCredentials::new(provider, Duration::from_secs(360)).with_backoff(PAUSES);
        (cache, calls)
    }

    #[tokio::test]
    async fn a_load_tries_again_after_a_pause() {
        // Two failures, then credentials: one request, three calls, no error.
        let (cache, calls) = flaky(2);
        assert_eq!(cache.credentials().await.unwrap().access_key_id, "AKID2");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Cached from then on.
        cache.credentials().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn requests_that_wait_through_a_failed_load_share_its_error() {
        // STS refuses every time: the first request tries three times and fails; the seven
        // that waited meanwhile take its error, not seven more rounds of calls.
        let (cache, calls) = flaky(usize::MAX);
        let cache = Arc::new(cache);
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let cache = cache.clone();
            requests.spawn(async move { cache.credentials().await });
        }
        let results = requests.join_all().await;
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().is_err_and(|e| e.contains("BucketAlreadyExists"))),
            "{:?}",
            results.iter().map(|r| r.as_ref().err()).collect::<Vec<_>>()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // A request that comes after the failure tries again.
        assert!(cache.credentials().await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 6);
    }
}
