//! [`ApiError`]: every failure the server answers becomes `{"error": "<message>"}` with a status
//! derived from the core's [`ErrorKind`], in this one place.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sqrx_core::ErrorKind;

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a human.
    pub error: String,
}

/// An HTTP error: a status and a message safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The response status.
    pub status: StatusCode,
    /// The message returned as `{"error": message}`.
    pub message: String,
    /// More fields of the body beside `error` (a JSON object), for errors a client acts on
    /// (`quota_exceeded` with the limit and the use).
    pub details: Option<serde_json::Value>,
}

/// The message returned for genuine internal faults; the details go to the log only.
pub const INTERNAL_MESSAGE: &str = "internal error";

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            details: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: the thing asked for does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 415: the body's content type is not one this route takes.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message)
    }

    /// 413: the body is larger than the route allows.
    pub fn too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 500: a genuine internal fault. `detail` is logged, never returned.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_MESSAGE)
    }

    /// The status for an error of `kind` on the native API.
    pub fn status_of(kind: ErrorKind) -> StatusCode {
        match kind {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::AlreadyExists => StatusCode::CONFLICT,
            ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorKind::LimitExceeded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorKind::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// An error of `kind` with the core's message (hidden, and logged, when internal).
    pub fn from_kind(kind: ErrorKind, message: impl std::fmt::Display) -> Self {
        match kind {
            ErrorKind::Internal => Self::internal(message),
            other => Self::new(Self::status_of(other), message.to_string()),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<sqrx_core::Error> for ApiError {
    fn from(e: sqrx_core::Error) -> Self {
        Self::from_kind(e.kind(), e)
    }
}

impl From<sqrx_core::SandboxError> for ApiError {
    fn from(e: sqrx_core::SandboxError) -> Self {
        Self::from_kind(e.kind(), e)
    }
}

impl From<sqrx_core::LayerError> for ApiError {
    fn from(e: sqrx_core::LayerError) -> Self {
        Self::from_kind(e.kind(), e)
    }
}

impl From<sqrx_core::session::SessionError> for ApiError {
    fn from(e: sqrx_core::session::SessionError) -> Self {
        Self::from_kind(e.kind(), e)
    }
}

impl From<sqrx_core::JsError> for ApiError {
    fn from(e: sqrx_core::JsError) -> Self {
        Self::from_kind(e.kind(), e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(serde_json::Value::Object(mut details)) = self.details {
            details.insert("error".into(), serde_json::Value::String(self.message));
            return (self.status, Json(serde_json::Value::Object(details))).into_response();
        }
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_are_not_returned() {
        let e = ApiError::from_kind(ErrorKind::Internal, "/var/lib/secret path broke");
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.message, INTERNAL_MESSAGE);
        let e = ApiError::from_kind(ErrorKind::AlreadyExists, "sandbox a already exists");
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert_eq!(e.message, "sandbox a already exists");
    }

    #[test]
    fn a_full_disk_is_507_with_its_message() {
        let e = ApiError::from_kind(ErrorKind::InsufficientStorage, "cannot write x: no space");
        assert_eq!(e.status, StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(e.message, "cannot write x: no space");
    }
}
