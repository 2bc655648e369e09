//! What the networks, subnetworks, firewalls and instances handlers share: get, list, and the
//! start of an insert or delete (request id replay, conflict and readiness checks).

use super::error::ApiError;
use super::filter;
use super::operations::{self, Effect, Target};
use super::spec::Call;
use super::state::{Api, Resource, State, page};
use serde_json::Value;
use std::sync::{Arc, MutexGuard};

/// The resource at `path`.
pub fn get(api: &Api, path: &str) -> Result<Value, ApiError> {
    api.lock().get(path).map(|r| r.value.clone())
}

/// The collection under `prefix` (ends with `/`), filtered and paged by the call.
pub fn list(state: &State, call: &Call, prefix: &str, kind: &str) -> Result<Value, ApiError> {
    let items = filter::apply(call.param("filter"), state.collection(prefix))?;
    page(kind, prefix.trim_end_matches('/'), items, call.param("maxResults"), call.param("pageToken"))
}

/// The start of a mutation: the request id is checked, and an operation it named before is
/// answered instead (`Err(Ok(op))`); else the locked state.
pub fn start_mutation<'a>(api: &'a Api, call: &Call) -> Result<MutexGuard<'a, State>, Result<Value, ApiError>> {
    operations::check_request_id(call).map_err(Err)?;
    let state = api.lock();
    match operations::replay(&state, call) {
        Some(op) => Err(Ok(op)),
        None => Ok(state),
    }
}

/// Records `value` at `path` (refusing a taken path with 409) and starts its insert operation.
pub fn insert(
    api: &Arc<Api>,
    state: &mut State,
    call: &Call,
    scope: String,
    path: String,
    mut value: Value,
    effect: Effect,
) -> Result<Value, ApiError> {
    if state.resources.contains_key(&path) {
        return Err(ApiError::already_exists(&path));
    }
    let id = state.id();
    value["id"] = Value::from(id.clone());
    state.resources.insert(path.clone(), Resource { value, deleting: false });
    let target = Target { project: call.param("project"), scope, operation_type: "insert", path, id };
    Ok(operations::start(api, state, call, target, effect))
}

/// Starts the operation `operation_type` (delete, start, stop) on the existing resource at
/// `path`, refusing one being deleted.
pub fn mutate(
    api: &Arc<Api>,
    state: &mut State,
    call: &Call,
    scope: String,
    path: String,
    operation_type: &str,
    effect: Effect,
) -> Result<Value, ApiError> {
    let resource = state.get(&path)?;
    if resource.deleting {
        return Err(ApiError::not_ready(&path));
    }
    let id = resource.value["id"].as_str().unwrap_or_default().to_string();
    if operation_type == "delete"
        && let Some(resource) = state.resources.get_mut(&path)
    {
        resource.deleting = true;
    }
    let target = Target { project: call.param("project"), scope, operation_type, path, id };
    Ok(operations::start(api, state, call, target, effect))
}

/// Unwraps [`start_mutation`]'s answer inside a handler.
macro_rules! begin {
    ($api:expr, $call:expr) => {
        match super::resources::start_mutation($api, $call) {
            Ok(state) => state,
            Err(answer) => return answer,
        }
    };
}
pub(super) use begin;
