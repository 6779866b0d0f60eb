//! `uploadbucket-sidecar dev`: everything on one machine, no cloud account, no cluster.
//!
//! In: a data folder and the usual signing rules. Out: an embedded S3-compatible store on
//! 127.0.0.1 (s3s + s3s-fs: real SigV4 checks, files on disk, so uploads survive restarts)
//! answering CORS for the demo page's origin, the signer pointed at it with dev credentials,
//! and the demo pages: at `/` the Uppy Dashboard (bundled from npm at build time, see
//! sidecar/web/dashboard/), at `/plain` a form on examples/web/upload.js, no framework.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use clap::Args;
use serde_json::json;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tracing::info;

use crate::config::{self, Config};
use crate::credentials::StaticCredentials;
use crate::error::{AppError, ErrorCode};
use crate::presign::{Credentials, Endpoint, Presigner};
use crate::store::S3Store;
use crate::{AppState, app};

/// Credentials of the embedded store. Local only: the store listens on loopback.
pub const DEV_ACCESS_KEY: &str = "UPLOADBUCKETDEVKEY00";
pub const DEV_SECRET_KEY: &str = "uploadbucket-dev-secret-key-not-for-production";

/// The dev mode's own variables (the others are the signer's, [`config`]'s).
pub const ENV_DEV_DATA_DIR: &str = "UPLOADBUCKET_DEV_DATA_DIR";
pub const ENV_DEV_S3_LISTEN: &str = "UPLOADBUCKET_DEV_S3_LISTEN";
pub const ENV_DEV_ORIGINS: &str = "UPLOADBUCKET_DEV_ORIGINS";

/// The Dashboard page; `{{ALLOWED_TYPES}}`, `{{MAX_SIZE}}` and `{{INCOMING}}` are filled in at
/// start.
const PAGE: &str = include_str!("../web/dev.html");
const PLAIN_PAGE: &str = include_str!("../web/plain.html");
const UPLOAD_JS: &str = include_str!("../../examples/web/upload.js");
/// Uppy (core, Dashboard, AWS S3) and the page's script, made by esbuild from
/// sidecar/web/dashboard/ (its package.json's `build`), committed: nothing is fetched at run time.
const DASHBOARD_JS: &str = include_str!("../web/dashboard.bundle.js");
const DASHBOARD_CSS: &str = include_str!("../web/dashboard.bundle.css");

#[derive(Args, Debug, Clone)]
pub struct DevArgs {
    /// Folder the uploaded files are stored in (one sub-folder per bucket).
    #[arg(long, env = ENV_DEV_DATA_DIR, default_value = ".uploadbucket-dev")]
    pub data_dir: PathBuf,
    /// Address of the signer and the demo page.
    #[arg(long, env = config::ENV_LISTEN, default_value = config::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Address of the embedded S3-compatible store.
    #[arg(long, env = ENV_DEV_S3_LISTEN, default_value = "127.0.0.1:8788")]
    pub s3_listen: SocketAddr,
    /// Bucket name in the embedded store.
    #[arg(long, env = config::ENV_BUCKET, default_value = "dev-uploads")]
    pub bucket: String,
    #[arg(long, env = config::ENV_KEY_PREFIX, default_value = "uploads/")]
    pub key_prefix: String,
    /// Content types the signer allows (comma list, exact or type/*).
    #[arg(
        long,
        env = config::ENV_ALLOWED_CONTENT_TYPES,
        default_value = "image/*,application/pdf,text/plain,video/*",
        value_delimiter = ','
    )]
    pub allowed_content_types: Vec<String>,
    /// Largest object in bytes (default 100 MiB, so multipart can be tried).
    #[arg(long, env = config::ENV_MAX_SIZE_BYTES, default_value_t = 100 * 1024 * 1024)]
    pub max_size_bytes: u64,
    #[arg(long, env = config::ENV_EXPIRES_SECONDS, default_value_t = 300)]
    pub expires_seconds: u64,
    /// Extra browser origins the store answers CORS for (the demo page's is always there),
    /// e.g. your front end's dev server: http://localhost:3000
    #[arg(long, env = ENV_DEV_ORIGINS, value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Verify uploads as `uploads.verification.enabled` does: every upload is tagged
    /// `uploadbucket-state=pending` and `POST /uploads/verify` checks its bytes (the demo
    /// page's Verify button). The dev store keeps tags but runs no lifecycle: unverified
    /// uploads stay until deleted.
    #[arg(long, env = config::ENV_VERIFY, value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    pub verify: bool,
    /// A refused object is tagged `quarantined` and kept instead of deleted.
    #[arg(long, env = config::ENV_VERIFY_QUARANTINE, value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    pub verify_quarantine: bool,
    /// Every upload must name an `owner` (`uploads.requireOwner`).
    #[arg(long, env = config::ENV_REQUIRE_OWNER, value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    pub require_owner: bool,
    /// Uploads an owner may start per minute (`uploads.limits.urlsPerMinute`); 0: no limit.
    #[arg(long, env = config::ENV_URLS_PER_MINUTE, default_value_t = 0)]
    pub urls_per_minute: u32,
    /// Require end users' tokens, as with `spec.uploads.auth.jwt` (`--jwt-issuer` and
    /// `--jwt-audiences` at least), to try JWT mode against your identity provider.
    #[command(flatten)]
    pub jwt: config::JwtConfig,
}

