//! Snapshots of the whole cluster state, for disaster recovery: [`take`] reads every record the
//! master has acknowledged (apps, tasks, agents, jobs and runs, and the meta table: tokens'
//! hashes, policies, sealed secrets, agents' keys) in one consistent read; [`restore`] writes one
//! into the empty data dir of a new master of the same cluster, which takes it over on start.
//!
//! A snapshot names its cluster by the hash of its CA, and a restore refuses another cluster's.
//! It holds secrets sealed, never their key: the data dir it is restored into must hold the
//! cluster's `ca.pem`, `ca-key.pem` and `secrets.key` (kept apart from the state, as always), and
//! a restore that would leave sealed secrets without their key is refused.

use crate::store::{RedbStore, Snapshot, Store, StoreError};
use gantry_api::Millis;
use gantry_trust::pki::{self, Ca};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The format of the snapshot files this build writes and reads.
pub const FORMAT: u32 = 1;

/// A snapshot as saved to a file (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSnapshot {
    /// [`FORMAT`].
    pub format: u32,
    /// The hash of the cluster CA's certificate (`sha256:…`).
    pub cluster_ca: String,
    /// When it was taken.
    pub taken_at: Millis,
    /// Every record.
    pub state: Snapshot,
}

/// What a snapshot holds, by kind (shown by `snapshot save` and `restore`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Apps.
    pub apps: usize,
    /// Jobs.
    pub jobs: usize,
    /// Job runs.
    pub job_runs: usize,
    /// Tasks.
    pub tasks: usize,
    /// Agents.
    pub agents: usize,
    /// API tokens.
    pub tokens: usize,
    /// Policies (besides the built-in ones).
    pub policies: usize,
    /// Secrets.
    pub secrets: usize,
}

impl ClusterSnapshot {
    /// How many records of each kind it holds.
    pub fn counts(&self) -> Counts {
        let meta = |prefix: &str| self.state.meta.keys().filter(|k| k.starts_with(prefix)).count();
        Counts {
            apps: self.state.apps.len(),
            jobs: self.state.jobs.len(),
            job_runs: self.state.job_runs.len(),
            tasks: self.state.tasks.len(),
            agents: self.state.agents.len(),
            tokens: meta("token/"),
            policies: meta("policy/"),
            secrets: meta("secret/"),
        }
    }
}

/// Everything `store` holds, as a snapshot of the cluster whose CA is `ca`.
pub fn take(store: &dyn Store, ca: &Ca) -> Result<ClusterSnapshot, StoreError> {
    Ok(ClusterSnapshot {
        format: FORMAT,
        cluster_ca: ca.hash(),
        taken_at: gantry_api::now_millis(),
        state: store.load()?,
    })
}

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The file is not a snapshot this build reads.
    #[error("{path} is not a gantry snapshot: {reason}")]
    NotASnapshot {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The data dir lacks the cluster's trust files or already holds a master.
    #[error("cannot restore into {dir}: {reason}")]
    DataDir {
        /// The data dir.
        dir: PathBuf,
        /// Why, and the fix.
        reason: String,
    },
    /// The snapshot is of another cluster.
    #[error(
        "the snapshot is of another cluster (CA {snapshot}) than the CA in {dir} ({dir_ca}): put that cluster's ca.pem, ca-key.pem and secrets.key in the data dir"
    )]
    ForeignCluster {
        /// The data dir.
        dir: PathBuf,
        /// The snapshot's CA hash.
        snapshot: String,
        /// The data dir's CA hash.
        dir_ca: String,
    },
    /// Writing the state failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads a snapshot file.
pub fn read(path: &Path) -> Result<ClusterSnapshot, RestoreError> {
    let not = |reason: String| RestoreError::NotASnapshot { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|e| not(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| not(format!("not JSON ({e})")))?;
    match value.get("format").and_then(serde_json::Value::as_u64) {
        Some(format) if format == u64::from(FORMAT) => {}
        Some(format) => return Err(not(format!("format {format}; this gantry reads format {FORMAT}"))),
        None => return Err(not("no `format` field".to_string())),
    }
    serde_json::from_value(value).map_err(|e| not(e.to_string()))
}

/// Writes `snapshot` into `data_dir`, which must hold the same cluster's CA (and its
/// `secrets.key` when the snapshot holds secrets) and no state yet. The master started on it
/// then serves the restored state as a group of one.
pub fn restore(snapshot: &ClusterSnapshot, data_dir: &Path) -> Result<Counts, RestoreError> {
    let refuse = |reason: String| RestoreError::DataDir { dir: data_dir.to_path_buf(), reason };
    let ca = match Ca::load(data_dir) {
        Ok(Some(ca)) => ca,
        Ok(None) => {
            return Err(refuse(format!(
                "it has no {} and {}: copy the cluster's CA there first (and its secrets.key)",
                pki::CA_CERT_FILE,
                pki::CA_KEY_FILE
            )));
        }
        Err(error) => return Err(refuse(error.to_string())),
    };
    if ca.hash() != snapshot.cluster_ca {
        return Err(RestoreError::ForeignCluster {
            dir: data_dir.to_path_buf(),
            snapshot: snapshot.cluster_ca.clone(),
            dir_ca: ca.hash(),
        });
    }
    if let Some(file) = ["state.redb", "raft-log.redb"].into_iter().find(|file| data_dir.join(file).exists()) {
        return Err(refuse(format!(
            "it already holds a master's state ({file}): a restore makes a new master, so use a data dir without one"
        )));
    }
    let counts = snapshot.counts();
    if counts.secrets > 0 && !data_dir.join(crate::security::SEAL_KEY_FILE).exists() {
        return Err(refuse(format!(
            "the snapshot holds {} sealed secrets and the data dir has no {}: copy the cluster's key there, or its secrets cannot be read",
            counts.secrets,
            crate::security::SEAL_KEY_FILE
        )));
    }
    let batch = crate::store::snapshot_ops(&snapshot.state);
    RedbStore::open(data_dir)?.write(&batch)?;
    Ok(counts)
}
