//! The `local` provider: a whole cluster on this machine. Each host is a directory
//! `<state dir>/hosts/<name>/` — its own root with `bin/`, `etc/`, `data/`, `work/`, `logs/`,
//! `run/` — and its daemons are local processes under gantry's supervisor, reached through a
//! [`LocalTransport`]. `host.json` in the directory records the cluster, role, pool and, for
//! masters, the API port (`[local] api_port` for the first master created while no other has it,
//! else a free port picked at create), so
//! `list_hosts` and `describe_host` read the hosts back. A host is "running" when its directory
//! exists: a directory cannot be stopped.
//!
//! It must not depend on other providers; it only implements provision's `Provider` and
//! `Connector`.

use futures_util::future::BoxFuture;
use gantry_provision::access::{Connector, HostAccess, HostLayout};
use gantry_provision::cluster_file::{LocalSection, Role};
use gantry_provision::provider::{
    ErrorKind, HostDescription, HostSpec, HostState, Provider, ProviderCapabilities, ProviderError, TransportKind,
};
use gantry_provision::transport::LocalTransport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// The directories every local host has.
pub const HOST_DIRS: [&str; 6] = ["bin", "etc", "data", "work", "logs", "run"];
/// Name of the file that makes a directory a host.
pub const HOST_FILE: &str = "host.json";

/// What `host.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFile {
    /// The cluster it belongs to.
    pub cluster: String,
    /// Its name.
    pub name: String,
    /// Master or agent.
    pub role: Role,
    /// Its pool.
    pub pool: String,
    /// The master API's port (masters), chosen at create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_port: Option<u16>,
}

/// Hosts as directories on this machine.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    cluster: String,
    hosts_dir: PathBuf,
    settings: LocalSection,
    /// Held while a master's API port is chosen and recorded, so that two masters created at
    /// once cannot both take `[local] api_port`.
    choosing_port: Arc<Mutex<()>>,
}

impl LocalProvider {
    /// The provider of `cluster`, keeping its hosts under `<state_dir>/hosts`.
    pub fn new(cluster: &str, state_dir: &Path, settings: LocalSection) -> Self {
        Self {
            cluster: cluster.to_string(),
            hosts_dir: state_dir.join("hosts"),
            settings,
            choosing_port: Arc::new(Mutex::new(())),
        }
    }

    /// The directory of host `name`.
    pub fn host_dir(&self, name: &str) -> PathBuf {
        self.hosts_dir.join(name)
    }

    fn error(&self, operation: &'static str, host: &str, kind: ErrorKind, message: String) -> ProviderError {
        ProviderError::Call { provider: "local".to_string(), operation, host: host.to_string(), kind, message }
    }

    /// This cluster's host `name`, if it exists.
    fn read_host(&self, name: &str) -> Result<Option<HostFile>, ProviderError> {
        Ok(self.read_host_file(name)?.filter(|host| host.cluster == self.cluster))
    }

