//! Multipart uploads, with the request and response shapes Uppy's `@uppy/aws-s3` plugin
//! expects from a companion server (served under `/s3/multipart` and `/uploads/multipart`).
//!
//! In: create/sign/list/complete/abort calls. Out: presigned part URLs (pure signing) and
//! the S3 calls that need the bucket's credentials (create, list, complete, abort). A part
//! URL cannot carry a size limit, so `complete` adds up the stored parts and refuses (and
//! aborts) an upload larger than the bucket's maximum.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{AppError, ErrorCode};
use crate::json::JsonBody;
use crate::keys;
use crate::presign::PresignInput;
use crate::store::{Part, StoreError};
use crate::uploads::{allowed_metadata, check_content_type, check_size, credentials, lifetime};

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
    /// Uppy sends the file's meta here (`name`, `type`, `relativePath: null`, ...): keys the
    /// signer allows with string values are kept, the rest dropped.
    pub metadata: Option<BTreeMap<String, Value>>,
    /// The user the upload is for; every later call names it too.
    pub owner: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct KeyQuery {
    key: Option<String>,
    owner: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SignQuery {
    key: Option<String>,
    owner: Option<String>,
    /// The part's exact size, signed as content-length when given.
    size: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchQuery {
    key: Option<String>,
    owner: Option<String>,
    part_numbers: Option<String>,
    /// The parts' exact sizes, in the order of `partNumbers`, each signed as content-length.
    sizes: Option<String>,
}

/// S3's largest part.
const MAX_PART_BYTES: u64 = 5 * 1024 * 1024 * 1024;

fn part_size(state: &AppState, size: u64) -> Result<u64, AppError> {
    let max = state.config.max_size_bytes.min(MAX_PART_BYTES);
    if size == 0 || size > max {
        return Err(AppError::bad_request(
            ErrorCode::InvalidPartSize,
            format!("size {size} is not a part size this bucket allows; allowed: 1 to {max} bytes"),
        ));
    }
    Ok(size)
}

#[derive(Debug, Deserialize)]
pub struct CompleteBody {
    parts: Vec<Part>,
}

fn store_error(e: StoreError) -> AppError {
    match e {
        StoreError::NoSuchUpload => AppError::with_status(
            StatusCode::NOT_FOUND,
            ErrorCode::NoSuchUpload,
            "uploadId is not a multipart upload in progress for this key (finished, aborted or never created)",
        ),
        StoreError::InvalidPart(m) => AppError::bad_request(
            ErrorCode::InvalidPart,
            format!("parts: S3 refused the part list: {m}"),
        ),
        StoreError::Changed => AppError::with_status(
            StatusCode::CONFLICT,
            ErrorCode::KeyExists,
            "the key already holds an object (this upload was completed before)",
        ),
        StoreError::Denied(m) => AppError::internal("S3 access", m),
        StoreError::Other(m) => AppError::internal("S3", m),
    }
}

/// The key of a call, which must be one this signer could have issued, for `owner`.
fn our_key(state: &AppState, key: Option<String>, owner: Option<&str>) -> Result<String, AppError> {
    let key = key.filter(|k| !k.is_empty()).ok_or_else(|| {
        AppError::bad_request(ErrorCode::MissingKey, "query parameter key is required")
    })?;
    if !keys::is_our_key(&state.upload_prefix, &key) {
        return Err(AppError::bad_request(
            ErrorCode::InvalidKey,
            format!(
                "key {key:?} was not issued by this signer (keys start with {:?})",
                state.upload_prefix
            ),
        ));
    }
    crate::uploads::check_owner(state, &key, owner)?;
    Ok(key)
}

fn check_upload_id(id: &str) -> Result<(), AppError> {
    if id.is_empty() || id.len() > 1024 || id.chars().any(|c| c.is_control()) {
        return Err(AppError::bad_request(
            ErrorCode::InvalidUploadId,
            "uploadId is empty, too long or has control characters",
        ));
    }
    Ok(())
}

fn part_number(s: &str) -> Result<i32, AppError> {
    match s.trim().parse::<i32>() {
        Ok(n) if (1..=MAX_PART).contains(&n) => Ok(n),
        _ => Err(AppError::bad_request(
            ErrorCode::InvalidPartNumber,
            format!("partNumber {s:?} is not an integer from 1 to {MAX_PART}"),
        )),
    }
}

/// `POST /s3/multipart` → `{key, uploadId}`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> Result<Json<Value>, AppError> {
    let req: CreateMultipart = body.parse()?;
    let content_type = check_content_type(&state, req.content_type.as_deref())?;
    check_size(&state, req.size)?;
    let metadata = allowed_metadata(
        &state,
        req.metadata
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.clone())),
    );
    let scope = crate::uploads::start_upload(&state, caller.owner(req.owner.as_deref())?)?;
    let cap = state.config.max_open_multipart;
    // Counting and creating under one lock per folder: in this process the cap holds exactly
    // (across processes, two creates at the same moment may each see one slot free).
    let _turn = if cap > 0 {
        Some(state.multipart_creates.lock(&scope).await)
    } else {
        None
    };
    if cap > 0 {
        let open = state
            .store
            .count_open_multipart(&scope, cap as usize)
            .await
            .map_err(store_error)?;
        if open >= cap as usize {
            return Err(AppError::Throttled {
                code: ErrorCode::TooManyOpenUploads,
                message: format!(
                    "{} multipart uploads are already in progress under {scope:?} (at most {cap}): complete or abort one first",
                    open
                ),
                retry_after: std::time::Duration::from_secs(60),
            });
        }
    }
    let key = keys::build_key(&scope, &keys::random_id(), &content_type);
    let upload_id = state
        .store
        .create_multipart(
            &key,
            &content_type,
            &metadata,
            state.config.acl(),
            state.config.tagging(),
        )
        .await
        .map_err(store_error)?;
    Ok(Json(json!({"key": key, "uploadId": upload_id})))
}

