//! HTTP API v1 and the agent protocol routes, built by [`router`] so tests can call the app
//! without a socket. One resource per file; handlers translate HTTP to calls on the
//! [`Master`] core and never hold its lock across an `.await`.

pub mod agents;
pub mod apps;
pub mod deployments;
pub mod events;
pub mod images;
pub mod jobs;
pub mod join;
pub mod masters;
pub mod policies;
pub mod secrets;
pub mod snapshot;
pub mod system;
pub mod tasks;
pub mod tokens;

use crate::master::Master;
use crate::store::StoreError;
use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gantry_api::ApiError;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// A failed API call: a status and the JSON error body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiFailure {
    /// HTTP status.
    pub status: StatusCode,
    /// Body.
    pub error: ApiError,
}

impl ApiFailure {
    /// A failure without a field.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, error: ApiError { message: message.into(), field: None } }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 422 on `field`.
    pub fn invalid(field: Option<String>, message: impl Into<String>) -> Self {
        Self { status: StatusCode::UNPROCESSABLE_ENTITY, error: ApiError { message: message.into(), field } }
    }
}

impl From<StoreError> for ApiFailure {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "State store write failed.");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, format!("the master could not store the change: {error}"))
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        (self.status, Json(self.error)).into_response()
    }
}

/// Parses a JSON body; a body that does not deserialize is a 422 with serde's message and, when
/// serde names one, the field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiFailure> {
    serde_json::from_slice(body).map_err(|e| {
        let message = e.to_string();
        ApiFailure::invalid(field_of(&message), format!("invalid JSON body: {message}"))
    })
}

fn field_of(message: &str) -> Option<String> {
    for marker in ["missing field `", "unknown field `", "duplicate field `"] {
        if let Some(rest) = message.split(marker).nth(1) {
            return rest.split('`').next().map(str::to_string);
        }
    }
    None
}

/// Refuses a body whose `id` differs from the one in the path (`PUT /api/v1/<resource>/{id}`).
pub fn same_id(body_id: &str, path_id: &str) -> Result<(), ApiFailure> {
    if body_id == path_id {
        return Ok(());
    }
    Err(ApiFailure::invalid(
        Some("id".to_string()),
        format!("the body's id `{body_id}` differs from the path's `{path_id}`"),
    ))
}

/// The whole HTTP application: the public API v1 and the agent protocol, every route behind
/// [`crate::security::auth::authorize`].
pub fn router(master: Arc<Master>) -> Router {
    Router::new()
        .merge(system::routes())
        .merge(apps::routes())
        .merge(jobs::routes())
        .merge(deployments::routes())
        .merge(tasks::routes())
        .merge(agents::routes())
        .merge(images::routes())
        .merge(events::routes())
        .merge(tokens::routes())
        .merge(policies::routes())
        .merge(secrets::routes())
        .merge(snapshot::routes())
        .merge(masters::routes())
        .merge(join::routes())
        .merge(crate::agent_protocol::routes())
        .fallback(|| async { ApiFailure::not_found("no such route; see the API routes in `gantry_api::client`") })
        .layer(axum::middleware::from_fn_with_state(master.clone(), settle))
        .layer(axum::middleware::from_fn_with_state(master.clone(), crate::security::auth::authorize))
        .with_state(master)
}

/// Answers a request only once every change proposed before its answer was made is committed:
/// the change it made, and those in flight that it may have read ([`crate::pipeline`]). If one
/// of them was not committed: `503`; a read (`GET`) also gets `Retry-After`, since asking again
/// is safe, while a write may still have been committed and is left to the caller.
async fn settle(
    axum::extract::State(master): axum::extract::State<Arc<Master>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let read = request.method() == axum::http::Method::GET;
    let response = next.run(request).await;
    let Err(reason) = master.settled(master.proposed()).await else { return response };
    let mut failure = ApiFailure::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "a change this answer depends on was not committed by the masters ({reason}); {}",
            if read { "retry" } else { "the change may still take effect: read the state before retrying" }
        ),
    )
    .into_response();
    if read {
        failure.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
    }
    failure
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_errors_name_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            id: String,
        }
        let e = parse_json::<Body>(br#"{"idx": 1}"#).expect_err("unknown field");
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.error.field.as_deref(), Some("idx"));
        let e = parse_json::<Body>(b"{").expect_err("syntax");
        assert_eq!(e.error.field, None);
        assert!(e.error.message.contains("EOF"));
    }
}
