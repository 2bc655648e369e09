//! What the azure provider takes from a cluster file: `[azure]`, each pool's machine keys, the
//! TTL and the SSH user VMs are made with.

use gantry_provision::cluster_file::{AzureSection, ClusterFile, ConnectVia, ImageRef, Role, azure_defaults};
use std::collections::BTreeMap;
use std::time::Duration;

/// Azure Resource Manager's own endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://management.azure.com";
/// The environment variable naming another Resource Manager endpoint (the lab's).
pub const ENDPOINT_ENV: &str = "GANTRY_AZURE_ENDPOINT_URL";
/// The environment variable naming the subscription when the file does not.
pub const SUBSCRIPTION_ENV: &str = "AZURE_SUBSCRIPTION_ID";
/// The pool name masters are keyed by in [`AzureSettings::machines`].
pub const MASTER_POOL: &str = "master";

/// The settings of one cluster on Azure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureSettings {
    /// The subscription from the file; `None` = `AZURE_SUBSCRIPTION_ID` at connect time.
    pub subscription_id: Option<String>,
    /// The location (region), e.g. `westeurope`.
    pub location: String,
    /// Availability zones to spread VMs across; empty = no zone.
    pub zones: Vec<String>,
    /// The Resource Manager endpoint from the file; `None` = [`ENDPOINT_ENV`], else Azure's own.
    pub endpoint_url: Option<String>,
    /// The resource group holding everything of the cluster.
    pub resource_group: String,
    /// The virtual network's range (its one subnet spans it).
    pub vnet_cidr: String,
    /// Public or private addresses.
    pub connect_via: ConnectVia,
    /// Who may reach SSH.
    pub ssh_cidrs: Vec<String>,
    /// Who may reach the API.
    pub api_cidrs: Vec<String>,
    /// The master API's port.
    pub api_port: u16,
    /// The SSH port the network security group opens.
    pub ssh_port: u16,
    /// The VMs' admin user (`[ssh] user`), who gets the cluster's key.
    pub admin_user: String,
    /// The user's own tags.
    pub tags: BTreeMap<String, String>,
    /// VM creations in flight at once.
    pub max_parallel_creates: usize,
    /// How long the cluster may live.
    pub ttl: Option<Duration>,
    /// Machine settings per pool name (masters: `master`).
    pub machines: BTreeMap<String, MachineSpec>,
}

/// What one pool's VMs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    /// The VM size, e.g. `Standard_B2s`.
    pub vm_size: String,
    /// The marketplace image: publisher, offer, SKU, version.
    pub image: (String, String, String, String),
    /// The OS disk in GB.
    pub disk_gb: u32,
    /// Spot (evicted by deletion) or regular priority.
    pub spot: bool,
}

impl Default for MachineSpec {
    fn default() -> Self {
        let (publisher, offer, sku, version) = azure_defaults::IMAGE;
        Self {
            vm_size: azure_defaults::VM_SIZE.to_string(),
            image: (publisher.to_string(), offer.to_string(), sku.to_string(), version.to_string()),
            disk_gb: azure_defaults::DISK_GB,
            spot: false,
        }
    }
}

