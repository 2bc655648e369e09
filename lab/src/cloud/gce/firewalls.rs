//! firewalls.insert/get/list/delete: rules of a network (the emulator records them; the lab
//! network itself filters nothing).

use super::error::ApiError;
use super::names;
use super::operations::Effect;
use super::resources::{self, begin};
use super::spec::Call;
use super::state::{Api, link, now, reference};
use super::subnetworks::parse_cidr;
use serde_json::Value;
use std::sync::Arc;

fn path(call: &Call, name: &str) -> String {
    format!("projects/{}/global/firewalls/{name}", call.param("project"))
}

/// firewalls.insert.
pub fn insert(api: &Arc<Api>, call: &Call) -> Result<Value, ApiError> {
    let mut state = begin!(api, call);
    let project = call.param("project");
    let mut firewall = call.body.clone().unwrap_or_default();
    let name = names::name(&firewall)?;
    let path = path(call, &name);
    let network = firewall["network"].as_str().unwrap_or("global/networks/default").to_string();
    let network_path = reference(project, &network);
    if state.resources.get(&network_path).is_none_or(|n| n.deleting) {
        return Err(ApiError::invalid(
            "resource.network",
            &network,
            "The referenced network resource cannot be found.",
        ));
    }
    let allowed = firewall["allowed"].as_array().is_some_and(|a| !a.is_empty());
    let denied = firewall["denied"].as_array().is_some_and(|a| !a.is_empty());
    if allowed == denied {
        return Err(ApiError::invalid("resource", "", "Exactly one of allowed or denied must be specified."));
    }
    let rules = if allowed { "allowed" } else { "denied" };
    for (i, rule) in firewall[rules].as_array().into_iter().flatten().enumerate() {
        if rule["IPProtocol"].as_str().is_none() {
            return Err(ApiError::required(&format!("resource.{rules}[{i}].IPProtocol")));
        }
    }
    for (i, range) in firewall["sourceRanges"].as_array().into_iter().flatten().enumerate() {
        let text = range.as_str().unwrap_or_default();
        let single = text.parse::<std::net::Ipv4Addr>().is_ok();
        if !single && parse_cidr(text).is_none() {
            return Err(ApiError::invalid(
                &format!("resource.sourceRanges[{i}]"),
                text,
                "Must be a valid IPV4 CIDR address range.",
            ));
        }
    }
    let direction = firewall["direction"].as_str().unwrap_or("INGRESS").to_string();
    for (key, value) in [
        ("kind", Value::from("compute#firewall")),
        ("creationTimestamp", Value::from(now())),
        ("network", Value::from(link(&network_path))),
        ("selfLink", Value::from(link(&path))),
        ("priority", Value::from(firewall["priority"].as_i64().unwrap_or(1000))),
        ("direction", Value::from(direction)),
        ("disabled", Value::from(firewall["disabled"].as_bool().unwrap_or(false))),
        ("logConfig", serde_json::json!({"enable": false})),
    ] {
        firewall[key] = value;
    }
    resources::insert(api, &mut state, call, "global".into(), path, firewall, Effect::Nothing)
}

/// firewalls.get.
pub fn get(api: &Api, call: &Call) -> Result<Value, ApiError> {
    resources::get(api, &path(call, call.param("firewall")))
}

/// firewalls.list.
pub fn list(api: &Api, call: &Call) -> Result<Value, ApiError> {
    resources::list(&api.lock(), call, &path(call, ""), "compute#firewallList")
}

/// firewalls.delete.
pub fn delete(api: &Arc<Api>, call: &Call) -> Result<Value, ApiError> {
    let mut state = begin!(api, call);
    let path = path(call, call.param("firewall"));
    resources::mutate(api, &mut state, call, "global".into(), path.clone(), "delete", Effect::Delete(path))
}
