//! The cluster's virtual machines: per host a VM `<host>`, its NIC `<host>-nic` and (with
//! `connect_via = "public"`) a public IP `<host>-ip`, all in the cluster's resource group and
//! tagged; the request bodies, finding them, reading their state and addresses, and deleting
//! them (the VM first, waited, then what it leaves).

use crate::arm::{self, Arm};
use crate::error::{self, Failure};
use crate::network::{delete_patiently, model};
use crate::settings::MachineSpec;
use crate::tags::{self, Tags};
use futures_util::StreamExt;
use gantry_provision::cluster_file::ConnectVia;
use gantry_provision::provider::{HostDescription, HostState, ProviderError};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What a VM create needs permission for beside the writes its calls name: joining the NIC,
/// subnet, security group and public IP it links, and its OS disk (made with it, deleted with it).
pub const LINKED_ACTIONS: &[&str] = &[
    "Microsoft.Network/networkInterfaces/join/action",
    "Microsoft.Network/virtualNetworks/subnets/join/action",
    "Microsoft.Network/networkSecurityGroups/join/action",
    "Microsoft.Network/publicIPAddresses/join/action",
    "Microsoft.Compute/disks/read",
    "Microsoft.Compute/disks/write",
    "Microsoft.Compute/disks/delete",
];

/// The name of `host`'s NIC.
pub fn nic_name(host: &str) -> String {
    format!("{host}-nic")
}

/// The name of `host`'s public IP.
pub fn ip_name(host: &str) -> String {
    format!("{host}-ip")
}

/// What a VM is made of beside its machine: where it goes and who logs in.
#[derive(Debug, Clone)]
pub struct VmRequest<'a> {
    /// The host (the VM's name and computer name).
    pub host: &'a str,
    /// The location.
    pub location: &'a str,
    /// Its zone, if the cluster uses zones.
    pub zone: Option<&'a str>,
    /// The pool's machine.
    pub machine: &'a MachineSpec,
    /// The admin user, who gets `public_key`.
    pub admin_user: &'a str,
    /// The cluster's SSH public key (OpenSSH).
    pub public_key: &'a str,
    /// The NIC's id.
    pub nic_id: &'a str,
    /// Every tag of the VM.
    pub tags: &'a Tags,
}

/// The VM's create body (`VirtualMachines_CreateOrUpdate`).
pub fn vm_body(r: &VmRequest<'_>) -> Value {
    let (publisher, offer, sku, version) = &r.machine.image;
    let mut body = json!({
        "location": r.location,
        "tags": r.tags.json(),
        "properties": {
            "hardwareProfile": { "vmSize": r.machine.vm_size },
            "storageProfile": {
                "imageReference": { "publisher": publisher, "offer": offer, "sku": sku, "version": version },
                "osDisk": {
                    "name": format!("{}-osdisk", r.host),
                    "createOption": "FromImage",
                    "diskSizeGB": r.machine.disk_gb,
                    "deleteOption": "Delete",
                    "managedDisk": { "storageAccountType": "StandardSSD_LRS" },
                },
            },
            "osProfile": {
                "computerName": r.host,
                "adminUsername": r.admin_user,
                "linuxConfiguration": {
                    "disablePasswordAuthentication": true,
                    "ssh": { "publicKeys": [{
                        "path": format!("/home/{}/.ssh/authorized_keys", r.admin_user),
                        "keyData": r.public_key,
                    }] },
                },
            },
            "networkProfile": {
                "networkInterfaces": [{ "id": r.nic_id, "properties": { "primary": true, "deleteOption": "Delete" } }],
            },
        },
    });
    if let Some(zone) = r.zone {
        body["zones"] = json!([zone]);
    }
    if r.machine.spot {
        body["properties"]["priority"] = json!("Spot");
        body["properties"]["evictionPolicy"] = json!("Delete");
        body["properties"]["billingProfile"] = json!({ "maxPrice": -1 });
    }
    body
}

