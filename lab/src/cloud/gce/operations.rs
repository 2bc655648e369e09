//! Operations: every insert, delete, start and stop answers one, which goes PENDING → RUNNING →
//! DONE over the lab's operation delay (half each), changes its target on the way (an
//! instance goes PROVISIONING → STAGING → RUNNING, STOPPING → TERMINATED), and ends with an
//! `error` when it fails. zoneOperations, regionOperations and globalOperations `get` and
//! `wait` read them. A request id seen before answers its first operation again.

use super::error::ApiError;
use super::faults::OperationFailure;
use super::instances;
use super::spec::Call;
use super::state::{Api, State, USER, link, now};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long `wait` waits at most, as the real API (about two minutes).
const WAIT_LIMIT: Duration = Duration::from_secs(120);

/// What an operation does to its target when it runs and when it is done.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Nothing more: the request made the resource.
    Nothing,
    /// The resource at this path goes.
    Delete(String),
    /// The network at this path goes, unless something still uses it (then the operation fails
    /// with RESOURCE_IN_USE_BY_ANOTHER_RESOURCE, as Compute's does).
    DeleteNetwork(String),
    /// The instance at this path boots.
    InsertInstance(String),
    /// The instance at this path stops and goes.
    DeleteInstance(String),
    /// The instance at this path stops.
    StopInstance(String),
    /// The instance at this path starts.
    StartInstance(String),
    /// The operation fails; the instance at this path (made by the request) goes.
    Fail(OperationFailure, String),
}

/// What a new operation is about.
#[derive(Debug)]
pub struct Target<'a> {
    /// The project.
    pub project: &'a str,
    /// `zones/<zone>`, `regions/<region>` or `global`.
    pub scope: String,
    /// insert, delete, start, stop.
    pub operation_type: &'a str,
    /// The target's path.
    pub path: String,
    /// The target's id.
    pub id: String,
}

/// The operation a request id named before, if any.
pub fn replay(state: &State, call: &Call) -> Option<Value> {
    let request_id = call.params.get("requestId")?;
    let path = state.request_ids.get(&format!("{}/{request_id}", call.param("project")))?;
    state.operations.get(path).cloned()
}

/// Checks `requestId` (a UUID other than the zero one), when given.
pub fn check_request_id(call: &Call) -> Result<(), ApiError> {
    let Some(id) = call.params.get("requestId") else { return Ok(()) };
    let groups: Vec<&str> = id.split('-').collect();
    let shape = groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit()));
    if !shape || id.chars().all(|c| c == '0' || c == '-') {
        return Err(ApiError::invalid("requestId", id, "Must be a valid UUID other than the zero UUID."));
    }
    Ok(())
}

/// Records a new PENDING operation on `target` and starts it; its JSON.
pub fn start(api: &Arc<Api>, state: &mut State, call: &Call, target: Target<'_>, effect: Effect) -> Value {
    let id = state.id();
    let millis = jiff::Timestamp::now().as_millisecond();
    let name = format!("operation-{millis}-{id}");
    let scope_path = format!("projects/{}/{}", target.project, target.scope);
    let path = format!("{scope_path}/operations/{name}");
    let mut op = json!({
        "kind": "compute#operation",
        "id": id,
        "name": name,
        "operationType": target.operation_type,
        "targetLink": link(&target.path),
        "targetId": target.id,
        "status": "PENDING",
        "user": USER,
        "progress": 0,
        "insertTime": now(),
        "selfLink": link(&path),
    });
    if target.scope.starts_with("zones/") {
        op["zone"] = Value::from(link(&scope_path));
    } else if target.scope.starts_with("regions/") {
        op["region"] = Value::from(link(&scope_path));
    }
    state.operations.insert(path.clone(), op.clone());
    if let Some(request_id) = call.params.get("requestId") {
        state.request_ids.insert(format!("{}/{request_id}", target.project), path.clone());
    }
    let api = Arc::clone(api);
    tokio::spawn(run(api, path, effect));
    op
}

async fn run(api: Arc<Api>, path: String, effect: Effect) {
    let first = api.delay / 2;
    tokio::time::sleep(first).await;
    {
        let mut state = api.lock();
        if let Some(op) = state.operations.get_mut(&path) {
            op["status"] = Value::from("RUNNING");
            op["startTime"] = Value::from(now());
        }
        instances::on_running(&mut state, &effect);
    }
    tokio::time::sleep(api.delay.saturating_sub(first)).await;
    let mut state = api.lock();
    let failure = finish(&api, &mut state, effect);
    if let Some(op) = state.operations.get_mut(&path) {
        op["status"] = Value::from("DONE");
        op["progress"] = Value::from(100);
        op["endTime"] = Value::from(now());
        if let Some(failure) = failure {
            let mut error = json!({"code": failure.code, "message": failure.message});
            if let Some(details) = failure.details {
                error["errorDetails"] = details;
            }
            op["error"] = json!({"errors": [error]});
            op["httpErrorStatusCode"] = Value::from(failure.http_status);
            op["httpErrorMessage"] = Value::from(http_message(failure.http_status));
        }
    }
}

/// Applies `effect` at DONE; the failure, if it failed.
fn finish(api: &Api, state: &mut State, effect: Effect) -> Option<OperationFailure> {
    match effect {
        Effect::Nothing => None,
        Effect::Delete(path) => {
            state.resources.remove(&path);
            None
        }
        Effect::DeleteNetwork(path) => match super::networks::user_of(state, &path) {
            Some(user) => {
                if let Some(network) = state.resources.get_mut(&path) {
                    network.deleting = false;
                }
                let message = format!("The network resource '{path}' is already being used by '{user}'");
                Some(OperationFailure::new("RESOURCE_IN_USE_BY_ANOTHER_RESOURCE", message, 400))
            }
            None => {
                state.resources.remove(&path);
                None
            }
        },
        Effect::Fail(failure, path) => {
            state.resources.remove(&path);
            Some(failure)
        }
        other => {
            instances::on_done(api, state, &other);
            None
        }
    }
}

fn http_message(status: u16) -> &'static str {
    match status {
        400 => "BAD REQUEST",
        403 => "FORBIDDEN",
        404 => "NOT FOUND",
        409 => "CONFLICT",
        503 => "SERVICE UNAVAILABLE",
        _ => "INTERNAL SERVER ERROR",
    }
}

/// The operation's path from a get or wait call of any of the three scopes.
fn path_of(call: &Call) -> String {
    let project = call.param("project");
    let operation = call.param("operation");
    if call.id.starts_with("compute.zoneOperations") {
        format!("projects/{project}/zones/{}/operations/{operation}", call.param("zone"))
    } else if call.id.starts_with("compute.regionOperations") {
        format!("projects/{project}/regions/{}/operations/{operation}", call.param("region"))
    } else {
        format!("projects/{project}/global/operations/{operation}")
    }
}

/// zoneOperations/regionOperations/globalOperations `get`.
pub fn get(api: &Api, call: &Call) -> Result<Value, ApiError> {
    let path = path_of(call);
    api.lock().operations.get(&path).cloned().ok_or_else(|| ApiError::not_found(&path))
}

/// zoneOperations/regionOperations/globalOperations `wait`: the operation once DONE, or as it
/// is after about two minutes.
pub async fn wait(api: &Api, call: &Call) -> Result<Value, ApiError> {
    let path = path_of(call);
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let op = api.lock().operations.get(&path).cloned().ok_or_else(|| ApiError::not_found(&path))?;
        if op["status"] == "DONE" || Instant::now() >= deadline {
            return Ok(op);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
