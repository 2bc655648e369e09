//! The part both real executors share: handing a task to its own `gantry executor` process
//! through the sandbox (`launch.json` in; `spawned.json`, `executor.json`, `exit.json` out),
//! waiting for it, killing it and finding it again after an agent restart.
//!
//! Starting `gantry executor` (exec, the loader's relocations of a large binary, page faults) is
//! most of a process launch's time on the agent, so a spawner keeps one executor started ahead
//! of time, blocked on its stdin (`gantry executor --standby`): a launch writes the sandbox to
//! it and only starts a new one when none is waiting (the first launch, or the standby died).
//! The next standby is started once the task runs, off the launch's path. A standby has no
//! task; it exits at EOF, so it ends with the spawner or the agent.

use super::{LaunchError, Recovered, Started};
use crate::cgroup::TaskCgroup;
use crate::executor;
use crate::process;
use crate::sandbox::{self, ExecutorInfo, ExecutorLaunch, ExitInfo, KillRequest, SpawnedExecutor};
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt as _;
use tracing::{debug, warn};

/// How long an executor may take to start its task.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a started executor is polled for `executor.json`.
const START_POLL: Duration = Duration::from_millis(1);
/// How often the liveness of an executor that is not our child is checked.
const ADOPTED_POLL: Duration = Duration::from_millis(200);

/// Starts and tracks `gantry executor` processes.
#[derive(Debug)]
pub struct Spawner {
    executor_path: PathBuf,
    /// Executors started by this agent process, by sandbox (reaped by [`Spawner::wait`]).
    children: Mutex<HashMap<PathBuf, tokio::process::Child>>,
    /// The executor started ahead of time for the next launch, if any.
    standby: Arc<Mutex<Option<Standby>>>,
}

/// A `gantry executor --standby` waiting for its sandbox on stdin.
#[derive(Debug)]
struct Standby {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    running_signal: Option<tokio::process::ChildStdout>,
    spawned: SpawnedExecutor,
}

impl Standby {
    fn start(executor_path: &Path) -> std::io::Result<Self> {
        let mut child = tokio::process::Command::new(executor_path)
            .arg("executor")
            .arg("--standby")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Until it has a sandbox (and its log there), it writes to the agent's log.
            .stderr(Stdio::inherit())
            .spawn()?;
        let (Some(stdin), running_signal) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("no stdin pipe to the standby executor"));
        };
        let Some(spawned) = identify(&child) else {
            let _ = child.start_kill();
            return Err(std::io::Error::other("the standby executor exited at once"));
        };
        Ok(Self { child, stdin, running_signal, spawned })
    }
}

impl Spawner {
    /// A spawner running `executor_path executor` for each task.
    pub fn new(executor_path: PathBuf) -> Self {
        Self { executor_path, children: Mutex::default(), standby: Arc::default() }
    }

    /// Writes `launch.json` and hands it to the standby executor, or starts one; resolves once
    /// the task runs, the executor ended, or it did not start the task in time (then it is
    /// killed). A new standby is started afterwards.
    pub async fn start(&self, sandbox: &Path, launch: &ExecutorLaunch) -> Result<Started, LaunchError> {
        sandbox::write_json_volatile(&sandbox.join(sandbox::LAUNCH_FILE), launch)
            .map_err(|e| LaunchError::permanent(e.to_string()))?;
        let (child, running_signal) = match self.hand_to_standby(sandbox, &launch.task.task_id).await {
            Some(standby) => standby,
            None => self.spawn(sandbox, &launch.task.task_id)?,
        };
        self.children.lock().unwrap_or_else(|p| p.into_inner()).insert(sandbox.to_path_buf(), child);
        let started = self.started(sandbox, running_signal).await;
        self.replenish();
        Ok(started)
    }

    /// Starts `executor --sandbox DIR` for `sandbox`, recording its pid in `spawned.json`.
    fn spawn(
        &self,
        sandbox: &Path,
        task_id: &str,
    ) -> Result<(tokio::process::Child, Option<tokio::process::ChildStdout>), LaunchError> {
        let spawn_error = |source: std::io::Error| {
            LaunchError::permanent(format!("cannot start the executor {}: {source}", self.executor_path.display()))
        };
        let log = executor::open_log(sandbox).map_err(spawn_error)?;
        let mut child = tokio::process::Command::new(&self.executor_path)
            .arg("executor")
            .arg("--sandbox")
            .arg(sandbox)
            .stdin(Stdio::null())
            // The executor says on stdout when the task runs (see `started`); it logs to stderr.
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(spawn_error)?;
        let running_signal = child.stdout.take();
        if let Some(spawned) = identify(&child) {
            record_spawned(sandbox, task_id, &spawned);
        }
        Ok((child, running_signal))
    }

