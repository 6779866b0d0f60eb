//! Credentials for signing, cached and refreshed ahead of expiry.
//!
//! In: the keys in the environment, or else the chain of [`chain`] (web identity from
//! `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE` or EKS Pod Identity in a pod, the profile
//! elsewhere) run by a helper process ([`HelperProcess`]). Out: [`Credentials`]
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

/// The signer's credentials: the keys in its environment when it has both (named as the
/// SDK's environment provider reads them), else [`chain`] run by a helper process
/// ([`HelperProcess`]).
pub(crate) fn provider(region: &str) -> SharedCredentialsProvider {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if set("AWS_ACCESS_KEY_ID") && (set("AWS_SECRET_ACCESS_KEY") || set("SECRET_ACCESS_KEY")) {
        SharedCredentialsProvider::new(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        )
    } else {
        SharedCredentialsProvider::new(HelperProcess::new(region))
    }
}

/// How long a helper process may take before it is stopped and the attempt fails (a load
/// makes three attempts, see [`BACKOFF`]). STS answers in well under a second.
const HELPER_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a failed helper's standard error kept as the load's error.
const HELPER_MESSAGE_BYTES: usize = 2048;

/// An error and its sources, by their `Display` alone: the `Debug` form that
/// `DisplayErrorContext` appends can hold a raw response body, and a body STS sent can hold
/// a session's keys, which must not reach a log.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        // Wrappers often repeat their source's text, or the source repeats theirs (a helper's
        // message is a whole chain already).
        if next.starts_with(&text) {
            text = next;
        } else if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// [`chain`] run in a child process, `uploadbucket-sidecar credentials --region=R`, once per
/// load attempt (at start-up, then about once an hour with web identity).
///
/// Loading credentials from STS, the Pod Identity agent or the profile files runs the code
/// of an SDK client, TLS and the system's root certificates once an hour, and its pages and
/// allocations would then stay resident in the signer for the rest of its life (about
/// 1.7 MiB of 6.6 MiB with IRSA, measured). The child does that work and exits. It prints the
/// credentials on its standard output, a pipe only the signer reads, as `credential_process`
/// JSON; a failure comes back as its standard error, the message the chain gave (its
/// `Display` text only, at most [`HELPER_MESSAGE_BYTES`]).
///
/// An attempt that outlives [`HELPER_TIMEOUT`] kills the child (a load goes on when the
/// request that started it goes away; see [`CachedCredentials`]).
#[derive(Debug)]
pub(crate) struct HelperProcess {
    /// `None`: this very binary.
    program: Option<std::path::PathBuf>,
    region: String,
}

impl HelperProcess {
    pub(crate) fn new(region: &str) -> Self {
        Self {
            program: None,
            region: region.to_owned(),
        }
    }

    /// Runs `program` instead (tests).
    #[cfg(test)]
    fn with_program(program: impl Into<std::path::PathBuf>, region: &str) -> Self {
        Self {
            program: Some(program.into()),
            region: region.to_owned(),
        }
    }

    /// This binary, looked up at each attempt: its path as the system gives it (so a signer
    /// run by hand whose file was rebuilt runs the new one), or, once that file is gone,
    /// `/proc/self/exe`, which is the running binary whatever became of its file.
    fn program(&self) -> std::path::PathBuf {
        if let Some(p) = &self.program {
            return p.clone();
        }
        match std::env::current_exe() {
            Ok(path) if path.exists() => path,
            _ => "/proc/self/exe".into(),
        }
    }

    async fn load(&self) -> aws_credential_types::provider::Result {
        use aws_credential_types::provider::error::CredentialsError;
        let program = self.program();
        let mut command = tokio::process::Command::new(&program);
        command
            .arg("credentials")
            .arg(format!("--region={}", self.region))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let run = tokio::time::timeout(HELPER_TIMEOUT, command.output());
        let output = match run.await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                return Err(CredentialsError::provider_error(format!(
                    "cannot run the credentials helper {}: {e}",
                    program.display()
                )));
            }
            Err(_) => {
                return Err(CredentialsError::provider_error(format!(
                    "the credentials helper gave no credentials within {}s",
                    HELPER_TIMEOUT.as_secs()
                )));
            }
        };
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stderr);
            let said = said.trim();
            return Err(CredentialsError::provider_error(if said.is_empty() {
                format!("the credentials helper failed ({})", output.status)
            } else {
                truncate(said, HELPER_MESSAGE_BYTES).to_owned()
            }));
        }
        from_process_json(&output.stdout).map_err(CredentialsError::provider_error)
    }
}