/// The origins a browser page of this dev setup can have (the page is served on `listen`).
fn origins(args: &DevArgs, listen: SocketAddr) -> Vec<String> {
    let port = listen.port();
    let mut o = vec![
        format!("http://{listen}"),
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{port}"),
    ];
    o.extend(args.allowed_origins.iter().cloned());
    o.sort();
    o.dedup();
    o
}

/// Serves the embedded store until the process ends; returns the address it listens on.
async fn serve_store(args: &DevArgs, page: SocketAddr) -> anyhow::Result<SocketAddr> {
    let bucket_dir = args.data_dir.join(&args.bucket);
    std::fs::create_dir_all(&bucket_dir)
        .with_context(|| format!("cannot create {}", bucket_dir.display()))?;
    // Copies only into the verified area, like the upload role's policy on S3.
    let copy_into = args
        .verify
        .then(|| crate::config::verified_prefix(&args.key_prefix));
    let store = crate::dev_store::DevStore::new(&args.data_dir, copy_into)?;
    let mut builder = s3s::service::S3ServiceBuilder::new(store);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(
        DEV_ACCESS_KEY,
        DEV_SECRET_KEY,
    ));
    let service = builder.build();
    let service = tower::ServiceBuilder::new()
        .map_err(|e: s3s::HttpError| std::io::Error::other(format!("{e:?}")))
        .service(service);
    let service = axum::error_handling::HandleError::new(service, |e: std::io::Error| async move {
        (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    });
    let allowed: Vec<HeaderValue> = origins(args, page)
        .iter()
        .filter_map(|o| o.parse().ok())
        .collect();
    // s3s-fs answers no CORS itself; the browser needs it in front, as a real bucket's rules would.
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::PUT, Method::POST, Method::GET, Method::HEAD])
        .allow_headers(Any)
        .expose_headers([header::ETAG])
        .max_age(std::time::Duration::from_secs(600));
    let router = Router::new()
        .fallback_service(service)
        .layer(axum::middleware::from_fn(
            crate::dev_store::post_form_tagging,
        ))
        .layer(cors);
    let listener = tokio::net::TcpListener::bind(args.s3_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--s3-listen)", args.s3_listen))?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "Dev store stopped");
        }
    });
    Ok(address)
}