    /// Gives `sandbox` to the standby executor, if one is alive: its pid goes in `spawned.json`
    /// first, so that an agent restart finds it whether or not it got the line.
    async fn hand_to_standby(
        &self,
        sandbox: &Path,
        task_id: &str,
    ) -> Option<(tokio::process::Child, Option<tokio::process::ChildStdout>)> {
        use std::os::unix::ffi::OsStrExt as _;
        let Standby { mut child, mut stdin, running_signal, spawned } =
            self.standby.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        let mut line = sandbox.as_os_str().as_bytes().to_vec();
        if !matches!(child.try_wait(), Ok(None)) || line.contains(&b'\n') {
            debug!(task_id, "No live standby executor for this sandbox; starting one for it.");
            let _ = child.start_kill();
            return None;
        }
        record_spawned(sandbox, task_id, &spawned);
        line.push(b'\n');
        if let Err(error) = stdin.write_all(&line).await {
            warn!(task_id, %error, "The standby executor did not take the sandbox; starting another.");
            let _ = child.start_kill();
            return None;
        }
        Some((child, running_signal))
    }

    /// Starts a standby executor for the next launch, unless one is waiting.
    fn replenish(&self) {
        let slot = Arc::clone(&self.standby);
        if slot.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            return;
        }
        let executor_path = self.executor_path.clone();
        tokio::spawn(async move {
            match Standby::start(&executor_path) {
                Ok(standby) => {
                    let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
                    // Two launches ending at once may both start one: the spare one sees EOF.
                    if slot.is_none() {
                        *slot = Some(standby);
                    }
                }
                Err(error) => {
                    warn!(executor = %executor_path.display(), %error, "Cannot start a standby executor.");
                }
            }
        });
    }

    /// Waits for the executor of `sandbox` (our child) to record that the task runs, or to exit.
    /// Its line on `running_signal` (or the pipe's end when it exits) wakes this at once; the
    /// file and the child are then checked, polling only in the moment between the executor
    /// closing the pipe and its exit being seen.
    async fn started(&self, sandbox: &Path, running_signal: Option<tokio::process::ChildStdout>) -> Started {
        let executor_file = sandbox.join(sandbox::EXECUTOR_FILE);
        let read_info = || sandbox::read_json::<ExecutorInfo>(&executor_file).ok().flatten();
        let deadline = Instant::now() + START_TIMEOUT;
        if let Some(mut pipe) = running_signal {
            use tokio::io::AsyncReadExt as _;
            let mut line = [0u8; 16];
            let _ = tokio::time::timeout(START_TIMEOUT, pipe.read(&mut line)).await;
        }
        loop {
            if let Some(info) = read_info() {
                return Started::Running(info);
            }
            let exited = {
                let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
                children.get_mut(sandbox).is_none_or(|child| !matches!(child.try_wait(), Ok(None)))
            };
            if exited {
                return read_info().map_or(Started::Ended, Started::Running);
            }
            if Instant::now() >= deadline {
                warn!(sandbox = %sandbox.display(), "Executor did not start the task in time; killing it.");
                if let Some(child) = self.children.lock().unwrap_or_else(|p| p.into_inner()).get_mut(sandbox) {
                    let _ = child.start_kill();
                }
                return Started::Ended;
            }
            tokio::time::sleep(START_POLL).await;
        }
    }

    /// Waits until the executor of `sandbox` is gone — our child, or one found by
    /// [`Spawner::recover`] — and returns its `exit.json`. An executor that died without one
    /// leaves the task's processes behind: they are killed here.
    pub async fn wait(&self, sandbox: &Path) -> Option<ExitInfo> {
        let child = self.children.lock().unwrap_or_else(|p| p.into_inner()).remove(sandbox);
        match child {
            Some(mut child) => {
                if let Err(error) = child.wait().await {
                    warn!(sandbox = %sandbox.display(), %error, "Cannot wait for the executor.");
                }
            }
            None => {
                let running = sandbox::read_json::<ExecutorInfo>(&sandbox.join(sandbox::EXECUTOR_FILE)).ok().flatten();
                let spawned =
                    sandbox::read_json::<SpawnedExecutor>(&sandbox.join(sandbox::SPAWNED_FILE)).ok().flatten();
                let (pid, start_time) = match (running, spawned) {
                    (Some(info), _) => (info.executor_pid, info.executor_start_time),
                    (None, Some(spawned)) => (spawned.pid, spawned.start_time),
                    (None, None) => (0, 0),
                };
                while pid > 0 && process::is_alive(pid, start_time) {
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
            }
        }
        collect(sandbox)
    }

    /// Asks the executor to stop the task (`kill.json` with the grace period, then SIGTERM); a
    /// dead executor's task is killed directly.
    pub fn kill(&self, sandbox: &Path, info: &ExecutorInfo, grace_period_secs: f64) {
        let kill_file = sandbox.join(sandbox::KILL_FILE);
        if let Err(error) = sandbox::write_json(&kill_file, &KillRequest { grace_period_secs }) {
            warn!(%error, "Cannot record the grace period; the executor uses the launch's.");
        }
        if process::is_alive(info.executor_pid, info.executor_start_time) {
            if let Err(error) = process::signal_pid(info.executor_pid, Signal::SIGTERM) {
                warn!(%error, "Cannot signal the executor.");
            }
        } else {
            if let Err(error) = process::signal_group(info.task_pgid, Signal::SIGKILL) {
                warn!(%error, "Cannot kill the task's process group.");
            }
            if let Some(cgroup) = TaskCgroup::from_sandbox(sandbox) {
                cgroup.signal_all(Signal::SIGKILL);
            }
        }
    }

    /// What a restarted agent finds of the task of `sandbox`.
    pub fn recover(&self, sandbox: &Path) -> Recovered {
        // The executor writes exit.json as its last act: with it, the task has ended even if the
        // executor has not quite exited yet.
        if sandbox.join(sandbox::EXIT_FILE).exists() {
            return Recovered::Ended(collect(sandbox));
        }
        let executor = sandbox::read_json::<ExecutorInfo>(&sandbox.join(sandbox::EXECUTOR_FILE)).ok().flatten();
        let spawned = sandbox::read_json::<SpawnedExecutor>(&sandbox.join(sandbox::SPAWNED_FILE)).ok().flatten();
        match (executor, spawned) {
            (Some(info), _) if process::is_alive(info.executor_pid, info.executor_start_time) => {
                Recovered::Running(info)
            }
            (None, Some(spawned)) if process::is_alive(spawned.pid, spawned.start_time) => Recovered::Starting(spawned),
            _ => Recovered::Ended(collect(sandbox)),
        }
    }

    /// Waits (up to the start timeout) until an executor found starting records that its task
    /// runs; kills it when it does not.
    pub async fn started_after_recovery(&self, sandbox: &Path, spawned: SpawnedExecutor) -> Option<ExecutorInfo> {
        let executor_file = sandbox.join(sandbox::EXECUTOR_FILE);
        let deadline = Instant::now() + START_TIMEOUT;
        while process::is_alive(spawned.pid, spawned.start_time) && Instant::now() < deadline {
            if let Ok(Some(info)) = sandbox::read_json::<ExecutorInfo>(&executor_file) {
                return Some(info);
            }
            tokio::time::sleep(START_POLL * 10).await;
        }
        let info = sandbox::read_json::<ExecutorInfo>(&executor_file).ok().flatten();
        if info.is_none() {
            let _ = process::signal_pid(spawned.pid, Signal::SIGKILL);
        }
        info
    }
}

