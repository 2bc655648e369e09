//! `/api/v1/agents/{id}/images`: an agent's image cache, read (`GET`) and pruned
//! (`POST .../images/prune`, `{"all": bool}`) through the agent's own endpoint over mutual TLS,
//! as task logs are read (see `gantry_agent::images_api`). Reading needs read access to the
//! agent, pruning write access ([`crate::security::access`]). The master keeps nothing of it.

use crate::api::tasks::agent_client;
use crate::api::{ApiFailure, parse_json};
use crate::master::Master;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use gantry_api::client::error_chain;
use gantry_api::image::{AgentImages, AgentImagesPruned, ImageCache, ImagePruneReport, PruneImagesRequest};
use gantry_api::{AgentState, ApiError};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// How long a prune may take on the agent: removing layers is file I/O, but the CLI's client
/// gives up after 30 s.
const PRUNE_TIMEOUT: Duration = Duration::from_secs(25);

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new().route("/api/v1/agents/{id}/images", get(list)).route("/api/v1/agents/{id}/images/prune", post(prune))
}

/// The agent a call goes to, as the master knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    id: String,
    hostname: String,
    endpoint: String,
    state: AgentState,
}

impl Target {
    fn named(&self) -> String {
        format!("agent `{}` ({})", self.id, self.hostname)
    }
}

fn target(master: &Master, id: &str) -> Result<Target, ApiFailure> {
    let state = master.lock();
    let entry = state
        .agent(id)
        .ok_or_else(|| ApiFailure::not_found(format!("no agent `{id}`: `gantry node list` shows the agents")))?;
    Ok(Target {
        id: id.to_string(),
        hostname: entry.agent.info.hostname.clone(),
        endpoint: entry.agent.info.endpoint.trim_end_matches('/').to_string(),
        state: entry.agent.state,
    })
}

async fn list(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<AgentImages>, ApiFailure> {
    let target = target(&master, &id)?;
    let cache: ImageCache = call(&master, &target, "/images", None).await?;
    Ok(Json(AgentImages { agent_id: target.id, hostname: target.hostname, cache }))
}

async fn prune(
    State(master): State<Arc<Master>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<AgentImagesPruned>, ApiFailure> {
    let request: PruneImagesRequest = if body.is_empty() { PruneImagesRequest::default() } else { parse_json(&body)? };
    let target = target(&master, &id)?;
    let report: ImagePruneReport = call(&master, &target, "/images/prune", Some(request)).await?;
    info!(
        agent_id = %target.id,
        all = request.all,
        removed = report.removed.len(),
        freed_bytes = report.freed_bytes,
        "Image cache pruned on request."
    );
    Ok(Json(AgentImagesPruned { agent_id: target.id, hostname: target.hostname, report }))
}

/// `GET path` on the agent, or `POST` with `prune` as the body.
async fn call<T: DeserializeOwned>(
    master: &Master,
    target: &Target,
    path: &str,
    prune: Option<PruneImagesRequest>,
) -> Result<T, ApiFailure> {
    let (http, base) = agent_client(master, &target.id, &target.endpoint).await.map_err(|e| unreachable(target, &e))?;
    let request = match prune {
        None => http.get(format!("{base}{path}")),
        Some(body) => http.post(format!("{base}{path}")).json(&body).timeout(PRUNE_TIMEOUT),
    };
    let response = request.send().await.map_err(|e| {
        let mut message = error_chain(&e);
        if e.is_timeout() && prune.is_some() {
            message.push_str(&format!(
                " (the prune may still be running there: `gantry image list --agent {}` shows the cache)",
                target.id
            ));
        }
        unreachable(target, &message)
    })?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| unreachable(target, &error_chain(&e)))?;
    if !status.is_success() {
        return Err(refused(target, status, &bytes));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiFailure::new(
            StatusCode::BAD_GATEWAY,
            format!("{} sent an unreadable answer about its images: {e}", target.named()),
        )
    })
}

/// 502: the agent did not answer; what to check depends on whether the master still hears it.
fn unreachable(target: &Target, error: &str) -> ApiFailure {
    let hint = match target.state {
        AgentState::Unreachable => {
            "it is UNREACHABLE (no heartbeats): start its `gantry agent` again or check its network"
        }
        AgentState::Active => "check that its `gantry agent` runs and that the master can reach that address",
    };
    ApiFailure::new(
        StatusCode::BAD_GATEWAY,
        format!("cannot reach {} at {}: {error}; {hint}", target.named(), target.endpoint),
    )
}

/// The agent's refusal, said for the user: 409 is an agent where containers cannot run, a body
/// the agent refused keeps its status, anything else is the agent's failure (502).
fn refused(target: &Target, status: StatusCode, body: &[u8]) -> ApiFailure {
    let message = serde_json::from_slice::<ApiError>(body)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_string());
    match status {
        StatusCode::CONFLICT => ApiFailure::conflict(format!(
            "containers cannot run on agent `{}` ({}): {message}; it has no image cache",
            target.id, target.hostname
        )),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => ApiFailure::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "{} does not serve its image cache (an older gantry?): upgrade it to this master's version",
                target.named()
            ),
        ),
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            ApiFailure::new(status, format!("{} refused the request: {message}", target.named()))
        }
        _ => ApiFailure::new(StatusCode::BAD_GATEWAY, format!("{} failed ({status}): {message}", target.named())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(state: AgentState) -> Target {
        Target { id: "a1".into(), hostname: "node-1".into(), endpoint: "https://10.0.0.1:5051".into(), state }
    }

    fn body(message: &str) -> Vec<u8> {
        serde_json::to_vec(&ApiError { message: message.into(), field: None }).expect("serialize")
    }

    #[test]
    fn an_agent_without_containers_is_named_with_the_reason() {
        let failure =
            refused(&target(AgentState::Active), StatusCode::CONFLICT, &body("the agent does not run as root"));
        assert_eq!(failure.status, StatusCode::CONFLICT);
        assert!(
            failure
                .error
                .message
                .starts_with("containers cannot run on agent `a1` (node-1): the agent does not run as root"),
            "{}",
            failure.error.message
        );
    }

    #[test]
    fn other_refusals_name_the_agent_and_what_to_do() {
        let old = refused(&target(AgentState::Active), StatusCode::NOT_FOUND, b"");
        assert_eq!(old.status, StatusCode::BAD_GATEWAY);
        assert!(old.error.message.contains("upgrade it"), "{}", old.error.message);
        let bad = refused(&target(AgentState::Active), StatusCode::UNPROCESSABLE_ENTITY, &body("invalid prune body"));
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(bad.error.message.contains("agent `a1` (node-1) refused the request: invalid prune body"));
        let broken = refused(&target(AgentState::Active), StatusCode::INTERNAL_SERVER_ERROR, b"disk on fire");
        assert_eq!(broken.status, StatusCode::BAD_GATEWAY);
        assert!(broken.error.message.ends_with("disk on fire"), "{}", broken.error.message);
    }

    #[test]
    fn an_agent_that_does_not_answer_gets_a_hint_by_its_standing() {
        let down = unreachable(&target(AgentState::Unreachable), "connection refused");
        assert_eq!(down.status, StatusCode::BAD_GATEWAY);
        assert!(
            down.error
                .message
                .contains("cannot reach agent `a1` (node-1) at https://10.0.0.1:5051: connection refused")
        );
        assert!(down.error.message.contains("UNREACHABLE"), "{}", down.error.message);
        let active = unreachable(&target(AgentState::Active), "timed out");
        assert!(active.error.message.contains("check that its `gantry agent` runs"), "{}", active.error.message);
    }
}
