//! instances.insert/get/list/aggregatedList/delete/start/stop. An instance goes PROVISIONING →
//! STAGING → RUNNING with its insert operation, STOPPING → TERMINATED with stop, and back with
//! start; a RUNNING one inside the lab network is backed by a test host (see [`super::hosts`])
//! with its `ssh-keys` authorised for root and its `startup-script` run once.

use super::catalog;
use super::error::ApiError;
use super::faults;
use super::filter;
use super::hosts::HostAction;
use super::names;
use super::operations::Effect;
use super::resources::{self, begin};
use super::spec::Call;
use super::state::{Api, State, last, link, now, reference, window};
use super::subnetworks::parse_cidr;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

fn path(call: &Call, name: &str) -> String {
    format!("projects/{}/zones/{}/instances/{name}", call.param("project"), call.param("zone"))
}

fn zone_of(call: &Call) -> Result<&str, ApiError> {
    let zone = call.param("zone");
    catalog::region_of(zone).map(|_| zone).ok_or_else(|| ApiError::invalid("zone", zone, "Unknown zone."))
}

/// instances.insert.
pub fn insert(api: &Arc<Api>, call: &Call) -> Result<Value, ApiError> {
    let mut state = begin!(api, call);
    let project = call.param("project");
    let zone = zone_of(call)?;
    let mut instance = call.body.clone().unwrap_or_default();
    let name = names::name(&instance)?;
    let path = path(call, &name);
    if state.resources.contains_key(&path) {
        return Err(ApiError::already_exists(&path));
    }
    names::labels(&instance)?;
    names::metadata(&instance)?;
    let machine_type = instance["machineType"].as_str().ok_or_else(|| ApiError::required("resource.machineType"))?;
    let machine_path = reference(project, machine_type);
    let known = machine_path == format!("projects/{project}/zones/{zone}/machineTypes/{}", last(&machine_path))
        && catalog::machine_type_json(project, zone, last(&machine_path)).is_some();
    if !known {
        return Err(ApiError::invalid(
            "resource.machineType",
            machine_type,
            &format!("Machine type with name '{}' does not exist in zone '{zone}'.", last(&machine_path)),
        ));
    }
    instance["machineType"] = Value::from(link(&machine_path));
    instance["disks"] = disks(project, zone, &name, &instance)?;
    instance["networkInterfaces"] = interfaces(&mut state, project, zone, &instance)?;
    instance["scheduling"] = scheduling(&instance)?;
    let metadata = &mut instance["metadata"];
    metadata["kind"] = Value::from("compute#metadata");
    metadata["fingerprint"] = Value::from("42WmSpB8rSM=");
    for (key, value) in [
        ("kind", Value::from("compute#instance")),
        ("creationTimestamp", Value::from(now())),
        ("status", Value::from("PROVISIONING")),
        ("zone", Value::from(link(&format!("projects/{project}/zones/{zone}")))),
        ("selfLink", Value::from(link(&path))),
        ("cpuPlatform", Value::from("Unknown CPU Platform")),
        ("labelFingerprint", Value::from("42WmSpB8rSM=")),
        ("fingerprint", Value::from("42WmSpB8rSM=")),
        ("startRestricted", Value::from(false)),
        ("deletionProtection", Value::from(instance["deletionProtection"].as_bool().unwrap_or(false))),
        ("canIpForward", Value::from(instance["canIpForward"].as_bool().unwrap_or(false))),
    ] {
        instance[key] = value;
    }
    instance["tags"]["fingerprint"] = Value::from("42WmSpB8rSM=");
    let effect = match faults::take(&mut state.faults, project, zone) {
        Some(failure) => Effect::Fail(failure, path.clone()),
        None => Effect::InsertInstance(path.clone()),
    };
    resources::insert(api, &mut state, call, format!("zones/{zone}"), path, instance, effect)
}

