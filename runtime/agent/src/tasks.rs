//! Task supervision: launching a task through its executor, watching it until it ends, killing
//! it, running its health checks, recovering tasks from the work dir after a restart, and
//! turning all of that into status updates.
//!
//! The supervisor owns the agent's table of tasks it still has to report (running, or ended but
//! not yet acknowledged). It never talks HTTP itself: updates go through the [`StatusQueue`],
//! commands come from the master link.

use crate::background::Background;
use crate::cgroup::TaskCgroup;
use crate::cgroup::limits::{LimitSettings, Limits};
use crate::env::task_env;
use crate::executor;
use crate::health::{self, CheckState, Verdict};
use crate::outcome::{Outcome, outcome};
use crate::process;
use crate::sandbox::{
    self, ExecutorInfo, ExecutorLaunch, ExitInfo, KillRequest, SandboxError, SpawnedExecutor, TaskRecord, TaskStateFile,
};
use crate::status::{OnAcked, StatusQueue, StatusSink, new_update};
use gantry_api::TaskState;
use gantry_api::protocol::{AgentCommand, LaunchTask, StatusUpdate, TaskHealthCheck, TaskReport};
use nix::sys::signal::Signal;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

/// How long an executor may take to start its task.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a started executor is polled for `executor.json`.
const START_POLL: Duration = Duration::from_millis(1);
/// How often the liveness of an adopted executor is checked.
const ADOPTED_POLL: Duration = Duration::from_millis(200);
/// Sandboxes of acknowledged terminal tasks older than this are removed at recovery.
const SANDBOX_TTL_MILLIS: u64 = 60 * 60 * 1000;

