//! `onprem-hosts.json` in the cluster's state dir: the hosts adopted and how to reach them.
//! Written whole to a temp file, fsynced and renamed, under a lock (hosts are adopted in
//! parallel), so a crash leaves the old or the new record, never a torn one.

use gantry_provision::cluster_file::Role;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Name of the record in the state dir.
pub const REGISTRY_FILE: &str = "onprem-hosts.json";

/// An adopted host and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    /// Its name in the cluster.
    pub name: String,
    /// Master or agent.
    pub role: Role,
    /// Address the provisioner connects to (and the cluster uses).
    pub address: String,
    /// Port of sshd.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Private key file (resolved); `None` = the SSH agent and the user's default keys.
    pub key_file: Option<PathBuf>,
    /// Commands run through sudo.
    pub sudo: bool,
    /// Where gantry's files are on it.
    pub install_dir: String,
}

/// The record file and the lock that serializes its updates.
#[derive(Debug)]
pub(crate) struct Registry {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Registry {
    pub(crate) fn new(state_dir: &Path) -> Self {
        Self { path: state_dir.join(REGISTRY_FILE), lock: Mutex::new(()) }
    }

    /// The adopted hosts by name (none when the file does not exist).
    pub(crate) fn read(&self) -> Result<BTreeMap<String, HostEntry>, String> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    /// Applies `change` to the record and writes it durably.
    pub(crate) fn update(&self, change: impl FnOnce(&mut BTreeMap<String, HostEntry>)) -> Result<(), String> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut hosts = self.read()?;
        let before = hosts.clone();
        change(&mut hosts);
        if hosts == before && self.path.exists() {
            return Ok(());
        }
        let fail = |e: std::io::Error| format!("{}: {e}", self.path.display());
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let text = serde_json::to_vec_pretty(&hosts).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(fail)?;
        file.write_all(&text).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &self.path).map_err(fail)?;
        Ok(())
    }
}
