//! The HTTP server: every request under `/compute/v1/` is checked against the discovery
//! document ([`super::spec`]) and handed to its method's handler; `/_lab/faults` injects
//! (POST a [`Fault`]), lists (GET) and clears (DELETE) faults, and `/_lab/resources` lists
//! what exists. Built by [`router`], so tests can call it without a socket.

use super::error::ApiError;
use super::faults::Fault;
use super::spec::{Call, spec};
use super::state::Api;
use super::{catalog, firewalls, instances, networks, operations, subnetworks};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use std::sync::Arc;

/// The emulator's routes over `api`.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/_lab/faults", get(faults).post(inject).delete(clear))
        .route("/_lab/resources", get(resources))
        .fallback(handle)
        .with_state(api)
}

async fn handle(State(api): State<Arc<Api>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let query = match Query::<Vec<(String, String)>>::try_from_uri(&uri) {
        Ok(Query(pairs)) => pairs,
        Err(e) => return ApiError::new(400, "badRequest", format!("Invalid query string: {e}")).into_response(),
    };
    let answer = match spec().check(method.as_str(), uri.path(), &query, &body) {
        Ok(call) => dispatch(&api, &call).await.map_err(|e| (call.id, e)),
        Err(e) => Err((String::from("-"), e)),
    };
    match answer {
        Ok(value) => {
            tracing::debug!(%method, path = %uri.path(), "GCE request answered.");
            axum::Json(value).into_response()
        }
        Err((id, error)) => {
            tracing::debug!(%method, path = %uri.path(), method_id = %id, %error, "GCE request refused.");
            error.into_response()
        }
    }
}

async fn dispatch(api: &Arc<Api>, call: &Call) -> Result<Value, ApiError> {
    match call.id.as_str() {
        "compute.regions.get" => catalog::region(call),
        "compute.zones.get" => catalog::zone(call),
        "compute.zones.list" => catalog::zones(call),
        "compute.machineTypes.get" => catalog::machine_type(call),
        "compute.images.get" | "compute.images.getFromFamily" => catalog::image(call),
        "compute.networks.insert" => networks::insert(api, call),
        "compute.networks.get" => networks::get(api, call),
        "compute.networks.list" => networks::list(api, call),
        "compute.networks.delete" => networks::delete(api, call),
        "compute.subnetworks.insert" => subnetworks::insert(api, call),
        "compute.subnetworks.get" => subnetworks::get(api, call),
        "compute.subnetworks.list" => subnetworks::list(api, call),
        "compute.subnetworks.delete" => subnetworks::delete(api, call),
        "compute.firewalls.insert" => firewalls::insert(api, call),
        "compute.firewalls.get" => firewalls::get(api, call),
        "compute.firewalls.list" => firewalls::list(api, call),
        "compute.firewalls.delete" => firewalls::delete(api, call),
        "compute.instances.insert" => instances::insert(api, call),
        "compute.instances.get" => instances::get(api, call),
        "compute.instances.list" => instances::list(api, call),
        "compute.instances.aggregatedList" => instances::aggregated_list(api, call),
        "compute.instances.delete" => instances::delete(api, call),
        "compute.instances.start" => instances::start(api, call),
        "compute.instances.stop" => instances::stop(api, call),
        "compute.zoneOperations.get" | "compute.regionOperations.get" | "compute.globalOperations.get" => {
            operations::get(api, call)
        }
        "compute.zoneOperations.wait" | "compute.regionOperations.wait" | "compute.globalOperations.wait" => {
            operations::wait(api, call).await
        }
        other => Err(ApiError::new(501, "notImplemented", format!("The lab does not implement {other}."))),
    }
}

async fn faults(State(api): State<Arc<Api>>) -> Response {
    axum::Json(api.lock().faults.clone()).into_response()
}

async fn inject(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Fault>(&body) {
        Ok(fault) => {
            tracing::info!(?fault, "Fault injected.");
            api.lock().faults.push(fault);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("not a fault: {e}\n")).into_response(),
    }
}

async fn clear(State(api): State<Arc<Api>>) -> Response {
    api.lock().faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn resources(State(api): State<Arc<Api>>) -> Response {
    axum::Json(api.lock().resources.keys().cloned().collect::<Vec<_>>()).into_response()
}
