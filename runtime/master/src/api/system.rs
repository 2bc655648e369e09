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
    if master.ready() {
        return (StatusCode::OK, Json(Health { status: "ok".to_string() }));
    }
    let status = if *master.shutdown_signal().borrow() { "stopping" } else { "starting" };
    (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: status.to_string() }))
}

async fn version(State(master): State<Arc<Master>>) -> Json<VersionInfo> {
    Json(VersionInfo { version: gantry_api::VERSION.to_string(), master_id: master.master_id.clone() })
}
