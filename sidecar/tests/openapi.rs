//! The signer's OpenAPI document (docs/reference/signer.openapi.yaml) against the signer:
//! the routes it lists are exactly the routes the router serves (read from
//! sidecar/src/server.rs, and each one asked), its error codes are exactly `ErrorCode`'s, and
//! the oracle that holds every answer of the API tests to it (common::contract) catches what
//! it should. The answers themselves are checked in api.rs, through `call` and `send`; the
//! document is linted by openapi-spec-validator in tests/tests/docs.rs.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use uploadbucket_sidecar::app;
use uploadbucket_sidecar::error::ErrorCode;
use uploadbucket_sidecar::server::metrics_app;

use common::contract::{self, EXCLUDED, Exchange, contract};
use common::*;

// ---------------------------------------------------------------- the router's source

/// The text of `src`'s function `name` (its body, braces included), with comments removed.
fn function(src: &str, name: &str) -> String {
    let start = src
        .find(&format!("pub fn {name}("))
        .unwrap_or_else(|| panic!("no `pub fn {name}(` in server.rs"));
    let open = start + src[start..].find('{').unwrap();
    let mut depth = 0;
    let mut end = open;
    for (i, c) in src[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    end = open + i + 1;
                    break;
                }
            }
            _ => {}
        }
    }
    without_comments(&src[open..end])
}

/// `code` without `//` comments (outside string literals).
fn without_comments(code: &str) -> String {
    let mut out = String::new();
    let mut in_string = false;
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_string => {
                out.push(c);
                out.extend(chars.next());
            }
            '"' => {
                in_string = !in_string;
                out.push(c);
            }
            '/' if !in_string && chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The arguments of each call of `.method(` in `code`: (offset, the text between the
/// parentheses).
fn calls<'a>(code: &'a str, method: &str) -> Vec<(usize, &'a str)> {
    let needle = format!(".{method}(");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find(&needle) {
        let open = from + i + needle.len();
        let mut depth = 1;
        let mut close = open;
        for (j, c) in code[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + j;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push((from + i, &code[open..close]));
        from = close;
    }
    out
}

/// The string literal an argument list starts with, and the rest after its comma.
fn literal_and_rest(args: &str) -> (String, &str) {
    let args = args.trim_start();
    assert!(
        args.starts_with('"'),
        "a path that is not a literal: {args}"
    );
    let end = 1 + args[1..].find('"').unwrap();
    let rest = args[end + 1..]
        .trim_start()
        .trim_start_matches(',')
        .trim_start();
    (args[1..end].to_owned(), rest)
}

/// The HTTP methods a method router expression serves: `get(h).post(h)` -> GET, POST.
fn methods_of(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for m in contract::METHODS {
        let mut from = 0;
        while let Some(i) = expr[from..].find(&format!("{m}(")) {
            let at = from + i;
            let before = expr[..at].chars().next_back();
            if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                out.push(m.to_ascii_uppercase());
            }
            from = at + m.len();
        }
    }
    out
}

/// The variable a statement assigns, if any: `let mut x = ...`, `x = ...`.
fn assigned(statement: &str) -> Option<String> {
    let eq = statement.find(" = ")?;
    let name = statement[..eq].split_whitespace().last()?;
    Some(name.to_owned())
}

/// The (METHOD, path) pairs the router function `name` of server.rs serves: its `.route`s,
/// and for each `.nest(prefix, router)` the routes of that router under the prefix.
fn served_by(name: &str) -> BTreeSet<(String, String)> {
    let src = include_str!("../src/server.rs");
    let body = function(src, name);
    for unsupported in [".nest_service(", ".route_service(", ".merge(Router"] {
        assert!(
            !body.contains(unsupported),
            "server.rs's {name} uses {unsupported}: teach this test to read it"
        );
    }
    // Statements, each with the variable it builds (None: the router returned).
    let statements: Vec<&str> = body.split(';').collect();
    let mut routes: Vec<(Option<String>, String, String)> = Vec::new();
    let mut nests: Vec<(Option<String>, String, String)> = Vec::new();
    for statement in &statements {
        let owner = assigned(statement);
        for (_, args) in calls(statement, "route") {
            let (path, handlers) = literal_and_rest(args);
            let methods = methods_of(handlers);
            assert!(!methods.is_empty(), "no method in route {path}: {handlers}");
            for m in methods {
                routes.push((owner.clone(), m, path.clone()));
            }
        }
        for (_, args) in calls(statement, "nest") {
            let (prefix, router) = literal_and_rest(args);
            let var: String = router
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            nests.push((owner.clone(), prefix, var));
        }
    }
    let nested: BTreeSet<&String> = nests.iter().map(|(_, _, v)| v).collect();
    let mut out = BTreeSet::new();
    for (owner, method, path) in &routes {
        if !owner.as_ref().is_some_and(|o| nested.contains(o)) {
            out.insert((method.clone(), path.clone()));
        }
    }
    for (owner, prefix, var) in &nests {
        assert!(
            !owner.as_ref().is_some_and(|o| nested.contains(o)),
            "a nest inside a nested router: teach this test to read it"
        );
        let mut found = false;
        for (o, method, path) in &routes {
            if o.as_deref() == Some(var.as_str()) {
                found = true;
                let full = if path == "/" {
                    prefix.clone()
                } else {
                    format!("{prefix}{path}")
                };
                out.insert((method.clone(), full));
            }
        }
        assert!(found, "nest {prefix}: no routes of {var} found");
    }
    out
}

/// A path with its parameters' names dropped, so `{upload_id}` and `{uploadId}` compare equal.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { "{}" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

fn shapes(set: &BTreeSet<(String, String)>) -> BTreeMap<(String, String), String> {
    set.iter()
        .map(|(m, p)| ((m.clone(), shape(p)), p.clone()))
        .collect()
}

/// The document's operations, (METHOD, path); `metrics_listener`: only those the metrics-only
/// listener serves (the path's servers include it).
fn documented(metrics_listener: bool) -> BTreeSet<(String, String)> {
    let c = contract();
    c.operations()
        .into_iter()
        .filter(|(_, path, _)| {
            let servers = c.resolve(&c.doc["paths"][path.as_str()])["servers"].clone();
            let on_metrics = servers
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["url"] == "http://{metricsListen}");
            !metrics_listener || on_metrics
        })
        .map(|(m, p, _)| (m, p))
        .collect()
}

