//! The on-disk layout of the work dir and of each task sandbox, and the small JSON files the
//! agent and the executor exchange through it.
//!
//! ```text
//! <work_dir>/agent_id                  the persistent agent id (a uuid)
//! <work_dir>/tasks/<task_id>/          one sandbox per task, kept after it ends for its logs
//!     task.json       written by the agent: the launch as received (recovery)
//!     launch.json     written by the agent: what the executor runs, with the full environment
//!     state.json      written by the agent: last known state, the terminal update and its ack
//!     spawned.json    written by the agent right after starting the executor: its pid
//!     executor.json   written by the executor once the task runs: pids and start times
//!     kill.json       written by the agent before it asks the executor to kill the task
//!     cgroup          written by the executor: the task's cgroup directories, one per line
//!     limits.json     written by the executor: each limit and how it is enforced, or why not
//!     exit.json       written by the executor when the task has exited
//!     stdout, stderr  the task's output
//!     executor.log    the executor's own output
//! ```
//!
//! Every file is written atomically (temporary file, fsync, rename) so a reader sees either the
//! old or the new content, with mode 0600. A task's secret files sit beside them, 0400, owned by
//! the task's user. This module is synchronous and uses no runtime: the executor uses it.

use crate::cgroup::limits::{LimitExceeded, Limits};
use gantry_api::protocol::{LaunchTask, StatusUpdate};
use gantry_api::{Millis, TaskState};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// File holding the agent id in the work dir.
pub const AGENT_ID_FILE: &str = "agent_id";
/// Directory of the sandboxes in the work dir.
pub const TASKS_DIR: &str = "tasks";
/// See the module documentation.
pub const TASK_FILE: &str = "task.json";
/// See the module documentation.
pub const LAUNCH_FILE: &str = "launch.json";
/// See the module documentation.
pub const STATE_FILE: &str = "state.json";
/// See the module documentation.
pub const SPAWNED_FILE: &str = "spawned.json";
/// See the module documentation.
pub const EXECUTOR_FILE: &str = "executor.json";
/// See the module documentation.
pub const KILL_FILE: &str = "kill.json";
/// See the module documentation.
pub const EXIT_FILE: &str = "exit.json";
/// See the module documentation.
pub const EXECUTOR_LOG: &str = "executor.log";

/// A failed read or write of a work dir file.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file holds something else than expected.
    #[error("{path} is not valid: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

impl SandboxError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }
}

/// What the agent hands to the executor (`launch.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutorLaunch {
    /// The launch as the master sent it.
    pub task: LaunchTask,
    /// The complete environment added to the executor's own: app env plus the agent's variables.
    pub env: BTreeMap<String, String>,
    /// The uid and gid the task runs as; `None`: the executor's own.
    #[serde(default)]
    pub run_as: Option<(u32, u32)>,
    /// The task's limits, applied by the executor before the task starts.
    #[serde(default)]
    pub limits: Limits,
    /// Milliseconds between two measurements of the sandbox's disk usage (with a `disk` limit).
    #[serde(default = "default_disk_check_interval_ms")]
    pub disk_check_interval_ms: u64,
    /// The container the task runs in; `None`: on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<crate::container::ContainerLaunch>,
}

fn default_disk_check_interval_ms() -> u64 {
    crate::cgroup::limits::DEFAULT_DISK_CHECK_INTERVAL.as_millis() as u64
}

/// What the agent keeps to recover a task (`task.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The launch as the master sent it.
    pub launch: LaunchTask,
    /// When the agent received it.
    pub launched_at: Millis,
}

/// Written by the agent right after it started an executor (`spawned.json`), so a restarted
/// agent can find an executor that had not yet started its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnedExecutor {
    /// The executor's pid.
    pub pid: i32,
    /// Its start time (field 22 of `/proc/<pid>/stat`).
    pub start_time: u64,
}

/// Written by the executor once the task process exists (`executor.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorInfo {
    /// The executor's pid.
    pub executor_pid: i32,
    /// The executor's start time (field 22 of `/proc/<pid>/stat`), to detect pid reuse.
    pub executor_start_time: u64,
    /// The task's pid.
    pub task_pid: i32,
    /// The task's process group (equal to its pid).
    pub task_pgid: i32,
    /// The task's start time (field 22 of `/proc/<pid>/stat`).
    pub task_start_time: u64,
}

/// Written by the executor when the task exited (`exit.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code, when the task exited normally.
    #[serde(default)]
    pub code: Option<i32>,
    /// Signal number, when a signal ended the task.
    #[serde(default)]
    pub signal: Option<i32>,
    /// Whether the agent asked for the kill.
    pub killed_on_request: bool,
    /// Why the task could not be started, if it could not.
    #[serde(default)]
    pub error: Option<String>,
    /// The limit the task went over, when that ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_exceeded: Option<LimitExceeded>,
    /// When the executor saw the exit.
    pub finished_at: Millis,
}

/// Written by the agent before it sends SIGTERM to the executor (`kill.json`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KillRequest {
    /// Seconds between SIGTERM and SIGKILL.
    pub grace_period_secs: f64,
}

