//! `POST /uploads/verify`: after an upload, check that the object is what it claims to be.
//!
//! A signed `Content-Type` is only the client's word: a file sent as `image/jpeg` can hold
//! HTML. Verify reads the object's size and type (`HeadObject`) and its first bytes (one ranged
//! `GetObject`, [`SNIFF_BYTES`]), and accepts it only if the size is within the bucket's
//! maximum, the stored type is allowed, and the bytes' magic number (detected by the `infer`
//! crate) matches the stored type. An accepted object is tagged `uploadbucket-state=verified`
//! (so the lifecycle rule for pending objects no longer applies); a refused one is deleted,
//! or tagged `quarantined` when the bucket says so, and the answer is 422 saying why.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{STATE_QUARANTINED, STATE_VERIFIED};
use crate::error::AppError;
use crate::json::JsonBody;
use crate::keys;
use crate::server::AppState;
use crate::store::{ObjectInfo, StoreError};

/// How much of an object verify reads: enough for every signature `infer` knows.
pub const SNIFF_BYTES: u64 = 8192;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyRequest {
    key: Option<String>,
    /// The owner the upload was made for, when it was made for one.
    owner: Option<String>,
}

/// Why an object was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

/// The type `bytes` show by their magic number, if `infer` knows it.
pub fn detect(bytes: &[u8]) -> Option<&'static str> {
    infer::get(bytes).map(|t| t.mime_type())
}

/// Whether an object of `info`, starting with `bytes`, may stay: its size, its stored type,
/// and the type its bytes show. Pure, so every rule is unit-tested.
pub fn judge(
    config: &crate::config::Config,
    info: &ObjectInfo,
    bytes: &[u8],
) -> Result<Option<&'static str>, Refusal> {
    let refuse = |code, message: String| Err(Refusal { code, message });
    if info.size < 1 || info.size as u64 > config.max_size_bytes {
        return refuse(
            "TooLarge",
            format!(
                "the object is {} bytes; this bucket takes 1 to {}",
                info.size, config.max_size_bytes
            ),
        );
    }
    let stored = info
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if !config.allows_content_type(&stored) {
        return refuse(
            "ContentTypeNotAllowed",
            format!(
                "the object is stored as {stored:?}, which this bucket does not take (allowed: {})",
                config.allowed_content_types.join(", ")
            ),
        );
    }
    let detected = detect(bytes);
    match detected {
        Some(d) if d == stored => Ok(detected),
        // Bytes of a known format under another type's name.
        Some(d) => refuse(
            "ContentMismatch",
            format!("the object is stored as {stored} but its bytes are {d}"),
        ),
        // A type with a known signature whose bytes do not carry it (HTML sent as a JPEG).
        None if infer::is_mime_supported(&stored) => refuse(
            "ContentMismatch",
            format!(
                "the object is stored as {stored} but its bytes do not start like {stored} (no known file signature)"
            ),
        ),
        // A type no signature identifies (text/plain, text/csv, ...): nothing to contradict.
        None => Ok(None),
    }
}

fn store_error(e: StoreError) -> AppError {
    match e {
        StoreError::Denied(m) => AppError::internal("S3 access (verify)", m),
        other => AppError::internal("S3 (verify)", other),
    }
}

