//! End-user tokens (`uploads.auth.jwt`): every call that starts, continues or verifies an
//! upload carries `Authorization: Bearer <JWT>` from the app's identity provider, and the
//! upload's owner is the token's owner claim, not whatever the request says.
//!
//! In: the request's `Authorization` header. Out: the [`Caller`] (its owner folder) in the
//! request's extensions, or a 401 naming what failed (with `WWW-Authenticate`), or 503 when
//! the provider's keys cannot be had. The token itself is never logged.
//!
//! Signatures are checked by `jsonwebtoken` with a key the provider publishes (JWKS): RSA
//! (RS256/384/512, PS256/384/512), EC (ES256 on P-256, ES384 on P-384) or Ed25519 (EdDSA).
//! A token asking for `none` or an HMAC algorithm is refused before any key is looked at, and
//! symmetric (`oct`) keys in a JWKS are ignored, so a public key is never used as an HMAC
//! secret. `iss` must be the configured issuer, `aud` one of the audiences, `exp` present and
//! both `exp` and `nbf` hold with [`LEEWAY_SECONDS`] of leeway.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::config::JwtConfig;
use crate::error::{AppError, ErrorCode};

/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 60;
/// A JWKS is looked up again at most this often when a token names a key it does not hold
/// (key rotation), and after a failed fetch: a flood of tokens with made-up key ids costs the
/// provider one request per interval.
pub const MIN_REFRESH: Duration = Duration::from_secs(30);
/// How long keys are used without asking again, when the provider's `Cache-Control` says
/// nothing (its `max-age` is honoured within [`MIN_FRESH`] and [`MAX_FRESH`]).
pub const DEFAULT_FRESH: Duration = Duration::from_secs(600);
pub const MIN_FRESH: Duration = Duration::from_secs(60);
pub const MAX_FRESH: Duration = Duration::from_secs(86_400);
/// Longest wait for the provider's discovery document and keys together.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest token read (provider tokens with many groups reach a few KiB).
pub const MAX_TOKEN: usize = 16 * 1024;
/// A token checked lately is taken as checked for at most this long (and never past its
/// `exp` with the leeway): the calls of one upload (create, parts, complete, verify) carry
/// the same token, and its signature is checked once. As an API gateway caches its
/// authorizer's answer per token.
pub const RECENT_TTL: Duration = Duration::from_secs(60);
/// Most tokens remembered as checked.
const RECENT_MAX: usize = 1024;
/// Largest discovery document or JWKS read.
const MAX_DOCUMENT: usize = 1 << 20;

/// Who is calling, as far as the token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The owner folder: the claim, with any character a folder name cannot hold encoded.
    /// (Shared strings: a remembered token's caller is handed to every request it makes.)
    pub owner: Arc<str>,
    /// The claim as the token carries it.
    pub claim: Arc<str>,
}

/// The request's verified caller, when the bucket requires tokens (an extractor: `None`
/// without JWT mode).
#[derive(Clone, Debug, Default)]
pub struct Caller(pub Option<Verified>);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller(parts.extensions.get::<Verified>().cloned()))
    }
}