/// Runs dev mode until Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    // Both listeners are bound first, so port 0 works (the addresses are printed and logged).
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let listen = listener.local_addr()?;
    let store_address = serve_store(&args, listen).await?;
    let endpoint = format!("http://{store_address}");
    let config = Config {
        bucket: args.bucket.clone(),
        region: Some("us-east-1".into()),
        listen,
        key_prefix: args.key_prefix.clone(),
        allowed_content_types: args.allowed_content_types.clone(),
        max_size_bytes: args.max_size_bytes,
        expires_seconds: args.expires_seconds,
        endpoint_url: Some(endpoint.clone()),
        path_style: true,
        verify: args.verify,
        verify_quarantine: args.verify_quarantine,
        require_owner: args.require_owner,
        urls_per_minute: args.urls_per_minute,
        jwt: args.jwt.clone(),
        ..Config::default()
    }
    .validate(None)?;
    let creds = Credentials {
        access_key_id: DEV_ACCESS_KEY.into(),
        secret_access_key: DEV_SECRET_KEY.into(),
        session_token: None,
        expiry: None,
    };
    let s3 = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            DEV_ACCESS_KEY,
            DEV_SECRET_KEY,
            None,
            None,
            "dev",
        ))
        .endpoint_url(&endpoint)
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .build();
    let store = Arc::new(S3Store::new(
        move || s3.clone(),
        config.bucket.clone(),
        config.s3_backend,
    ));
    let presigner = Presigner::new(
        &config.bucket,
        "us-east-1",
        Endpoint::parse(&endpoint, true).map_err(anyhow::Error::msg)?,
    );
    let state = AppState::new(
        config.clone(),
        presigner,
        Arc::new(StaticCredentials::new(creds)),
        store.clone(),
    );
    let page = Html(dashboard_page(
        &config.allowed_content_types,
        config.max_size_bytes,
        &config.key_prefix,
    ));
    let demo = Demo {
        store,
        key_prefix: config.key_prefix.clone(),
    };
    let router = app(state)
        .merge(
            Router::new()
                .route("/", get(move || async move { page }))
                .route("/plain", get(|| async { Html(PLAIN_PAGE) }))
                .route("/upload.js", get(|| async { asset(JS, UPLOAD_JS) }))
                .route(
                    "/dashboard.bundle.js",
                    get(|| async { asset(JS, DASHBOARD_JS) }),
                )
                .route(
                    "/dashboard.bundle.css",
                    get(|| async { asset("text/css; charset=utf-8", DASHBOARD_CSS) }),
                )
                .route("/dev/objects", get(list_objects))
                .route("/dev/objects/{*key}", get(get_object))
                .with_state(demo),
        )
        .layer(axum::middleware::from_fn(reason_phrase));
    let data = std::fs::canonicalize(&args.data_dir).unwrap_or(args.data_dir.clone());
    println!(
        "\nuploadbucket dev mode\n  upload page:  http://{listen}/ (the Uppy Dashboard; without a framework: /plain)\n  signer API:   http://{listen}/uploads\n  local S3:     {endpoint} (bucket {bucket})\n  files land in {dir}\n  allowed: {types}, up to {max} bytes\n  verification: {verify}\nPress Ctrl-C to stop.\n",
        listen = listen,
        bucket = args.bucket,
        dir = data.join(&args.bucket).display(),
        types = config.allowed_content_types.join(", "),
        max = config.max_size_bytes,
        verify = if config.verify {
            "on (uploads are tagged pending until verified)"
        } else {
            "off (--verify turns it on)"
        },
    );
    info!(address = %listen, store = %endpoint, "Dev mode running");
    axum::serve(listener, router)
        .with_graceful_shutdown(crate::server::shutdown())
        .await
        .context("server failed")
}

const JS: &str = "text/javascript; charset=utf-8";

/// A page's script or style sheet. `no-cache`: a rebuilt binary's bundle is used at once.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// The Dashboard page with this dev mode's rules in it (its note says what is allowed; the
/// signer, not the page, refuses the rest).
fn dashboard_page(allowed: &[String], max_size_bytes: u64, key_prefix: &str) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    PAGE.replace("{{ALLOWED_TYPES}}", &escape(&allowed.join(", ")))
        .replace("{{MAX_SIZE}}", &max_size_bytes.to_string())
        .replace(
            "{{INCOMING}}",
            &escape(&crate::config::incoming_prefix(key_prefix)),
        )
}

/// What the demo pages' routes need: the dev store and where uploads go in it.
#[derive(Clone)]
struct Demo {
    store: Arc<S3Store>,
    key_prefix: String,
}

/// Uppy's S3 client (its Companion mode, which the signer's `/s3/*` routes serve) shows only
/// a failed call's status text. In dev mode the signer's error message is also the HTTP/1.1
/// reason phrase of `/s3/*` refusals, so the Dashboard shows it next to the file
/// ("contentType \"text/html\" is not allowed; ...") instead of "Bad Request".
async fn reason_phrase(req: Request, next: Next) -> Response {
    let uppy = req.uri().path().starts_with("/s3/");
    let response = next.run(req).await;
    let status = response.status();
    if !uppy || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // The signer's error bodies are a few hundred bytes.
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(reason_text));
    if let Some(phrase) = message.and_then(|m| hyper::ext::ReasonPhrase::try_from(m).ok()) {
        parts.extensions.insert(phrase);
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// `message` as a reason phrase may carry it: visible ASCII and spaces, at most 300 bytes.
fn reason_text(message: &str) -> String {
    message
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(300)
        .collect()
}

/// Whether the demo pages may ask for `key`: under the upload prefix, at most 1024 bytes of
/// visible ASCII, no empty, `.` or `..` segment, no backslash.
fn demo_key(key: &str, prefix: &str) -> bool {
    key.len() <= 1024
        && key.starts_with(prefix)
        && key.len() > prefix.len()
        && key.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
        && key.split('/').all(|s| !matches!(s, "" | "." | ".."))
}

/// `GET /dev/objects/<key>`, for the demo pages only: an object of the dev store with its
/// stored content type; images inline (the Dashboard's links and thumbnails), everything
/// else, SVG included, as an attachment, and a sandbox so nothing stored runs on this origin.
async fn get_object(
    State(demo): State<Demo>,
    Path(key): Path<String>,
) -> Result<Response, AppError> {
    if !demo_key(&key, &demo.key_prefix) {
        return Err(AppError::bad_request(
            ErrorCode::InvalidKey,
            format!(
                "not a key of an upload (under {:?}, no empty, . or .. segments)",
                demo.key_prefix
            ),
        ));
    }
    let out = match demo
        .store
        .client()
        .get_object()
        .bucket(&demo.store.bucket)
        .key(&key)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
            return Err(AppError::with_status(
                StatusCode::NOT_FOUND,
                ErrorCode::NoSuchKey,
                format!("nothing is stored at {key:?}"),
            ));
        }
        Err(e) => {
            return Err(AppError::internal(
                "dev store read",
                aws_sdk_s3::error::DisplayErrorContext(e),
            ));
        }
    };
    let content_type = out
        .content_type()
        .filter(|t| HeaderValue::from_str(t).is_ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let inline = media.starts_with("image/") && media != "image/svg+xml";
    let name = key.rsplit('/').next().unwrap_or("upload");
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'",
        )
        .header(header::CACHE_CONTROL, "no-store");
    if let Some(length) = out.content_length().filter(|n| *n >= 0) {
        response = response.header(header::CONTENT_LENGTH, length);
    }
    if !inline {
        // `name` is the last segment of a checked key (visible ASCII); no quote or backslash
        // is left to end the quoted name early.
        response = response.header(
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"{}\"",
                name.replace(['\\', '"'], "_")
            ),
        );
    }
    response
        .body(Body::new(out.body.into_inner()))
        .map_err(|e| AppError::internal("dev store read", e))
}