/// `path` with sample values for its parameters.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|s| match s {
            "{partNumber}" | "{part}" => "1",
            s if s.starts_with('{') => "u1",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `method path` through `router` (POSTs with an empty JSON object): the status and whether
/// it was the router's fallback (404 `NotFound`).
async fn ask(router: Router, method: &str, path: &str) -> (StatusCode, bool) {
    let mut req = Request::builder().method(method).uri(concrete(path));
    let body = if method == "POST" {
        req = req.header("content-type", "application/json");
        Body::from("{}")
    } else {
        Body::empty()
    };
    let resp = router.oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let code = serde_json::from_slice::<Value>(&bytes).unwrap_or_default()["error"]["code"].clone();
    (
        status,
        status == StatusCode::NOT_FOUND && code == "NotFound",
    )
}

#[test]
fn the_source_reader_reads_the_router() {
    let served = served_by("app");
    for expected in [
        ("POST", "/uploads"),
        ("GET", "/uploads"),
        ("DELETE", "/s3/multipart/{upload_id}"),
        ("POST", "/uploads/multipart"),
        ("GET", "/uploads/multipart/{upload_id}/{part}"),
        ("GET", "/healthz"),
    ] {
        assert!(
            served.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} not read from server.rs: {served:?}"
        );
    }
    assert_eq!(
        served_by("metrics_app"),
        BTreeSet::from([("GET".to_owned(), "/metrics".to_owned())])
    );
    assert_eq!(
        methods_of("get(multipart::list).delete(multipart::abort)"),
        ["GET", "DELETE"]
    );
    assert_eq!(methods_of("post(crate::verify::verify)"), ["POST"]);
    assert_eq!(
        assigned("\n    let mut upload_routes = Router::new()"),
        Some("upload_routes".into())
    );
}