/// The NIC's create body: a Dynamic private address on `subnet_id`, the cluster's security group,
/// and the public IP when there is one.
pub fn nic_body(location: &str, tags: &Tags, subnet_id: &str, nsg_id: &str, public_ip_id: Option<&str>) -> Value {
    let mut config = json!({ "subnet": { "id": subnet_id }, "privateIPAllocationMethod": "Dynamic", "primary": true });
    if let Some(ip) = public_ip_id {
        config["publicIPAddress"] = json!({ "id": ip });
    }
    json!({
        "location": location,
        "tags": tags.json(),
        "properties": {
            "ipConfigurations": [{ "name": "primary", "properties": config }],
            "networkSecurityGroup": { "id": nsg_id },
        },
    })
}

/// The public IP's create body: Standard, static.
pub fn ip_body(location: &str, tags: &Tags) -> Value {
    json!({
        "location": location,
        "tags": tags.json(),
        "sku": { "name": "Standard", "tier": "Regional" },
        "properties": { "publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4" },
    })
}

/// Makes (or updates) `host`'s public IP; its id.
pub async fn ensure_ip(
    arm: &Arm,
    group: &str,
    host: &str,
    location: &str,
    tags: &Tags,
) -> Result<String, ProviderError> {
    let action = "Microsoft.Network/publicIPAddresses/write";
    let body = model::<crate::arm::network::models::PublicIpAddress>(ip_body(location, tags))?;
    let made = arm
        .put(
            arm.network
                .public_ip_addresses_client()
                .create_or_update(group, ip_name(host), body, &arm.subscription)
                .send(),
        )
        .await
        .map_err(|f| error::provider_error("create", host, action, &f))?;
    Ok(arm::id(&made).unwrap_or_default().to_string())
}

/// Makes (or updates) `host`'s NIC from `body`; its id.
pub async fn ensure_nic(arm: &Arm, group: &str, host: &str, body: Value) -> Result<String, ProviderError> {
    let action = "Microsoft.Network/networkInterfaces/write";
    let body = model::<crate::arm::network::models::NetworkInterface>(body)?;
    let made = arm
        .put(
            arm.network
                .network_interfaces_client()
                .create_or_update(group, nic_name(host), body, &arm.subscription)
                .send(),
        )
        .await
        .map_err(|f| error::provider_error("create", host, action, &f))?;
    Ok(arm::id(&made).unwrap_or_default().to_string())
}

/// Sends the VM's create and waits for its operation: Azure's failure as is (quota, zonal
/// capacity), for the caller to decide on the next zone.
pub async fn create(arm: &Arm, group: &str, host: &str, body: Value) -> Result<(), Result<Failure, ProviderError>> {
    let body = model::<crate::arm::compute::models::VirtualMachine>(body).map_err(Err)?;
    arm.put(arm.compute.virtual_machines_client().create_or_update(group, host, body, &arm.subscription).send())
        .await
        .map(|_| ())
        .map_err(Ok)
}

/// VM `host` of the group with its instance view; `None` when it (or the group) does not exist.
pub async fn get(arm: &Arm, group: &str, host: &str) -> Result<Option<Value>, ProviderError> {
    let call = arm.compute.virtual_machines_client().get(group, host, &arm.subscription).expand("instanceView").send();
    arm::get(call)
        .await
        .map_err(|f| error::provider_error("describe", host, "Microsoft.Compute/virtualMachines/read", &f))
}

/// Every VM of the group tagged as `cluster`'s, with instance views (none when the group does
/// not exist).
pub async fn list(arm: &Arm, group: &str, cluster: &str) -> Result<Vec<Value>, ProviderError> {
    let action = "Microsoft.Compute/virtualMachines/read";
    let mut pages =
        arm.compute.virtual_machines_client().list(group, &arm.subscription).expand("instanceView").into_stream();
    let mut vms = Vec::new();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                let failure = Failure::from_sdk(&e);
                if failure.is_not_found() {
                    return Ok(Vec::new());
                }
                return Err(error::provider_error("list", "*", action, &failure));
            }
        };
        for vm in page.value {
            let vm = serde_json::to_value(&vm).unwrap_or(Value::Null);
            if tags::value(vm.get("tags"), tags::CLUSTER) == Some(cluster) {
                vms.push(vm);
            }
        }
    }
    Ok(vms)
}

