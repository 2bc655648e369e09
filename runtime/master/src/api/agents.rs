//! `GET /api/v1/agents`, `GET /api/v1/agents/{id}`, and `DELETE /api/v1/agents/{id}`, which
//! revokes the agent's certificates (it must join again with the join token) and closes its
//! command stream; the provisioner calls it when it removes a host.

use crate::api::ApiFailure;
use crate::master::Master;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use gantry_api::Agent;
use std::sync::Arc;

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new().route("/api/v1/agents", get(list)).route("/api/v1/agents/{id}", get(show).delete(revoke))
}

async fn list(State(master): State<Arc<Master>>) -> Json<Vec<Agent>> {
    Json(master.lock().agents().map(|e| e.agent.clone()).collect())
}

async fn show(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<Agent>, ApiFailure> {
    let state = master.lock();
    let entry = state.agent(&id).ok_or_else(|| ApiFailure::not_found(format!("no agent `{id}`")))?;
    Ok(Json(entry.agent.clone()))
}

async fn revoke(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<Agent>, ApiFailure> {
    let agent = {
        let state = master.lock();
        state.agent(&id).map(|e| e.agent.clone()).ok_or_else(|| ApiFailure::not_found(format!("no agent `{id}`")))?
    };
    let security = master.security();
    security.write(&crate::security::records::revoke_agent(&id), |records| records.revoke_agent(&id))?;
    master.links().disconnect(&id);
    tracing::info!(agent_id = %id, "Agent revoked: its certificate is no longer accepted.");
    Ok(Json(agent))
}
