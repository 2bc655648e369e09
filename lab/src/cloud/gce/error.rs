//! The Compute Engine error shape: `{"error": {"code", "message", "errors": [{"message",
//! "domain": "global", "reason"}]}}`, with no gRPC `status` (Compute answers none, so the
//! official SDK's code is `Unknown` and callers look at the HTTP status and the reason).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered by the emulated API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// `errors[0].reason`: notFound, alreadyExists, invalid, required, badRequest,
    /// resourceInUseByAnotherResource, resourceNotReady, parseError...
    pub reason: &'static str,
    /// The message, as Compute Engine words it.
    pub message: String,
}

impl ApiError {
    pub(super) fn new(status: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, reason, message: message.into() }
    }

    /// 404 for the resource at `path` (`projects/p/zones/z/instances/i`).
    pub(super) fn not_found(path: &str) -> ApiError {
        ApiError::new(404, "notFound", format!("The resource '{path}' was not found"))
    }

    /// 409 for an insert of a name its scope has already.
    pub(super) fn already_exists(path: &str) -> ApiError {
        ApiError::new(409, "alreadyExists", format!("The resource '{path}' already exists"))
    }

    /// 400 for a field whose value is refused.
    pub(super) fn invalid(field: &str, value: &str, why: &str) -> ApiError {
        ApiError::new(400, "invalid", format!("Invalid value for field '{field}': '{value}'. {why}"))
    }

    /// 400 for a required field that is missing.
    pub(super) fn required(field: &str) -> ApiError {
        ApiError::new(400, "required", format!("Required field '{field}' not specified"))
    }

    /// 400 for a resource still referenced by `user`.
    pub(super) fn in_use(kind: &str, path: &str, user: &str) -> ApiError {
        ApiError::new(
            400,
            "resourceInUseByAnotherResource",
            format!("The {kind} resource '{path}' is already being used by '{user}'"),
        )
    }

    /// 400 for a resource that an operation is still changing.
    pub(super) fn not_ready(path: &str) -> ApiError {
        ApiError::new(400, "resourceNotReady", format!("The resource '{path}' is not ready"))
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "code": self.status,
                "message": self.message,
                "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
            }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        (status, axum::Json(self.body())).into_response()
    }
}
