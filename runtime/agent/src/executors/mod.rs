//! The executor contract: how the supervisor ([`crate::tasks`]) has a task run, whatever runs
//! it. Two implementations — [`process::ProcessExecutor`] (a command on the host) and
//! [`container::ContainerExecutor`] (an OCI image in its own namespaces) — and a recording fake
//! for the supervisor's tests ([`fake::RecordingExecutor`]). One conformance suite
//! (`tests/executor_conformance.rs`) runs the same task scenarios against both real ones.
//!
//! Both real executors hand the task to the per-task supervisor process (`gantry executor`,
//! [`crate::executor`]) through the sandbox, which is what lets a task outlive an agent restart:
//! [`spawned`] holds that shared part (start, wait, kill, recover). They differ in what they do
//! before: the container executor pulls the image and works out the container's root, command
//! and user, and refuses what it cannot run on this host ("can't handle").

pub mod container;
pub mod fake;
pub mod process;
pub mod spawned;

use crate::cgroup::limits::Limits;
use crate::sandbox::{ExecutorInfo, ExecutorLaunch, ExitInfo, SpawnedExecutor};
use futures_util::future::BoxFuture;
use gantry_api::protocol::LaunchTask;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// What an executor can do on this host, for `node show` and for choosing one.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Capabilities {
    /// Runs tasks from OCI images.
    pub containers: bool,
    /// Why it cannot run any task here, when it cannot (e.g. not root, no overlayfs).
    pub unavailable: Option<String>,
}

/// A launch, with everything the supervisor already prepared in the sandbox.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    /// The launch as the master sent it.
    pub launch: LaunchTask,
    /// The task's sandbox (created, `task.json` and secret files written).
    pub sandbox: PathBuf,
    /// The task's environment as for a process on the host (ports, ids, secrets, sandbox).
    pub env: BTreeMap<String, String>,
    /// The host user a process task runs as (uid, gid); containers choose theirs from the image.
    pub run_as: Option<(u32, u32)>,
    /// The host name.
    pub hostname: String,
    /// The task's limits (cgroups, disk watch).
    pub limits: Limits,
    /// Milliseconds between two measurements of the sandbox's disk usage.
    pub disk_check_interval_ms: u64,
    /// Host device nodes given to the task (its GPUs').
    pub devices: Vec<PathBuf>,
}

impl LaunchRequest {
    /// What `gantry executor` runs for a process task (`launch.json`); the container executor
    /// adds the container.
    pub fn executor_launch(&self) -> ExecutorLaunch {
        ExecutorLaunch {
            task: self.launch.clone(),
            env: self.env.clone(),
            run_as: self.run_as,
            limits: self.limits.clone(),
            disk_check_interval_ms: self.disk_check_interval_ms,
            container: None,
        }
    }
}

/// A task started by an executor.
#[derive(Debug)]
pub enum Started {
    /// It runs; the executor's pids.
    Running(ExecutorInfo),
    /// The executor ended before the task ran (its `exit.json`, if any, says why).
    Ended,
}

/// A launch an executor refused or could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LaunchError {
    /// What went wrong, for `task show` and `app show`.
    pub message: String,
    /// Whether trying again later may succeed (a registry that is down); the master relaunches
    /// with the app's backoff either way.
    pub transient: bool,
}

impl LaunchError {
    /// A failure that will not go away by itself.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self { message: message.into(), transient: false }
    }
}

/// What a restarted agent finds of a task it had started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// The task still runs under this executor.
    Running(ExecutorInfo),
    /// The executor was started but has not started the task yet.
    Starting(SpawnedExecutor),
    /// The task has ended (or never started): the executor's record of its end, if any (the
    /// processes of a task whose executor died without one are killed).
    Ended(Option<ExitInfo>),
}

/// One way of running tasks (see the module documentation).
pub trait TaskExecutor: Send + Sync + fmt::Debug {
    /// `process` or `container`.
    fn name(&self) -> &'static str;
    /// What it can do here.
    fn capabilities(&self) -> Capabilities;
    /// Why this executor cannot run `launch` here, if it cannot.
    fn cant_handle(&self, launch: &LaunchTask) -> Option<String>;
    /// Starts the task; resolves once it runs or failed to start. Its end is awaited with
    /// [`TaskExecutor::wait`].
    fn launch<'a>(&'a self, request: &'a LaunchRequest) -> BoxFuture<'a, Result<Started, LaunchError>>;
    /// Waits until the task of `sandbox`, started by [`TaskExecutor::launch`] or found by
    /// [`TaskExecutor::recover`], has ended; returns the executor's record of its end.
    fn wait<'a>(&'a self, sandbox: &'a Path) -> BoxFuture<'a, Option<ExitInfo>>;
    /// Asks the task to stop: SIGTERM, SIGKILL after `grace_period_secs`.
    fn kill(&self, sandbox: &Path, executor: &ExecutorInfo, grace_period_secs: f64);
    /// After an agent restart: what became of the task of `sandbox`.
    fn recover(&self, sandbox: &Path) -> Recovered;
    /// For a task [`Recovered::Starting`]: waits until it runs (its executor's pids), or `None`
    /// when it did not start in time (its executor is then killed).
    fn started<'a>(&'a self, sandbox: &'a Path, spawned: SpawnedExecutor) -> BoxFuture<'a, Option<ExecutorInfo>>;
    /// Releases what the task held beyond its sandbox (an image in use), after its end.
    fn release(&self, _sandbox: &Path) {}
    /// The container executor, for its image cache (`gantry image list|prune`).
    fn as_container(&self) -> Option<&container::ContainerExecutor> {
        None
    }
}