/// A task that could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A sandbox file could not be written.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The executor could not be started.
    #[error("cannot start the executor {path}: {source}")]
    Spawn {
        /// The executor binary.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The task's user cannot be used.
    #[error("{0}")]
    User(String),
    /// The launch names a secret whose value did not come with it.
    #[error("the value of secret `{0}` did not come with the launch")]
    MissingSecret(String),
    /// The sandbox could not be given to the task's user.
    #[error("cannot give the sandbox {path} to user `{user}`: {source}")]
    Chown {
        /// The sandbox.
        path: PathBuf,
        /// The user.
        user: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What the supervisor knows about one task.
#[derive(Debug)]
struct TaskEntry {
    launch: LaunchTask,
    sandbox: PathBuf,
    state: TaskState,
    healthy: Option<bool>,
    exit_code: Option<i32>,
    executor: Option<ExecutorInfo>,
    /// Set once a kill was asked for, with its grace period.
    kill_grace: Option<f64>,
    /// Why the agent killed the task on its own.
    kill_reason: Option<String>,
    check_health: Vec<Option<bool>>,
    health_tasks: Vec<AbortHandle>,
    terminal_uuid: Option<String>,
}

impl TaskEntry {
    fn new(launch: LaunchTask, sandbox: PathBuf, state: TaskState) -> Self {
        let checks = launch.health_checks.len();
        Self {
            launch,
            sandbox,
            state,
            healthy: None,
            exit_code: None,
            executor: None,
            kill_grace: None,
            kill_reason: None,
            check_health: vec![None; checks],
            health_tasks: Vec::new(),
            terminal_uuid: None,
        }
    }

    fn state_file(&self, terminal_update: Option<StatusUpdate>, terminal_acked: bool) -> TaskStateFile {
        TaskStateFile { state: self.state, terminal_update, terminal_acked, kill_reason: self.kill_reason.clone() }
    }
}

/// Launches, watches, kills and recovers the agent's tasks.
pub struct Supervisor {
    work_dir: PathBuf,
    executor_path: PathBuf,
    hostname: String,
    tasks: Mutex<HashMap<String, TaskEntry>>,
    status: Arc<StatusQueue>,
    background: Background,
    health_client: reqwest::Client,
    /// The user of tasks that name none (see [`crate::user::resolve`]).
    task_user: Mutex<Option<String>>,
    /// The agent's settings for task limits.
    limit_settings: Mutex<LimitSettings>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor").field("work_dir", &self.work_dir).finish_non_exhaustive()
    }
}

enum Started {
    Running(ExecutorInfo),
    Exited,
    TimedOut,
}

impl Supervisor {
    /// A supervisor for the sandboxes under `work_dir` (absolute), starting `executor_path` for
    /// each task and posting updates to `sink`.
    pub fn new(
        work_dir: PathBuf,
        executor_path: PathBuf,
        hostname: String,
        sink: Arc<dyn StatusSink>,
        background: Background,
    ) -> Arc<Self> {
        Arc::new_cyclic(|weak: &Weak<Self>| {
            let weak = weak.clone();
            let on_acked: OnAcked = Arc::new(move |update: &StatusUpdate| {
                if let Some(supervisor) = weak.upgrade() {
                    supervisor.acked(update);
                }
            });
            let status = StatusQueue::new(sink, on_acked, background.clone());
            gantry_trust::tls::install_default_provider();
            let health_client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_else(|_| reqwest::Client::new());
            Self {
                work_dir,
                executor_path,
                hostname,
                tasks: Mutex::default(),
                status,
                background,
                health_client,
                task_user: Mutex::default(),
                limit_settings: Mutex::default(),
            }
        })
    }

    /// Sets the user of tasks whose launch names none.
    pub fn set_task_user(&self, user: Option<String>) {
        *self.task_user.lock().unwrap_or_else(|p| p.into_inner()) = user;
    }

    /// Sets the limits every task gets besides its resources.
    pub fn set_limit_settings(&self, settings: LimitSettings) {
        *self.limit_settings.lock().unwrap_or_else(|p| p.into_inner()) = settings;
    }

    /// The user `launch` runs as.
    fn run_as(&self, launch: &LaunchTask) -> Result<Option<crate::user::RunAs>, TaskError> {
        let default = self.task_user.lock().unwrap_or_else(|p| p.into_inner()).clone();
        crate::user::resolve(launch.user.as_deref(), default.as_deref()).map_err(TaskError::User)
    }

    /// The status update queue.
    pub fn status(&self) -> &Arc<StatusQueue> {
        &self.status
    }

    /// Every task the agent still has to report, for registration.
    pub fn reports(&self) -> Vec<TaskReport> {
        let tasks = self.lock();
        let mut reports: Vec<TaskReport> = tasks
            .iter()
            .map(|(task_id, entry)| TaskReport {
                task_id: task_id.clone(),
                state: entry.state,
                healthy: entry.healthy,
                exit_code: entry.exit_code,
            })
            .collect();
        reports.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        reports
    }

    /// Handles a command from the master without blocking on it: launches and kills run
    /// concurrently.
    pub fn handle(self: &Arc<Self>, command: AgentCommand) {
        match command {
            AgentCommand::Ping => {}
            AgentCommand::Launch(launch) => self.launch(*launch),
            AgentCommand::Kill { task_id, grace_period_secs } => self.kill(&task_id, grace_period_secs, None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, TaskEntry>> {
        self.tasks.lock().expect("task table lock is never poisoned")
    }

    fn sandbox(&self, task_id: &str) -> PathBuf {
        sandbox::tasks_dir(&self.work_dir).join(task_id)
    }

    /// Launches a task and watches it until it ends, in the background. A task id seen before is
    /// ignored. The task is known (to kills and registrations) when this returns.
    pub fn launch(self: &Arc<Self>, launch: LaunchTask) {
        let task_id = launch.task_id.clone();
        if !sandbox::is_valid_task_id(&task_id) {
            warn!(%task_id, "Launch refused: the task id is not a valid directory name.");
            let message = "the task id is not a valid directory name".to_string();
            self.status.push(new_update(&task_id, TaskState::Failed, None, None, Some(message)));
            return;
        }
        let sandbox = self.sandbox(&task_id);
        {
            let mut tasks = self.lock();
            if tasks.contains_key(&task_id) || sandbox.exists() {
                info!(%task_id, "Launch ignored: the task is already known.");
                return;
            }
            tasks.insert(task_id.clone(), TaskEntry::new(launch.clone(), sandbox.clone(), TaskState::Staging));
        }
        let supervisor = Arc::clone(self);
        self.background.spawn(async move { supervisor.run_task(launch, sandbox).await });
    }

    async fn run_task(self: Arc<Self>, launch: LaunchTask, sandbox: PathBuf) {
        let task_id = launch.task_id.clone();
        let mut child = match self.spawn_executor(&launch, &sandbox) {
            Ok(child) => child,
            Err(error) => {
                warn!(%task_id, %error, "Task could not be started.");
                let message = error.to_string();
                self.finish_with(&task_id, Outcome { state: TaskState::Failed, exit_code: None, message });
                return;
            }
        };
        match wait_started(&sandbox, &mut child).await {
            Started::Running(info) => self.running(&task_id, info),
            Started::Exited => {}
            Started::TimedOut => {
                warn!(%task_id, "Executor did not start the task in time; killing it.");
                let _ = child.start_kill();
            }
        }
        if let Err(error) = child.wait().await {
            warn!(%task_id, %error, "Cannot wait for the executor.");
        }
        self.finish(&task_id);
    }

    fn spawn_executor(&self, launch: &LaunchTask, sandbox: &Path) -> Result<tokio::process::Child, TaskError> {
        sandbox::create_dir(sandbox)?;
        let run_as = self.run_as(launch)?;
        if let Some(user) = &run_as {
            // 0750 and the task's: the task works in it; other users see nothing.
            let chown = |source| TaskError::Chown { path: sandbox.to_path_buf(), user: user.name.clone(), source };
            std::os::unix::fs::chown(sandbox, Some(user.uid), Some(user.gid)).map_err(chown)?;
            std::fs::set_permissions(sandbox, std::os::unix::fs::PermissionsExt::from_mode(0o750)).map_err(chown)?;
        }
        let record = TaskRecord { launch: launch.clone(), launched_at: gantry_api::now_millis() };
        sandbox::write_json_volatile(&sandbox.join(sandbox::TASK_FILE), &record)?;
        for (file, name) in &launch.secret_files {
            let value = launch.secret_values.get(name).ok_or_else(|| TaskError::MissingSecret(name.clone()))?;
            sandbox::write_secret_file(&sandbox.join(file), value.as_bytes(), run_as.as_ref().map(|u| (u.uid, u.gid)))?;
        }
        let env = task_env(launch, &self.hostname, sandbox);
        let settings = self.limit_settings.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let executor_launch = ExecutorLaunch {
            task: launch.clone(),
            env,
            run_as: run_as.map(|u| (u.uid, u.gid)),
            limits: Limits::from_resources(&launch.resources, settings.pids_per_task),
            disk_check_interval_ms: settings.disk_check_interval.as_millis().try_into().unwrap_or(u64::MAX),
        };
        sandbox::write_json_volatile(&sandbox.join(sandbox::LAUNCH_FILE), &executor_launch)?;
        let spawn_error = |source| TaskError::Spawn { path: self.executor_path.clone(), source };
        let log = executor::open_log(sandbox).map_err(spawn_error)?;
        let log_err = log.try_clone().map_err(spawn_error)?;
        let child = tokio::process::Command::new(&self.executor_path)
            .arg("executor")
            .arg("--sandbox")
            .arg(sandbox)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(spawn_error)?;
        if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok())
            && let Some(stat) = process::stat(pid)
        {
            let spawned = SpawnedExecutor { pid, start_time: stat.start_time };
            if let Err(error) = sandbox::write_json_volatile(&sandbox.join(sandbox::SPAWNED_FILE), &spawned) {
                warn!(task_id = %launch.task_id, %error, "Cannot record the executor's pid.");
            }
        }
        Ok(child)
    }

    fn running(self: &Arc<Self>, task_id: &str, info: ExecutorInfo) {
        let mut tasks = self.lock();
        let Some(entry) = tasks.get_mut(task_id) else { return };
        entry.executor = Some(info);
        if entry.state == TaskState::Staging {
            entry.state = TaskState::Running;
            self.status.push(new_update(task_id, TaskState::Running, None, None, None));
            info!(%task_id, task_pid = info.task_pid, "Task running.");
        }
        persist(&entry.sandbox, &entry.state_file(None, false));
        self.start_health_checks(task_id, entry);
        if let Some(grace) = entry.kill_grace {
            drop(tasks);
            self.kill(task_id, grace, None);
        }
    }

    /// Reads the executor's verdict and reports the task's end.
    fn finish(&self, task_id: &str) {
        let Some((sandbox, executor, kill_requested, kill_reason)) = self
            .lock()
            .get(task_id)
            .map(|e| (e.sandbox.clone(), e.executor, e.kill_grace.is_some(), e.kill_reason.clone()))
        else {
            return;
        };
        let exit = sandbox::read_json::<ExitInfo>(&sandbox.join(sandbox::EXIT_FILE)).unwrap_or_else(|error| {
            warn!(%task_id, %error, "Unreadable exit record.");
            None
        });
        let executor = executor.or_else(|| sandbox::read_json(&sandbox.join(sandbox::EXECUTOR_FILE)).ok().flatten());
        if exit.is_none() {
            match executor {
                Some(info) => {
                    warn!(%task_id, pgid = info.task_pgid, "Executor died; killing the task's process group.");
                    let _ = process::signal_group(info.task_pgid, Signal::SIGKILL);
                    if let Some(cgroup) = TaskCgroup::from_sandbox(&sandbox) {
                        let _ = cgroup.kill_and_remove(std::time::Duration::from_secs(2));
                    }
                }
                None => {
                    let message = "the executor ended before starting the task (see executor.log)".to_string();
                    self.finish_with(task_id, Outcome { state: TaskState::Failed, exit_code: None, message });
                    return;
                }
            }
        }
        self.finish_with(task_id, outcome(exit.as_ref(), kill_requested, kill_reason.as_deref()));
    }

    fn finish_with(&self, task_id: &str, outcome: Outcome) {
        let mut tasks = self.lock();
        let Some(entry) = tasks.get_mut(task_id) else { return };
        if entry.state.is_terminal() {
            return;
        }
        for handle in entry.health_tasks.drain(..) {
            handle.abort();
        }
        entry.state = outcome.state;
        entry.exit_code = outcome.exit_code;
        let update = new_update(task_id, outcome.state, entry.healthy, outcome.exit_code, Some(outcome.message));
        entry.terminal_uuid = Some(update.uuid.clone());
        persist(&entry.sandbox, &entry.state_file(Some(update.clone()), false));
        info!(%task_id, state = %outcome.state, exit_code = ?outcome.exit_code, message = ?update.message, "Task ended.");
        self.status.push(update);
    }

    /// Stops a task: SIGTERM through its executor, SIGKILL after `grace_period_secs`. An unknown
    /// task is answered with its last known terminal state, or `KILLED`.
    pub fn kill(self: &Arc<Self>, task_id: &str, grace_period_secs: f64, reason: Option<String>) {
        let mut tasks = self.lock();
        let Some(entry) = tasks.get_mut(task_id) else {
            drop(tasks);
            self.kill_unknown(task_id);
            return;
        };
        if entry.state.is_terminal() {
            debug!(%task_id, "Kill ignored: the task already ended.");
            return;
        }
        if entry.kill_reason.is_none() {
            entry.kill_reason = reason;
        }
        entry.kill_grace = Some(grace_period_secs);
        let Some(info) = entry.executor else {
            info!(%task_id, "Kill deferred until the task has started.");
            return;
        };
        if entry.state == TaskState::Running {
            entry.state = TaskState::Killing;
            self.status.push(new_update(task_id, TaskState::Killing, entry.healthy, None, entry.kill_reason.clone()));
            persist(&entry.sandbox, &entry.state_file(None, false));
        }
        info!(%task_id, grace_period_secs, "Killing task.");
        let kill_file = entry.sandbox.join(sandbox::KILL_FILE);
        if let Err(error) = sandbox::write_json(&kill_file, &KillRequest { grace_period_secs }) {
            warn!(%task_id, %error, "Cannot record the grace period; the executor uses the launch's.");
        }
        if process::is_alive(info.executor_pid, info.executor_start_time) {
            if let Err(error) = process::signal_pid(info.executor_pid, Signal::SIGTERM) {
                warn!(%task_id, %error, "Cannot signal the executor.");
            }
        } else {
            if let Err(error) = process::signal_group(info.task_pgid, Signal::SIGKILL) {
                warn!(%task_id, %error, "Cannot kill the task's process group.");
            }
            if let Some(cgroup) = TaskCgroup::from_sandbox(&entry.sandbox) {
                cgroup.signal_all(Signal::SIGKILL);
            }
        }
    }

    fn kill_unknown(&self, task_id: &str) {
        let previous = sandbox::is_valid_task_id(task_id)
            .then(|| sandbox::read_json::<TaskStateFile>(&self.sandbox(task_id).join(sandbox::STATE_FILE)).ok())
            .flatten()
            .flatten()
            .and_then(|s| s.terminal_update);
        let update = match previous {
            Some(last) => new_update(task_id, last.state, last.healthy, last.exit_code, last.message),
            None => new_update(task_id, TaskState::Killed, None, None, Some("task unknown to this agent".into())),
        };
        info!(%task_id, state = %update.state, "Kill of a task the agent does not run answered.");
        self.status.push(update);
    }

    fn acked(&self, update: &StatusUpdate) {
        if !update.state.is_terminal() {
            return;
        }
        let mut tasks = self.lock();
        let Some(entry) = tasks.get(&update.task_id) else { return };
        if entry.terminal_uuid.as_deref() != Some(update.uuid.as_str()) {
            return;
        }
        persist(&entry.sandbox, &entry.state_file(Some(update.clone()), true));
        tasks.remove(&update.task_id);
        debug!(task_id = %update.task_id, "Terminal update acknowledged; task forgotten.");
    }

    fn start_health_checks(self: &Arc<Self>, task_id: &str, entry: &mut TaskEntry) {
        if !entry.health_tasks.is_empty() {
            return;
        }
        let env = task_env(&entry.launch, &self.hostname, &entry.sandbox);
        // COMMAND checks run as the task's user, never as the agent's.
        let run_as = match self.run_as(&entry.launch) {
            Ok(run_as) => run_as.map(|u| (u.uid, u.gid)),
            Err(error) => {
                warn!(%task_id, %error, "Health checks not started: the task's user cannot be used.");
                return;
            }
        };
        for (index, check) in entry.launch.health_checks.iter().enumerate() {
            let supervisor = Arc::clone(self);
            let (task_id, check, sandbox, env) =
                (task_id.to_string(), check.clone(), entry.sandbox.clone(), env.clone());
            let run = async move { supervisor.health_loop(task_id, index, check, sandbox, env, run_as).await };
            if let Some(handle) = self.background.spawn(run) {
                entry.health_tasks.push(handle);
            }
        }
    }

    async fn health_loop(
        self: Arc<Self>,
        task_id: String,
        index: usize,
        check: TaskHealthCheck,
        sandbox: PathBuf,
        env: BTreeMap<String, String>,
        run_as: Option<(u32, u32)>,
    ) {
        let started = Instant::now();
        let interval = Duration::from_secs_f64(check.interval_secs.clamp(0.01, 86_400.0));
        let mut state = CheckState::default();
        loop {
            let result = health::probe(&check, &self.health_client, &sandbox, &env, run_as).await;
            match state.record(result.is_ok(), started.elapsed(), &check) {
                Verdict::Unchanged => {}
                Verdict::Healthy => self.set_check_health(&task_id, index, true),
                Verdict::Unhealthy => self.set_check_health(&task_id, index, false),
                Verdict::Kill => {
                    self.set_check_health(&task_id, index, false);
                    let error = result.err().unwrap_or_default();
                    let reason = health::kill_reason(&check.kind, state.consecutive_failures, &error);
                    warn!(%task_id, %reason, "Killing unhealthy task.");
                    let grace = self.lock().get(&task_id).map(|e| e.launch.kill_grace_period_secs);
                    if let Some(grace) = grace {
                        self.kill(&task_id, grace, Some(reason));
                    }
                    return;
                }
            }
            tokio::time::sleep(interval).await;
        }
    }

    fn set_check_health(&self, task_id: &str, index: usize, healthy: bool) {
        let mut tasks = self.lock();
        let Some(entry) = tasks.get_mut(task_id) else { return };
        if entry.state != TaskState::Running {
            return;
        }
        if let Some(slot) = entry.check_health.get_mut(index) {
            *slot = Some(healthy);
        }
        let aggregate = health::aggregate(&entry.check_health);
        if aggregate != entry.healthy {
            entry.healthy = aggregate;
            info!(%task_id, healthy = ?aggregate, "Task health changed.");
            self.status.push(new_update(task_id, TaskState::Running, aggregate, None, None));
        }
    }

    /// Recovers the tasks of the work dir: re-adopts live executors, reports tasks that ended
    /// while the agent was away, resends unacknowledged terminal updates.
    pub fn recover(self: &Arc<Self>) -> Result<(), SandboxError> {
        let root = sandbox::tasks_dir(&self.work_dir);
        sandbox::create_dir(&root)?;
        let entries = std::fs::read_dir(&root).map_err(|source| SandboxError::Io { path: root.clone(), source })?;
        for dir_entry in entries.flatten() {
            let task_id = dir_entry.file_name().to_string_lossy().into_owned();
            if !dir_entry.path().is_dir() || !sandbox::is_valid_task_id(&task_id) {
                continue;
            }
            if let Err(error) = self.recover_one(&task_id, dir_entry.path()) {
                warn!(%task_id, %error, "Cannot recover task; leaving its sandbox alone.");
            }
        }
        Ok(())
    }

    fn recover_one(self: &Arc<Self>, task_id: &str, sandbox: PathBuf) -> Result<(), SandboxError> {
        let Some(record) = sandbox::read_json::<TaskRecord>(&sandbox.join(sandbox::TASK_FILE))? else {
            warn!(%task_id, "Sandbox without task.json; skipping.");
            return Ok(());
        };
        let state_file = sandbox::read_json::<TaskStateFile>(&sandbox.join(sandbox::STATE_FILE))?;
        if let Some(TaskStateFile { terminal_update: Some(update), terminal_acked, .. }) = &state_file {
            if *terminal_acked {
                if gantry_api::now_millis().saturating_sub(update.timestamp) > SANDBOX_TTL_MILLIS {
                    info!(%task_id, "Removing the old sandbox of an ended task.");
                    let _ = std::fs::remove_dir_all(&sandbox);
                }
                return Ok(());
            }
            let mut entry = TaskEntry::new(record.launch, sandbox, update.state);
            entry.healthy = update.healthy;
            entry.exit_code = update.exit_code;
            entry.terminal_uuid = Some(update.uuid.clone());
            self.lock().insert(task_id.to_string(), entry);
            info!(%task_id, state = %update.state, "Resending the unacknowledged terminal update.");
            self.status.push(update.clone());
            return Ok(());
        }
        let state = state_file.as_ref().map_or(TaskState::Staging, |s| s.state);
        let mut entry = TaskEntry::new(record.launch, sandbox.clone(), state);
        entry.kill_reason = state_file.and_then(|s| s.kill_reason);
        if state == TaskState::Killing {
            entry.kill_grace = Some(entry.launch.kill_grace_period_secs);
        }
        let executor = sandbox::read_json::<ExecutorInfo>(&sandbox.join(sandbox::EXECUTOR_FILE))?;
        entry.executor = executor;
        // The executor writes exit.json as its last act: with it, the task has ended even if the
        // executor has not quite exited yet.
        let exited = sandbox.join(sandbox::EXIT_FILE).exists();
        let spawned = sandbox::read_json::<SpawnedExecutor>(&sandbox.join(sandbox::SPAWNED_FILE))?;
        let mut tasks = self.lock();
        match (executor, spawned) {
            (Some(info), _) if !exited && process::is_alive(info.executor_pid, info.executor_start_time) => {
                if entry.state == TaskState::Staging {
                    entry.state = TaskState::Running;
                }
                info!(%task_id, executor_pid = info.executor_pid, "Re-adopted a running task.");
                self.start_health_checks(task_id, &mut entry);
                tasks.insert(task_id.to_string(), entry);
                drop(tasks);
                let supervisor = Arc::clone(self);
                let task_id = task_id.to_string();
                self.background.spawn(supervisor.watch_adopted(task_id, info.executor_pid, info.executor_start_time));
            }
            (None, Some(spawned)) if !exited && process::is_alive(spawned.pid, spawned.start_time) => {
                info!(%task_id, executor_pid = spawned.pid, "Re-adopted a task that is still starting.");
                tasks.insert(task_id.to_string(), entry);
                drop(tasks);
                let supervisor = Arc::clone(self);
                let task_id = task_id.to_string();
                self.background.spawn(async move {
                    let executor_file = sandbox.join(sandbox::EXECUTOR_FILE);
                    let deadline = Instant::now() + START_TIMEOUT;
                    while process::is_alive(spawned.pid, spawned.start_time) && Instant::now() < deadline {
                        if let Ok(Some(info)) = sandbox::read_json::<ExecutorInfo>(&executor_file) {
                            supervisor.running(&task_id, info);
                            break;
                        }
                        tokio::time::sleep(START_POLL * 10).await;
                    }
                    if sandbox::read_json::<ExecutorInfo>(&executor_file).ok().flatten().is_none() {
                        let _ = process::signal_pid(spawned.pid, Signal::SIGKILL);
                    }
                    supervisor.watch_adopted(task_id, spawned.pid, spawned.start_time).await;
                });
            }
            _ => {
                tasks.insert(task_id.to_string(), entry);
                drop(tasks);
                info!(%task_id, "Task ended while the agent was away.");
                self.finish(task_id);
            }
        }
        Ok(())
    }

    /// Polls an executor that is not our child until it is gone, then reports the task's end.
    async fn watch_adopted(self: Arc<Self>, task_id: String, pid: i32, start_time: u64) {
        while process::is_alive(pid, start_time) {
            tokio::time::sleep(ADOPTED_POLL).await;
        }
        self.finish(&task_id);
    }
}

/// Waits for the executor to record that the task runs, or to exit.
async fn wait_started(sandbox: &Path, child: &mut tokio::process::Child) -> Started {
    let executor_file = sandbox.join(sandbox::EXECUTOR_FILE);
    let read_info = || sandbox::read_json::<ExecutorInfo>(&executor_file).ok().flatten();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(info) = read_info() {
            return Started::Running(info);
        }
        if !matches!(child.try_wait(), Ok(None)) {
            return read_info().map_or(Started::Exited, Started::Running);
        }
        if Instant::now() >= deadline {
            return Started::TimedOut;
        }
        tokio::time::sleep(START_POLL).await;
    }
}

fn persist(sandbox: &Path, state: &TaskStateFile) {
    if let Err(error) = sandbox::write_json(&sandbox.join(sandbox::STATE_FILE), state) {
        warn!(%error, "Cannot record the task state.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::BoxFuture;
    use gantry_api::Resources;

    /// Acknowledges and records every update.
    #[derive(Default)]
    struct RecordingSink(Mutex<Vec<StatusUpdate>>);

    impl StatusSink for RecordingSink {
        fn post<'a>(&'a self, update: &'a StatusUpdate) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                self.0.lock().expect("lock").push(update.clone());
                Ok(())
            })
        }
    }

    fn launch(task_id: &str) -> LaunchTask {
        LaunchTask {
            task_id: task_id.into(),
            app_id: "app".into(),
            cmd: Some("true".into()),
            args: None,
            env: BTreeMap::new(),
            resources: Resources::default(),
            ports: Vec::new(),
            health_checks: Vec::new(),
            kill_grace_period_secs: 1.0,
            secrets: BTreeMap::new(),
            secret_files: BTreeMap::new(),
            secret_values: Default::default(),
            user: None,
            container: None,
            volumes: Vec::new(),
        }
    }

    fn sandbox_with(work_dir: &Path, task_id: &str, state: Option<&TaskStateFile>, exit: Option<&ExitInfo>) -> PathBuf {
        let sandbox = sandbox::tasks_dir(work_dir).join(task_id);
        sandbox::create_dir(&sandbox).expect("sandbox");
        let record = TaskRecord { launch: launch(task_id), launched_at: 1 };
        sandbox::write_json(&sandbox.join(sandbox::TASK_FILE), &record).expect("task.json");
        if let Some(state) = state {
            sandbox::write_json(&sandbox.join(sandbox::STATE_FILE), state).expect("state.json");
        }
        if let Some(exit) = exit {
            // An executor that is gone: a pid with a start time no process has.
            let info = ExecutorInfo {
                executor_pid: 1,
                executor_start_time: u64::MAX,
                task_pid: 0,
                task_pgid: 0,
                task_start_time: 0,
            };
            sandbox::write_json(&sandbox.join(sandbox::EXECUTOR_FILE), &info).expect("executor.json");
            sandbox::write_json(&sandbox.join(sandbox::EXIT_FILE), exit).expect("exit.json");
        }
        sandbox
    }

    #[tokio::test]
    async fn recovery_reports_ended_tasks_resends_unacked_ones_and_forgets_acked_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work_dir = dir.path();
        let exit = |code| ExitInfo {
            code: Some(code),
            signal: None,
            killed_on_request: false,
            error: None,
            limit_exceeded: None,
            finished_at: 1,
        };
        sandbox_with(
            work_dir,
            "ended.1",
            Some(&TaskStateFile {
                state: TaskState::Running,
                terminal_update: None,
                terminal_acked: false,
                kill_reason: None,
            }),
            Some(&exit(0)),
        );
        let unacked = new_update("unacked.1", TaskState::Failed, None, Some(2), Some("exited with code 2".into()));
        sandbox_with(
            work_dir,
            "unacked.1",
            Some(&TaskStateFile {
                state: TaskState::Failed,
                terminal_update: Some(unacked.clone()),
                terminal_acked: false,
                kill_reason: None,
            }),
            Some(&exit(2)),
        );
        let mut old = new_update("old.1", TaskState::Finished, None, Some(0), None);
        old.timestamp = 1;
        let old_sandbox = sandbox_with(
            work_dir,
            "old.1",
            Some(&TaskStateFile {
                state: TaskState::Finished,
                terminal_update: Some(old),
                terminal_acked: true,
                kill_reason: None,
            }),
            Some(&exit(0)),
        );
        sandbox_with(work_dir, "never.started", None, None);

        let sink = Arc::new(RecordingSink::default());
        let supervisor = Supervisor::new(
            work_dir.to_path_buf(),
            "/nonexistent".into(),
            "h".into(),
            sink.clone(),
            Background::default(),
        );
        supervisor.recover().expect("recover");
        let reports: Vec<(String, TaskState)> =
            supervisor.reports().into_iter().map(|r| (r.task_id, r.state)).collect();
        assert_eq!(
            reports,
            [
                ("ended.1".to_string(), TaskState::Finished),
                ("never.started".to_string(), TaskState::Failed),
                ("unacked.1".to_string(), TaskState::Failed),
            ]
        );
        assert!(!old_sandbox.exists(), "old acknowledged sandboxes are removed");

        for _ in 0..500 {
            if supervisor.reports().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(supervisor.reports().is_empty(), "acknowledged terminal tasks are forgotten");
        let posted = sink.0.lock().expect("lock").clone();
        assert!(posted.contains(&unacked), "the unacknowledged update is resent with its uuid");
        let state: TaskStateFile =
            sandbox::read_json(&sandbox::tasks_dir(work_dir).join("ended.1").join(sandbox::STATE_FILE))
                .expect("read")
                .expect("state.json");
        assert!(state.terminal_acked);
        assert_eq!(state.terminal_update.map(|u| u.state), Some(TaskState::Finished));
    }
}
