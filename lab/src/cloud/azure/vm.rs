//! Virtual machines (Microsoft.Compute/virtualMachines): PUT (create or update; the lab's
//! sizes, images and zones; SSH keys, custom data, NICs, Spot), GET (with `$expand=instanceView`),
//! instanceView, DELETE, list, and the power actions start, powerOff and deallocate. A VM that
//! runs gets a test host through [`super::lifecycle`].

use super::error::ArmError;
use super::reply::{Reply, ZONES, async_headers, find, list, location_of, of_kind, same_location, store};
use super::state::{Due, Kind, Pending, Power, Provisioning, Resource, World, envelope, now_rfc3339, resource_id};
use super::validate::Matched;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::time::Instant;

/// The lab's VM sizes and their vCPUs.
pub(super) const SIZES: &[(&str, u32)] =
    &[("Standard_B1s", 1), ("Standard_B2s", 2), ("Standard_D2s_v5", 2), ("Standard_D4s_v5", 4)];

/// The lab's images: publisher, offer, sku.
pub(super) const IMAGES: &[(&str, &str, &str)] =
    &[("Debian", "debian-12", "12"), ("Debian", "debian-12", "12-gen2"), ("Canonical", "ubuntu-24_04-lts", "server")];

/// The size of every lab image's OS disk, in GB.
const IMAGE_DISK_GB: i64 = 30;

/// The properties that a PUT on an existing VM may not change.
const IMMUTABLE: &[&str] = &[
    "/properties/osProfile/computerName",
    "/properties/osProfile/adminUsername",
    "/properties/osProfile/customData",
    "/properties/storageProfile/imageReference/publisher",
    "/properties/storageProfile/imageReference/offer",
    "/properties/storageProfile/imageReference/sku",
    "/properties/priority",
    "/zones",
];

fn names(m: &Matched) -> (String, String, String) {
    let p = |k: &str| m.path.get(k).cloned().unwrap_or_default();
    (p("subscriptionId"), p("resourceGroupName"), p("vmName"))
}

/// The instance view: the provisioning and power states as `statuses`.
fn instance_view(vm: &Resource) -> Value {
    let time = now_rfc3339();
    let mut statuses = vec![match vm.state {
        Provisioning::Failed => json!({
            "code": "ProvisioningState/failed",
            "level": "Error",
            "displayStatus": "Provisioning failed",
            "time": time,
        }),
        state => json!({
            "code": format!("ProvisioningState/{}", state.as_str().to_lowercase()),
            "level": "Info",
            "displayStatus": if state == Provisioning::Succeeded { "Provisioning succeeded".to_string() } else { state.as_str().to_string() },
            "time": time,
        }),
    }];
    if let Some(power) = vm.power {
        statuses.push(
            json!({"code": format!("PowerState/{}", power.code()), "level": "Info", "displayStatus": power.display()}),
        );
    }
    let os = vm.properties().get("osProfile");
    json!({
        "computerName": os.and_then(|o| o.get("computerName")).cloned().unwrap_or(Value::Null),
        "osName": vm.properties().pointer("/storageProfile/imageReference/offer").cloned().unwrap_or(Value::Null),
        "hyperVGeneration": "V2",
        "statuses": statuses,
    })
}

fn render_with(vm: &Resource, expand: bool) -> Value {
    let mut out = envelope(vm);
    if let Some(os) = out.pointer_mut("/properties/osProfile").and_then(Value::as_object_mut) {
        os.remove("adminPassword");
        os.remove("customData");
    }
    out["properties"]["vmId"] = json!(vm.guid);
    out["properties"]["timeCreated"] = json!(vm.created);
    if expand {
        out["properties"]["instanceView"] = instance_view(vm);
    }
    out
}

fn render(_: &World, vm: &Resource) -> Value {
    render_with(vm, false)
}

