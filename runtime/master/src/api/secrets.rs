//! `/api/v1/secrets`: put (a new version), list, show and delete secrets. Values are sealed
//! before they reach the store and are never answered: the API shows names and versions only.
//! Tasks get them through their app's or job's `secrets` and `secret_files`.

use crate::api::{ApiFailure, parse_json};
use crate::master::Master;
use crate::security::records::{self, SecretRecord};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use gantry_api::security::{PutSecret, SecretInfo};
use std::sync::Arc;
use tracing::info;

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new()
        .route("/api/v1/secrets", get(list))
        .route("/api/v1/secrets/{*name}", get(show).put(put).delete(delete))
}

fn not_found(name: &str) -> ApiFailure {
    ApiFailure::not_found(format!("no secret `{name}`"))
}

async fn list(State(master): State<Arc<Master>>) -> Json<Vec<SecretInfo>> {
    Json(master.security().records().secrets().map(SecretRecord::info).collect())
}

async fn show(State(master): State<Arc<Master>>, Path(name): Path<String>) -> Result<Json<SecretInfo>, ApiFailure> {
    master.security().records().secret(&name).map(|s| Json(s.info())).ok_or_else(|| not_found(&name))
}

async fn put(
    State(master): State<Arc<Master>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<SecretInfo>, ApiFailure> {
    gantry_api::security::validate_secret_name(&name).map_err(|m| ApiFailure::invalid(Some("name".to_string()), m))?;
    let request: PutSecret = parse_json(&body)?;
    let security = master.security();
    let now = gantry_api::now_millis();
    let (version, created_at) = security.records().secret(&name).map_or((1, now), |s| (s.version + 1, s.created_at));
    let sealed = security.seal().seal(&name, version, request.value.as_bytes());
    let record =
        SecretRecord { name: name.clone(), version, created_at, updated_at: now, sealed: gantry_trust::hex(&sealed) };
    let info = record.info();
    let op = records::put_secret(&record)?;
    security.write(&[op], |records| records.insert_secret(record))?;
    info!(secret = %name, version, "Secret stored.");
    Ok(Json(info))
}

async fn delete(State(master): State<Arc<Master>>, Path(name): Path<String>) -> Result<Json<SecretInfo>, ApiFailure> {
    let security = master.security();
    if security.records().secret(&name).is_none() {
        return Err(not_found(&name));
    }
    let removed = security.write(&[records::delete_secret(&name)], |records| records.remove_secret(&name))?;
    info!(secret = %name, "Secret deleted.");
    removed.map(|s| Json(s.info())).ok_or_else(|| not_found(&name))
}