/// The VM's power state from its instance view (`running`, `stopped`, `deallocated`, …).
pub fn power_state(vm: &Value) -> Option<&str> {
    vm.pointer("/properties/instanceView/statuses")?
        .as_array()?
        .iter()
        .filter_map(|s| s.get("code")?.as_str()?.strip_prefix("PowerState/"))
        .next()
}

/// The host's state as the engine sees it.
pub fn state(vm: &Value) -> HostState {
    match (arm::provisioning_state(vm), power_state(vm)) {
        (_, Some("running")) => HostState::Running,
        (_, Some("stopped" | "stopping" | "deallocated" | "deallocating")) => HostState::Stopped,
        (Some("Failed"), _) => HostState::Stopped,
        _ => HostState::Pending,
    }
}

/// A host's addresses: private (from its NIC) and public (from its public IP).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    /// The NIC's private address.
    pub private: Option<String>,
    /// The public IP's address.
    pub public: Option<String>,
}

/// `host`'s addresses, read from its NIC and public IP.
pub async fn addresses(arm: &Arm, group: &str, host: &str) -> Result<Addresses, ProviderError> {
    let sub = &arm.subscription;
    let nic = arm::get(arm.network.network_interfaces_client().get(group, nic_name(host), sub).send())
        .await
        .map_err(|f| error::provider_error("describe", host, "Microsoft.Network/networkInterfaces/read", &f))?;
    let ip = arm::get(arm.network.public_ip_addresses_client().get(group, ip_name(host), sub).send())
        .await
        .map_err(|f| error::provider_error("describe", host, "Microsoft.Network/publicIPAddresses/read", &f))?;
    Ok(Addresses {
        private: nic.as_ref().and_then(private_address),
        public: ip.as_ref().and_then(|ip| ip.pointer("/properties/ipAddress")?.as_str().map(str::to_string)),
    })
}

/// The NICs and public IPs of the group (none when the group does not exist).
async fn interfaces(arm: &Arm, group: &str) -> Result<(Vec<Value>, Vec<Value>), ProviderError> {
    let sub = &arm.subscription;
    let mut nics = Vec::new();
    let mut pages = arm.network.network_interfaces_client().list(group, sub).into_stream();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => nics.extend(page.value.iter().map(|n| serde_json::to_value(n).unwrap_or(Value::Null))),
            Err(e) if Failure::from_sdk(&e).is_not_found() => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(error::sdk("list", "*", "Microsoft.Network/networkInterfaces/read", &e)),
        }
    }
    let mut ips = Vec::new();
    let mut pages = arm.network.public_ip_addresses_client().list(group, sub).into_stream();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| error::sdk("list", "*", "Microsoft.Network/publicIPAddresses/read", &e))?;
        ips.extend(page.value.iter().map(|ip| serde_json::to_value(ip).unwrap_or(Value::Null)));
    }
    Ok((nics, ips))
}

/// Every host's addresses in the group, by host name: two list calls whatever the host count.
pub async fn all_addresses(arm: &Arm, group: &str) -> Result<BTreeMap<String, Addresses>, ProviderError> {
    let (nics, ips) = interfaces(arm, group).await?;
    let mut found: BTreeMap<String, Addresses> = BTreeMap::new();
    for nic in &nics {
        if let Some(host) = tags::value(nic.get("tags"), tags::HOST) {
            found.entry(host.to_string()).or_default().private = private_address(nic);
        }
    }
    for ip in &ips {
        if let (Some(host), Some(address)) =
            (tags::value(ip.get("tags"), tags::HOST), ip.pointer("/properties/ipAddress").and_then(Value::as_str))
        {
            found.entry(host.to_string()).or_default().public = Some(address.to_string());
        }
    }
    Ok(found)
}

