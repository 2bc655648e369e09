//! The emulator's memory: every resource (keyed by its id in lower case, as ARM ids are
//! case-insensitive), every async operation, the injected faults, and the clock that moves
//! pending work along ([`World::tick`]). Pure data and decisions; the HTTP edge is
//! [`super::server`], the test hosts are [`super::hosts`].

use super::error::ArmError;
use super::faults::Faults;
use super::hosts::HostCommand;
use super::spec::Namespace;
use crate::testhosts::Ipv4Cidr;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

/// The kinds of resource the lab keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    Group,
    VirtualNetwork,
    Subnet,
    NetworkSecurityGroup,
    PublicIp,
    NetworkInterface,
    VirtualMachine,
    /// A VM's managed OS disk (listed by [`super::AzureLab::resources`]; not served).
    Disk,
}

impl Kind {
    /// The ARM type, e.g. `Microsoft.Compute/virtualMachines`.
    pub(super) fn type_name(self) -> &'static str {
        match self {
            Kind::Group => "Microsoft.Resources/resourceGroups",
            Kind::VirtualNetwork => "Microsoft.Network/virtualNetworks",
            Kind::Subnet => "Microsoft.Network/virtualNetworks/subnets",
            Kind::NetworkSecurityGroup => "Microsoft.Network/networkSecurityGroups",
            Kind::PublicIp => "Microsoft.Network/publicIPAddresses",
            Kind::NetworkInterface => "Microsoft.Network/networkInterfaces",
            Kind::VirtualMachine => "Microsoft.Compute/virtualMachines",
            Kind::Disk => "Microsoft.Compute/disks",
        }
    }
}

/// `properties.provisioningState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Provisioning {
    Creating,
    Updating,
    Succeeded,
    Deleting,
    Failed,
}

impl Provisioning {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Provisioning::Creating => "Creating",
            Provisioning::Updating => "Updating",
            Provisioning::Succeeded => "Succeeded",
            Provisioning::Deleting => "Deleting",
            Provisioning::Failed => "Failed",
        }
    }
}

/// A VM's power state (`PowerState/<code>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Power {
    Starting,
    Running,
    Stopping,
    Stopped,
    Deallocating,
    Deallocated,
}

impl Power {
    pub(super) fn code(self) -> &'static str {
        match self {
            Power::Starting => "starting",
            Power::Running => "running",
            Power::Stopping => "stopping",
            Power::Stopped => "stopped",
            Power::Deallocating => "deallocating",
            Power::Deallocated => "deallocated",
        }
    }

    pub(super) fn display(self) -> &'static str {
        match self {
            Power::Starting => "VM starting",
            Power::Running => "VM running",
            Power::Stopping => "VM stopping",
            Power::Stopped => "VM stopped",
            Power::Deallocating => "VM deallocating",
            Power::Deallocated => "VM deallocated",
        }
    }
}

/// What happens when a resource's pending work is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    /// A PUT finishes (Creating/Updating → Succeeded, or the VM's allocation fails).
    Provision,
    /// A DELETE finishes: the resource (and what goes with it) is removed.
    Delete,
    /// A VM power action finishes in this state.
    Power(Power),
}

/// Work in progress on a resource.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub due: Instant,
    pub op: String,
    pub what: Due,
}

/// One resource.
#[derive(Debug, Clone)]
pub(super) struct Resource {
    /// The id as first written (ARM keeps the casing of the create).
    pub id: String,
    pub kind: Kind,
    pub subscription: String,
    pub group: String,
    pub name: String,
    pub location: String,
    /// What the client gave (the PUT body), plus what the lab filled in under `properties`.
    pub body: Value,
    pub state: Provisioning,
    pub pending: Option<Pending>,
    /// For a VM: its power state.
    pub power: Option<Power>,
    /// The op a VM's host is awaited for (create or start), completed by [`World::host_ready`].
    pub awaiting_host: Option<String>,
    /// A GUID made at create (a VM's vmId, a resource's resourceGuid).
    pub guid: String,
    pub created: String,
    pub etag: u64,
}

impl Resource {
    /// `properties` of the body (an empty object when absent).
    pub(super) fn properties(&self) -> &Value {
        self.body.get("properties").unwrap_or(&Value::Null)
    }
}

/// The status of an async operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpStatus {
    InProgress,
    Succeeded,
    Failed,
}

/// An async operation (what `Azure-AsyncOperation` and `Location` point at).
#[derive(Debug, Clone)]
pub(super) struct Operation {
    pub id: String,
    pub namespace: Namespace,
    pub status: OpStatus,
    pub error: Option<ArmError>,
    pub start: String,
    pub end: Option<String>,
    /// Whether its result (the `Location` URL) answers 204 (a delete) or 200.
    pub delete: bool,
}