/// A started executor's pid and start time, while it lives (its identity across pid reuse).
fn identify(child: &tokio::process::Child) -> Option<SpawnedExecutor> {
    let pid = i32::try_from(child.id()?).ok()?;
    process::stat(pid).map(|stat| SpawnedExecutor { pid, start_time: stat.start_time })
}

fn record_spawned(sandbox: &Path, task_id: &str, spawned: &SpawnedExecutor) {
    if let Err(error) = sandbox::write_json_volatile(&sandbox.join(sandbox::SPAWNED_FILE), spawned) {
        warn!(task_id, %error, "Cannot record the executor's pid.");
    }
}

/// The executor's record of the task's end (`exit.json`); without one, an executor that died
/// left the task's processes behind: they are killed here.
fn collect(sandbox: &Path) -> Option<ExitInfo> {
    let exit = sandbox::read_json::<ExitInfo>(&sandbox.join(sandbox::EXIT_FILE)).unwrap_or_else(|error| {
        warn!(sandbox = %sandbox.display(), %error, "Unreadable exit record.");
        None
    });
    if exit.is_none()
        && let Ok(Some(info)) = sandbox::read_json::<ExecutorInfo>(&sandbox.join(sandbox::EXECUTOR_FILE))
    {
        warn!(pgid = info.task_pgid, "Executor died; killing the task's process group.");
        let _ = process::signal_group(info.task_pgid, Signal::SIGKILL);
        if let Some(cgroup) = TaskCgroup::from_sandbox(sandbox) {
            let _ = cgroup.kill_and_remove(Duration::from_secs(2));
        }
    }
    exit
}
