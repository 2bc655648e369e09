//! subnetworks.insert/get/list/delete: regional ranges of a network. Ranges of one network
//! may not overlap; a subnetwork that an instance uses cannot be deleted (400
//! resourceInUseByAnotherResource, at once, as Compute answers).

use super::catalog;
use super::error::ApiError;
use super::names;
use super::operations::Effect;
use super::resources::{self, begin};
use super::spec::Call;
use super::state::{Api, link, now, reference};
use crate::testhosts::Ipv4Cidr;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::sync::Arc;

fn path(call: &Call, name: &str) -> String {
    format!("projects/{}/regions/{}/subnetworks/{name}", call.param("project"), call.param("region"))
}

/// `text` as a network range (host bits zero).
pub fn parse_cidr(text: &str) -> Option<Ipv4Cidr> {
    let (address, len) = text.split_once('/')?;
    let network: Ipv4Addr = address.parse().ok()?;
    let prefix_len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix_len)).unwrap_or(0);
    (u32::from(network) & !mask == 0).then_some(Ipv4Cidr { network, prefix_len })
}

fn overlaps(a: Ipv4Cidr, b: Ipv4Cidr) -> bool {
    a.contains(b.network) || b.contains(a.network)
}

/// subnetworks.insert.
pub fn insert(api: &Arc<Api>, call: &Call) -> Result<Value, ApiError> {
    let mut state = begin!(api, call);
    let (project, region) = (call.param("project"), call.param("region"));
    if !catalog::REGIONS.iter().any(|(r, _)| *r == region) {
        return Err(ApiError::not_found(&format!("projects/{project}/regions/{region}")));
    }
    let mut subnetwork = call.body.clone().unwrap_or_default();
    let name = names::name(&subnetwork)?;
    let path = path(call, &name);
    let network = subnetwork["network"].as_str().ok_or_else(|| ApiError::required("resource.network"))?;
    let network_path = reference(project, network);
    if state.resources.get(&network_path).is_none_or(|n| n.deleting) {
        return Err(ApiError::invalid("resource.network", network, "The referenced network resource cannot be found."));
    }
    let range_text = subnetwork["ipCidrRange"].as_str().ok_or_else(|| ApiError::required("resource.ipCidrRange"))?;
    let range = parse_cidr(range_text).filter(|r| r.prefix_len >= 8 && r.prefix_len <= 29).ok_or_else(|| {
        ApiError::invalid(
            "resource.ipCidrRange",
            range_text,
            "Invalid IPCidrRange: it must be a network address with a prefix length from 8 to 29.",
        )
    })?;
    let network_link = Value::from(link(&network_path));
    for (other_path, other) in state.resources.iter().filter(|(k, _)| k.contains("/subnetworks/")) {
        let other_range = other.value["ipCidrRange"].as_str().and_then(parse_cidr);
        if other.value["network"] == network_link && other_range.is_some_and(|o| overlaps(o, range)) {
            return Err(ApiError::invalid(
                "resource.ipCidrRange",
                range_text,
                &format!("Invalid IPCidrRange: {range_text} conflicts with existing subnetwork '{other_path}'."),
            ));
        }
    }
    let gateway = Ipv4Addr::from(u32::from(range.network) + 1);
    for (key, value) in [
        ("kind", Value::from("compute#subnetwork")),
        ("creationTimestamp", Value::from(now())),
        ("network", network_link),
        ("ipCidrRange", Value::from(range.to_string())),
        ("gatewayAddress", Value::from(gateway.to_string())),
        ("region", Value::from(link(&format!("projects/{project}/regions/{region}")))),
        ("selfLink", Value::from(link(&path))),
        ("privateIpGoogleAccess", Value::from(subnetwork["privateIpGoogleAccess"].as_bool().unwrap_or(false))),
        ("fingerprint", Value::from("42WmSpB8rSM=")),
        ("stackType", Value::from("IPV4_ONLY")),
        ("purpose", Value::from("PRIVATE")),
    ] {
        subnetwork[key] = value;
    }
    let scope = format!("regions/{region}");
    resources::insert(api, &mut state, call, scope, path, subnetwork, Effect::Nothing)
}

/// subnetworks.get.
pub fn get(api: &Api, call: &Call) -> Result<Value, ApiError> {
    resources::get(api, &path(call, call.param("subnetwork")))
}

/// subnetworks.list.
pub fn list(api: &Api, call: &Call) -> Result<Value, ApiError> {
    resources::list(&api.lock(), call, &path(call, ""), "compute#subnetworkList")
}

/// subnetworks.delete (refused while an instance uses it).
pub fn delete(api: &Arc<Api>, call: &Call) -> Result<Value, ApiError> {
    let mut state = begin!(api, call);
    let path = path(call, call.param("subnetwork"));
    let own = Value::from(link(&path));
    let user = state.resources.iter().find(|(_, r)| {
        r.value["networkInterfaces"].as_array().is_some_and(|nics| nics.iter().any(|n| n["subnetwork"] == own))
    });
    if let Some((user, _)) = user {
        return Err(ApiError::in_use("subnetwork", &path, user));
    }
    let scope = format!("regions/{}", call.param("region"));
    resources::mutate(api, &mut state, call, scope, path.clone(), "delete", Effect::Delete(path))
}