impl ProvideCredentials for HelperProcess {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(self.load())
    }
}

/// The HTTP status and error code of a response the SDK could not model (Ceph RGW's STS
/// errors, for one), as ` (HTTP 403, AccessDenied)`, found in the error's `Debug` form; the
/// rest of that form, which can hold the whole response body, is left out. Empty when
/// neither is there.
fn response_hint(debug: &str) -> String {
    let status = debug
        .split_once("StatusCode(")
        .map(|(_, rest)| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .filter(|s| s.len() == 3);
    let code = debug
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code)
        .filter(|c| {
            (1..=64).contains(&c.len())
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
        });
    match (status, code) {
        (Some(s), Some(c)) => format!(" (HTTP {s}, {c})"),
        (Some(s), None) => format!(" (HTTP {s})"),
        (None, Some(c)) => format!(" ({c})"),
        (None, None) => String::new(),
    }
}

/// `text` cut to at most `bytes` bytes, on a character boundary.
fn truncate(text: &str, bytes: usize) -> &str {
    let mut end = text.len().min(bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `credential_process` output: what the helper prints, and what [`from_process_json`] reads.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ProcessCredentials {
    version: u8,
    access_key_id: String,
    secret_access_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session_token: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expiration: Option<String>,
}

/// The helper's side: loads credentials with [`chain`] once and prints them as
/// `credential_process` JSON; on failure, the chain's message as the error.
///
/// Only for the signer that spawned it: a process whose parent is outside its PID namespace
/// (parent id 0), as one that `kubectl exec` starts in the signer's container is, is refused
/// before anything is loaded. Someone allowed to exec into the pod gets no keys this way.
pub async fn print_once(region: &str) -> Result<(), String> {
    use aws_smithy_types::date_time::{DateTime, Format};
    if std::os::unix::process::parent_id() == 0 {
        return Err(
            "uploadbucket-sidecar credentials runs only as the signer's own helper \
                    process; it prints nothing for a process started from outside the \
                    container (kubectl exec)"
                .into(),
        );
    }
    let provider = chain(&aws_config::Region::new(region.to_owned()));
    let c = provider.provide_credentials().await.map_err(|e| {
        let mut text = error_chain(&e);
        text.push_str(&response_hint(&format!("{e:?}")));
        text
    })?;
    let expiration = match c.expiry() {
        Some(at) => Some(
            DateTime::from(at)
                .fmt(Format::DateTime)
                .map_err(|e| format!("the credentials' expiry: {e}"))?,
        ),
        None => None,
    };
    let out = ProcessCredentials {
        version: 1,
        access_key_id: c.access_key_id().to_owned(),
        secret_access_key: c.secret_access_key().to_owned(),
        session_token: c.session_token().map(str::to_owned),
        expiration,
    };
    let json = serde_json::to_string(&out).map_err(|e| e.to_string())?;
    println!("{json}");
    Ok(())
}

/// The signer's side: the helper's standard output as credentials.
fn from_process_json(stdout: &[u8]) -> Result<aws_credential_types::Credentials, String> {
    use aws_smithy_types::date_time::{DateTime, Format};
    // serde_json's message can quote what it read; the position alone says enough.
    let p: ProcessCredentials = serde_json::from_slice(stdout).map_err(|e| {
        format!(
            "the credentials helper printed no credentials JSON ({:?} at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    if p.version != 1 {
        return Err(format!(
            "the credentials helper printed Version {}; only 1 is read",
            p.version
        ));
    }
    let expiry = match &p.expiration {
        Some(text) => Some(
            DateTime::from_str(text, Format::DateTime)
                .ok()
                .and_then(|t| SystemTime::try_from(t).ok())
                .ok_or_else(|| {
                    format!(
                        "the credentials helper printed Expiration {text:?}, not an RFC 3339 time"
                    )
                })?,
        ),
        None => None,
    };
    Ok(aws_credential_types::Credentials::new(
        p.access_key_id,
        p.secret_access_key,
        p.session_token,
        expiry,
        "UploadbucketCredentialsHelper",
    ))
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
pub struct CachedCredentials(Arc<Cache>);

struct Cache {
    provider: SharedCredentialsProvider,
    margin: Duration,
    /// The credentials, and the margin that applies to them.
    cached: RwLock<Option<(Arc<Credentials>, Duration)>>,
    /// Held by the one load in progress; keeps the last load's error. A request that waited
    /// through a failed load takes its error instead of calling STS once more.
    refresh: Arc<tokio::sync::Mutex<Option<String>>>,
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
        Self(Arc::new(Cache {
            provider,
            margin,
            cached: RwLock::new(None),
            refresh: Arc::default(),
            loads: AtomicU64::new(0),
            now: SystemTime::now,
            backoff: BACKOFF,
        }))
    }

    /// Settings changed before the cache is shared (the builders below).
    fn cache_mut(&mut self) -> &mut Cache {
        Arc::get_mut(&mut self.0).expect("set before the cache is used")
    }

    /// Pauses between attempts other than [`BACKOFF`] (tests).
    pub fn with_backoff(mut self, backoff: &'static [Duration]) -> Self {
        self.cache_mut().backoff = backoff;
        self
    }

    /// Reads the time from `now` instead of the system clock (tests).
    pub fn with_clock(mut self, now: fn() -> SystemTime) -> Self {
        self.cache_mut().now = now;
        self
    }
}

impl Cache {
    fn fresh(&self) -> Option<Arc<Credentials>> {
        let now = (self.now)();
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
                    let e = error_chain(&e);
                    let Some(pause) = pauses.next() else {
                        return Err(e);
                    };
                    tracing::warn!(error = %e, retry_in = ?pause, "Loading credentials failed");
                    tokio::time::sleep(*pause).await;
                }
            }
        }
    }

    /// Loads, and keeps what was loaded (or the error), holding the turn `last_error` until
    /// done.
    async fn load_into(
        self: Arc<Self>,
        mut last_error: tokio::sync::OwnedMutexGuard<Option<String>>,
    ) -> Result<Arc<Credentials>, String> {
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
        let cache = &self.0;
        if let Some(c) = cache.fresh() {
            return Ok(c);
        }
        // One load at a time; the others wait and then take its result, or its error.
        let before = cache.loads.load(Ordering::Acquire);
        let last_error = cache.refresh.clone().lock_owned().await;
        if let Some(c) = cache.fresh() {
            return Ok(c);
        }
        if let Some(e) = last_error.as_ref()
            && cache.loads.load(Ordering::Acquire) != before
        {
            // A load ended while this request waited, and it failed.
            return Err(e.clone());
        }
        // The load is a task of its own, holding the turn: a request that goes away while it
        // runs (its client gone, a timeout) leaves it to finish and fill the cache for the
        // next one, instead of stopping it and making the next one start over.
        tokio::spawn(cache.clone().load_into(last_error))
            .await
            .unwrap_or_else(|e| Err(format!("loading credentials stopped: {e}")))
    }

    fn ready(&self) -> Option<Arc<Credentials>> {
        self.0.fresh()
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

    /// A provider that takes `delay` to answer, as STS on a slow day.
    #[derive(Debug)]
    struct Slow {
        calls: Arc<AtomicUsize>,
        delay: Duration,
    }

    impl ProvideCredentials for Slow {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let delay = self.delay;
            aws_credential_types::provider::future::ProvideCredentials::new(async move {
                tokio::time::sleep(delay).await;
                Ok(aws_credential_types::Credentials::new(
                    "AKIDSLOW", "s", None, None, "test",
                ))
            })
        }
    }

    #[tokio::test]
    async fn a_load_outlives_the_request_that_started_it() {
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = CachedCredentials::new(
            SharedCredentialsProvider::new(Slow {
                calls: calls.clone(),
                delay: Duration::from_millis(300),
            }),
            Duration::from_secs(360),
        );
        // The first request goes away while its load runs (its client gone, a timeout).
        let first = tokio::time::timeout(Duration::from_millis(50), cache.credentials()).await;
        assert!(first.is_err(), "the load takes 300 ms");
        assert!(cache.ready().is_none());
        // The next one waits for that load instead of starting another.
        assert_eq!(cache.credentials().await.unwrap().access_key_id, "AKIDSLOW");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one load for both requests"
        );
        assert!(cache.ready().is_some());
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

    #[test]
    fn the_helpers_json_reads_back_as_the_credentials_it_printed() {
        let printed = serde_json::to_vec(&ProcessCredentials {
            version: 1,
            access_key_id: "ASIAHELPER".into(),
            secret_access_key: "secret".into(),
            session_token: Some("session".into()),
            expiration: Some("2030-01-02T03:04:05Z".into()),
        })
        .unwrap();
        let c = from_process_json(&printed).expect("reads");
        assert_eq!(c.access_key_id(), "ASIAHELPER");
        assert_eq!(c.secret_access_key(), "secret");
        assert_eq!(c.session_token(), Some("session"));
        assert_eq!(
            c.expiry(),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_553_445))
        );
        // Long-lived keys: no token, no expiry.
        let keys =
            from_process_json(br#"{"Version":1,"AccessKeyId":"AKIAKEYS","SecretAccessKey":"s"}"#)
                .expect("reads");
        assert_eq!((keys.session_token(), keys.expiry()), (None, None));
    }

    #[test]
    fn a_response_the_sdk_could_not_read_is_named_by_its_status_and_code_alone() {
        let debug = r#"ServiceError { raw: Response { status: StatusCode(403), body: SdkBody { inner: Once(Some(b"<Error><Code>AccessDenied</Code><SecretAccessKey>LEAKED</SecretAccessKey></Error>")) } } }"#;
        assert_eq!(response_hint(debug), " (HTTP 403, AccessDenied)");
        let odd =
            r#"raw: Response { status: StatusCode(200), body: b"<Code>has spaces LEAKED</Code>" }"#;
        assert_eq!(response_hint(odd), " (HTTP 200)");
        assert_eq!(response_hint("DispatchFailure(timed out)"), "");
    }

    #[test]
    fn output_that_is_not_the_helpers_is_refused_without_quoting_it() {
        for (out, names) in [
            (
                &br#"{"Version":2,"AccessKeyId":"a","SecretAccessKey":"s"}"#[..],
                "Version 2",
            ),
            (
                br#"{"Version":1,"AccessKeyId":"a","SecretAccessKey":"s","Expiration":"soon"}"#,
                "Expiration \"soon\"",
            ),
            (br#"{"Version":1,"AccessKeyId":"a"}"#, "no credentials JSON"),
            (b"AKIAQUOTED not json", "no credentials JSON"),
            (br#"{"Version":"AKIAQUOTED"}"#, "no credentials JSON"),
        ] {
            let e = from_process_json(out).expect_err("refused");
            assert!(e.contains(names), "{e}");
            assert!(
                !e.contains("AKIAQUOTED"),
                "the message quotes the output: {e}"
            );
        }
    }

    #[tokio::test]
    async fn a_helper_that_fails_gives_its_message_or_its_exit() {
        let err = |r: aws_credential_types::provider::Result| error_chain(&r.expect_err("fails"));
        let once = err(Err(
            aws_credential_types::provider::error::CredentialsError::provider_error(
                "an error occurred while loading credentials: the helper's own chain",
            ),
        ));
        assert_eq!(
            once,
            "an error occurred while loading credentials: the helper's own chain"
        );
        // ls knows no --region and says so on its standard error.
        let said = err(HelperProcess::with_program("/bin/ls", "eu-west-1")
            .load()
            .await);
        assert!(said.contains("--region=eu-west-1"), "{said}");
        let silent = err(HelperProcess::with_program("/bin/false", "eu-west-1")
            .load()
            .await);
        assert!(
            silent.contains("the credentials helper failed (exit status: 1)"),
            "{silent}"
        );
        let missing = err(
            HelperProcess::with_program("/nonexistent/helper", "eu-west-1")
                .load()
                .await,
        );
        assert!(
            missing.contains("cannot run the credentials helper /nonexistent/helper"),
            "{missing}"
        );
    }
}
