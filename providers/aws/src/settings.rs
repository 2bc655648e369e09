//! What the aws provider takes from a cluster file: `[aws]`, each pool's machine keys, the TTL
//! and the SSH settings its hosts are reached with.

use gantry_provision::cluster_file::{AwsSection, ClusterFile, ConnectVia, ImageRef, Role, parse_cidr};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// The settings of one cluster on AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// The region.
    pub region: String,
    /// The EC2 endpoint, when not AWS's own (also `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    /// The network: one gantry makes, or one that exists.
    pub network: NetworkSpec,
    /// Zones to spread across; empty = every available zone of the region.
    pub zones: Vec<String>,
    /// Public or private addresses.
    pub connect_via: ConnectVia,
    /// Who may reach SSH.
    pub ssh_cidrs: Vec<String>,
    /// Who may reach the API.
    pub api_cidrs: Vec<String>,
    /// The master API's port.
    pub api_port: u16,
    /// The user's own tags.
    pub tags: BTreeMap<String, String>,
    /// RunInstances calls in flight at once.
    pub max_parallel_creates: usize,
    /// How long the cluster may live.
    pub ttl: Option<Duration>,
    /// Machine settings per pool name (masters: `master`).
    pub machines: BTreeMap<String, MachineSpec>,
}

/// The network of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkSpec {
    /// gantry makes a VPC with this CIDR, split into one subnet per zone, and deletes it on `down`.
    Create {
        /// The VPC's CIDR.
        cidr: String,
    },
    /// An existing VPC and subnets; `down` leaves them.
    Existing {
        /// The VPC.
        vpc_id: String,
        /// Its subnets to use.
        subnet_ids: Vec<String>,
    },
}

/// What one pool's instances are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    /// The instance type.
    pub instance_type: String,
    /// The image.
    pub image: ImageRef,
    /// The root volume in GiB.
    pub root_volume_gb: u32,
    /// Spot or on-demand.
    pub spot: bool,
}

impl Default for MachineSpec {
    fn default() -> Self {
        Self {
            instance_type: gantry_provision::cluster_file::aws_defaults::INSTANCE_TYPE.to_string(),
            image: ImageRef::default(),
            root_volume_gb: gantry_provision::cluster_file::aws_defaults::ROOT_VOLUME_GB,
            spot: false,
        }
    }
}

/// The pool name masters are keyed by in [`AwsSettings::machines`] when no master pool names one.
pub const MASTER_POOL: &str = "master";

impl AwsSettings {
    /// The settings of a validated `aws` cluster file.
    pub fn from_cluster_file(file: &ClusterFile) -> Option<Self> {
        let aws: &AwsSection = file.aws()?;
        let network = match &aws.vpc_id {
            Some(id) => NetworkSpec::Existing {
                vpc_id: id.get_ref().clone(),
                subnet_ids: aws.subnet_ids.iter().map(|s| s.get_ref().clone()).collect(),
            },
            None => NetworkSpec::Create {
                cidr: aws.vpc_cidr.as_ref().map_or_else(
                    || gantry_provision::cluster_file::aws_defaults::VPC_CIDR.to_string(),
                    |c| c.get_ref().clone(),
                ),
            },
        };
        let mut machines = BTreeMap::new();
        for pool in &file.pools {
            let mut spec = MachineSpec::default();
            if let Some(t) = &pool.instance_type {
                spec.instance_type = t.get_ref().clone();
            }
            if let Some(i) = &pool.image {
                spec.image = i.get_ref().clone();
            }
            if let Some(gb) = &pool.root_volume_gb {
                spec.root_volume_gb = *gb.get_ref();
            }
            if let Some(spot) = &pool.spot {
                spec.spot = *spot.get_ref();
            }
            let key = if *pool.role.get_ref() == Role::Master { MASTER_POOL } else { pool.name.get_ref().as_str() };
            machines.entry(key.to_string()).or_insert(spec);
        }
        Some(Self {
            region: aws.region.get_ref().clone(),
            endpoint_url: aws.endpoint_url.as_ref().map(|u| u.get_ref().clone()),
            network,
            zones: aws.zones.iter().map(|z| z.get_ref().clone()).collect(),
            connect_via: aws.connect_via,
            ssh_cidrs: aws.ssh_cidrs.get_ref().clone(),
            api_cidrs: aws.api_cidrs.get_ref().clone(),
            api_port: aws.api_port,
            tags: aws.tags.clone(),
            max_parallel_creates: (*aws.max_parallel_creates.get_ref()).max(1) as usize,
            ttl: file.ttl(),
            machines,
        })
    }

    /// The machine of `pool` (masters' pool is `master`); the defaults for a pool not in the file
    /// (one being removed).
    pub fn machine(&self, pool: &str) -> MachineSpec {
        self.machines.get(pool).cloned().unwrap_or_default()
    }
}

/// `cidr` split into `parts` equal subnets (rounded up to a power of two), the first `parts` of
/// them. `None` when they would be smaller than AWS's smallest subnet (/28).
pub fn split_cidr(cidr: &str, parts: usize) -> Option<Vec<String>> {
    let (base, len) = parse_cidr(cidr).ok()?;
    let bits = parts.max(1).next_power_of_two().trailing_zeros() as u8;
    let sub_len = len.checked_add(bits).filter(|l| *l <= 28)?;
    let size = 1u32 << (32 - u32::from(sub_len));
    Some(
        (0..parts.max(1)).map(|i| format!("{}/{sub_len}", Ipv4Addr::from(u32::from(base) + size * i as u32))).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_split_evenly_into_powers_of_two() {
        assert_eq!(
            split_cidr("10.0.0.0/16", 3),
            Some(vec!["10.0.0.0/18".to_string(), "10.0.64.0/18".to_string(), "10.0.128.0/18".to_string()])
        );
        assert_eq!(split_cidr("10.77.5.0/24", 1), Some(vec!["10.77.5.0/24".to_string()]));
        assert_eq!(split_cidr("10.77.5.0/24", 4).map(|v| v[3].clone()), Some("10.77.5.192/26".to_string()));
        assert_eq!(split_cidr("10.77.5.0/27", 4), None, "a /29 subnet is below AWS's smallest");
    }
}
