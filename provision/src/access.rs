//! How the engine reaches a host a provider made: a [`Connector`] turns a [`HostDescription`] into
//! a [`HostAccess`] — a transport, the directory layout gantry uses on that host, the address other
//! hosts reach it at, and the port its master API listens on. Providers that make hosts also say
//! how to reach them (the local provider: a directory on this machine; clouds: SSH to an address).

use crate::cluster_file::Role;
use crate::provider::{HostDescription, ProviderError};
use crate::transport::{CommandOutput, FakeTransport, Transport};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Root of gantry's files on hosts that are whole machines (SSH providers).
pub const DEFAULT_ROOT: &str = "/opt/gantry";
/// Port of the master API when the provider does not choose one.
pub const DEFAULT_API_PORT: u16 = 5050;

/// Where gantry's files live on a host, under one root:
/// `bin/gantry`, `etc/<role>.env`, `data/` (master state), `work/` (agent work dir), `logs/`, `run/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLayout {
    /// The root directory.
    pub root: PathBuf,
}

impl HostLayout {
    /// A layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The gantry binary.
    pub fn binary(&self) -> PathBuf {
        self.root.join("bin/gantry")
    }

    /// The rendered settings of the role's daemon.
    pub fn env_file(&self, role: Role) -> PathBuf {
        self.root.join(format!("etc/{role}.env"))
    }

    /// The script that starts the role's supervisor (hosts without systemd).
    pub fn start_script(&self, role: Role) -> PathBuf {
        self.root.join(format!("bin/start-{role}.sh"))
    }

    /// The rendered systemd unit, kept beside the config (installed under `/etc/systemd/system`).
    pub fn unit_file(&self, role: Role) -> PathBuf {
        self.root.join(format!("etc/gantry-{role}.service"))
    }

    /// The master's state store.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The agent's work dir (agent id, task sandboxes).
    pub fn work_dir(&self) -> PathBuf {
        self.root.join("work")
    }

    /// The daemon's log (the supervisor appends the daemon's output to it).
    pub fn log_file(&self, role: Role) -> PathBuf {
        self.root.join(format!("logs/{role}.log"))
    }

    /// The supervisor's pid file.
    pub fn pid_file(&self, role: Role) -> PathBuf {
        self.root.join(format!("run/{role}.pid"))
    }

    /// The daemon's pid file, written by the supervisor beside its own.
    pub fn daemon_pid_file(&self, role: Role) -> PathBuf {
        daemon_pid_file(&self.pid_file(role))
    }

    /// Checksum of the config the running daemon was started with (written by `start`).
    pub fn started_stamp(&self, role: Role) -> PathBuf {
        self.root.join(format!("run/{role}.started"))
    }
}

/// The daemon pid file that belongs to a supervisor pid file: `agent.pid` → `agent.daemon.pid`.
pub fn daemon_pid_file(pid_file: &Path) -> PathBuf {
    let stem = pid_file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    pid_file.with_file_name(format!("{stem}.daemon.pid"))
}

/// Everything the bootstrap needs to reach one host.
#[derive(Debug, Clone)]
pub struct HostAccess {
    /// Runs commands and copies files on it.
    pub transport: Arc<dyn Transport>,
    /// Where gantry's files go on it.
    pub layout: HostLayout,
    /// Address the other hosts reach it at, and its daemons listen on.
    pub address: String,
    /// Where this machine reaches it, when that differs from `address` (a cloud instance's
    /// public IP while `address` is its private one): the master's certificate also names it,
    /// and client commands call the master there.
    pub public_address: Option<String>,
    /// Port its master API listens on (masters only; agents ignore it).
    pub api_port: u16,
    /// Whether daemons may be installed as systemd units where systemd runs (false when several
    /// hosts share one machine, as with the local provider: they use gantry's supervisor).
    pub use_systemd: bool,
}

impl HostAccess {
    /// The master URL of a master reached through this access.
    pub fn master_url(&self) -> String {
        format!("https://{}:{}", self.address, self.api_port)
    }

    /// The master URL as this machine reaches it (at [`Self::public_address`] when set).
    pub fn public_master_url(&self) -> String {
        format!("https://{}:{}", self.public_address.as_deref().unwrap_or(&self.address), self.api_port)
    }
}

/// Turns a host the provider reported into a way to reach it.
pub trait Connector: Send + Sync + fmt::Debug {
    /// Access to `host`; fails when the provider cannot say how to reach it (no address yet).
    fn connect(&self, host: &HostDescription) -> Result<HostAccess, ProviderError>;
}

/// A [`Connector`] for tests: one [`FakeTransport`] per host (kept, so a test inspects its calls),
/// each with the layout `/opt/gantry` and the API port 5050.
/// Each transport answers `inspect` as a Linux host of this machine's architecture, with or
/// without systemd, and says the daemon runs when `start` asks.
#[derive(Debug, Default)]
pub struct FakeConnector {
    transports: Mutex<BTreeMap<String, Arc<FakeTransport>>>,
    systemd: bool,
}

impl FakeConnector {
    /// A connector with no transports yet; its hosts have no systemd.
    pub fn new() -> Self {
        Self::default()
    }

    /// A connector whose hosts run systemd.
    pub fn with_systemd() -> Self {
        Self { systemd: true, ..Self::default() }
    }

    /// The transport of `host` (created on first use, so a test can script it before the run).
    pub fn transport(&self, host: &str) -> Arc<FakeTransport> {
        let mut transports = self.transports.lock().unwrap_or_else(PoisonError::into_inner);
        transports
            .entry(host.to_string())
            .or_insert_with(|| {
                let transport = FakeTransport::new(host);
                let init = if self.systemd { "systemd" } else { "none" };
                let stdout = format!("Linux\n{}\n{init}\n", std::env::consts::ARCH);
                transport.respond("uname -s", CommandOutput { exit_code: Some(0), stdout, stderr: String::new() });
                let running = "running\n".to_string();
                transport.respond(
                    "echo running",
                    CommandOutput { exit_code: Some(0), stdout: running, stderr: String::new() },
                );
                Arc::new(transport)
            })
            .clone()
    }
}

impl Connector for FakeConnector {
    fn connect(&self, host: &HostDescription) -> Result<HostAccess, ProviderError> {
        Ok(HostAccess {
            transport: self.transport(&host.name),
            layout: HostLayout::new(DEFAULT_ROOT),
            address: host.address.clone().unwrap_or_else(|| "127.0.0.1".to_string()),
            public_address: None,
            api_port: DEFAULT_API_PORT,
            use_systemd: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_paths() {
        let layout = HostLayout::new("/h/w-0");
        assert_eq!(layout.env_file(Role::Agent), Path::new("/h/w-0/etc/agent.env"));
        assert_eq!(layout.pid_file(Role::Master), Path::new("/h/w-0/run/master.pid"));
        assert_eq!(layout.daemon_pid_file(Role::Master), Path::new("/h/w-0/run/master.daemon.pid"));
        assert_eq!(layout.start_script(Role::Agent), Path::new("/h/w-0/bin/start-agent.sh"));
    }
}
