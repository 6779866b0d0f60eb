//! JSON in and out of the signing routes, shaped for the hot path.
//!
//! In: a request body (`content-type: application/json` or `application/*+json`). Out: the
//! body parsed into a type that may borrow from it, or a 4xx naming the field; and answers
//! written straight into one buffer. axum's `Json` would do the same with more work per
//! request (a MIME parse, a path-tracking deserializer on every call, owned strings, a
//! response buffer grown from 128 bytes), which `POST /uploads` pays on every URL.

use std::borrow::Cow;

use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use serde::Deserialize;

use crate::error::{AppError, ErrorCode};

/// A request body that declared itself JSON, not parsed yet (see [`JsonBody::parse`]).
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = AppError;

    async fn from_request(req: Request, _: &S) -> Result<Self, AppError> {
        let declared = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_media_type);
        if !declared {
            return Err(AppError::with_status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "send the request body as JSON with header content-type: application/json",
            ));
        }
        read_body(req.into_body()).await.map(JsonBody)
    }
}

/// Largest JSON body taken (axum's default limit too): a multipart completion listing
/// 10,000 parts is about half of it.
pub const MAX_JSON_BODY: usize = 2 << 20;

/// The body's bytes, read until it says it has ended: a body with a content-length ends with
/// its last byte, so there is no further poll waiting for the connection to report the end
/// (one task wake-up less per request than collecting until `None`).
async fn read_body(mut body: Body) -> Result<Bytes, AppError> {
    let mut first = Bytes::new();
    let mut joined: Option<Vec<u8>> = None;
    while !body.is_end_stream() {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame.map_err(|e| {
            AppError::bad_request(
                ErrorCode::InvalidBody,
                format!("could not read the request body: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let read = joined.as_ref().map_or(first.len(), Vec::len);
        if read + data.len() > MAX_JSON_BODY {
            return Err(AppError::with_status(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BodyTooLarge,
                format!("the request body is over {MAX_JSON_BODY} bytes"),
            ));
        }
        match &mut joined {
            None if first.is_empty() => first = data,
            None => {
                let mut all = Vec::with_capacity(first.len() + data.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&data);
                joined = Some(all);
            }
            Some(all) => all.extend_from_slice(&data),
        }
    }
    Ok(joined.map_or(first, Bytes::from))
}

/// `application/json` or `application/<anything>+json`, with any parameters, in any case.
fn is_json_media_type(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let Some((kind, sub)) = media.split_once('/') else {
        return false;
    };
    let sub = sub.as_bytes();
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case(b"json")
            || (sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case(b"+json")))
}

impl JsonBody {
    /// The body as `T`. A refusal (400 `InvalidJson`) names the field that did not fit, as
    /// `metadata.user-id: invalid type: ...`; finding that path costs a second parse, paid
    /// only by bad requests.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, AppError> {
        serde_json::from_slice(&self.0).map_err(|first| {
            let mut de = serde_json::Deserializer::from_slice(&self.0);
            let message = match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(e) if first.is_syntax() || first.is_eof() => {
                    format!("the body is not valid JSON: {}", e.inner())
                }
                Err(e) if e.path().to_string() != "." => format!("{}: {}", e.path(), e.inner()),
                _ => first.to_string(),
            };
            AppError::bad_request(ErrorCode::InvalidJson, message)
        })
    }
}

/// A string field of a request: borrowed from the body, or owned when it had escapes (serde
/// borrows a `Cow` only when it is the field's whole type, not inside an `Option`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// Appends `s` as a JSON string. Output is exactly serde_json's: the common case (nothing
/// to escape: URLs, keys, dates, media types) is one copy; anything else goes through
/// serde_json.
pub fn push_string(out: &mut Vec<u8>, s: &str) {
    if plain(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        // Writing to a Vec cannot fail; an empty string keeps the document valid anyway.
        out.extend_from_slice(b"\"\"");
    }
}

/// Nothing in `bytes` is escaped in a JSON string.
pub fn plain(bytes: &[u8]) -> bool {
    // No early exit, so the compiler checks 16 or 32 bytes per step.
    bytes
        .iter()
        .fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'))
}

/// An answer whose body is already JSON.
pub fn response(status: StatusCode, body: impl Into<Body>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.into(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn json_media_types() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/json;charset=utf-8",
            " application/json ",
            "application/cloudevents+json",
        ] {
            assert!(is_json_media_type(yes), "{yes}");
        }
        for no in [
            "text/json",
            "application/jsonx",
            "application/+json",
            "application/x-www-form-urlencoded",
            "",
            "json",
        ] {
            assert!(!is_json_media_type(no), "{no}");
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        size: Option<u64>,
        metadata: Option<std::collections::BTreeMap<String, String>>,
    }

    fn refusal(body: &str) -> String {
        match JsonBody(Bytes::copy_from_slice(body.as_bytes())).parse::<Sample>() {
            Err(AppError::Client { code, message, .. }) => format!("{code}: {message}"),
            other => panic!("{body}: {other:?}"),
        }
    }

    /// A body arriving in the given chunks. `declares_end`: like hyper's body of a request
    /// with a content-length, it says it has ended after its last chunk, and a poll after
    /// that waits (for the connection), instead of answering `None`.
    struct Chunks {
        chunks: std::collections::VecDeque<&'static [u8]>,
        declares_end: bool,
    }

    impl axum::body::HttpBody for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            use std::task::Poll;
            match self.chunks.pop_front() {
                Some(c) => Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(c))))),
                None if self.declares_end => Poll::Pending,
                None => Poll::Ready(None),
            }
        }
        fn is_end_stream(&self) -> bool {
            self.declares_end && self.chunks.is_empty()
        }
    }

    #[tokio::test]
    async fn bodies_in_pieces_are_joined_and_capped() {
        let body = |chunks: Vec<&'static [u8]>| {
            Body::new(Chunks {
                chunks: chunks.into(),
                declares_end: false,
            })
        };
        let got = read_body(body(vec![b"{\"a\"", b":", b"1}"])).await.unwrap();
        assert_eq!(&got[..], b"{\"a\":1}");
        let got = read_body(body(vec![b"", b"{}"])).await.unwrap();
        assert_eq!(&got[..], b"{}");
        let big: &'static [u8] = Box::leak(vec![b' '; MAX_JSON_BODY].into_boxed_slice());
        assert!(read_body(body(vec![big])).await.is_ok());
        match read_body(body(vec![big, b"x"])).await {
            Err(AppError::Client { status, code, .. }) => {
                assert_eq!(
                    (status, code),
                    (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::BodyTooLarge)
                )
            }
            other => panic!("{other:?}"),
        }
        // A body that says it has ended is not polled again (that poll would wait).
        let ending = Body::new(Chunks {
            chunks: vec![&b"{}"[..]].into(),
            declares_end: true,
        });
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), read_body(ending))
            .await
            .expect("read_body polled past the declared end");
        assert_eq!(&got.unwrap()[..], b"{}");
    }

    #[test]
    fn text_borrows_unless_escaped() {
        let body = JsonBody(Bytes::from_static(br#"["plain", "esc\u00e9\""]"#));
        let (a, b): (Text, Text) = body.parse().unwrap();
        assert!(matches!(a.0, Cow::Borrowed("plain")), "{a:?}");
        assert!(matches!(&b.0, Cow::Owned(s) if s == "esc\u{e9}\""), "{b:?}");
        let m = match JsonBody(Bytes::from_static(b"[1, \"x\"]")).parse::<(Text, Text)>() {
            Err(AppError::Client { message, .. }) => message,
            other => panic!("{other:?}"),
        };
        assert!(m.contains("expected a string"), "{m}");
    }

    #[test]
    fn refusals_name_the_field() {
        let m = refusal(r#"{"size": "big"}"#);
        assert!(m.starts_with("InvalidJson: size: invalid type"), "{m}");
        let m = refusal(r#"{"metadata": {"a": 1}}"#);
        assert!(
            m.starts_with("InvalidJson: metadata.a: invalid type"),
            "{m}"
        );
        let m = refusal(r#"{"sise": 1}"#);
        assert!(m.contains("unknown field `sise`"), "{m}");
        let m = refusal(r#"{"size": 1"#);
        assert!(
            m.starts_with("InvalidJson: the body is not valid JSON"),
            "{m}"
        );
        let m = refusal("");
        assert!(
            m.starts_with("InvalidJson: the body is not valid JSON"),
            "{m}"
        );
    }

    proptest! {
        /// Byte for byte what serde_json writes, whatever the string.
        #[test]
        fn strings_as_serde_json_writes_them(s in any::<String>(), t in "[ -~]{0,40}") {
            for s in [s, t] {
                let mut out = Vec::new();
                push_string(&mut out, &s);
                prop_assert_eq!(out, serde_json::to_vec(&s).unwrap());
            }
        }
    }
}
