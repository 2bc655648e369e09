//! What a handler answers, and the pieces every resource shares: the async-operation headers,
//! the common PUT checks (group, location), and the list shape.

use super::error::ArmError;
use super::spec::Namespace;
use super::state::{Kind, Pending, Provisioning, Resource, World, now_rfc3339};
use super::validate::Matched;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::time::Instant;

/// The lab's regions and their zones.
pub(super) const LOCATIONS: &[&str] = &["westeurope", "eastus"];
/// The zones of every lab region.
pub(super) const ZONES: &[&str] = &["1", "2", "3"];

/// A handler's answer.
#[derive(Debug)]
pub(super) struct Reply {
    pub status: StatusCode,
    pub body: Option<Value>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub(super) fn json(status: StatusCode, body: Value) -> Reply {
        Reply { status, body: Some(body), headers: Vec::new() }
    }

    pub(super) fn empty(status: StatusCode) -> Reply {
        Reply { status, body: None, headers: Vec::new() }
    }

    pub(super) fn with_headers(mut self, headers: Vec<(&'static str, String)>) -> Reply {
        self.headers.extend(headers);
        self
    }
}

/// The headers that point a client at operation `op`: `Azure-AsyncOperation` (the status
/// resource), `Location` (the result: 202 while running), and `Retry-After`.
pub(super) fn async_headers(world: &World, m: &Matched, location: &str, op: &str) -> Vec<(&'static str, String)> {
    let subscription = m.path.get("subscriptionId").cloned().unwrap_or_default();
    let base = &world.base_url;
    let version = &m.api_version;
    let (status, result) = match m.namespace {
        Namespace::Resources => {
            let url = format!("{base}/subscriptions/{subscription}/operationresults/{op}?api-version={version}");
            (None, url)
        }
        Namespace::Network => {
            let path = format!("{base}/subscriptions/{subscription}/providers/Microsoft.Network/locations/{location}");
            (
                Some(format!("{path}/operations/{op}?api-version={version}")),
                format!("{path}/operationResults/{op}?api-version={version}"),
            )
        }
        Namespace::Compute => {
            let path = format!(
                "{base}/subscriptions/{subscription}/providers/Microsoft.Compute/locations/{location}/operations/{op}"
            );
            (Some(format!("{path}?api-version={version}")), format!("{path}?monitor=true&api-version={version}"))
        }
    };
    let mut headers = retry_after(world);
    if let Some(status) = status {
        headers.push(("azure-asyncoperation", status));
    }
    headers.push(("location", result));
    headers
}

/// `Retry-After` in whole seconds as Azure sends it, and `retry-after-ms` (which the SDKs read
/// first) so clients of the lab poll at the lab's pace.
pub(super) fn retry_after(world: &World) -> Vec<(&'static str, String)> {
    let ms = (world.delay.as_millis() / 4).clamp(20, 1000);
    vec![("retry-after", world.delay.as_secs().max(1).to_string()), ("retry-after-ms", ms.to_string())]
}

/// The `location` of a PUT body, checked against the lab's regions.
pub(super) fn location_of(body: &Value, kind: Kind) -> Result<String, ArmError> {
    let Some(location) = body.get("location").and_then(Value::as_str) else {
        return Err(ArmError::bad_request(
            "LocationRequired",
            "The location property is required for this definition.",
        ));
    };
    let normalized: String = location.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
    if !LOCATIONS.contains(&normalized.as_str()) {
        return Err(ArmError::bad_request(
            "LocationNotAvailableForResourceType",
            format!(
                "The provided location '{location}' is not available for resource type '{}'. List of available \
                 regions for the resource type is '{}'.",
                kind.type_name(),
                LOCATIONS.join(",")
            ),
        ));
    }
    Ok(normalized)
}

/// A resource cannot move: a PUT naming another location than the existing resource's fails.
pub(super) fn same_location(existing: &Resource, location: &str) -> Result<(), ArmError> {
    if existing.location == location {
        return Ok(());
    }
    Err(ArmError::conflict(
        "InvalidResourceLocation",
        format!(
            "The resource '{}' already exists in location '{}' in resource group '{}'. A resource with the same \
             name cannot be created in location '{location}'. Please select a new resource name.",
            existing.name, existing.location, existing.group
        ),
    ))
}

/// Stores a PUT: a new resource in state Creating, or an existing one in state Updating, with
/// an operation that ends after the lab's delay. Answers 201 or 200 with the resource and the
/// async headers.
pub(super) fn store(
    world: &mut World,
    m: &Matched,
    mut resource: Resource,
    render: fn(&World, &Resource) -> Value,
) -> Reply {
    let key = resource.id.to_lowercase();
    let existing = world.resources.get(&key).cloned();
    if let Some(old) = &existing {
        resource.id = old.id.clone();
        resource.guid = old.guid.clone();
        resource.created = old.created.clone();
        resource.etag = old.etag + 1;
        resource.power = old.power;
    } else {
        resource.guid = world.guid();
        resource.created = now_rfc3339();
    }
    // A PUT while another operation runs (the compute SDK re-sends its PUT to poll) joins it.
    let in_flight = existing.as_ref().and_then(|old| {
        let op = old.awaiting_host.clone().or_else(|| old.pending.as_ref().map(|p| p.op.clone()))?;
        Some((old, op))
    });
    let op = match in_flight {
        Some((old, op)) => {
            resource.state = old.state;
            resource.pending = old.pending.clone();
            resource.awaiting_host = old.awaiting_host.clone();
            op
        }
        None => {
            resource.state = if existing.is_some() { Provisioning::Updating } else { Provisioning::Creating };
            resource.awaiting_host = None;
            let op = world.start_operation(m.namespace, false);
            let due = Instant::now() + world.delay;
            resource.pending = Some(Pending { due, op: op.clone(), what: super::state::Due::Provision });
            op
        }
    };
    let location = resource.location.clone();
    world.resources.insert(key.clone(), resource);
    let status = if existing.is_some() { StatusCode::OK } else { StatusCode::CREATED };
    let body = world.resources.get(&key).map(|r| render(world, r)).unwrap_or(Value::Null);
    Reply::json(status, body).with_headers(async_headers(world, m, &location, &op))
}

/// A new resource value from a PUT (the store fills in the rest).
pub(super) fn new_resource(m: &Matched, kind: Kind, group: &str, name: &str, location: &str, body: Value) -> Resource {
    let subscription = m.path.get("subscriptionId").cloned().unwrap_or_default();
    Resource {
        id: super::state::resource_id(&subscription, group, kind, name),
        kind,
        subscription,
        group: group.to_string(),
        name: name.to_string(),
        location: location.to_string(),
        body,
        state: Provisioning::Creating,
        pending: None,
        power: None,
        awaiting_host: None,
        guid: String::new(),
        created: String::new(),
        etag: 1,
    }
}

/// `{"value": [...]}`.
pub(super) fn list(values: Vec<Value>) -> Reply {
    Reply::json(StatusCode::OK, json!({ "value": values }))
}

/// The resources of `kind` in a group (`group` given) or in the subscription.
pub(super) fn of_kind<'a>(world: &'a World, m: &Matched, kind: Kind) -> Vec<&'a Resource> {
    let subscription = m.path.get("subscriptionId").map(|s| s.to_lowercase()).unwrap_or_default();
    let group = m.path.get("resourceGroupName").map(|g| g.to_lowercase());
    world
        .resources
        .values()
        .filter(|r| r.kind == kind && r.subscription.to_lowercase() == subscription)
        .filter(|r| group.as_ref().is_none_or(|g| r.group.to_lowercase() == *g))
        .collect()
}