async fn sign_part(
    state: &AppState,
    key: &str,
    upload_id: &str,
    part: i32,
    size: Option<u64>,
) -> Result<(String, u64), AppError> {
    let creds = credentials(state).await?;
    let (now, expires) = lifetime(state, &creds)?;
    let part = part.to_string();
    let size = size.map(|s| s.to_string());
    let headers: Vec<(&str, &str)> = size
        .iter()
        .map(|s| ("content-length", s.as_str()))
        .collect();
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
            headers: &headers,
            expires,
        },
    );
    Ok((url, expires.as_secs()))
}

/// `GET /s3/multipart/{uploadId}/{partNumber}?key=&size=` → `{url, expires}`; with `size`,
/// S3 refuses a part of any other size.
pub async fn sign_one(
    State(state): State<AppState>,
    caller: Caller,
    Path((upload_id, part)): Path<(String, String)>,
    query: Result<Query<SignQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(q) =
        query.map_err(|e| AppError::bad_request(ErrorCode::InvalidQuery, e.body_text()))?;
    let key = our_key(&state, q.key, caller.owner(q.owner.as_deref())?)?;
    check_upload_id(&upload_id)?;
    let n = part_number(&part)?;
    let size = q.size.map(|s| part_size(&state, s)).transpose()?;
    let (url, expires) = sign_part(&state, &key, &upload_id, n, size).await?;
    Ok(Json(json!({"url": url, "expires": expires})))
}

/// `GET /s3/multipart/{uploadId}/batch?key=&partNumbers=1,2,3&sizes=a,b,c` →
/// `{presignedUrls: {"1": url}}`; with `sizes`, each part's size is signed.
pub async fn sign_batch(
    State(state): State<AppState>,
    caller: Caller,
    Path(upload_id): Path<String>,
    query: Result<Query<BatchQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(q) =
        query.map_err(|e| AppError::bad_request(ErrorCode::InvalidQuery, e.body_text()))?;
    let key = our_key(&state, q.key, caller.owner(q.owner.as_deref())?)?;
    check_upload_id(&upload_id)?;
    let numbers = q.part_numbers.unwrap_or_default();
    let parts = numbers
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(part_number)
        .collect::<Result<Vec<_>, _>>()?;
    if parts.is_empty() || parts.len() > 1000 {
        return Err(AppError::bad_request(
            ErrorCode::InvalidPartNumber,
            "partNumbers must list 1 to 1000 part numbers, comma-separated",
        ));
    }
    let sizes: Vec<Option<u64>> = match q.sizes.as_deref().filter(|s| !s.trim().is_empty()) {
        None => vec![None; parts.len()],
        Some(list) => {
            let sizes = list
                .split(',')
                .map(|s| {
                    s.trim()
                        .parse::<u64>()
                        .map_err(|_| {
                            AppError::bad_request(
                                ErrorCode::InvalidPartSize,
                                format!("sizes: {s:?} is not a number of bytes"),
                            )
                        })
                        .and_then(|n| part_size(&state, n))
                        .map(Some)
                })
                .collect::<Result<Vec<_>, _>>()?;
            if sizes.len() != parts.len() {
                return Err(AppError::bad_request(
                    ErrorCode::InvalidPartSize,
                    "sizes must list one size per part number, in the same order",
                ));
            }
            sizes
        }
    };
    let mut urls = serde_json::Map::new();
    for (n, size) in parts.into_iter().zip(sizes) {
        let (url, _) = sign_part(&state, &key, &upload_id, n, size).await?;
        urls.insert(n.to_string(), Value::String(url));
    }
    Ok(Json(json!({"presignedUrls": urls})))
}

