//! The HTTP API v1 without a socket: the router is called with `tower::ServiceExt::oneshot`
//! over a recording in-memory store.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use gantry_api::client::{Health, VersionInfo};
use gantry_api::protocol::{RegisterAgent, StatusUpdate, TaskReport};
use gantry_api::{ApiError, App, Task, TaskState};
use gantry_master::store::StoreOp;
use gantry_master::{MasterConfig, MemStore, Store, StoreError, build, router};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::watch;
use tower::ServiceExt;

struct TestApp {
    master: Arc<gantry_master::Master>,
    router: Router,
    store: Arc<MemStore>,
    _shutdown: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

fn app() -> TestApp {
    let store = Arc::new(MemStore::new());
    let (shutdown, rx) = watch::channel(false);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = MasterConfig::new("127.0.0.1:0".parse().expect("addr"), dir.path().to_path_buf());
    let master = build(config, store.clone(), rx).expect("build");
    TestApp { router: as_callers(router(master.clone()), dir.path()), master, store, _shutdown: shutdown, _dir: dir }
}

/// The router as callers with credentials reach it: requests of the agent protocol come from a
/// connection with agent `a1`'s certificate (or the agent its path names), every other request
/// carries the admin token, unless the test set an Authorization header itself.
fn as_callers(router: Router, data_dir: &std::path::Path) -> Router {
    let token = std::fs::read_to_string(data_dir.join("admin-token")).expect("admin token").trim().to_string();
    router.layer(axum::middleware::map_request(move |mut request: Request<Body>| {
        let token = token.clone();
        async move {
            let path = request.uri().path().to_string();
            if let Some(rest) = path.strip_prefix("/internal/v1/agents/") {
                let id = rest.split('/').next().filter(|_| rest.contains('/')).unwrap_or("a1").to_string();
                let peer = gantry_trust::listener::Peer {
                    addr: "127.0.0.1:1".parse().expect("addr"),
                    identity: Some(gantry_trust::Identity::Agent(id)),
                };
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            } else if !request.headers().contains_key("authorization") {
                let value = format!("Bearer {token}").parse().expect("header value");
                request.headers_mut().insert("authorization", value);
            }
            request
        }
    }))
}

async fn call(router: &Router, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    call_raw(router, method, uri, body).await
}

async fn call_raw(router: &Router, method: Method, uri: &str, body: Body) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body)
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
    let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON answer") };
    (status, value)
}

fn web(instances: u32) -> Value {
    json!({"id": "web", "cmd": "python3 -m http.server $PORT0", "instances": instances, "ports": [{"name": "http"}]})
}

fn error(value: Value) -> ApiError {
    serde_json::from_value(value).expect("ApiError body")
}

