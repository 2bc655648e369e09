//! `[aws]` and the machine keys of `[[pool]]` for `provider = "aws"`: where the cluster's network
//! goes (a new VPC, or an existing one), who may reach SSH and the API, and what each pool's
//! instances are. The provider itself lives in `providers/aws`; this is only the schema.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

/// The defaults of `[aws]` and of the pools' machine keys.
pub mod defaults {
    /// The VPC CIDR when the file names none.
    pub const VPC_CIDR: &str = "10.0.0.0/16";
    /// The instance type of a pool that names none.
    pub const INSTANCE_TYPE: &str = "t3.medium";
    /// Debian's own AWS account, which publishes the official Debian AMIs.
    pub const DEBIAN_OWNER: &str = "136693071363";
    /// The image of a pool that names none: the newest official Debian 12 for amd64.
    pub const IMAGE_NAME: &str = "debian-12-amd64-*";
    /// The root volume of a pool that names none, in GiB.
    pub const ROOT_VOLUME_GB: u32 = 20;
}

/// `[aws]`: the settings of an `aws` cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    /// The region, e.g. `eu-west-1`.
    pub region: Spanned<String>,
    /// The EC2 endpoint (an emulator, a VPC endpoint); else `AWS_ENDPOINT_URL`, else AWS's own.
    #[serde(default)]
    pub endpoint_url: Option<Spanned<String>>,
    /// The CIDR of the VPC gantry creates; split evenly into one subnet per zone. Default
    /// `10.0.0.0/16`. Not with `vpc_id`.
    #[serde(default)]
    pub vpc_cidr: Option<Spanned<String>>,
    /// An existing VPC to use instead of creating one (with `subnet_ids`); `down` leaves it.
    #[serde(default)]
    pub vpc_id: Option<Spanned<String>>,
    /// Existing subnets of `vpc_id`, one or more; pools spread across them.
    #[serde(default)]
    pub subnet_ids: Vec<Spanned<String>>,
    /// Zones to spread pools across, e.g. `["eu-west-1a", "eu-west-1b"]`. Default: every zone of
    /// the region that is available.
    #[serde(default)]
    pub zones: Vec<Spanned<String>>,
    /// How this machine reaches the instances: `public` (their public IPs; default) or `private`
    /// (their private IPs: this machine is in or routed to the VPC; `[ssh.bastion]` is not
    /// supported with aws yet).
    #[serde(default)]
    pub connect_via: ConnectVia,
    /// Who may reach SSH (port 22): CIDRs such as `["203.0.113.7/32"]`. Required: there is no
    /// open default.
    pub ssh_cidrs: Spanned<Vec<String>>,
    /// Who may reach the master API: CIDRs. Required: there is no open default.
    pub api_cidrs: Spanned<Vec<String>>,
    /// Tags put on every resource, beside gantry's own `gantry:*` tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Instances requested at once (RunInstances calls in flight). Default 10.
    #[serde(default = "default_max_parallel_creates")]
    pub max_parallel_creates: Spanned<u32>,
    /// Port of the master's API. Default 5050.
    #[serde(default = "default_api_port")]
    pub api_port: u16,
}

/// How this machine reaches the instances of an `aws` cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectVia {
    /// Their public IP addresses.
    #[default]
    Public,
    /// Their private IP addresses.
    Private,
}

/// A pool's `image`. On aws an AMI id, or the newest image matching an owner and a name
/// pattern; on gce an image path or URL (`projects/debian-cloud/global/images/family/debian-12`);
/// on azure a marketplace image (`{ publisher, offer, sku, version }`, or the URN
/// `"Publisher:Offer:Sku:Version"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ImageRef {
    /// An AMI id, e.g. `ami-0123456789abcdef0`.
    Id(String),
    /// The newest image of `owner` whose name matches `name` (`*` wildcards), e.g.
    /// `{ owner = "136693071363", name = "debian-12-amd64-*" }`.
    Search {
        /// An account id, or an alias such as `amazon`.
        owner: String,
        /// The name pattern.
        name: String,
    },
    /// An Azure marketplace image, e.g.
    /// `{ publisher = "Debian", offer = "debian-12", sku = "12", version = "latest" }`.
    Marketplace {
        /// The publisher, e.g. `Debian`.
        publisher: String,
        /// The offer, e.g. `debian-12`.
        offer: String,
        /// The SKU, e.g. `12`.
        sku: String,
        /// The version; default `latest`.
        #[serde(default = "latest")]
        version: String,
    },
}

fn latest() -> String {
    "latest".to_string()
}

impl ImageRef {
    /// An Azure image as publisher, offer, SKU and version: a marketplace table, or a URN
    /// `Publisher:Offer:Sku:Version` given as a string.
    pub fn marketplace(&self) -> Option<(String, String, String, String)> {
        match self {
            Self::Marketplace { publisher, offer, sku, version } => {
                Some((publisher.clone(), offer.clone(), sku.clone(), version.clone()))
            }
            Self::Id(urn) => match urn.split(':').collect::<Vec<_>>()[..] {
                [p, o, s, v] if [p, o, s, v].iter().all(|part| !part.is_empty()) => {
                    Some((p.to_string(), o.to_string(), s.to_string(), v.to_string()))
                }
                _ => None,
            },
            Self::Search { .. } => None,
        }
    }
}

impl Default for ImageRef {
    fn default() -> Self {
        Self::Search { owner: defaults::DEBIAN_OWNER.to_string(), name: defaults::IMAGE_NAME.to_string() }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => f.write_str(id),
            Self::Search { owner, name } => write!(f, "newest `{name}` of {owner}"),
            Self::Marketplace { publisher, offer, sku, version } => write!(f, "{publisher}:{offer}:{sku}:{version}"),
        }
    }
}

pub(super) fn default_max_parallel_creates() -> Spanned<u32> {
    Spanned::new(0..0, 10)
}

pub(super) fn default_api_port() -> u16 {
    crate::access::DEFAULT_API_PORT
}

/// An IPv4 CIDR `a.b.c.d/n`, checked: the address and its prefix length, with no host bits set.
pub fn parse_cidr(text: &str) -> Result<(std::net::Ipv4Addr, u8), String> {
    let (address, len) =
        text.split_once('/').ok_or_else(|| format!("`{text}` is not a CIDR (write it as a.b.c.d/n)"))?;
    let address: std::net::Ipv4Addr =
        address.parse().map_err(|_| format!("`{address}` in `{text}` is not an IPv4 address"))?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32).ok_or_else(|| format!("`/{len}` is not a prefix length"))?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
    if u32::from(address) & !mask != 0 {
        return Err(format!(
            "`{text}` has host bits set (did you mean {}/{len}?)",
            std::net::Ipv4Addr::from(u32::from(address) & mask)
        ));
    }
    Ok((address, len))
}