/// The agent's own record of a task (`state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStateFile {
    /// Last state reported.
    pub state: TaskState,
    /// The terminal update, once the task ended (resent with the same uuid until acknowledged).
    #[serde(default)]
    pub terminal_update: Option<StatusUpdate>,
    /// Whether the master acknowledged the terminal update.
    #[serde(default)]
    pub terminal_acked: bool,
    /// Why the agent killed the task on its own (failed health checks).
    #[serde(default)]
    pub kill_reason: Option<String>,
}

/// The work dir's sandbox root.
pub fn tasks_dir(work_dir: &Path) -> PathBuf {
    work_dir.join(TASKS_DIR)
}

/// Whether `task_id` is safe as a single path component.
pub fn is_valid_task_id(task_id: &str) -> bool {
    !task_id.is_empty()
        && task_id != "."
        && task_id != ".."
        && task_id.len() <= 255
        && !task_id.contains(['/', '\\', '\0'])
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SandboxError> {
    write_replacing(path, bytes, true)
}

/// Writes `bytes` to `path` atomically for concurrent readers, without fsync: for files on the
/// launch path that only matter while the machine stays up (a machine crash ends the task too).
pub fn write_atomic_volatile(path: &Path, bytes: &[u8]) -> Result<(), SandboxError> {
    write_replacing(path, bytes, false)
}

fn write_replacing(path: &Path, bytes: &[u8], durable: bool) -> Result<(), SandboxError> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp.{}", std::process::id()));
    let write = || -> io::Result<()> {
        // 0600: task.json and launch.json hold the task's environment, secrets included.
        let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable && let Some(parent) = path.parent() {
            // Make the rename itself durable; a failure here only weakens durability.
            let _ = fs::File::open(parent).and_then(|dir| dir.sync_all());
        }
        Ok(())
    };
    write().map_err(|source| {
        let _ = fs::remove_file(&tmp);
        SandboxError::io(path, source)
    })
}

/// Serializes `value` and writes it atomically to `path`.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), SandboxError> {
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|source| SandboxError::Json { path: path.to_path_buf(), source })?;
    write_atomic(path, &bytes)
}

/// Like [`write_json`], without fsync (see [`write_atomic_volatile`]).
pub fn write_json_volatile<T: Serialize>(path: &Path, value: &T) -> Result<(), SandboxError> {
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|source| SandboxError::Json { path: path.to_path_buf(), source })?;
    write_atomic_volatile(path, &bytes)
}

/// Reads a JSON file; `Ok(None)` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, SandboxError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| SandboxError::Json { path: path.to_path_buf(), source }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SandboxError::io(path, source)),
    }
}

/// Reads the agent id from the work dir, or creates and persists a new one.
pub fn load_or_create_agent_id(work_dir: &Path) -> Result<String, SandboxError> {
    let path = work_dir.join(AGENT_ID_FILE);
    match fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(SandboxError::io(&path, source)),
    }
    fs::create_dir_all(work_dir).map_err(|source| SandboxError::io(work_dir, source))?;
    let id = uuid::Uuid::new_v4().to_string();
    write_atomic(&path, id.as_bytes())?;
    Ok(id)
}

/// Writes a secret file of a task: `contents` at `path`, mode 0400, owned by `owner` (uid, gid)
/// when given. An existing file is replaced.
pub fn write_secret_file(path: &Path, contents: &[u8], owner: Option<(u32, u32)>) -> Result<(), SandboxError> {
    let _ = fs::remove_file(path);
    let write = || -> io::Result<()> {
        let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o400).open(path)?;
        file.write_all(contents)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        Ok(())
    };
    write().map_err(|source| SandboxError::io(path, source))
}

/// Creates a directory and its parents.
pub fn create_dir(path: &Path) -> Result<(), SandboxError> {
    fs::create_dir_all(path).map_err(|source| SandboxError::io(path, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_id_is_created_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create_agent_id(dir.path()).expect("create");
        let second = load_or_create_agent_id(dir.path()).expect("load");
        assert_eq!(first, second);
        assert!(uuid::Uuid::parse_str(&first).is_ok());
    }

    #[test]
    fn json_files_round_trip_and_missing_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(EXIT_FILE);
        assert_eq!(read_json::<ExitInfo>(&path).expect("read"), None);
        let exit = ExitInfo {
            code: Some(3),
            signal: None,
            killed_on_request: false,
            error: None,
            limit_exceeded: None,
            finished_at: 7,
        };
        write_json(&path, &exit).expect("write");
        assert_eq!(read_json::<ExitInfo>(&path).expect("read"), Some(exit));
        let leftovers: Vec<_> = fs::read_dir(dir.path()).expect("list").collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        fs::write(&path, b"{").expect("corrupt");
        assert!(matches!(read_json::<ExitInfo>(&path), Err(SandboxError::Json { .. })));
    }

    #[test]
    fn task_ids_cannot_escape_the_sandbox_root() {
        assert!(is_valid_task_id("web.0b6c"));
        for bad in ["", ".", "..", "a/b", "../x", "a\\b"] {
            assert!(!is_valid_task_id(bad), "{bad}");
        }
    }
}
