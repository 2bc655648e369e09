//! Public IP addresses (Microsoft.Network/publicIPAddresses): PUT (Standard SKU, static; the
//! address is made up from 203.0.113.0/24, TEST-NET-3, and never dialed), GET, DELETE (refused
//! while a NIC holds it), list.

use super::error::ArmError;
use super::reply::{Reply, find, list, location_of, of_kind, same_location, store};
use super::state::{Kind, Provisioning, Resource, World, envelope, resource_id};
use super::usage::public_ip_user;
use super::validate::Matched;
use axum::http::StatusCode;
use serde_json::{Value, json};

fn render(world: &World, pip: &Resource) -> Value {
    let mut out = envelope(pip);
    out["properties"]["resourceGuid"] = json!(pip.guid);
    if let Some(config) = public_ip_user(world, &pip.id.to_lowercase()) {
        out["properties"]["ipConfiguration"] = json!({ "id": config });
    }
    out
}

/// A free address in 203.0.113.0/24.
fn allocate(world: &World) -> Option<String> {
    let used: Vec<String> = world
        .resources
        .values()
        .filter(|r| r.kind == Kind::PublicIp)
        .filter_map(|r| r.properties().get("ipAddress").and_then(Value::as_str).map(String::from))
        .collect();
    (4..=254).map(|i| format!("203.0.113.{i}")).find(|a| !used.contains(a))
}

/// `PublicIPAddresses_CreateOrUpdate`.
pub(super) fn put(world: &mut World, m: &Matched) -> Result<Reply, ArmError> {
    let p = |k: &str| m.path.get(k).cloned().unwrap_or_default();
    let (subscription, group, name) = (p("subscriptionId"), p("resourceGroupName"), p("publicIpAddressName"));
    world.live_group(&subscription, &group)?;
    let location = location_of(&m.body, Kind::PublicIp)?;
    let id = resource_id(&subscription, &group, Kind::PublicIp, &name);
    let existing = world.get(&id).cloned();
    if let Some(existing) = &existing {
        same_location(existing, &location)?;
        if existing.state == Provisioning::Deleting {
            return Err(super::subnet::busy(&name));
        }
    }
    let sku = m.body.pointer("/sku/name").and_then(Value::as_str).unwrap_or("Standard");
    let mut properties = m.body.get("properties").cloned().unwrap_or_else(|| json!({}));
    let method = properties.get("publicIPAllocationMethod").and_then(Value::as_str).unwrap_or("Static").to_string();
    if sku.eq_ignore_ascii_case("Standard") && method.eq_ignore_ascii_case("Dynamic") {
        return Err(ArmError::bad_request(
            "StandardSkuPublicIPAddressesCannotHaveDynamicAllocation",
            format!(
                "Standard sku publicIp /subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Network/publicIPAddresses/{name} must have AllocationMethod set to Static."
            ),
        ));
    }
    if let Some(old) = &existing {
        let old_sku = old.body.pointer("/sku/name").and_then(Value::as_str).unwrap_or("Standard");
        if !old_sku.eq_ignore_ascii_case(sku) {
            return Err(ArmError::bad_request(
                "PublicIPAddressSkuCannotBeChanged",
                format!("The SKU of public IP address {} cannot be changed from {old_sku} to {sku}.", old.id),
            ));
        }
    }
    let address = match existing.as_ref().and_then(|e| e.properties().get("ipAddress").cloned()) {
        Some(address) => address,
        None => json!(allocate(world).ok_or_else(|| ArmError::conflict(
            "PublicIPCountLimitReached",
            "Cannot create more than 250 public IP addresses in the lab.",
        ))?),
    };
    if let Some(object) = properties.as_object_mut() {
        for k in ["provisioningState", "resourceGuid", "ipConfiguration"] {
            object.remove(k);
        }
        object.insert("ipAddress".into(), address);
        object.insert("publicIPAllocationMethod".into(), json!(method));
        object.entry("publicIPAddressVersion").or_insert(json!("IPv4"));
        object.entry("idleTimeoutInMinutes").or_insert(json!(4));
    }
    let mut body = json!({ "properties": properties, "sku": { "name": sku, "tier": "Regional" } });
    for key in ["tags", "zones"] {
        if let Some(value) = m.body.get(key) {
            body[key] = value.clone();
        }
    }
    let resource = super::reply::new_resource(m, Kind::PublicIp, &group, &name, &location, body);
    Ok(store(world, m, resource, render))
}

/// `PublicIPAddresses_Get`.
pub(super) fn get(world: &World, m: &Matched) -> Result<Reply, ArmError> {
    let pip = find(world, m, Kind::PublicIp, "publicIpAddressName")?;
    Ok(Reply::json(StatusCode::OK, render(world, pip)))
}

/// `PublicIPAddresses_List` / `_ListAll`.
pub(super) fn list_some(world: &World, m: &Matched) -> Result<Reply, ArmError> {
    Ok(list(of_kind(world, m, Kind::PublicIp).into_iter().map(|r| render(world, r)).collect()))
}

/// `PublicIPAddresses_Delete`: refused while a NIC holds the address.
pub(super) fn delete(world: &mut World, m: &Matched) -> Result<Reply, ArmError> {
    let key = match find(world, m, Kind::PublicIp, "publicIpAddressName") {
        Ok(pip) => pip.id.to_lowercase(),
        Err(e) if e.code == "ResourceNotFound" => return Ok(Reply::empty(StatusCode::NO_CONTENT)),
        Err(e) => return Err(e),
    };
    if let Some(config) = public_ip_user(world, &key) {
        let id = world.resources.get(&key).map(|r| r.id.clone()).unwrap_or_default();
        return Err(ArmError::bad_request(
            "PublicIPAddressCannotBeDeleted",
            format!(
                "Public IP address {id} can not be deleted since it is still allocated to resource {config}. In order to delete the public IP, disassociate/detach the Public IP address from the resource. To learn how to do this, see aka.ms/deletepublicip."
            ),
        ));
    }
    Ok(super::reply::deleting(world, m, &key))
}
