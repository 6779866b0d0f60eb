//! The one error type of the HTTP API.
//!
//! In: a refusal or a failure. Out: a response with a JSON body
//! `{"error":{"code","message"}}`. Client mistakes are 4xx and name the field; server-side
//! failures are logged in full and answered with a generic 5xx that leaks nothing.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Declares [`ErrorCode`]: each code with its meaning (its doc comment, which the reference
/// page docs/reference/signer-errors.md is generated from and the OpenAPI document's
/// `ErrorCode` is checked against) and the HTTP statuses it is answered with.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])+ $name:ident = $($status:literal)|+;)+) => {
        /// Every code the signer's API answers with, in `{"error": {"code", "message"}}`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $name,)+
        }

        impl ErrorCode {
            /// All codes, in the order they are declared (grouped by what they concern).
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),+];

            /// The code as it appears in the JSON body.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => stringify!($name)),+
                }
            }

            /// The HTTP statuses this code comes with.
            pub fn statuses(self) -> &'static [u16] {
                match self {
                    $(ErrorCode::$name => &[$($status),+]),+
                }
            }

            /// What the code means, one sentence or a few, from its doc comment.
            pub fn description(self) -> String {
                let lines: &[&str] = match self {
                    $(ErrorCode::$name => &[$($doc),+]),+
                };
                lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")
            }
        }
    };
}

error_codes! {
    /// The request body is not JSON of the route's shape; the message names the field.
    InvalidJson = 400;
    /// The request body could not be read.
    InvalidBody = 400;
    /// The JSON body is over 2 MiB.
    BodyTooLarge = 413;
    /// The body was not sent as `content-type: application/json`.
    UnsupportedMediaType = 415;
    /// A query parameter is missing or not of its type; the message names it.
    InvalidQuery = 400;
    /// No such route (the metrics listener serves `GET /metrics` only).
    NotFound = 404;
    /// `contentType` is missing.
    MissingContentType = 400;
    /// `contentType` is not a media type such as `image/jpeg`.
    InvalidContentType = 400;
    /// The content type is not in the bucket's `allowedContentTypes` (400 when asking for a
    /// URL; 422 from `verify` for an object stored under such a type).
    ContentTypeNotAllowed = 400 | 422;
    /// `size` is 0.
    InvalidSize = 400;
    /// The size is over the bucket's `maxSizeBytes` (413 when asking for a URL or completing a
    /// multipart upload; 422 from `verify`).
    TooLarge = 413 | 422;
    /// A PUT URL was asked for without `size` (S3 enforces the maximum only on a signed size).
    SizeRequired = 400;
    /// `method` is neither `PUT` nor `POST`.
    InvalidMethod = 400;
    /// `checksumSHA256` or `contentMD5` is not base64 of a digest of the right length.
    InvalidChecksum = 400;
    /// A digest was sent for a POST form; digests are signed into PUT URLs only.
    ChecksumNeedsPut = 400;
    /// A metadata key is not in the signer's allowed list (`UPLOADBUCKET_ALLOWED_METADATA`).
    MetadataNotAllowed = 400;
    /// A metadata value is not printable ASCII, or all metadata is over S3's 2 KiB.
    InvalidMetadata = 400;
    /// `owner` is not 1 to 64 characters of `A-Z a-z 0-9 . _ - @`, or starts with `.`.
    InvalidOwner = 400;
    /// The bucket sets `uploads.requireOwner` and the request names no owner.
    OwnerRequired = 400;
    /// A call on an existing upload names another owner than the key's folder (or none for a
    /// key in an owner's folder).
    OwnerMismatch = 403;
    /// `GET /uploads` on a bucket that verifies uploads: its URLs cannot carry the pending tag.
    VerificationNeedsPost = 400;
    /// `GET /uploads` for a type a public bucket stores as an attachment, which its URLs
    /// cannot carry.
    DispositionNeedsPost = 400;
    /// The owner (or the signer, without owners) used up its uploads per minute; see
    /// `Retry-After`.
    TooManyUploads = 429;
    /// The scope already has the most multipart uploads in progress the bucket allows.
    TooManyOpenUploads = 429;
    /// The `key` query parameter or field is missing.
    MissingKey = 400;
    /// The key was not issued by this signer (it is not under the upload prefix).
    InvalidKey = 400;
    /// `uploadId` is empty, too long or has control characters.
    InvalidUploadId = 400;
    /// A part number is not an integer from 1 to 10000, or `partNumbers` lists none or over
    /// 1000.
    InvalidPartNumber = 400;
    /// A part's size is not a number, not allowed by the bucket, or `sizes` does not match
    /// `partNumbers`.
    InvalidPartSize = 400;
    /// The completion's part list is empty, names a part twice, or names a part that was not
    /// uploaded or with another ETag; the upload is aborted.
    InvalidPart = 400;
    /// The `uploadId` is not a multipart upload in progress for the key.
    NoSuchUpload = 404;
    /// The key already holds an object (the multipart upload was completed before).
    KeyExists = 409;
    /// `verify` on a bucket whose `uploads.verification.enabled` is false.
    VerificationDisabled = 409;
    /// Another `verify` call is checking the same key; retry when it has answered.
    VerificationInProgress = 409;
    /// The upload was replaced while `verify` read it; nothing was verified.
    UploadChanged = 409;
    /// Nothing is stored at the key (not uploaded yet, expired, or deleted).
    NoSuchKey = 404;
    /// `verify` found bytes that are not the type the object is stored as; the upload is
    /// deleted, or kept tagged quarantined.
    ContentMismatch = 422;
    /// The bucket requires an end-user token and the request has no `Authorization` header.
    MissingToken = 401;
    /// The `Authorization` header is not `Bearer <token>`, the token is over 16 KiB or is not
    /// a signed JWT.
    InvalidToken = 401;
    /// The token's `alg` is HMAC, `none`, or does not fit the provider's key.
    UnsupportedAlgorithm = 401;
    /// The token's `kid` is not among the provider's keys, even after a refresh.
    UnknownKey = 401;
    /// The token's signature does not verify.
    BadSignature = 401;
    /// The token's `exp` has passed.
    TokenExpired = 401;
    /// The token's `nbf` is still to come.
    TokenNotYetValid = 401;
    /// The token's `iss` is not the configured issuer.
    WrongIssuer = 401;
    /// The token's `aud` holds none of the configured audiences.
    WrongAudience = 401;
    /// The token lacks a claim the bucket requires (`exp`, the owner claim, a required claim).
    MissingClaim = 401;
    /// A required claim does not hold the required value.
    ClaimMismatch = 401;
    /// The owner claim is `email` and the token's `email_verified` is not true.
    EmailNotVerified = 401;
    /// The owner claim makes a folder name longer than the signer allows.
    InvalidOwnerClaim = 401;
    /// The identity provider's keys cannot be had (not fetched yet and the provider is down);
    /// see `Retry-After`.
    KeysUnavailable = 503;
    /// The request names an `owner` that is not the signed-in user's.
    TokenOwnerMismatch = 403;
    /// The signer failed; the detail is in its log, never in the answer.
    InternalError = 500;
    /// A dependency (credentials, S3) is unavailable right now; retry shortly.
    Unavailable = 503;
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is wrong: 4xx with a code and a message naming the field.
    #[error("{code}: {message}")]
    Client {
        status: StatusCode,
        code: ErrorCode,
        message: String,
    },
    /// A quota is used up: 429 with `Retry-After`.
    #[error("{code}: {message}")]
    Throttled {
        code: ErrorCode,
        message: String,
        retry_after: std::time::Duration,
    },
    /// Something failed on our side; the detail goes to the log only.
    #[error("{context}: {detail}")]
    Internal {
        context: &'static str,
        detail: String,
    },
    /// A dependency (credentials, S3) is unavailable: 503, retry later.
    #[error("{context}: {detail}")]
    Unavailable {
        context: &'static str,
        detail: String,
    },
}

