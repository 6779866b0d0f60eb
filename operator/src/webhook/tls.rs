//! HTTPS for the webhook. The API server only calls webhooks over TLS.
//!
//! In: a directory holding `tls.crt` (chain, PEM) and `tls.key` (PEM), as a mounted
//! `kubernetes.io/tls` Secret lays them out. Out: a server that answers with the router and
//! picks up rotated files within `reload_every` without a restart (the kubelet updates
//! mounted Secrets in place). Side effects: file reads, a listening socket.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl TlsError {
    pub fn reason(&self) -> &'static str {
        match self {
            TlsError::Read { .. } => "CertificateUnreadable",
            TlsError::Parse { .. } => "CertificateInvalid",
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    // The operator links both ring (kube) and aws-lc-rs (the AWS SDK); naming one avoids
    // depending on a process-wide default.
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The serving certificate, re-read from its directory when it changes.
pub struct CertStore {
    dir: PathBuf,
    current: RwLock<(Vec<u8>, Arc<CertifiedKey>)>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore").field("dir", &self.dir).finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Parses a PEM chain and key into what rustls serves.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    dir: &Path,
) -> Result<CertifiedKey, TlsError> {
    let parse = |file: &str, message: String| TlsError::Parse {
        path: dir.join(file),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| parse("tls.crt", format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(parse("tls.crt", "holds no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| parse("tls.key", format!("not a PEM private key: {e}")))?;
    let key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| parse("tls.key", format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, key);
    certified
        .keys_match()
        .map_err(|e| parse("tls.key", format!("does not match tls.crt: {e}")))?;
    Ok(certified)
}

impl CertStore {
    /// Loads `dir/tls.crt` and `dir/tls.key`; fails with the file and what is wrong.
    pub fn load(dir: impl Into<PathBuf>) -> Result<Self, TlsError> {
        let dir = dir.into();
        let (stamp, key) = Self::read_dir(&dir)?;
        Ok(Self {
            dir,
            current: RwLock::new((stamp, Arc::new(key))),
        })
    }

    fn read_dir(dir: &Path) -> Result<(Vec<u8>, CertifiedKey), TlsError> {
        let cert = read(&dir.join("tls.crt"))?;
        let key = read(&dir.join("tls.key"))?;
        let certified = certified_key(&cert, &key, dir)?;
        let mut stamp = cert;
        stamp.extend_from_slice(&key);
        Ok((stamp, certified))
    }

    /// Re-reads the files; swaps the certificate when they changed and parse. Returns
    /// whether it swapped. A broken update keeps the old certificate (and says so).
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (stamp, key) = Self::read_dir(&self.dir)?;
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.0 == stamp {
            return Ok(false);
        }
        *current = (stamp, Arc::new(key));
        Ok(true)
    }

    fn key(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// A rustls server configuration serving this store's certificate (HTTP/2 and 1.1).
    pub fn server_config(self: &Arc<Self>) -> ServerConfig {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key())
    }
}

/// Serves `router` over TLS on `listener` until the process ends, re-reading the
/// certificate every `reload_every`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    certs: Arc<CertStore>,
    reload_every: Duration,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(certs.server_config()));
    let watcher = certs.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(reload_every);
        tick.tick().await;
        loop {
            tick.tick().await;
            match watcher.reload() {
                Ok(true) => info!(dir = %watcher.dir.display(), "Webhook certificate reloaded"),
                Ok(false) => {}
                Err(e) => {
                    warn!(error = %e, reason = e.reason(), "Webhook certificate not reloaded; serving the previous one")
                }
            }
        }
    });
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "Webhook accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                debug!(%peer, error = %e, "Webhook connection ended with an error");
            }
        });
    }
}
