//! `GET /health` and `GET /version`.

use crate::master::Master;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use gantry_api::client::{Health, VersionInfo};
use std::sync::Arc;

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new().route("/health", get(health)).route("/version", get(version))
}

async fn health() -> Json<Health> {
    Json(Health { status: "ok".to_string() })
}

async fn version(State(master): State<Arc<Master>>) -> Json<VersionInfo> {
    Json(VersionInfo { version: gantry_api::VERSION.to_string(), master_id: master.master_id.clone() })
}