/// The attached disks as Compute answers them: the boot disk made from its source image.
fn disks(project: &str, zone: &str, name: &str, instance: &Value) -> Result<Value, ApiError> {
    let disks =
        instance["disks"].as_array().filter(|d| !d.is_empty()).ok_or_else(|| ApiError::required("resource.disks"))?;
    let mut out = Vec::new();
    for (i, disk) in disks.iter().enumerate() {
        let mut disk = disk.clone();
        let params = disk.get("initializeParams").cloned().unwrap_or(Value::Null);
        let boot = disk["boot"].as_bool().unwrap_or(i == 0);
        let disk_name = params["diskName"]
            .as_str()
            .map_or_else(|| if i == 0 { name.to_string() } else { format!("{name}-{i}") }, String::from);
        let mut size = params["diskSizeGb"]
            .as_str()
            .map(String::from)
            .or_else(|| params["diskSizeGb"].as_i64().map(|n| n.to_string()));
        match params["sourceImage"].as_str() {
            Some(source) => {
                let image = catalog::image_at(&reference(project, source)).ok_or_else(|| {
                    ApiError::invalid(
                        &format!("resource.disks[{i}].initializeParams.sourceImage"),
                        source,
                        "The referenced image resource cannot be found.",
                    )
                })?;
                size = size.or_else(|| image["diskSizeGb"].as_str().map(String::from));
            }
            None if disk["source"].is_null() => {
                return Err(ApiError::invalid(
                    &format!("resource.disks[{i}]"),
                    "",
                    "Source or initializeParams.sourceImage must be specified.",
                ));
            }
            None => {}
        }
        if let Some(object) = disk.as_object_mut() {
            object.remove("initializeParams");
        }
        let source = link(&format!("projects/{project}/zones/{zone}/disks/{disk_name}"));
        for (key, value) in [
            ("kind", Value::from("compute#attachedDisk")),
            ("type", Value::from(disk["type"].as_str().unwrap_or("PERSISTENT").to_string())),
            ("mode", Value::from(disk["mode"].as_str().unwrap_or("READ_WRITE").to_string())),
            ("source", Value::from(disk["source"].as_str().map_or(source, String::from))),
            ("deviceName", Value::from(disk["deviceName"].as_str().unwrap_or(&disk_name).to_string())),
            ("index", Value::from(i)),
            ("boot", Value::from(boot)),
            ("autoDelete", Value::from(disk["autoDelete"].as_bool().unwrap_or(false))),
            ("interface", Value::from(disk["interface"].as_str().unwrap_or("SCSI").to_string())),
            ("diskSizeGb", Value::from(size.unwrap_or_else(|| "10".to_string()))),
            ("architecture", Value::from("X86_64")),
        ] {
            disk[key] = value;
        }
        out.push(disk);
    }
    Ok(Value::from(out))
}

