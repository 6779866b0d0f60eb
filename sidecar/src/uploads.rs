//! `POST /uploads`, `GET /uploads` (drop-in for the original Lambda) and `GET /s3/params`
//! (Uppy's single-upload call).
//!
//! In: the app's JSON request. Out: a presigned PUT URL or POST form, with the rules of the
//! bucket (content type, size, key prefix, expiry) signed into it so S3 enforces them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use smallvec::SmallVec;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{AppError, ErrorCode};
use crate::json::{JsonBody, Text};
use crate::keys;
use crate::presign::{Credentials, PostInput, PresignInput, rfc3339};

/// S3's limit on user metadata (keys plus values).
const MAX_METADATA_BYTES: usize = 2048;

/// Body of `POST /uploads`. Strings borrow from the request body where they can.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUpload<'a> {
    /// Only its extension is used.
    #[serde(borrow)]
    pub filename: Option<Text<'a>>,
    #[serde(borrow)]
    pub content_type: Option<Text<'a>>,
    /// Exact size in bytes, signed as content-length. A PUT URL needs it (S3 can enforce a
    /// size only when it is signed in); without it the answer is a POST form.
    pub size: Option<u64>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// `PUT` or `POST` (a form whose policy carries the size range). Default: PUT when `size`
    /// is given, else POST.
    #[serde(borrow)]
    pub method: Option<Text<'a>>,
    /// Base64 SHA-256 of the file (what `crypto.subtle.digest` gives, base64-encoded): signed
    /// as `x-amz-checksum-sha256`, so S3 refuses other bytes. PUT only.
    #[serde(rename = "checksumSHA256", borrow)]
    pub checksum_sha256: Option<Text<'a>>,
    /// Base64 MD5 of the file: signed as `Content-MD5`. PUT only.
    #[serde(rename = "contentMD5", borrow)]
    pub content_md5: Option<Text<'a>>,
    /// The user the upload is for (the app's own id, set by its backend): the key goes under
    /// `<prefix><owner>/`.
    #[serde(borrow)]
    pub owner: Option<Text<'a>>,
}

/// A client's digest, checked for shape: base64 of exactly `bytes` bytes.
fn digest(
    field: &'static str,
    value: Option<&str>,
    bytes: usize,
) -> Result<Option<String>, AppError> {
    use base64::Engine as _;
    let Some(v) = value.map(str::trim) else {
        return Ok(None);
    };
    match base64::engine::general_purpose::STANDARD.decode(v) {
        Ok(d) if d.len() == bytes => Ok(Some(v.to_owned())),
        _ => Err(AppError::bad_request(
            ErrorCode::InvalidChecksum,
            format!(
                "{field} must be the base64 of a {bytes}-byte digest, such as btoa of crypto.subtle.digest's result"
            ),
        )),
    }
}

fn query_error(rej: QueryRejection) -> AppError {
    AppError::bad_request(ErrorCode::InvalidQuery, rej.body_text())
}

/// Validates a client's content type against the allowed list. Returns the lowercase
/// media type to sign, without parameters.
pub fn check_content_type<'c>(
    state: &AppState,
    ct: Option<&'c str>,
) -> Result<Cow<'c, str>, AppError> {
    let allowed = || state.config.allowed_content_types.join(", ");
    let Some(ct) = ct.map(str::trim).filter(|c| !c.is_empty()) else {
        return Err(AppError::bad_request(
            ErrorCode::MissingContentType,
            format!("contentType is required; allowed: {}", allowed()),
        ));
    };
    let media = ct.split(';').next().unwrap_or_default().trim();
    let media: Cow<'c, str> = if media.bytes().any(|b| b.is_ascii_uppercase()) {
        media.to_ascii_lowercase().into()
    } else {
        media.into()
    };
    if !crate::config::valid_content_type_pattern(&media) || media.ends_with("/*") {
        return Err(AppError::bad_request(
            ErrorCode::InvalidContentType,
            format!("contentType {ct:?} is not a media type such as image/jpeg"),
        ));
    }
    if !state.config.allows_content_type(&media) {
        return Err(AppError::bad_request(
            ErrorCode::ContentTypeNotAllowed,
            format!(
                "contentType {media:?} is not allowed; allowed: {}",
                allowed()
            ),
        ));
    }
    Ok(media)
}