/// `POST /uploads/verify {"key"}`.
pub async fn verify(
    State(state): State<AppState>,
    body: Result<JsonBody, AppError>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    if !state.config.verify {
        return Err(AppError::with_status(
            StatusCode::CONFLICT,
            "VerificationDisabled",
            "this bucket does not verify uploads (spec.uploads.verification.enabled is false)",
        ));
    }
    let parsed = body.and_then(|b| b.parse::<VerifyRequest>());
    let req = parsed.map_err(|e| match e {
        AppError::Client {
            status,
            code,
            message,
        } => AppError::Client {
            status,
            code,
            message: format!("body must be JSON {{\"key\": \"...\"}}: {message}"),
        },
        other => other,
    })?;
    let key = req
        .key
        .filter(|k| !k.is_empty())
        .ok_or_else(|| AppError::bad_request("MissingKey", "key is required"))?;
    if !keys::is_our_key(&state.config.key_prefix, &key) {
        return Err(AppError::bad_request(
            "InvalidKey",
            format!(
                "key {key:?} was not issued by this signer (keys start with {:?})",
                state.config.key_prefix
            ),
        ));
    }
    crate::uploads::check_owner(&state, &key, req.owner.as_deref())?;
    let Some(info) = state.store.head(&key).await.map_err(store_error)? else {
        return Err(AppError::with_status(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            format!("nothing is stored at {key:?} (not uploaded yet, expired, or deleted)"),
        ));
    };
    let bytes = state
        .store
        .read_start(&key, SNIFF_BYTES)
        .await
        .map_err(store_error)?;
    match judge(&state.config, &info, &bytes) {
        Ok(detected) => {
            state
                .store
                .set_state(&key, STATE_VERIFIED)
                .await
                .map_err(store_error)?;
            tracing::info!(%key, size = info.size, content_type = %info.content_type, "Upload verified");
            Ok((
                StatusCode::OK,
                Json(json!({
                    "key": key,
                    "size": info.size,
                    "contentType": info.content_type,
                    "detectedType": detected,
                    "etag": info.etag,
                    "state": STATE_VERIFIED,
                })),
            ))
        }
        Err(refusal) => {
            let kept = state.config.verify_quarantine;
            if kept {
                state
                    .store
                    .set_state(&key, STATE_QUARANTINED)
                    .await
                    .map_err(store_error)?;
            } else {
                state.store.delete(&key).await.map_err(store_error)?;
            }
            tracing::warn!(%key, code = refusal.code, reason = %refusal.message, quarantined = kept, "Upload refused by verification");
            let outcome = if kept {
                "it is kept, tagged quarantined"
            } else {
                "it was deleted"
            };
            Err(AppError::with_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                refusal.code,
                format!("{}; {outcome}", refusal.message),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> crate::config::Config {
        crate::config::Config {
            bucket: "b".into(),
            region: Some("eu-west-1".into()),
            listen: "127.0.0.1:8787".parse().unwrap(),
            key_prefix: "uploads/".into(),
            allowed_content_types: vec!["image/*".into(), "text/plain".into()],
            max_size_bytes: 1000,
            expires_seconds: 300,
            endpoint_url: None,
            path_style: false,
            allow_non_loopback: false,
            allowed_metadata: Vec::new(),
            allow_unsized_put: false,
            public_read: false,
            bucket_owner_full_control: false,
            verify: true,
            verify_quarantine: false,
            require_owner: false,
            urls_per_minute: 0,
            max_open_multipart: 0,
            metrics_listen: None,
        }
    }

    fn info(size: i64, ct: &str) -> ObjectInfo {
        ObjectInfo {
            size,
            content_type: ct.into(),
            etag: "\"e\"".into(),
        }
    }

    const JPEG: &[u8] = &[0xff, 0xd8, 0xff, 0xe0, 0, 0x10, b'J', b'F', b'I', b'F', 0];
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const HTML: &[u8] = b"<!doctype html><script>alert(1)</script>";

    #[test]
    fn matching_bytes_pass_and_say_what_they_are() {
        let c = config();
        assert_eq!(
            judge(&c, &info(11, "image/jpeg"), JPEG),
            Ok(Some("image/jpeg"))
        );
        assert_eq!(
            judge(&c, &info(16, "image/png"), PNG),
            Ok(Some("image/png"))
        );
        // Parameters and case in the stored type do not matter.
        assert_eq!(
            judge(&c, &info(16, "Image/PNG; charset=binary"), PNG),
            Ok(Some("image/png"))
        );
        // A type no signature identifies: nothing to contradict it.
        assert_eq!(judge(&c, &info(11, "text/plain"), b"hello world"), Ok(None));
    }

    #[test]
    fn disguised_bytes_are_refused_naming_both_types() {
        let c = config();
        let r = judge(&c, &info(40, "image/jpeg"), HTML).unwrap_err();
        assert_eq!(r.code, "ContentMismatch");
        assert!(
            r.message
                .contains("stored as image/jpeg but its bytes are text/html"),
            "{}",
            r.message
        );
        // HTML is HTML under a text type too.
        assert_eq!(
            judge(&c, &info(40, "text/plain"), HTML).unwrap_err().code,
            "ContentMismatch"
        );
        // Bytes of no known format under a type that has a signature.
        let r = judge(&c, &info(11, "image/jpeg"), b"hello world").unwrap_err();
        assert!(
            r.message.contains("no known file signature"),
            "{}",
            r.message
        );
        let r = judge(&c, &info(16, "image/jpeg"), PNG).unwrap_err();
        assert_eq!(r.code, "ContentMismatch");
        assert!(
            r.message.contains("its bytes are image/png"),
            "{}",
            r.message
        );
        // A known binary format stored as text.
        let r = judge(&c, &info(16, "text/plain"), PNG).unwrap_err();
        assert_eq!(r.code, "ContentMismatch");
    }

    #[test]
    fn size_and_type_rules_hold_after_the_fact() {
        let c = config();
        assert_eq!(
            judge(&c, &info(1001, "image/jpeg"), JPEG).unwrap_err().code,
            "TooLarge"
        );
        assert_eq!(
            judge(&c, &info(0, "image/jpeg"), JPEG).unwrap_err().code,
            "TooLarge"
        );
        // image/* never admits SVG, whatever the bytes.
        let r = judge(
            &c,
            &info(40, "image/svg+xml"),
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
        )
        .unwrap_err();
        assert_eq!(r.code, "ContentTypeNotAllowed");
        assert_eq!(
            judge(&c, &info(11, "application/pdf"), JPEG)
                .unwrap_err()
                .code,
            "ContentTypeNotAllowed"
        );
    }
}