/// The network interfaces as Compute answers them: subnetwork resolved, address allocated
/// (or checked), external addresses made up.
fn interfaces(state: &mut State, project: &str, zone: &str, instance: &Value) -> Result<Value, ApiError> {
    let nics = instance["networkInterfaces"].as_array().filter(|n| !n.is_empty()).ok_or_else(|| {
        ApiError::invalid("resource.networkInterfaces", "", "At least one network interface is required.")
    })?;
    let region = catalog::region_of(zone).unwrap_or_default();
    let mut out = Vec::new();
    for (i, nic) in nics.iter().enumerate() {
        let field = format!("resource.networkInterfaces[{i}]");
        let mut nic = nic.clone();
        let subnetwork_path = match nic["subnetwork"].as_str() {
            Some(text) => {
                let path = reference(project, text);
                if !path.contains("/subnetworks/") || state.resources.get(&path).is_none_or(|s| s.deleting) {
                    return Err(ApiError::invalid(
                        &format!("{field}.subnetwork"),
                        text,
                        "The referenced subnetwork resource cannot be found.",
                    ));
                }
                if !path.contains(&format!("/regions/{region}/")) {
                    return Err(ApiError::invalid(
                        &format!("{field}.subnetwork"),
                        text,
                        &format!("Subnetwork must be in region '{region}'."),
                    ));
                }
                path
            }
            None => {
                let network = nic["network"].as_str().unwrap_or("global/networks/default");
                let network_link = Value::from(link(&reference(project, network)));
                if !state.resources.contains_key(&reference(project, network)) {
                    return Err(ApiError::not_found(&reference(project, network)));
                }
                let prefix = format!("projects/{project}/regions/{region}/subnetworks/");
                let found: Vec<&String> = state
                    .resources
                    .iter()
                    .filter(|(k, r)| k.starts_with(&prefix) && r.value["network"] == network_link)
                    .map(|(k, _)| k)
                    .collect();
                match found.as_slice() {
                    [one] => (*one).clone(),
                    _ => {
                        return Err(ApiError::invalid(
                            &format!("{field}.subnetwork"),
                            "",
                            "Subnetwork should be specified for custom subnetmode network.",
                        ));
                    }
                }
            }
        };
        let subnetwork = state.get(&subnetwork_path)?.value.clone();
        let network_link = subnetwork["network"].clone();
        if let Some(network) = nic["network"].as_str()
            && link(&reference(project, network)) != network_link
        {
            return Err(ApiError::invalid(
                &format!("{field}.network"),
                network,
                "The subnetwork is not in this network.",
            ));
        }
        let range = subnetwork["ipCidrRange"]
            .as_str()
            .and_then(parse_cidr)
            .ok_or_else(|| ApiError::not_found(&subnetwork_path))?;
        let taken = addresses(state, &subnetwork["selfLink"]);
        let address = match nic["networkIP"].as_str() {
            Some(text) => {
                let address: Ipv4Addr = text
                    .parse()
                    .map_err(|_| ApiError::invalid(&format!("{field}.networkIP"), text, "Must be an IPv4 address."))?;
                if !usable(range).contains(&u32::from(address)) {
                    return Err(ApiError::invalid(
                        &format!("{field}.networkIP"),
                        text,
                        &format!("The address is not in the usable range of subnetwork '{subnetwork_path}'."),
                    ));
                }
                if taken.contains(&address) {
                    return Err(ApiError::invalid(
                        &format!("{field}.networkIP"),
                        text,
                        "IP address is already being used by another resource.",
                    ));
                }
                address
            }
            None => usable(range).map(Ipv4Addr::from).find(|a| !taken.contains(a)).ok_or_else(|| {
                ApiError::new(400, "ipSpaceExhausted", format!("IP space of '{subnetwork_path}' is exhausted."))
            })?,
        };
        let mut configs = Vec::new();
        for config in nic["accessConfigs"].as_array().into_iter().flatten() {
            let mut config = config.clone();
            let nat = 203u32 << 24 | 113 << 8 | (state.id().bytes().map(u32::from).sum::<u32>() % 250 + 2);
            config["kind"] = Value::from("compute#accessConfig");
            config["type"] = Value::from(config["type"].as_str().unwrap_or("ONE_TO_ONE_NAT").to_string());
            config["name"] = Value::from(config["name"].as_str().unwrap_or("External NAT").to_string());
            config["networkTier"] = Value::from(config["networkTier"].as_str().unwrap_or("PREMIUM").to_string());
            if config["natIP"].is_null() {
                config["natIP"] = Value::from(Ipv4Addr::from(nat).to_string());
            }
            configs.push(config);
        }
        for (key, value) in [
            ("kind", Value::from("compute#networkInterface")),
            ("name", Value::from(format!("nic{i}"))),
            ("network", network_link),
            ("subnetwork", Value::from(link(&subnetwork_path))),
            ("networkIP", Value::from(address.to_string())),
            ("fingerprint", Value::from("42WmSpB8rSM=")),
            ("stackType", Value::from("IPV4_ONLY")),
        ] {
            nic[key] = value;
        }
        if !configs.is_empty() {
            nic["accessConfigs"] = Value::from(configs);
        }
        out.push(nic);
    }
    Ok(Value::from(out))
}

/// The addresses a range offers: all but the first two and the last two.
fn usable(range: crate::testhosts::Ipv4Cidr) -> std::ops::RangeInclusive<u32> {
    let first = u32::from(range.network);
    let size = 1u32 << (32 - u32::from(range.prefix_len));
    (first + 2)..=(first + size - 3)
}

