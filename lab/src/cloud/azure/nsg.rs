//! Network security groups (Microsoft.Network/networkSecurityGroups): PUT with `securityRules`
//! inline, GET, DELETE (refused while a NIC or subnet uses the group), list.

use super::error::ArmError;
use super::reply::{Reply, find, list, location_of, of_kind, same_location, store};
use super::state::{Kind, Provisioning, Resource, World, envelope, resource_id};
use super::usage::nsg_users;
use super::validate::Matched;
use axum::http::StatusCode;
use serde_json::{Value, json};

fn render(world: &World, nsg: &Resource) -> Value {
    let mut out = envelope(nsg);
    let (nics, subnets) = nsg_users(world, &nsg.id.to_lowercase());
    let ids = |ids: Vec<String>| json!(ids.into_iter().map(|id| json!({"id": id})).collect::<Vec<_>>());
    if !nics.is_empty() {
        out["properties"]["networkInterfaces"] = ids(nics);
    }
    if !subnets.is_empty() {
        out["properties"]["subnets"] = ids(subnets);
    }
    out["properties"]["resourceGuid"] = json!(nsg.guid);
    let rules: Vec<Value> = out["properties"]
        .get("securityRules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut rule| {
            let name = rule.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            rule["id"] = json!(format!("{}/securityRules/{name}", nsg.id));
            rule["type"] = json!("Microsoft.Network/networkSecurityGroups/securityRules");
            rule["properties"]["provisioningState"] = json!(nsg.state.as_str());
            rule
        })
        .collect();
    out["properties"]["securityRules"] = json!(rules);
    out
}

/// Checks one security rule the way the Network RP does (the fields it requires).
fn check_rule(rule: &Value, i: usize) -> Result<(), ArmError> {
    let name = rule.get("name").and_then(Value::as_str).unwrap_or_default();
    let props = rule.get("properties").cloned().unwrap_or(Value::Null);
    let missing = |field: &str| {
        ArmError::bad_request(
            "SecurityRuleParameterContainsUnsupportedValue",
            format!(
                "Security rule parameter {field} for rule with Id securityRules[{i}] ('{name}') is missing or invalid."
            ),
        )
    };
    if name.is_empty() {
        return Err(missing("Name"));
    }
    for field in ["protocol", "access", "direction"] {
        if props.get(field).and_then(Value::as_str).is_none() {
            return Err(missing(field));
        }
    }
    match props.get("priority").and_then(Value::as_i64) {
        Some(p) if (100..=4096).contains(&p) => Ok(()),
        _ => Err(ArmError::bad_request(
            "SecurityRuleInvalidPriority",
            format!(
                "Security rule '{name}' has invalid Priority. Value provided: {}. Allowed range 100-4096.",
                props.get("priority").unwrap_or(&Value::Null)
            ),
        )),
    }
}

/// `NetworkSecurityGroups_CreateOrUpdate`.
pub(super) fn put(world: &mut World, m: &Matched) -> Result<Reply, ArmError> {
    let p = |k: &str| m.path.get(k).cloned().unwrap_or_default();
    let (subscription, group, name) = (p("subscriptionId"), p("resourceGroupName"), p("networkSecurityGroupName"));
    world.live_group(&subscription, &group)?;
    let location = location_of(&m.body, Kind::NetworkSecurityGroup)?;
    let id = resource_id(&subscription, &group, Kind::NetworkSecurityGroup, &name);
    if let Some(existing) = world.get(&id) {
        same_location(existing, &location)?;
        if existing.state == Provisioning::Deleting {
            return Err(super::subnet::busy(&name));
        }
    }
    let mut properties = m.body.get("properties").cloned().unwrap_or_else(|| json!({}));
    for (i, rule) in properties.get("securityRules").and_then(Value::as_array).into_iter().flatten().enumerate() {
        check_rule(rule, i)?;
    }
    if let Some(object) = properties.as_object_mut() {
        for k in ["provisioningState", "resourceGuid", "networkInterfaces", "subnets", "defaultSecurityRules"] {
            object.remove(k);
        }
    }
    let mut body = json!({ "properties": properties });
    if let Some(tags) = m.body.get("tags") {
        body["tags"] = tags.clone();
    }
    let resource = super::reply::new_resource(m, Kind::NetworkSecurityGroup, &group, &name, &location, body);
    Ok(store(world, m, resource, render))
}

/// `NetworkSecurityGroups_Get`.
pub(super) fn get(world: &World, m: &Matched) -> Result<Reply, ArmError> {
    let nsg = find(world, m, Kind::NetworkSecurityGroup, "networkSecurityGroupName")?;
    Ok(Reply::json(StatusCode::OK, render(world, nsg)))
}

/// `NetworkSecurityGroups_List` / `_ListAll`.
pub(super) fn list_some(world: &World, m: &Matched) -> Result<Reply, ArmError> {
    Ok(list(of_kind(world, m, Kind::NetworkSecurityGroup).into_iter().map(|r| render(world, r)).collect()))
}

/// `NetworkSecurityGroups_Delete`: refused while in use.
pub(super) fn delete(world: &mut World, m: &Matched) -> Result<Reply, ArmError> {
    let key = match find(world, m, Kind::NetworkSecurityGroup, "networkSecurityGroupName") {
        Ok(nsg) => nsg.id.to_lowercase(),
        Err(e) if e.code == "ResourceNotFound" => return Ok(Reply::empty(StatusCode::NO_CONTENT)),
        Err(e) => return Err(e),
    };
    let (nics, subnets) = nsg_users(world, &key);
    if !nics.is_empty() || !subnets.is_empty() {
        let id = world.resources.get(&key).map(|r| r.id.clone()).unwrap_or_default();
        let users: Vec<String> = nics.into_iter().chain(subnets).collect();
        return Err(ArmError::bad_request(
            "InUseNetworkSecurityGroupCannotBeDeleted",
            format!(
                "Network security group {id} cannot be deleted because it is in use by the following resources: {}. In order to delete the Network security group, remove the association with the resource(s). To learn how to do this, see aka.ms/deletensg.",
                users.join(", ")
            ),
        ));
    }
    Ok(super::reply::deleting(world, m, &key))
}
