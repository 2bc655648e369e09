//! `[onprem]` and `[[onprem.host]]`: hosts that already exist (racks, VMs made elsewhere), listed
//! one by one and reached over SSH. Per-host keys override the `[ssh]` defaults.

use super::Role;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use toml::Spanned;

/// `[onprem]`: the existing hosts of an `onprem` cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnpremSection {
    /// Port of the master's API on the master host. Default 5050.
    #[serde(default = "default_api_port")]
    pub api_port: u16,
    /// Where gantry keeps its files on every host (binary, config, state, task sandboxes); `down`
    /// removes it. An absolute path, not `/`. Default `/opt/gantry`.
    #[serde(default = "default_install_dir")]
    pub install_dir: Spanned<String>,
    /// The hosts, `[[onprem.host]]`.
    #[serde(default, rename = "host")]
    pub hosts: Vec<Spanned<OnpremHost>>,
}

/// `[[onprem.host]]`: one existing host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnpremHost {
    /// IP address or DNS name the provisioner connects to over SSH; masters also serve the API
    /// on it and agents register from it.
    pub address: Spanned<String>,
    /// Host name in the cluster (a DNS label). Masters are always `master-0`, `master-1`, …;
    /// an agent's default is derived from its address (`10.0.0.7` → `host-10-0-0-7`,
    /// `node7.dc.example` → `node7-dc-example`).
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// `agent` (default) or `master`.
    #[serde(default = "default_role")]
    pub role: Spanned<Role>,
    /// Port of sshd; default `[ssh] port`.
    #[serde(default)]
    pub port: Option<u16>,
    /// Login user; default `[ssh] user`.
    #[serde(default)]
    pub user: Option<String>,
    /// Private key file (relative to the cluster file); default `[ssh] key_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Run every command through `sudo` (for a login user that is not root); default `[ssh] sudo`.
    #[serde(default)]
    pub sudo: Option<bool>,
    /// Resources the agent offers, in the agent's text form; absent = detected on the host.
    #[serde(default)]
    pub resources: Option<Spanned<String>>,
    /// Attributes the agent reports (e.g. `rack = "r1"`), used by placement constraints.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl OnpremHost {
    /// The host's name in the cluster: `master-<index among masters>` for masters, else `name`
    /// or the name derived from the address.
    pub fn cluster_name(&self, master_index: usize) -> String {
        match (*self.role.get_ref(), &self.name) {
            (Role::Master, _) => format!("master-{master_index}"),
            (Role::Agent, Some(name)) => name.get_ref().clone(),
            (Role::Agent, None) => name_from_address(self.address.get_ref()),
        }
    }
}

/// A DNS label from an address: lowercase, every other character `-`, `host-` in front when it
/// does not start with a letter, at most 63 characters.
pub fn name_from_address(address: &str) -> String {
    let mut name: String =
        address.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    name = name.trim_matches('-').to_string();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name = format!("host-{name}");
    }
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

impl Default for OnpremSection {
    fn default() -> Self {
        Self { api_port: default_api_port(), install_dir: default_install_dir(), hosts: Vec::new() }
    }
}

fn default_api_port() -> u16 {
    5050
}
fn default_install_dir() -> Spanned<String> {
    Spanned::new(0..0, "/opt/gantry".to_string())
}
fn default_role() -> Spanned<Role> {
    Spanned::new(0..0, Role::Agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_addresses_are_dns_labels() {
        assert_eq!(name_from_address("10.0.0.7"), "host-10-0-0-7");
        assert_eq!(name_from_address("Node7.DC.example"), "node7-dc-example");
        assert_eq!(name_from_address("fd00::1"), "fd00-1");
        assert_eq!(name_from_address("::1"), "host-1");
        assert!(name_from_address(&"a.".repeat(50)).len() <= 63);
        assert!(!name_from_address(&"a.".repeat(50)).ends_with('-'));
    }
}