/// The document lists exactly the routes `app` serves (less the deliberate exclusions), and
/// exactly the routes the metrics-only listener serves; each one is served, and a listed
/// path answers 405 to a method it does not list.
#[tokio::test]
async fn the_document_lists_every_route_served_and_nothing_else() {
    let source = served_by("app");
    let doc = documented(false);
    let excluded: BTreeSet<(String, String)> = EXCLUDED
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    for e in &excluded {
        assert!(
            source.contains(e),
            "{e:?} is excluded from the document but server.rs serves no such route: drop the exclusion"
        );
        assert!(
            !doc.contains(e),
            "{e:?} is excluded from the contract, yet the document lists it"
        );
    }
    let served = shapes(&source.difference(&excluded).cloned().collect());
    let listed = shapes(&doc);
    let missing = |from: &BTreeMap<(String, String), String>,
                   other: &BTreeMap<(String, String), String>| {
        from.iter()
            .filter(|(k, _)| !other.contains_key(k))
            .map(|((m, _), p)| format!("{m} {p}"))
            .collect::<Vec<_>>()
    };
    let unlisted = missing(&served, &listed);
    let unserved = missing(&listed, &served);
    assert!(
        unlisted.is_empty(),
        "served by server.rs but not in the OpenAPI document: {unlisted:?}"
    );
    assert!(
        unserved.is_empty(),
        "in the OpenAPI document but not served by server.rs: {unserved:?}"
    );
    assert!(
        doc.len() >= 15,
        "only {} operations in the document",
        doc.len()
    );

    // Asked: each listed route is served, and nothing else on its path.
    let (state, _) = state();
    for (method, path) in &doc {
        let (status, fallback) = ask(app(state.clone()), method, path).await;
        assert!(
            !fallback && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {status}, not served"
        );
        if method == "GET" {
            let (status, fallback) = ask(app(state.clone()), "HEAD", path).await;
            assert!(
                !fallback && status != StatusCode::METHOD_NOT_ALLOWED,
                "HEAD {path}"
            );
        }
    }
    let paths: BTreeSet<&String> = doc.iter().map(|(_, p)| p).collect();
    for path in paths {
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if doc.contains(&(method.to_owned(), path.clone())) {
                continue;
            }
            let (status, _) = ask(app(state.clone()), method, path).await;
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: not in the document, yet served"
            );
        }
    }

    // The metrics-only listener.
    let metrics_doc = documented(true);
    assert_eq!(
        shapes(&served_by("metrics_app"))
            .into_keys()
            .collect::<Vec<_>>(),
        shapes(&metrics_doc).into_keys().collect::<Vec<_>>(),
        "the routes of metrics_app and of the document's metrics listener differ"
    );
    for (method, path) in &metrics_doc {
        let (status, fallback) = ask(metrics_app(state.clone()), method, path).await;
        assert!(
            !fallback && status.is_success(),
            "{method} {path} on the metrics listener"
        );
    }
    let (status, fallback) = ask(metrics_app(state.clone()), "POST", "/uploads").await;
    assert!(
        status == StatusCode::NOT_FOUND && fallback,
        "the metrics listener serves POST /uploads"
    );
}

// ---------------------------------------------------------------- error codes

/// The line of `ErrorCode`'s description in the document for `code`.
fn code_line(code: ErrorCode) -> String {
    let statuses: Vec<String> = code.statuses().iter().map(u16::to_string).collect();
    format!(
        "- `{}` ({}): {}",
        code.as_str(),
        statuses.join(", "),
        code.description()
    )
}

