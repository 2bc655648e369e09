//! The cluster file: one TOML file that declares a cluster (provider, runtime settings, node pools,
//! SSH defaults and the workloads to deploy). This module owns the schema, its defaults and its
//! validation; it performs no provisioning. [`ClusterFile::load`] is the only entry point that
//! reads a file, and every error it returns names `file:line:column`, the key and a fix.
//!
//! Schema version 1. The master count lives only in `[runtime] masters`; `[[pool]]` entries
//! describe agents, and a pool with `role = "master"` only says on which kind of host masters go
//! (the master pools' counts must then add up to `runtime.masters`).

mod aws;
mod azure;
mod error;
mod gce;
mod onprem;
#[cfg(test)]
mod tests;
mod validate;

pub use aws::{AwsSection, ConnectVia, ImageRef, defaults as aws_defaults, parse_cidr};
pub use azure::{AzureSection, defaults as azure_defaults};
pub use error::ClusterFileError;
pub use gce::{GceSection, defaults as gce_defaults};
pub use onprem::{OnpremHost, OnpremSection, name_from_address};

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The only schema version this build understands.
pub const SCHEMA_VERSION: u32 = 1;

/// A parsed and validated cluster file. Fields that validation must point at keep their position
/// in the file ([`Spanned`]); read them with `get_ref()`, or use the accessors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// Schema version of the file; required, and must be `1`.
    pub version: Spanned<u32>,
    /// Name and provider of the cluster.
    pub cluster: ClusterSection,
    /// Settings of the cluster runtime (masters and agents).
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// Pools of hosts, `[[pool]]`; each host of a pool is named `<pool>-<index>`. Not with
    /// `onprem`, whose hosts are listed in `[[onprem.host]]`.
    #[serde(default, rename = "pool")]
    pub pools: Vec<Pool>,
    /// Settings of the `local` provider; allowed only with `provider = "local"`.
    #[serde(default)]
    pub local: Option<Spanned<LocalSection>>,
    /// The existing hosts of an `onprem` cluster; allowed only with `provider = "onprem"`.
    #[serde(default)]
    pub onprem: Option<Spanned<OnpremSection>>,
    /// Settings of the `aws` provider; required with `provider = "aws"`, allowed only then.
    #[serde(default)]
    pub aws: Option<Spanned<AwsSection>>,
    /// Settings of the `gce` provider; required with `provider = "gce"`, allowed only then.
    #[serde(default)]
    pub gce: Option<Spanned<GceSection>>,
    /// Settings of the `azure` provider; required with `provider = "azure"`, allowed only then.
    #[serde(default)]
    pub azure: Option<Spanned<AzureSection>>,
    /// SSH defaults for providers that reach their hosts over SSH.
    #[serde(default)]
    pub ssh: SshSection,
    /// Workloads deployed once the cluster is up, `[[workload]]`, in file order.
    #[serde(default, rename = "workload")]
    pub workloads: Vec<Spanned<Workload>>,
    /// The file this was read from (not a key of the file).
    #[serde(skip)]
    pub source: PathBuf,
}

/// `[cluster]`: what the cluster is called and who makes its hosts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Cluster name: a DNS label (1–63 of `a-z`, `0-9`, `-`; starts with a letter, does not end
    /// with `-`). It names the state dir and tags every host a provider creates.
    pub name: Spanned<String>,
    /// Which provider makes the hosts. Default `local`.
    #[serde(default = "default_provider")]
    pub provider: Spanned<ProviderKind>,
    /// How long the cluster may live, e.g. `"4h"` (cloud providers): every resource is tagged
    /// `gantry:expires-at`, and `gantry sweep` deletes it once that time has passed.
    #[serde(default)]
    pub ttl: Option<Spanned<HumanDuration>>,
}

/// The providers a cluster file may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Processes on this machine.
    Local,
    /// Hosts that already exist, reached over SSH.
    Onprem,
    /// Amazon EC2.
    Aws,
    /// Google Compute Engine.
    Gce,
    /// Azure virtual machines.
    Azure,
}

