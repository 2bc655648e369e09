//! `/api/v1/masters`: the masters' group.
//!
//! - `GET /api/v1/masters`: the group as this master sees it — each master's number, address,
//!   role, the term, what it has applied and (on the leader) how far it lags. Any valid
//!   credential may read it.
//! - `POST /api/v1/masters` (`{"id": N, "address": "host:port"}`): adds a running master as a
//!   voter once it has caught up; `DELETE /api/v1/masters/{id}`: removes one (a master that is
//!   not a member: nothing to do). Both answer the members after the change; admin only. What
//!   is refused (`409`) and why: [`crate::raft::membership`]; a bad id or address is a `422`;
//!   a change the group could not make in time, or on a master that stopped leading, a `503`.
//!
//! A change can take seconds (the new master catches up): it runs on a blocking thread and never
//! holds the state lock.

use crate::api::{ApiFailure, parse_json};
use crate::master::Master;
use crate::raft::membership::{self, MembershipError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use gantry_api::client::{AddMaster, MasterInfo};
use std::sync::Arc;

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new().route("/api/v1/masters", get(list).post(add)).route("/api/v1/masters/{id}", delete(remove))
}

async fn list(State(master): State<Arc<Master>>) -> Json<Vec<MasterInfo>> {
    Json(members(&master))
}

fn members(master: &Master) -> Vec<MasterInfo> {
    master.store.group().map(|group| group.members).unwrap_or_default()
}

async fn add(State(master): State<Arc<Master>>, body: Bytes) -> Result<Json<Vec<MasterInfo>>, Response> {
    let request: AddMaster = parse_json(&body).map_err(IntoResponse::into_response)?;
    membership::validate(request.id, Some(&request.address)).map_err(failure)?;
    let store = master.store.clone();
    change(move || store.add_master(request.id, &request.address)).await?;
    Ok(Json(members(&master)))
}

async fn remove(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<Vec<MasterInfo>>, Response> {
    let id: u64 = id.parse().map_err(|_| {
        ApiFailure::invalid(Some("id".to_string()), format!("`{id}` is not a master number (1, 2, 3, ...)"))
            .into_response()
    })?;
    membership::validate(id, None).map_err(failure)?;
    let store = master.store.clone();
    change(move || store.remove_master(id)).await?;
    Ok(Json(members(&master)))
}

/// Runs a change of the group on a blocking thread.
async fn change(run: impl FnOnce() -> Result<(), MembershipError> + Send + 'static) -> Result<(), Response> {
    tokio::task::spawn_blocking(run)
        .await
        .map_err(|e| ApiFailure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())?
        .map_err(failure)
}

/// The answer to a change that was not made. A master that no longer leads answers `503` with
/// `Retry-After`, so a client asks again and is sent to the new leader (a change is idempotent).
fn failure(error: MembershipError) -> Response {
    let message = error.to_string();
    match error {
        MembershipError::Invalid { field, .. } => ApiFailure::invalid(Some(field.to_string()), message).into_response(),
        MembershipError::Refused(_) => ApiFailure::conflict(message).into_response(),
        MembershipError::NotLeader { .. } => {
            let mut response = ApiFailure::new(StatusCode::SERVICE_UNAVAILABLE, message).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        MembershipError::Unavailable(_) => ApiFailure::new(StatusCode::SERVICE_UNAVAILABLE, message).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    fn master() -> (Arc<Master>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = crate::MasterConfig::new("127.0.0.1:0".parse().expect("address"), dir.path().to_path_buf());
        let (_shutdown, rx) = tokio::sync::watch::channel(false);
        (crate::build(config, Arc::new(MemStore::new()), rx).expect("build"), dir)
    }

    #[tokio::test]
    async fn bad_requests_are_422_and_a_store_without_a_group_refuses_with_409() {
        let (master, _dir) = master();
        let status = |response: Result<Json<Vec<MasterInfo>>, Response>| match response {
            Ok(_) => StatusCode::OK,
            Err(response) => response.status(),
        };
        let body = |json: &str| Bytes::from(json.to_string());
        let add = |json: &str| add(State(master.clone()), body(json));
        assert_eq!(status(add(r#"{"id": 0, "address": "10.0.0.4:5050"}"#).await), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status(add(r#"{"id": 4, "address": "10.0.0.4"}"#).await), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status(add(r#"{"id": 4}"#).await), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status(add(r#"{"id": 4, "address": "10.0.0.4:5050"}"#).await), StatusCode::CONFLICT);
        let remove = |id: &str| remove(State(master.clone()), Path(id.to_string()));
        assert_eq!(status(remove("four").await), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status(remove("0").await), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status(remove("4").await), StatusCode::CONFLICT);
    }

    #[test]
    fn a_master_that_stopped_leading_asks_to_be_asked_again() {
        let response = failure(MembershipError::NotLeader { leader: Some("10.0.0.2:5050".into()) });
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("1"));
    }
}