/// The document's error codes are `ErrorCode::ALL`, in order, each with its statuses and
/// meaning; each status of each code is an error answer of some route, and every error
/// answer's status is some code's.
#[test]
fn the_error_codes_are_the_signers() {
    let c = contract();
    let schema = &c.doc["components"]["schemas"]["ErrorCode"];
    let listed: Vec<&str> = schema["enum"]
        .as_array()
        .expect("ErrorCode has an enum")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let declared: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let only = |a: &[&str], b: &[&str]| -> Vec<String> {
        a.iter()
            .filter(|c| !b.contains(c))
            .map(|c| c.to_string())
            .collect()
    };
    assert!(
        listed == declared,
        "components.schemas.ErrorCode.enum differs from ErrorCode::ALL: only in the document \
         {:?}, only in ErrorCode {:?} (or the order differs)",
        only(&listed, &declared),
        only(&declared, &listed)
    );
    let description = schema["description"].as_str().unwrap_or_default();
    let missing: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|c| code_line(*c))
        .filter(|line| !description.lines().any(|l| l.trim() == line))
        .collect();
    assert!(
        missing.is_empty(),
        "components.schemas.ErrorCode.description lacks these lines (or has them otherwise):\n{}",
        missing.join("\n")
    );
    assert_eq!(
        description
            .lines()
            .filter(|l| l.trim().starts_with("- `"))
            .count(),
        ErrorCode::ALL.len(),
        "ErrorCode.description lists codes ErrorCode does not have"
    );

    // The statuses of error answers, by the routes that give them.
    let mut error_statuses: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for (method, path, op) in c.operations() {
        for (status, response) in op["responses"].as_object().unwrap() {
            let schema = &c.resolve(response)["content"]["application/json"]["schema"];
            if schema["$ref"] == "#/components/schemas/ErrorBody" {
                error_statuses
                    .entry(status.parse().unwrap())
                    .or_default()
                    .push(format!("{method} {path}"));
            }
        }
    }
    for code in ErrorCode::ALL {
        for status in code.statuses() {
            assert!(
                error_statuses.contains_key(status),
                "{} is answered with {status}, which no route of the document gives",
                code.as_str()
            );
        }
    }
    for (status, routes) in &error_statuses {
        assert!(
            ErrorCode::ALL.iter().any(|c| c.statuses().contains(status)),
            "{routes:?} give an error answer {status}, which no ErrorCode comes with"
        );
    }
}

// ---------------------------------------------------------------- the document's shape

/// What the oracle relies on: OpenAPI 3.1, local references that resolve, exact statuses
/// (no `default` or `4XX`, which would let any status through), a body schema for every
/// JSON answer; and the security the signer applies: the bearer token on every upload route,
/// none on the probes.
#[test]
fn the_document_is_openapi_3_1_with_exact_statuses_and_the_token_scheme() {
    let c = contract();
    assert_eq!(c.doc["openapi"], "3.1.0");
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&c.doc, &mut all);
    assert!(all.len() > 50, "only {} references", all.len());
    for r in all {
        let _ = c.resolve(&json!({ "$ref": r }));
    }
    let description = c.doc["info"]["description"].as_str().unwrap();
    for needle in [
        "## Compatibility",
        "ignore response fields",
        "by its HTTP status",
    ] {
        assert!(
            description.contains(needle),
            "info.description lacks {needle:?}"
        );
    }
    let scheme = &c.doc["components"]["securitySchemes"]["signedInUser"];
    assert_eq!(
        (&scheme["type"], &scheme["scheme"], &scheme["bearerFormat"]),
        (&json!("http"), &json!("bearer"), &json!("JWT"))
    );
    let probes = ["/healthz", "/readyz", "/metrics"];
    for (method, path, op) in c.operations() {
        for (status, response) in op["responses"].as_object().unwrap() {
            assert!(
                status.len() == 3 && status.parse::<u16>().is_ok(),
                "{method} {path}: response {status:?} is not an exact status"
            );
            let response = c.resolve(response);
            for (media, m) in response["content"].as_object().into_iter().flatten() {
                assert!(
                    m.get("schema").is_some(),
                    "{method} {path} {status} {media}: no schema"
                );
            }
        }
        let security = &op["security"];
        if probes.contains(&path.as_str()) {
            assert_eq!(security, &json!([]), "{method} {path}");
        } else {
            assert_eq!(
                security,
                &json!([{}, {"signedInUser": []}]),
                "{method} {path}: the token applies where the bucket requires it"
            );
            for status in ["401", "403", "503"] {
                assert!(
                    op["responses"].get(status).is_some(),
                    "{method} {path}: no {status}, which tokens can answer"
                );
            }
        }
    }
}

