//! Subnets (Microsoft.Network/virtualNetworks/subnets): PUT, GET, DELETE, list, and the checks
//! a subnet's range must pass inside its virtual network. A virtual network's PUT with
//! `subnets` inline goes through [`check`] too.

use super::error::ArmError;
use super::reply::{Reply, find, list, reference, store};
use super::state::{Kind, Provisioning, Resource, World, envelope, resource_id};
use super::usage::{overlap, parse_cidr, subnet_users, within};
use super::validate::Matched;
use axum::http::StatusCode;
use serde_json::{Value, json};

/// A subnet as responses show it: with the IP configurations that use it.
pub(super) fn render(world: &World, subnet: &Resource) -> Value {
    let mut out = envelope(subnet);
    if let Some(object) = out.as_object_mut() {
        object.remove("location");
    }
    let users: Vec<Value> =
        subnet_users(world, &subnet.id.to_lowercase()).into_iter().map(|id| json!({"id": id})).collect();
    if !users.is_empty() {
        out["properties"]["ipConfigurations"] = json!(users);
    }
    out
}

/// The subnet's range (`addressPrefix`, else the first of `addressPrefixes`).
pub(super) fn prefix(properties: &Value) -> Option<String> {
    properties
        .get("addressPrefix")
        .and_then(Value::as_str)
        .or_else(|| properties.pointer("/addressPrefixes/0").and_then(Value::as_str))
        .map(String::from)
}

/// Checks subnet `name`'s properties against its virtual network's `space` and its `siblings`
/// (name, range), and the NSG it names.
pub(super) fn check(
    world: &World,
    vnet: &str,
    name: &str,
    properties: &Value,
    space: &[(u32, u8)],
    siblings: &[(String, (u32, u8))],
    id: &str,
) -> Result<(u32, u8), ArmError> {
    let Some(text) = prefix(properties) else {
        return Err(ArmError::bad_request(
            "NoAddressPrefixOrPoolProvided",
            format!("No address prefix or pool is provided for subnet '{name}' of virtual network '{vnet}'."),
        ));
    };
    let range = parse_cidr(&text).ok_or_else(|| {
        ArmError::bad_request(
            "InvalidAddressPrefixFormat",
            format!("Address prefix {text} of subnet '{name}' is not a valid CIDR."),
        )
    })?;
    if !space.iter().any(|s| within(range, *s)) {
        return Err(ArmError::bad_request(
            "NetcfgInvalidSubnet",
            format!("Subnet '{name}' is not valid in virtual network '{vnet}'."),
        ));
    }
    if let Some((other, _)) = siblings.iter().find(|(n, r)| !n.eq_ignore_ascii_case(name) && overlap(range, *r)) {
        return Err(ArmError::bad_request(
            "NetcfgSubnetRangesOverlap",
            format!(
                "Subnet '{name}' is not valid because its IP address range overlaps with that of an existing subnet \
                 '{other}' in virtual network '{vnet}'."
            ),
        ));
    }
    if let Some(nsg) = properties.pointer("/networkSecurityGroup/id").and_then(Value::as_str) {
        reference(world, nsg, "properties.networkSecurityGroup.id", Kind::NetworkSecurityGroup, id)?;
    }
    Ok(range)
}

/// The error for deleting a subnet that NICs still use.
pub(super) fn in_use(name: &str, users: &[String]) -> ArmError {
    ArmError::bad_request(
        "InUseSubnetCannotBeDeleted",
        format!(
            "Subnet {name} is in use by {} and cannot be deleted. In order to delete the subnet, delete all the \
             resources within the subnet. See aka.ms/deletesubnet.",
            users.join(", ")
        ),
    )
}

fn names(m: &Matched) -> (String, String, String, String) {
    let p = |k: &str| m.path.get(k).cloned().unwrap_or_default();
    (p("subscriptionId"), p("resourceGroupName"), p("virtualNetworkName"), p("subnetName"))
}

/// The subnets of virtual network `vnet_key`: (name, range).
pub(super) fn siblings(world: &World, vnet_key: &str) -> Vec<(String, (u32, u8))> {
    let prefix_key = format!("{vnet_key}/subnets/");
    world
        .resources
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix_key))
        .filter_map(|(_, r)| {
            let name = r.name.rsplit('/').next()?.to_string();
            Some((name, parse_cidr(&prefix(r.properties())?)?))
        })
        .collect()
}