/// Deletes the NICs and public IPs of `cluster` in the group that outlived their VMs (a create
/// that failed after them, or was interrupted): the virtual network cannot go while they use it.
pub async fn delete_leftovers(arm: &Arm, group: &str, cluster: &str) -> Result<(), ProviderError> {
    let (nics, ips) = interfaces(arm, group).await?;
    let ours = |r: &Value| {
        (tags::value(r.get("tags"), tags::CLUSTER) == Some(cluster))
            .then(|| tags::value(r.get("tags"), tags::HOST).map(str::to_string))
            .flatten()
    };
    let hosts: std::collections::BTreeSet<String> = nics.iter().chain(&ips).filter_map(ours).collect();
    for host in hosts {
        tracing::info!(%host, "Deleting what a VM left.");
        delete(arm, group, &host).await?;
    }
    Ok(())
}

fn private_address(nic: &Value) -> Option<String> {
    let configs = nic.pointer("/properties/ipConfigurations")?.as_array()?;
    let primary = configs
        .iter()
        .find(|c| c.pointer("/properties/primary").and_then(Value::as_bool) == Some(true))
        .or_else(|| configs.first())?;
    Some(primary.pointer("/properties/privateIPAddress")?.as_str()?.to_string())
}

/// VM `vm` as the engine sees it, with the addresses it has.
pub fn describe(vm: &Value, addresses: &Addresses, via: ConnectVia) -> Option<HostDescription> {
    let name = tags::value(vm.get("tags"), tags::HOST).or_else(|| vm.get("name")?.as_str())?.to_string();
    let mut attributes = BTreeMap::from([("provider".to_string(), "azure".to_string())]);
    if let Some(location) = vm.get("location").and_then(Value::as_str) {
        attributes.insert("region".to_string(), location.to_string());
    }
    if let Some(zone) = vm.pointer("/zones/0").and_then(Value::as_str) {
        attributes.insert("zone".to_string(), zone.to_string());
    }
    if let Some(size) = vm.pointer("/properties/hardwareProfile/vmSize").and_then(Value::as_str) {
        attributes.insert("machine_type".to_string(), size.to_string());
    }
    let address = match via {
        ConnectVia::Private => addresses.private.clone(),
        ConnectVia::Public => addresses.public.clone(),
    };
    Some(HostDescription { name, state: state(vm), address, attributes })
}