// ---------------------------------------------------------------- the oracle itself

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), HeaderValue::from_static(v)))
        .collect()
}

fn check(method: &str, uri: &str, status: u16, h: &HeaderMap, body: &Value) -> Result<(), String> {
    let bytes = body.to_string().into_bytes();
    contract().check(&Exchange {
        method,
        uri,
        request: None,
        status,
        headers: h,
        body: &bytes,
    })
}

/// The checks `call` relies on fail when they should: a status the document does not give,
/// a missing or undocumented field, a wrong type or format, another content type, a missing
/// required header, an unlisted route or method, a request body the document refuses.
#[test]
fn the_oracle_catches_wrong_answers() {
    let json = headers(&[("content-type", "application/json")]);
    let put = json!({
        "method": "PUT",
        "uploadURL": "https://b.s3.eu-west-1.amazonaws.com/uploads/k.jpg?x-id=PutObject",
        "headers": {"content-type": "image/jpeg", "if-none-match": "*"},
        "key": "uploads/k.jpg",
        "expiresAt": "2023-11-14T22:18:20Z",
    });
    assert_eq!(check("POST", "/uploads", 201, &json, &put), Ok(()));
    let with = |k: &str, v: Value| {
        let mut p = put.clone();
        p[k] = v;
        p
    };
    let mut without_key = put.clone();
    without_key.as_object_mut().unwrap().remove("key");
    let error = json!({"error": {"code": "TooLarge", "message": "m"}});
    let unknown_code = json!({"error": {"code": "NoSuchCode", "message": "m"}});
    for (what, result) in [
        (
            "a status not listed",
            check("POST", "/uploads", 418, &json, &error),
        ),
        (
            "a missing field",
            check("POST", "/uploads", 201, &json, &without_key),
        ),
        (
            "an undocumented field",
            check("POST", "/uploads", 201, &json, &with("extra", json!(1))),
        ),
        (
            "a field of the wrong type",
            check("POST", "/uploads", 201, &json, &with("headers", json!([]))),
        ),
        (
            "a wrong format",
            check(
                "POST",
                "/uploads",
                201,
                &json,
                &with("expiresAt", json!("soon")),
            ),
        ),
        (
            "neither branch of the oneOf",
            check(
                "POST",
                "/uploads",
                201,
                &json,
                &with("method", json!("POST")),
            ),
        ),
        (
            "an undocumented error field",
            check(
                "POST",
                "/uploads",
                413,
                &json,
                &json!({"error": {"code": "TooLarge", "message": "m", "x": 1}}),
            ),
        ),
        (
            "an error code not in the enum",
            check("POST", "/uploads", 413, &json, &unknown_code),
        ),
        (
            "another content type",
            check(
                "POST",
                "/uploads",
                201,
                &headers(&[("content-type", "text/plain")]),
                &put,
            ),
        ),
        (
            "429 without Retry-After",
            check("POST", "/uploads", 429, &json, &error),
        ),
        (
            "401 without WWW-Authenticate",
            check("POST", "/uploads", 401, &json, &error),
        ),
        (
            "an unlisted path answering",
            check("GET", "/nowhere", 200, &json, &json!({})),
        ),
        (
            "an unlisted method answering",
            check("PUT", "/uploads", 200, &json, &json!({})),
        ),
    ] {
        assert!(result.is_err(), "{what}: passed the oracle");
    }
    let retry = headers(&[("content-type", "application/json"), ("retry-after", "3")]);
    assert_eq!(check("POST", "/uploads", 429, &retry, &error), Ok(()));
    let retry_words = headers(&[
        ("content-type", "application/json"),
        ("retry-after", "soon"),
    ]);
    assert!(check("POST", "/uploads", 429, &retry_words, &error).is_err());
    assert_eq!(
        check(
            "GET",
            "/nowhere",
            404,
            &json,
            &json!({"error": {"code": "NotFound", "message": "m"}})
        ),
        Ok(())
    );
    // Benchmarking's route is not the contract's.
    assert_eq!(
        check(
            "POST",
            "/bench/ceiling",
            201,
            &json,
            &json!({"ceiling": "x"})
        ),
        Ok(())
    );
    // A body the signer accepted must be one the document allows.
    let ok = json!({"key": "uploads/k.jpg", "uploadId": "u1"});
    let bytes = ok.to_string().into_bytes();
    let accepted = |request: &Value| {
        contract().check(&Exchange {
            method: "POST",
            uri: "/s3/multipart",
            request: Some(request),
            status: 200,
            headers: &json,
            body: &bytes,
        })
    };
    assert_eq!(
        accepted(&json!({"type": "image/jpeg", "name": "x"})),
        Ok(())
    );
    assert!(accepted(&json!({"filename": "x"})).is_err(), "no type");
}