impl ProviderKind {
    /// The name used in cluster files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Onprem => "onprem",
            Self::Aws => "aws",
            Self::Gce => "gce",
            Self::Azure => "azure",
        }
    }

    /// Whether its hosts are cloud instances gantry creates (tagged, with a TTL).
    pub fn is_cloud(self) -> bool {
        matches!(self, Self::Aws | Self::Gce | Self::Azure)
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[runtime]`: settings of the masters and agents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// Number of masters: 1, or 3 or 5 for high availability. Default 1. The master count is
    /// declared here and nowhere else.
    #[serde(default = "default_masters")]
    pub masters: Spanned<u32>,
    /// How often agents heartbeat to the master, e.g. `"1s"`. Default 1s.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval: Spanned<HumanDuration>,
    /// An agent silent this long is marked unreachable and its tasks are replaced elsewhere;
    /// must be longer than `heartbeat_interval`. Default 3s.
    #[serde(default = "default_unreachable")]
    pub agent_unreachable_timeout: Spanned<HumanDuration>,
    /// The user tasks run as when their app or job names none. Default: `nobody` where the
    /// agent runs as root (every provider but `local`), the user running `gantry up` on `local`.
    #[serde(default)]
    pub task_user: Option<Spanned<String>>,
    /// The most processes (and threads) one task may have, 0 for no limit (`gantry agent
    /// --task-pids`). Absent: the agent's default, 4096.
    #[serde(default)]
    pub task_pids: Option<Spanned<u64>>,
    /// Size of each agent's image cache in GiB, above 0 (`--image-cache-gib`): above it, least
    /// recently used images no task uses are removed. Absent: the agent's default, 20.
    #[serde(default)]
    pub image_cache_gib: Option<Spanned<f64>>,
    /// Registries (`host[:port]`) the agents pull from over plain HTTP (`--insecure-registry`);
    /// loopback registries always are. Default: none.
    #[serde(default)]
    pub insecure_registries: Vec<Spanned<String>>,
    /// Whether agents remount their host's cgroup2 hierarchy with `favordynmods`
    /// (`--cgroup-favordynmods`): faster task launches, slightly slower forks host-wide.
    /// Default false.
    #[serde(default)]
    pub cgroup_favordynmods: bool,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        Self {
            masters: default_masters(),
            heartbeat_interval: default_heartbeat(),
            agent_unreachable_timeout: default_unreachable(),
            task_user: None,
            task_pids: None,
            image_cache_gib: None,
            insecure_registries: Vec::new(),
            cgroup_favordynmods: false,
        }
    }
}

/// What a host of a pool runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A master (state, allocator, API).
    Master,
    /// An agent (runs tasks). The default.
    #[default]
    Agent,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Master => "master",
            Self::Agent => "agent",
        })
    }
}

/// `[[pool]]`: a group of identical hosts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Pool name, unique in the file: a DNS label, not `master` (reserved for master hosts).
    /// Hosts are named `<name>-<index>`, index from 0.
    pub name: Spanned<String>,
    /// Number of hosts (0 or more). Default 1.
    #[serde(default = "default_count")]
    pub count: Spanned<u32>,
    /// `agent` (default) or `master`; master pools only place the `runtime.masters` masters.
    #[serde(default = "default_role")]
    pub role: Spanned<Role>,
    /// Resources each agent offers, in the agent's text form
    /// `cpus=2;mem=2048;disk=10000;ports=[31000-31999]`; absent = detected on the host.
    #[serde(default)]
    pub resources: Option<Spanned<String>>,
    /// Attributes each agent reports (e.g. `zone = "a"`), used by placement constraints.
    /// `{index}` in a value is replaced by the host's index in the pool (`zone = "z{index}"`).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// aws: the instance type, e.g. `t3.medium` (the default).
    #[serde(default)]
    pub instance_type: Option<Spanned<String>>,
    /// gce: the machine type, e.g. `e2-medium` (the default).
    #[serde(default)]
    pub machine_type: Option<Spanned<String>>,
    /// azure: the VM size, e.g. `Standard_B2s` (the default).
    #[serde(default)]
    pub vm_size: Option<Spanned<String>>,
    /// Cloud providers: the image; on aws an AMI id or `{ owner = "…", name = "…-*" }` (the
    /// newest match), on gce an image path or URL, on azure `{ publisher, offer, sku, version }`.
    /// Default Debian 12 (amd64).
    #[serde(default)]
    pub image: Option<Spanned<ImageRef>>,
    /// aws: size of the root volume in GiB. Default 20.
    #[serde(default)]
    pub root_volume_gb: Option<Spanned<u32>>,
    /// gce and azure: size of the boot (OS) disk in GB. Default 20 on gce, 30 on azure.
    #[serde(default)]
    pub disk_gb: Option<Spanned<u32>>,
    /// Cloud providers: ask for spot instances. Default false.
    #[serde(default)]
    pub spot: Option<Spanned<bool>>,
}

impl Pool {
    /// The first cloud machine key the pool sets (`instance_type`, `image`, …), with its
    /// position: the keys other providers refuse.
    pub fn machine_key(&self) -> Option<(&'static str, std::ops::Range<usize>)> {
        self.machine_keys().into_iter().next()
    }

