//! The Raft RPCs a master serves to its peers: `POST /internal/raft/append|vote|snapshot`, each
//! a JSON request answered with the local Raft's `Result` as JSON (an error of the protocol,
//! such as a higher vote, is an answer, not an HTTP failure). Only other masters may call them:
//! the master's access table requires a master certificate.

use super::TypeConfig;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use openraft::Raft;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

/// Where the routes are.
pub const PREFIX: &str = "/internal/raft";

/// The routes, served by `raft`.
pub fn router<S>(raft: Raft<TypeConfig>) -> Router<S> {
    Router::new()
        .route(&format!("{PREFIX}/append"), post(append))
        .route(&format!("{PREFIX}/vote"), post(vote))
        .route(&format!("{PREFIX}/snapshot"), post(snapshot))
        .with_state(raft)
}

async fn append(
    State(raft): State<Raft<TypeConfig>>,
    Json(rpc): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<impl serde::Serialize> {
    Json(raft.append_entries(rpc).await)
}

async fn vote(State(raft): State<Raft<TypeConfig>>, Json(rpc): Json<VoteRequest<u64>>) -> Json<impl serde::Serialize> {
    Json(raft.vote(rpc).await)
}

async fn snapshot(
    State(raft): State<Raft<TypeConfig>>,
    Json(rpc): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Json<impl serde::Serialize> {
    Json(raft.install_snapshot(rpc).await)
}