// ---------------------------------------------------------------- tokens

/// A JWT's shape: a header naming RS256 and a key id, any payload and signature.
fn shaped_token() -> String {
    use base64::Engine as _;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(json!({"alg": "RS256", "kid": "k1", "typ": "JWT"})),
        b64(json!({"sub": "u1"}))
    )
}

/// With tokens required, the refusals are the document's: 401 with `WWW-Authenticate`, and
/// 503 `KeysUnavailable` with `Retry-After` while the issuer's keys cannot be had (here: its
/// JWKS address refuses connections); the probes need no token.
#[tokio::test]
async fn token_refusals_are_the_documents() {
    let mut c = config();
    c.jwt.issuer = Some("http://127.0.0.1:9/".into());
    c.jwt.jwks_uri = Some("http://127.0.0.1:9/jwks".into());
    c.jwt.audiences = vec!["api://uploads".into()];
    let s = state_from(c);
    let upload = post("/uploads", json!({"contentType": "image/jpeg", "size": 5}));
    let bearer = |token: &str| {
        upload
            .clone()
            .header("authorization", format!("Bearer {token}"))
    };
    refuses(
        &s,
        [
            row("a URL without a token", upload.clone(), 401, "MissingToken")
                .with_header("www-authenticate", Some(r#"Bearer realm="uploadbucket""#)),
            row(
                "a token that is no JWT",
                bearer("not-a-jwt"),
                401,
                "InvalidToken",
            ),
            row(
                "a JWT while the issuer's keys cannot be had",
                bearer(&shaped_token()),
                503,
                "KeysUnavailable",
            )
            .with_header("retry-after", None),
            row(
                "Uppy's form without a token",
                get("/s3/params?type=image/jpeg"),
                401,
                "MissingToken",
            ),
            row(
                "a multipart upload without a token",
                post("/uploads/multipart", json!({"type": "image/jpeg"})),
                401,
                "MissingToken",
            ),
            row(
                "verify without a token",
                post("/uploads/verify", json!({"key": "uploads/a.jpg"})),
                401,
                "MissingToken",
            ),
        ],
    )
    .await;
    let (status, _) = call(&s, "GET", "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
}
