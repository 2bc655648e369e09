//! The `onprem` provider: hosts that already exist — racks, VMs made by someone else — listed in
//! `[[onprem.host]]` and reached over SSH with an [`SshTransport`].
//!
//! It cannot make or destroy machines, so "create" **adopts** a listed host and "destroy"
//! **forgets** it (the bootstrap's destroy phases have removed gantry's files by then). Adopted
//! hosts are recorded in `<state dir>/onprem-hosts.json` with how to reach them, so a host that
//! was removed from the cluster file can still be reached to be drained and cleaned. A recorded
//! host counts as running: whether it answers is the transport's business, reported per host
//! with the cause.
//!
//! It must not depend on other providers; it only implements provision's `Provider` and
//! `Connector`.

mod api_forwards;
mod registry;
mod settings;

pub use api_forwards::ApiForwards;
pub use registry::{HostEntry, REGISTRY_FILE};
pub use settings::{Secrets, SshDefaults};

use futures_util::future::BoxFuture;
use gantry_provision::access::{Connector, HostAccess, HostLayout};
use gantry_provision::cluster_file::ClusterFile;
use gantry_provision::provider::{
    ErrorKind, HostDescription, HostSpec, HostState, Provider, ProviderCapabilities, ProviderError, TransportKind,
};
use gantry_provision::transport::SshTransport;
use registry::Registry;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// Existing hosts over SSH. See the module docs.
#[derive(Debug)]
pub struct OnpremProvider {
    cluster: String,
    /// The hosts the cluster file lists, by cluster name.
    listed: BTreeMap<String, HostEntry>,
    api_port: u16,
    ssh: SshDefaults,
    registry: Registry,
    /// One transport (one reused SSH session) per host, with the entry it was made for.
    transports: Mutex<BTreeMap<String, (HostEntry, SshTransport)>>,
}

impl OnpremProvider {
    /// The provider of a validated `onprem` cluster file, recording adopted hosts in `state_dir`;
    /// `secrets` were asked for at the prompt (environment variables serve otherwise).
    pub fn new(file: &ClusterFile, state_dir: &Path, secrets: Secrets) -> Self {
        let onprem = file.onprem();
        let install_dir = onprem.install_dir.get_ref().clone();
        let mut listed = BTreeMap::new();
        let mut masters = 0;
        for entry in &onprem.hosts {
            let host = entry.get_ref();
            let name = host.cluster_name(masters);
            if *host.role.get_ref() == gantry_provision::cluster_file::Role::Master {
                masters += 1;
            }
            let entry = HostEntry {
                name: name.clone(),
                role: *host.role.get_ref(),
                address: host.address.get_ref().clone(),
                port: host.port.unwrap_or(file.ssh.port),
                user: host.user.clone().unwrap_or_else(|| file.ssh.user.clone()),
                key_file: host.key_file.as_deref().map(|k| file.resolve(k)).or_else(|| file.ssh_key_file()),
                sudo: host.sudo.unwrap_or(file.ssh.sudo),
                install_dir: install_dir.clone(),
            };
            listed.insert(name, entry);
        }
        Self {
            cluster: file.name().to_string(),
            listed,
            api_port: onprem.api_port,
            ssh: SshDefaults::from_cluster_file(file, secrets),
            registry: Registry::new(state_dir),
            transports: Mutex::new(BTreeMap::new()),
        }
    }

    fn error(&self, operation: &'static str, host: &str, kind: ErrorKind, message: String) -> ProviderError {
        ProviderError::Call { provider: "onprem".to_string(), operation, host: host.to_string(), kind, message }
    }

    fn describe(entry: &HostEntry) -> HostDescription {
        HostDescription {
            name: entry.name.clone(),
            state: HostState::Running,
            address: Some(entry.address.clone()),
            attributes: BTreeMap::from([("provider".to_string(), "onprem".to_string())]),
        }
    }

    /// How to reach `name`: as the cluster file lists it now, else as it was recorded.
    fn entry(&self, operation: &'static str, name: &str) -> Result<HostEntry, ProviderError> {
        if let Some(entry) = self.listed.get(name) {
            return Ok(entry.clone());
        }
        let recorded = self.registry.read().map_err(|e| self.error(operation, name, ErrorKind::Other, e))?;
        recorded.get(name).cloned().ok_or_else(|| {
            self.error(operation, name, ErrorKind::NotFound, "not listed in [[onprem.host]] nor adopted".to_string())
        })
    }

