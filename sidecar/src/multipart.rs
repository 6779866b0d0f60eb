//! Multipart uploads, with the request and response shapes Uppy's `@uppy/aws-s3` plugin
//! expects from a companion server (served under `/s3/multipart` and `/uploads/multipart`).
//!
//! In: create/sign/list/complete/abort calls. Out: presigned part URLs (pure signing) and
//! the S3 calls that need the bucket's credentials (create, list, complete, abort). A part
//! URL cannot carry a size limit, so `complete` adds up the stored parts and refuses (and
//! aborts) an upload larger than the bucket's maximum.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::AppError;
use crate::keys;
use crate::presign::PresignInput;
use crate::store::{Part, StoreError};
use crate::uploads::{
    check_content_type, check_metadata, check_size, credentials, json_error, lifetime,
};

/// S3 allows part numbers 1..=10000.
const MAX_PART: i32 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateMultipart {
    pub filename: Option<String>,
    /// Uppy sends `type`; `contentType` is accepted too.
    #[serde(rename = "type", alias = "contentType")]
    pub content_type: Option<String>,
    pub size: Option<u64>,
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
pub struct KeyQuery {
    key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchQuery {
    key: Option<String>,
    part_numbers: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CompleteBody {
    parts: Vec<Part>,
}

fn store_error(e: StoreError) -> AppError {
    match e {
        StoreError::NoSuchUpload => AppError::with_status(
            StatusCode::NOT_FOUND,
            "NoSuchUpload",
            "uploadId is not a multipart upload in progress for this key (finished, aborted or never created)",
        ),
        StoreError::InvalidPart(m) => AppError::bad_request(
            "InvalidPart",
            format!("parts: S3 refused the part list: {m}"),
        ),
        StoreError::Denied(m) => AppError::internal("S3 access", m),
        StoreError::Other(m) => AppError::internal("S3", m),
    }
}

/// The key of a call, which must be one this signer could have issued.
fn our_key(state: &AppState, key: Option<String>) -> Result<String, AppError> {
    let key = key
        .filter(|k| !k.is_empty())
        .ok_or_else(|| AppError::bad_request("MissingKey", "query parameter key is required"))?;
    if !keys::is_our_key(&state.config.key_prefix, &key) {
        return Err(AppError::bad_request(
            "InvalidKey",
            format!(
                "key {key:?} was not issued by this signer (keys start with {:?})",
                state.config.key_prefix
            ),
        ));
    }
    Ok(key)
}

fn check_upload_id(id: &str) -> Result<(), AppError> {
    if id.is_empty() || id.len() > 1024 || id.chars().any(|c| c.is_control()) {
        return Err(AppError::bad_request(
            "InvalidUploadId",
            "uploadId is empty, too long or has control characters",
        ));
    }
    Ok(())
}

fn part_number(s: &str) -> Result<i32, AppError> {
    match s.trim().parse::<i32>() {
        Ok(n) if (1..=MAX_PART).contains(&n) => Ok(n),
        _ => Err(AppError::bad_request(
            "InvalidPartNumber",
            format!("partNumber {s:?} is not an integer from 1 to {MAX_PART}"),
        )),
    }
}

/// `POST /s3/multipart` → `{key, uploadId}`.
pub async fn create(
    State(state): State<AppState>,
    body: Result<Json<CreateMultipart>, JsonRejection>,
) -> Result<Json<Value>, AppError> {
    let Json(req) = body.map_err(json_error)?;
    let content_type = check_content_type(&state, req.content_type.as_deref())?;
    check_size(&state, req.size)?;
    let metadata = check_metadata(&state, req.metadata.as_ref())?;
    let key = keys::build_key(
        &state.config.key_prefix,
        &keys::random_id(),
        req.filename.as_deref(),
        &content_type,
    );
    let upload_id = state
        .store
        .create_multipart(&key, &content_type, &metadata)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({"key": key, "uploadId": upload_id})))
}

async fn sign_part(
    state: &AppState,
    key: &str,
    upload_id: &str,
    part: i32,
) -> Result<(String, u64), AppError> {
    let creds = credentials(state).await?;
    let (now, expires) = lifetime(state, &creds)?;
    let part = part.to_string();
    let url = state.presigner.presign(
        &creds,
        now,
        &PresignInput {
            method: "PUT",
            key,
            params: &[
                ("x-id", "UploadPart"),
                ("partNumber", &part),
                ("uploadId", upload_id),
            ],
            headers: &[],
            expires,
        },
    );
    Ok((url, expires.as_secs()))
}

/// `GET /s3/multipart/{uploadId}/{partNumber}?key=` → `{url, expires}`.
pub async fn sign_one(
    State(state): State<AppState>,
    Path((upload_id, part)): Path<(String, String)>,
    query: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(q) = query.map_err(|e| AppError::bad_request("InvalidQuery", e.body_text()))?;
    let key = our_key(&state, q.key)?;
    check_upload_id(&upload_id)?;
    let n = part_number(&part)?;
    let (url, expires) = sign_part(&state, &key, &upload_id, n).await?;
    Ok(Json(json!({"url": url, "expires": expires})))
}

/// `GET /s3/multipart/{uploadId}/batch?key=&partNumbers=1,2,3` → `{presignedUrls: {"1": url}}`.
pub async fn sign_batch(
    State(state): State<AppState>,
    Path(upload_id): Path<String>,
    query: Result<Query<BatchQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(q) = query.map_err(|e| AppError::bad_request("InvalidQuery", e.body_text()))?;
    let key = our_key(&state, q.key)?;
    check_upload_id(&upload_id)?;
    let numbers = q.part_numbers.unwrap_or_default();
    let parts = numbers
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(part_number)
        .collect::<Result<Vec<_>, _>>()?;
    if parts.is_empty() || parts.len() > 1000 {
        return Err(AppError::bad_request(
            "InvalidPartNumber",
            "partNumbers must list 1 to 1000 part numbers, comma-separated",
        ));
    }
    let mut urls = serde_json::Map::new();
    for n in parts {
        let (url, _) = sign_part(&state, &key, &upload_id, n).await?;
        urls.insert(n.to_string(), Value::String(url));
    }
    Ok(Json(json!({"presignedUrls": urls})))
}

/// `GET /s3/multipart/{uploadId}?key=` → `[{PartNumber, Size, ETag}]`.
pub async fn list(
    State(state): State<AppState>,
    Path(upload_id): Path<String>,
    query: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Json<Vec<Part>>, AppError> {
    let Query(q) = query.map_err(|e| AppError::bad_request("InvalidQuery", e.body_text()))?;
    let key = our_key(&state, q.key)?;
    check_upload_id(&upload_id)?;
    Ok(Json(
        state
            .store
            .list_parts(&key, &upload_id)
            .await
            .map_err(store_error)?,
    ))
}

/// `POST /s3/multipart/{uploadId}/complete?key=` with `{parts: [{PartNumber, ETag}]}` →
/// `{location, key}`.
pub async fn complete(
    State(state): State<AppState>,
    Path(upload_id): Path<String>,
    query: Result<Query<KeyQuery>, QueryRejection>,
    body: Result<Json<CompleteBody>, JsonRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(q) = query.map_err(|e| AppError::bad_request("InvalidQuery", e.body_text()))?;
    let key = our_key(&state, q.key)?;
    check_upload_id(&upload_id)?;
    let Json(body) = body.map_err(json_error)?;
    if body.parts.is_empty() {
        return Err(AppError::bad_request(
            "InvalidPart",
            "parts must list at least one {PartNumber, ETag}",
        ));
    }
    let mut parts = body.parts;
    parts.sort_by_key(|p| p.number);
    if let Some(p) = parts
        .iter()
        .find(|p| !(1..=MAX_PART).contains(&p.number) || p.etag.is_empty())
    {
        return Err(AppError::bad_request(
            "InvalidPart",
            format!(
                "part {}: PartNumber must be 1..{MAX_PART} and ETag non-empty",
                p.number
            ),
        ));
    }
    // The size limit, enforced on what S3 actually stored.
    let stored = state
        .store
        .list_parts(&key, &upload_id)
        .await
        .map_err(store_error)?;
    let total: i64 = stored
        .iter()
        .filter(|s| parts.iter().any(|p| p.number == s.number))
        .map(|s| s.size)
        .sum();
    if total > i64::try_from(state.config.max_size_bytes).unwrap_or(i64::MAX) {
        state
            .store
            .abort_multipart(&key, &upload_id)
            .await
            .map_err(store_error)?;
        return Err(AppError::with_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "TooLarge",
            format!(
                "the upload is {total} bytes, over the maximum of {} bytes; it was aborted",
                state.config.max_size_bytes
            ),
        ));
    }
    state
        .store
        .complete_multipart(&key, &upload_id, &parts)
        .await
        .map_err(store_error)?;
    let location = format!(
        "{}/{}",
        state.presigner.bucket_url().trim_end_matches('/'),
        key
    );
    Ok(Json(json!({"location": location, "key": key})))
}

/// `DELETE /s3/multipart/{uploadId}?key=` → `{}`.
pub async fn abort(
    State(state): State<AppState>,
    Path(upload_id): Path<String>,
    query: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(q) = query.map_err(|e| AppError::bad_request("InvalidQuery", e.body_text()))?;
    let key = our_key(&state, q.key)?;
    check_upload_id(&upload_id)?;
    state
        .store
        .abort_multipart(&key, &upload_id)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({})))
}