    /// The host file in `name`'s directory, whichever cluster it names.
    fn read_host_file(&self, name: &str) -> Result<Option<HostFile>, ProviderError> {
        let path = self.host_dir(name).join(HOST_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error("describe", name, ErrorKind::Other, format!("{}: {e}", path.display()))),
        };
        let host: HostFile = serde_json::from_str(&text)
            .map_err(|e| self.error("describe", name, ErrorKind::Other, format!("{}: {e}", path.display())))?;
        Ok(Some(host))
    }

    /// This cluster's hosts, by name.
    fn read_hosts(&self) -> Result<Vec<HostFile>, ProviderError> {
        let entries = match std::fs::read_dir(&self.hosts_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error("list", "*", ErrorKind::Other, e.to_string())),
        };
        let mut hosts = Vec::new();
        for entry in entries.flatten() {
            if let Some(host) = self.read_host(&entry.file_name().to_string_lossy())? {
                hosts.push(host);
            }
        }
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(hosts)
    }

    /// Whether one of this cluster's masters serves its API on `port`.
    fn port_recorded(&self, port: u16) -> Result<bool, ProviderError> {
        Ok(self.read_hosts()?.iter().any(|host| host.api_port == Some(port)))
    }

    fn describe(&self, host: &HostFile) -> HostDescription {
        HostDescription {
            name: host.name.clone(),
            state: HostState::Running,
            address: Some("127.0.0.1".to_string()),
            attributes: BTreeMap::from([("provider".to_string(), "local".to_string())]),
        }
    }

    fn create(&self, spec: &HostSpec) -> Result<HostDescription, ProviderError> {
        let fail = |e: std::io::Error| self.error("create", &spec.name, ErrorKind::Other, e.to_string());
        match self.read_host_file(&spec.name)? {
            Some(existing) if existing.cluster == self.cluster => return Ok(self.describe(&existing)),
            Some(existing) => {
                return Err(self.error(
                    "create",
                    &spec.name,
                    ErrorKind::Conflict,
                    format!(
                        "{} is host {} of cluster {} (hint: give each cluster its own state dir)",
                        self.host_dir(&spec.name).display(),
                        existing.name,
                        existing.cluster
                    ),
                ));
            }
            None => {}
        }
        // `api_port` is where the cluster's API is found first: the first master created serves
        // there (whichever it is, as long as it exists); other masters (HA) listen on free ports
        // so they do not collide on this one machine.
        let _choosing = self.choosing_port.lock().unwrap_or_else(PoisonError::into_inner);
        let api_port = match (spec.role, self.settings.api_port) {
            (Role::Agent, _) => None,
            (Role::Master, port) if port != 0 && !self.port_recorded(port)? => {
                if TcpListener::bind(("127.0.0.1", port)).is_err() {
                    return Err(self.error(
                        "create",
                        &spec.name,
                        ErrorKind::Conflict,
                        format!(
                            "port {port} on 127.0.0.1 is in use, so the master cannot serve its API there \
                             (hint: stop what listens on it, or set [local] api_port = 0 to pick a free port)"
                        ),
                    ));
                }
                Some(port)
            }
            (Role::Master, _) => {
                Some(free_port().map_err(|e| self.error("create", &spec.name, ErrorKind::Transient, e.to_string()))?)
            }
        };
        let dir = self.host_dir(&spec.name);
        for sub in HOST_DIRS {
            std::fs::create_dir_all(dir.join(sub)).map_err(fail)?;
        }
        let host = HostFile {
            cluster: spec.cluster.clone(),
            name: spec.name.clone(),
            role: spec.role,
            pool: spec.pool.clone(),
            api_port,
        };
        let text = serde_json::to_vec_pretty(&host).map_err(|e| fail(std::io::Error::other(e)))?;
        let tmp = dir.join(format!(".{HOST_FILE}.tmp"));
        std::fs::write(&tmp, text).map_err(fail)?;
        std::fs::rename(&tmp, dir.join(HOST_FILE)).map_err(fail)?;
        Ok(self.describe(&host))
    }
}

/// A port free on 127.0.0.1 right now.
fn free_port() -> std::io::Result<u16> {
    TcpListener::bind("127.0.0.1:0")?.local_addr().map(|a| a.port())
}

impl Provider for LocalProvider {
    fn name(&self) -> &str {
        "local"
    }

    fn capabilities(&self) -> ProviderCapabilities {
        ProviderCapabilities {
            create: true,
            destroy: true,
            start_stopped: true,
            max_parallel_creates: None,
            transport: TransportKind::Local,
            cluster_resources: false,
        }
    }

    fn create_host<'a>(&'a self, spec: &'a HostSpec) -> BoxFuture<'a, Result<HostDescription, ProviderError>> {
        Box::pin(async move { self.create(spec) })
    }

    fn describe_host<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<HostDescription, ProviderError>> {
        Box::pin(async move {
            match self.read_host(name)? {
                Some(host) => Ok(self.describe(&host)),
                None => Err(self.error("describe", name, ErrorKind::NotFound, "no such host".to_string())),
            }
        })
    }

