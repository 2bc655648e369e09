//! The desired hosts of a cluster file: names, roles, pools and the settings that, when changed,
//! require reconfiguring a host.

use crate::cluster_file::{ClusterFile, ProviderKind, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Settings of a host that require reconfiguring it when they change: setting → value. Recorded
/// in the journal at bootstrap; the planner compares them key by key, so a plan says what changed.
pub type HostSettings = BTreeMap<String, String>;

/// A host the cluster file asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredHost {
    /// `master-<index>` for masters, `<pool>-<index>` for agents.
    pub name: String,
    /// Master or agent.
    pub role: Role,
    /// Pool it belongs to (`master` for masters outside any master pool).
    pub pool: String,
    /// Resources from its pool, in the agent's text form; `None` = detected on the host.
    pub resources: Option<String>,
    /// Attributes from its pool, with `{index}` replaced by its index in the pool.
    pub attributes: BTreeMap<String, String>,
    /// The settings that require reconfiguring it when they change (resources and attributes
    /// among them).
    pub settings: HostSettings,
}

/// Every host a cluster should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Cluster name.
    pub cluster: String,
    /// The cluster file (for messages).
    pub source: String,
    /// Hosts, masters first.
    pub hosts: Vec<DesiredHost>,
}

impl Desired {
    /// Adds `key = value` to every host's settings: something outside the cluster file that,
    /// when it changes, requires reconfiguring every host (`up` adds the gantry binary's identity,
    /// so a new build is rolled out).
    pub fn with_setting(mut self, key: &str, value: &str) -> Self {
        for host in &mut self.hosts {
            host.settings.insert(key.to_string(), value.to_string());
        }
        self
    }

    /// No hosts at all: what `down` plans towards.
    pub fn empty(cluster: &str, source: &str) -> Self {
        Self { cluster: cluster.to_string(), source: source.to_string(), hosts: Vec::new() }
    }

    /// The hosts a validated cluster file declares. Masters are `master-0..runtime.masters`,
    /// placed on the master pools in file order when there are any; agents are `<pool>-<i>`.
    pub fn from_cluster_file(file: &ClusterFile) -> Self {
        let rt = &file.runtime;
        let mut runtime = format!(
            "masters={};heartbeat_interval={};agent_unreachable_timeout={}",
            file.masters(),
            rt.heartbeat_interval.get_ref(),
            rt.agent_unreachable_timeout.get_ref()
        );
        runtime.push_str(&agent_options(file));
        if file.provider() == ProviderKind::Onprem {
            return Self::from_onprem(file, &runtime);
        }
        let local = (file.provider() == ProviderKind::Local).then(|| file.local());
        let mut hosts = Vec::new();
        let master_pools: Vec<_> = file.pools.iter().filter(|p| *p.role.get_ref() == Role::Master).collect();
        if master_pools.is_empty() {
            for i in 0..file.masters() {
                hosts.push(host(format!("master-{i}"), Role::Master, "master", i, None, &BTreeMap::new(), &runtime));
            }
        } else {
            let mut next = 0;
            for pool in master_pools {
                for i in 0..*pool.count.get_ref() {
                    let resources = pool.resources.as_ref().map(|r| r.get_ref().as_str());
                    let name = format!("master-{next}");
                    hosts.push(host(name, Role::Master, pool.name.get_ref(), i, resources, &pool.attributes, &runtime));
                    next += 1;
                }
            }
        }
        if let (Some(local), Some(first)) = (&local, hosts.first_mut()) {
            first.settings.insert("api_port".to_string(), local.api_port.to_string());
        }
        let mut agent = 0u32;
        for pool in file.pools.iter().filter(|p| *p.role.get_ref() == Role::Agent) {
            let name = pool.name.get_ref();
            for i in 0..*pool.count.get_ref() {
                let resources = pool.resources.as_ref().map(|r| r.get_ref().as_str());
                let mut h = host(format!("{name}-{i}"), Role::Agent, name, i, resources, &pool.attributes, &runtime);
                if let Some(local) = &local {
                    let begin = u32::from(local.port_base) + agent * u32::from(local.ports_per_agent);
                    let end = begin + u32::from(local.ports_per_agent).saturating_sub(1);
                    h.settings.insert("ports".to_string(), format!("[{begin}-{end}]"));
                }
                hosts.push(h);
                agent += 1;
            }
        }
        Self { cluster: file.name().to_string(), source: file.source.display().to_string(), hosts }
    }
}

