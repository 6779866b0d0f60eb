//! An OpenID Connect issuer for the JWT tests: discovery document and JWKS over HTTP, as
//! identity providers publish them, with keys that rotate and a switch that takes it down.
//! Keys come from `openssl genpkey` (RSA 2048, EC P-256, Ed25519) and tokens are signed with
//! `jsonwebtoken`, so what the signer checks is what a provider's libraries produce.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// One signing key of the issuer.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub public: Jwk,
}

impl SigningKey {
    /// A new key for `alg` (RS256, ES256 or EdDSA).
    pub fn generate(kid: &str, alg: Algorithm) -> Self {
        let args: &[&str] = match alg {
            Algorithm::RS256 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Algorithm::ES256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Algorithm::EdDSA => &["-algorithm", "ED25519"],
            other => panic!("no test keys for {other:?}"),
        };
        let out = std::process::Command::new("openssl")
            .arg("genpkey")
            .args(args)
            .output()
            .expect("openssl genpkey");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pem = out.stdout;
        let encoding = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_ed_pem(&pem),
        }
        .expect("a key");
        let mut public = Jwk::from_encoding_key(&encoding, alg).expect("its public JWK");
        public.common.key_id = Some(kid.to_owned());
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            public,
        }
    }

    /// A token with these claims, signed by this key, naming it.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("a token")
    }
}

/// A running issuer.
pub struct Issuer {
    /// Its issuer URL (what tokens carry in `iss`), with a trailing slash as Auth0 writes it.
    pub url: String,
    keys: Arc<Mutex<Vec<SigningKey>>>,
    down: Arc<AtomicBool>,
    jwks_requests: Arc<AtomicUsize>,
    /// Seconds every JWKS answer waits first (a provider that hangs).
    delay: Arc<AtomicUsize>,
}

impl Issuer {
    /// Serves discovery and a JWKS (`Cache-Control: max-age=<max_age>`) holding `keys`.
    pub async fn start(keys: Vec<SigningKey>, max_age: u64) -> Self {
        let (listener, base) = crate::local_listener().await;
        let url = format!("{base}/");
        let keys = Arc::new(Mutex::new(keys));
        let down = Arc::new(AtomicBool::new(false));
        let jwks_requests = Arc::new(AtomicUsize::new(0));
        let delay = Arc::new(AtomicUsize::new(0));
        let discovery = json!({
            "issuer": url,
            "jwks_uri": format!("{url}keys"),
            "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        });
        // A test login: `/authorize?redirect_uri=&login_hint=&audience=` sends the browser
        // back with a token for that user in the fragment, as an implicit-flow login does.
        let login = {
            let (keys, url) = (keys.clone(), url.clone());
            move |axum::extract::Query(q): axum::extract::Query<
                std::collections::BTreeMap<String, String>,
            >| async move {
                let key = keys.lock().unwrap()[0].clone();
                let now = now();
                let token = key.sign(&json!({
                    "iss": url, "sub": q.get("login_hint").cloned().unwrap_or_default(),
                    "aud": q.get("audience").cloned().unwrap_or_default(),
                    "iat": now, "exp": now + 600,
                }));
                let to = format!(
                    "{}#access_token={token}",
                    q.get("redirect_uri").cloned().unwrap_or_default()
                );
                (StatusCode::FOUND, [(header::LOCATION, to)])
            }
        };
        let app = Router::new()
            .route("/authorize", get(login))
            .route(
                "/.well-known/openid-configuration",
                get({
                    let down = down.clone();
                    move || async move {
                        if down.load(Ordering::SeqCst) {
                            return (StatusCode::SERVICE_UNAVAILABLE, String::new());
                        }
                        (StatusCode::OK, discovery.to_string())
                    }
                }),
            )
            .route(
                "/keys",
                get({
                    let (keys, down, count, delay) = (
                        keys.clone(),
                        down.clone(),
                        jwks_requests.clone(),
                        delay.clone(),
                    );
                    move || async move {
                        count.fetch_add(1, Ordering::SeqCst);
                        let wait = delay.load(Ordering::SeqCst) as u64;
                        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                        if down.load(Ordering::SeqCst) {
                            return (
                                StatusCode::SERVICE_UNAVAILABLE,
                                [(header::CACHE_CONTROL, "no-store".to_owned())],
                                String::new(),
                            );
                        }
                        let set = JwkSet {
                            keys: keys
                                .lock()
                                .unwrap()
                                .iter()
                                .map(|k| k.public.clone())
                                .collect(),
                        };
                        (
                            StatusCode::OK,
                            [(header::CACHE_CONTROL, format!("public, max-age={max_age}"))],
                            serde_json::to_string(&set).unwrap(),
                        )
                    }
                }),
            );
        crate::serve(listener, app);
        Self {
            url,
            keys,
            down,
            jwks_requests,
            delay,
        }
    }

    /// Publishes `key` too.
    pub fn publish(&self, key: SigningKey) {
        self.keys.lock().unwrap().push(key);
    }

    /// Stops publishing the key `kid`.
    pub fn retire(&self, kid: &str) {
        self.keys.lock().unwrap().retain(|k| k.kid != kid);
    }

    /// Answers 503 to everything while `down`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Makes every JWKS answer wait `secs` seconds first.
    pub fn set_delay(&self, secs: usize) {
        self.delay.store(secs, Ordering::SeqCst);
    }

    /// How many times its JWKS was asked for.
    pub fn jwks_requests(&self) -> usize {
        self.jwks_requests.load(Ordering::SeqCst)
    }

    /// Claims of a token for `sub` and `aud`, valid from a minute ago for ten minutes.
    pub fn claims(&self, sub: &str, aud: &str) -> Value {
        let now = now();
        json!({"iss": self.url, "sub": sub, "aud": aud, "iat": now - 60, "nbf": now - 60, "exp": now + 600})
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// base64url without padding, as JWTs encode their parts.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `token` with its payload replaced by `claims` and its signature kept.
pub fn with_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        b64(claims.to_string().as_bytes()),
        parts[2]
    )
}

/// An unsigned token (`alg: none`).
pub fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

/// A token signed HS256 with `secret` (the classic attack: a public key used as an HMAC
/// secret), naming `kid`.
pub fn hmac_signed(claims: &Value, kid: &str, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret).unwrap()).unwrap()
}
