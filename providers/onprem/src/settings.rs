//! The cluster-wide SSH settings (`[ssh]`) and how they combine with one host's entry into the
//! [`SshSettings`] of its transport.

use crate::HostEntry;
use gantry_provision::cluster_file::{ClusterFile, SshSection};
use gantry_provision::transport::SshSettings;
use std::path::PathBuf;

/// `[ssh]` with its paths resolved against the cluster file.
#[derive(Debug, Clone)]
pub struct SshDefaults {
    section: SshSection,
    known_hosts_file: Option<PathBuf>,
}

impl SshDefaults {
    /// The defaults of a cluster file.
    pub fn from_cluster_file(file: &ClusterFile) -> Self {
        Self { section: file.ssh.clone(), known_hosts_file: file.ssh_known_hosts_file() }
    }

    /// The settings of the transport to `entry`.
    pub fn settings(&self, entry: &HostEntry) -> SshSettings {
        let mut s = SshSettings::from_section(entry.address.clone(), &self.section, entry.key_file.clone());
        s.port = entry.port;
        s.user = entry.user.clone();
        if let Some(known_hosts) = &self.known_hosts_file {
            s.known_hosts = known_hosts.clone();
        }
        s
    }
}
