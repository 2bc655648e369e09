//! SSH to a cloud provider's machines: one transport per host (kept while its address stays),
//! host keys learnt on first contact into the cluster's own known_hosts, each machine's private
//! address remembered so that hosts meet (and daemons listen) there while this machine may dial
//! a public one.

use crate::access::{DEFAULT_ROOT, HostAccess, HostLayout};
use crate::cluster_file::{ClusterFile, ConnectVia};
use crate::provider::{ErrorKind, HostDescription, ProviderError};
use crate::transport::{HostKeyPolicy, SshSettings, SshTransport, Sudo};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// SSH access to the machines of one cloud cluster. See the module docs.
#[derive(Debug)]
pub struct CloudHosts {
    provider: &'static str,
    ssh: SshSettings,
    connect_via: ConnectVia,
    api_port: u16,
    transports: Mutex<BTreeMap<String, (String, SshTransport)>>,
    private: Mutex<BTreeMap<String, String>>,
}

impl CloudHosts {
    /// Access for `provider`'s machines of `file`, with the cluster's key and known_hosts in
    /// `state_dir`: machines are new, so their host keys are learnt on first contact and then
    /// checked strictly (unless the file names a known_hosts file).
    pub fn new(
        provider: &'static str,
        file: &ClusterFile,
        state_dir: &Path,
        connect_via: ConnectVia,
        api_port: u16,
    ) -> Self {
        let mut ssh = SshSettings::from_section(String::new(), &file.ssh, Some(super::key_file(state_dir)));
        ssh.use_agent = false;
        ssh.known_hosts = file.ssh_known_hosts_file().unwrap_or_else(|| state_dir.join("known_hosts"));
        if file.ssh.known_hosts_file.is_none() {
            ssh.policy = HostKeyPolicy::AcceptNew;
        }
        if file.ssh.sudo {
            ssh.sudo = Some(Sudo::from_env());
        }
        Self {
            provider,
            ssh,
            connect_via,
            api_port,
            transports: Mutex::new(BTreeMap::new()),
            private: Mutex::new(BTreeMap::new()),
        }
    }

    /// The SSH port hosts are dialed at.
    pub fn ssh_port(&self) -> u16 {
        self.ssh.port
    }

    /// Remembers `host`'s private address (from a describe of its machine).
    pub fn remember_private(&self, host: &str, address: &str) {
        self.private.lock().unwrap_or_else(PoisonError::into_inner).insert(host.to_string(), address.to_string());
    }

    /// Forgets a destroyed host: its transport, and the host keys of `addresses` (an address may
    /// come back with another machine).
    pub fn forget(&self, host: &str, addresses: &[String]) {
        self.transports.lock().unwrap_or_else(PoisonError::into_inner).remove(host);
        self.private.lock().unwrap_or_else(PoisonError::into_inner).remove(host);
        forget_host_keys(&self.ssh.known_hosts, addresses);
    }

    /// How to reach and run `host` (the engine's `Connector::connect`).
    pub fn connect(&self, host: &HostDescription) -> Result<HostAccess, ProviderError> {
        let address = host.address.clone().ok_or_else(|| ProviderError::Call {
            provider: self.provider.to_string(),
            operation: "connect",
            host: host.name.clone(),
            kind: ErrorKind::Transient,
            message: "the machine has no address yet (with connect_via = \"public\", its public IP)".to_string(),
        })?;
        let private = self.private.lock().unwrap_or_else(PoisonError::into_inner).get(&host.name).cloned();
        let (inside, public) = match (self.connect_via, private) {
            (ConnectVia::Public, Some(private)) if private != address => (private, Some(address.clone())),
            _ => (address.clone(), None),
        };
        Ok(HostAccess {
            transport: Arc::new(self.transport(&host.name, &address)),
            layout: HostLayout::new(DEFAULT_ROOT),
            address: inside,
            public_address: public,
            api_port: self.api_port,
            use_systemd: true,
        })
    }

    fn transport(&self, name: &str, address: &str) -> SshTransport {
        let mut transports = self.transports.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((known, transport)) = transports.get(name)
            && known == address
        {
            return transport.clone();
        }
        let mut settings = self.ssh.clone();
        settings.address = address.to_string();
        let transport = SshTransport::new(name.to_string(), settings);
        transports.insert(name.to_string(), (address.to_string(), transport.clone()));
        transport
    }
}

/// Removes the known_hosts lines of `addresses`: a deleted machine's address may come back with
/// another machine (and another host key).
pub fn forget_host_keys(known_hosts: &Path, addresses: &[String]) {
    let Ok(text) = std::fs::read_to_string(known_hosts) else { return };
    let kept: String = text
        .lines()
        .filter(|line| {
            let hosts = line.split_whitespace().next().unwrap_or_default();
            !hosts.split(',').any(|h| addresses.iter().any(|a| a == h || h == format!("[{a}]:22")))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    if kept != text {
        let _ = std::fs::write(known_hosts, kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::HostState;

    #[test]
    fn public_machines_are_dialed_publicly_and_reach_each_other_privately() {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = "version = 1\n[cluster]\nname = \"c\"\nprovider = \"aws\"\n[aws]\nregion = \"eu-west-1\"\n\
                    ssh_cidrs = [\"203.0.113.7/32\"]\napi_cidrs = [\"203.0.113.7/32\"]\n";
        let file = ClusterFile::parse(&dir.path().join("c.toml"), text).expect("valid");
        let hosts = CloudHosts::new("aws", &file, dir.path(), ConnectVia::Public, 5050);
        hosts.remember_private("master-0", "10.0.0.4");
        let host = HostDescription {
            name: "master-0".to_string(),
            state: HostState::Running,
            address: Some("198.51.100.9".to_string()),
            attributes: BTreeMap::new(),
        };
        let access = hosts.connect(&host).expect("access");
        assert_eq!(access.address, "10.0.0.4", "daemons listen and hosts meet on the private address");
        assert_eq!(access.public_address.as_deref(), Some("198.51.100.9"));
        assert_eq!(access.master_url(), "https://10.0.0.4:5050", "what agents register with");
        assert_eq!(access.public_master_url(), "https://198.51.100.9:5050", "what this machine calls");
        let private = CloudHosts::new("aws", &file, dir.path(), ConnectVia::Private, 5050);
        let access = private.connect(&HostDescription { address: Some("10.0.0.4".into()), ..host }).expect("access");
        assert_eq!((access.address.as_str(), access.public_address), ("10.0.0.4", None));
    }

    #[test]
    fn forgotten_addresses_leave_other_host_keys() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("known_hosts");
        std::fs::write(&file, "10.0.0.4 ssh-ed25519 AAA\n10.0.0.5 ssh-ed25519 BBB\n[10.0.0.4]:22 ssh-ed25519 CCC\n")
            .expect("write");
        forget_host_keys(&file, &["10.0.0.4".to_string()]);
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "10.0.0.5 ssh-ed25519 BBB\n");
    }
}
