//! Virtual networks (Microsoft.Network/virtualNetworks): PUT with `subnets` inline (a PUT
//! without them deletes the existing subnets, as Azure does), GET, DELETE, list.

use super::error::ArmError;
use super::reply::{Reply, find, list, location_of, of_kind, same_location, store};
use super::state::{Kind, Provisioning, Resource, World, envelope, resource_id};
use super::subnet;
use super::usage::{parse_cidr, subnet_users};
use super::validate::Matched;
use axum::http::StatusCode;
use serde_json::{Value, json};

/// The address space of a virtual network's properties.
pub(super) fn space(properties: &Value) -> Vec<(u32, u8)> {
    properties
        .pointer("/addressSpace/addressPrefixes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| parse_cidr(p.as_str()?))
        .collect()
}

/// A virtual network with its subnets inline.
fn render(world: &World, vnet: &Resource) -> Value {
    let mut out = envelope(vnet);
    let prefix = format!("{}/subnets/", vnet.id.to_lowercase());
    let subnets: Vec<Value> =
        world.resources.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, r)| subnet::render(world, r)).collect();
    out["properties"]["subnets"] = json!(subnets);
    out["properties"]["resourceGuid"] = json!(vnet.guid);
    out
}

/// `VirtualNetworks_CreateOrUpdate`.
pub(super) fn put(world: &mut World, m: &Matched) -> Result<Reply, ArmError> {
    let p = |k: &str| m.path.get(k).cloned().unwrap_or_default();
    let (subscription, group, name) = (p("subscriptionId"), p("resourceGroupName"), p("virtualNetworkName"));
    world.live_group(&subscription, &group)?;
    let location = location_of(&m.body, Kind::VirtualNetwork)?;
    let id = resource_id(&subscription, &group, Kind::VirtualNetwork, &name);
    let key = id.to_lowercase();
    if let Some(existing) = world.get(&id) {
        same_location(existing, &location)?;
        if existing.state == Provisioning::Deleting {
            return Err(subnet::busy(&name));
        }
    }
    let properties = m.body.get("properties").cloned().unwrap_or_else(|| json!({}));
    let address_space = space(&properties);
    let given = properties.pointer("/addressSpace/addressPrefixes").and_then(Value::as_array).map_or(0, Vec::len);
    if address_space.is_empty() || address_space.len() != given {
        return Err(ArmError::bad_request(
            "InvalidAddressPrefixFormat",
            format!(
                "The address space of virtual network '{name}' must list valid CIDR prefixes in addressSpace.addressPrefixes."
            ),
        ));
    }
    // The inline subnets: each checked as its own PUT would be.
    let mut wanted: Vec<(String, Value)> = Vec::new();
    let mut ranges: Vec<(String, (u32, u8))> = Vec::new();
    for (i, item) in properties.get("subnets").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let Some(subnet_name) = item.get("name").and_then(Value::as_str) else {
            return Err(ArmError::bad_request(
                "InvalidRequestFormat",
                format!("Subnet {i} of virtual network '{name}' has no name."),
            ));
        };
        let props = item.get("properties").cloned().unwrap_or_else(|| json!({}));
        let subnet_id = resource_id(&subscription, &group, Kind::Subnet, &format!("{name}/{subnet_name}"));
        let range = subnet::check(world, &name, subnet_name, &props, &address_space, &ranges, &subnet_id)?;
        ranges.push((subnet_name.to_string(), range));
        wanted.push((subnet_name.to_string(), props));
    }
    let prefix = format!("{key}/subnets/");
    let existing_subnets: Vec<Resource> =
        world.resources.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, r)| r.clone()).collect();
    for old in &existing_subnets {
        let old_name = old.name.rsplit('/').next().unwrap_or_default();
        let users = subnet_users(world, &old.id.to_lowercase());
        if users.is_empty() {
            continue;
        }
        match wanted.iter().find(|(n, _)| n.eq_ignore_ascii_case(old_name)) {
            None => return Err(subnet::in_use(old_name, &users)),
            Some((_, props)) if subnet::prefix(props) != subnet::prefix(old.properties()) => {
                return Err(ArmError::bad_request(
                    "InUseSubnetCannotBeUpdated",
                    format!("Subnet {old_name} is in use and cannot be updated."),
                ));
            }
            Some(_) => {}
        }
    }
    for old in &existing_subnets {
        let old_name = old.name.rsplit('/').next().unwrap_or_default();
        if !wanted.iter().any(|(n, _)| n.eq_ignore_ascii_case(old_name)) {
            world.resources.remove(&old.id.to_lowercase());
        }
    }
    for (subnet_name, props) in wanted {
        let subnet_id = resource_id(&subscription, &group, Kind::Subnet, &format!("{name}/{subnet_name}"));
        let subnet_key = subnet_id.to_lowercase();
        let body = json!({ "properties": subnet::strip(&props) });
        match world.resources.get_mut(&subnet_key) {
            Some(existing) => {
                existing.body = body;
                existing.etag += 1;
            }
            None => {
                let mut resource = super::reply::new_resource(
                    m,
                    Kind::Subnet,
                    &group,
                    &format!("{name}/{subnet_name}"),
                    &location,
                    body,
                );
                resource.state = Provisioning::Succeeded;
                resource.guid = world.guid();
                world.resources.insert(subnet_key, resource);
            }
        }
    }
    let mut stored = properties.clone();
    if let Some(object) = stored.as_object_mut() {
        for k in ["subnets", "provisioningState", "resourceGuid"] {
            object.remove(k);
        }
    }
    let mut body = json!({ "properties": stored });
    if let Some(tags) = m.body.get("tags") {
        body["tags"] = tags.clone();
    }
    let resource = super::reply::new_resource(m, Kind::VirtualNetwork, &group, &name, &location, body);
    Ok(store(world, m, resource, render))
}

/// `VirtualNetworks_Get`.
pub(super) fn get(world: &World, m: &Matched) -> Result<Reply, ArmError> {
    let vnet = find(world, m, Kind::VirtualNetwork, "virtualNetworkName")?;
    Ok(Reply::json(StatusCode::OK, render(world, vnet)))
}

/// `VirtualNetworks_List` / `VirtualNetworks_ListAll`.
pub(super) fn list_some(world: &World, m: &Matched) -> Result<Reply, ArmError> {
    if let Some(group) = m.path.get("resourceGroupName") {
        let subscription = m.path.get("subscriptionId").cloned().unwrap_or_default();
        world.group(&subscription, group).ok_or_else(|| ArmError::group_not_found(group))?;
    }
    Ok(list(of_kind(world, m, Kind::VirtualNetwork).into_iter().map(|r| render(world, r)).collect()))
}

/// `VirtualNetworks_Delete`: refused while a subnet is in use.
pub(super) fn delete(world: &mut World, m: &Matched) -> Result<Reply, ArmError> {
    let key = match find(world, m, Kind::VirtualNetwork, "virtualNetworkName") {
        Ok(vnet) => vnet.id.to_lowercase(),
        Err(e) if e.code == "ResourceNotFound" => return Ok(Reply::empty(StatusCode::NO_CONTENT)),
        Err(e) => return Err(e),
    };
    let prefix = format!("{key}/subnets/");
    let subnets: Vec<(String, String)> = world
        .resources
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(k, r)| (k.clone(), r.name.clone()))
        .collect();
    for (subnet_key, subnet_name) in subnets {
        let users = subnet_users(world, &subnet_key);
        if !users.is_empty() {
            return Err(subnet::in_use(subnet_name.rsplit('/').next().unwrap_or_default(), &users));
        }
    }
    Ok(super::reply::deleting(world, m, &key))
}