    fn adopt(&self, spec: &HostSpec) -> Result<HostDescription, ProviderError> {
        let entry = self.listed.get(&spec.name).ok_or_else(|| {
            self.error(
                "create",
                &spec.name,
                ErrorKind::NotFound,
                "the cluster file has no such [[onprem.host]] (onprem hosts are adopted, not created)".to_string(),
            )
        })?;
        self.registry
            .update(|hosts| {
                hosts.insert(entry.name.clone(), entry.clone());
            })
            .map_err(|e| self.error("create", &spec.name, ErrorKind::Other, e))?;
        tracing::debug!(cluster = %self.cluster, host = %entry.name, address = %entry.address, "Host adopted.");
        Ok(Self::describe(entry))
    }

    /// With a bastion (`[ssh.bastion]`), the masters' APIs are reachable from this machine only
    /// through it: forwards to them, opened as they are called. `None` without a bastion.
    pub fn api_forwards(&self) -> Option<ApiForwards> {
        self.ssh.bastion().map(|bastion| ApiForwards::new(bastion.clone(), self.api_port))
    }

    /// The API URLs of the adopted masters, by host name (none before `up` adopts one).
    pub fn adopted_master_urls(&self) -> Result<Vec<String>, ProviderError> {
        let recorded = self.registry.read().map_err(|e| self.error("list", "*", ErrorKind::Other, e))?;
        Ok(recorded
            .iter()
            .filter(|(_, entry)| entry.role == gantry_provision::cluster_file::Role::Master)
            .map(|(name, entry)| {
                let address = &self.listed.get(name).unwrap_or(entry).address;
                format!("https://{address}:{}", self.api_port)
            })
            .collect())
    }

    /// The transport of `entry`, reusing its session while the entry is unchanged.
    fn transport(&self, entry: &HostEntry) -> SshTransport {
        let mut transports = self.transports.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((known, transport)) = transports.get(&entry.name)
            && known == entry
        {
            return transport.clone();
        }
        let transport = SshTransport::new(entry.name.clone(), self.ssh.settings(entry));
        transports.insert(entry.name.clone(), (entry.clone(), transport.clone()));
        transport
    }
}

impl Provider for OnpremProvider {
    fn name(&self) -> &str {
        "onprem"
    }

    fn capabilities(&self) -> ProviderCapabilities {
        ProviderCapabilities {
            create: true,
            destroy: true,
            start_stopped: false,
            max_parallel_creates: None,
            transport: TransportKind::Ssh,
            cluster_resources: false,
        }
    }

    fn create_host<'a>(&'a self, spec: &'a HostSpec) -> BoxFuture<'a, Result<HostDescription, ProviderError>> {
        Box::pin(async move { self.adopt(spec) })
    }

    fn describe_host<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<HostDescription, ProviderError>> {
        Box::pin(async move {
            let recorded = self.registry.read().map_err(|e| self.error("describe", name, ErrorKind::Other, e))?;
            match recorded.get(name) {
                Some(entry) => Ok(Self::describe(self.listed.get(name).unwrap_or(entry))),
                None => Err(self.error("describe", name, ErrorKind::NotFound, "not adopted".to_string())),
            }
        })
    }

    fn list_hosts(&self) -> BoxFuture<'_, Result<Vec<HostDescription>, ProviderError>> {
        Box::pin(async move {
            let recorded = self.registry.read().map_err(|e| self.error("list", "*", ErrorKind::Other, e))?;
            Ok(recorded.iter().map(|(name, entry)| Self::describe(self.listed.get(name).unwrap_or(entry))).collect())
        })
    }

    fn destroy_host<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            self.registry
                .update(|hosts| {
                    hosts.remove(name);
                })
                .map_err(|e| self.error("destroy", name, ErrorKind::Other, e))?;
            self.transports.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
            Ok(())
        })
    }
}

impl Connector for OnpremProvider {
    fn connect(&self, host: &HostDescription) -> Result<HostAccess, ProviderError> {
        let entry = self.entry("connect", &host.name)?;
        Ok(HostAccess {
            transport: Arc::new(self.transport(&entry)),
            layout: HostLayout::new(&entry.install_dir),
            address: entry.address.clone(),
            public_address: None,
            api_port: self.api_port,
            use_systemd: true,
        })
    }
}

#[cfg(test)]
mod tests;
