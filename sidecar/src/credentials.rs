//! Credentials for signing, cached and refreshed ahead of expiry.
//!
//! In: aws-config's default chain (web identity from `AWS_ROLE_ARN` +
//! `AWS_WEB_IDENTITY_TOKEN_FILE` in a pod, env or profile elsewhere). Out: [`Credentials`]
//! that stay valid for at least the refresh margin, so a URL signed now keeps working for
//! its whole lifetime whenever the identity provider allows it.

use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use crate::presign::Credentials;

/// A source of signing credentials.
#[async_trait]
pub trait CredentialSource: Send + Sync {
    async fn credentials(&self) -> Result<Credentials, String>;
}

/// Fixed credentials (dev mode, tests).
pub struct StaticCredentials(pub Credentials);

#[async_trait]
impl CredentialSource for StaticCredentials {
    async fn credentials(&self) -> Result<Credentials, String> {
        Ok(self.0.clone())
    }
}

/// The SDK's provider behind a cache that refreshes `margin` before expiry.
pub struct CachedCredentials {
    provider: SharedCredentialsProvider,
    margin: Duration,
    cached: RwLock<Option<Credentials>>,
    refresh: tokio::sync::Mutex<()>,
}

impl CachedCredentials {
    /// `margin`: refresh when fewer than this remain (use at least the URL lifetime).
    pub fn new(provider: SharedCredentialsProvider, margin: Duration) -> Self {
        Self {
            provider,
            margin,
            cached: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self, now: SystemTime) -> Option<Credentials> {
        let guard = self.cached.read().ok()?;
        let c = guard.as_ref()?;
        match c.expiry {
            Some(exp) if exp <= now + self.margin => None,
            _ => Some(c.clone()),
        }
    }
}

#[async_trait]
impl CredentialSource for CachedCredentials {
    async fn credentials(&self) -> Result<Credentials, String> {
        if let Some(c) = self.fresh(SystemTime::now()) {
            return Ok(c);
        }
        // One refresh at a time; the others wait and then take its result.
        let _guard = self.refresh.lock().await;
        if let Some(c) = self.fresh(SystemTime::now()) {
            return Ok(c);
        }
        let c =
            self.provider.provide_credentials().await.map_err(|e| {
                aws_smithy_types::error::display::DisplayErrorContext(e).to_string()
            })?;
        let creds = Credentials {
            access_key_id: c.access_key_id().to_owned(),
            secret_access_key: c.secret_access_key().to_owned(),
            session_token: c.session_token().map(str::to_owned),
            expiry: c.expiry(),
        };
        tracing::info!(expiry = ?creds.expiry.map(crate::presign::rfc3339), "Loaded credentials");
        if let Ok(mut slot) = self.cached.write() {
            *slot = Some(creds.clone());
        }
        Ok(creds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicUsize>,
        lifetime: Duration,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            aws_credential_types::provider::future::ProvideCredentials::ready(Ok(
                aws_credential_types::Credentials::new(
                    format!("AKID{n}"),
                    "s",
                    Some("t".into()),
                    Some(SystemTime::now() + self.lifetime),
                    "test",
                ),
            ))
        }
    }

    #[tokio::test]
    async fn caches_until_the_margin_then_refreshes() {
        let calls = Arc::new(AtomicUsize::new(0));
        let long = CachedCredentials::new(
            SharedCredentialsProvider::new(Counting {
                calls: calls.clone(),
                lifetime: Duration::from_secs(3600),
            }),
            Duration::from_secs(360),
        );
        let a = long.credentials().await.unwrap();
        let b = long.credentials().await.unwrap();
        assert_eq!(a.access_key_id, b.access_key_id);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Credentials that expire within the margin are refreshed on every use.
        let calls = Arc::new(AtomicUsize::new(0));
        let short = CachedCredentials::new(
            SharedCredentialsProvider::new(Counting {
                calls: calls.clone(),
                lifetime: Duration::from_secs(60),
            }),
            Duration::from_secs(360),
        );
        let a = short.credentials().await.unwrap();
        let b = short.credentials().await.unwrap();
        assert_ne!(a.access_key_id, b.access_key_id);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
