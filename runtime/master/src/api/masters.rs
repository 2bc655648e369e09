//! `GET /api/v1/masters`: the masters' group as this master sees it — each master's number,
//! address, role, the term, what it has applied and (on the leader) how far it lags. Any
//! valid credential may read it.

use crate::master::Master;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use gantry_api::client::MasterInfo;
use std::sync::Arc;

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new().route("/api/v1/masters", get(list))
}

async fn list(State(master): State<Arc<Master>>) -> Json<Vec<MasterInfo>> {
    Json(master.store.group().map(|group| group.members).unwrap_or_default())
}