impl Desired {
    /// The hosts of an `onprem` file, in file order with masters first. Where and how a host is
    /// reached (user, address, port, sudo) and the install dir are settings: changing them
    /// reconfigures the host.
    fn from_onprem(file: &ClusterFile, runtime: &str) -> Self {
        let onprem = file.onprem();
        let mut masters = Vec::new();
        let mut agents = Vec::new();
        for entry in &onprem.hosts {
            let h = entry.get_ref();
            let role = *h.role.get_ref();
            let name = h.cluster_name(masters.len());
            let resources = h.resources.as_ref().map(|r| r.get_ref().as_str());
            let mut desired = host(name, role, "onprem", 0, resources, &h.attributes, runtime);
            let user = h.user.clone().unwrap_or_else(|| file.ssh.user.clone());
            let port = h.port.unwrap_or(file.ssh.port);
            let settings = &mut desired.settings;
            settings.insert("ssh".to_string(), format!("{user}@{}:{port}", h.address.get_ref()));
            settings.insert("sudo".to_string(), h.sudo.unwrap_or(file.ssh.sudo).to_string());
            settings.insert("install_dir".to_string(), onprem.install_dir.get_ref().clone());
            if role == Role::Master {
                settings.insert("api_port".to_string(), onprem.api_port.to_string());
                masters.push(desired);
            } else {
                agents.push(desired);
            }
        }
        masters.extend(agents);
        Self { cluster: file.name().to_string(), source: file.source.display().to_string(), hosts: masters }
    }
}

/// The agent options the file sets, as `;key=value` each (nothing for those left at the agent's
/// default, so files that set none keep the settings hosts were bootstrapped with).
fn agent_options(file: &ClusterFile) -> String {
    let rt = &file.runtime;
    let mut options = String::new();
    if let Some(user) = &rt.task_user {
        options.push_str(&format!(";task_user={}", user.get_ref()));
    }
    if let Some(pids) = &rt.task_pids {
        options.push_str(&format!(";task_pids={}", pids.get_ref()));
    }
    if let Some(gib) = &rt.image_cache_gib {
        options.push_str(&format!(";image_cache_gib={}", gib.get_ref()));
    }
    if !rt.insecure_registries.is_empty() {
        let registries: Vec<&str> = rt.insecure_registries.iter().map(|r| r.get_ref().as_str()).collect();
        options.push_str(&format!(";insecure_registries={}", registries.join(",")));
    }
    if rt.cgroup_favordynmods {
        options.push_str(";cgroup_favordynmods=true");
    }
    options
}

fn host(
    name: String,
    role: Role,
    pool: &str,
    index: u32,
    resources: Option<&str>,
    attributes: &BTreeMap<String, String>,
    runtime: &str,
) -> DesiredHost {
    let attributes: BTreeMap<String, String> =
        attributes.iter().map(|(k, v)| (k.clone(), v.replace("{index}", &index.to_string()))).collect();
    let mut settings = HostSettings::new();
    settings.insert("runtime".to_string(), runtime.to_string());
    settings.insert("resources".to_string(), resources.unwrap_or("detect").to_string());
    let text: Vec<String> = attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    settings.insert("attributes".to_string(), text.join(";"));
    DesiredHost { name, role, pool: pool.to_string(), resources: resources.map(str::to_string), attributes, settings }
}