/// The whole emulated cloud.
#[derive(Debug)]
pub(super) struct World {
    pub resources: BTreeMap<String, Resource>,
    pub operations: BTreeMap<String, Operation>,
    pub faults: Faults,
    pub delay: Duration,
    /// `http://127.0.0.1:PORT`, for the URLs of async operations.
    pub base_url: String,
    pub cidr: Ipv4Cidr,
    /// Whether VMs get test hosts (off: VM operations finish without waiting for one).
    pub hosts: bool,
    /// Commands for the host worker, sent by the server after each request or tick.
    pub commands: Vec<HostCommand>,
    counter: u64,
    seed: u64,
}

impl World {
    pub(super) fn new(delay: Duration, cidr: Ipv4Cidr, hosts: bool) -> World {
        let seed = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
            ^ u64::from(std::process::id());
        World {
            resources: BTreeMap::new(),
            operations: BTreeMap::new(),
            faults: Faults::default(),
            delay,
            base_url: String::new(),
            cidr,
            hosts,
            commands: Vec::new(),
            counter: 0,
            seed,
        }
    }

    /// A fresh GUID (unique within the lab, different from run to run).
    pub(super) fn guid(&mut self) -> String {
        self.counter += 1;
        let mix = self
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(self.counter.wrapping_mul(0xD1B5_4A32_D192_ED03));
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (mix >> 32) as u32,
            (mix >> 16) as u16,
            (mix & 0xfff) as u16,
            (self.counter >> 48) as u16 & 0xfff,
            self.counter & 0xffff_ffff_ffff
        )
    }

    pub(super) fn get(&self, id: &str) -> Option<&Resource> {
        self.resources.get(&id.to_lowercase())
    }

    /// The resource group `name` of `subscription`, if it exists.
    pub(super) fn group(&self, subscription: &str, name: &str) -> Option<&Resource> {
        self.get(&group_id(subscription, name))
    }

    /// The group a resource goes in: it must exist and not be being deleted.
    pub(super) fn live_group(&self, subscription: &str, name: &str) -> Result<&Resource, ArmError> {
        let group = self.group(subscription, name).ok_or_else(|| ArmError::group_not_found(name))?;
        if group.state == Provisioning::Deleting {
            return Err(ArmError::conflict(
                "ResourceGroupBeingDeleted",
                format!(
                    "The resource group '{}' is in deprovisioning state and cannot perform this operation.",
                    group.name
                ),
            ));
        }
        Ok(group)
    }

    /// Starts an async operation; answers its id.
    pub(super) fn start_operation(&mut self, namespace: Namespace, delete: bool) -> String {
        let id = self.guid();
        let op = Operation {
            id: id.clone(),
            namespace,
            status: OpStatus::InProgress,
            error: None,
            start: now_rfc3339(),
            end: None,
            delete,
        };
        self.operations.insert(id.clone(), op);
        id
    }

    /// Ends operation `id` (successfully when `error` is `None`).
    pub(super) fn finish_operation(&mut self, id: &str, error: Option<ArmError>) {
        if let Some(op) = self.operations.get_mut(id) {
            op.status = if error.is_some() { OpStatus::Failed } else { OpStatus::Succeeded };
            op.error = error;
            op.end = Some(now_rfc3339());
        }
    }

    /// The resources inside group `group` of `subscription` (not the group itself).
    pub(super) fn in_group(&self, subscription: &str, group: &str) -> Vec<String> {
        let prefix = format!("{}/", group_id(subscription, group).to_lowercase());
        self.resources.keys().filter(|k| k.starts_with(&prefix)).cloned().collect()
    }

    /// Moves every pending piece of work that is due along; see [`super::lifecycle`].
    pub(super) fn tick(&mut self, now: Instant) {
        let due: Vec<String> = self
            .resources
            .iter()
            .filter(|(_, r)| r.pending.as_ref().is_some_and(|p| p.due <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            super::lifecycle::advance(self, &key);
        }
    }

    /// A VM's host is up (or could not be made): the operation that waited for it ends.
    pub(super) fn host_ready(&mut self, vm_key: &str) {
        let Some(vm) = self.resources.get_mut(vm_key) else { return };
        let Some(op) = vm.awaiting_host.take() else { return };
        vm.state = Provisioning::Succeeded;
        vm.power = Some(Power::Running);
        self.finish_operation(&op, None);
    }
}

/// `/subscriptions/{s}/resourceGroups/{g}`.
pub(super) fn group_id(subscription: &str, group: &str) -> String {
    format!("/subscriptions/{subscription}/resourceGroups/{group}")
}