    /// Every cloud machine key the pool sets, with its position, in file order of the schema.
    pub fn machine_keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let strings =
            [("instance_type", &self.instance_type), ("machine_type", &self.machine_type), ("vm_size", &self.vm_size)];
        let numbers = [("root_volume_gb", &self.root_volume_gb), ("disk_gb", &self.disk_gb)];
        let mut keys: Vec<_> = strings.into_iter().filter_map(|(k, v)| v.as_ref().map(|v| (k, v.span()))).collect();
        keys.extend(self.image.as_ref().map(|v| ("image", v.span())));
        keys.extend(numbers.into_iter().filter_map(|(k, v)| v.as_ref().map(|v| (k, v.span()))));
        keys.extend(self.spot.as_ref().map(|v| ("spot", v.span())));
        keys
    }
}

/// `[local]`: the local provider runs the master and agents as processes on this machine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSection {
    /// First port of the agents' port ranges; agent `i` offers `ports_per_agent` ports from
    /// `port_base + i * ports_per_agent`. Default 31000.
    #[serde(default = "default_port_base")]
    pub port_base: u16,
    /// Ports offered by each agent (at least 1). Default 500.
    #[serde(default = "default_ports_per_agent")]
    pub ports_per_agent: u16,
    /// Port of the master's API on 127.0.0.1; 0 picks a free port at `up`. Default 5050.
    #[serde(default = "default_api_port")]
    pub api_port: u16,
}

impl Default for LocalSection {
    fn default() -> Self {
        Self {
            port_base: default_port_base(),
            ports_per_agent: default_ports_per_agent(),
            api_port: default_api_port(),
        }
    }
}

/// `[ssh]`: defaults for hosts reached over SSH (`onprem` and the clouds).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSection {
    /// Login user. Default `root`.
    #[serde(default = "default_ssh_user")]
    pub user: String,
    /// Private key file, relative to the cluster file unless absolute; absent = the SSH agent
    /// and the user's default keys. See [`ClusterFile::ssh_key_file`].
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Port of sshd. Default 22.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Host key policy: `strict` (default; the key must already be known) or `accept-new`
    /// (trust on first use, then strict).
    #[serde(default)]
    pub known_hosts: KnownHosts,
    /// The OpenSSH known_hosts file checked (and appended to under `accept-new`), relative to the
    /// cluster file unless absolute. Default `~/.ssh/known_hosts`.
    #[serde(default)]
    pub known_hosts_file: Option<PathBuf>,
    /// Run every command through `sudo` (a login user that is not root): without a password
    /// (NOPASSWD), or with the one in `GANTRY_SUDO_PASSWORD`. Default false.
    #[serde(default)]
    pub sudo: bool,
    /// A jump host, `[ssh.bastion]`: hosts are reached through it (SSH direct-tcpip), and so is
    /// the master's API.
    #[serde(default)]
    pub bastion: Option<Spanned<Bastion>>,
    /// Give up connecting after this long, e.g. `"10s"`. Default 10s.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Spanned<HumanDuration>,
    /// Hosts bootstrapped at once (at least 1). Default 50.
    #[serde(default = "default_parallelism")]
    pub parallelism: Spanned<u32>,
}

impl Default for SshSection {
    fn default() -> Self {
        Self {
            user: default_ssh_user(),
            key_file: None,
            port: default_ssh_port(),
            known_hosts: KnownHosts::default(),
            known_hosts_file: None,
            sudo: false,
            bastion: None,
            connect_timeout: default_connect_timeout(),
            parallelism: default_parallelism(),
        }
    }
}

/// `[ssh.bastion]`: the jump host every SSH connection (and the master API) goes through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bastion {
    /// IP address or DNS name of the bastion.
    pub address: String,
    /// Port of its sshd. Default 22.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Login user on the bastion; default `[ssh] user`.
    #[serde(default)]
    pub user: Option<String>,
    /// Private key for the bastion (relative to the cluster file); default `[ssh] key_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// SSH host key policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KnownHosts {
    /// Refuse hosts whose key is not already known.
    #[default]
    Strict,
    /// Accept and remember a host's key the first time, then be strict.
    AcceptNew,
}

/// `[[workload]]`: one workload file to deploy once the cluster is up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// An app file (TOML or JSON), relative to the cluster file.
    #[serde(default)]
    pub app: Option<Spanned<String>>,
    /// A job file, relative to the cluster file (accepted by the schema; jobs are not deployable
    /// yet, so validation rejects it).
    #[serde(default)]
    pub job: Option<Spanned<String>>,
}