/// Validates metadata against the allowed keys and S3's limits.
pub fn check_metadata(
    state: &AppState,
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<Vec<(String, String)>, AppError> {
    let Some(metadata) = metadata.filter(|m| !m.is_empty()) else {
        return Ok(Vec::new());
    };
    let allowed = &state.config.allowed_metadata;
    let mut total = 0;
    let mut out = Vec::with_capacity(metadata.len());
    for (k, v) in metadata {
        let key = k.to_ascii_lowercase();
        if !allowed.contains(&key) {
            let msg = if allowed.is_empty() {
                "metadata is not allowed by this signer (UPLOADBUCKET_ALLOWED_METADATA is empty)"
                    .to_owned()
            } else {
                format!(
                    "metadata key {k:?} is not allowed; allowed: {}",
                    allowed.join(", ")
                )
            };
            return Err(AppError::bad_request(ErrorCode::MetadataNotAllowed, msg));
        }
        if !v.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
            return Err(AppError::bad_request(
                ErrorCode::InvalidMetadata,
                format!("metadata.{key}: values must be printable ASCII"),
            ));
        }
        total += key.len() + v.len();
        out.push((key, v.clone()));
    }
    if total > MAX_METADATA_BYTES {
        return Err(AppError::bad_request(
            ErrorCode::InvalidMetadata,
            format!("metadata is {total} bytes; S3 allows at most {MAX_METADATA_BYTES}"),
        ));
    }
    Ok(out)
}

pub fn check_size(state: &AppState, size: Option<u64>) -> Result<(), AppError> {
    match size {
        Some(0) => Err(AppError::bad_request(
            ErrorCode::InvalidSize,
            "size must be at least 1 byte",
        )),
        Some(n) if n > state.config.max_size_bytes => Err(AppError::with_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!(
                "size {n} exceeds the maximum of {} bytes",
                state.config.max_size_bytes
            ),
        )),
        _ => Ok(()),
    }
}

/// A PUT URL without a signed size lets its holder store any size: refused unless the bucket
/// opted into that (`allowUnsizedPut`).
pub fn require_size(state: &AppState) -> Result<(), AppError> {
    if state.config.allow_unsized_put {
        return Ok(());
    }
    Err(AppError::bad_request(
        ErrorCode::SizeRequired,
        format!(
            "size is required for a PUT URL: S3 enforces the maximum ({} bytes) only on a size signed into the URL; send the file's exact size, or use a POST form (POST /uploads with \"method\": \"POST\"), whose policy carries the size range",
            state.config.max_size_bytes
        ),
    ))
}

/// A POST form for `key`, as the answer `{method, url, fields, key, expiresAt, maxSizeBytes}`:
/// its policy pins key, content type, metadata and 1..=`max` bytes.
fn post_form(
    state: &AppState,
    creds: &Credentials,
    key: &str,
    content_type: &str,
    max: u64,
    metadata: &[(String, String)],
) -> Result<Value, AppError> {
    let (now, expires) = lifetime(state, creds)?;
    let input = PostInput {
        key,
        content_type,
        max_size: max,
        metadata,
        disposition: state.config.disposition(content_type),
        acl: state.config.acl(),
        tagging: state.config.tagging_xml(),
        expires,
    };
    let form = state.presigner.presign_post(creds, now, &input);
    let fields: serde_json::Map<String, Value> = form
        .fields
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    Ok(json!({
        "method": "POST",
        "url": form.url,
        "fields": fields,
        "key": key,
        "expiresAt": rfc3339(now + expires),
        "maxSizeBytes": max,
    }))
}

/// The URL lifetime: the configured one, cut short if the credentials expire sooner.
pub fn lifetime(
    state: &AppState,
    creds: &Credentials,
) -> Result<(std::time::SystemTime, Duration), AppError> {
    let now = (state.now)();
    let mut expires = Duration::from_secs(state.config.expires_seconds);
    if let Some(exp) = creds.expiry {
        let left = exp.duration_since(now).unwrap_or_default();
        if left < Duration::from_secs(1) {
            return Err(AppError::unavailable(
                "credentials",
                "credentials have expired",
            ));
        }
        expires = expires.min(Duration::from_secs(left.as_secs()));
    }
    Ok((now, expires))
}

