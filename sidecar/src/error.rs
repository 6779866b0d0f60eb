//! The one error type of the HTTP API.
//!
//! In: a refusal or a failure. Out: a response with a JSON body
//! `{"error":{"code","message"}}`. Client mistakes are 4xx and name the field; server-side
//! failures are logged in full and answered with a generic 5xx that leaks nothing.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An API error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is wrong: 4xx with a code and a message naming the field.
    #[error("{code}: {message}")]
    Client {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// A quota is used up: 429 with `Retry-After`.
    #[error("{code}: {message}")]
    Throttled {
        code: &'static str,
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
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Client {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    pub fn with_status(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
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
                    "InternalError",
                    "the signer failed; see its logs".to_owned(),
                )
            }
            AppError::Unavailable { context, detail } => {
                tracing::warn!(context, %detail, "Dependency unavailable");
                (
                    "Unavailable",
                    format!("{context} is unavailable right now; retry shortly"),
                )
            }
        };
        let body = serde_json::json!({"error": {"code": code, "message": message}});
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