/// What is in the dev bucket, newest first, with each object's verification state tag.
async fn list_objects(State(demo): State<Demo>) -> Result<impl IntoResponse, AppError> {
    let store = demo.store;
    let out = store
        .client()
        .list_objects_v2()
        .bucket(&store.bucket)
        .send()
        .await
        .map_err(|e| {
            AppError::internal(
                "dev store listing",
                aws_sdk_s3::error::DisplayErrorContext(e),
            )
        })?;
    let mut objects: Vec<(String, i64, String)> = out
        .contents()
        .iter()
        .map(|o| {
            (
                o.key().unwrap_or_default().to_owned(),
                o.size().unwrap_or_default(),
                o.last_modified().map(|t| t.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    objects.sort_by(|a, b| b.2.cmp(&a.2));
    let mut list = Vec::with_capacity(objects.len());
    for (key, size, modified) in objects {
        let state = store
            .client()
            .get_object_tagging()
            .bucket(&store.bucket)
            .key(&key)
            .send()
            .await
            .ok()
            .and_then(|t| {
                t.tag_set()
                    .iter()
                    .find(|t| t.key() == crate::config::STATE_TAG)
                    .map(|t| t.value().to_owned())
            });
        list.push(json!({"key": key, "size": size, "lastModified": modified, "state": state}));
    }
    Ok(axum::Json(json!({"bucket": store.bucket, "objects": list})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_keys_are_upload_keys_only() {
        for ok in [
            "uploads/a.jpg",
            "uploads/incoming/alice/0f3a.png",
            "uploads/x",
        ] {
            assert!(demo_key(ok, "uploads/"), "{ok}");
        }
        for bad in [
            "",
            "uploads/",
            "other/a.jpg",
            "uploads/../a.jpg",
            "uploads/./a.jpg",
            "uploads//a.jpg",
            "uploads/a/",
            "uploads/a\\b.jpg",
            "uploads/a b.jpg",
            "uploads/caf\u{e9}.jpg",
            "uploads/a\n.jpg",
        ] {
            assert!(!demo_key(bad, "uploads/"), "{bad:?}");
        }
        assert!(!demo_key(
            &format!("uploads/{}", "a".repeat(1020)),
            "uploads/"
        ));
    }

    #[test]
    fn reason_phrases_are_what_http_1_allows() {
        let message = "contentType \"text/html\" is not allowed; allowed: image/*";
        assert_eq!(reason_text(message), message);
        let odd = reason_text("caf\u{e9}\r\nX: y\t");
        assert_eq!(odd, "caf???X: y?");
        assert!(hyper::ext::ReasonPhrase::try_from(odd).is_ok());
        assert_eq!(reason_text(&"a".repeat(400)).len(), 300);
    }

    #[test]
    fn the_page_carries_the_rules_escaped() {
        let page = dashboard_page(&["image/*".into(), "text/plain".into()], 1234, "up\"loads/");
        assert!(page.contains("data-allowed-types=\"image/*, text/plain\""));
        assert!(page.contains("data-max-size=\"1234\""));
        assert!(page.contains("data-incoming=\"up&quot;loads/incoming/\""));
        assert!(!page.contains("{{"));
    }
}