fn addresses(state: &State, subnetwork: &Value) -> BTreeSet<Ipv4Addr> {
    state
        .resources
        .values()
        .flat_map(|r| r.value["networkInterfaces"].as_array().cloned().unwrap_or_default())
        .filter(|nic| nic["subnetwork"] == *subnetwork)
        .filter_map(|nic| nic["networkIP"].as_str().and_then(|a| a.parse().ok()))
        .collect()
}

/// The scheduling as Compute answers it; SPOT instances neither restart nor migrate.
fn scheduling(instance: &Value) -> Result<Value, ApiError> {
    let mut scheduling = instance.get("scheduling").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
    let spot = scheduling["provisioningModel"] == "SPOT" || scheduling["preemptible"] == true;
    if spot && scheduling["automaticRestart"] == true {
        return Err(ApiError::invalid(
            "resource.scheduling.automaticRestart",
            "true",
            "Spot and preemptible instances cannot be automatically restarted.",
        ));
    }
    if spot && scheduling["onHostMaintenance"] == "MIGRATE" {
        return Err(ApiError::invalid(
            "resource.scheduling.onHostMaintenance",
            "MIGRATE",
            "Spot and preemptible instances must terminate on host maintenance.",
        ));
    }
    let defaults = [
        ("provisioningModel", Value::from("STANDARD")),
        ("automaticRestart", Value::from(!spot)),
        ("onHostMaintenance", Value::from(if spot { "TERMINATE" } else { "MIGRATE" })),
        ("preemptible", Value::from(false)),
    ];
    for (key, value) in defaults {
        if scheduling[key].is_null() {
            scheduling[key] = value;
        }
    }
    Ok(scheduling)
}

/// instances.get.
pub fn get(api: &Api, call: &Call) -> Result<Value, ApiError> {
    zone_of(call)?;
    resources::get(api, &path(call, call.param("instance")))
}

/// instances.list.
pub fn list(api: &Api, call: &Call) -> Result<Value, ApiError> {
    zone_of(call)?;
    resources::list(&api.lock(), call, &path(call, ""), "compute#instanceList")
}

/// instances.aggregatedList: every zone's instances, the empty zones with a warning.
pub fn aggregated_list(api: &Api, call: &Call) -> Result<Value, ApiError> {
    let project = call.param("project");
    let state = api.lock();
    let mut all = Vec::new();
    for zone in catalog::REGIONS.iter().flat_map(|(_, zones)| zones.iter()) {
        for instance in state.collection(&format!("projects/{project}/zones/{zone}/instances/")) {
            all.push((zone, instance));
        }
    }
    drop(state);
    let filter = call.param("filter");
    let all: Vec<(&&str, Value)> = if filter.trim().is_empty() {
        all
    } else {
        let parsed = filter::parse(filter)?;
        all.into_iter().filter(|(_, i)| parsed.matches(i)).collect()
    };
    let (start, end, next) = window(all.len(), call.param("maxResults"), call.param("pageToken"))?;
    let mut items = serde_json::Map::new();
    for zone in catalog::REGIONS.iter().flat_map(|(_, zones)| zones.iter()) {
        let scope = format!("zones/{zone}");
        let here: Vec<Value> = all[start..end].iter().filter(|(z, _)| *z == zone).map(|(_, i)| i.clone()).collect();
        let entry = if here.is_empty() {
            json!({"warning": {
                "code": "NO_RESULTS_ON_PAGE",
                "message": format!("There are no results for scope '{scope}' on this page."),
                "data": [{"key": "scope", "value": scope}],
            }})
        } else {
            json!({"instances": here})
        };
        items.insert(scope, entry);
    }
    let id = format!("projects/{project}/aggregated/instances");
    let mut answer = json!({"kind": "compute#instanceAggregatedList", "id": id, "items": items, "selfLink": link(&id)});
    if let Some(next) = next {
        answer["nextPageToken"] = Value::from(next);
    }
    Ok(answer)
}

/// instances.delete.
pub fn delete(api: &Arc<Api>, call: &Call) -> Result<Value, ApiError> {
    let mut state = begin!(api, call);
    zone_of(call)?;
    let path = path(call, call.param("instance"));
    let scope = format!("zones/{}", call.param("zone"));
    resources::mutate(api, &mut state, call, scope, path.clone(), "delete", Effect::DeleteInstance(path))
}