pub async fn credentials(state: &AppState) -> Result<Arc<Credentials>, AppError> {
    let result = match state.credentials.ready() {
        Some(c) => Ok(c),
        None => state.credentials.credentials().await,
    };
    state.metrics.credentials(result.is_ok());
    result.map_err(|e| AppError::unavailable("credentials", e))
}

/// Starts an upload for `owner` on any route that makes a key: checks the owner (400
/// `InvalidOwner`; none where the bucket requires one, 400 `OwnerRequired`), takes one start
/// from its quota, and answers where the key goes (the prefix, or the owner's folder in it).
pub fn start_upload<'s>(
    state: &'s AppState,
    owner: Option<&str>,
) -> Result<Cow<'s, str>, AppError> {
    let prefix = owner_scope(state, owner)?;
    take_start(state, owner)?;
    Ok(prefix)
}

fn owner_scope<'s>(state: &'s AppState, owner: Option<&str>) -> Result<Cow<'s, str>, AppError> {
    match owner {
        Some(o) if !keys::valid_owner(o) => Err(AppError::bad_request(
            ErrorCode::InvalidOwner,
            format!(
                "owner {o:?} must be 1 to {} characters of A-Z a-z 0-9 . _ - @, not starting with '.'",
                keys::MAX_OWNER
            ),
        )),
        None if state.config.require_owner => Err(AppError::bad_request(
            ErrorCode::OwnerRequired,
            "owner is required by this bucket (uploads.requireOwner): your backend names the user the upload is for",
        )),
        _ => Ok(keys::scope(&state.upload_prefix, owner)),
    }
}

/// Takes one upload start from `owner`'s quota (429 `TooManyUploads` with Retry-After when
/// it is used up).
fn take_start(state: &AppState, owner: Option<&str>) -> Result<(), AppError> {
    let owner = owner.unwrap_or_default();
    state
        .limiter
        .take(owner)
        .map_err(|wait| AppError::Throttled {
            code: ErrorCode::TooManyUploads,
            message: format!(
                "{} may start {} uploads a minute; retry in {} s",
                if owner.is_empty() {
                    "a client without an owner".to_owned()
                } else {
                    format!("owner {owner:?}")
                },
                state.config.urls_per_minute,
                wait.as_secs_f64().ceil()
            ),
            retry_after: wait,
        })
}

/// A call on an existing upload must name the owner its key belongs to (and none for a key
/// outside any owner's folder): 403 `OwnerMismatch` otherwise.
pub fn check_owner(state: &AppState, key: &str, owner: Option<&str>) -> Result<(), AppError> {
    check_owner_under(&state.upload_prefix, key, owner)
}

/// [`check_owner`] for a key under `prefix`.
pub fn check_owner_under(prefix: &str, key: &str, owner: Option<&str>) -> Result<(), AppError> {
    let holder = keys::owner_of(prefix, key);
    if holder == owner.filter(|o| !o.is_empty()) {
        return Ok(());
    }
    Err(AppError::with_status(
        axum::http::StatusCode::FORBIDDEN,
        ErrorCode::OwnerMismatch,
        match owner {
            Some(o) => format!("key {key:?} does not belong to owner {o:?}"),
            None => format!("key {key:?} belongs to an owner: name it (owner)"),
        },
    ))
}

