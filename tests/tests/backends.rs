//! The example app backends in front of a real signer on Ceph RGW, each held to the same
//! checks: examples/backend-python/app.py (python3), examples/backend-go (built once, offline,
//! with `go build`), and examples/web/server.js (node; its path tricks, dev-mode and browser
//! runs are in browser.rs), the backend the other two follow. Through each, as a browser
//! would:
//! - a PUT URL, a POST form and a multipart upload land in RGW with exactly the bytes sent,
//!   and verify copies the PUT one; every route of the backend's table is used;
//! - every call is made as the session's user: an `owner` the browser names (in the body or
//!   the query) is replaced, and another session cannot verify or continue the upload;
//! - the signer's refusals reach the browser as the signer wrote them: status and JSON
//!   (word for word), `Retry-After`, `WWW-Authenticate`; an unreachable signer is a 502;
//! - paths outside the table (encoded or dot segments) and bodies over 100 KiB are refused
//!   by the backend itself;
//! - with `TOKEN_AUTH=1`, the browser's token is forwarded and no session is made.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use uploadbucket_tests::browser::{repo, tempdir};
use uploadbucket_tests::oidc::{Issuer, SigningKey};
use uploadbucket_tests::{
    Child, S3Server, example_backend, example_web_missing, object_bytes, plain_bucket, post_signed,
    put_signed, s3_server, start_sidecar,
};

/// A small JPEG: its signature and JFIF header, then the end-of-image marker.
const JPEG: &[u8] = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9";

/// The signer as the webhook sets it up on RGW with verification on, and at most one
/// multipart upload in progress per owner (so there is a 429 to pass on).
const SIGNER_ENV: [(&str, &str); 5] = [
    ("UPLOADBUCKET_ALLOWED_CONTENT_TYPES", "image/jpeg"),
    ("UPLOADBUCKET_MAX_SIZE_BYTES", "1048576"),
    ("UPLOADBUCKET_VERIFY", "true"),
    ("UPLOADBUCKET_S3_BACKEND", "rgw"),
    ("UPLOADBUCKET_MAX_OPEN_MULTIPART", "1"),
];

/// Requests no backend may forward, sent as written (an HTTP client would resolve the dot
/// segments first): the signer's other routes reached through encoded or dot segments, a
/// dot segment as an upload id, a method outside the table.
const OUTSIDE_THE_TABLE: [(&str, &str); 11] = [
    ("POST", "/api/uploads/%2e%2e/s3/multipart"),
    ("POST", "/api/uploads/..%2fs3%2fmultipart"),
    ("GET", "/api/uploads/%2e%2e/metrics"),
    ("GET", "/api/uploads/..%2fmetrics"),
    ("GET", "/api/uploads/../metrics"),
    ("GET", "/api/uploads/multipart/%2e%2e"),
    ("GET", "/api/uploads/multipart/.."),
    ("GET", "/api/uploads/multipart/./1?key=uploads/x.jpg"),
    ("DELETE", "/api/uploads/multipart/%2e%2e%2f%2e%2e%2fmetrics"),
    ("GET", "/api/uploads/s3/params?type=image/jpeg"),
    ("PUT", "/api/uploads"),
];

/// How to start one of the example backends.
struct Backend {
    name: &'static str,
    program: PathBuf,
    args: Vec<PathBuf>,
    /// Whether its own refusals are JSON with a code (server.js leaves an oversize body to
    /// Express, which answers with an HTML page).
    json_refusals: bool,
}

impl Backend {
    fn start(&self, signer: &str, env: &[(&str, &str)]) -> (Child, String) {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        example_backend(cmd, signer, env)
    }
}

#[tokio::test]
async fn the_python_backend_forwards_as_server_js_does() {
    let test = "the_python_backend_forwards_as_server_js_does";
    let Some(server) = s3_server(test) else {
        return;
    };
    let Some(python) = uploadbucket_tests::python3(test) else {
        return;
    };
    let backend = Backend {
        name: "app.py",
        program: python,
        args: vec![repo().join("examples/backend-python/app.py")],
        json_refusals: true,
    };
    holds_to_the_rules(&server, &backend).await;
}

