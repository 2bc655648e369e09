//! The cluster's own resources: its resource group, a network security group admitting SSH and
//! the API only from the file's CIDRs (traffic inside the virtual network is allowed by Azure's
//! default rules), and a virtual network whose one subnet, `hosts`, spans `vnet_cidr` and uses
//! that group. Names are deterministic (`gantry-<cluster>`), which is Azure's idempotency: each
//! is looked up first, and made (a create-or-update PUT) only when missing, its intent journaled
//! before the call. [`delete`] removes them in dependency order, the resource group last.

use crate::arm::{self, Arm};
use crate::error::{self, Failure};
use crate::settings::AzureSettings;
use crate::tags::{self, Tags};
use gantry_provision::cloud::{Backoff, Registry};
use gantry_provision::provider::{ClusterResource, ErrorKind, ProviderError};
use serde_json::{Value, json};
use std::time::Duration;

/// The subnet every VM's NIC is on.
pub const SUBNET: &str = "hosts";

/// How long a delete waits for a dependency (a NIC still going) before giving up.
const DEPENDENCY_PATIENCE: Duration = Duration::from_secs(300);

/// The name of the cluster's virtual network and network security group.
pub fn name(cluster: &str) -> String {
    format!("gantry-{cluster}")
}

/// The ids of a cluster's network, as found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// The resource group.
    pub group: String,
    /// The subnet VMs' NICs are on.
    pub subnet_id: String,
    /// The network security group.
    pub security_group_id: String,
}

/// A request body as the SDK's model `T` (the bodies are written in ARM's JSON shape: the
/// models have no defaults and dozens of optional fields).
pub fn model<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, ProviderError> {
    serde_json::from_value(body).map_err(|e| {
        error::other(
            "prepare",
            "cluster",
            ErrorKind::Other,
            format!("a request body does not fit the SDK's model: {e}"),
        )
    })
}

fn failed(action: &str) -> impl Fn(Failure) -> ProviderError + '_ {
    move |f| error::provider_error("prepare", "cluster", action, &f)
}

/// The network security rules: SSH from `ssh_cidrs`, the API from `api_cidrs`.
pub fn security_rules(settings: &AzureSettings) -> Value {
    let rule = |name: &str, priority: u32, port: u16, cidrs: &[String]| {
        let mut properties = json!({
            "priority": priority,
            "direction": "Inbound",
            "access": "Allow",
            "protocol": "Tcp",
            "sourcePortRange": "*",
            "destinationAddressPrefix": "*",
            "destinationPortRange": port.to_string(),
        });
        match cidrs {
            [one] => properties["sourceAddressPrefix"] = json!(one),
            many => properties["sourceAddressPrefixes"] = json!(many),
        }
        json!({ "name": name, "properties": properties })
    };
    json!([
        rule("gantry-ssh", 100, settings.ssh_port, &settings.ssh_cidrs),
        rule("gantry-api", 110, settings.api_port, &settings.api_cidrs),
    ])
}

/// What makes a cluster's network: the settings, the tags and the journal.
#[derive(Debug)]
pub struct Maker<'a> {
    /// The client.
    pub arm: &'a Arm,
    /// The cluster.
    pub cluster: &'a str,
    /// Its settings.
    pub settings: &'a AzureSettings,
    /// The tags every resource gets.
    pub tags: Tags,
    /// The journal of intents.
    pub registry: &'a Registry,
}