impl Caller {
    /// The owner a call acts for: the token's, when there is a token (an `owner` the request
    /// names must then be the token's: its claim or its folder, else 403
    /// `TokenOwnerMismatch`); otherwise what the request names.
    pub fn owner<'a>(&'a self, asked: Option<&'a str>) -> Result<Option<&'a str>, AppError> {
        match (&self.0, asked) {
            (None, asked) => Ok(asked),
            (Some(v), Some(a)) if a != &*v.owner && a != &*v.claim => Err(AppError::with_status(
                StatusCode::FORBIDDEN,
                ErrorCode::TokenOwnerMismatch,
                "owner is not the signed-in user's: with tokens the owner comes from the token; leave owner out, or send the token's",
            )),
            (Some(v), _) => Ok(Some(&v.owner)),
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    pub code: ErrorCode,
    pub message: String,
    /// The provider's keys could not be had (503), rather than the token being bad (401).
    pub unavailable: bool,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> AuthError {
    AuthError {
        code,
        message: message.into(),
        unavailable: false,
    }
}

/// At most 64 characters of a value a token chose, for messages and logs.
fn shown(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

fn keys_unavailable() -> AuthError {
    AuthError {
        code: ErrorCode::KeysUnavailable,
        message: "the identity provider's keys cannot be had right now; retry shortly".into(),
        unavailable: true,
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        debug_assert!(
            self.code
                .statuses()
                .contains(&if self.unavailable { 503 } else { 401 }),
            "{} does not declare the status it is answered with",
            self.code
        );
        let body =
            serde_json::json!({"error": {"code": self.code.as_str(), "message": self.message}});
        if self.unavailable {
            let mut r = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from_static("5"),
            );
            return r;
        }
        let mut r = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
        // RFC 6750: no error attribute when the request carried no token at all.
        let challenge = if self.code == ErrorCode::MissingToken {
            r#"Bearer realm="uploadbucket""#.to_owned()
        } else {
            let description: String = self
                .message
                .chars()
                .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
                .collect();
            format!(
                r#"Bearer realm="uploadbucket", error="invalid_token", error_description="{description}""#
            )
        };
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(WWW_AUTHENTICATE, v);
        }
        r
    }
}

/// The folder of an owner claim: characters outside `A-Z a-z 0-9 . - @`, and `_` itself, as
/// `_` and two hex digits (a leading `.` too), so distinct claims never share a folder
/// (`auth0|5f7c` is `auth0_7c5f7c`).
pub fn owner_folder(claim: &str) -> String {
    let mut out = String::with_capacity(claim.len());
    for (i, b) in claim.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'-' || b == b'@' || (b == b'.' && i > 0);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// One signing key of the provider's, ready to verify with.
struct Key {
    kid: Option<String>,
    /// The algorithms it may verify: the one its JWK names, or those of its type.
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// What is known of the provider's keys.
#[derive(Default)]
struct Known {
    keys: Arc<Vec<Key>>,
    /// No fetch before this unless a token names an unknown key (then [`MIN_REFRESH`]).
    fresh_until: Option<Instant>,
    /// The last fetch attempt, successful or not.
    last_attempt: Option<Instant>,
    /// The JWKS URL found by discovery.
    jwks_uri: Option<String>,
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<axum::body::Bytes>,
>;

/// Verifies tokens of one issuer; shared by every request.
pub struct Authenticator {
    config: JwtConfig,
    required: Vec<(String, String)>,
    known: RwLock<Known>,
    /// One fetch at a time; requests that find the keys stale wait for it.
    fetching: tokio::sync::Mutex<()>,
    http: std::sync::OnceLock<Result<HttpClient, String>>,
    /// A token lately checked -> who it is, until when ([`RECENT_TTL`]). Keyed by the whole
    /// token, compared byte for byte on a hit, so a fast hash (no cryptographic digest) is
    /// enough: at most [`RECENT_MAX`] tokens of at most [`MAX_TOKEN`] bytes.
    recent: std::sync::Mutex<
        std::collections::HashMap<Box<str>, (Verified, Instant), foldhash::fast::RandomState>,
    >,
    /// The claim rules, one per key family (the crate wants every algorithm of a rule to fit
    /// the key), built once rather than per token.
    validations: [(jsonwebtoken::AlgorithmFamily, Validation); 3],
}

/// The claim rules every token is held to, for the algorithms of one key family.
fn validation(config: &JwtConfig, algorithms: &[Algorithm]) -> Validation {
    let mut v = Validation::new(algorithms[0]);
    v.algorithms = algorithms.to_vec();
    v.leeway = LEEWAY_SECONDS;
    v.validate_nbf = true;
    v.set_issuer(&[config.issuer.as_deref().unwrap_or_default()]);
    v.set_audience(&config.audiences);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v
}

impl Authenticator {
    /// For a validated config with an issuer.
    pub fn new(config: &JwtConfig) -> Self {
        crate::jwt_rsa::install();
        Self {
            required: config
                .required_claims
                .iter()
                .filter_map(|c| c.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .collect(),
            config: config.clone(),
            known: Default::default(),
            fetching: Default::default(),
            http: Default::default(),
            recent: Default::default(),
            validations: {
                use Algorithm::*;
                use jsonwebtoken::AlgorithmFamily as F;
                [
                    (
                        F::Rsa,
                        validation(config, &[RS256, RS384, RS512, PS256, PS384, PS512]),
                    ),
                    (F::Ec, validation(config, &[ES256, ES384])),
                    (F::Ed, validation(config, &[EdDSA])),
                ]
            },
        }
    }

    fn issuer(&self) -> &str {
        self.config.issuer.as_deref().unwrap_or_default()
    }

    /// Checks the `Authorization` header's token.
    pub async fn verify(
        self: &Arc<Self>,
        authorization: Option<&HeaderValue>,
    ) -> Result<Verified, AuthError> {
        let Some(value) = authorization else {
            return Err(refuse(
                ErrorCode::MissingToken,
                "this bucket requires the signed-in user's token: send Authorization: Bearer <token>",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                refuse(
                    ErrorCode::InvalidToken,
                    "the Authorization header is not \"Bearer <token>\"",
                )
            })?;
        if token.len() > MAX_TOKEN {
            return Err(refuse(
                ErrorCode::InvalidToken,
                format!("the token is over {} KiB", MAX_TOKEN / 1024),
            ));
        }
        if let Some(v) = self.remembered(token) {
            return Ok(v);
        }
        let verified = self.check(token).await?;
        self.remember(token, &verified);
        Ok(verified.0)
    }

    /// A token checked within [`RECENT_TTL`] (and still within its `exp`).
    fn remembered(&self, token: &str) -> Option<Verified> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        match recent.get(token) {
            Some((v, until)) if Instant::now() < *until => Some(v.clone()),
            _ => None,
        }
    }

    fn remember(&self, token: &str, (v, exp): &(Verified, Option<f64>)) {
        let now = Instant::now();
        let left = exp.map_or(0.0, |exp| {
            let unix_now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            exp + LEEWAY_SECONDS as f64 - unix_now
        });
        let keep = Duration::from_secs_f64(left.clamp(0.0, RECENT_TTL.as_secs_f64()));
        if keep.is_zero() {
            return;
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= RECENT_MAX {
            recent.retain(|_, (_, until)| now < *until);
            if recent.len() >= RECENT_MAX {
                recent.clear();
            }
        }
        recent.insert(token.into(), (v.clone(), now + keep));
    }

    /// Checks a token (signature, claims, owner): who it is and its `exp`.
    async fn check(self: &Arc<Self>, token: &str) -> Result<(Verified, Option<f64>), AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| refuse(ErrorCode::InvalidToken, "the token is not a signed JWT"))?;
        if header.alg.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            return Err(refuse(
                ErrorCode::UnsupportedAlgorithm,
                format!(
                    "alg {:?} is not accepted: tokens must be signed with one of the provider's published keys (RS*, PS*, ES256, ES384, EdDSA)",
                    header.alg
                ),
            ));
        }
        let keys = self.keys_for(header.kid.as_deref()).await?;
        let key = pick(&keys, header.kid.as_deref(), header.alg).ok_or_else(|| {
            refuse(
                ErrorCode::UnknownKey,
                match &header.kid {
                    Some(kid) => format!(
                        "the provider publishes no key {:?} for {:?}",
                        shown(kid),
                        header.alg
                    ),
                    None => format!(
                        "the token names no key (kid) and the provider publishes no single key for {:?}",
                        header.alg
                    ),
                },
            )
        })?;
        let family = header.alg.family();
        let Some((_, validation)) = self.validations.iter().find(|(f, _)| *f == family) else {
            return Err(refuse(
                ErrorCode::UnsupportedAlgorithm,
                format!("alg {:?} is not accepted", header.alg),
            ));
        };
        let claims = jsonwebtoken::decode::<BTreeMap<String, Value>>(token, &key.key, validation)
            .map_err(|e| self.refusal(e))?
            .claims;
        for (name, wanted) in &self.required {
            match claims.get(name) {
                None => {
                    return Err(refuse(
                        ErrorCode::MissingClaim,
                        format!("the token has no {name:?} claim, which this bucket requires"),
                    ));
                }
                Some(v) if !holds(v, wanted) => {
                    return Err(refuse(
                        ErrorCode::ClaimMismatch,
                        format!(
                            "the token's {name:?} claim does not hold {wanted:?}, which this bucket requires"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        // The crate accepts an `iss` list holding the issuer; a token has one issuer.
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer()) {
            return Err(refuse(
                ErrorCode::WrongIssuer,
                format!("the token's issuer (iss) is not {:?}", self.issuer()),
            ));
        }
        let claim_name = &self.config.owner_claim;
        // An address the provider has not verified could be anyone's.
        if claim_name == "email"
            && !matches!(claims.get("email_verified"), Some(v) if holds(v, "true"))
        {
            return Err(refuse(
                ErrorCode::EmailNotVerified,
                "the owner is the token's email, and its email_verified is not true",
            ));
        }
        let claim = match claims.get(claim_name) {
            // Strings only: a number has several spellings (123, 1.23e2, "123"), and distinct
            // users must never share a folder.
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(refuse(
                    ErrorCode::MissingClaim,
                    format!(
                        "the token has no {claim_name:?} claim (a non-empty string) to name the owner"
                    ),
                ));
            }
        };
        let owner = owner_folder(&claim);
        if owner.len() > crate::keys::MAX_OWNER {
            return Err(refuse(
                ErrorCode::InvalidOwnerClaim,
                format!(
                    "the token's {claim_name:?} claim makes a folder name of {} characters, more than {}; choose a shorter claim (uploads.auth.jwt.ownerClaim)",
                    owner.len(),
                    crate::keys::MAX_OWNER
                ),
            ));
        }
        let exp = claims.get("exp").and_then(Value::as_f64);
        Ok((
            Verified {
                owner: owner.into(),
                claim: claim.into(),
            },
            exp,
        ))
    }

    fn refusal(&self, e: jsonwebtoken::errors::Error) -> AuthError {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::ExpiredSignature => refuse(ErrorCode::TokenExpired, "the token has expired"),
            K::ImmatureSignature => refuse(
                ErrorCode::TokenNotYetValid,
                "the token is not valid yet (nbf)",
            ),
            K::InvalidIssuer => refuse(
                ErrorCode::WrongIssuer,
                format!("the token's issuer (iss) is not {:?}", self.issuer()),
            ),
            K::InvalidAudience => refuse(
                ErrorCode::WrongAudience,
                format!(
                    "the token is not for this bucket: its aud holds none of {}",
                    self.config.audiences.join(", ")
                ),
            ),
            K::InvalidSignature => refuse(
                ErrorCode::BadSignature,
                "the token's signature does not verify",
            ),
            K::MissingRequiredClaim(c) => refuse(
                ErrorCode::MissingClaim,
                format!("the token has no {c:?} claim"),
            ),
            K::InvalidAlgorithm => refuse(
                ErrorCode::UnsupportedAlgorithm,
                "the token's alg does not fit the provider's key",
            ),
            _ => refuse(ErrorCode::InvalidToken, "the token cannot be read"),
        }
    }

    /// The keys to verify a token naming `kid` with. While the cached keys hold `kid` they
    /// are used at once, also past their freshness (then one fetch starts in the background,
    /// so a slow provider slows no request). A `kid` they do not hold (rotation), or no keys
    /// yet, waits for a fetch: at most one every [`MIN_REFRESH`], all waiting for the same
    /// one, bounded by [`FETCH_TIMEOUT`].
    async fn keys_for(self: &Arc<Self>, kid: Option<&str>) -> Result<Arc<Vec<Key>>, AuthError> {
        let holds = |k: &Known| {
            !k.keys.is_empty()
                && kid.is_none_or(|kid| k.keys.iter().any(|x| x.kid.as_deref() == Some(kid)))
        };
        let (held, stale) = {
            let k = self.read();
            let stale = k.fresh_until.is_none_or(|f| Instant::now() >= f);
            (holds(&k).then(|| k.keys.clone()), stale)
        };
        if let Some(keys) = held {
            if stale {
                let me = self.clone();
                tokio::spawn(async move { me.refresh(false).await });
            }
            return Ok(keys);
        }
        self.refresh(true).await;
        let k = self.read();
        if k.keys.is_empty() {
            Err(keys_unavailable())
        } else {
            Ok(k.keys.clone())
        }
    }

    /// One fetch of the keys, unless one ran within [`MIN_REFRESH`] or (`wait` false) one is
    /// running now; `wait`: wait for a running one instead. A failure keeps the cached keys.
    async fn refresh(&self, wait: bool) {
        let _one = if wait {
            self.fetching.lock().await
        } else {
            match self.fetching.try_lock() {
                Ok(g) => g,
                Err(_) => return,
            }
        };
        let now = Instant::now();
        if self
            .read()
            .last_attempt
            .is_some_and(|t| now < t + MIN_REFRESH)
        {
            return;
        }
        self.write().last_attempt = Some(now);
        let fetched = tokio::time::timeout(FETCH_TIMEOUT, self.fetch())
            .await
            .unwrap_or_else(|_| Err(format!("no keys within {FETCH_TIMEOUT:?}")));
        match fetched {
            Ok((keys, fresh_for)) => {
                let mut k = self.write();
                k.keys = Arc::new(keys);
                k.fresh_until = Some(now + fresh_for);
                // A key the provider retired stops counting now, for tokens checked before too.
                self.recent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
            }
            Err(e) if self.read().keys.is_empty() => {
                tracing::warn!(issuer = self.issuer(), error = %e, "Cannot get the identity provider's keys");
            }
            Err(e) => {
                tracing::warn!(issuer = self.issuer(), error = %e, "Cannot refresh the identity provider's keys; using the cached ones");
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Known> {
        self.known.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Known> {
        self.known.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The provider's signing keys and how long to use them.
    async fn fetch(&self) -> Result<(Vec<Key>, Duration), String> {
        let discovered = self.read().jwks_uri.clone();
        let uri = match (&self.config.jwks_uri, discovered) {
            (Some(u), _) => u.clone(),
            (None, Some(u)) => u,
            (None, None) => {
                let discovery = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer().trim_end_matches('/')
                );
                let (doc, _) = self.get_json(&discovery).await?;
                // OpenID Connect Discovery: the document's issuer is the configured one.
                if doc["issuer"].as_str() != Some(self.issuer()) {
                    return Err(format!(
                        "{discovery} names issuer {}, not {:?}",
                        doc["issuer"],
                        self.issuer()
                    ));
                }
                let uri = doc["jwks_uri"]
                    .as_str()
                    .ok_or_else(|| format!("{discovery} has no jwks_uri"))?
                    .to_owned();
                self.write().jwks_uri = Some(uri.clone());
                uri
            }
        };
        let (doc, fresh_for) = self.get_json(&uri).await?;
        let set: JwkSet =
            serde_json::from_value(doc).map_err(|e| format!("{uri} is not a JWKS: {e}"))?;
        let keys: Vec<Key> = set.keys.iter().filter_map(key).collect();
        if keys.is_empty() {
            return Err(format!("{uri} holds no signing key this signer can use"));
        }
        Ok((keys, fresh_for))
    }

    /// GET `url` as JSON, with how long its `Cache-Control` lets it be used.
    async fn get_json(&self, url: &str) -> Result<(Value, Duration), String> {
        use http_body_util::BodyExt;
        let client =
            self.http
                .get_or_init(|| {
                    // The provider named here: a build that links both of rustls' providers
                    // (the workspace's, with kube's ring) has no process default to use.
                    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                    let https = hyper_rustls::HttpsConnectorBuilder::new()
                        .with_provider_and_native_roots(provider)
                        .map_err(|e| {
                            format!("no CA certificates to check the provider's TLS with: {e}")
                        })?
                        .https_or_http()
                        .enable_http1()
                        .build();
                    Ok(hyper_util::client::legacy::Client::builder(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .build(https))
                })
                .as_ref()
                .map_err(Clone::clone)?;
        let uri: axum::http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let request = axum::http::Request::get(uri)
            .header("accept", "application/json")
            .body(http_body_util::Empty::new())
            .map_err(|e| format!("{url}: {e}"))?;
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        let fresh_for = freshness(response.headers().get(CACHE_CONTROL));
        let body = http_body_util::Limited::new(response.into_body(), MAX_DOCUMENT)
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        let doc = serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))?;
        Ok((doc, fresh_for))
    }

    /// Loads the keys ahead of the first request (errors only logged: requests try again).
    pub async fn warm(self: &Arc<Self>) {
        let _ = self.keys_for(None).await;
    }
}

/// How long a response may be used: its `max-age`, within bounds; no-cache and no-store
/// still mean the least, since asking per request would let callers flood the provider.
pub fn freshness(cache_control: Option<&HeaderValue>) -> Duration {
    let Some(v) = cache_control.and_then(|v| v.to_str().ok()) else {
        return DEFAULT_FRESH;
    };
    let directives: Vec<String> = v
        .split(',')
        .map(|d| d.trim().to_ascii_lowercase())
        .collect();
    if directives
        .iter()
        .any(|d| d == "no-cache" || d == "no-store")
    {
        return MIN_FRESH;
    }
    directives
        .iter()
        .find_map(|d| {
            d.strip_prefix("max-age=")?
                .trim_matches('"')
                .parse::<u64>()
                .ok()
        })
        .map(|s| Duration::from_secs(s).clamp(MIN_FRESH, MAX_FRESH))
        .unwrap_or(DEFAULT_FRESH)
}

/// A JWK as a verifying key, if it is a public signing key of a kind this signer accepts.
fn key(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Key> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    if jwk
        .common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        // Never a shared secret (`oct`), nor anything else.
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => by_type,
        Some(named) => {
            let named = key_algorithm(named)?;
            by_type.into_iter().filter(|a| *a == named).collect()
        }
    };
    if algorithms.is_empty() {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    crate::jwt_rsa::register(&key, &algorithms);
    Some(Key {
        kid: jwk.common.key_id.clone(),
        algorithms,
        key,
    })
}

fn key_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The key a token names (or the only one for its alg when it names none).
fn pick<'k>(keys: &'k [Key], kid: Option<&str>, alg: Algorithm) -> Option<&'k Key> {
    let fits = |k: &&Key| k.algorithms.contains(&alg);
    match kid {
        Some(kid) => keys
            .iter()
            .filter(fits)
            .find(|k| k.kid.as_deref() == Some(kid)),
        None => {
            let mut candidates = keys.iter().filter(fits);
            let only = candidates.next()?;
            candidates.next().is_none().then_some(only)
        }
    }
}

/// Whether a claim holds `wanted`: equal to it, a list with it, or a space-separated string
/// with it (`scope`).
fn holds(v: &Value, wanted: &str) -> bool {
    match v {
        Value::String(s) => s == wanted || s.split(' ').any(|w| w == wanted),
        Value::Array(items) => items.iter().any(|i| i.as_str() == Some(wanted)),
        Value::Bool(b) => b.to_string() == wanted,
        Value::Number(n) => n.to_string() == wanted,
        _ => false,
    }
}

/// Middleware on the routes that start, continue or verify uploads: with tokens required,
/// a verified [`Verified`] goes into the request's extensions, or the request is refused.
pub async fn authenticate(
    State(auth): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Response {
    match auth.verify(req.headers().get(AUTHORIZATION)).await {
        Ok(v) => {
            req.extensions_mut().insert(v);
            next.run(req).await
        }
        Err(e) => {
            tracing::info!(code = e.code.as_str(), reason = %e.message, "Refused a token");
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_folders_are_distinct_for_distinct_claims() {
        assert_eq!(owner_folder("8b1c-44"), "8b1c-44");
        assert_eq!(owner_folder("ada@example.com"), "ada@example.com");
        assert_eq!(owner_folder("auth0|5f7c"), "auth0_7c5f7c");
        assert_eq!(owner_folder("a_b"), "a_5fb");
        assert_eq!(owner_folder(".."), "_2e.");
        assert_eq!(owner_folder("ü"), "_c3_bc");
        // A claim that looks like another's folder keeps its own.
        assert_ne!(owner_folder("auth0_7c5f7c"), owner_folder("auth0|5f7c"));
        for claim in ["a|b", "a/b", "a b", "../x", "x\u{0}", "_", "a.b"] {
            let f = owner_folder(claim);
            assert!(crate::keys::valid_owner(&f), "{claim:?} -> {f:?}");
        }
    }

    /// A checked token is taken as checked for at most a minute and never past its `exp`
    /// (with the leeway); the memory is bounded.
    #[test]
    fn checked_tokens_are_remembered_briefly() {
        let auth = Authenticator::new(&JwtConfig {
            issuer: Some("https://login.example.com/".into()),
            audiences: vec!["a".into()],
            ..Default::default()
        });
        let v = Verified {
            owner: "ada".into(),
            claim: "ada".into(),
        };
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        auth.remember("t1", &(v.clone(), Some(unix_now - 61.0)));
        assert_eq!(auth.remembered("t1"), None, "expired beyond the leeway");
        auth.remember("t2", &(v.clone(), None));
        assert_eq!(auth.remembered("t2"), None, "no exp, nothing kept");
        auth.remember("t3", &(v.clone(), Some(unix_now + 3600.0)));
        assert_eq!(auth.remembered("t3"), Some(v.clone()));
        assert_eq!(auth.remembered("t3x"), None, "only the very same token");
        assert_eq!(auth.remembered("t"), None, "only the very same token");
        let until = auth.recent.lock().unwrap()["t3"].1;
        assert!(until <= Instant::now() + RECENT_TTL, "at most a minute");
        auth.remember("t4", &(v.clone(), Some(unix_now - 50.0)));
        let until = auth.recent.lock().unwrap()["t4"].1;
        assert!(
            until <= Instant::now() + Duration::from_secs(11),
            "not past exp + leeway"
        );
        for i in 0..(RECENT_MAX + 10) {
            auth.remember(&format!("many-{i}"), &(v.clone(), Some(unix_now + 3600.0)));
        }
        assert!(auth.recent.lock().unwrap().len() <= RECENT_MAX);
    }

    #[test]
    fn freshness_follows_cache_control_within_bounds() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(freshness(None), DEFAULT_FRESH);
        assert_eq!(
            freshness(Some(&h("public, max-age=3600"))),
            Duration::from_secs(3600)
        );
        assert_eq!(freshness(Some(&h("max-age=5"))), MIN_FRESH);
        assert_eq!(freshness(Some(&h("max-age=99999999"))), MAX_FRESH);
        assert_eq!(freshness(Some(&h("no-store"))), MIN_FRESH);
        assert_eq!(freshness(Some(&h("private"))), DEFAULT_FRESH);
    }

    #[test]
    fn claims_hold_values_as_providers_write_them() {
        let v = |j: &str| serde_json::from_str::<Value>(j).unwrap();
        assert!(holds(&v(r#""uploads:write""#), "uploads:write"));
        assert!(holds(
            &v(r#""openid uploads:write profile""#),
            "uploads:write"
        ));
        assert!(!holds(&v(r#""uploads:writer""#), "uploads:write"));
        assert!(holds(&v(r#"["a","uploaders"]"#), "uploaders"));
        assert!(!holds(&v(r#"["a"]"#), "uploaders"));
        assert!(holds(&v("true"), "true"));
        assert!(!holds(&v(r#"{"uploaders":1}"#), "uploaders"));
    }
}
