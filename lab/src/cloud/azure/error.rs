//! ARM's error shape, `{"error": {"code", "message", "target"?, "details"?}}`, with the
//! status it comes with, and the codes the lab answers (the real services' codes).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error as ARM (or the resource provider behind it) answers it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ArmError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub target: Option<String>,
    pub details: Vec<Value>,
}

impl ArmError {
    pub(super) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ArmError {
        ArmError { status, code: code.to_string(), message: message.into(), target: None, details: Vec::new() }
    }

    pub(super) fn bad_request(code: &str, message: impl Into<String>) -> ArmError {
        ArmError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(super) fn conflict(code: &str, message: impl Into<String>) -> ArmError {
        ArmError::new(StatusCode::CONFLICT, code, message)
    }

    pub(super) fn with_target(mut self, target: impl Into<String>) -> ArmError {
        self.target = Some(target.into());
        self
    }

    /// Compute's `InvalidParameter` about `target`.
    pub(super) fn invalid_parameter(target: &str, message: impl Into<String>) -> ArmError {
        ArmError::bad_request("InvalidParameter", message).with_target(target)
    }

    /// The error object (what an async operation's `error` holds).
    pub(super) fn body(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(target) = &self.target {
            error["target"] = json!(target);
        }
        if !self.details.is_empty() {
            error["details"] = json!(self.details);
        }
        error
    }

    /// 404 for a missing resource group.
    pub(super) fn group_not_found(group: &str) -> ArmError {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceGroupNotFound",
            format!("Resource group '{group}' could not be found."),
        )
    }

    /// 404 for a missing top-level resource (`type_name` like `Microsoft.Compute/virtualMachines`).
    pub(super) fn not_found(type_name: &str, name: &str, group: &str) -> ArmError {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!(
                "The Resource '{type_name}/{name}' under resource group '{group}' was not found. For more details \
                 please go to https://aka.ms/ARMResourceNotFoundFix"
            ),
        )
    }

    /// Network's 400 for a malformed resource id in a body.
    pub(super) fn linked_invalid_id(id: &str, path: &str) -> ArmError {
        ArmError::bad_request(
            "LinkedInvalidPropertyId",
            format!(
                "Property id '{id}' at path '{path}' is invalid. Expect fully qualified resource Id that start with \
                 '/subscriptions/{{subscriptionId}}' or '/providers/{{resourceProviderNamespace}}/'."
            ),
        )
    }

    /// Network's 400 for a reference to a resource that does not exist.
    pub(super) fn invalid_reference(id: &str, by: &str) -> ArmError {
        ArmError::bad_request(
            "InvalidResourceReference",
            format!(
                "Resource {id} referenced by resource {by} was not found. Please make sure that the referenced \
                 resource exists, and that both resources are in the same region."
            ),
        )
    }
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(json!({"error": self.body()}))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static(
                    "Bearer authorization_uri=\"https://login.windows.net/\", error=\"invalid_token\"",
                ),
            );
        }
        response
    }
}