/// A duration written as text, e.g. `"1s"`, `"500ms"`, `"2m"` (humantime syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim())
            .map(HumanDuration)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration `{text}`: {e}")))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl ClusterFile {
    /// Reads, parses and validates a cluster file. Workload paths are resolved against the
    /// file's directory and each workload file is parsed too.
    pub fn load(path: &Path) -> Result<Self, ClusterFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ClusterFileError::Io { path: path.display().to_string(), source })?;
        Self::parse(path, &text)
    }

    /// Parses and validates cluster-file text; `path` names the file in errors and is the base of
    /// relative workload paths.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ClusterFileError> {
        let mut file: ClusterFile =
            toml::from_str(text).map_err(|e| ClusterFileError::from_toml(&path.display().to_string(), text, &e))?;
        file.source = path.to_path_buf();
        validate::validate(&file, text)?;
        Ok(file)
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        self.cluster.name.get_ref()
    }

    /// The provider that makes the hosts.
    pub fn provider(&self) -> ProviderKind {
        *self.cluster.provider.get_ref()
    }

    /// Number of masters.
    pub fn masters(&self) -> u32 {
        *self.runtime.masters.get_ref()
    }

    /// Settings of the local provider (defaults when the section is absent).
    pub fn local(&self) -> LocalSection {
        self.local.as_ref().map(|l| l.get_ref().clone()).unwrap_or_default()
    }

    /// Directory that relative paths in the file are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.source.parent().unwrap_or_else(|| Path::new("."))
    }

    /// The `[ssh] key_file`, resolved against [`Self::base_dir`].
    pub fn ssh_key_file(&self) -> Option<PathBuf> {
        self.ssh.key_file.as_ref().map(|k| self.base_dir().join(k))
    }

    /// The `[ssh] known_hosts_file`, resolved against [`Self::base_dir`].
    pub fn ssh_known_hosts_file(&self) -> Option<PathBuf> {
        self.ssh.known_hosts_file.as_ref().map(|k| self.base_dir().join(k))
    }

    /// `path` resolved against [`Self::base_dir`] (absolute paths stay as they are).
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir().join(path)
    }

    /// The `[aws]` section; `None` unless the provider is aws (validation requires it then).
    pub fn aws(&self) -> Option<&AwsSection> {
        self.aws.as_ref().map(Spanned::get_ref)
    }

    /// The `[gce]` section, if any.
    pub fn gce(&self) -> Option<&GceSection> {
        self.gce.as_ref().map(Spanned::get_ref)
    }

    /// The `[azure]` section, if any.
    pub fn azure(&self) -> Option<&AzureSection> {
        self.azure.as_ref().map(Spanned::get_ref)
    }

    /// The cluster's time to live (`[cluster] ttl`), if any.
    pub fn ttl(&self) -> Option<Duration> {
        self.cluster.ttl.as_ref().map(|t| t.get_ref().0)
    }

    /// The `[onprem]` section (defaults, with no hosts, when absent).
    pub fn onprem(&self) -> OnpremSection {
        self.onprem.as_ref().map(|o| o.get_ref().clone()).unwrap_or_default()
    }

    /// App files to deploy, resolved against [`Self::base_dir`], in file order.
    pub fn app_files(&self) -> Vec<PathBuf> {
        self.workloads
            .iter()
            .filter_map(|w| w.get_ref().app.as_ref())
            .map(|a| self.base_dir().join(a.get_ref()))
            .collect()
    }

    /// The job files of `[[workload]]` entries, resolved against the cluster file's directory.
    pub fn job_files(&self) -> Vec<PathBuf> {
        self.workloads
            .iter()
            .filter_map(|w| w.get_ref().job.as_ref())
            .map(|j| self.base_dir().join(j.get_ref()))
            .collect()
    }
}

fn default_provider() -> Spanned<ProviderKind> {
    Spanned::new(0..0, ProviderKind::Local)
}
fn default_masters() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}
fn default_heartbeat() -> Spanned<HumanDuration> {
    Spanned::new(0..0, HumanDuration(Duration::from_secs(1)))
}
fn default_unreachable() -> Spanned<HumanDuration> {
    Spanned::new(0..0, HumanDuration(Duration::from_secs(3)))
}
fn default_count() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}
fn default_role() -> Spanned<Role> {
    Spanned::new(0..0, Role::Agent)
}
fn default_port_base() -> u16 {
    31000
}
fn default_ports_per_agent() -> u16 {
    500
}
fn default_api_port() -> u16 {
    5050
}
fn default_ssh_user() -> String {
    "root".to_string()
}
fn default_ssh_port() -> u16 {
    22
}
fn default_connect_timeout() -> Spanned<HumanDuration> {
    Spanned::new(0..0, HumanDuration(Duration::from_secs(10)))
}
fn default_parallelism() -> Spanned<u32> {
    Spanned::new(0..0, 50)
}