/// `GET /s3/multipart/{uploadId}?key=` → `[{PartNumber, Size, ETag}]`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(upload_id): Path<String>,
    query: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Json<Vec<Part>>, AppError> {
    let Query(q) =
        query.map_err(|e| AppError::bad_request(ErrorCode::InvalidQuery, e.body_text()))?;
    let key = our_key(&state, q.key, caller.owner(q.owner.as_deref())?)?;
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
    caller: Caller,
    Path(upload_id): Path<String>,
    query: Result<Query<KeyQuery>, QueryRejection>,
    body: JsonBody,
) -> Result<Json<Value>, AppError> {
    let Query(q) =
        query.map_err(|e| AppError::bad_request(ErrorCode::InvalidQuery, e.body_text()))?;
    let key = our_key(&state, q.key, caller.owner(q.owner.as_deref())?)?;
    check_upload_id(&upload_id)?;
    let body: CompleteBody = body.parse()?;
    if body.parts.is_empty() {
        return Err(AppError::bad_request(
            ErrorCode::InvalidPart,
            "parts must list at least one {PartNumber, ETag}",
        ));
    }
    // S3 gets only the parts it listed, with its own ETags, and only when every part the
    // client named is among them and the total is within the maximum; any mismatch aborts
    // the upload, so a refused completion cannot be retried into something else.
    let stored = state
        .store
        .list_parts(&key, &upload_id)
        .await
        .map_err(store_error)?;
    let completed = match completed_parts(&body.parts, &stored, state.config.max_size_bytes) {
        Ok(parts) => parts,
        Err(refusal) => {
            state
                .store
                .abort_multipart(&key, &upload_id)
                .await
                .map_err(store_error)?;
            return Err(refusal);
        }
    };
    let total: i64 = completed.iter().map(|p| p.size).sum();
    state
        .store
        .complete_multipart(&key, &upload_id, &completed, total)
        .await
        .map_err(store_error)?;
    let location = format!(
        "{}/{}",
        state.presigner.bucket_url().trim_end_matches('/'),
        key
    );
    Ok(Json(json!({"location": location, "key": key})))
}

/// Pure: the parts to complete with (S3's, in order), or why the client's list is refused.
pub fn completed_parts(
    named: &[Part],
    stored: &[Part],
    max_size: u64,
) -> Result<Vec<Part>, AppError> {
    let unquote = |e: &str| e.trim().trim_matches('"').to_ascii_lowercase();
    let mut out: Vec<Part> = Vec::with_capacity(named.len());
    for p in named {
        if !(1..=MAX_PART).contains(&p.number) {
            return Err(AppError::bad_request(
                ErrorCode::InvalidPart,
                format!(
                    "part {}: PartNumber must be 1..{MAX_PART}; the upload was aborted",
                    p.number
                ),
            ));
        }
        if out.iter().any(|o| o.number == p.number) {
            return Err(AppError::bad_request(
                ErrorCode::InvalidPart,
                format!("part {} is named twice; the upload was aborted", p.number),
            ));
        }
        let Some(s) = stored.iter().find(|s| s.number == p.number) else {
            return Err(AppError::bad_request(
                ErrorCode::InvalidPart,
                format!(
                    "part {} was never uploaded; the upload was aborted",
                    p.number
                ),
            ));
        };
        // A store that lists no ETag (the embedded dev store) leaves the check to S3's own
        // at completion, which refuses a part whose ETag does not match.
        if !s.etag.is_empty() && unquote(&s.etag) != unquote(&p.etag) {
            return Err(AppError::bad_request(
                ErrorCode::InvalidPart,
                format!(
                    "part {}: ETag {:?} is not the stored part's; the upload was aborted",
                    p.number, p.etag
                ),
            ));
        }
        let etag = if s.etag.is_empty() { &p.etag } else { &s.etag };
        out.push(Part {
            etag: etag.clone(),
            ..s.clone()
        });
    }
    out.sort_by_key(|p| p.number);
    let total: i64 = out.iter().map(|p| p.size).sum();
    if total > i64::try_from(max_size).unwrap_or(i64::MAX) {
        return Err(AppError::with_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!(
                "the upload is {total} bytes, over the maximum of {max_size} bytes; it was aborted"
            ),
        ));
    }
    Ok(out)
}

/// `DELETE /s3/multipart/{uploadId}?key=` → `{}`.
pub async fn abort(
    State(state): State<AppState>,
    caller: Caller,
    Path(upload_id): Path<String>,
    query: Result<Query<KeyQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(q) =
        query.map_err(|e| AppError::bad_request(ErrorCode::InvalidQuery, e.body_text()))?;
    let key = our_key(&state, q.key, caller.owner(q.owner.as_deref())?)?;
    check_upload_id(&upload_id)?;
    state
        .store
        .abort_multipart(&key, &upload_id)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({})))
}
