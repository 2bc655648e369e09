//! `/api/v1/apps`: create, read, update, scale, restart, roll back and delete apps, and list
//! their versions.
//!
//! Versioning: every change bumps `version` and is kept (see `services::history`); a change of
//! an existing app starts a deployment (see `services::deployment`) that supersedes the active
//! one. A change of anything but `instances` and `upgrade_strategy` (and a restart) also moves
//! the app's configuration version, so running instances are replaced under the upgrade
//! strategy; a change of those alone is a scale and keeps them. A rollback deploys a stored
//! version again as a new version. An unchanged definition is a no-op. Every change resets the
//! app's backoff.

use crate::allocator::{Kill, kill_change};
use crate::api::{ApiFailure, parse_json};
use crate::master::{Edit, Master};
use crate::security::auth::Caller;
use crate::services::backoff;
use crate::services::versions::{self, Prepared, VersionError};
use crate::state::ClusterState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use gantry_api::client::ScaleRequest;
use gantry_api::deployment::RollbackRequest;
use gantry_api::{App, AppDefinition, AppVersion, DeploymentKind, Event, Millis};
use std::sync::Arc;
use tracing::info;

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new()
        .route("/api/v1/apps", get(list).post(create))
        .route("/api/v1/apps/{id}", get(show).put(put).delete(delete))
        .route("/api/v1/apps/{id}/scale", post(scale))
        .route("/api/v1/apps/{id}/restart", post(restart))
        .route("/api/v1/apps/{id}/versions", get(list_versions))
        .route("/api/v1/apps/{id}/rollback", post(rollback))
}

/// An app with its live status.
pub fn app_view(state: &ClusterState, id: &str, now: Millis) -> Option<App> {
    let entry = state.app(id)?;
    let mut app = entry.record.app.clone();
    app.status = state.app_status(id, now);
    Some(app)
}

fn not_found(id: &str) -> ApiFailure {
    ApiFailure::not_found(format!("no app `{id}`"))
}

fn parse_definition(body: &[u8]) -> Result<AppDefinition, ApiFailure> {
    let definition: AppDefinition = parse_json(body)?;
    definition.validate().map_err(|e| ApiFailure::invalid(Some(e.field), e.message))?;
    Ok(definition)
}

async fn list(State(master): State<Arc<Master>>) -> Json<Vec<App>> {
    let now = gantry_api::now_millis();
    let state = master.lock();
    Json(state.apps().filter_map(|e| app_view(&state, &e.record.app.definition.id, now)).collect())
}

