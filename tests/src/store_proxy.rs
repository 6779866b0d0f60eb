//! An HTTP proxy in front of the S3 store (and its IAM) that misbehaves on purpose, as a
//! loaded or partly broken AWS does: it answers the requests above a rate with throttling
//! errors (as AWS's per-account request rates do), and holds the requests of chosen buckets and roles without ever answering in
//! time. Everything else goes through unchanged, `Host` included, so SigV4 signatures made
//! for the proxy's address hold at the store behind it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// What the proxy does to the requests it sees.
#[derive(Clone, Debug, Default)]
pub struct Misbehaviour {
    /// Requests admitted per second (a token bucket holding one second's worth); the rest
    /// are answered as throttled: S3's `503 SlowDown`, or IAM's `Throttling` for a
    /// query-protocol request. 0: no limit.
    pub admit_per_second: f64,
    /// Requests whose path or body contains this are held for [`Misbehaviour::hold`], then
    /// answered `503 SlowDown` (a store that hangs on some buckets and roles).
    pub hold_marker: Option<String>,
    pub hold: Duration,
    /// Requests whose path or body contains this are refused at once with `403
    /// AccessDenied` (an identity without the permission).
    pub deny_marker: Option<String>,
    /// Buckets whose name contains this belong to another account: HEAD answers 403 and
    /// CreateBucket `409 BucketAlreadyExists`.
    pub taken_marker: Option<String>,
}

/// What the proxy has done so far.
#[derive(Debug, Default)]
pub struct Tally {
    /// Set by [`StoreProxy::calm`]: from then on every request goes through.
    pub calm: std::sync::atomic::AtomicBool,
    pub requests: AtomicU64,
    pub throttled: AtomicU64,
    pub held: AtomicU64,
    pub refused: AtomicU64,
    pub forwarded: AtomicU64,
}

struct Shared {
    /// The token bucket: tokens left, and when it was last filled.
    bucket: std::sync::Mutex<(f64, std::time::Instant)>,
    target: String,
    rules: Misbehaviour,
    tally: Arc<Tally>,
    client: reqwest::Client,
}

/// The running proxy; stops when dropped.
pub struct StoreProxy {
    /// `http://127.0.0.1:<port>`: give this to the operator as its S3 and IAM endpoint.
    pub endpoint: String,
    pub tally: Arc<Tally>,
    task: tokio::task::JoinHandle<()>,
}

impl StoreProxy {
    /// A proxy to `target` (`http://host:port`) misbehaving as `rules` say.
    pub async fn start(target: &str, rules: Misbehaviour) -> StoreProxy {
        let tally = Arc::new(Tally::default());
        let shared = Arc::new(Shared {
            bucket: std::sync::Mutex::new((rules.admit_per_second, std::time::Instant::now())),
            target: target.trim_end_matches('/').to_owned(),
            rules,
            tally: tally.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
        });
        let (listener, endpoint) = crate::local_listener().await;
        let app = axum::Router::new().fallback(relay).with_state(shared);
        let task = crate::serve(listener, app);
        StoreProxy {
            endpoint,
            tally,
            task,
        }
    }

    /// Stops misbehaving: every request from now on goes through.
    pub fn calm(&self) {
        self.tally.calm.store(true, Ordering::SeqCst);
    }

    pub fn throttled(&self) -> u64 {
        self.tally.throttled.load(Ordering::SeqCst)
    }

    pub fn held(&self) -> u64 {
        self.tally.held.load(Ordering::SeqCst)
    }

    pub fn refused(&self) -> u64 {
        self.tally.refused.load(Ordering::SeqCst)
    }

    pub fn forwarded(&self) -> u64 {
        self.tally.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for StoreProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    /// Takes a token, if the rate allows one now.
    fn admit(&self) -> bool {
        let rate = self.rules.admit_per_second;
        if rate <= 0.0 {
            return true;
        }
        let mut bucket = self.bucket.lock().unwrap();
        let now = std::time::Instant::now();
        bucket.0 = (bucket.0 + now.duration_since(bucket.1).as_secs_f64() * rate).min(rate);
        bucket.1 = now;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A query-protocol request (IAM, STS): a form-encoded POST naming its `Action`.
fn is_query_protocol(body: &[u8]) -> bool {
    body.starts_with(b"Action=")
}

/// The throttling answer the real service gives: S3's 503 SlowDown, IAM's 400 Throttling.
fn throttled(body: &[u8]) -> Response {
    if is_query_protocol(body) {
        (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/xml")],
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>\
             <Message>Rate exceeded</Message></Error><RequestId>proxy</RequestId></ErrorResponse>",
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/xml")],
            "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>\
             <RequestId>proxy</RequestId></Error>",
        )
            .into_response()
    }
}

/// An error answer as the service gives it: S3's `<Error>`, or IAM's `<ErrorResponse>` for a
/// query-protocol request.
fn refusal(body: &[u8], status: StatusCode, code: &str) -> Response {
    let xml = if is_query_protocol(body) {
        format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>refused by the \
             test proxy</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"
        )
    } else {
        format!(
            "<Error><Code>{code}</Code><Message>refused by the test proxy</Message>\
             <RequestId>proxy</RequestId></Error>"
        )
    };
    (status, [(header::CONTENT_TYPE, "application/xml")], xml).into_response()
}

/// Headers that belong to one hop, not to the message: never relayed. (`Content-Length` is
/// relayed with requests, where SigV4 signs it, and set anew on answers.)
fn hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}

async fn relay(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = to_bytes(body, 64 << 20).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    s.tally.requests.fetch_add(1, Ordering::SeqCst);
    let calm = s.tally.calm.load(Ordering::SeqCst);
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Some(marker) = &s.rules.hold_marker
        && !calm
        && (path.contains(marker.as_str())
            || std::str::from_utf8(&body).is_ok_and(|b| b.contains(marker.as_str())))
    {
        s.tally.held.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(s.rules.hold).await;
        return throttled(&body);
    }
    let marked = |m: &Option<String>| {
        m.as_deref().is_some_and(|m| {
            path.contains(m) || std::str::from_utf8(&body).is_ok_and(|b| b.contains(m))
        })
    };
    if !calm && marked(&s.rules.deny_marker) {
        s.tally.refused.fetch_add(1, Ordering::SeqCst);
        return refusal(&body, StatusCode::FORBIDDEN, "AccessDenied");
    }
    if !calm && marked(&s.rules.taken_marker) {
        s.tally.refused.fetch_add(1, Ordering::SeqCst);
        // CreateBucket: a PUT of the bucket itself (path style: one segment, no query).
        let create = parts.method == axum::http::Method::PUT
            && parts.uri.query().is_none()
            && parts.uri.path().trim_matches('/').split('/').count() == 1;
        return if create {
            refusal(&body, StatusCode::CONFLICT, "BucketAlreadyExists")
        } else {
            refusal(&body, StatusCode::FORBIDDEN, "AccessDenied")
        };
    }
    if !calm && !s.admit() {
        s.tally.throttled.fetch_add(1, Ordering::SeqCst);
        return throttled(&body);
    }
    let mut out = s
        .client
        .request(parts.method, format!("{}{path}", s.target))
        .body(Bytes::clone(&body));
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            out = out.header(name, value);
        }
    }
    let answer = match out.send().await {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    s.tally.forwarded.fetch_add(1, Ordering::SeqCst);
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) && name != header::CONTENT_LENGTH {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response
        .body(Body::from(bytes))
        .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
}
