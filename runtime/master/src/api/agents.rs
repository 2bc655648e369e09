//! The agents resource: `GET /api/v1/agents`, `GET /api/v1/agents/{id}`;
//! `DELETE /api/v1/agents/{id}`, which removes the agent from the cluster (its certificates are
//! revoked, so it must join again, its command stream is closed, and the master forgets it; the
//! provisioner calls it last when it removes a host); and its drain,
//! `GET|POST|DELETE /api/v1/agents/{id}/drain` (see [`crate::drain`]).

use crate::api::{ApiFailure, parse_json};
use crate::drain;
use crate::master::Master;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use gantry_api::{Agent, DrainRequest, DrainStatus};
use std::sync::Arc;
use tracing::info;

/// The longest drain deadline: a week.
const MAX_DEADLINE_SECS: f64 = 7.0 * 24.0 * 3600.0;

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new()
        .route("/api/v1/agents", get(list))
        .route("/api/v1/agents/{id}", get(show).delete(remove))
        .route("/api/v1/agents/{id}/drain", get(drain_status).post(start_drain).delete(cancel_drain))
}

fn not_found(id: &str) -> ApiFailure {
    ApiFailure::not_found(format!("no agent `{id}`"))
}

async fn list(State(master): State<Arc<Master>>) -> Json<Vec<Agent>> {
    Json(master.lock().agents().map(|e| e.agent.clone()).collect())
}

async fn show(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<Agent>, ApiFailure> {
    let state = master.lock();
    let entry = state.agent(&id).ok_or_else(|| not_found(&id))?;
    Ok(Json(entry.agent.clone()))
}

/// Revokes first: once the certificate is refused, the agent cannot come back between the two
/// writes; a failed forget is completed by calling again.
async fn remove(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<Agent>, ApiFailure> {
    let agent = {
        let state = master.lock();
        state.agent(&id).map(|e| e.agent.clone()).ok_or_else(|| not_found(&id))?
    };
    let security = master.security();
    security.write(&crate::security::records::revoke_agent(&id), |records| records.revoke_agent(&id))?;
    master.links().disconnect(&id);
    let lost = {
        let mut state = master.lock();
        let Some(change) = drain::removal(&state, &id, gantry_api::now_millis()) else {
            return Ok(Json(agent));
        };
        let lost = change.put_tasks().count();
        master.commit(&mut state, change)?;
        lost
    };
    info!(agent_id = %id, hostname = %agent.info.hostname, lost, "Agent removed: its certificate is revoked and the master forgot it.");
    Ok(Json(agent))
}

async fn drain_status(
    State(master): State<Arc<Master>>,
    Path(id): Path<String>,
) -> Result<Json<DrainStatus>, ApiFailure> {
    let state = master.lock();
    drain::status(&state, &id, gantry_api::now_millis()).map(Json).ok_or_else(|| not_found(&id))
}

async fn start_drain(
    State(master): State<Arc<Master>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<DrainStatus>, ApiFailure> {
    let request: DrainRequest = if body.is_empty() { DrainRequest::default() } else { parse_json(&body)? };
    if !(0.0..=MAX_DEADLINE_SECS).contains(&request.deadline) {
        return Err(ApiFailure::invalid(
            Some("deadline".to_string()),
            format!("the deadline is seconds from now, 0 to {MAX_DEADLINE_SECS} (a week); got {}", request.deadline),
        ));
    }
    let now = gantry_api::now_millis();
    let mut state = master.lock();
    let change = drain::start(&state, &id, (request.deadline * 1000.0) as u64, now).ok_or_else(|| not_found(&id))?;
    master.commit(&mut state, change)?;
    let status = drain::status(&state, &id, now).ok_or_else(|| not_found(&id))?;
    info!(agent_id = %id, deadline_secs = request.deadline, tasks = status.tasks.len(), "Agent draining.");
    Ok(Json(status))
}

async fn cancel_drain(
    State(master): State<Arc<Master>>,
    Path(id): Path<String>,
) -> Result<Json<DrainStatus>, ApiFailure> {
    let now = gantry_api::now_millis();
    let mut state = master.lock();
    let change = drain::cancel(&state, &id, now).ok_or_else(|| not_found(&id))?;
    let cancelled = !change.is_empty();
    master.commit(&mut state, change)?;
    if cancelled {
        info!(agent_id = %id, "Agent drain cancelled; it takes tasks again.");
    }
    drain::status(&state, &id, now).map(Json).ok_or_else(|| not_found(&id))
}
