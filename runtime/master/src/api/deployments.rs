//! `/api/v1/deployments`: list, show, cancel and promote deployments.
//!
//! A deployment is answered with its live progress, steps and (while it cannot move) the
//! reason, from `services::deployment::evaluate`. Cancel ends an active deployment and deploys
//! the version it started from again (a rollback deployment); promote lets a deployment paused
//! on its canaries go on. The deployment driver (`services::driver`) moves deployments along.

use crate::api::ApiFailure;
use crate::master::Master;
use crate::services::deployment::{EvalInput, evaluate, finished_steps};
use crate::services::history;
use crate::services::versions::{self, Ending};
use crate::state::ClusterState;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use gantry_api::{Deployment, DeploymentStatus, Millis};
use serde::Deserialize;
use std::sync::Arc;
use tracing::info;

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new()
        .route("/api/v1/deployments", get(list))
        .route("/api/v1/deployments/{id}", get(show))
        .route("/api/v1/deployments/{id}/cancel", post(cancel))
        .route("/api/v1/deployments/{id}/promote", post(promote))
}

/// Query of `GET /api/v1/deployments`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only this app's deployments.
    app: Option<String>,
}

/// A deployment with its live progress, steps and reason.
pub fn deployment_view(state: &ClusterState, d: &Deployment, now: Millis) -> Deployment {
    let mut view = d.clone();
    match state.app(&d.app_id).filter(|_| d.status.is_active()) {
        Some(entry) => {
            let tasks = state.tasks_of_app(&d.app_id);
            let evaluation = evaluate(&EvalInput {
                deployment: d,
                definition: &entry.record.app.definition,
                config_version: entry.record.config_version,
                tasks: &tasks,
                waiting: entry.runtime.waiting.as_deref(),
                now,
            });
            view.progress = evaluation.progress;
            view.steps = evaluation.steps;
            view.reason = evaluation.reason;
        }
        None => view.steps = finished_steps(d),
    }
    view
}

/// The app that deployment `id` rolls out, if the deployment is known.
pub fn app_of(state: &ClusterState, id: &str) -> Option<String> {
    find(state, id).ok().map(|d| d.app_id.clone())
}

fn find<'a>(state: &'a ClusterState, id: &str) -> Result<&'a Deployment, ApiFailure> {
    state
        .apps()
        .flat_map(|e| e.history.deployments.iter())
        .find(|d| d.id == id)
        .ok_or_else(|| ApiFailure::not_found(format!("no deployment `{id}`; see `gantry deployment list`")))
}

