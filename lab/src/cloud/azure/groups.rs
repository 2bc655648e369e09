//! Resource groups (Microsoft.Resources): PUT (synchronous, as ARM does), GET, HEAD, list with
//! a tag `$filter`, and DELETE (202 + `Location`; every resource inside goes with the group).

use super::error::ArmError;
use super::reply::{Reply, list, location_of, retry_after};
use super::state::{Kind, Provisioning, World, envelope, group_id};
use super::validate::Matched;
use axum::http::StatusCode;
use serde_json::{Value, json};

fn names(m: &Matched) -> (String, String) {
    let subscription = m.path.get("subscriptionId").cloned().unwrap_or_default();
    let group = m.path.get("resourceGroupName").cloned().unwrap_or_default();
    (subscription, group)
}

fn render(resource: &super::state::Resource) -> Value {
    let mut out = envelope(resource);
    if let Some(object) = out.as_object_mut() {
        object.remove("etag");
    }
    out
}

/// Whether `name` is a valid resource group name (1 to 90 of letters, digits, `._-()`, not
/// ending in `.`).
fn valid_name(name: &str) -> bool {
    (1..=90).contains(&name.len())
        && !name.ends_with('.')
        && name.chars().all(|c| c.is_alphanumeric() || "._-()".contains(c))
}

/// `ResourceGroups_CreateOrUpdate`.
pub(super) fn put(world: &mut World, m: &Matched) -> Result<Reply, ArmError> {
    let (subscription, name) = names(m);
    if !valid_name(&name) {
        return Err(ArmError::bad_request(
            "InvalidResourceGroup",
            format!("The provided resource group name '{name}' has these invalid characters or length."),
        ));
    }
    let location = location_of(&m.body, Kind::Group)?;
    let id = group_id(&subscription, &name);
    if let Some(existing) = world.get(&id) {
        if existing.state == Provisioning::Deleting {
            return Err(ArmError::conflict(
                "ResourceGroupBeingDeleted",
                format!(
                    "The resource group '{}' is in deprovisioning state and cannot perform this operation.",
                    existing.name
                ),
            ));
        }
        if existing.location != location {
            return Err(ArmError::conflict(
                "InvalidResourceGroupLocation",
                format!(
                    "Invalid resource group location '{location}'. The Resource group already exists in location '{}'.",
                    existing.location
                ),
            ));
        }
    }
    let mut body = json!({ "properties": {} });
    if let Some(tags) = m.body.get("tags") {
        body["tags"] = tags.clone();
    }
    if let Some(managed_by) = m.body.get("managedBy") {
        body["managedBy"] = managed_by.clone();
    }
    let key = id.to_lowercase();
    let status = if let Some(existing) = world.resources.get_mut(&key) {
        existing.body = body;
        existing.etag += 1;
        StatusCode::OK
    } else {
        let mut resource = super::reply::new_resource(m, Kind::Group, &name, &name, &location, body);
        resource.state = Provisioning::Succeeded;
        resource.guid = world.guid();
        resource.created = super::state::now_rfc3339();
        world.resources.insert(key.clone(), resource);
        StatusCode::CREATED
    };
    let group = world.resources.get(&key).map(render).unwrap_or(Value::Null);
    Ok(Reply::json(status, group))
}

/// `ResourceGroups_Get`.
pub(super) fn get(world: &World, m: &Matched) -> Result<Reply, ArmError> {
    let (subscription, name) = names(m);
    let group = world.group(&subscription, &name).ok_or_else(|| ArmError::group_not_found(&name))?;
    Ok(Reply::json(StatusCode::OK, render(group)))
}

/// `ResourceGroups_CheckExistence`: 204 or 404, no body.
pub(super) fn head(world: &World, m: &Matched) -> Result<Reply, ArmError> {
    let (subscription, name) = names(m);
    let status =
        if world.group(&subscription, &name).is_some() { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND };
    Ok(Reply::empty(status))
}

