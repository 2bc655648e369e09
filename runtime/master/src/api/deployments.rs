//! `/api/v1/deployments`: list, show, cancel and promote deployments.
//!
//! A deployment is answered with its live progress, steps and (while it cannot move) the
//! reason, from `services::deployment::evaluate`. Cancel ends an active deployment and deploys
//! the version it started from again (a rollback deployment); promote lets a deployment paused
//! on its canaries go on. Building the routes also starts the deployment driver
//! (`services::driver`) of the master they serve.

use crate::api::ApiFailure;
use crate::master::Master;
use crate::services::deployment::{EvalInput, evaluate, finished_steps};
use crate::services::versions::{self, Ending};
use crate::services::{driver, history};
use crate::state::ClusterState;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use gantry_api::{Deployment, DeploymentStatus, Millis};
use serde::Deserialize;
use std::sync::Arc;
use tracing::info;

/// The routes of this resource; starts the deployment driver of `master`.
pub fn routes(master: &Arc<Master>) -> Router<Arc<Master>> {
    driver::spawn(master);
    Router::new()
        .route("/api/v1/deployments", get(list))
        .route("/api/v1/deployments/{id}", get(show))
        .route("/api/v1/deployments/{id}/cancel", post(cancel))
        .route("/api/v1/deployments/{id}/promote", post(promote))
}

/// Query of `GET /api/v1/deployments`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only this app's deployments.
    app: Option<String>,
}

/// A deployment with its live progress, steps and reason.
pub fn deployment_view(state: &ClusterState, d: &Deployment, now: Millis) -> Deployment {
    let mut view = d.clone();
    match state.app(&d.app_id).filter(|_| d.status.is_active()) {
        Some(entry) => {
            let tasks = state.tasks_of_app(&d.app_id);
            let evaluation = evaluate(&EvalInput {
                deployment: d,
                definition: &entry.record.app.definition,
                config_version: entry.record.config_version,
                tasks: &tasks,
                waiting: entry.runtime.waiting.as_deref(),
                now,
            });
            view.progress = evaluation.progress;
            view.steps = evaluation.steps;
            view.reason = evaluation.reason;
        }
        None => view.steps = finished_steps(d),
    }
    view
}

fn find<'a>(state: &'a ClusterState, id: &str) -> Result<&'a Deployment, ApiFailure> {
    state
        .apps()
        .flat_map(|e| e.history.deployments.iter())
        .find(|d| d.id == id)
        .ok_or_else(|| ApiFailure::not_found(format!("no deployment `{id}`; see `gantry deployment list`")))
}

async fn list(
    State(master): State<Arc<Master>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Deployment>>, ApiFailure> {
    let now = gantry_api::now_millis();
    let state = master.lock();
    if let Some(app) = &query.app
        && state.app(app).is_none()
    {
        return Err(ApiFailure::not_found(format!("no app `{app}`")));
    }
    let mut out: Vec<Deployment> = state
        .apps()
        .filter(|e| query.app.as_ref().is_none_or(|a| *a == e.record.app.definition.id))
        .flat_map(|e| e.history.deployments.iter())
        .map(|d| deployment_view(&state, d, now))
        .collect();
    out.sort_by_key(|d| d.created_at);
    Ok(Json(out))
}

async fn show(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<Deployment>, ApiFailure> {
    let state = master.lock();
    let d = find(&state, &id)?;
    Ok(Json(deployment_view(&state, d, gantry_api::now_millis())))
}

fn not_active(d: &Deployment) -> ApiFailure {
    ApiFailure::conflict(format!("deployment `{}` is {}, not running", d.id, d.status))
}

async fn cancel(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<Deployment>, ApiFailure> {
    let now = gantry_api::now_millis();
    let mut state = master.lock();
    let d = find(&state, &id)?;
    if !d.status.is_active() {
        return Err(not_active(d));
    }
    let (app_id, from) = (d.app_id.clone(), d.from_version);
    let ending = Ending { status: DeploymentStatus::Cancelled, reason: Some("cancelled by a user".to_string()) };
    let prepared = versions::rollback(&state, &app_id, from, Some(ending), now)
        .map_err(|e| ApiFailure::conflict(format!("cannot cancel deployment `{id}`: {e}")))?;
    master.commit(&mut state, prepared.change)?;
    versions::apply(&mut state, &app_id, prepared.history);
    info!(%app_id, deployment_id = %id, version = from, "Deployment cancelled; rolling back.");
    let d = find(&state, &id)?;
    Ok(Json(deployment_view(&state, d, now)))
}

async fn promote(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<Deployment>, ApiFailure> {
    let now = gantry_api::now_millis();
    let mut state = master.lock();
    let d = find(&state, &id)?;
    if !d.status.is_active() {
        return Err(not_active(d));
    }
    if d.promoted {
        return Err(ApiFailure::conflict(format!("deployment `{id}` has no canaries waiting for promotion")));
    }
    let app_id = d.app_id.clone();
    let mut history: history::AppHistory = state
        .app(&app_id)
        .map(|e| e.history.clone())
        .ok_or_else(|| ApiFailure::not_found(format!("no app `{app_id}`")))?;
    let Some(active) = history.active_mut() else { return Err(not_active(d)) };
    active.promoted = true;
    active.status = DeploymentStatus::Running;
    active.reason = None;
    active.progressed_at = now;
    let events = vec![versions::deployment_event(active, now)];
    let change = versions::history_change(&app_id, &history, events)
        .map_err(|e| ApiFailure::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    master.commit(&mut state, change)?;
    versions::apply(&mut state, &app_id, history);
    info!(%app_id, deployment_id = %id, "Deployment promoted.");
    let d = find(&state, &id)?;
    Ok(Json(deployment_view(&state, d, now)))
}