/// `POST /uploads`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody,
) -> Result<Response, AppError> {
    let req: CreateUpload = body.parse()?;
    let content_type = check_content_type(&state, req.content_type.as_deref())?;
    check_size(&state, req.size)?;
    let metadata = check_metadata(&state, req.metadata.as_ref())?;
    let method = match req.method.as_deref() {
        None if req.size.is_some() => "PUT",
        None => "POST",
        Some(m) if m.eq_ignore_ascii_case("PUT") => "PUT",
        Some(m) if m.eq_ignore_ascii_case("POST") => "POST",
        Some(m) => {
            return Err(AppError::bad_request(
                ErrorCode::InvalidMethod,
                format!("method {m:?} is not supported; allowed: PUT, POST"),
            ));
        }
    };
    if method == "PUT" && req.size.is_none() {
        require_size(&state)?;
    }
    let sha256 = digest("checksumSHA256", req.checksum_sha256.as_deref(), 32)?;
    let md5 = digest("contentMD5", req.content_md5.as_deref(), 16)?;
    if method == "POST" && (sha256.is_some() || md5.is_some()) {
        return Err(AppError::bad_request(
            ErrorCode::ChecksumNeedsPut,
            "checksumSHA256 and contentMD5 are signed into PUT URLs only: send size too (and no method, or \"PUT\")",
        ));
    }
    let prefix = start_upload(&state, caller.owner(req.owner.as_deref())?)?;
    let key = keys::build_key(&prefix, &keys::random_id(), &content_type);
    let creds = credentials(&state).await?;

    if method == "POST" {
        let max = req.size.unwrap_or(state.config.max_size_bytes);
        let form = post_form(&state, &creds, &key, &content_type, max, &metadata)?;
        return Ok((StatusCode::CREATED, Json(form)).into_response());
    }
    let (now, expires) = lifetime(&state, &creds)?;
    // Before the headers are made, so that they are not held across its await.
    let sdk_url = match &state.sdk_signer {
        // Boxed: the SDK's presign future is kilobytes, and inline it would make every
        // request's future that large (axum moves it into its box on each call).
        Some(_) => Some(
            Box::pin(sdk_presign_put(
                &state,
                &key,
                &content_type,
                req.size,
                &metadata,
                [md5.as_deref(), sha256.as_deref()],
                now,
                expires,
            ))
            .await?,
        ),
        None => None,
    };

    let mut size_digits = itoa::Buffer::new();
    let size = req.size.map(|n| size_digits.format(n));
    let meta_names: Vec<String> = metadata
        .iter()
        .map(|(k, _)| format!("x-amz-meta-{k}"))
        .collect();
    // `if-none-match: *`: the URL creates its key once; a second PUT gets 412 instead of
    // replacing what was uploaded (and maybe already moderated).
    let mut headers: SmallVec<[(&str, &str); 8]> = SmallVec::new();
    headers.push(("content-type", &content_type));
    headers.push(("if-none-match", "*"));
    if let Some(size) = size {
        headers.push(("content-length", size));
    }
    if let Some(d) = state.config.disposition(&content_type) {
        headers.push(("content-disposition", d));
    }
    if let Some(acl) = state.config.acl() {
        headers.push(("x-amz-acl", acl));
    }
    if let Some(tags) = state.config.tagging() {
        headers.push(("x-amz-tagging", tags));
    }
    if let Some(v) = &md5 {
        headers.push(("content-md5", v));
    }
    if let Some(v) = &sha256 {
        headers.push(("x-amz-checksum-sha256", v));
    }
    for ((_, v), name) in metadata.iter().zip(&meta_names) {
        headers.push((name, v));
    }
    let input = PresignInput {
        method: "PUT",
        key: &key,
        params: &[("x-id", "PutObject")],
        headers: &headers,
        expires,
    };
    let url = match sdk_url {
        Some(url) => Url::Written(url),
        None if state.presigner.json_plain() => Url::SignedInPlace(&creds, now, &input),
        None => Url::Written(state.presigner.presign(&creds, now, &input)),
    };
    Ok(crate::json::response(
        StatusCode::CREATED,
        put_answer(&state.presigner, url, &headers, &key, now + expires),
    ))
}

/// The URL of a PUT answer: signed already, or to be signed straight into the answer (when
/// it needs no escaping there).
enum Url<'a> {
    Written(String),
    SignedInPlace(&'a Credentials, std::time::SystemTime, &'a PresignInput<'a>),
}