async fn show(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<App>, ApiFailure> {
    let state = master.lock();
    app_view(&state, &id, gantry_api::now_millis()).map(Json).ok_or_else(|| not_found(&id))
}

async fn create(
    State(master): State<Arc<Master>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<(StatusCode, Json<App>), ApiFailure> {
    let definition = parse_definition(&body)?;
    caller.may_read_secrets(definition.secret_names())?;
    let mut state = master.lock();
    if state.app(&definition.id).is_some() {
        return Err(ApiFailure::conflict(format!(
            "app `{}` exists; use PUT /api/v1/apps/{} to update it",
            definition.id, definition.id
        )));
    }
    insert(&master, &mut state, definition).map(|app| (StatusCode::CREATED, Json(app)))
}

fn insert(master: &Master, state: &mut ClusterState, definition: AppDefinition) -> Result<App, ApiFailure> {
    let now = gantry_api::now_millis();
    let id = definition.id.clone();
    if state.job(&id).is_some() {
        return Err(ApiFailure::conflict(format!("a job is named `{id}`; jobs and apps share one namespace")));
    }
    let prepared = versions::create(definition, now).map_err(version_failure)?;
    master.commit(state, prepared.change)?;
    versions::apply(state, &id, prepared.history);
    info!(app_id = %id, "App created.");
    app_view(state, &id, now).ok_or_else(|| not_found(&id))
}

fn version_failure(error: VersionError) -> ApiFailure {
    match error {
        VersionError::NoApp(id) => not_found(&id),
        VersionError::NoVersion { .. } => ApiFailure::not_found(error.to_string()),
        VersionError::Encode(_) => ApiFailure::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    }
}

/// Stores a prepared new version (and its deployment) and answers with the app.
fn store_version(master: &Master, state: &mut ClusterState, prepared: Prepared) -> Result<App, ApiFailure> {
    let now = gantry_api::now_millis();
    let id = prepared.record.app.definition.id.clone();
    let (version, config_version) = (prepared.record.app.version, prepared.record.config_version);
    master.commit(state, prepared.change)?;
    versions::apply(state, &id, prepared.history);
    if let Some(runtime) = state.app_runtime_mut(&id) {
        backoff::reset(runtime);
    }
    let deployment = prepared.deployment_id.unwrap_or_default();
    info!(app_id = %id, version, reconfigure = config_version == version, %deployment, "App updated.");
    app_view(state, &id, now).ok_or_else(|| not_found(&id))
}

/// Stores a new version of an existing app, rolled out by a deployment of `kind`.
fn update(
    master: &Master,
    state: &mut ClusterState,
    definition: AppDefinition,
    kind: DeploymentKind,
) -> Result<App, ApiFailure> {
    let prepared =
        versions::new_version(state, definition, kind, None, gantry_api::now_millis()).map_err(version_failure)?;
    store_version(master, state, prepared)
}

async fn put(
    State(master): State<Arc<Master>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<App>), ApiFailure> {
    let definition = parse_definition(&body)?;
    caller.may_read_secrets(definition.secret_names())?;
    super::same_id(&definition.id, &id)?;
    let mut state = master.lock();
    let Some(entry) = state.app(&id) else {
        return insert(&master, &mut state, definition).map(|app| (StatusCode::CREATED, Json(app)));
    };
    if entry.record.app.definition == definition {
        let app = app_view(&state, &id, gantry_api::now_millis()).ok_or_else(|| not_found(&id))?;
        return Ok((StatusCode::OK, Json(app)));
    }
    update(&master, &mut state, definition, DeploymentKind::Update).map(|app| (StatusCode::OK, Json(app)))
}

async fn scale(
    State(master): State<Arc<Master>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<App>, ApiFailure> {
    let request: ScaleRequest = parse_json(&body)?;
    let mut state = master.lock();
    let entry = state.app(&id).ok_or_else(|| not_found(&id))?;
    let definition = AppDefinition { instances: request.instances, ..entry.record.app.definition.clone() };
    definition.validate().map_err(|e| ApiFailure::invalid(Some(e.field), e.message))?;
    update(&master, &mut state, definition, DeploymentKind::Scale).map(Json)
}

async fn restart(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<App>, ApiFailure> {
    let mut state = master.lock();
    let entry = state.app(&id).ok_or_else(|| not_found(&id))?;
    let definition = entry.record.app.definition.clone();
    update(&master, &mut state, definition, DeploymentKind::Restart).map(Json)
}

async fn list_versions(
    State(master): State<Arc<Master>>,
    Path(id): Path<String>,
) -> Result<Json<Vec<AppVersion>>, ApiFailure> {
    let state = master.lock();
    let entry = state.app(&id).ok_or_else(|| not_found(&id))?;
    let mut list = entry.history.versions.clone();
    if !list.iter().any(|v| v.version == entry.record.app.version) {
        let app = &entry.record.app;
        list.push(AppVersion { version: app.version, created_at: app.updated_at, definition: app.definition.clone() });
    }
    Ok(Json(list))
}

async fn rollback(
    State(master): State<Arc<Master>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<App>, ApiFailure> {
    let request: RollbackRequest = if body.is_empty() { RollbackRequest::default() } else { parse_json(&body)? };
    let mut state = master.lock();
    let entry = state.app(&id).ok_or_else(|| not_found(&id))?;
    let current = entry.record.app.version;
    let to = match request.to {
        Some(to) => to,
        None => entry.history.versions.iter().rev().map(|v| v.version).find(|v| *v < current).ok_or_else(|| {
            ApiFailure::conflict(format!("app `{id}` has no version before {current} to roll back to"))
        })?,
    };
    if to == current {
        return Err(ApiFailure::conflict(format!("version {to} is the current version of app `{id}`")));
    }
    let prepared = versions::rollback(&state, &id, to, None, gantry_api::now_millis()).map_err(version_failure)?;
    info!(app_id = %id, to, "App rolling back.");
    store_version(&master, &mut state, prepared).map(Json)
}

async fn delete(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<App>, ApiFailure> {
    let now = gantry_api::now_millis();
    let mut state = master.lock();
    let app = app_view(&state, &id, now).ok_or_else(|| not_found(&id))?;
    let grace = app.definition.kill_grace_period;
    let kills: Vec<Kill> = state
        .tasks_of_app(&id)
        .into_iter()
        .filter(|t| t.state.is_active())
        .map(|t| Kill { task_id: t.id.clone(), grace_period_secs: grace, reason: None })
        .collect();
    let mut change = kill_change(&state, &kills, "its app was deleted", now);
    change.push(Edit::RemoveApp(id.clone()));
    if let Some(entry) = state.app(&id) {
        entry.history.remove_from(&id, &mut change);
    }
    change.events.push(Event::AppDeleted { app_id: id.clone(), at: now });
    master.commit(&mut state, change)?;
    info!(app_id = %id, killed = kills.len(), "App deleted.");
    Ok(Json(app))
}
