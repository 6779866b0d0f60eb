//! What the API tests share: a fake S3 store, fixed credentials, a pinned clock, states built
//! from them, and [`call`] / [`send`], which drive `app(state)` with `oneshot` and hold every
//! answer to the signer's OpenAPI document ([`contract`]); requests as data and refusal tables
//! on top of them ([`table`]).
// Each test crate uses some of these.
#![allow(dead_code)]

pub mod contract;
pub mod table;

pub use table::*;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use uploadbucket_sidecar::config::Config;
use uploadbucket_sidecar::credentials::{CredentialSource, StaticCredentials};
use uploadbucket_sidecar::presign::{Credentials, Endpoint, Presigner};
use uploadbucket_sidecar::store::{ObjectInfo, ObjectStore, Part, Promotion, StoreError};
use uploadbucket_sidecar::{AppState, app};

pub const NOW: u64 = 1_700_000_000;

pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

/// A write due after a call: the call, key, type, bytes.
pub type Replacement = (String, String, &'static str, Vec<u8>);

/// A stored object: what HeadObject says, its bytes, and its state tag.
pub type StoredObject = (ObjectInfo, Vec<u8>, Option<String>);

#[derive(Default)]
pub struct FakeStore {
    pub uploads: Mutex<HashMap<String, (String, Vec<Part>)>>,
    pub calls: Mutex<Vec<String>>,
    /// Stored objects: info, bytes, and the state tag.
    pub objects: Mutex<HashMap<String, StoredObject>>,
    /// Writes so far: each object's ETag is the write that made it.
    pub writes: Mutex<u32>,
    /// An end user's write that lands right after the next call of this kind ("head KEY",
    /// "read KEY"): the call, key, type, bytes.
    pub race: Mutex<Option<Replacement>>,
    /// Copies whatever the source holds, ignoring the precondition (as RGW does with AWS's
    /// header name).
    pub lax_copy: std::sync::atomic::AtomicBool,
}

impl FakeStore {
    pub fn put(&self, key: &str, content_type: &str, bytes: &[u8]) {
        let mut writes = self.writes.lock().unwrap();
        *writes += 1;
        let info = ObjectInfo {
            size: bytes.len() as i64,
            content_type: content_type.into(),
            etag: format!("\"etag-{writes}\""),
            version_id: None,
        };
        self.objects
            .lock()
            .unwrap()
            .insert(key.into(), (info, bytes.to_vec(), Some("pending".into())));
    }
    /// After the next `call` ("head" or "read") on `key`, `key` is replaced with `bytes`.
    pub fn replace_after(&self, call: &str, key: &str, ct: &'static str, bytes: &[u8]) {
        self.write_after(call, key, key, ct, bytes);
    }
    /// After the next `call` on `key`, `written` holds `bytes`.
    pub fn write_after(
        &self,
        call: &str,
        key: &str,
        written: &str,
        ct: &'static str,
        bytes: &[u8],
    ) {
        let call = format!("{call} {key}");
        *self.race.lock().unwrap() = Some((call, written.into(), ct, bytes.to_vec()));
    }
    fn race_point(&self, call: &str) {
        let due = {
            let mut race = self.race.lock().unwrap();
            match race.as_ref() {
                Some((c, ..)) if *c == call => race.take(),
                _ => None,
            }
        };
        if let Some((_, key, ct, bytes)) = due {
            self.put(&key, ct, &bytes);
        }
    }
    /// The calls so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    /// The multipart upload `id` now holds `parts` (as if the client had uploaded them).
    pub fn set_parts(&self, id: &str, parts: Vec<Part>) {
        self.uploads.lock().unwrap().get_mut(id).expect("upload").1 = parts;
    }
    pub fn bytes_of(&self, key: &str) -> Option<Vec<u8>> {
        self.objects.lock().unwrap().get(key).map(|o| o.1.clone())
    }
    pub fn state_of(&self, key: &str) -> Option<Option<String>> {
        self.objects.lock().unwrap().get(key).map(|o| o.2.clone())
    }
}

#[async_trait]
impl ObjectStore for FakeStore {
    async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
        metadata: &[(String, String)],
        acl: Option<&str>,
        tagging: Option<&str>,
    ) -> Result<String, StoreError> {
        let mut call = format!("create {key} {content_type}");
        if let Some(t) = tagging {
            call += &format!(" tagging={t}");
        }
        if !metadata.is_empty() {
            call += &format!(" {metadata:?}");
        }
        if let Some(acl) = acl {
            call += &format!(" acl={acl}");
        }
        self.calls.lock().unwrap().push(call);
        let id = format!("upload-{}", self.uploads.lock().unwrap().len() + 1);
        self.uploads
            .lock()
            .unwrap()
            .insert(id.clone(), (key.to_owned(), Vec::new()));
        Ok(id)
    }
    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<Part>, StoreError> {
        match self.uploads.lock().unwrap().get(upload_id) {
            Some((k, parts)) if k == key => Ok(parts.clone()),
            _ => Err(StoreError::NoSuchUpload),
        }
    }
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[Part],
        total: i64,
    ) -> Result<(), StoreError> {
        let parts: Vec<String> = parts
            .iter()
            .map(|p| format!("{}:{}", p.number, p.etag))
            .collect();
        self.calls.lock().unwrap().push(format!(
            "complete {key} {upload_id} [{}] {total}",
            parts.join(",")
        ));
        self.uploads
            .lock()
            .unwrap()
            .remove(upload_id)
            .map(drop)
            .ok_or(StoreError::NoSuchUpload)
    }
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("abort {key} {upload_id}"));
        self.uploads.lock().unwrap().remove(upload_id);
        Ok(())
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        self.calls.lock().unwrap().push(format!("head {key}"));
        let info = self.objects.lock().unwrap().get(key).map(|o| o.0.clone());
        self.race_point(&format!("head {key}"));
        Ok(info)
    }
    async fn read_start(
        &self,
        key: &str,
        info: &ObjectInfo,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        self.calls.lock().unwrap().push(format!("read {key} {len}"));
        let read = {
            let objects = self.objects.lock().unwrap();
            let (now, bytes, _) = objects.get(key).expect("object");
            // If-Match.
            if now.etag != info.etag {
                return Err(StoreError::Changed);
            }
            bytes[..bytes.len().min(len as usize)].to_vec()
        };
        self.race_point(&format!("read {key}"));
        Ok(read)
    }
    async fn promote(
        &self,
        from: &str,
        info: &ObjectInfo,
        to: &str,
        target: &Promotion<'_>,
    ) -> Result<(), StoreError> {
        self.calls.lock().unwrap().push(format!(
            "copy {from} {to} {} {:?} {:?}",
            target.content_type, target.disposition, target.acl
        ));
        let mut objects = self.objects.lock().unwrap();
        // If-None-Match: * on the target, as AWS checks it.
        if objects.contains_key(to) {
            return Err(StoreError::Changed);
        }
        let (now, bytes, _) = objects.get(from).cloned().expect("object");
        // x-amz-copy-source-if-match.
        if now.etag != info.etag && !self.lax_copy.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StoreError::Changed);
        }
        let copied = ObjectInfo {
            content_type: target.content_type.into(),
            ..now
        };
        objects.insert(to.into(), (copied, bytes, None));
        Ok(())
    }
    async fn set_state(&self, key: &str, state: &str) -> Result<(), StoreError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("tag {key} {state}"));
        self.objects.lock().unwrap().get_mut(key).expect("object").2 = Some(state.into());
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.calls.lock().unwrap().push(format!("delete {key}"));
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }
    async fn count_open_multipart(
        &self,
        prefix: &str,
        _enough: usize,
    ) -> Result<usize, StoreError> {
        self.calls.lock().unwrap().push(format!("count {prefix}"));
        let open = self
            .uploads
            .lock()
            .unwrap()
            .values()
            .filter(|(key, _)| key.starts_with(prefix))
            .count();
        // S3's answer takes a while to come back: other requests run meanwhile.
        tokio::task::yield_now().await;
        Ok(open)
    }
}