#[tokio::test]
async fn the_go_backend_forwards_as_server_js_does() {
    let test = "the_go_backend_forwards_as_server_js_does";
    let Some(server) = s3_server(test) else {
        return;
    };
    let Some(go) = uploadbucket_tests::go(test) else {
        return;
    };
    let dir = tempdir();
    let backend = Backend {
        name: "backend-go",
        program: go_build(&go, &dir),
        args: Vec::new(),
        json_refusals: true,
    };
    holds_to_the_rules(&server, &backend).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn server_js_holds_to_the_same_rules() {
    let test = "server_js_holds_to_the_same_rules";
    let Some(server) = s3_server(test) else {
        return;
    };
    if example_web_missing(test) {
        return;
    }
    let backend = Backend {
        name: "server.js",
        program: "node".into(),
        args: vec![repo().join("examples/web/server.js")],
        json_refusals: false,
    };
    holds_to_the_rules(&server, &backend).await;
}

/// examples/backend-go built into `dir` with the local toolchain and no module proxy: the
/// standard library is all it needs.
fn go_build(go: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("uploadbucket-backend");
    let started = std::time::Instant::now();
    let build = Command::new(go)
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(repo().join("examples/backend-go"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .output()
        .expect("run go build");
    assert!(
        build.status.success(),
        "go build of examples/backend-go: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    eprintln!("go build of examples/backend-go: {:?}", started.elapsed());
    out
}

/// The answer's status and JSON (its text as a JSON string when it is not JSON).
async fn answer(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("the answer's body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Sends `req`; the answer's status and JSON.
async fn call(req: reqwest::RequestBuilder) -> (u16, Value) {
    answer(req.send().await.expect("the backend answers")).await
}

/// Asserts a refusal: this status and this `error.code`.
#[track_caller]
fn assert_refused(got: &(u16, Value), status: u16, code: &str, what: &str) {
    assert_eq!(
        (got.0, got.1["error"]["code"].as_str()),
        (status, Some(code)),
        "{what}: {}",
        got.1
    );
}

/// `header` of the answer, or "".
fn header(resp: &reqwest::Response, header: &str) -> String {
    resp.headers()
        .get(header)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// `method target` sent to `app` exactly as written, over HTTP/1.0 (an answer without
/// chunking); its status and body.
async fn raw_request(app: &str, method: &str, target: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = app.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request =
        format!("{method} {target} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).await.unwrap();
    let got = String::from_utf8_lossy(&got);
    let (head, body) = got.split_once("\r\n\r\n").unwrap_or((&got, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {target}: not an HTTP answer: {got}"));
    (status, body.to_owned())
}

/// The checks of the module's header, on `backend` in front of a signer for a new bucket.
async fn holds_to_the_rules(server: &S3Server, backend: &Backend) {
    let name = backend.name;
    let (bucket, raw) = plain_bucket(server, "ub-backend").await;
    let (_signer, signer) = start_sidecar(server, &bucket, &SIGNER_ENV).await;
    let (_app, app) = backend.start(&signer, &[]);
    let uploads = format!("{app}/api/uploads");
    // To RGW and to the signer itself; the browsers keep their session cookies.
    let http = reqwest::Client::new();
    let browser = || {
        reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap()
    };
    let (alice, mallory) = (browser(), browser());
    let stored = |key: String| {
        let (raw, bucket) = (&raw, &bucket);
        async move { object_bytes(raw, bucket, &key).await }
    };

    // A PUT URL, asked for naming Bob: the browser gets a session (an HttpOnly, SameSite
    // cookie) and the key is in the session's folder, not Bob's.
    let resp = alice
        .post(&uploads)
        .json(&json!({"filename": "cat.jpg", "contentType": "image/jpeg", "size": JPEG.len(), "owner": "bob"}))
        .send()
        .await
        .unwrap();
    let cookie = header(&resp, "set-cookie");
    let (status, signed) = answer(resp).await;
    assert_eq!(
        (status, &signed["method"]),
        (201, &json!("PUT")),
        "{name}: {signed}"
    );
    assert!(
        cookie.starts_with("uid=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{name}: the session cookie: {cookie:?}"
    );
    let key = signed["key"].as_str().unwrap().to_owned();
    let folder = key
        .strip_prefix("uploads/incoming/")
        .and_then(|k| k.split_once('/'))
        .map(|(owner, _)| owner.to_owned())
        .unwrap_or_else(|| panic!("{name}: a key in an owner's folder: {key}"));
    assert_ne!(folder, "bob", "{name}: the browser's owner is replaced");
    assert!(
        folder.len() == 32 && folder.bytes().all(|b| b.is_ascii_hexdigit()),
        "{name}: the session's id as the folder: {key}"
    );
    let mine = format!("uploads/incoming/{folder}/");
    let (status, text) = put_signed(&http, &signed, JPEG.to_vec()).await;
    assert_eq!(status, 200, "{name}: the PUT: {text}");
    assert_eq!(
        stored(key.clone()).await.as_deref(),
        Some(JPEG),
        "{name}: {key}"
    );

    // Verify: another browser naming Alice's folder is refused (the backend names its own
    // user); Alice's copies the bytes to the verified area.
    let verify = format!("{uploads}/verify");
    let got = call(
        mallory
            .post(&verify)
            .json(&json!({"key": key, "owner": folder})),
    )
    .await;
    assert_refused(
        &got,
        403,
        "OwnerMismatch",
        &format!("{name}: another session's verify"),
    );
    let (status, verified) = call(alice.post(&verify).json(&json!({"key": key}))).await;
    let verified_key = key.replacen("/incoming/", "/verified/", 1);
    assert_eq!(
        (status, &verified["key"]),
        (200, &json!(verified_key)),
        "{name}: {verified}"
    );
    assert_eq!(stored(verified_key).await.as_deref(), Some(JPEG), "{name}");

    // A POST form, naming Bob again.
    let (status, form) = call(
        alice
            .post(&uploads)
            .json(&json!({"contentType": "image/jpeg", "method": "POST", "owner": "bob"})),
    )
    .await;
    assert_eq!(
        (status, &form["method"]),
        (201, &json!("POST")),
        "{name}: {form}"
    );
    let form_key = form["key"].as_str().unwrap().to_owned();
    assert!(form_key.starts_with(&mine), "{name}: {form_key}");
    let (status, text) = post_signed(&http, &form, JPEG.to_vec()).await;
    assert_eq!(status, 204, "{name}: the form's POST: {text}");
    assert_eq!(stored(form_key).await.as_deref(), Some(JPEG), "{name}");

    // A multipart upload: created naming Bob (body), a part URL naming Bob (query) and one
    // for Mallory naming Alice (refused), the part, the completion.
    let multipart = format!("{uploads}/multipart");
    let (status, mp) = call(
        alice
            .post(&multipart)
            .json(&json!({"type": "image/jpeg", "owner": "bob"})),
    )
    .await;
    assert_eq!(status, 200, "{name}: {mp}");
    let (mkey, id) = (
        mp["key"].as_str().unwrap(),
        mp["uploadId"].as_str().unwrap(),
    );
    assert!(mkey.starts_with(&mine), "{name}: {mkey}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b)),
        "RGW's upload id {id:?} has characters the backends' table refuses"
    );
    let size = JPEG.len().to_string();
    let part = format!("{multipart}/{id}/1");
    let got = call(
        mallory
            .get(&part)
            .query(&[("key", mkey), ("size", &size), ("owner", &folder)]),
    )
    .await;
    assert_refused(
        &got,
        403,
        "OwnerMismatch",
        &format!("{name}: another session's part"),
    );
    let (status, signed_part) =
        call(
            alice
                .get(&part)
                .query(&[("key", mkey), ("size", &size), ("owner", "bob")]),
        )
        .await;
    assert_eq!(status, 200, "{name}: {signed_part}");
    let put = http
        .put(signed_part["url"].as_str().unwrap())
        .body(JPEG.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 200, "{name}: the part's PUT");
    let etag = header(&put, "etag");
    let (status, done) = call(
        alice
            .post(format!("{multipart}/{id}/complete"))
            .query(&[("key", mkey)])
            .json(&json!({"parts": [{"PartNumber": 1, "ETag": etag}]})),
    )
    .await;
    assert_eq!(status, 200, "{name}: the completion: {done}");
    assert_eq!(
        stored(mkey.to_owned()).await.as_deref(),
        Some(JPEG),
        "{name}"
    );

    // A second one: a batch of part URLs, its (empty) part list; a third refused by the quota
    // with the signer's Retry-After; the second aborted.
    let (status, second) = call(alice.post(&multipart).json(&json!({"type": "image/jpeg"}))).await;
    assert_eq!(status, 200, "{name}: {second}");
    let (skey, sid) = (
        second["key"].as_str().unwrap(),
        second["uploadId"].as_str().unwrap(),
    );
    let (status, batch) = call(alice.get(format!("{multipart}/{sid}/batch")).query(&[
        ("key", skey),
        ("partNumbers", "1,2"),
        ("sizes", "1000,10"),
    ]))
    .await;
    assert_eq!(status, 200, "{name}: {batch}");
    assert!(
        batch["presignedUrls"]["1"].is_string() && batch["presignedUrls"]["2"].is_string(),
        "{name}: {batch}"
    );
    let listed = call(
        alice
            .get(format!("{multipart}/{sid}"))
            .query(&[("key", skey)]),
    )
    .await;
    assert_eq!(listed, (200, json!([])), "{name}: the part list");
    let resp = alice
        .post(&multipart)
        .json(&json!({"type": "image/jpeg"}))
        .send()
        .await
        .unwrap();
    let retry_after = header(&resp, "retry-after");
    assert_refused(&answer(resp).await, 429, "TooManyOpenUploads", name);
    assert_eq!(retry_after, "60", "{name}: the signer's Retry-After");
    let aborted = call(
        alice
            .delete(format!("{multipart}/{sid}"))
            .query(&[("key", skey)]),
    )
    .await;
    assert_eq!(aborted, (200, json!({})), "{name}: the abort");

    // A refusal of the signer's reaches the browser word for word.
    let refused = call(
        alice
            .post(&uploads)
            .json(&json!({"contentType": "text/html", "size": 4})),
    )
    .await;
    assert_refused(&refused, 400, "ContentTypeNotAllowed", name);
    let direct = call(
        http.post(format!("{signer}/uploads"))
            .json(&json!({"contentType": "text/html", "size": 4, "owner": folder})),
    )
    .await;
    assert_eq!(refused, direct, "{name}: the signer's own answer");

    // Paths outside the table never reach the signer.
    for (method, target) in OUTSIDE_THE_TABLE {
        let (status, body) = raw_request(&app, method, target).await;
        let code = serde_json::from_str::<Value>(&body).ok();
        assert_eq!(
            (
                status,
                code.as_ref().and_then(|v| v["error"]["code"].as_str())
            ),
            (404, Some("NotFound")),
            "{name}: {method} {target}: {body}"
        );
    }

    // Bodies: 90 KB of JSON (mostly spaces) is taken; 200 KB is refused by the backend.
    let padded = |spaces: usize| {
        alice
            .post(&uploads)
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"contentType": "image/jpeg", "size": 4{}}}"#,
                " ".repeat(spaces)
            ))
    };
    let got = call(padded(90_000)).await;
    assert_eq!(got.0, 201, "{name}: 90 KB: {}", got.1);
    let got = call(padded(200_000)).await;
    if backend.json_refusals {
        assert_refused(&got, 413, "BodyTooLarge", name);
    } else {
        assert!(
            got.0 == 413 && got.1.as_str().is_some_and(|t| t.contains("too large")),
            "{name}: Express's refusal: {got:?}"
        );
    }

    // No signer behind it: a 502 the page can explain.
    let (_nobody, nobody) = uploadbucket_tests::refusing_port();
    let (_lone, lone) = backend.start(&format!("http://127.0.0.1:{nobody}"), &[]);
    let got = call(
        reqwest::Client::new()
            .post(format!("{lone}/api/uploads"))
            .json(&json!({"contentType": "image/jpeg", "size": 4})),
    )
    .await;
    assert_refused(&got, 502, "SignerUnavailable", name);

    tokens_are_forwarded(server, backend, &bucket, &raw).await;
}

/// With the signer requiring tokens and the backend in token mode (`TOKEN_AUTH=1`): the
/// user's token is forwarded, the upload lands in its user's folder with no session made; a
/// token naming another owner is refused, and a call without one gets the signer's 401 and
/// its `WWW-Authenticate`.
async fn tokens_are_forwarded(
    server: &S3Server,
    backend: &Backend,
    bucket: &str,
    raw: &aws_sdk_s3::Client,
) {
    let name = backend.name;
    let key = SigningKey::generate("k1", jsonwebtoken::Algorithm::ES256);
    let issuer = Issuer::start(vec![key.clone()], 300).await;
    let mut env = SIGNER_ENV.to_vec();
    env.extend([
        ("UPLOADBUCKET_JWT_ISSUER", issuer.url.as_str()),
        ("UPLOADBUCKET_JWT_AUDIENCES", "api://uploads"),
    ]);
    let (_signer, signer) = start_sidecar(server, bucket, &env).await;
    let (_app, app) = backend.start(&signer, &[("TOKEN_AUTH", "1")]);
    let uploads = format!("{app}/api/uploads");
    let http = reqwest::Client::new();
    let ada = key.sign(&issuer.claims("ada", "api://uploads"));

    let resp = http
        .post(&uploads)
        .bearer_auth(&ada)
        .json(&json!({"contentType": "image/jpeg", "size": JPEG.len()}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&resp, "set-cookie"),
        "",
        "{name}: no session with tokens"
    );
    let (status, signed) = answer(resp).await;
    assert_eq!(status, 201, "{name}: {signed}");
    let ada_key = signed["key"].as_str().unwrap().to_owned();
    assert!(
        ada_key.starts_with("uploads/incoming/ada/"),
        "{name}: {ada_key}"
    );
    let (status, text) = put_signed(&http, &signed, JPEG.to_vec()).await;
    assert_eq!(status, 200, "{name}: {text}");
    assert_eq!(
        object_bytes(raw, bucket, &ada_key).await.as_deref(),
        Some(JPEG),
        "{name}"
    );

    let got = call(
        http.post(&uploads)
            .bearer_auth(&ada)
            .json(&json!({"contentType": "image/jpeg", "size": 4, "owner": "bob"})),
    )
    .await;
    assert_refused(&got, 403, "TokenOwnerMismatch", name);
    let resp = http
        .post(&uploads)
        .json(&json!({"contentType": "image/jpeg", "size": 4}))
        .send()
        .await
        .unwrap();
    let challenge = header(&resp, "www-authenticate");
    assert_refused(&answer(resp).await, 401, "MissingToken", name);
    assert!(challenge.starts_with("Bearer"), "{name}: {challenge:?}");
}
