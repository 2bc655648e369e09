//! Network interfaces (Microsoft.Network/networkInterfaces): PUT with `ipConfigurations`
//! (subnet, Dynamic private address allocated from the subnet, where Azure reserves the first
//! four and the last, or Static as given; public IP), NSG; GET, DELETE (refused while a VM uses
//! the NIC), list.

use super::error::ArmError;
use super::reply::{Reply, find, list, location_of, of_kind, reference, same_location, store};
use super::state::{Kind, Provisioning, Resource, World, envelope, resource_id};
use super::usage::{ip_configs, mask, nic_user, parse_cidr};
use super::validate::Matched;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::net::Ipv4Addr;

fn render(world: &World, nic: &Resource) -> Value {
    let mut out = envelope(nic);
    let configs: Vec<Value> = out["properties"]
        .get("ipConfigurations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut config| {
            let name = config.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            config["id"] = json!(format!("{}/ipConfigurations/{name}", nic.id));
            config["type"] = json!("Microsoft.Network/networkInterfaces/ipConfigurations");
            config["properties"]["provisioningState"] = json!(nic.state.as_str());
            config
        })
        .collect();
    out["properties"]["ipConfigurations"] = json!(configs);
    out["properties"]["resourceGuid"] = json!(nic.guid);
    out["properties"]["nicType"] = json!("Standard");
    if let Some(vm) = nic_user(world, &nic.id.to_lowercase()) {
        out["properties"]["virtualMachine"] = json!({ "id": vm });
        let bytes = nic.guid.as_bytes();
        out["properties"]["macAddress"] = json!(format!(
            "60-45-BD-{:02X}-{:02X}-{:02X}",
            bytes.first().copied().unwrap_or(0),
            bytes.get(1).copied().unwrap_or(0),
            bytes.get(2).copied().unwrap_or(0)
        ));
    }
    out
}

/// The first free address of `range` (Azure reserves the network address, the next three and
/// the broadcast address), not in `used`.
fn allocate(range: (u32, u8), used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    let size = 1u64 << (32 - u32::from(range.1));
    (4..size.saturating_sub(1)).map(|i| Ipv4Addr::from(range.0 + i as u32)).find(|a| !used.contains(a))
}