pub fn config() -> Config {
    Config {
        bucket: "photos".into(),
        region: Some("eu-west-1".into()),
        key_prefix: "uploads/".into(),
        allowed_content_types: vec!["image/jpeg".into(), "image/*".into()],
        max_size_bytes: 1000,
        expires_seconds: 300,
        allowed_metadata: vec!["user-id".into()],
        ..Config::default()
    }
}

pub fn creds(expiry: Option<SystemTime>) -> Credentials {
    Credentials {
        access_key_id: "AKIATEST".into(),
        secret_access_key: "secret".into(),
        session_token: Some("session".into()),
        expiry,
    }
}

/// A state with `config` over `store`, handing out `creds`, on the pinned clock.
pub fn state_of(
    config: Config,
    creds: Arc<dyn CredentialSource>,
    store: Arc<dyn ObjectStore>,
) -> AppState {
    AppState::new(
        config,
        Presigner::new("photos", "eu-west-1", Endpoint::aws("eu-west-1")),
        creds,
        store,
    )
    .with_clock(now)
}

/// A state with `config` over `store`, with [`creds`] that do not expire.
pub fn state_over(config: Config, store: Arc<dyn ObjectStore>) -> AppState {
    state_of(config, Arc::new(StaticCredentials::new(creds(None))), store)
}

/// The default [`config`] over `store`, handing out `creds`.
pub fn state_with(creds: Arc<dyn CredentialSource>, store: Arc<FakeStore>) -> AppState {
    state_of(config(), creds, store)
}

/// A state with `config` instead of the default one.
pub fn state_from(config: Config) -> AppState {
    state_over(config, Arc::new(FakeStore::default()))
}

pub fn state() -> (AppState, Arc<FakeStore>) {
    let store = Arc::new(FakeStore::default());
    (state_over(config(), store.clone()), store)
}

/// `method uri` with `body` as JSON through `app(state)`: the status and the answer (JSON, or
/// the text as a string), after [`send`] checked it against the OpenAPI document.
pub async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let answer = ask(state, &Req::new(method, uri, body)).await;
    (answer.status, answer.body)
}

/// `req` through `app(state)`; the answer, once it matched the OpenAPI document for its
/// route, method and status (a panic naming the mismatch otherwise).
pub async fn send(state: &AppState, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let sent = body.collect().await.unwrap().to_bytes();
    let json_sent = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let request_json: Option<Value> = if json_sent {
        serde_json::from_slice(&sent).ok()
    } else {
        None
    };
    let (method, uri) = (parts.method.to_string(), parts.uri.to_string());
    let resp = app(state.clone())
        .oneshot(Request::from_parts(parts, Body::from(sent)))
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    contract::assert_matches(&contract::Exchange {
        method: &method,
        uri: &uri,
        request: request_json.as_ref(),
        status: parts.status.as_u16(),
        headers: &parts.headers,
        body: &bytes,
    });
    Response::from_parts(parts, Body::from(bytes))
}
