//! The HTTP edge: one axum fallback handler that checks the bearer token, serves the async
//! operation URLs and `/_lab/*`, validates every other request against the specs
//! ([`super::validate`]) and hands it to the resource's handler under the world's lock. Host
//! commands the handlers (or the clock) queue go to the host worker after the lock is released.

use super::error::ArmError;
use super::faults::Fault;
use super::hosts::HostCommand;
use super::reply::{Reply, retry_after};
use super::spec::{Namespace, Spec};
use super::state::{OpStatus, World};
use super::validate::{self, Matched};
use super::{groups, nic, nsg, pip, subnet, vm, vnet};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::Instant;

/// What every request shares.
#[derive(Debug, Clone)]
pub(super) struct App {
    pub world: Arc<Mutex<World>>,
    pub spec: Arc<Spec>,
    pub hosts: Option<mpsc::Sender<HostCommand>>,
}

impl App {
    pub(super) fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the clock along and sends the queued host commands.
    pub(super) fn tick(&self) {
        let commands = {
            let mut world = self.lock();
            world.tick(Instant::now());
            std::mem::take(&mut world.commands)
        };
        self.send(commands);
    }

    fn send(&self, commands: Vec<HostCommand>) {
        if let Some(hosts) = &self.hosts {
            for command in commands {
                let _ = hosts.send(command);
            }
        }
    }
}

/// The router: everything goes to [`handle`].
pub(super) fn router(app: App) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(app)
}

async fn handle(State(app): State<App>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let query: Vec<(String, String)> = uri.query().map(url_pairs).unwrap_or_default();
    if let Some(rest) = path.strip_prefix("/_lab/") {
        return finish(lab_endpoint(&app, &method, rest, &body));
    }
    if let Err(e) = authenticate(&headers) {
        return e.into_response();
    }
    app.tick();
    if let Some(reply) = operation_status(&app, &method, &path, &query) {
        return finish(reply);
    }
    let matched = match validate::check(&app.spec, method.as_str(), &path, &query, &body) {
        Ok(matched) => matched,
        Err(e) => return e.into_response(),
    };
    let (result, commands) = {
        let mut world = app.lock();
        let result = dispatch(&mut world, &matched);
        (result, std::mem::take(&mut world.commands))
    };
    app.send(commands);
    match result {
        Ok(reply) => finish(reply),
        Err(e) => e.into_response(),
    }
}

/// Splits and percent-decodes a query string.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// ARM accepts any bearer token in the lab; no header, or another scheme, is 401.
fn authenticate(headers: &HeaderMap) -> Result<(), ArmError> {
    let Some(value) = headers.get("authorization") else {
        return Err(ArmError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        ));
    };
    let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).unwrap_or_default();
    if token.is_empty() {
        return Err(ArmError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
        ));
    }
    Ok(())
}

fn finish(reply: Reply) -> Response {
    let mut response = match reply.body {
        Some(body) => (reply.status, axum::Json(body)).into_response(),
        None => reply.status.into_response(),
    };
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn dispatch(world: &mut World, m: &Matched) -> Result<Reply, ArmError> {
    match m.op.as_str() {
        "ResourceGroups_CreateOrUpdate" => groups::put(world, m),
        "ResourceGroups_Get" => groups::get(world, m),
        "ResourceGroups_CheckExistence" => groups::head(world, m),
        "ResourceGroups_Delete" => groups::delete(world, m),
        "ResourceGroups_List" => groups::list_all(world, m),
        "VirtualNetworks_CreateOrUpdate" => vnet::put(world, m),
        "VirtualNetworks_Get" => vnet::get(world, m),
        "VirtualNetworks_Delete" => vnet::delete(world, m),
        "VirtualNetworks_List" | "VirtualNetworks_ListAll" => vnet::list_some(world, m),
        "Subnets_CreateOrUpdate" => subnet::put(world, m),
        "Subnets_Get" => subnet::get(world, m),
        "Subnets_Delete" => subnet::delete(world, m),
        "Subnets_List" => subnet::list_in_vnet(world, m),
        "NetworkSecurityGroups_CreateOrUpdate" => nsg::put(world, m),
        "NetworkSecurityGroups_Get" => nsg::get(world, m),
        "NetworkSecurityGroups_Delete" => nsg::delete(world, m),
        "NetworkSecurityGroups_List" | "NetworkSecurityGroups_ListAll" => nsg::list_some(world, m),
        "PublicIPAddresses_CreateOrUpdate" => pip::put(world, m),
        "PublicIPAddresses_Get" => pip::get(world, m),
        "PublicIPAddresses_Delete" => pip::delete(world, m),
        "PublicIPAddresses_List" | "PublicIPAddresses_ListAll" => pip::list_some(world, m),
        "NetworkInterfaces_CreateOrUpdate" => nic::put(world, m),
        "NetworkInterfaces_Get" => nic::get(world, m),
        "NetworkInterfaces_Delete" => nic::delete(world, m),
        "NetworkInterfaces_List" | "NetworkInterfaces_ListAll" => nic::list_some(world, m),
        "VirtualMachines_CreateOrUpdate" => vm::put(world, m),
        "VirtualMachines_Get" => vm::get(world, m),
        "VirtualMachines_InstanceView" => vm::view(world, m),
        "VirtualMachines_Delete" => vm::delete(world, m),
        "VirtualMachines_List" | "VirtualMachines_ListAll" => vm::list_some(world, m),
        "VirtualMachines_Start" => vm::power(world, m, "start"),
        "VirtualMachines_PowerOff" => vm::power(world, m, "powerOff"),
        "VirtualMachines_Deallocate" => vm::power(world, m, "deallocate"),
        other => Err(ArmError::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplementedInLab",
            format!("The operation '{other}' is valid, but the gantry lab does not emulate it."),
        )),
    }
}