impl AzureSettings {
    /// The settings of a validated `azure` cluster file; `None` without an `[azure]` section.
    pub fn from_cluster_file(file: &ClusterFile) -> Option<Self> {
        let azure: &AzureSection = file.azure()?;
        let mut machines = BTreeMap::new();
        for pool in &file.pools {
            let mut spec = MachineSpec::default();
            if let Some(size) = &pool.vm_size {
                spec.vm_size = size.get_ref().clone();
            }
            if let Some(image) = pool.image.as_ref().and_then(|i| ImageRef::marketplace(i.get_ref())) {
                spec.image = image;
            }
            if let Some(gb) = &pool.disk_gb {
                spec.disk_gb = *gb.get_ref();
            }
            if let Some(spot) = &pool.spot {
                spec.spot = *spot.get_ref();
            }
            let key = if *pool.role.get_ref() == Role::Master { MASTER_POOL } else { pool.name.get_ref().as_str() };
            machines.entry(key.to_string()).or_insert(spec);
        }
        Some(Self {
            subscription_id: azure.subscription_id.as_ref().map(|s| s.get_ref().clone()),
            location: azure.location.get_ref().clone(),
            zones: azure.zones.iter().map(|z| z.get_ref().clone()).collect(),
            endpoint_url: azure.endpoint_url.as_ref().map(|u| u.get_ref().clone()),
            resource_group: azure
                .resource_group
                .as_ref()
                .map_or_else(|| format!("gantry-{}", file.name()), |g| g.get_ref().clone()),
            vnet_cidr: azure
                .vnet_cidr
                .as_ref()
                .map_or_else(|| azure_defaults::VNET_CIDR.to_string(), |c| c.get_ref().clone()),
            connect_via: azure.connect_via,
            ssh_cidrs: azure.ssh_cidrs.get_ref().clone(),
            api_cidrs: azure.api_cidrs.get_ref().clone(),
            api_port: azure.api_port,
            ssh_port: file.ssh.port,
            admin_user: file.ssh.user.clone(),
            tags: azure.tags.clone(),
            max_parallel_creates: (*azure.max_parallel_creates.get_ref()).max(1) as usize,
            ttl: file.ttl(),
            machines,
        })
    }

    /// The machine of `pool` (masters' pool is `master`); the defaults for a pool not in the file
    /// (one being removed).
    pub fn machine(&self, pool: &str) -> MachineSpec {
        self.machines.get(pool).cloned().unwrap_or_default()
    }

    /// The zones to try for the host at `index` in its pool, first its own (spread by index),
    /// then the others in order; `[None]` when the cluster uses no zone.
    pub fn zones_for(&self, index: usize) -> Vec<Option<String>> {
        if self.zones.is_empty() {
            return vec![None];
        }
        let n = self.zones.len();
        (0..n).map(|i| Some(self.zones[(index + i) % n].clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(extra: &str, pools: &str) -> ClusterFile {
        let text = format!(
            "version = 1\n[cluster]\nname = \"blue\"\nprovider = \"azure\"\n[ssh]\nuser = \"gantry\"\nsudo = true\n\
             [azure]\nlocation = \"westeurope\"\nssh_cidrs = [\"203.0.113.7/32\"]\napi_cidrs = [\"203.0.113.7/32\"]\n\
             {extra}\n{pools}"
        );
        ClusterFile::parse(std::path::Path::new("blue.toml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn defaults_name_the_group_after_the_cluster_and_use_debian() {
        let settings = AzureSettings::from_cluster_file(&file("", "")).expect("[azure]");
        assert_eq!(settings.resource_group, "gantry-blue");
        assert_eq!(settings.vnet_cidr, "10.0.0.0/16");
        assert_eq!(settings.admin_user, "gantry");
        assert_eq!(settings.machine("workers").vm_size, "Standard_B2s");
        assert_eq!(settings.machine("workers").image.1, "debian-12");
        assert_eq!(settings.zones_for(4), vec![None], "no zone unless the file names some");
    }

    #[test]
    fn pools_take_their_machine_keys_and_masters_key_by_role() {
        let pools = "[[pool]]\nname = \"control\"\nrole = \"master\"\ncount = 1\nvm_size = \"Standard_D2s_v5\"\n\
                     [[pool]]\nname = \"workers\"\ncount = 2\nvm_size = \"Standard_B1s\"\ndisk_gb = 64\nspot = true\n\
                     image = \"Canonical:ubuntu-24_04-lts:server:latest\"\n";
        let settings =
            AzureSettings::from_cluster_file(&file("zones = [\"1\", \"2\", \"3\"]\nresource_group = \"rg-x\"", pools))
                .expect("[azure]");
        assert_eq!(settings.resource_group, "rg-x");
        assert_eq!(settings.machine(MASTER_POOL).vm_size, "Standard_D2s_v5");
        let workers = settings.machine("workers");
        assert_eq!((workers.disk_gb, workers.spot), (64, true));
        assert_eq!(workers.image.0, "Canonical");
        let zone = |z: &str| Some(z.to_string());
        assert_eq!(settings.zones_for(4), vec![zone("2"), zone("3"), zone("1")], "host 4 starts in zone 2");
        assert_eq!(settings.zones_for(0)[0], zone("1"));
    }
}