/// The standard GET of a top-level resource: 404 `ResourceGroupNotFound` / `ResourceNotFound`.
pub(super) fn find<'a>(world: &'a World, m: &Matched, kind: Kind, name_param: &str) -> Result<&'a Resource, ArmError> {
    let subscription = m.path.get("subscriptionId").cloned().unwrap_or_default();
    let group = m.path.get("resourceGroupName").cloned().unwrap_or_default();
    let name = m.path.get(name_param).cloned().unwrap_or_default();
    if world.group(&subscription, &group).is_none() {
        return Err(ArmError::group_not_found(&group));
    }
    world
        .get(&super::state::resource_id(&subscription, &group, kind, &name))
        .ok_or_else(|| ArmError::not_found(kind.type_name(), &name, &group))
}

/// The standard DELETE answer: 202 with the async headers, or 204 when there is nothing.
pub(super) fn deleting(world: &mut World, m: &Matched, key: &str) -> Reply {
    let Some(resource) = world.resources.get(key) else { return Reply::empty(StatusCode::NO_CONTENT) };
    let location = resource.location.clone();
    let op = match (&resource.pending, resource.state) {
        (Some(pending), Provisioning::Deleting) => pending.op.clone(),
        _ => super::lifecycle::schedule_delete(world, key, m.namespace),
    };
    Reply::empty(StatusCode::ACCEPTED).with_headers(async_headers(world, m, &location, &op))
}

/// A resource id in a body: it must be fully qualified (`LinkedInvalidPropertyId`) and exist
/// (`InvalidResourceReference`, naming `by`). Answers its key.
pub(super) fn reference(world: &World, id: &str, path: &str, kind: Kind, by: &str) -> Result<String, ArmError> {
    let parsed = super::state::parse_id(id).ok_or_else(|| ArmError::linked_invalid_id(id, path))?;
    if parsed.kind != Some(kind) {
        return Err(ArmError::linked_invalid_id(id, path));
    }
    match world.get(id) {
        Some(found) if found.state != Provisioning::Deleting => Ok(found.id.to_lowercase()),
        _ => Err(ArmError::invalid_reference(id, by)),
    }
}
