//! `/api/v1/tasks`: list, show and kill tasks, and read their logs through their agent.

use crate::allocator::{Kill, kill_change};
use crate::api::ApiFailure;
use crate::master::Master;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use gantry_api::client::LogsQuery;
use gantry_api::client::error_chain;
use gantry_api::protocol::FileChunk;
use gantry_api::{ApiError, Task};
use serde::Deserialize;
use std::sync::Arc;
use tracing::info;

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new()
        .route("/api/v1/tasks", get(list))
        .route("/api/v1/tasks/{id}", get(show))
        .route("/api/v1/tasks/{id}/kill", post(kill))
        .route("/api/v1/tasks/{id}/logs", get(logs))
}

/// Query of `GET /api/v1/tasks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    app: Option<String>,
    #[serde(default)]
    all: bool,
}

fn bad_query(rejection: QueryRejection) -> ApiFailure {
    ApiFailure::bad_request(rejection.body_text())
}

async fn list(
    State(master): State<Arc<Master>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<Task>>, ApiFailure> {
    let Query(query) = query.map_err(bad_query)?;
    let state = master.lock();
    let keep = |t: &&Task| query.all || !t.state.is_terminal();
    let mut tasks: Vec<Task> = match &query.app {
        Some(app) => state.tasks_of_app(app).into_iter().filter(keep).cloned().collect(),
        None => state.tasks().filter(keep).cloned().collect(),
    };
    tasks.sort_by(|a, b| (a.staged_at, &a.id).cmp(&(b.staged_at, &b.id)));
    Ok(Json(tasks))
}

fn not_found(id: &str) -> ApiFailure {
    ApiFailure::not_found(format!("no task `{id}`"))
}

async fn show(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<Task>, ApiFailure> {
    master.lock().task(&id).cloned().map(Json).ok_or_else(|| not_found(&id))
}

async fn kill(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<Task>, ApiFailure> {
    let now = gantry_api::now_millis();
    let mut state = master.lock();
    let task = state.task(&id).ok_or_else(|| not_found(&id))?;
    if !task.state.is_active() {
        return Err(ApiFailure::conflict(format!("task `{id}` is {} and cannot be killed", task.state)));
    }
    let grace = state.app(&task.app_id).map_or(5.0, |e| e.record.app.definition.kill_grace_period);
    let change = kill_change(
        &state,
        &[Kill { task_id: id.clone(), grace_period_secs: grace, reason: None }],
        "killed on request",
        now,
    );
    master.commit(&mut state, change)?;
    info!(task_id = %id, "Task kill requested.");
    state.task(&id).cloned().map(Json).ok_or_else(|| not_found(&id))
}

async fn logs(
    State(master): State<Arc<Master>>,
    Path(id): Path<String>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Json<FileChunk>, ApiFailure> {
    let Query(query) = query.map_err(bad_query)?;
    if query.stream != "stdout" && query.stream != "stderr" {
        return Err(ApiFailure::bad_request(format!("stream must be `stdout` or `stderr`, got `{}`", query.stream)));
    }
    let (agent_id, endpoint) = {
        let state = master.lock();
        let task = state.task(&id).ok_or_else(|| not_found(&id))?;
        let agent = state
            .agent(&task.agent_id)
            .ok_or_else(|| ApiFailure::new(StatusCode::BAD_GATEWAY, format!("agent `{}` is unknown", task.agent_id)))?;
        (task.agent_id.clone(), agent.agent.info.endpoint.trim_end_matches('/').to_string())
    };
    let unreachable = |e: String| {
        ApiFailure::new(
            StatusCode::BAD_GATEWAY,
            format!("cannot read the logs of task `{id}`: agent `{agent_id}` at {endpoint} did not answer: {e}"),
        )
    };
    let (http, base) = agent_client(&master, &agent_id, &endpoint).await.map_err(unreachable)?;
    let response = http
        .get(format!("{base}/files/{id}/{}", query.stream))
        .query(&[("offset", query.offset.to_string()), ("length", query.length.to_string())])
        .send()
        .await
        .map_err(|e| unreachable(error_chain(&e)))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| unreachable(error_chain(&e)))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map(Json).map_err(|e| {
            ApiFailure::new(StatusCode::BAD_GATEWAY, format!("agent `{agent_id}` sent an unreadable file chunk: {e}"))
        });
    }
    let message = serde_json::from_slice::<ApiError>(&bytes)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
    let status = if status.is_client_error() { status } else { StatusCode::BAD_GATEWAY };
    Err(ApiFailure::new(status, format!("agent `{agent_id}`: {message}")))
}

/// A client that reaches agent `agent_id` only: at the address it registered (`endpoint`), over
/// mutual TLS, presenting the master's certificate and accepting only a certificate issued to
/// that agent (its `<id>.agent.gantry` name). Answers the client and the base URL to use.
pub(crate) async fn agent_client(
    master: &Master,
    agent_id: &str,
    endpoint: &str,
) -> Result<(reqwest::Client, String), String> {
    let url = reqwest::Url::parse(endpoint).map_err(|e| format!("its endpoint `{endpoint}` is not a URL: {e}"))?;
    if url.scheme() != "https" {
        return Err(format!("its endpoint `{endpoint}` is not https://"));
    }
    let host = url.host_str().ok_or_else(|| format!("its endpoint `{endpoint}` names no host"))?;
    let port = url.port().ok_or_else(|| format!("its endpoint `{endpoint}` names no port"))?;
    let addr = tokio::net::lookup_host((host.trim_matches(|c| c == '[' || c == ']'), port))
        .await
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{host}` resolves to no address"))?;
    let name = gantry_trust::pki::agent_dns_name(agent_id);
    let tls = master.security().agent_client_tls();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve(&name, addr)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| error_chain(&e))?;
    Ok((http, format!("https://{name}:{port}")))
}