impl Maker<'_> {
    fn journal(&self, resource: &str, id: Option<&str>) -> Result<(), ProviderError> {
        self.registry
            .update(|r| match id {
                Some(id) => {
                    r.resources.insert(resource.to_string(), Some(id.to_string()));
                }
                None => {
                    r.resources.entry(resource.to_string()).or_insert(None);
                }
            })
            .map_err(|e| error::other("prepare", "cluster", ErrorKind::Other, format!("journal: {e}")))
    }

    /// Finds or makes every resource; returns their ids.
    pub async fn ensure(&self) -> Result<Network, ProviderError> {
        let (arm, sub, group) = (self.arm, &self.arm.subscription, &self.settings.resource_group);
        let name = name(self.cluster);
        let action = "Microsoft.Resources/subscriptions/resourceGroups/write";
        match arm::get(arm.resources.resource_groups_client().get(group, sub).send()).await.map_err(failed(action))? {
            Some(found) => {
                let owner = tags::value(found.get("tags"), tags::CLUSTER);
                if owner.is_some_and(|o| o != self.cluster) {
                    return Err(error::other(
                        "prepare",
                        "cluster",
                        ErrorKind::Conflict,
                        format!(
                            "resource group {group} belongs to cluster {} (hint: set [azure] resource_group to \
                             another name)",
                            owner.unwrap_or_default()
                        ),
                    ));
                }
                if arm::provisioning_state(&found) == Some("Deleting") {
                    return Err(error::other(
                        "prepare",
                        "cluster",
                        ErrorKind::Transient,
                        format!("resource group {group} is being deleted; try again once it is gone"),
                    ));
                }
            }
            None => {
                self.journal("resource-group", None)?;
                let body = json!({ "location": self.settings.location, "tags": self.tags.json() });
                let made = arm
                    .put(
                        arm.resources
                            .resource_groups_client()
                            .create_or_update(group, model::<crate::arm::resources::models::ResourceGroup>(body)?, sub)
                            .send(),
                    )
                    .await
                    .map_err(failed(action))?;
                self.journal("resource-group", arm::id(&made))?;
            }
        }

        let nsgs = arm.network.network_security_groups_client();
        let action = "Microsoft.Network/networkSecurityGroups/write";
        let security_group_id = match arm::get(nsgs.get(group, &name, sub).send()).await.map_err(failed(action))? {
            Some(found) if arm::provisioning_state(&found) == Some("Succeeded") => {
                arm::id(&found).unwrap_or_default().to_string()
            }
            _ => {
                self.journal("network-security-group", None)?;
                let body = json!({
                    "location": self.settings.location,
                    "tags": self.tags.json(),
                    "properties": { "securityRules": security_rules(self.settings) },
                });
                let made = arm
                    .put(
                        nsgs.create_or_update(
                            group,
                            &name,
                            model::<crate::arm::network::models::NetworkSecurityGroup>(body)?,
                            sub,
                        )
                        .send(),
                    )
                    .await
                    .map_err(failed(action))?;
                let id = arm::id(&made).unwrap_or_default().to_string();
                self.journal("network-security-group", Some(&id))?;
                id
            }
        };

        let vnets = arm.network.virtual_networks_client();
        let action = "Microsoft.Network/virtualNetworks/write";
        let found = arm::get(vnets.get(group, &name, sub).send()).await.map_err(failed(action))?;
        let subnet_of = |vnet: &Value| {
            vnet.pointer("/properties/subnets")
                .and_then(Value::as_array)
                .and_then(|s| s.iter().find(|s| s.get("name").and_then(Value::as_str) == Some(SUBNET)))
                .and_then(|s| arm::id(s).map(str::to_string))
        };
        let ready = found.as_ref().filter(|v| arm::provisioning_state(v) == Some("Succeeded")).and_then(subnet_of);
        let subnet_id = match ready {
            Some(id) => id,
            None => {
                self.journal("virtual-network", None)?;
                let cidr = &self.settings.vnet_cidr;
                let body = json!({
                    "location": self.settings.location,
                    "tags": self.tags.json(),
                    "properties": {
                        "addressSpace": { "addressPrefixes": [cidr] },
                        "subnets": [{
                            "name": SUBNET,
                            "properties": { "addressPrefix": cidr, "networkSecurityGroup": { "id": security_group_id } },
                        }],
                    },
                });
                let made = arm
                    .put(
                        vnets
                            .create_or_update(
                                group,
                                &name,
                                model::<crate::arm::network::models::VirtualNetwork>(body)?,
                                sub,
                            )
                            .send(),
                    )
                    .await
                    .map_err(failed(action))?;
                let vnet_id = arm::id(&made).unwrap_or_default().to_string();
                self.journal("virtual-network", Some(&vnet_id))?;
                subnet_of(&made).unwrap_or_else(|| format!("{vnet_id}/subnets/{SUBNET}"))
            }
        };
        Ok(Network { group: group.clone(), subnet_id, security_group_id })
    }
}

/// Runs a delete (`action`) until it is done or its resource is gone, retrying while Azure
/// still sees a dependency (a NIC being deleted) or is busy, for at most [`DEPENDENCY_PATIENCE`].
pub async fn delete_patiently<F, Fut>(
    operation: &'static str,
    host: &str,
    action: &str,
    mut call: F,
) -> Result<(), ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let failure = match call().await {
            Ok(()) => return Ok(()),
            Err(f) => f,
        };
        let kind = error::kind_of(&failure);
        let again = matches!(kind, ErrorKind::Conflict | ErrorKind::Transient);
        if !again || started.elapsed() > DEPENDENCY_PATIENCE {
            return Err(error::provider_error(operation, host, action, &failure));
        }
        tracing::debug!(%action, code = %failure.code, "Delete refused for now; trying again.");
        backoff.wait().await;
    }
}