/// `NetworkInterfaces_CreateOrUpdate`.
pub(super) fn put(world: &mut World, m: &Matched) -> Result<Reply, ArmError> {
    let p = |k: &str| m.path.get(k).cloned().unwrap_or_default();
    let (subscription, group, name) = (p("subscriptionId"), p("resourceGroupName"), p("networkInterfaceName"));
    world.live_group(&subscription, &group)?;
    let location = location_of(&m.body, Kind::NetworkInterface)?;
    let id = resource_id(&subscription, &group, Kind::NetworkInterface, &name);
    let key = id.to_lowercase();
    let existing = world.get(&id).cloned();
    if let Some(existing) = &existing {
        same_location(existing, &location)?;
        if existing.state == Provisioning::Deleting {
            return Err(super::subnet::busy(&name));
        }
    }
    let mut properties = m.body.get("properties").cloned().unwrap_or_else(|| json!({}));
    if let Some(nsg) = properties.pointer("/networkSecurityGroup/id").and_then(Value::as_str) {
        reference(world, nsg, "properties.networkSecurityGroup.id", Kind::NetworkSecurityGroup, &id)?;
    }
    let others: Vec<super::usage::IpConfig> = ip_configs(world).into_iter().filter(|c| c.nic != key).collect();
    let mut configs = properties.get("ipConfigurations").and_then(Value::as_array).cloned().unwrap_or_default();
    if configs.is_empty() {
        return Err(ArmError::bad_request(
            "NetworkInterfaceMustHaveAtLeastOneIpConfiguration",
            format!("Network interface {id} must have at least one IP configuration."),
        ));
    }
    let primaries =
        configs.iter().filter(|c| c.pointer("/properties/primary").and_then(Value::as_bool) == Some(true)).count();
    if configs.len() > 1 && primaries != 1 {
        return Err(ArmError::bad_request(
            "NetworkInterfaceMustHaveExactlyOnePrimaryIpConfiguration",
            format!("Network interface {id} must have exactly one primary IP configuration."),
        ));
    }
    let mut taken: Vec<Ipv4Addr> = others.iter().filter_map(|c| c.address).collect();
    let old_configs = existing.as_ref().map(ip_configs_of).unwrap_or_default();
    let single = configs.len() == 1;
    for (i, config) in configs.iter_mut().enumerate() {
        let path = format!("properties.ipConfigurations[{i}].properties");
        let Some(config_name) = config.get("name").and_then(Value::as_str).map(String::from) else {
            return Err(ArmError::bad_request(
                "InvalidRequestFormat",
                format!("IP configuration {i} of {id} has no name."),
            ));
        };
        let by = format!("{id}/ipConfigurations/{config_name}");
        let Some(subnet_id) = config.pointer("/properties/subnet/id").and_then(Value::as_str).map(String::from) else {
            return Err(ArmError::bad_request(
                "IpConfigurationSubnetRequired",
                format!("Subnet is required for IP configuration {by}."),
            ));
        };
        let subnet_key = reference(world, &subnet_id, &format!("{path}.subnet.id"), Kind::Subnet, &by)?;
        let subnet =
            world.resources.get(&subnet_key).cloned().ok_or_else(|| ArmError::invalid_reference(&subnet_id, &by))?;
        if subnet.location != location {
            return Err(ArmError::bad_request(
                "InvalidResourceReference",
                format!(
                    "Resource {subnet_id} referenced by resource {by} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
                ),
            ));
        }
        let range = super::subnet::prefix(subnet.properties())
            .and_then(|t| parse_cidr(&t))
            .ok_or_else(|| ArmError::invalid_reference(&subnet_id, &by))?;
        if let Some(pip) = config.pointer("/properties/publicIPAddress/id").and_then(Value::as_str).map(String::from) {
            let pip_key = reference(world, &pip, &format!("{path}.publicIPAddress.id"), Kind::PublicIp, &by)?;
            if let Some(user) = others.iter().find(|c| c.public_ip.as_deref() == Some(pip_key.as_str())) {
                return Err(ArmError::bad_request(
                    "PublicIPAddressInUse",
                    format!("Resource {pip} is referenced by resource {} and cannot be used by {by}.", user.id),
                ));
            }
        }
        let method = config
            .pointer("/properties/privateIPAllocationMethod")
            .and_then(Value::as_str)
            .unwrap_or("Dynamic")
            .to_string();
        let address = if method.eq_ignore_ascii_case("Static") {
            let Some(text) = config.pointer("/properties/privateIPAddress").and_then(Value::as_str) else {
                return Err(ArmError::bad_request(
                    "PrivateIPAddressIsRequired",
                    format!("Static allocation of {by} requires privateIPAddress."),
                ));
            };
            let address: Ipv4Addr = text.parse().map_err(|_| {
                ArmError::bad_request(
                    "PrivateIPAddressInvalid",
                    format!("Private static IP address {text} of {by} is not valid."),
                )
            })?;
            let n = u32::from(address);
            if n & mask(range.1) != range.0 {
                return Err(ArmError::bad_request(
                    "PrivateIPAddressNotInSubnet",
                    format!(
                        "IP configuration {by} is referencing subnet {subnet_id} with address prefix {} but its private IP address {address} is not within it.",
                        super::subnet::prefix(subnet.properties()).unwrap_or_default()
                    ),
                ));
            }
            let offset = n - range.0;
            if offset < 4 || u64::from(offset) == (1u64 << (32 - u32::from(range.1))) - 1 {
                return Err(ArmError::bad_request(
                    "PrivateIPAddressInReservedRange",
                    format!(
                        "Private static IP address {address} falls within reserved IP range of subnet prefix {}.",
                        super::subnet::prefix(subnet.properties()).unwrap_or_default()
                    ),
                ));
            }
            if taken.contains(&address) {
                return Err(ArmError::bad_request(
                    "PrivateIPAddressInUse",
                    format!(
                        "IP configuration {by} is using the private IP address {address} which is already allocated to resource {}.",
                        others
                            .iter()
                            .find(|c| c.address == Some(address))
                            .map_or("another IP configuration", |c| c.id.as_str())
                    ),
                ));
            }
            address
        } else {
            let kept = old_configs
                .iter()
                .find(|(n, s, _)| n.eq_ignore_ascii_case(&config_name) && *s == subnet_key)
                .map(|(_, _, a)| *a);
            match kept.flatten() {
                Some(address) => address,
                None => allocate(range, &taken).ok_or_else(|| ArmError::bad_request(
                    "SubnetIsFull",
                    format!("Subnet {subnet_id} with address prefix {} does not have enough capacity for 1 IP addresses.", super::subnet::prefix(subnet.properties()).unwrap_or_default()),
                ))?,
            }
        };
        taken.push(address);
        let props = &mut config["properties"];
        props["privateIPAddress"] = json!(address.to_string());
        props["privateIPAllocationMethod"] =
            json!(if method.eq_ignore_ascii_case("Static") { "Static" } else { "Dynamic" });
        props["privateIPAddressVersion"] = json!("IPv4");
        if single {
            props["primary"] = json!(true);
        }
        if let Some(object) = props.as_object_mut() {
            object.remove("provisioningState");
        }
    }
    if let Some(object) = properties.as_object_mut() {
        for k in ["provisioningState", "resourceGuid", "virtualMachine", "macAddress", "nicType"] {
            object.remove(k);
        }
        object.insert("ipConfigurations".into(), json!(configs));
    }
    let mut body = json!({ "properties": properties });
    if let Some(tags) = m.body.get("tags") {
        body["tags"] = tags.clone();
    }
    let resource = super::reply::new_resource(m, Kind::NetworkInterface, &group, &name, &location, body);
    Ok(store(world, m, resource, render))
}

