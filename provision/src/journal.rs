//! The state journal: per cluster, an append-only JSON-lines file (`journal.jsonl`) in the
//! cluster's state dir, recording every action's intent *before* the provider or transport acts
//! and its result after. Each append is written and fsynced (and the directory, when the file is
//! created) before it returns, so after a crash `up` and `down` replay the journal, see what was
//! intended, and resume; nothing the provider made is forgotten.
//!
//! A crash mid-append leaves a torn last line; [`Journal::open`] drops it with a warning (its
//! action never started: the intent was not durable). Any other unreadable line is an error.
//! The lock ([`ClusterLock`]) keeps two `up`/`down` runs off one cluster.

mod lock;
mod state;

pub use lock::ClusterLock;
pub use state::{HostPhase, HostRecord, JournalState, Record, RecordDetail, RecordKind};

use crate::planner::{Action, ActionKind};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Name of the journal file inside a cluster's state dir.
pub const JOURNAL_FILE: &str = "journal.jsonl";
/// Environment variable naming the root of the state dirs (default `~/.gantry/clusters`).
pub const STATE_DIR_ENV: &str = "GANTRY_STATE_DIR";

/// A journal that could not be opened, read, written or locked.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A complete line of the journal is not a valid record (not a torn write: the file was
    /// edited or damaged). The journal is not guessed at.
    #[error("{path}:{line}: unreadable journal record: {message} (hint: restore the file or move it away)")]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Another process holds the cluster's lock.
    #[error("cluster state {dir} is locked by {} (another `gantry up` or `down` is running on this cluster)",
        .pid.map_or("another process".to_string(), |p| format!("pid {p}")))]
    Locked {
        /// The state dir.
        dir: PathBuf,
        /// The holder's pid, as it wrote it in the lock file.
        pid: Option<u32>,
    },
    /// No state dir was given and `HOME` is not set.
    #[error("no state dir: HOME is not set (hint: pass --state-dir or set {STATE_DIR_ENV})")]
    NoHome,
}

/// Resolves a cluster's state dir: `<root>/<cluster>`, where root is `flag`, else the
/// `GANTRY_STATE_DIR` value `env`, else `<home>/.gantry/clusters`. Pure, for tests.
pub fn resolve_state_dir(
    cluster: &str,
    flag: Option<&Path>,
    env: Option<&OsStr>,
    home: Option<&Path>,
) -> Result<PathBuf, JournalError> {
    let root = match (flag, env.filter(|e| !e.is_empty()), home) {
        (Some(flag), _, _) => flag.to_path_buf(),
        (None, Some(env), _) => PathBuf::from(env),
        (None, None, Some(home)) => home.join(".gantry").join("clusters"),
        (None, None, None) => return Err(JournalError::NoHome),
    };
    Ok(root.join(cluster))
}

/// [`resolve_state_dir`] with the process's `GANTRY_STATE_DIR` and `HOME`.
pub fn state_dir(cluster: &str, flag: Option<&Path>) -> Result<PathBuf, JournalError> {
    let env = std::env::var_os(STATE_DIR_ENV);
    let home = std::env::var_os("HOME").map(PathBuf::from);
    resolve_state_dir(cluster, flag, env.as_deref(), home.as_deref())
}

/// An open journal: its replayed state and the file appends go to.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    state: JournalState,
    syncs: u64,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` and replays it. A torn last line is
    /// dropped with a warning and cut off the file, so later appends start on a clean line.
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        let mut syncs = 0;
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io("create dir", dir))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
                syncs += 1;
            }
        }
        let path = dir.join(JOURNAL_FILE);
        let created = !path.exists();
        let mut file =
            OpenOptions::new().read(true).append(true).create(true).open(&path).map_err(io("open", &path))?;
        if created {
            file.sync_all().map_err(io("fsync", &path))?;
            sync_dir(dir)?;
            syncs += 2;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("read", &path))?;
        let (state, good_len) = replay(&path, &bytes)?;
        if good_len < bytes.len() {
            tracing::warn!(path = %path.display(), dropped_bytes = bytes.len() - good_len,
                "Dropped a torn last journal line (a crash interrupted its write; its action never started).");
            file.set_len(good_len as u64).map_err(io("truncate", &path))?;
            file.sync_all().map_err(io("fsync", &path))?;
            syncs += 1;
        }
        Ok(Self { dir: dir.to_path_buf(), path, file, state, syncs })
    }

    /// Replays the journal in `dir` without creating or changing anything (for `plan` and
    /// `status`): empty when there is no journal; a torn last line is ignored.
    pub fn read_state(dir: &Path) -> Result<JournalState, JournalError> {
        let path = dir.join(JOURNAL_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(replay(&path, &bytes)?.0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(JournalState::default()),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    /// The state replayed from the journal, updated by every append since.
    pub fn state(&self) -> &JournalState {
        &self.state
    }

    /// The cluster's state dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of fsyncs performed (file and directory) since opening.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Records an action's intent (before acting), completion, or failure (`error`).
    pub fn record(&mut self, kind: RecordKind, action: &Action, error: Option<&str>) -> Result<Record, JournalError> {
        let detail = RecordDetail {
            role: Some(action.role()),
            pool: Some(action.pool().to_string()),
            settings: match action.kind() {
                ActionKind::Bootstrap | ActionKind::Reconfigure => action.settings().cloned(),
                _ => None,
            },
            error: error.map(str::to_string),
        };
        self.append(kind, action.kind(), action.host_name(), detail)
    }

    /// Appends one record and fsyncs the file before returning it.
    pub fn append(
        &mut self,
        kind: RecordKind,
        action: ActionKind,
        host: &str,
        detail: RecordDetail,
    ) -> Result<Record, JournalError> {
        let record = Record {
            seq: self.state.last_seq + 1,
            at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            kind,
            action,
            host: host.to_string(),
            detail,
        };
        let mut line = serde_json::to_vec(&record).map_err(|e| JournalError::Io {
            op: "encode",
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(io("append to", &self.path))?;
        self.file.sync_data().map_err(io("fsync", &self.path))?;
        self.syncs += 1;
        self.state.apply(&record);
        Ok(record)
    }
}

/// Replays journal bytes: the state and the length of the well-formed prefix.
fn replay(path: &Path, bytes: &[u8]) -> Result<(JournalState, usize), JournalError> {
    let mut state = JournalState::default();
    let mut offset = 0;
    for (i, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        if line.last() != Some(&b'\n') {
            break;
        }
        let corrupt = |message: String| JournalError::Corrupt { path: path.to_path_buf(), line: i + 1, message };
        let record: Record = serde_json::from_slice(line).map_err(|e| corrupt(e.to_string()))?;
        if record.seq <= state.last_seq {
            return Err(corrupt(format!("seq {} does not follow {}", record.seq, state.last_seq)));
        }
        state.apply(&record);
        offset += line.len();
    }
    Ok((state, offset))
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("fsync dir", dir))
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |source| JournalError::Io { op, path, source }
}

#[cfg(test)]
mod tests;