impl AppError {
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError::Client {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    pub fn with_status(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        AppError::Client {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn internal(context: &'static str, detail: impl std::fmt::Display) -> Self {
        AppError::Internal {
            context,
            detail: detail.to_string(),
        }
    }

    pub fn unavailable(context: &'static str, detail: impl std::fmt::Display) -> Self {
        AppError::Unavailable {
            context,
            detail: detail.to_string(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Client { status, .. } => *status,
            AppError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            AppError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (code, message) = match &self {
            AppError::Client { code, message, .. } | AppError::Throttled { code, message, .. } => {
                (*code, message.clone())
            }
            AppError::Internal { context, detail } => {
                tracing::error!(context, %detail, "Request failed");
                (
                    ErrorCode::InternalError,
                    "the signer failed; see its logs".to_owned(),
                )
            }
            AppError::Unavailable { context, detail } => {
                tracing::warn!(context, %detail, "Dependency unavailable");
                (
                    ErrorCode::Unavailable,
                    format!("{context} is unavailable right now; retry shortly"),
                )
            }
        };
        debug_assert!(
            code.statuses().contains(&status.as_u16()),
            "{code} answered with {status}, which ErrorCode does not declare"
        );
        let body = serde_json::json!({"error": {"code": code.as_str(), "message": message}});
        let mut response = (status, Json(body)).into_response();
        if let AppError::Throttled { retry_after, .. } = &self {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}