/// The id of a resource of `kind` named `name` in a group (a subnet's `name` is `vnet/subnet`).
pub(super) fn resource_id(subscription: &str, group: &str, kind: Kind, name: &str) -> String {
    let base = group_id(subscription, group);
    match kind {
        Kind::Group => base,
        Kind::Subnet => {
            let (vnet, subnet) = name.split_once('/').unwrap_or((name, ""));
            format!("{base}/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/{subnet}")
        }
        kind => format!("{base}/providers/{}/{name}", kind.type_name()),
    }
}

/// A parsed resource id from a request body: subscription, group, kind and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ParsedId {
    pub subscription: String,
    pub group: String,
    pub kind: Option<Kind>,
    pub name: String,
}

/// Parses a fully qualified resource id (`None` when it is not one).
pub(super) fn parse_id(id: &str) -> Option<ParsedId> {
    let parts: Vec<&str> = id.split('/').collect();
    if parts.first() != Some(&"") || parts.len() < 5 {
        return None;
    }
    if !parts[1].eq_ignore_ascii_case("subscriptions") || !parts[3].eq_ignore_ascii_case("resourceGroups") {
        return None;
    }
    let (subscription, group) = (parts[2].to_string(), parts[4].to_string());
    if subscription.is_empty() || group.is_empty() {
        return None;
    }
    let rest = &parts[5..];
    let (kind, name) = match rest {
        [] => (Some(Kind::Group), group.clone()),
        ["providers", ns, kind, name] | ["Providers", ns, kind, name] => {
            let type_name = format!("{ns}/{kind}");
            let kind = [
                Kind::VirtualNetwork,
                Kind::NetworkSecurityGroup,
                Kind::PublicIp,
                Kind::NetworkInterface,
                Kind::VirtualMachine,
                Kind::Disk,
            ]
            .into_iter()
            .find(|k| k.type_name().eq_ignore_ascii_case(&type_name));
            (kind, (*name).to_string())
        }
        [p, ns, vnets, vnet, subnets, subnet] if p.eq_ignore_ascii_case("providers") => {
            let is_subnet = ns.eq_ignore_ascii_case("Microsoft.Network")
                && vnets.eq_ignore_ascii_case("virtualNetworks")
                && subnets.eq_ignore_ascii_case("subnets");
            (is_subnet.then_some(Kind::Subnet), format!("{vnet}/{subnet}"))
        }
        _ => return None,
    };
    if name.is_empty() {
        return None;
    }
    Some(ParsedId { subscription, group, kind, name })
}

/// Now, as ARM writes times (`2024-07-01T12:00:00.0000000+00:00`).
pub(super) fn now_rfc3339() -> String {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:07}+00:00",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        now.subsec_nanos() / 100
    )
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// A resource's common envelope: id, name, type, location, tags, etag, and its properties with
/// `provisioningState`.
pub(super) fn envelope(resource: &Resource) -> Value {
    let mut out = resource.body.clone();
    if !out.is_object() {
        out = json!({});
    }
    let name = resource.name.rsplit('/').next().unwrap_or(&resource.name).to_string();
    out["id"] = json!(resource.id);
    out["name"] = json!(name);
    out["type"] = json!(resource.kind.type_name());
    if resource.kind != Kind::Subnet {
        out["location"] = json!(resource.location);
    }
    if resource.kind != Kind::VirtualMachine && resource.kind != Kind::Group {
        out["etag"] = json!(format!("W/\"{}-{}\"", resource.guid, resource.etag));
    }
    if !out.get("properties").is_some_and(Value::is_object) {
        out["properties"] = json!({});
    }
    out["properties"]["provisioningState"] = json!(resource.state.as_str());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_case_insensitively() {
        let id = "/subscriptions/s/resourceGroups/rg/providers/microsoft.network/virtualnetworks/v/subnets/a";
        let parsed = parse_id(id).expect("a subnet id");
        assert_eq!(parsed.kind, Some(Kind::Subnet));
        assert_eq!(parsed.name, "v/a");
        assert_eq!(parse_id("subnet-a"), None);
        let vm =
            parse_id("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/x").expect("vm");
        assert_eq!(vm.kind, Some(Kind::VirtualMachine));
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_905), (2024, 7, 1));
        assert!(now_rfc3339().ends_with("+00:00"));
    }

    #[test]
    fn guids_are_unique_guids() {
        let mut world = World::new(
            Duration::ZERO,
            Ipv4Cidr { network: std::net::Ipv4Addr::new(10, 77, 1, 0), prefix_len: 24 },
            false,
        );
        let (a, b) = (world.guid(), world.guid());
        assert_ne!(a, b);
        assert!(super::super::validate::is_guid(&a), "{a}");
    }
}
