//! `/api/v1/tokens`: create (the secret is answered once), list, show and revoke API tokens;
//! and `GET /api/v1/whoami`.

use crate::api::{ApiFailure, parse_json};
use crate::master::Master;
use crate::security::auth::Caller;
use crate::security::records::{self, TokenRecord};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use gantry_api::security::{CreateToken, CreatedToken, TokenInfo, Whoami};
use std::sync::Arc;
use tracing::info;

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new()
        .route("/api/v1/tokens", get(list).post(create))
        .route("/api/v1/tokens/{name}", get(show).delete(revoke))
        .route("/api/v1/whoami", get(whoami))
}

fn not_found(name: &str) -> ApiFailure {
    ApiFailure::not_found(format!("no token `{name}`"))
}

async fn list(State(master): State<Arc<Master>>) -> Json<Vec<TokenInfo>> {
    Json(master.security().records().tokens().map(TokenRecord::info).collect())
}

async fn show(State(master): State<Arc<Master>>, Path(name): Path<String>) -> Result<Json<TokenInfo>, ApiFailure> {
    master.security().records().token(&name).map(|t| Json(t.info())).ok_or_else(|| not_found(&name))
}

async fn create(State(master): State<Arc<Master>>, body: Bytes) -> Result<Json<CreatedToken>, ApiFailure> {
    let request: CreateToken = parse_json(&body)?;
    gantry_trust::policy::validate_name(&request.name)
        .map_err(|e| ApiFailure::invalid(Some("name".to_string()), e.to_string()))?;
    if request.policies.is_empty() {
        return Err(ApiFailure::invalid(
            Some("policies".to_string()),
            "a token needs at least one policy (built in: admin, deployer, read-only)",
        ));
    }
    let security = master.security();
    {
        let records = security.records();
        if records.token(&request.name).is_some() {
            return Err(ApiFailure::conflict(format!(
                "a token `{}` exists: revoke it first (`gantry token revoke {}`) or choose another name",
                request.name, request.name
            )));
        }
        if let Some(unknown) = request.policies.iter().find(|p| records.policy(p).is_none()) {
            return Err(ApiFailure::invalid(
                Some("policies".to_string()),
                format!(
                    "no policy `{unknown}`: apply it first (`gantry policy apply FILE`), or use admin, deployer or read-only"
                ),
            ));
        }
    }
    let token = gantry_trust::token::new_api_token();
    let now = gantry_api::now_millis();
    let record = TokenRecord {
        name: request.name.clone(),
        policies: request.policies.clone(),
        hash: gantry_trust::token::api_token_hash(&token)
            .map_err(|e| ApiFailure::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
        created_at: now,
        expires_at: request.ttl_secs.map(|ttl| now.saturating_add(ttl.saturating_mul(1000))),
    };
    let info = record.info();
    let op = records::put_token(&record)?;
    security.write(&[op], |records| records.insert_token(record))?;
    info!(token = %info.name, policies = ?info.policies, "Token created.");
    Ok(Json(CreatedToken { info, token }))
}

async fn revoke(State(master): State<Arc<Master>>, Path(name): Path<String>) -> Result<Json<TokenInfo>, ApiFailure> {
    let security = master.security();
    if security.records().token(&name).is_none() {
        return Err(not_found(&name));
    }
    let removed = security.write(&[records::delete_token(&name)], |records| records.remove_token(&name))?;
    let removed = removed.ok_or_else(|| not_found(&name))?;
    info!(token = %name, "Token revoked.");
    Ok(Json(removed.info()))
}

async fn whoami(Extension(caller): Extension<Caller>) -> Json<Whoami> {
    let (policies, expires_at) = match &caller {
        Caller::Token { policies, expires_at, .. } => (policies.iter().map(|p| p.name.clone()).collect(), *expires_at),
        _ => (Vec::new(), None),
    };
    Json(Whoami { identity: caller.describe().replacen(' ', ":", 1), policies, expires_at })
}