#[tokio::test]
async fn health_and_version() {
    let t = app();
    let (status, body) = call(&t.router, Method::GET, "/health", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "not ready before the allocator runs");
    assert_eq!(serde_json::from_value::<Health>(body).expect("health").status, "starting");
    t.master.set_allocating(true);
    let (status, body) = call(&t.router, Method::GET, "/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_value::<Health>(body).expect("health").status, "ok");
    let (status, body) = call(&t.router, Method::GET, "/version", None).await;
    assert_eq!(status, StatusCode::OK);
    let version: VersionInfo = serde_json::from_value(body).expect("version");
    assert_eq!(version.version, gantry_api::VERSION);
    let stored = t.store.load().expect("load").meta.get("master-id").cloned();
    assert_eq!(stored, Some(version.master_id));
}

#[tokio::test]
async fn app_lifecycle() {
    let t = app();
    let (status, body) = call(&t.router, Method::POST, "/api/v1/apps", Some(web(2))).await;
    assert_eq!(status, StatusCode::CREATED);
    let created: App = serde_json::from_value(body).expect("app");
    assert_eq!((created.version, created.status.instances), (1, 2));
    assert_eq!(created.status.waiting, None);

    let (status, _) = call(&t.router, Method::POST, "/api/v1/apps", Some(web(2))).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, body) = call(&t.router, Method::GET, "/api/v1/apps/web", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_value::<App>(body).expect("app").definition, created.definition);

    let (status, body) = call(&t.router, Method::GET, "/api/v1/apps", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_value::<Vec<App>>(body).expect("apps").len(), 1);

    let (status, body) = call(&t.router, Method::PUT, "/api/v1/apps/web", Some(web(2))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_value::<App>(body).expect("app").version, 1, "unchanged is a no-op");

    let (status, body) = call(&t.router, Method::PUT, "/api/v1/apps/web", Some(web(3))).await;
    assert_eq!(status, StatusCode::OK);
    let scaled: App = serde_json::from_value(body).expect("app");
    assert_eq!((scaled.version, scaled.definition.instances), (2, 3));

    let (status, body) = call(&t.router, Method::POST, "/api/v1/apps/web/scale", Some(json!({"instances": 5}))).await;
    assert_eq!(status, StatusCode::OK);
    let scaled: App = serde_json::from_value(body).expect("app");
    assert_eq!((scaled.version, scaled.status.instances), (3, 5));

    let (status, body) = call(&t.router, Method::POST, "/api/v1/apps/web/restart", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_value::<App>(body).expect("app").version, 4);

    let mut changed = web(5);
    changed["cmd"] = json!("sleep 1000");
    let (status, body) = call(&t.router, Method::PUT, "/api/v1/apps/web", Some(changed)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_value::<App>(body).expect("app").version, 5);

    let stored = t.store.load().expect("load");
    assert_eq!(stored.apps.len(), 1);
    assert_eq!((stored.apps[0].app.version, stored.apps[0].config_version), (5, 5));

    let (status, body) = call(&t.router, Method::DELETE, "/api/v1/apps/web", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_value::<App>(body).expect("app").definition.id, "web");
    let (status, body) = call(&t.router, Method::GET, "/api/v1/apps/web", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error(body).message.contains("web"));
    assert!(t.store.load().expect("load").apps.is_empty());
    let (status, _) = call(&t.router, Method::DELETE, "/api/v1/apps/web", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn put_creates_and_checks_the_path_id() {
    let t = app();
    let (status, _) = call(&t.router, Method::PUT, "/api/v1/apps/web", Some(web(1))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = call(&t.router, Method::PUT, "/api/v1/apps/other", Some(web(1))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error(body).field.as_deref(), Some("id"));
}

#[tokio::test]
async fn invalid_definitions_are_422_with_the_field() {
    let t = app();
    let cases = [
        (json!({"id": "Web", "cmd": "x"}), "id"),
        (json!({"id": "web"}), "cmd"),
        (json!({"id": "web", "cmd": "x", "mem": 0}), "mem"),
        (json!({"id": "web", "cmd": "x", "health_checks": [{"protocol": "HTTP"}]}), "health_checks[0].protocol"),
        (json!({"id": "web", "cmd": "x", "bogus": 1}), "bogus"),
        (json!({"cmd": "x"}), "id"),
    ];
    for (body, field) in cases {
        let (status, answer) = call(&t.router, Method::POST, "/api/v1/apps", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error(answer).field.as_deref(), Some(field), "{body}");
    }
    let (status, answer) = call_raw(&t.router, Method::POST, "/api/v1/apps", Body::from("{\"id\": ")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error(answer).message.contains("EOF"));
    let (status, answer) =
        call(&t.router, Method::POST, "/api/v1/apps/web/scale", Some(json!({"instances": -1}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!error(answer).message.is_empty());
    assert!(t.store.batches().iter().all(|b| !b.iter().any(|op| matches!(op, StoreOp::PutApp(_)))));
}

#[tokio::test]
async fn unknown_ids_and_bad_queries() {
    let t = app();
    for uri in ["/api/v1/apps/nope", "/api/v1/tasks/nope", "/api/v1/agents/nope", "/api/v1/nothing"] {
        let (status, body) = call(&t.router, Method::GET, uri, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(!error(body).message.is_empty());
    }
    for uri in ["/api/v1/apps/nope/scale", "/api/v1/apps/nope/restart", "/api/v1/tasks/nope/kill"] {
        let body = uri.ends_with("scale").then(|| json!({"instances": 1}));
        let (status, _) = call(&t.router, Method::POST, uri, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
    let (status, _) = call(&t.router, Method::GET, "/api/v1/tasks?all=maybe", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(&t.router, Method::GET, "/api/v1/tasks/x/logs?offset=abc", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = call(&t.router, Method::GET, "/api/v1/tasks?all=true", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!([]));
}

fn register_body(tasks: Vec<TaskReport>) -> Value {
    serde_json::to_value(RegisterAgent {
        info: gantry_api::AgentInfo {
            id: "a1".into(),
            hostname: "host-1".into(),
            endpoint: "https://127.0.0.1:9".into(),
            resources: gantry_api::Resources::parse("cpus=4;mem=4096;disk=1000;ports=[31000-31009]").expect("valid"),
            attributes: Default::default(),
            version: "test".into(),
        },
        tasks,
    })
    .expect("json")
}

#[tokio::test]
async fn agent_protocol_answers_and_stores_before_acking() {
    let t = app();
    let (status, _) =
        call(&t.router, Method::POST, "/internal/v1/agents/a1/heartbeat", Some(json!({"timestamp": 1}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "unknown agents must register");
    let (status, body) =
        call(&t.router, Method::POST, "/internal/v1/agents/register", Some(register_body(vec![]))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["agent_id"], "a1");
    let (status, _) =
        call(&t.router, Method::POST, "/internal/v1/agents/a1/heartbeat", Some(json!({"timestamp": 1}))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&t.router, Method::GET, "/api/v1/agents/a1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "ACTIVE");

    // A status update for an unknown task is acknowledged (and the task killed).
    let update = StatusUpdate {
        uuid: "u1".into(),
        task_id: "ghost.1".into(),
        state: TaskState::Running,
        healthy: None,
        exit_code: None,
        message: None,
        timestamp: 1,
        limits: Vec::new(),
    };
    let (status, _) = call(
        &t.router,
        Method::POST,
        "/internal/v1/agents/a1/status",
        Some(serde_json::to_value(&update).expect("json")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let stored_agents = t.store.load().expect("load").agents;
    assert_eq!(stored_agents.len(), 1);
    assert!(
        t.store
            .batches()
            .iter()
            .flatten()
            .all(|op| !matches!(op, StoreOp::PutTask(Task { id, .. }) if id == "ghost.1"))
    );
}

#[derive(Debug)]
struct FailingStore;

const FAILING_TOKEN: &str = "gt1_00000000000000000000000000000000000000000000000000000000000000aa";

impl Store for FailingStore {
    fn write(&self, _batch: &[StoreOp]) -> Result<(), StoreError> {
        Err(StoreError::Encode(serde_json::from_str::<u8>("x").expect_err("not JSON")))
    }
    fn load(&self) -> Result<gantry_master::store::Snapshot, StoreError> {
        let mut snapshot = gantry_master::store::Snapshot::default();
        snapshot.meta.insert("master-id".into(), "m".into());
        // The admin token's record as a first start stored it, for the token in FAILING_DIR.
        let hash = gantry_trust::token::api_token_hash(FAILING_TOKEN).expect("token");
        let record = json!({"name": "admin", "policies": ["admin"], "hash": hash, "created_at": 0, "expires_at": null});
        snapshot.meta.insert("token/admin".into(), record.to_string());
        Ok(snapshot)
    }
}

#[tokio::test]
async fn nothing_is_acknowledged_when_the_store_fails() {
    let (_shutdown, rx) = watch::channel(false);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("admin-token"), FAILING_TOKEN).expect("admin token");
    let config = MasterConfig::new("127.0.0.1:0".parse().expect("addr"), dir.path().to_path_buf());
    let router = as_callers(router(build(config, Arc::new(FailingStore), rx).expect("build")), dir.path());
    let (status, _) = call(&router, Method::POST, "/api/v1/apps", Some(web(1))).await;
    assert!(status.is_server_error(), "{status}");
    let (status, _) = call(&router, Method::GET, "/api/v1/apps/web", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&router, Method::POST, "/internal/v1/agents/register", Some(register_body(vec![]))).await;
    assert!(status.is_server_error(), "{status}");
}

#[tokio::test]
async fn status_updates_are_stored_before_they_are_acknowledged() {
    let t = app();
    let (status, _) = call(&t.router, Method::POST, "/internal/v1/agents/register", Some(register_body(vec![]))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&t.router, Method::POST, "/api/v1/apps", Some(web(1))).await;
    assert_eq!(status, StatusCode::CREATED);
    let mut frameworks: Vec<Box<dyn gantry_master::Framework>> =
        vec![Box::new(gantry_master::services::ServicesFramework::new())];
    gantry_master::allocator::run_cycle(&t.master, &mut frameworks);
    let (_, body) = call(&t.router, Method::GET, "/api/v1/tasks?app=web", None).await;
    let tasks: Vec<Task> = serde_json::from_value(body).expect("tasks");
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].state, TaskState::Staging);
    assert!((31000..=31009).contains(&tasks[0].ports[0]));

    let update = StatusUpdate {
        uuid: "u1".into(),
        task_id: tasks[0].id.clone(),
        state: TaskState::Running,
        healthy: None,
        exit_code: None,
        message: None,
        timestamp: 1,
        limits: Vec::new(),
    };
    let body = serde_json::to_value(&update).expect("json");
    let before = t.store.batches().len();
    let (status, _) = call(&t.router, Method::POST, "/internal/v1/agents/a1/status", Some(body.clone())).await;
    assert_eq!(status, StatusCode::OK);
    let batches = t.store.batches();
    assert_eq!(batches.len(), before + 1, "one transaction per update");
    let stored =
        batches[before].iter().any(|op| matches!(op, StoreOp::PutTask(task) if task.state == TaskState::Running));
    assert!(stored, "the RUNNING state is in the acknowledged batch");
    let (status, _) = call(&t.router, Method::POST, "/internal/v1/agents/a1/status", Some(body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(t.store.batches().len(), before + 1, "a retried update writes nothing");
    let (_, body) = call(&t.router, Method::GET, "/api/v1/apps/web", None).await;
    assert_eq!(serde_json::from_value::<App>(body).expect("app").status.running, 1);
}