/// Checks a VM body's semantics the way Compute does (sizes, zones, image, OS profile, NICs).
fn check(world: &World, m: &Matched, id: &str, name: &str, existing: Option<&Resource>) -> Result<(), ArmError> {
    let body = &m.body;
    let props = body.get("properties").cloned().unwrap_or(Value::Null);
    let text = |p: &str| props.pointer(p).and_then(Value::as_str).map(String::from);
    let size = text("/hardwareProfile/vmSize").unwrap_or_default();
    if !SIZES.iter().any(|(s, _)| s.eq_ignore_ascii_case(&size)) {
        let all: Vec<&str> = SIZES.iter().map(|(s, _)| *s).collect();
        return Err(ArmError::invalid_parameter(
            "vmSize",
            format!(
                "The requested VM size '{size}' is not available in the current region. The sizes available in the \
                 current region are: {}. Find out more on the available VM sizes in each region at \
                 https://aka.ms/azure-regions.",
                all.join(",")
            ),
        ));
    }
    if let Some(zones) = body.get("zones").and_then(Value::as_array) {
        let valid = zones.len() == 1 && zones[0].as_str().is_some_and(|z| ZONES.contains(&z));
        if !valid {
            return Err(ArmError::invalid_parameter(
                "zones",
                format!(
                    "The zones {} are not valid: name one of {} for this location.",
                    Value::Array(zones.clone()),
                    ZONES.join(", ")
                ),
            ));
        }
    }
    if let Some(priority) = text("/priority")
        && priority.eq_ignore_ascii_case("Spot")
        && let Some(policy) = text("/evictionPolicy")
        && !["Deallocate", "Delete"].iter().any(|p| p.eq_ignore_ascii_case(&policy))
    {
        return Err(ArmError::invalid_parameter(
            "evictionPolicy",
            format!("The eviction policy '{policy}' is not valid for Spot VMs."),
        ));
    }
    let creating = existing.is_none();
    let required = |path: &str, target: &str| -> Result<(), ArmError> {
        if props.pointer(path).is_none_or(Value::is_null) {
            return Err(ArmError::invalid_parameter(
                target,
                format!("Required parameter '{target}' is missing (null)."),
            ));
        }
        Ok(())
    };
    if creating {
        required("/storageProfile/imageReference", "imageReference")?;
        required("/osProfile", "osProfile")?;
        required("/osProfile/computerName", "osProfile.computerName")?;
        required("/osProfile/adminUsername", "osProfile.adminUsername")?;
        required("/networkProfile/networkInterfaces", "networkProfile.networkInterfaces")?;
    }
    if let Some(image) = props.pointer("/storageProfile/imageReference") {
        let part = |k: &str| image.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let (publisher, offer, sku, version) = (part("publisher"), part("offer"), part("sku"), part("version"));
        let known = IMAGES.iter().any(|(p, o, s)| {
            p.eq_ignore_ascii_case(&publisher) && o.eq_ignore_ascii_case(&offer) && s.eq_ignore_ascii_case(&sku)
        });
        let version_ok = version.eq_ignore_ascii_case("latest")
            || (!version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.'));
        if !known || !version_ok {
            return Err(ArmError::new(
                StatusCode::NOT_FOUND,
                "PlatformImageNotFound",
                format!(
                    "The platform image '{publisher}:{offer}:{sku}:{version}' is not available. Verify that all fields \
                     in the storage profile are correct. For more details about storage profile information, please \
                     refer to https://aka.ms/storageprofile"
                ),
            )
            .with_target("imageReference"));
        }
    }
    if let Some(option) = text("/storageProfile/osDisk/createOption")
        && !option.eq_ignore_ascii_case("FromImage")
    {
        return Err(ArmError::invalid_parameter(
            "osDisk.createOption",
            format!(
                "The lab creates OS disks from images only: createOption '{option}' is not supported here; use FromImage."
            ),
        ));
    }
    if let Some(gb) = props.pointer("/storageProfile/osDisk/diskSizeGB").and_then(Value::as_i64)
        && gb < IMAGE_DISK_GB
    {
        return Err(ArmError::invalid_parameter(
            "osDisk.diskSizeGB",
            format!(
                "The specified disk size {gb} GB is smaller than the size of the corresponding disk in the VM image: \
                 {IMAGE_DISK_GB} GB. This is not allowed. Please choose equal or greater size or do not specify an \
                 explicit size."
            ),
        ));
    }
    if let Some(os) = props.get("osProfile") {
        check_os(os)?;
    }
    if let Some(nics) = props.pointer("/networkProfile/networkInterfaces").and_then(Value::as_array) {
        if nics.is_empty() {
            return Err(ArmError::invalid_parameter(
                "networkProfile.networkInterfaces",
                format!("Virtual machine {name} must have at least one network interface."),
            ));
        }
        let primaries =
            nics.iter().filter(|n| n.pointer("/properties/primary").and_then(Value::as_bool) == Some(true)).count();
        if nics.len() > 1 && primaries != 1 {
            return Err(ArmError::invalid_parameter(
                "networkProfile.networkInterfaces",
                format!("Virtual machine {name} must have one network interface set as the primary."),
            ));
        }
        let location = location_of(body, Kind::VirtualMachine)?;
        for (i, nic) in nics.iter().enumerate() {
            let target = format!("networkProfile.networkInterfaces[{i}].id");
            let nic_id = nic.get("id").and_then(Value::as_str).unwrap_or_default();
            let parsed = super::state::parse_id(nic_id).filter(|p| p.kind == Some(Kind::NetworkInterface));
            if parsed.is_none() {
                return Err(ArmError::linked_invalid_id(nic_id, &format!("properties.{target}")));
            }
            let Some(found) = world.get(nic_id).filter(|n| n.state != Provisioning::Deleting) else {
                return Err(ArmError::invalid_parameter(
                    &target,
                    format!("Resource {nic_id} referenced by virtual machine {id} was not found."),
                ));
            };
            if found.location != location {
                return Err(ArmError::invalid_parameter(
                    &target,
                    format!(
                        "Network interface {nic_id} is in location '{}', not in the VM's location '{location}'.",
                        found.location
                    ),
                ));
            }
            if let Some(user) = super::usage::nic_user(world, &nic_id.to_lowercase())
                && !user.eq_ignore_ascii_case(id)
            {
                return Err(ArmError::conflict("NicInUse", format!("Network interface {nic_id} is used by existing resource {user}: a NIC serves one virtual machine.")).with_target(target));
            }
        }
    }
    if let Some(old) = existing {
        for pointer in IMMUTABLE {
            let new = body.pointer(pointer);
            if new.is_some() && new != old.body.pointer(pointer) {
                let target = pointer.trim_start_matches("/properties/").trim_start_matches('/').replace('/', ".");
                return Err(ArmError::conflict(
                    "PropertyChangeNotAllowed",
                    format!("Changing property '{target}' is not allowed."),
                )
                .with_target(target));
            }
        }
    }
    Ok(())
}

/// The OS profile's rules: SSH keys at the default path, a password where keys are off, custom
/// data in base64.
fn check_os(os: &Value) -> Result<(), ArmError> {
    let user = os.get("adminUsername").and_then(Value::as_str).unwrap_or_default();
    if let Some(data) = os.get("customData").and_then(Value::as_str)
        && (data.len() > 87_380 || super::base64::decode(data).is_none())
    {
        return Err(ArmError::invalid_parameter(
            "customData",
            "Custom data in OSProfile must be in Base64 encoding and with a maximum length of 87380 characters.",
        ));
    }
    let linux = os.get("linuxConfiguration");
    let keys = linux.and_then(|l| l.pointer("/ssh/publicKeys")).and_then(Value::as_array).cloned().unwrap_or_default();
    let no_password =
        linux.and_then(|l| l.get("disablePasswordAuthentication")).and_then(Value::as_bool).unwrap_or(false);
    if no_password && keys.is_empty() {
        return Err(ArmError::invalid_parameter(
            "linuxConfiguration",
            "Authentication using either SSH or by user name and password must be enabled in Linux profile.",
        ));
    }
    if !no_password && os.get("adminPassword").and_then(Value::as_str).is_none() {
        return Err(ArmError::invalid_parameter(
            "adminPassword",
            "Required parameter 'adminPassword' is missing (null).",
        ));
    }
    let default_path = format!("/home/{user}/.ssh/authorized_keys");
    for key in &keys {
        let path = key.get("path").and_then(Value::as_str).unwrap_or_default();
        if path != default_path {
            return Err(ArmError::invalid_parameter(
                "linuxConfiguration.ssh.publicKeys.path",
                format!(
                    "Destination path for SSH public keys is currently limited to its default value {default_path} due to a known issue in Linux provisioning agent."
                ),
            ));
        }
        let data = key.get("keyData").and_then(Value::as_str).unwrap_or_default().trim();
        if !(data.starts_with("ssh-rsa ") || data.starts_with("ssh-ed25519 ")) {
            return Err(ArmError::invalid_parameter(
                "linuxConfiguration.ssh.publicKeys.keyData",
                "The value of parameter linuxConfiguration.ssh.publicKeys.keyData is invalid.",
            ));
        }
    }
    Ok(())
}

/// `VirtualMachines_CreateOrUpdate`.
pub(super) fn put(world: &mut World, m: &Matched) -> Result<Reply, ArmError> {
    let (subscription, group, name) = names(m);
    world.live_group(&subscription, &group)?;
    let location = location_of(&m.body, Kind::VirtualMachine)?;
    let id = resource_id(&subscription, &group, Kind::VirtualMachine, &name);
    let existing = world.get(&id).cloned();
    if let Some(old) = &existing {
        same_location(old, &location)?;
        if old.state == Provisioning::Deleting {
            return Err(ArmError::conflict(
                "OperationNotAllowed",
                format!(
                    "Operation 'PUT' is not allowed on VM '{name}' since the VM is marked for deletion. You can only retry the Delete operation (or wait for an ongoing one to complete)."
                ),
            ));
        }
    }
    check(world, m, &id, &name, existing.as_ref())?;
    let size =
        m.body.pointer("/properties/hardwareProfile/vmSize").and_then(Value::as_str).unwrap_or_default().to_string();
    if existing.is_none()
        && let Some(error) = world.faults.take_quota(&size, &location)
    {
        return Err(error);
    }
    let mut body = m.body.clone();
    if let Some(object) = body.as_object_mut() {
        for k in ["id", "name", "type", "resources", "etag"] {
            object.remove(k);
        }
        object.insert("location".into(), json!(location));
    }
    let props = &mut body["properties"];
    if let Some(object) = props.as_object_mut() {
        for k in ["provisioningState", "instanceView", "vmId", "timeCreated"] {
            object.remove(k);
        }
    }
    let disk = match existing.as_ref().and_then(|e| e.properties().pointer("/storageProfile/osDisk").cloned()) {
        Some(disk) => disk,
        None => {
            let guid = world.guid().replace('-', "");
            let given = props.pointer("/storageProfile/osDisk/name").and_then(Value::as_str).map(String::from);
            let disk_name = given.unwrap_or_else(|| format!("{name}_OsDisk_1_{guid}"));
            let disk_id = resource_id(&subscription, &group, Kind::Disk, &disk_name);
            let mut disk =
                super::reply::new_resource(m, Kind::Disk, &group, &disk_name, &location, json!({"properties": {}}));
            disk.state = Provisioning::Succeeded;
            disk.guid = guid;
            world.resources.insert(disk_id.to_lowercase(), disk);
            let asked = props.pointer("/storageProfile/osDisk").cloned().unwrap_or_else(|| json!({}));
            let mut disk = json!({
                "osType": "Linux",
                "name": disk_name,
                "createOption": "FromImage",
                "caching": "ReadWrite",
                "managedDisk": {"storageAccountType": "Premium_LRS", "id": disk_id},
                "deleteOption": "Detach",
                "diskSizeGB": IMAGE_DISK_GB,
            });
            for (k, v) in asked.as_object().into_iter().flatten() {
                if k == "managedDisk" {
                    if let Some(kind) = v.get("storageAccountType") {
                        disk["managedDisk"]["storageAccountType"] = kind.clone();
                    }
                } else {
                    disk[k] = v.clone();
                }
            }
            disk
        }
    };
    props["storageProfile"]["osDisk"] = disk;
    if props.pointer("/storageProfile/imageReference").is_none()
        && let Some(old) =
            existing.as_ref().and_then(|e| e.properties().pointer("/storageProfile/imageReference").cloned())
    {
        props["storageProfile"]["imageReference"] = old;
    }
    if let Some(image) = props.pointer_mut("/storageProfile/imageReference") {
        image["exactVersion"] = json!("0.20240701.1770");
    }
    if existing.is_none()
        && let Some(os) = props.get_mut("osProfile")
    {
        os["linuxConfiguration"]["provisionVMAgent"] = json!(true);
        os["allowExtensionOperations"] = json!(true);
    }
    if let Some(old) = &existing
        && props.get("osProfile").is_none()
        && let Some(os) = old.properties().get("osProfile")
    {
        props["osProfile"] = os.clone();
    }
    let mut resource = super::reply::new_resource(m, Kind::VirtualMachine, &group, &name, &location, body);
    if existing.is_none() {
        resource.power = Some(Power::Starting);
    }
    Ok(store(world, m, resource, render))
}

/// `VirtualMachines_Get` (with `$expand=instanceView`).
pub(super) fn get(world: &World, m: &Matched) -> Result<Reply, ArmError> {
    let vm = find(world, m, Kind::VirtualMachine, "vmName")?;
    let expand = m.query.get("$expand").is_some_and(|e| e.eq_ignore_ascii_case("instanceView"));
    Ok(Reply::json(StatusCode::OK, render_with(vm, expand)))
}

/// `VirtualMachines_InstanceView`.
pub(super) fn view(world: &World, m: &Matched) -> Result<Reply, ArmError> {
    let vm = find(world, m, Kind::VirtualMachine, "vmName")?;
    Ok(Reply::json(StatusCode::OK, instance_view(vm)))
}

/// `VirtualMachines_List` / `VirtualMachines_ListAll`.
pub(super) fn list_some(world: &World, m: &Matched) -> Result<Reply, ArmError> {
    if let Some(group) = m.path.get("resourceGroupName") {
        let subscription = m.path.get("subscriptionId").cloned().unwrap_or_default();
        world.group(&subscription, group).ok_or_else(|| ArmError::group_not_found(group))?;
    }
    let expand = m.query.get("$expand").is_some_and(|e| e.eq_ignore_ascii_case("instanceView"))
        || m.query.get("statusOnly").is_some_and(|s| s.eq_ignore_ascii_case("true"));
    Ok(list(of_kind(world, m, Kind::VirtualMachine).into_iter().map(|vm| render_with(vm, expand)).collect()))
}

/// `VirtualMachines_Delete` (`forceDeletion` accepted): 202, then the VM, its host, and the NICs
/// and disk whose `deleteOption` is `Delete` go.
pub(super) fn delete(world: &mut World, m: &Matched) -> Result<Reply, ArmError> {
    let key = match find(world, m, Kind::VirtualMachine, "vmName") {
        Ok(vm) => vm.id.to_lowercase(),
        Err(e) if e.code == "ResourceNotFound" => return Ok(Reply::empty(StatusCode::NO_CONTENT)),
        Err(e) => return Err(e),
    };
    if let Some(vm) = world.resources.get_mut(&key) {
        vm.awaiting_host = None;
    }
    Ok(super::reply::deleting(world, m, &key))
}

/// `VirtualMachines_Start`, `_PowerOff`, `_Deallocate`: 202 and an operation that ends with
/// the VM (and its host) in the new power state.
pub(super) fn power(world: &mut World, m: &Matched, action: &str) -> Result<Reply, ArmError> {
    let (moving, target) = match action {
        "start" => (Power::Starting, Power::Running),
        "powerOff" => (Power::Stopping, Power::Stopped),
        _ => (Power::Deallocating, Power::Deallocated),
    };
    let vm = find(world, m, Kind::VirtualMachine, "vmName")?;
    let key = vm.id.to_lowercase();
    if vm.pending.is_some() || vm.awaiting_host.is_some() || vm.state == Provisioning::Deleting {
        return Err(ArmError::conflict(
            "OperationNotAllowed",
            format!(
                "Operation '{action}' is not allowed on VM '{}' since the VM is {} (another operation is in progress).",
                vm.name,
                vm.state.as_str().to_lowercase()
            ),
        ));
    }
    let location = vm.location.clone();
    let op = world.start_operation(m.namespace, false);
    let due = Instant::now() + world.delay;
    if let Some(vm) = world.resources.get_mut(&key) {
        vm.power = Some(moving);
        if vm.state == Provisioning::Failed && target == Power::Running {
            vm.state = Provisioning::Updating;
        }
        vm.pending = Some(Pending { due, op: op.clone(), what: Due::Power(target) });
    }
    Ok(Reply::empty(StatusCode::ACCEPTED).with_headers(async_headers(world, m, &location, &op)))
}