/// Deletes VM `host` (waited for), then its NIC and public IP if they are left.
pub async fn delete(arm: &Arm, group: &str, host: &str) -> Result<(), ProviderError> {
    let sub = &arm.subscription;
    let vms = arm.compute.virtual_machines_client();
    delete_patiently("destroy", host, "Microsoft.Compute/virtualMachines/delete", || {
        arm.delete(vms.delete(group, host, sub).send())
    })
    .await?;
    let nics = arm.network.network_interfaces_client();
    delete_patiently("destroy", host, "Microsoft.Network/networkInterfaces/delete", || {
        arm.delete(nics.delete(group, nic_name(host), sub).send())
    })
    .await?;
    let ips = arm.network.public_ip_addresses_client();
    delete_patiently("destroy", host, "Microsoft.Network/publicIPAddresses/delete", || {
        arm.delete(ips.delete(group, ip_name(host), sub).send())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spot_vm_in_a_zone_has_every_part_azure_needs() {
        let machine = MachineSpec { spot: true, disk_gb: 64, ..MachineSpec::default() };
        let tags = Tags::new("blue", &BTreeMap::new(), None).with(tags::HOST, "workers-1");
        let request = VmRequest {
            host: "workers-1",
            location: "westeurope",
            zone: Some("2"),
            machine: &machine,
            admin_user: "gantry",
            public_key: "ssh-ed25519 AAAA gantry-blue",
            nic_id: "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/networkInterfaces/workers-1-nic",
            tags: &tags,
        };
        let body = vm_body(&request);
        assert_eq!(body["zones"], json!(["2"]));
        let props = &body["properties"];
        assert_eq!(props["priority"], "Spot");
        assert_eq!(props["evictionPolicy"], "Delete");
        assert_eq!(props["storageProfile"]["osDisk"]["diskSizeGB"], 64);
        assert_eq!(props["storageProfile"]["imageReference"]["offer"], "debian-12");
        assert_eq!(
            props["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"][0]["path"],
            "/home/gantry/.ssh/authorized_keys"
        );
        assert_eq!(body["tags"][tags::CLUSTER], "blue");
        let vm: crate::arm::compute::models::VirtualMachine = model(body.clone()).expect("fits the SDK's model");
        let back = serde_json::to_value(&vm).expect("serialises");
        assert_eq!(
            back["properties"]["networkProfile"]["networkInterfaces"][0]["properties"]["deleteOption"],
            "Delete"
        );
        assert_eq!(back["properties"]["osProfile"]["adminUsername"], "gantry");
        let regular = vm_body(&VmRequest { zone: None, machine: &MachineSpec::default(), ..request });
        assert!(regular.get("zones").is_none() && regular["properties"].get("priority").is_none());
    }

    #[test]
    fn nics_and_public_ips_fit_the_sdks_models() {
        let tags = Tags::new("blue", &BTreeMap::new(), None);
        let nic = nic_body("westeurope", &tags, "subnet-id", "nsg-id", Some("ip-id"));
        let nic: crate::arm::network::models::NetworkInterface = model(nic).expect("fits");
        let nic = serde_json::to_value(&nic).expect("serialises");
        assert_eq!(nic["properties"]["ipConfigurations"][0]["properties"]["publicIPAddress"]["id"], "ip-id");
        let ip: crate::arm::network::models::PublicIpAddress = model(ip_body("westeurope", &tags)).expect("fits");
        assert_eq!(serde_json::to_value(&ip).expect("serialises")["sku"]["name"], "Standard");
    }

    #[test]
    fn state_and_addresses_come_from_the_instance_view_and_the_nic() {
        let vm = json!({
            "name": "workers-0", "location": "westeurope", "zones": ["3"],
            "tags": { tags::CLUSTER: "blue", tags::HOST: "workers-0" },
            "properties": {
                "provisioningState": "Succeeded",
                "hardwareProfile": { "vmSize": "Standard_B1s" },
                "instanceView": { "statuses": [
                    { "code": "ProvisioningState/succeeded" }, { "code": "PowerState/running" }
                ] },
            },
        });
        let addresses = Addresses { private: Some("10.0.0.4".into()), public: Some("20.1.2.3".into()) };
        let host = describe(&vm, &addresses, ConnectVia::Private).expect("a host");
        assert_eq!((host.name.as_str(), host.state), ("workers-0", HostState::Running));
        assert_eq!(host.address.as_deref(), Some("10.0.0.4"));
        assert_eq!(host.attributes.get("zone").map(String::as_str), Some("3"));
        assert_eq!(host.attributes.get("machine_type").map(String::as_str), Some("Standard_B1s"));
        assert_eq!(host.attributes.get("region").map(String::as_str), Some("westeurope"));
        let public = describe(&vm, &addresses, ConnectVia::Public).expect("a host");
        assert_eq!(public.address.as_deref(), Some("20.1.2.3"));
        let stopped =
            json!({ "properties": { "instanceView": { "statuses": [{ "code": "PowerState/deallocated" }] } } });
        assert_eq!(state(&stopped), HostState::Stopped);
        assert_eq!(state(&json!({ "properties": { "provisioningState": "Creating" } })), HostState::Pending);
        let nic =
            json!({ "properties": { "ipConfigurations": [{ "properties": { "privateIPAddress": "10.0.0.5" } }] } });
        assert_eq!(private_address(&nic).as_deref(), Some("10.0.0.5"));
    }
}
