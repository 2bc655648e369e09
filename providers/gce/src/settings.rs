//! What the gce provider takes from a cluster file: `[gce]`, each pool's machine keys, the TTL
//! and the SSH user its instances authorise the cluster's key for.

use gantry_provision::cluster_file::{ClusterFile, ConnectVia, GceSection, ImageRef, Role, gce_defaults};
use std::collections::BTreeMap;
use std::time::Duration;

/// The pool name masters are keyed by in [`GceSettings::machines`].
pub const MASTER_POOL: &str = "master";

/// The settings of one cluster on Compute Engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GceSettings {
    /// The project id; `None` = `GOOGLE_CLOUD_PROJECT`, read when connecting.
    pub project: Option<String>,
    /// The region.
    pub region: String,
    /// Zones to spread across; empty = every zone of the region that is up.
    pub zones: Vec<String>,
    /// The Compute endpoint; `None` = `GANTRY_GCE_ENDPOINT_URL`, else Google's own.
    pub endpoint_url: Option<String>,
    /// The network: one gantry makes, or one that exists.
    pub network: NetworkSpec,
    /// Public or private addresses.
    pub connect_via: ConnectVia,
    /// Who may reach SSH.
    pub ssh_cidrs: Vec<String>,
    /// Who may reach the API.
    pub api_cidrs: Vec<String>,
    /// The master API's port.
    pub api_port: u16,
    /// The user's own labels.
    pub labels: BTreeMap<String, String>,
    /// Instance inserts in flight at once.
    pub max_parallel_creates: usize,
    /// How long the cluster may live.
    pub ttl: Option<Duration>,
    /// The SSH user the cluster's key is authorised for (`ssh-keys` metadata).
    pub ssh_user: String,
    /// Machine settings per pool name (masters: [`MASTER_POOL`]).
    pub machines: BTreeMap<String, MachineSpec>,
}

/// The network of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkSpec {
    /// gantry makes a VPC network with one subnetwork of this range, and deletes both on `down`.
    Create {
        /// The subnetwork's range.
        cidr: String,
    },
    /// An existing network and subnetwork (names or URLs); `down` leaves them.
    Existing {
        /// The network.
        network: String,
        /// Its subnetwork in the region.
        subnetwork: String,
    },
}

/// What one pool's instances are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    /// The machine type, e.g. `e2-medium`.
    pub machine_type: String,
    /// The image path or URL, e.g. `projects/debian-cloud/global/images/family/debian-12`.
    pub image: String,
    /// The boot disk in GB.
    pub disk_gb: u32,
    /// Spot or standard.
    pub spot: bool,
}

impl Default for MachineSpec {
    fn default() -> Self {
        Self {
            machine_type: gce_defaults::MACHINE_TYPE.to_string(),
            image: gce_defaults::IMAGE.to_string(),
            disk_gb: gce_defaults::DISK_GB,
            spot: false,
        }
    }
}

impl GceSettings {
    /// The settings of a validated `gce` cluster file; `None` without `[gce]`.
    pub fn from_cluster_file(file: &ClusterFile) -> Option<Self> {
        let gce: &GceSection = file.gce()?;
        let network = match (&gce.network, &gce.subnetwork) {
            (Some(network), Some(subnetwork)) => {
                NetworkSpec::Existing { network: network.get_ref().clone(), subnetwork: subnetwork.get_ref().clone() }
            }
            _ => NetworkSpec::Create {
                cidr: gce
                    .network_cidr
                    .as_ref()
                    .map_or_else(|| gce_defaults::NETWORK_CIDR.to_string(), |c| c.get_ref().clone()),
            },
        };
        let mut machines = BTreeMap::new();
        for pool in &file.pools {
            let mut spec = MachineSpec::default();
            if let Some(t) = &pool.machine_type {
                spec.machine_type = t.get_ref().clone();
            }
            if let Some(ImageRef::Id(path)) = pool.image.as_ref().map(|i| i.get_ref()) {
                spec.image = path.clone();
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
            project: gce.project.as_ref().map(|p| p.get_ref().clone()),
            region: gce.region.get_ref().clone(),
            zones: gce.zones.iter().map(|z| z.get_ref().clone()).collect(),
            endpoint_url: gce.endpoint_url.as_ref().map(|u| u.get_ref().clone()),
            network,
            connect_via: gce.connect_via,
            ssh_cidrs: gce.ssh_cidrs.get_ref().clone(),
            api_cidrs: gce.api_cidrs.get_ref().clone(),
            api_port: gce.api_port,
            labels: gce.labels.clone(),
            max_parallel_creates: (*gce.max_parallel_creates.get_ref()).max(1) as usize,
            ttl: file.ttl(),
            ssh_user: file.ssh.user.clone(),
            machines,
        })
    }

    /// The machine of `pool` (masters' pool is `master`); the defaults for a pool not in the file
    /// (one being removed).
    pub fn machine(&self, pool: &str) -> MachineSpec {
        self.machines.get(pool).cloned().unwrap_or_default()
    }
}

/// The zones a host tries, in order: its index (`workers-3` → 3) picks the first, the others
/// follow (the fallback when a zone has no capacity).
pub fn zone_order(host: &str, zones: &[String]) -> Vec<String> {
    if zones.is_empty() {
        return Vec::new();
    }
    let first = gantry_provision::cloud::host_index(host) % zones.len();
    (0..zones.len()).map(|i| zones[(first + i) % zones.len()].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_spread_over_the_zones_and_fall_over_to_the_next() {
        let zones: Vec<String> = ["b", "c", "d"].iter().map(|z| format!("europe-west1-{z}")).collect();
        assert_eq!(zone_order("workers-0", &zones)[0], "europe-west1-b");
        assert_eq!(zone_order("workers-4", &zones), ["europe-west1-c", "europe-west1-d", "europe-west1-b"]);
        assert!(zone_order("workers-0", &[]).is_empty());
    }

    #[test]
    fn pools_take_their_machine_keys_and_masters_the_master_pool() {
        let text = "version = 1\n[cluster]\nname = \"s\"\nprovider = \"gce\"\n[gce]\nregion = \"europe-west1\"\n\
                    ssh_cidrs = [\"10.0.0.0/8\"]\napi_cidrs = [\"10.0.0.0/8\"]\n\
                    [[pool]]\nname = \"ctl\"\nrole = \"master\"\ncount = 1\nmachine_type = \"e2-small\"\n\
                    [[pool]]\nname = \"workers\"\ncount = 2\ndisk_gb = 30\nspot = true\n";
        let file = ClusterFile::parse(std::path::Path::new("s.toml"), text).expect("a valid file");
        let settings = GceSettings::from_cluster_file(&file).expect("[gce]");
        assert_eq!(settings.machine(MASTER_POOL).machine_type, "e2-small");
        let workers = settings.machine("workers");
        assert_eq!((workers.disk_gb, workers.spot, workers.image.as_str()), (30, true, gce_defaults::IMAGE));
        assert_eq!(settings.network, NetworkSpec::Create { cidr: gce_defaults::NETWORK_CIDR.to_string() });
        assert_eq!(settings.ssh_user, "root");
    }
}