/// The answer to a PUT request, `{method, uploadURL, headers, key, expiresAt}`, written into
/// one buffer of the right size. `headers` are the signed ones the client must send, less
/// content-length, which the browser sets itself (JS may not).
fn put_answer(
    presigner: &crate::presign::Presigner,
    url: Url<'_>,
    headers: &[(&str, &str)],
    key: &str,
    expires_at: std::time::SystemTime,
) -> Vec<u8> {
    use crate::json::push_string;
    let headers = headers.iter().filter(|(k, _)| *k != "content-length");
    let url_len = match &url {
        Url::Written(u) => u.len(),
        Url::SignedInPlace(creds, _, input) => presigner.url_capacity(creds, input.key),
    };
    let size = 116
        + url_len
        + key.len()
        + headers
            .clone()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(br#"{"method":"PUT","uploadURL":"#);
    match url {
        Url::Written(u) => push_string(&mut out, &u),
        Url::SignedInPlace(creds, now, input) => {
            out.push(b'"');
            presigner.presign_into(&mut out, creds, now, input);
            out.push(b'"');
        }
    }
    out.extend_from_slice(br#","headers":{"#);
    for (i, (k, v)) in headers.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_string(&mut out, k);
        out.push(b':');
        push_string(&mut out, v);
    }
    out.extend_from_slice(br#"},"key":"#);
    push_string(&mut out, key);
    out.extend_from_slice(br#","expiresAt":""#);
    crate::presign::rfc3339_into(&mut out, expires_at);
    out.extend_from_slice(br#""}"#);
    out
}

/// The benchmark baseline: the same PUT presigned by aws-sdk-s3, signing the same headers as
/// the fast signer (the client's `[content-md5, x-amz-checksum-sha256]`, and what the bucket
/// sets).
#[allow(clippy::too_many_arguments)]
async fn sdk_presign_put(
    state: &AppState,
    key: &str,
    content_type: &str,
    size: Option<u64>,
    metadata: &[(String, String)],
    [md5, sha256]: [Option<&str>; 2],
    now: std::time::SystemTime,
    expires: Duration,
) -> Result<String, AppError> {
    let client = state
        .sdk_signer
        .as_ref()
        .ok_or_else(|| AppError::internal("SDK presign", "no SDK client"))?;
    let cfg = aws_sdk_s3::presigning::PresigningConfig::builder()
        .start_time(now)
        .expires_in(expires)
        .build()
        .map_err(|e| AppError::internal("presigning config", e))?;
    let mut req = client
        .put_object()
        .bucket(state.presigner.bucket())
        .key(key)
        .content_type(content_type)
        .set_content_length(size.and_then(|s| i64::try_from(s).ok()))
        .if_none_match("*");
    for (k, v) in metadata {
        req = req.metadata(k, v);
    }
    let config = &state.config;
    let req = req
        .set_content_disposition(config.disposition(content_type).map(String::from))
        .set_acl(config.acl().map(Into::into))
        .set_tagging(config.tagging().map(String::from))
        .set_content_md5(md5.map(String::from))
        .set_checksum_sha256(sha256.map(String::from));
    req.presigned(cfg)
        .await
        .map(|p| p.uri().to_owned())
        .map_err(|e| AppError::internal("SDK presign", aws_sdk_s3::error::DisplayErrorContext(e)))
}

/// A PUT URL signing the content type, and the exact size when given (see [`require_size`]).
async fn presign_put(
    state: &AppState,
    key: &str,
    content_type: &str,
    size: Option<u64>,
) -> Result<String, AppError> {
    let creds = credentials(state).await?;
    let (now, expires) = lifetime(state, &creds)?;
    let size = size.map(|s| s.to_string());
    let mut headers = vec![("content-type", content_type)];
    if let Some(s) = &size {
        headers.push(("content-length", s));
    }
    Ok(state.presigner.presign(
        &creds,
        now,
        &PresignInput {
            method: "PUT",
            key,
            params: &[("x-id", "PutObject")],
            headers: &headers,
            expires,
        },
    ))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacyQuery {
    content_type: Option<String>,
    size: Option<u64>,
    owner: Option<String>,
}

/// `GET /uploads?contentType=...&size=...`: `{uploadURL, Key}` like the original Lambda's
/// `getSignedURL`, so existing front ends keep working. The default type is the first
/// exact allowed type (the sample's `image/jpeg`). `size` is required (and signed), unless
/// the bucket allows unsized PUTs.
pub async fn legacy(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<LegacyQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(q) = query.map_err(query_error)?;
    // Its clients send only Content-Type, so the URL could not carry the pending tag, and an
    // unverified object would never expire.
    if state.config.verify {
        return Err(AppError::bad_request(
            ErrorCode::VerificationNeedsPost,
            "this bucket verifies uploads, and a GET /uploads URL cannot carry the pending tag: use POST /uploads (send the headers it returns)",
        ));
    }
    let default = state
        .config
        .allowed_content_types
        .iter()
        .find(|c| !c.ends_with("/*"))
        .cloned();
    let ct = q.content_type.or(default);
    let content_type = check_content_type(&state, ct.as_deref())?;
    // Nor can it carry `Content-Disposition: attachment`, which a public bucket needs for
    // anything a browser might render from the bucket's origin.
    if state.config.disposition(&content_type).is_some() {
        return Err(AppError::bad_request(
            ErrorCode::DispositionNeedsPost,
            format!(
                "this bucket is public, so {content_type} uploads must be stored as attachments, which a GET /uploads URL cannot carry: use POST /uploads (send the headers it returns)"
            ),
        ));
    }
    check_size(&state, q.size)?;
    if q.size.is_none() {
        require_size(&state)?;
    }
    let key = keys::build_key(
        &start_upload(&state, caller.owner(q.owner.as_deref())?)?,
        &keys::random_id(),
        &content_type,
    );
    let url = presign_put(&state, &key, &content_type, q.size).await?;
    Ok(Json(json!({"uploadURL": url, "Key": key})))
}

/// `GET /s3/params?filename=&type=&metadata[k]=v`: Uppy's single-upload call. The answer is
/// a POST form (`{method, url, fields, headers}`, what `@uppy/aws-s3` 6 always posts), whose
/// policy carries the size range: Uppy sends no size. Metadata keys the signer does not
/// allow, and any other parameter, are dropped, never refused.
pub async fn uppy_params(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(q) = query.map_err(query_error)?;
    let content_type = check_content_type(&state, q.get("type").map(String::as_str))?;
    let metadata = allowed_metadata(
        &state,
        q.iter().filter_map(|(k, v)| {
            let name = k.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((name, Value::String(v.clone())))
        }),
    );
    let key = keys::build_key(
        &start_upload(&state, caller.owner(q.get("owner").map(String::as_str))?)?,
        &keys::random_id(),
        &content_type,
    );
    let max = state.config.max_size_bytes;
    let creds = credentials(&state).await?;
    let mut form = post_form(&state, &creds, &key, &content_type, max, &metadata)?;
    form["headers"] = json!({});
    Ok(Json(form))
}

/// The metadata an Uppy-shaped call may set: allowed keys with string values; everything
/// else (Uppy's `name`, `type`, `relativePath: null`, numbers...) is dropped, and values
/// that S3 could not store as printable ASCII are dropped too.
pub fn allowed_metadata<'a>(
    state: &AppState,
    given: impl Iterator<Item = (&'a str, Value)>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut total = 0;
    for (k, v) in given {
        let key = k.to_ascii_lowercase();
        let Value::String(v) = v else { continue };
        if !state.config.allowed_metadata.contains(&key)
            || !v.chars().all(|c| c.is_ascii() && !c.is_ascii_control())
            || total + key.len() + v.len() > MAX_METADATA_BYTES
        {
            continue;
        }
        total += key.len() + v.len();
        out.push((key, v));
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presign::{Endpoint, Presigner};

    #[test]
    fn the_put_answer_is_the_json_it_describes() {
        let headers = [
            ("content-type", "image/jpeg"),
            ("if-none-match", "*"),
            ("content-length", "42"),
            ("x-amz-meta-note", "a \"quoted\" \\ value\t"),
        ];
        let url = "https://b.s3.eu-west-1.amazonaws.com/uploads/k%20x.jpg?x-id=PutObject&X-Amz-Signature=ab";
        let presigner = Presigner::new("b", "eu-west-1", Endpoint::aws("eu-west-1"));
        // 2026-12-01T10:00:00Z
        let expires_at = std::time::UNIX_EPOCH + Duration::from_secs(1_796_119_200);
        let body = put_answer(
            &presigner,
            Url::Written(url.into()),
            &headers,
            "uploads/k x.jpg",
            expires_at,
        );
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            parsed,
            json!({
                "method": "PUT",
                "uploadURL": url,
                "headers": {
                    "content-type": "image/jpeg",
                    "if-none-match": "*",
                    "x-amz-meta-note": "a \"quoted\" \\ value\t",
                },
                "key": "uploads/k x.jpg",
                "expiresAt": "2026-12-01T10:00:00Z",
            })
        );
        // Sized right: no growth while writing.
        assert!(body.capacity() >= body.len() && body.capacity() < body.len() + 128);
    }

    /// A URL signed straight into the answer makes the answer a URL signed on its own would:
    /// byte for byte, for keys and header values that need encoding or escaping, with and
    /// without a session token. An origin with something JSON escapes is never written in
    /// place.
    #[test]
    fn urls_signed_in_place_make_the_same_answer() {
        let presigner = Presigner::new("b", "eu-west-1", Endpoint::aws("eu-west-1"));
        assert!(presigner.json_plain());
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_796_119_200);
        for token in [None, Some("IQo/tok+en==")] {
            let creds = Credentials {
                access_key_id: "AKIAEXAMPLE".into(),
                secret_access_key: "secret".into(),
                session_token: token.map(String::from),
                expiry: None,
            };
            for key in ["uploads/a.jpg", "uploads/u@x/é \"q\".png"] {
                let headers = [
                    ("content-type", "image/png"),
                    ("if-none-match", "*"),
                    ("content-length", "7"),
                    ("x-amz-meta-note", "a \"quoted\" \\ value"),
                ];
                let input = PresignInput {
                    method: "PUT",
                    key,
                    params: &[("x-id", "PutObject")],
                    headers: &headers,
                    expires: Duration::from_secs(900),
                };
                let written = Url::Written(presigner.presign(&creds, now, &input));
                let in_place = Url::SignedInPlace(&creds, now, &input);
                let expires_at = now + input.expires;
                let a = put_answer(&presigner, written, &headers, key, expires_at);
                let b = put_answer(&presigner, in_place, &headers, key, expires_at);
                assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
                let url = presigner.presign(&creds, now, &input);
                let parsed: Value = serde_json::from_slice(&b).unwrap();
                assert_eq!(parsed["uploadURL"], url.as_str());
            }
        }
        let odd = Endpoint {
            scheme: "http".into(),
            authority: "s3\"x".into(),
            path_style: true,
        };
        assert!(!Presigner::new("b", "us-east-1", odd).json_plain());
    }

    /// axum moves a handler's future into a box on every request: what the rare paths hold
    /// across their awaits (the SDK baseline's presign future is kilobytes) stays out of the
    /// futures of the routes that sign.
    #[test]
    fn the_futures_of_the_signing_routes_stay_small() {
        use crate::config::{Config, S3Backend};
        use crate::credentials::StaticCredentials;
        use crate::multipart;
        use axum::extract::Path;
        use axum::http::Uri;
        let config = Config {
            bucket: "b".into(),
            ..Config::default()
        };
        let creds = StaticCredentials::new(Credentials {
            access_key_id: "AKIA".into(),
            secret_access_key: "s".into(),
            session_token: None,
            expiry: None,
        });
        let store = crate::store::S3Store::new(|| unreachable!(), "b", S3Backend::default());
        let state = AppState::new(
            config,
            Presigner::new("b", "eu-west-1", Endpoint::aws("eu-west-1")),
            Arc::new(creds),
            Arc::new(store),
        );
        let uri: Uri = "/?key=uploads/k&partNumbers=1&contentType=image/jpeg"
            .parse()
            .unwrap();
        let s = || State(state.clone());
        let sizes = [
            (
                "POST /uploads",
                std::mem::size_of_val(&create(s(), Caller(None), JsonBody(Default::default()))),
            ),
            (
                "GET /uploads",
                std::mem::size_of_val(&legacy(s(), Caller(None), Query::try_from_uri(&uri))),
            ),
            (
                "GET /s3/params",
                std::mem::size_of_val(&uppy_params(s(), Caller(None), Query::try_from_uri(&uri))),
            ),
            (
                "GET /s3/multipart/{id}/{part}",
                std::mem::size_of_val(&multipart::sign_one(
                    s(),
                    Caller(None),
                    Path(("id".into(), "1".into())),
                    Query::try_from_uri(&uri),
                )),
            ),
            (
                "GET /s3/multipart/{id}/batch",
                std::mem::size_of_val(&multipart::sign_batch(
                    s(),
                    Caller(None),
                    Path("id".into()),
                    Query::try_from_uri(&uri),
                )),
            ),
        ];
        for (route, size) in sizes {
            assert!(size <= 2048, "the future of {route} is {size} bytes");
        }
        // The benchmarked route's box (its future and axum's ~350 bytes around it) stays
        // within what glibc's per-thread cache serves (1,032 bytes), not its slower bins.
        assert!(
            sizes[0].1 <= 640,
            "the future of POST /uploads is {} bytes",
            sizes[0].1
        );
    }
}