/// `Subnets_CreateOrUpdate`.
pub(super) fn put(world: &mut World, m: &Matched) -> Result<Reply, ArmError> {
    let (subscription, group, vnet_name, name) = names(m);
    world.live_group(&subscription, &group)?;
    let vnet_id = resource_id(&subscription, &group, Kind::VirtualNetwork, &vnet_name);
    let vnet = world
        .get(&vnet_id)
        .ok_or_else(|| ArmError::not_found(Kind::VirtualNetwork.type_name(), &vnet_name, &group))?
        .clone();
    let space: Vec<(u32, u8)> = super::vnet::space(vnet.properties());
    let id = resource_id(&subscription, &group, Kind::Subnet, &format!("{vnet_name}/{name}"));
    let properties = m.body.get("properties").cloned().unwrap_or_else(|| json!({}));
    let range = check(world, &vnet_name, &name, &properties, &space, &siblings(world, &vnet.id.to_lowercase()), &id)?;
    if let Some(existing) = world.get(&id) {
        if existing.state == Provisioning::Deleting {
            return Err(busy(&name));
        }
        let users = subnet_users(world, &existing.id.to_lowercase());
        if !users.is_empty() && prefix(existing.properties()).and_then(|p| parse_cidr(&p)) != Some(range) {
            return Err(ArmError::bad_request(
                "InUseSubnetCannotBeUpdated",
                format!("Subnet {name} is in use and cannot be updated."),
            ));
        }
    }
    let body = json!({ "properties": strip(&properties) });
    let resource =
        super::reply::new_resource(m, Kind::Subnet, &group, &format!("{vnet_name}/{name}"), &vnet.location, body);
    Ok(store(world, m, resource, render))
}

/// The properties a client gave, without the read-only ones the lab computes.
pub(super) fn strip(properties: &Value) -> Value {
    let mut out = properties.clone();
    if let Some(object) = out.as_object_mut() {
        for key in ["provisioningState", "ipConfigurations", "resourceGuid"] {
            object.remove(key);
        }
    }
    out
}

pub(super) fn busy(name: &str) -> ArmError {
    ArmError::conflict(
        "AnotherOperationInProgress",
        format!("Another operation on this or dependent resource is in progress. Resource '{name}' is being deleted."),
    )
}

fn lookup<'a>(world: &'a World, m: &Matched) -> Result<&'a Resource, ArmError> {
    let (subscription, group, vnet, name) = names(m);
    find(world, m, Kind::VirtualNetwork, "virtualNetworkName")?;
    world.get(&resource_id(&subscription, &group, Kind::Subnet, &format!("{vnet}/{name}"))).ok_or_else(|| {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("Resource /subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/{name} not found."),
        )
    })
}

/// `Subnets_Get`.
pub(super) fn get(world: &World, m: &Matched) -> Result<Reply, ArmError> {
    let subnet = lookup(world, m)?;
    Ok(Reply::json(StatusCode::OK, render(world, subnet)))
}

/// `Subnets_List`.
pub(super) fn list_in_vnet(world: &World, m: &Matched) -> Result<Reply, ArmError> {
    let vnet = find(world, m, Kind::VirtualNetwork, "virtualNetworkName")?;
    let prefix_key = format!("{}/subnets/", vnet.id.to_lowercase());
    let values =
        world.resources.iter().filter(|(k, _)| k.starts_with(&prefix_key)).map(|(_, r)| render(world, r)).collect();
    Ok(list(values))
}

/// `Subnets_Delete`: refused while a NIC uses the subnet.
pub(super) fn delete(world: &mut World, m: &Matched) -> Result<Reply, ArmError> {
    let key = match lookup(world, m) {
        Ok(subnet) => subnet.id.to_lowercase(),
        Err(e) if e.code == "NotFound" => return Ok(Reply::empty(StatusCode::NO_CONTENT)),
        Err(e) => return Err(e),
    };
    let users = subnet_users(world, &key);
    if !users.is_empty() {
        return Err(in_use(m.path.get("subnetName").map_or("", String::as_str), &users));
    }
    Ok(super::reply::deleting(world, m, &key))
}
