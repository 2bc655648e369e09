//! `[azure]` and the machine keys of `[[pool]]` for `provider = "azure"`: the subscription and
//! location, the cluster's virtual network, who may reach SSH and the API. Everything lives in
//! one resource group per cluster. The provider itself lives in `providers/azure`; this is only
//! the schema.

use super::aws::{ConnectVia, default_api_port, default_max_parallel_creates};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// The defaults of `[azure]` and of the pools' machine keys.
pub mod defaults {
    /// The virtual network's range when the file names none.
    pub const VNET_CIDR: &str = "10.0.0.0/16";
    /// The VM size of a pool that names none.
    pub const VM_SIZE: &str = "Standard_B2s";
    /// The image of a pool that names none: Debian 12 from Debian's own publisher.
    pub const IMAGE: (&str, &str, &str, &str) = ("Debian", "debian-12", "12", "latest");
    /// The OS disk of a pool that names none, in GB.
    pub const DISK_GB: u32 = 30;
}

/// `[azure]`: the settings of an `azure` cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureSection {
    /// The subscription id (a GUID); else `AZURE_SUBSCRIPTION_ID`.
    #[serde(default)]
    pub subscription_id: Option<Spanned<String>>,
    /// The location (region), e.g. `westeurope`.
    pub location: Spanned<String>,
    /// Availability zones to spread pools across, e.g. `["1", "2", "3"]`. Default: none (the
    /// location places VMs itself).
    #[serde(default)]
    pub zones: Vec<Spanned<String>>,
    /// The Resource Manager endpoint (an emulator, a sovereign cloud); else
    /// `GANTRY_AZURE_ENDPOINT_URL`, else `https://management.azure.com`.
    #[serde(default)]
    pub endpoint_url: Option<Spanned<String>>,
    /// The resource group holding the cluster; default `gantry-<cluster>`. It is created by
    /// `up` and deleted by `down`.
    #[serde(default)]
    pub resource_group: Option<Spanned<String>>,
    /// The virtual network's range; one subnet spans it. Default `10.0.0.0/16`.
    #[serde(default)]
    pub vnet_cidr: Option<Spanned<String>>,
    /// How this machine reaches the VMs: `public` (their public IPs; default) or `private`.
    #[serde(default)]
    pub connect_via: ConnectVia,
    /// Who may reach SSH (port 22): CIDRs. Required: there is no open default.
    pub ssh_cidrs: Spanned<Vec<String>>,
    /// Who may reach the master API: CIDRs. Required: there is no open default.
    pub api_cidrs: Spanned<Vec<String>>,
    /// Tags put on every resource, beside gantry's own `gantry-*` tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// VMs requested at once. Default 10.
    #[serde(default = "default_max_parallel_creates")]
    pub max_parallel_creates: Spanned<u32>,
    /// Port of the master's API. Default 5050.
    #[serde(default = "default_api_port")]
    pub api_port: u16,
}
