//! networks.insert/get/list/delete. A network lists its subnetworks; deleting one that a
//! subnetwork, firewall or instance still uses fails in its operation, as Compute's does.

use super::error::ApiError;
use super::names;
use super::operations::Effect;
use super::resources::{self, begin};
use super::spec::Call;
use super::state::{Api, State, link, now};
use serde_json::Value;
use std::sync::Arc;

fn path(call: &Call, name: &str) -> String {
    format!("projects/{}/global/networks/{name}", call.param("project"))
}

/// Fills a network's `subnetworks` from the state.
fn with_subnetworks(state: &State, mut network: Value) -> Value {
    let own = network["selfLink"].clone();
    let subnetworks: Vec<Value> = state
        .resources
        .iter()
        .filter(|(k, r)| k.contains("/subnetworks/") && r.value["network"] == own)
        .map(|(_, r)| r.value["selfLink"].clone())
        .collect();
    if !subnetworks.is_empty() {
        network["subnetworks"] = Value::from(subnetworks);
    }
    network
}

/// networks.insert.
pub fn insert(api: &Arc<Api>, call: &Call) -> Result<Value, ApiError> {
    let mut state = begin!(api, call);
    let mut network = call.body.clone().unwrap_or_default();
    let name = names::name(&network)?;
    let path = path(call, &name);
    if network.get("IPv4Range").is_some() && network["autoCreateSubnetworks"].as_bool().is_some() {
        return Err(ApiError::invalid(
            "resource.IPv4Range",
            "",
            "IPv4Range and autoCreateSubnetworks cannot both be set.",
        ));
    }
    for (key, value) in [
        ("kind", Value::from("compute#network")),
        ("creationTimestamp", Value::from(now())),
        ("selfLink", Value::from(link(&path))),
        ("autoCreateSubnetworks", Value::from(network["autoCreateSubnetworks"].as_bool().unwrap_or(false))),
        ("routingConfig", serde_json::json!({"routingMode": "REGIONAL"})),
        ("networkFirewallPolicyEnforcementOrder", Value::from("AFTER_CLASSIC_FIREWALL")),
        ("mtu", Value::from(network["mtu"].as_i64().unwrap_or(1460))),
    ] {
        network[key] = value;
    }
    resources::insert(api, &mut state, call, "global".into(), path, network, Effect::Nothing)
}

/// networks.get.
pub fn get(api: &Api, call: &Call) -> Result<Value, ApiError> {
    let network = resources::get(api, &path(call, call.param("network")))?;
    Ok(with_subnetworks(&api.lock(), network))
}

/// networks.list.
pub fn list(api: &Api, call: &Call) -> Result<Value, ApiError> {
    let state = api.lock();
    let mut answer = resources::list(&state, call, &path(call, ""), "compute#networkList")?;
    if let Some(items) = answer["items"].as_array_mut() {
        for item in items {
            *item = with_subnetworks(&state, item.take());
        }
    }
    Ok(answer)
}

/// networks.delete (refused in its operation while the network is used).
pub fn delete(api: &Arc<Api>, call: &Call) -> Result<Value, ApiError> {
    let mut state = begin!(api, call);
    let path = path(call, call.param("network"));
    resources::mutate(api, &mut state, call, "global".into(), path.clone(), "delete", Effect::DeleteNetwork(path))
}

/// The path of a subnetwork, firewall or instance that uses the network at `path`.
pub fn user_of(state: &State, path: &str) -> Option<String> {
    let own = Value::from(link(path));
    state.resources.iter().find_map(|(key, r)| {
        let uses = r.value["network"] == own
            || r.value["networkInterfaces"].as_array().is_some_and(|nics| nics.iter().any(|n| n["network"] == own));
        uses.then(|| key.clone())
    })
}
