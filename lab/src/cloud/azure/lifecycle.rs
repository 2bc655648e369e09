//! What happens when a resource's pending work is due: a PUT's resource becomes `Succeeded`
//! (or, for a VM with an injected allocation fault, `Failed`), a DELETE removes the resource and
//! what goes with it, a power action settles. VMs that run on the lab network get host
//! commands for [`super::hosts`]; their operation ends when the host is up
//! ([`World::host_ready`]).

use super::hosts::HostCommand;
use super::state::{Due, Kind, Power, Provisioning, World};
use serde_json::Value;
use std::net::Ipv4Addr;

/// Carries out the due work of resource `key` (see the module docs).
pub(super) fn advance(world: &mut World, key: &str) {
    let Some(resource) = world.resources.get_mut(key) else { return };
    let Some(pending) = resource.pending.take() else { return };
    match pending.what {
        Due::Provision => {
            if resource.kind == Kind::VirtualMachine && resource.state == Provisioning::Creating {
                let size = resource
                    .properties()
                    .pointer("/hardwareProfile/vmSize")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let zone = resource.body.pointer("/zones/0").and_then(Value::as_str).map(String::from);
                let location = resource.location.clone();
                if let Some(error) = world.faults.take_allocation(&size, &location, zone.as_deref()) {
                    if let Some(vm) = world.resources.get_mut(key) {
                        vm.state = Provisioning::Failed;
                        vm.power = Some(Power::Deallocated);
                    }
                    world.finish_operation(&pending.op, Some(error));
                    return;
                }
                power_on(world, key, &pending.op);
                return;
            }
            resource.state = Provisioning::Succeeded;
            world.finish_operation(&pending.op, None);
        }
        Due::Delete => {
            remove(world, key);
            world.finish_operation(&pending.op, None);
        }
        Due::Power(Power::Running) => power_on(world, key, &pending.op),
        Due::Power(power) => {
            resource.power = Some(power);
            if world.hosts {
                world.commands.push(HostCommand::Stop { vm: key.to_string() });
            }
            world.finish_operation(&pending.op, None);
        }
    }
}

/// A VM (created or started) runs: it gets its host, and `op` ends when the host is up.
fn power_on(world: &mut World, key: &str, op: &str) {
    let command = if world.hosts { host_for(world, key) } else { None };
    let Some(vm) = world.resources.get_mut(key) else { return };
    match command {
        Some(command) => {
            vm.awaiting_host = Some(op.to_string());
            world.commands.push(command);
        }
        None => {
            vm.state = Provisioning::Succeeded;
            vm.power = Some(Power::Running);
            world.finish_operation(op, None);
        }
    }
}

/// The host command that makes VM `key` run on the lab network, when its primary NIC's private
/// address lies inside it.
fn host_for(world: &World, key: &str) -> Option<HostCommand> {
    let vm = world.resources.get(key)?;
    let address = vm_address(world, key)?;
    if !world.cidr.contains(address) {
        tracing::info!(vm = %vm.name, %address, cidr = %world.cidr, "VM outside the lab network: it gets no host.");
        return None;
    }
    let os = vm.properties().get("osProfile");
    let keys: Vec<String> = os
        .and_then(|o| o.pointer("/linuxConfiguration/ssh/publicKeys"))
        .and_then(Value::as_array)
        .map(|keys| keys.iter().filter_map(|k| k.get("keyData")?.as_str()).map(|k| k.trim().to_string()).collect())
        .unwrap_or_default();
    let custom_data = os.and_then(|o| o.get("customData")).and_then(Value::as_str).and_then(super::base64::decode);
    Some(HostCommand::Create {
        vm: key.to_string(),
        group: vm.group.clone(),
        name: vm.name.clone(),
        address,
        authorized_keys: keys.join("\n"),
        admin_user: os.and_then(|o| o.get("adminUsername")).and_then(Value::as_str).unwrap_or_default().to_string(),
        custom_data,
    })
}

/// The private address of VM `key`'s primary NIC's primary IP configuration.
pub(super) fn vm_address(world: &World, key: &str) -> Option<Ipv4Addr> {
    let vm = world.resources.get(key)?;
    let nics = vm.properties().pointer("/networkProfile/networkInterfaces")?.as_array()?;
    let primary = nics
        .iter()
        .find(|n| n.pointer("/properties/primary").and_then(Value::as_bool) == Some(true))
        .or_else(|| nics.first())?;
    let nic = world.get(primary.get("id")?.as_str()?)?;
    let configs = nic.properties().get("ipConfigurations")?.as_array()?;
    let config = configs
        .iter()
        .find(|c| c.pointer("/properties/primary").and_then(Value::as_bool) == Some(true))
        .or_else(|| configs.first())?;
    config.pointer("/properties/privateIPAddress")?.as_str()?.parse().ok()
}

/// Removes resource `key` and what goes with it: a group's resources, a virtual network's
/// subnets, a VM's NICs and OS disk whose `deleteOption` is `Delete`, and a VM's host.
pub(super) fn remove(world: &mut World, key: &str) {
    let Some(resource) = world.resources.remove(key) else { return };
    match resource.kind {
        Kind::Group => {
            let inside = world.in_group(&resource.subscription, &resource.group);
            for child in inside {
                remove(world, &child);
            }
        }
        Kind::VirtualNetwork => {
            let prefix = format!("{key}/subnets/");
            let subnets: Vec<String> = world.resources.keys().filter(|k| k.starts_with(&prefix)).cloned().collect();
            for subnet in subnets {
                world.resources.remove(&subnet);
            }
        }
        Kind::VirtualMachine => {
            if world.hosts {
                world.commands.push(HostCommand::Remove { vm: key.to_string() });
            }
            let props = resource.properties();
            for nic in
                props.pointer("/networkProfile/networkInterfaces").and_then(Value::as_array).into_iter().flatten()
            {
                let delete = nic.pointer("/properties/deleteOption").and_then(Value::as_str) == Some("Delete");
                if let (true, Some(id)) = (delete, nic.get("id").and_then(Value::as_str)) {
                    remove(world, &id.to_lowercase());
                }
            }
            if props.pointer("/storageProfile/osDisk/deleteOption").and_then(Value::as_str) == Some("Delete")
                && let Some(disk) = props.pointer("/storageProfile/osDisk/managedDisk/id").and_then(Value::as_str)
            {
                world.resources.remove(&disk.to_lowercase());
            }
        }
        _ => {}
    }
}

/// Marks resource `key` as being deleted, finishing after the lab's delay; answers the op id.
pub(super) fn schedule_delete(world: &mut World, key: &str, namespace: super::spec::Namespace) -> String {
    let op = world.start_operation(namespace, true);
    let due = std::time::Instant::now() + world.delay;
    if let Some(resource) = world.resources.get_mut(key) {
        resource.state = Provisioning::Deleting;
        resource.pending = Some(super::state::Pending { due, op: op.clone(), what: Due::Delete });
    }
    op
}
