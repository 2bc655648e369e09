//! `/api/v1/policies`: list (built-ins first), show, apply (`PUT`) and delete policies. The
//! built-in `admin`, `deployer` and `read-only` cannot be changed or deleted.

use crate::api::{ApiFailure, same_id};
use crate::master::Master;
use crate::security::records;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use gantry_api::security::Policy;
use gantry_trust::policy::BUILTIN;
use std::sync::Arc;
use tracing::info;

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new()
        .route("/api/v1/policies", get(list))
        .route("/api/v1/policies/{name}", get(show).put(put).delete(delete))
}

fn not_found(name: &str) -> ApiFailure {
    ApiFailure::not_found(format!("no policy `{name}`"))
}

fn builtin_refused(name: &str) -> ApiFailure {
    ApiFailure::conflict(format!("`{name}` is a built-in policy and cannot be changed; apply one under another name"))
}

async fn list(State(master): State<Arc<Master>>) -> Json<Vec<Policy>> {
    Json(master.security().records().policies())
}

async fn show(State(master): State<Arc<Master>>, Path(name): Path<String>) -> Result<Json<Policy>, ApiFailure> {
    master.security().records().policy(&name).map(Json).ok_or_else(|| not_found(&name))
}

async fn put(
    State(master): State<Arc<Master>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Policy>, ApiFailure> {
    let text = std::str::from_utf8(&body).map_err(|_| ApiFailure::bad_request("the body is not UTF-8"))?;
    let policy = gantry_trust::policy::parse_json(text).map_err(|e| ApiFailure::invalid(None, e.to_string()))?;
    same_id(&policy.name, &name)?;
    if BUILTIN.contains(&name.as_str()) {
        return Err(builtin_refused(&name));
    }
    let op = records::put_policy(&policy)?;
    let stored = policy.clone();
    master.security().write(&[op], |records| records.insert_policy(stored))?;
    info!(policy = %name, "Policy applied.");
    Ok(Json(policy))
}

async fn delete(State(master): State<Arc<Master>>, Path(name): Path<String>) -> Result<Json<Policy>, ApiFailure> {
    if BUILTIN.contains(&name.as_str()) {
        return Err(builtin_refused(&name));
    }
    let security = master.security();
    {
        let records = security.records();
        records.policy(&name).ok_or_else(|| not_found(&name))?;
        let users = records.tokens_with_policy(&name);
        if !users.is_empty() {
            return Err(ApiFailure::conflict(format!(
                "policy `{name}` is used by token(s) {}: revoke them first",
                users.join(", ")
            )));
        }
    }
    let removed = security.write(&[records::delete_policy(&name)], |records| records.remove_policy(&name))?;
    info!(policy = %name, "Policy deleted.");
    removed.map(Json).ok_or_else(|| not_found(&name))
}
