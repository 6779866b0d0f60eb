//! Requests as data, and refusal tables: one row a case (what it tries, the request, the
//! status and error code it must be answered with), each sent through [`send`] so the OpenAPI
//! document checks every answer, and a failure names the row.

use std::fmt;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use uploadbucket_sidecar::AppState;

use super::send;

/// A request: method, path with its query, headers, and a body with its content type.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub uri: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<(&'static str, String)>,
}

/// `GET uri`.
pub fn get(uri: impl Into<String>) -> Req {
    Req {
        method: Method::GET,
        uri: uri.into(),
        headers: Vec::new(),
        body: None,
    }
}

/// `DELETE uri`.
pub fn delete(uri: impl Into<String>) -> Req {
    Req {
        method: Method::DELETE,
        ..get(uri)
    }
}

/// `POST uri` with `body` as JSON.
pub fn post(uri: impl Into<String>, body: Value) -> Req {
    post_as(uri, "application/json", &body.to_string())
}

/// `POST uri` with `body` sent as `content_type`.
pub fn post_as(uri: impl Into<String>, content_type: &'static str, body: &str) -> Req {
    Req {
        method: Method::POST,
        body: Some((content_type, body.to_owned())),
        ..get(uri)
    }
}

impl Req {
    /// `method uri` with `body` as JSON when there is one (the arguments of [`super::call`]).
    pub fn new(method: &str, uri: &str, body: Option<Value>) -> Self {
        Req {
            method: method.parse().expect("an HTTP method"),
            body: body.map(|b| ("application/json", b.to_string())),
            ..get(uri)
        }
    }

    /// The same request with the header `name: value` too.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn request(&self) -> Request<Body> {
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(&self.uri);
        for (name, value) in &self.headers {
            req = req.header(*name, value);
        }
        match &self.body {
            Some((content_type, body)) => req
                .header("content-type", *content_type)
                .body(Body::from(body.clone())),
            None => req.body(Body::empty()),
        }
        .unwrap()
    }
}

impl fmt::Display for Req {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.uri)?;
        match &self.body {
            Some((_, body)) => write!(f, " {body}"),
            None => Ok(()),
        }
    }
}

/// An answer: its status, headers, and body (JSON, or the text as a string).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// `error.code`, if the body has one.
    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    /// `error.message` (a panic if there is none).
    pub fn message(&self) -> &str {
        self.body["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {}", self.body))
    }
}

/// `req` through [`send`] (so its answer is held to the OpenAPI document).
pub async fn ask(state: &AppState, req: &Req) -> Answer {
    let resp = send(state, req.request()).await;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// `req` through [`ask`]; its body, once its status is `status` (a panic showing the answer
/// otherwise).
pub async fn expect(state: &AppState, req: &Req, status: u16) -> Value {
    let answer = ask(state, req).await;
    assert_eq!(answer.status.as_u16(), status, "{req}: {}", answer.body);
    answer.body
}

/// One row of a refusal table: what it tries, the request, and the status and error code it
/// must be refused with; optionally words its message must hold, words the whole answer must
/// not (internals), and headers it must carry.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub label: String,
    pub req: Req,
    pub status: u16,
    pub code: &'static str,
    pub saying: Vec<&'static str>,
    pub hiding: Vec<&'static str>,
    /// A header the answer must carry: with this value, or (`None`) with any.
    pub headers: Vec<(&'static str, Option<&'static str>)>,
}

/// A [`Refusal`]: `label` tries `req`, which must be answered `status` with `code`.
pub fn row(label: impl Into<String>, req: Req, status: u16, code: &'static str) -> Refusal {
    Refusal {
        label: label.into(),
        req,
        status,
        code,
        saying: Vec::new(),
        hiding: Vec::new(),
        headers: Vec::new(),
    }
}

impl Refusal {
    /// The row, its error message also holding `words`.
    pub fn saying(mut self, words: &'static str) -> Self {
        self.saying.push(words);
        self
    }

    /// The row, its whole answer holding none of `secrets`.
    pub fn hiding(mut self, secrets: &[&'static str]) -> Self {
        self.hiding.extend_from_slice(secrets);
        self
    }

    /// The row, its answer also carrying the header `name`: with `value`, or (`None`) with any.
    pub fn with_header(mut self, name: &'static str, value: Option<&'static str>) -> Self {
        self.headers.push((name, value));
        self
    }

    /// What is wrong with `answer` for this row, if anything.
    fn mismatch(&self, answer: &Answer) -> Option<String> {
        let got = (answer.status.as_u16(), answer.code());
        if got != (self.status, Some(self.code)) {
            return Some(format!(
                "answered {} {:?}, not {} {:?}",
                got.0, got.1, self.status, self.code
            ));
        }
        if let Some(words) = self.saying.iter().find(|w| !answer.message().contains(*w)) {
            return Some(format!(
                "the message {:?} lacks {words:?}",
                answer.message()
            ));
        }
        let text = answer.body.to_string();
        if let Some(secret) = self.hiding.iter().find(|s| text.contains(*s)) {
            return Some(format!("the answer shows {secret:?}"));
        }
        for (name, value) in &self.headers {
            let got = answer
                .headers
                .get(*name)
                .map(|v| v.to_str().unwrap_or("(not text)"));
            match (got, value) {
                (None, _) => return Some(format!("no {name} header")),
                (Some(got), Some(value)) if got != *value => {
                    return Some(format!("{name}: {got:?}, not {value:?}"));
                }
                _ => {}
            }
        }
        None
    }
}

/// Sends the row's request (through [`ask`], in a task of its own, so that a panic on the way,
/// such as the OpenAPI check's in [`send`], is the row's failure too); its answer, or what is
/// wrong, naming the row.
async fn check(state: &AppState, row: &Refusal) -> Result<Answer, String> {
    let (state, req) = (state.clone(), row.req.clone());
    let name = || format!("row {:?} ({})", row.label, row.req);
    let answer = match tokio::spawn(async move { ask(&state, &req).await }).await {
        Ok(answer) => answer,
        Err(e) => {
            let panic = e.try_into_panic().expect("the task is never cancelled");
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            return Err(format!("{}: sending it panicked: {message}", name()));
        }
    };
    match row.mismatch(&answer) {
        None => Ok(answer),
        Some(wrong) => Err(format!(
            "{}: {wrong}\n    the answer: {}",
            name(),
            answer.body
        )),
    }
}

/// Sends the row's request; its answer, once it is the row's refusal (a panic naming the row
/// otherwise).
pub async fn refused(state: &AppState, row: &Refusal) -> Answer {
    check(state, row)
        .await
        .unwrap_or_else(|failure| panic!("{failure}"))
}

/// Every row of `table`, in order; then a panic listing each row whose answer was not its
/// refusal, if any was not.
pub async fn refuses(state: &AppState, table: impl IntoIterator<Item = Refusal>) {
    let (mut rows, mut failed) = (0, Vec::new());
    for row in table {
        rows += 1;
        failed.extend(check(state, &row).await.err());
    }
    assert!(
        failed.is_empty(),
        "{} of {rows} rows failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
