//! `[gce]` and the machine keys of `[[pool]]` for `provider = "gce"`: the project and region,
//! the cluster's network (a new VPC network with one subnetwork, or existing ones), who may
//! reach SSH and the API. The provider itself lives in `providers/gce`; this is only the schema.

use super::aws::{ConnectVia, default_api_port, default_max_parallel_creates};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// The defaults of `[gce]` and of the pools' machine keys.
pub mod defaults {
    /// The subnetwork range when the file names none.
    pub const NETWORK_CIDR: &str = "10.0.0.0/20";
    /// The machine type of a pool that names none.
    pub const MACHINE_TYPE: &str = "e2-medium";
    /// The image of a pool that names none: the newest Debian 12 of Debian's image family.
    pub const IMAGE: &str = "projects/debian-cloud/global/images/family/debian-12";
    /// The boot disk of a pool that names none, in GB.
    pub const DISK_GB: u32 = 20;
}

/// `[gce]`: the settings of a `gce` cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GceSection {
    /// The project id, e.g. `my-project`; else `GOOGLE_CLOUD_PROJECT`.
    #[serde(default)]
    pub project: Option<Spanned<String>>,
    /// The region, e.g. `europe-west1`.
    pub region: Spanned<String>,
    /// Zones to spread pools across, e.g. `["europe-west1-b", "europe-west1-c"]`. Default: every
    /// zone of the region that is up.
    #[serde(default)]
    pub zones: Vec<Spanned<String>>,
    /// The Compute Engine endpoint (an emulator, a private endpoint); else
    /// `GANTRY_GCE_ENDPOINT_URL`, else Google's own.
    #[serde(default)]
    pub endpoint_url: Option<Spanned<String>>,
    /// The range of the subnetwork gantry creates in a new VPC network. Default `10.0.0.0/20`.
    /// Not with `network`.
    #[serde(default)]
    pub network_cidr: Option<Spanned<String>>,
    /// An existing VPC network to use instead (with `subnetwork`); `down` leaves it.
    #[serde(default)]
    pub network: Option<Spanned<String>>,
    /// An existing subnetwork of `network` in the region.
    #[serde(default)]
    pub subnetwork: Option<Spanned<String>>,
    /// How this machine reaches the instances: `public` (their external IPs; default) or
    /// `private` (their internal IPs: this machine is in or routed to the network).
    #[serde(default)]
    pub connect_via: ConnectVia,
    /// Who may reach SSH (port 22): CIDRs. Required: there is no open default.
    pub ssh_cidrs: Spanned<Vec<String>>,
    /// Who may reach the master API: CIDRs. Required: there is no open default.
    pub api_cidrs: Spanned<Vec<String>>,
    /// Labels put on every resource, beside gantry's own `gantry-*` labels (keys and values:
    /// lowercase letters, digits, `-` and `_`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Instances requested at once. Default 10.
    #[serde(default = "default_max_parallel_creates")]
    pub max_parallel_creates: Spanned<u32>,
    /// Port of the master's API. Default 5050.
    #[serde(default = "default_api_port")]
    pub api_port: u16,
}