async fn list(
    State(master): State<Arc<Master>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Deployment>>, ApiFailure> {
    let now = gantry_api::now_millis();
    let state = master.lock();
    if let Some(app) = &query.app
        && state.app(app).is_none()
    {
        return Err(ApiFailure::not_found(format!("no app `{app}`")));
    }
    let mut out: Vec<Deployment> = state
        .apps()
        .filter(|e| query.app.as_ref().is_none_or(|a| *a == e.record.app.definition.id))
        .flat_map(|e| e.history.deployments.iter())
        .map(|d| deployment_view(&state, d, now))
        .collect();
    out.sort_by_key(|d| d.created_at);
    Ok(Json(out))
}

async fn show(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<Deployment>, ApiFailure> {
    let state = master.lock();
    let d = find(&state, &id)?;
    Ok(Json(deployment_view(&state, d, gantry_api::now_millis())))
}

fn not_active(d: &Deployment) -> ApiFailure {
    ApiFailure::conflict(format!("deployment `{}` is {}, not running", d.id, d.status))
}

async fn cancel(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<Deployment>, ApiFailure> {
    let now = gantry_api::now_millis();
    let mut state = master.lock();
    let d = find(&state, &id)?;
    if !d.status.is_active() {
        return Err(not_active(d));
    }
    let (app_id, from) = (d.app_id.clone(), d.from_version);
    let ending = Ending { status: DeploymentStatus::Cancelled, reason: Some("cancelled by a user".to_string()) };
    let prepared = versions::rollback(&state, &app_id, from, Some(ending), now)
        .map_err(|e| ApiFailure::conflict(format!("cannot cancel deployment `{id}`: {e}")))?;
    master.commit(&mut state, prepared.change)?;
    versions::apply(&mut state, &app_id, prepared.history);
    info!(%app_id, deployment_id = %id, version = from, "Deployment cancelled; rolling back.");
    let d = find(&state, &id)?;
    Ok(Json(deployment_view(&state, d, now)))
}

async fn promote(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<Deployment>, ApiFailure> {
    let now = gantry_api::now_millis();
    let mut state = master.lock();
    let d = find(&state, &id)?;
    if !d.status.is_active() {
        return Err(not_active(d));
    }
    if d.promoted {
        return Err(ApiFailure::conflict(format!("deployment `{id}` has no canaries waiting for promotion")));
    }
    let app_id = d.app_id.clone();
    let mut history: history::AppHistory = state
        .app(&app_id)
        .map(|e| e.history.clone())
        .ok_or_else(|| ApiFailure::not_found(format!("no app `{app_id}`")))?;
    let Some(active) = history.active_mut() else { return Err(not_active(d)) };
    active.promoted = true;
    active.status = DeploymentStatus::Running;
    active.reason = None;
    active.progressed_at = now;
    let events = vec![versions::deployment_event(active, now)];
    let before =
        state.app(&app_id).map(|e| &e.history).ok_or_else(|| ApiFailure::not_found(format!("no app `{app_id}`")))?;
    let change = versions::history_change(&app_id, before, &history, events)
        .map_err(|e| ApiFailure::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    master.commit(&mut state, change)?;
    versions::apply(&mut state, &app_id, history);
    info!(%app_id, deployment_id = %id, "Deployment promoted.");
    let d = find(&state, &id)?;
    Ok(Json(deployment_view(&state, d, now)))
}

#[cfg(test)]
mod tests {
    use crate::{MasterConfig, MemStore, build, router};
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use gantry_api::{App, AppVersion, Deployment, DeploymentKind, DeploymentStatus};
    use serde_json::{Value, json};
    use std::sync::Arc;
    use tower::ServiceExt;

    async fn call(router: &Router, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(body)
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn web(release: &str, canary: u32) -> Value {
        json!({"id": "web", "cmd": "serve", "instances": 2, "env": {"RELEASE": release},
               "upgrade_strategy": {"canary": canary}})
    }

    #[tokio::test]
    async fn versions_rollback_cancel_and_promote() {
        let store = Arc::new(MemStore::new());
        let (_shutdown, rx) = tokio::sync::watch::channel(false);
        let dir = tempfile::tempdir().expect("temp dir");
        let config = MasterConfig::new("127.0.0.1:0".parse().expect("addr"), dir.path().to_path_buf());
        let token = |dir: &std::path::Path| {
            std::fs::read_to_string(dir.join("admin-token")).expect("admin token").trim().to_string()
        };
        let master = build(config, store, rx).expect("build");
        let bearer = format!("Bearer {}", token(dir.path()));
        let router = router(master).layer(axum::middleware::map_request(move |mut request: Request<Body>| {
            let bearer = bearer.clone();
            async move {
                request.headers_mut().insert("authorization", bearer.parse().expect("header"));
                request
            }
        }));

        let (status, body) = call(&router, Method::PUT, "/api/v1/apps/web", Some(web("1", 0))).await;
        assert_eq!(status, StatusCode::CREATED);
        let app: App = serde_json::from_value(body).expect("app");
        assert_eq!(app.status.deployment, None, "creating an app is no deployment");
        let (status, _) = call(&router, Method::POST, "/api/v1/apps/web/rollback", None).await;
        assert_eq!(status, StatusCode::CONFLICT, "nothing to roll back to");

        let (_, body) = call(&router, Method::PUT, "/api/v1/apps/web", Some(web("2", 1))).await;
        let app: App = serde_json::from_value(body).expect("app");
        let id = app.status.deployment.expect("a deployment");
        let (_, body) = call(&router, Method::GET, "/api/v1/deployments?app=web", None).await;
        let list: Vec<Deployment> = serde_json::from_value(body).expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].kind, list[0].from_version, list[0].to_version), (DeploymentKind::Update, 1, 2));
        assert!(!list[0].promoted);
        assert_eq!(list[0].steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["canary", "promote", "replace"]);
        let (_, body) = call(&router, Method::GET, "/api/v1/apps/web/versions", None).await;
        let versions: Vec<AppVersion> = serde_json::from_value(body).expect("versions");
        assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 2]);

        let (status, body) = call(&router, Method::POST, &format!("/api/v1/deployments/{id}/promote"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let promoted: Deployment = serde_json::from_value(body).expect("deployment");
        assert!(promoted.promoted);
        let (status, _) = call(&router, Method::POST, &format!("/api/v1/deployments/{id}/promote"), None).await;
        assert_eq!(status, StatusCode::CONFLICT, "promoted already");

        let (status, body) = call(&router, Method::POST, &format!("/api/v1/deployments/{id}/cancel"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let cancelled: Deployment = serde_json::from_value(body).expect("deployment");
        assert_eq!(cancelled.status, DeploymentStatus::Cancelled);
        let rollback = cancelled.rollback_id.expect("rollback");
        let (_, body) = call(&router, Method::GET, &format!("/api/v1/deployments/{rollback}"), None).await;
        let rollback: Deployment = serde_json::from_value(body).expect("deployment");
        assert_eq!((rollback.kind, rollback.from_version, rollback.to_version), (DeploymentKind::Rollback, 2, 3));
        assert!(rollback.promoted, "rollbacks have no canaries");
        let (_, body) = call(&router, Method::GET, "/api/v1/apps/web", None).await;
        let app: App = serde_json::from_value(body).expect("app");
        assert_eq!(app.definition.env.get("RELEASE").map(String::as_str), Some("1"));
        let (status, _) = call(&router, Method::POST, &format!("/api/v1/deployments/{id}/cancel"), None).await;
        assert_eq!(status, StatusCode::CONFLICT, "cancelled already");

        let (status, body) = call(&router, Method::POST, "/api/v1/apps/web/rollback", Some(json!({"to": 9}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, _) = call(&router, Method::POST, "/api/v1/apps/web/rollback", Some(json!({"to": 2}))).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = call(&router, Method::GET, "/api/v1/deployments/nope", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = call(&router, Method::GET, "/api/v1/deployments?app=nope", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, body) = call(&router, Method::POST, "/api/v1/apps/web/scale", Some(json!({"instances": 3}))).await;
        let app: App = serde_json::from_value(body).expect("app");
        let (_, body) = call(&router, Method::GET, "/api/v1/deployments?app=web", None).await;
        let list: Vec<Deployment> = serde_json::from_value(body).expect("list");
        let last = list.last().expect("the scale");
        assert_eq!(
            (last.kind, last.to_version, Some(last.id.clone())),
            (DeploymentKind::Scale, app.version, app.status.deployment)
        );
    }
}
