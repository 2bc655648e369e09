//! `/api/v1/apps`: create, read, update, scale, restart and delete apps.
//!
//! Versioning: every change bumps `version`. A change of anything but `instances` (and a
//! restart) also moves the app's configuration version, so running instances are replaced
//! rolling; a change of `instances` alone is a scale and keeps them. An unchanged definition is
//! a no-op. Every change resets the app's backoff.

use crate::allocator::{Kill, kill_change};
use crate::api::{ApiFailure, parse_json};
use crate::master::{Change, Master};
use crate::services::backoff;
use crate::state::ClusterState;
use crate::store::AppRecord;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use gantry_api::client::ScaleRequest;
use gantry_api::{App, AppDefinition, Event, Millis};
use std::sync::Arc;
use tracing::info;

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new()
        .route("/api/v1/apps", get(list).post(create))
        .route("/api/v1/apps/{id}", get(show).put(put).delete(delete))
        .route("/api/v1/apps/{id}/scale", post(scale))
        .route("/api/v1/apps/{id}/restart", post(restart))
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

async fn create(State(master): State<Arc<Master>>, body: Bytes) -> Result<(StatusCode, Json<App>), ApiFailure> {
    let definition = parse_definition(&body)?;
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
    let app = App { definition, version: 1, created_at: now, updated_at: now, status: Default::default() };
    let change = Change {
        events: vec![Event::AppUpdated { app_id: id.clone(), version: 1, at: now }],
        apps: vec![AppRecord { app, config_version: 1 }],
        ..Change::default()
    };
    master.commit(state, change)?;
    info!(app_id = %id, "App created.");
    app_view(state, &id, now).ok_or_else(|| not_found(&id))
}

/// Stores a new version of an existing app; `reconfigure` replaces its instances.
fn update(
    master: &Master,
    state: &mut ClusterState,
    definition: AppDefinition,
    reconfigure: bool,
) -> Result<App, ApiFailure> {
    let now = gantry_api::now_millis();
    let id = definition.id.clone();
    let entry = state.app(&id).ok_or_else(|| not_found(&id))?;
    let mut record = entry.record.clone();
    record.app.definition = definition;
    record.app.version += 1;
    record.app.updated_at = now;
    if reconfigure {
        record.config_version = record.app.version;
    }
    let version = record.app.version;
    let change = Change {
        events: vec![Event::AppUpdated { app_id: id.clone(), version, at: now }],
        apps: vec![record],
        ..Change::default()
    };
    master.commit(state, change)?;
    if let Some(runtime) = state.app_runtime_mut(&id) {
        backoff::reset(runtime);
    }
    info!(app_id = %id, version, reconfigure, "App updated.");
    app_view(state, &id, now).ok_or_else(|| not_found(&id))
}

async fn put(
    State(master): State<Arc<Master>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<App>), ApiFailure> {
    let definition = parse_definition(&body)?;
    if definition.id != id {
        return Err(ApiFailure::invalid(
            Some("id".to_string()),
            format!("the body's id `{}` differs from the path's `{id}`", definition.id),
        ));
    }
    let mut state = master.lock();
    let Some(entry) = state.app(&id) else {
        return insert(&master, &mut state, definition).map(|app| (StatusCode::CREATED, Json(app)));
    };
    let current = &entry.record.app.definition;
    if *current == definition {
        let app = app_view(&state, &id, gantry_api::now_millis()).ok_or_else(|| not_found(&id))?;
        return Ok((StatusCode::OK, Json(app)));
    }
    let only_instances = AppDefinition { instances: definition.instances, ..current.clone() } == definition;
    update(&master, &mut state, definition, !only_instances).map(|app| (StatusCode::OK, Json(app)))
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
    update(&master, &mut state, definition, false).map(Json)
}

async fn restart(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<App>, ApiFailure> {
    let mut state = master.lock();
    let entry = state.app(&id).ok_or_else(|| not_found(&id))?;
    let definition = entry.record.app.definition.clone();
    update(&master, &mut state, definition, true).map(Json)
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
    change.removed_apps.push(id.clone());
    change.events.push(Event::AppDeleted { app_id: id.clone(), at: now });
    master.commit(&mut state, change)?;
    info!(app_id = %id, killed = kills.len(), "App deleted.");
    Ok(Json(app))
}
