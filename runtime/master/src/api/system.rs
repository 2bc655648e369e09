//! `GET /health` (readiness: `200 ok` once the allocator runs, `503` while starting or
//! stopping) and `GET /version`. Both reveal nothing sensitive and need no credentials.

use crate::master::Master;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use gantry_api::client::{Health, VersionInfo};
use std::sync::Arc;

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new().route("/health", get(health)).route("/version", get(version))
}

async fn health(State(master): State<Arc<Master>>) -> (StatusCode, Json<Health>) {
    let group = master.store.group();
    let health = |status: &str| Health {
        status: status.to_string(),
        role: group.as_ref().map(|g| g.role().to_string()),
        term: group.as_ref().map(|g| g.term),
        leader: group.as_ref().and_then(|g| g.leader_address().map(str::to_string)),
    };
    if master.ready() {
        return (StatusCode::OK, Json(health("ok")));
    }
    let status = if *master.shutdown_signal().borrow() { "stopping" } else { "starting" };
    (StatusCode::SERVICE_UNAVAILABLE, Json(health(status)))
}

async fn version(State(master): State<Arc<Master>>) -> Json<VersionInfo> {
    Json(VersionInfo { version: gantry_api::VERSION.to_string(), master_id: master.master_id.clone() })
}
