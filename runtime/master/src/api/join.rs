//! The join exchange of the agent protocol: `GET /internal/v1/ca` (the CA certificate, which a
//! joining agent checks against the hash in its join token), `POST /internal/v1/join` (the join
//! token and a CSR in, the agent's certificate out) and `POST /internal/v1/agents/{id}/renew`
//! (with the agent's certificate: a new certificate for the same key).
//!
//! An agent id is bound to the key it first joined with: a second join under the same id with
//! another key is refused, so holding the join token does not let anyone take over an existing
//! agent. Revoking an agent (`DELETE /api/v1/agents/{id}`) lifts the binding.

use crate::api::{ApiFailure, parse_json};
use crate::master::Master;
use crate::security::records;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use gantry_api::protocol::PREFIX;
use gantry_api::security::{JoinRequest, JoinResponse, RenewRequest};
use gantry_trust::pki::{LEAF_LIFETIME, csr_key_hash};
use gantry_trust::{Identity, JoinToken};
use std::sync::Arc;
use tracing::{info, warn};

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new()
        .route("/internal/v1/ca", get(ca))
        .route("/internal/v1/join", post(join))
        .route(&format!("{PREFIX}/{{id}}/renew"), post(renew))
}

async fn ca(State(master): State<Arc<Master>>) -> String {
    master.security().ca_pem().to_string()
}

/// Checks an agent id: letters, digits, `-`, `_`, `.`; at most 128 characters.
pub fn validate_agent_id(id: &str) -> Result<(), ApiFailure> {
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ApiFailure::invalid(
            Some("agent_id".to_string()),
            format!("`{id}` is not an agent id: use letters, digits, `-`, `_` and `.`"),
        ));
    }
    Ok(())
}

async fn join(State(master): State<Arc<Master>>, body: Bytes) -> Result<Json<JoinResponse>, ApiFailure> {
    let request: JoinRequest = parse_json(&body)?;
    validate_agent_id(&request.agent_id)?;
    let security = master.security();
    let token =
        JoinToken::parse(&request.token).map_err(|e| ApiFailure::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    if token.ca_hash != security.ca().hash() {
        return Err(ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            "the join token is for another cluster (it pins another CA): use this master's DATA/join-token",
        ));
    }
    if !security.join_token_matches(&token) {
        warn!(agent_id = %request.agent_id, "Join refused: wrong join token.");
        return Err(ApiFailure::new(StatusCode::UNAUTHORIZED, "the join token is not valid for this cluster"));
    }
    let key_hash =
        csr_key_hash(&request.csr).map_err(|e| ApiFailure::invalid(Some("csr".to_string()), e.to_string()))?;
    if let Some(bound) = security.records().agent_key(&request.agent_id)
        && bound != key_hash
    {
        return Err(ApiFailure::conflict(format!(
            "agent `{}` already joined with another key: if that agent is gone, revoke it first (DELETE /api/v1/agents/{})",
            request.agent_id, request.agent_id
        )));
    }
    let identity = Identity::Agent(request.agent_id.clone());
    let certificate = security
        .ca()
        .sign_csr(&request.csr, &identity, LEAF_LIFETIME)
        .map_err(|e| ApiFailure::invalid(Some("csr".to_string()), e.to_string()))?;
    let id = request.agent_id.clone();
    security.write(&records::bind_agent(&id, &key_hash), |records| records.bind_agent(&id, &key_hash))?;
    info!(agent_id = %request.agent_id, "Agent joined: certificate issued.");
    Ok(Json(JoinResponse { certificate, ca: security.ca_pem().to_string() }))
}

async fn renew(
    State(master): State<Arc<Master>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<JoinResponse>, ApiFailure> {
    let request: RenewRequest = parse_json(&body)?;
    let security = master.security();
    let key_hash =
        csr_key_hash(&request.csr).map_err(|e| ApiFailure::invalid(Some("csr".to_string()), e.to_string()))?;
    if security.records().agent_key(&id) != Some(key_hash.as_str()) {
        return Err(ApiFailure::new(
            StatusCode::FORBIDDEN,
            format!("agent `{id}` may renew only for the key it joined with"),
        ));
    }
    let certificate = security
        .ca()
        .sign_csr(&request.csr, &Identity::Agent(id.clone()), LEAF_LIFETIME)
        .map_err(|e| ApiFailure::invalid(Some("csr".to_string()), e.to_string()))?;
    info!(agent_id = %id, "Agent certificate renewed.");
    Ok(Json(JoinResponse { certificate, ca: security.ca_pem().to_string() }))
}