/// instances.start (a running instance stays running).
pub fn start(api: &Arc<Api>, call: &Call) -> Result<Value, ApiError> {
    let mut state = begin!(api, call);
    zone_of(call)?;
    let path = path(call, call.param("instance"));
    let scope = format!("zones/{}", call.param("zone"));
    resources::mutate(api, &mut state, call, scope, path.clone(), "start", Effect::StartInstance(path))
}

/// instances.stop (a stopped instance stays stopped).
pub fn stop(api: &Arc<Api>, call: &Call) -> Result<Value, ApiError> {
    let mut state = begin!(api, call);
    zone_of(call)?;
    let path = path(call, call.param("instance"));
    let scope = format!("zones/{}", call.param("zone"));
    resources::mutate(api, &mut state, call, scope, path.clone(), "stop", Effect::StopInstance(path))
}

fn set_status(state: &mut State, path: &str, from: &[&str], to: &str) -> bool {
    let Some(instance) = state.resources.get_mut(path) else { return false };
    let status = instance.value["status"].as_str().unwrap_or_default();
    if !from.contains(&status) {
        return false;
    }
    instance.value["status"] = Value::from(to);
    true
}

/// What an instance operation does when it starts running.
pub fn on_running(state: &mut State, effect: &Effect) {
    let (path, from, to): (&String, &[&str], &str) = match effect {
        Effect::InsertInstance(path) => (path, &["PROVISIONING"], "STAGING"),
        Effect::DeleteInstance(path) | Effect::StopInstance(path) => {
            (path, &["PROVISIONING", "STAGING", "RUNNING"], "STOPPING")
        }
        Effect::StartInstance(path) => (path, &["TERMINATED"], "STAGING"),
        _ => return,
    };
    set_status(state, path, from, to);
}

/// What an instance operation does when it is done.
pub fn on_done(api: &Api, state: &mut State, effect: &Effect) {
    match effect {
        Effect::InsertInstance(path) | Effect::StartInstance(path) => {
            if set_status(state, path, &["PROVISIONING", "STAGING"], "RUNNING")
                && let Some(instance) = state.resources.get_mut(path)
            {
                instance.value["lastStartTimestamp"] = Value::from(now());
                instance.value["cpuPlatform"] = Value::from("Intel Cascade Lake");
                if let Some(action) = host_up(path, &instance.value) {
                    api.host(action);
                }
            }
        }
        Effect::StopInstance(path) => {
            if set_status(state, path, &["STOPPING"], "TERMINATED")
                && let Some(instance) = state.resources.get_mut(path)
            {
                instance.value["lastStopTimestamp"] = Value::from(now());
                api.host(HostAction::Stop { key: path.clone() });
            }
        }
        Effect::DeleteInstance(path) => {
            state.resources.remove(path);
            api.host(HostAction::Remove { key: path.clone() });
        }
        _ => {}
    }
}

/// The host of a running instance: its first interface's address, its `ssh-keys` (each
/// `user:key` line's key, for root) and its `startup-script`.
fn host_up(path: &str, instance: &Value) -> Option<HostAction> {
    let address = instance["networkInterfaces"][0]["networkIP"].as_str()?.parse().ok()?;
    let item = |key: &str| {
        instance["metadata"]["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["key"] == key))
            .and_then(|i| i["value"].as_str())
            .map(String::from)
    };
    let authorized_keys = item("ssh-keys")
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(':') {
            Some((user, key)) if !user.contains(' ') => key.trim().to_string(),
            _ => l.to_string(),
        })
        .map(|l| format!("{l}\n"))
        .collect();
    Some(HostAction::Up {
        key: path.to_string(),
        name: instance["name"].as_str()?.to_string(),
        id: instance["id"].as_str()?.to_string(),
        zone: last(instance["zone"].as_str()?).to_string(),
        address,
        authorized_keys,
        startup_script: item("startup-script").map(String::into_bytes),
    })
}