/// Deletes the cluster's network (virtual network, then security group) and then its resource
/// group `group`, which takes anything left in it; each waited for.
pub async fn delete(arm: &Arm, cluster: &str, group: &str) -> Result<(), ProviderError> {
    let (sub, name) = (&arm.subscription, name(cluster));
    let vnets = arm.network.virtual_networks_client();
    delete_patiently("destroy", "cluster", "Microsoft.Network/virtualNetworks/delete", || {
        arm.delete(vnets.delete(group, &name, sub).send())
    })
    .await?;
    let nsgs = arm.network.network_security_groups_client();
    delete_patiently("destroy", "cluster", "Microsoft.Network/networkSecurityGroups/delete", || {
        arm.delete(nsgs.delete(group, &name, sub).send())
    })
    .await?;
    let groups = arm.resources.resource_groups_client();
    delete_patiently("destroy", "cluster", "Microsoft.Resources/subscriptions/resourceGroups/delete", || {
        arm.delete(groups.delete(group, sub).send())
    })
    .await
}

/// The cluster's resources as they are (`id: None`: not made yet).
pub async fn resources(arm: &Arm, cluster: &str, group: &str) -> Result<Vec<ClusterResource>, ProviderError> {
    let (sub, name) = (&arm.subscription, name(cluster));
    let read = "Microsoft.Resources/subscriptions/resourceGroups/read";
    let found_group =
        arm::get(arm.resources.resource_groups_client().get(group, sub).send()).await.map_err(failed(read))?;
    let (mut nsg, mut vnet) = (None, None);
    if found_group.is_some() {
        let read = "Microsoft.Network/networkSecurityGroups/read";
        nsg = arm::get(arm.network.network_security_groups_client().get(group, &name, sub).send())
            .await
            .map_err(failed(read))?;
        let read = "Microsoft.Network/virtualNetworks/read";
        vnet = arm::get(arm.network.virtual_networks_client().get(group, &name, sub).send())
            .await
            .map_err(failed(read))?;
    }
    let id = |v: &Option<Value>| v.as_ref().and_then(arm::id).map(str::to_string);
    let subnet = vnet.as_ref().and_then(|v| {
        v.pointer("/properties/subnets")?
            .as_array()?
            .iter()
            .find(|s| s.get("name").and_then(Value::as_str) == Some(SUBNET))
            .and_then(|s| arm::id(s).map(str::to_string))
    });
    let resource = |kind: &str, name: &str, id: Option<String>| ClusterResource {
        kind: kind.to_string(),
        name: name.to_string(),
        id,
        owned: true,
    };
    Ok(vec![
        resource("resource-group", group, id(&found_group)),
        resource("network-security-group", &name, id(&nsg)),
        resource("virtual-network", &name, id(&vnet)),
        resource("subnet", SUBNET, subnet),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_admit_ssh_and_the_api_only_from_the_files_cidrs() {
        let text = "version = 1\n[cluster]\nname = \"c\"\nprovider = \"azure\"\n[ssh]\nuser = \"gantry\"\n\
                    [azure]\nlocation = \"westeurope\"\nssh_cidrs = [\"203.0.113.7/32\"]\n\
                    api_cidrs = [\"203.0.113.0/24\", \"198.51.100.0/24\"]\n";
        let file =
            gantry_provision::cluster_file::ClusterFile::parse(std::path::Path::new("c.toml"), text).expect("valid");
        let settings = AzureSettings::from_cluster_file(&file).expect("[azure]");
        let rules = security_rules(&settings);
        assert_eq!(rules[0]["properties"]["destinationPortRange"], "22");
        assert_eq!(rules[0]["properties"]["sourceAddressPrefix"], "203.0.113.7/32");
        assert_eq!(rules[1]["properties"]["destinationPortRange"], "5050");
        assert_eq!(rules[1]["properties"]["sourceAddressPrefixes"], json!(["203.0.113.0/24", "198.51.100.0/24"]));
        let nsg: crate::arm::network::models::NetworkSecurityGroup =
            model(json!({ "location": "westeurope", "properties": { "securityRules": rules } }))
                .expect("fits the SDK's model");
        let back = serde_json::to_value(&nsg).expect("serialises");
        assert_eq!(back["properties"]["securityRules"][1]["properties"]["priority"], 110);
        assert_eq!(name("c"), "gantry-c");
    }
}