/// (name, subnet key, address) of each IP configuration of `nic`.
fn ip_configs_of(nic: &Resource) -> Vec<(String, String, Option<Ipv4Addr>)> {
    nic.properties()
        .get("ipConfigurations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let text = |p: &str| c.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
            (
                text("/name"),
                text("/properties/subnet/id").to_lowercase(),
                text("/properties/privateIPAddress").parse().ok(),
            )
        })
        .collect()
}

/// `NetworkInterfaces_Get`.
pub(super) fn get(world: &World, m: &Matched) -> Result<Reply, ArmError> {
    let nic = find(world, m, Kind::NetworkInterface, "networkInterfaceName")?;
    Ok(Reply::json(StatusCode::OK, render(world, nic)))
}

/// `NetworkInterfaces_List` / `_ListAll`.
pub(super) fn list_some(world: &World, m: &Matched) -> Result<Reply, ArmError> {
    if let Some(group) = m.path.get("resourceGroupName") {
        let subscription = m.path.get("subscriptionId").cloned().unwrap_or_default();
        world.group(&subscription, group).ok_or_else(|| ArmError::group_not_found(group))?;
    }
    Ok(list(of_kind(world, m, Kind::NetworkInterface).into_iter().map(|r| render(world, r)).collect()))
}

/// `NetworkInterfaces_Delete`: refused while a VM uses the NIC.
pub(super) fn delete(world: &mut World, m: &Matched) -> Result<Reply, ArmError> {
    let key = match find(world, m, Kind::NetworkInterface, "networkInterfaceName") {
        Ok(nic) => nic.id.to_lowercase(),
        Err(e) if e.code == "ResourceNotFound" => return Ok(Reply::empty(StatusCode::NO_CONTENT)),
        Err(e) => return Err(e),
    };
    if let Some(vm) = nic_user(world, &key) {
        let id = world.resources.get(&key).map(|r| r.id.clone()).unwrap_or_default();
        return Err(ArmError::bad_request(
            "NicInUse",
            format!(
                "Network Interface {id} is used by existing resource {vm}. In order to delete the network interface, it must be dissociated from the resource. To learn more, see aka.ms/deletenic."
            ),
        ));
    }
    Ok(super::reply::deleting(world, m, &key))
}