/// The async operation URLs: `.../providers/<ns>/locations/<loc>/operations/<id>` (status; with
/// `monitor=true` the result), `.../operationResults/<id>` (Network's result) and
/// `/subscriptions/<s>/operationresults/<id>` (a resource group delete's result).
fn operation_status(app: &App, method: &Method, path: &str, query: &[(String, String)]) -> Option<Reply> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (namespace, kind, id) = match parts.as_slice() {
        ["subscriptions", _, "operationresults", id] => (Namespace::Resources, "operationresults", *id),
        ["subscriptions", _, "providers", ns, "locations", _, kind, id]
            if kind.eq_ignore_ascii_case("operations") || kind.eq_ignore_ascii_case("operationResults") =>
        {
            let namespace =
                [Namespace::Network, Namespace::Compute].into_iter().find(|n| n.name().eq_ignore_ascii_case(ns))?;
            (namespace, *kind, *id)
        }
        _ => return None,
    };
    if method != Method::GET {
        return Some(error_reply(ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The requested resource does not support http method '{method}'."),
        )));
    }
    let version = query.iter().find(|(k, _)| k == "api-version").map(|(_, v)| v.clone());
    match version {
        None => {
            return Some(error_reply(ArmError::bad_request(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )));
        }
        Some(v) if !namespace.api_versions().contains(&v.as_str()) => {
            return Some(error_reply(ArmError::bad_request(
                "InvalidApiVersionParameter",
                format!(
                    "The api-version '{v}' is invalid. The supported versions are '{}'.",
                    namespace.api_versions().join(", ")
                ),
            )));
        }
        Some(_) => {}
    }
    let world = app.lock();
    let Some(op) = world.operations.get(id).filter(|o| o.namespace == namespace) else {
        return Some(error_reply(ArmError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("The operation '{id}' was not found."),
        )));
    };
    let result = kind != "operations" || query.iter().any(|(k, v)| k == "monitor" && v == "true");
    if !result {
        let mut body = json!({"name": op.id, "status": match op.status {
            OpStatus::InProgress => "InProgress",
            OpStatus::Succeeded => "Succeeded",
            OpStatus::Failed => "Failed",
        }, "startTime": op.start});
        if let Some(end) = &op.end {
            body["endTime"] = json!(end);
        }
        if let Some(error) = &op.error {
            body["error"] = error.body();
        }
        let mut reply = Reply::json(StatusCode::OK, body);
        if op.status == OpStatus::InProgress {
            reply = reply.with_headers(retry_after(&world));
        }
        return Some(reply);
    }
    Some(match op.status {
        OpStatus::InProgress => {
            let mut headers = retry_after(&world);
            headers.push((
                "location",
                format!(
                    "{}{path}?{}",
                    world.base_url,
                    query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
                ),
            ));
            Reply::empty(StatusCode::ACCEPTED).with_headers(headers)
        }
        OpStatus::Succeeded if op.delete && namespace != Namespace::Resources => Reply::empty(StatusCode::NO_CONTENT),
        OpStatus::Succeeded => Reply::empty(StatusCode::OK),
        OpStatus::Failed => {
            let error =
                op.error.clone().unwrap_or_else(|| ArmError::conflict("OperationFailed", "The operation failed."));
            Reply::json(error.status, json!({"error": error.body()}))
        }
    })
}

fn error_reply(error: ArmError) -> Reply {
    Reply::json(error.status, json!({"error": error.body()}))
}

/// `POST /_lab/faults` (a [`Fault`] as JSON) and `GET /_lab/resources` (every resource id).
fn lab_endpoint(app: &App, method: &Method, rest: &str, body: &[u8]) -> Reply {
    match (method.as_str(), rest) {
        ("POST", "faults") => match serde_json::from_slice::<Fault>(body) {
            Ok(fault) => {
                app.lock().faults.add(fault);
                tracing::info!(?fault, "Fault injected.");
                Reply::empty(StatusCode::NO_CONTENT)
            }
            Err(e) => Reply::json(
                StatusCode::BAD_REQUEST,
                json!({"error": {"code": "InvalidFault", "message": format!("{e}: send {{\"kind\":\"core_quota\",\"count\":1}} or {{\"kind\":\"allocation\",\"error\":\"ZonalAllocationFailed|AllocationFailed|SkuNotAvailable\",\"count\":1}}")}}),
            ),
        },
        ("GET", "resources") => {
            let ids: Vec<Value> = app.lock().resources.values().map(|r| json!(r.id)).collect();
            Reply::json(StatusCode::OK, json!(ids))
        }
        _ => Reply::json(
            StatusCode::NOT_FOUND,
            json!({"error": {"code": "NotFound", "message": "The lab serves POST /_lab/faults and GET /_lab/resources."}}),
        ),
    }
}
