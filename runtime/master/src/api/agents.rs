//! `GET /api/v1/agents` and `GET /api/v1/agents/{id}`.

use crate::api::ApiFailure;
use crate::master::Master;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use gantry_api::Agent;
use std::sync::Arc;

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new().route("/api/v1/agents", get(list)).route("/api/v1/agents/{id}", get(show))
}

async fn list(State(master): State<Arc<Master>>) -> Json<Vec<Agent>> {
    Json(master.lock().agents().map(|e| e.agent.clone()).collect())
}

async fn show(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<Agent>, ApiFailure> {
    let state = master.lock();
    let entry = state.agent(&id).ok_or_else(|| ApiFailure::not_found(format!("no agent `{id}`")))?;
    Ok(Json(entry.agent.clone()))
}
