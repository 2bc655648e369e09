//! `GET /api/v1/snapshot`: the whole cluster state as one consistent snapshot, for `gantry
//! snapshot save` (admin only: it holds every token's hash and every sealed secret).

use crate::api::ApiFailure;
use crate::master::Master;
use crate::snapshot::{self, ClusterSnapshot};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use tracing::info;

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new().route("/api/v1/snapshot", get(save))
}

async fn save(State(master): State<Arc<Master>>) -> Result<Json<ClusterSnapshot>, ApiFailure> {
    let snapshot = tokio::task::spawn_blocking(move || snapshot::take(master.store.as_ref(), master.security().ca()))
        .await
        .map_err(|e| ApiFailure::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    info!(target: "gantry::audit", counts = ?snapshot.counts(), "Snapshot taken.");
    Ok(Json(snapshot))
}