    fn list_hosts(&self) -> BoxFuture<'_, Result<Vec<HostDescription>, ProviderError>> {
        Box::pin(async move { Ok(self.read_hosts()?.iter().map(|host| self.describe(host)).collect()) })
    }

    fn destroy_host<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            // Another cluster's host is not this cluster's to destroy; a directory without a host
            // file is what an interrupted create of this cluster left.
            match self.read_host_file(name)? {
                Some(host) if host.cluster != self.cluster => return Ok(()),
                None if !self.host_dir(name).exists() => return Ok(()),
                _ => {}
            }
            match std::fs::remove_dir_all(self.host_dir(name)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.error("destroy", name, ErrorKind::Other, e.to_string())),
            }
        })
    }
}

impl Connector for LocalProvider {
    fn connect(&self, host: &HostDescription) -> Result<HostAccess, ProviderError> {
        let file = self
            .read_host(&host.name)?
            .ok_or_else(|| self.error("connect", &host.name, ErrorKind::NotFound, "no such host".to_string()))?;
        let dir = self.host_dir(&host.name);
        Ok(HostAccess {
            transport: Arc::new(LocalTransport::new(host.name.clone()).in_dir(dir.clone())),
            layout: HostLayout::new(dir),
            address: "127.0.0.1".to_string(),
            public_address: None,
            api_port: file.api_port.unwrap_or(0),
            use_systemd: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, role: Role) -> HostSpec {
        HostSpec {
            cluster: "dev".into(),
            name: name.into(),
            role,
            pool: if role == Role::Master { "master".into() } else { "w".into() },
            resources: None,
            attributes: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn hosts_are_directories_idempotent_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = LocalSection { api_port: 0, ..LocalSection::default() };
        let provider = LocalProvider::new("dev", dir.path(), settings);
        let master = provider.create_host(&spec("master-0", Role::Master)).await.expect("create");
        assert_eq!(master.state, HostState::Running);
        let access = provider.connect(&master).expect("connect");
        assert_ne!(access.api_port, 0, "a free port was picked");
        provider.create_host(&spec("master-0", Role::Master)).await.expect("create again");
        let again = provider.connect(&master).expect("connect");
        assert_eq!(again.api_port, access.api_port, "the port is recorded, not picked again");
        provider.create_host(&spec("w-0", Role::Agent)).await.expect("create agent");
        for sub in HOST_DIRS {
            assert!(provider.host_dir("w-0").join(sub).is_dir(), "{sub}");
        }
        let taken = TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = taken.local_addr().expect("address").port();
        let busy = LocalProvider::new(
            "busy",
            &dir.path().join("busy"),
            LocalSection { api_port: port, ..LocalSection::default() },
        );
        let err = busy.create_host(&spec("master-0", Role::Master)).await.expect_err("the port is taken");
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert!(err.to_string().contains(&format!("port {port} on 127.0.0.1 is in use")), "{err}");
        let other = LocalProvider::new("other", dir.path(), LocalSection::default());
        assert!(other.list_hosts().await.expect("list").is_empty(), "another cluster's hosts are not listed");
        let names: Vec<String> = provider.list_hosts().await.expect("list").into_iter().map(|h| h.name).collect();
        assert_eq!(names, ["master-0", "w-0"]);
        provider.destroy_host("w-0").await.expect("destroy");
        provider.destroy_host("w-0").await.expect("destroy again");
        assert!(!provider.host_dir("w-0").exists());
        let err = provider.describe_host("w-0").await.expect_err("gone");
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn the_api_port_goes_to_the_first_master_created_whichever_it_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port().expect("a free port");
        let provider =
            LocalProvider::new("dev", dir.path(), LocalSection { api_port: port, ..LocalSection::default() });
        let port_of = |name: &str| {
            let host = HostDescription {
                name: name.to_string(),
                state: HostState::Running,
                address: None,
                attributes: BTreeMap::new(),
            };
            provider.connect(&host).expect("connect").api_port
        };
        provider.create_host(&spec("master-1", Role::Master)).await.expect("create master-1");
        provider.create_host(&spec("master-0", Role::Master)).await.expect("create master-0");
        assert_eq!(port_of("master-1"), port, "the first master created serves on api_port");
        assert_ne!(port_of("master-0"), port, "another master listens elsewhere");
        provider.destroy_host("master-1").await.expect("destroy");
        provider.create_host(&spec("master-2", Role::Master)).await.expect("create master-2");
        assert_eq!(port_of("master-2"), port, "a master created once api_port is free again takes it");
    }
}