/// `ResourceGroups_Delete`: 202 with `Location` (the operation result) while the group and
/// everything in it are deleted.
pub(super) fn delete(world: &mut World, m: &Matched) -> Result<Reply, ArmError> {
    let (subscription, name) = names(m);
    let key = group_id(&subscription, &name).to_lowercase();
    let Some(group) = world.resources.get(&key) else { return Err(ArmError::group_not_found(&name)) };
    if let Some(types) = m.query.get("forceDeletionTypes") {
        let allowed = [
            "Microsoft.Compute/virtualMachines",
            "Microsoft.Compute/virtualMachineScaleSets",
            "Microsoft.Databricks/workspaces",
        ];
        if types.split(',').any(|t| !allowed.iter().any(|a| a.eq_ignore_ascii_case(t.trim()))) {
            return Err(ArmError::bad_request(
                "InvalidForceDeletionTypes",
                format!("The forceDeletionTypes '{types}' are not supported: use {}.", allowed.join(", ")),
            ));
        }
    }
    let location = group.location.clone();
    let op = match (&group.pending, group.state) {
        (Some(pending), Provisioning::Deleting) => pending.op.clone(),
        _ => super::lifecycle::schedule_delete(world, &key, m.namespace),
    };
    let headers = super::reply::async_headers(world, m, &location, &op);
    let _ = retry_after;
    Ok(Reply::empty(StatusCode::ACCEPTED).with_headers(headers))
}

/// `ResourceGroups_List`, with `$filter=tagName eq 'k' and tagValue eq 'v'` (or `tagName eq
/// 'k'`) and `$top`.
pub(super) fn list_all(world: &World, m: &Matched) -> Result<Reply, ArmError> {
    let subscription = m.path.get("subscriptionId").map(|s| s.to_lowercase()).unwrap_or_default();
    let filter = match m.query.get("$filter") {
        Some(text) => Some(parse_filter(text)?),
        None => None,
    };
    let top = m.query.get("$top").and_then(|t| t.parse::<usize>().ok()).unwrap_or(usize::MAX);
    let groups = world
        .resources
        .values()
        .filter(|r| r.kind == Kind::Group && r.subscription.to_lowercase() == subscription)
        .filter(|r| match &filter {
            None => true,
            Some((tag, value)) => {
                let tags = r.body.get("tags").and_then(Value::as_object);
                let found = tags.and_then(|t| t.iter().find(|(k, _)| k.eq_ignore_ascii_case(tag)));
                match (found, value) {
                    (Some(_), None) => true,
                    (Some((_, v)), Some(value)) => v.as_str() == Some(value.as_str()),
                    (None, _) => false,
                }
            }
        })
        .take(top)
        .map(render)
        .collect();
    Ok(list(groups))
}

/// `tagName eq 'k' and tagValue eq 'v'` → (k, Some(v)); `tagName eq 'k'` → (k, None).
fn parse_filter(text: &str) -> Result<(String, Option<String>), ArmError> {
    let invalid = || {
        ArmError::bad_request(
            "InvalidFilterInQueryString",
            format!("Invalid $filter '{text}' specified in the query string."),
        )
    };
    let quoted = |part: &str, key: &str| -> Option<String> {
        let rest = part.trim().strip_prefix(key)?.trim_start().strip_prefix("eq")?.trim();
        Some(rest.strip_prefix('\'')?.strip_suffix('\'')?.replace("''", "'"))
    };
    let mut parts = text.splitn(2, " and ");
    let tag = quoted(parts.next().unwrap_or_default(), "tagName").ok_or_else(invalid)?;
    let value = match parts.next() {
        Some(part) => Some(quoted(part, "tagValue").ok_or_else(invalid)?),
        None => None,
    };
    Ok((tag, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_filters_parse() {
        assert_eq!(
            parse_filter("tagName eq 'gantry-cluster' and tagValue eq 'lab'").expect("valid"),
            ("gantry-cluster".to_string(), Some("lab".to_string()))
        );
        assert_eq!(parse_filter("tagName eq 'a'").expect("valid"), ("a".to_string(), None));
        assert_eq!(parse_filter("name eq 'x'").expect_err("refused").code, "InvalidFilterInQueryString");
    }

    #[test]
    fn group_names_are_checked() {
        assert!(valid_name("gantry-lab_1.(a)"));
        assert!(!valid_name("bad name"));
        assert!(!valid_name("ends."));
    }
}
