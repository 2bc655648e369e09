//! Task supervision: launching a task through its executor, watching it until it ends, killing
//! it, running its health checks, recovering tasks from the work dir after a restart, and
//! turning all of that into status updates.
//!
//! The supervisor owns the agent's table of tasks it still has to report (running, or ended but
//! not yet acknowledged). It never talks HTTP itself: updates go through the [`StatusQueue`],
//! commands come from the master link.

use crate::background::Background;
use crate::cgroup::limits::{LIMITS_FILE, LimitSettings, Limits, LimitsRecord};
use crate::env::task_env;
use crate::executors::{LaunchRequest, Recovered, Started, TaskExecutor};
use crate::gpu::{self, GpuAllocator};
use crate::health::{self, CheckPlace, CheckState, Verdict};
use crate::outcome::{Outcome, outcome};
use crate::sandbox::{self, ExecutorInfo, ExecutorLaunch, ExitInfo, SandboxError, TaskRecord, TaskStateFile};
use crate::status::{OnAcked, StatusQueue, StatusSink, new_update};
use gantry_api::TaskState;
use gantry_api::protocol::{AgentCommand, LaunchTask, StatusUpdate, TaskHealthCheck, TaskReport};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

/// The sandbox file naming the GPUs (uuids) a task holds.
const GPUS_FILE: &str = "gpus.json";
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
    /// The executor that runs it.
    runner: Arc<dyn TaskExecutor>,
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
    fn new(launch: LaunchTask, runner: Arc<dyn TaskExecutor>, sandbox: PathBuf, state: TaskState) -> Self {
        let checks = launch.health_checks.len();
        Self {
            launch,
            runner,
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
    /// The ways of running tasks: the first that can handle a launch runs it.
    executors: Vec<Arc<dyn TaskExecutor>>,
    /// The host's GPUs and the tasks that hold them.
    gpus: Mutex<GpuAllocator>,
    /// Where the GPUs' device nodes are, and the deny rule of each.
    gpu_nodes: Mutex<(PathBuf, gpu::GpuNodes)>,
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

impl Supervisor {
    /// A supervisor for the sandboxes under `work_dir` (absolute), running each task with the
    /// first of `executors` that can, and posting updates to `sink`.
    pub fn new(
        work_dir: PathBuf,
        executors: Vec<Arc<dyn TaskExecutor>>,
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
                executors,
                gpus: Mutex::new(GpuAllocator::new(Vec::new())),
                gpu_nodes: Mutex::default(),
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

    /// Sets the GPUs tasks are given (detected once by the agent) and where their nodes are.
    pub fn set_gpus(&self, gpus: Vec<gpu::Gpu>, settings: gpu::GpuSettings) {
        let nodes = gpu::GpuNodes::stat(&settings.dev_root, &gpus);
        *self.gpus.lock().unwrap_or_else(|p| p.into_inner()) = GpuAllocator::new(gpus);
        *self.gpu_nodes.lock().unwrap_or_else(|p| p.into_inner()) = (settings.dev_root, nodes);
    }

    /// The executors, for their capabilities and the image store.
    pub fn executors(&self) -> &[Arc<dyn TaskExecutor>] {
        &self.executors
    }

    /// The executor for `launch`: the first that can handle it, or why none can (the reason of
    /// the executor of its kind).
    fn executor_for(&self, launch: &LaunchTask) -> Result<Arc<dyn TaskExecutor>, String> {
        let mut reasons = Vec::new();
        for executor in &self.executors {
            match executor.cant_handle(launch) {
                None => return Ok(Arc::clone(executor)),
                Some(reason) => reasons.push((executor.name(), reason)),
            }
        }
        let kind = if launch.container.is_some() { "container" } else { "process" };
        Err(reasons
            .iter()
            .find(|(name, _)| *name == kind)
            .or(reasons.first())
            .map_or_else(|| "this agent has no executor".to_string(), |(_, reason)| reason.clone()))
    }

    /// The executor that ran the task of a recovered launch (by kind; even if it could not run
    /// a new one now).
    fn executor_of(&self, launch: &LaunchTask) -> Option<Arc<dyn TaskExecutor>> {
        let kind = if launch.container.is_some() { "container" } else { "process" };
        self.executors.iter().find(|e| e.name() == kind).or(self.executors.first()).cloned()
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
        let runner = match self.executor_for(&launch) {
            Ok(runner) => runner,
            Err(reason) => {
                warn!(%task_id, %reason, "Launch refused: no executor can run it here.");
                self.status.push(new_update(&task_id, TaskState::Failed, None, None, Some(reason)));
                return;
            }
        };
        {
            let mut tasks = self.lock();
            if tasks.contains_key(&task_id) || sandbox.exists() {
                info!(%task_id, "Launch ignored: the task is already known.");
                return;
            }
            let entry = TaskEntry::new(launch.clone(), Arc::clone(&runner), sandbox.clone(), TaskState::Staging);
            tasks.insert(task_id.clone(), entry);
        }
        let supervisor = Arc::clone(self);
        self.background.spawn(async move { supervisor.run_task(launch, runner, sandbox).await });
    }

    async fn run_task(self: Arc<Self>, launch: LaunchTask, runner: Arc<dyn TaskExecutor>, sandbox: PathBuf) {
        let task_id = launch.task_id.clone();
        let request = match self.prepare_sandbox(&launch, &sandbox) {
            Ok(request) => request,
            Err(error) => {
                warn!(%task_id, %error, "Task could not be started.");
                let message = error.to_string();
                self.finish_with(&task_id, Outcome { state: TaskState::Failed, exit_code: None, message });
                return;
            }
        };
        match runner.launch(&request).await {
            Ok(Started::Running(info)) => self.running(&task_id, info),
            Ok(Started::Ended) => {}
            Err(error) => {
                warn!(%task_id, %error, transient = error.transient, "Task could not be started.");
                let outcome = Outcome { state: TaskState::Failed, exit_code: None, message: error.message };
                self.finish_with(&task_id, outcome);
                return;
            }
        }
        let exit = runner.wait(&sandbox).await;
        self.finish(&task_id, exit);
    }

    /// Makes the task's sandbox (its user's, with `task.json` and the secret files) and the
    /// request for its executor: environment, limits, GPUs.
    fn prepare_sandbox(&self, launch: &LaunchTask, sandbox: &Path) -> Result<LaunchRequest, TaskError> {
        sandbox::create_dir(sandbox)?;
        // A container's user comes from its image, and the container executor hands it the sandbox.
        let run_as = if launch.container.is_some() { None } else { self.run_as(launch)? };
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
        let mut env = task_env(launch, &self.hostname, sandbox);
        let gpus = self.assign_gpus(launch, sandbox)?;
        env.extend(gpu::task_env(&gpus));
        let (dev_root, denied) = {
            let nodes = self.gpu_nodes.lock().unwrap_or_else(|p| p.into_inner());
            (nodes.0.clone(), nodes.1.denied(&gpus))
        };
        let devices = match gpu::device_nodes_in(&dev_root, &gpus) {
            Ok(nodes) => nodes.into_iter().map(|n| n.path).collect(),
            Err(error) => return Err(TaskError::User(error.to_string())),
        };
        let settings = self.limit_settings.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(LaunchRequest {
            launch: launch.clone(),
            sandbox: sandbox.to_path_buf(),
            env,
            run_as: run_as.map(|u| (u.uid, u.gid)),
            hostname: self.hostname.clone(),
            limits: Limits::from_resources(&launch.resources, settings.pids_per_task).deny_devices(denied),
            disk_check_interval_ms: settings.disk_check_interval.as_millis().try_into().unwrap_or(u64::MAX),
            devices,
        })
    }

    /// Gives the task its GPUs and records them in the sandbox (`gpus.json`) for recovery.
    fn assign_gpus(&self, launch: &LaunchTask, sandbox: &Path) -> Result<Vec<gpu::Gpu>, TaskError> {
        if launch.resources.gpus == 0 {
            return Ok(Vec::new());
        }
        let gpus = self
            .gpus
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .assign(&launch.task_id, launch.resources.gpus)
            .map_err(|e| TaskError::User(e.to_string()))?;
        let uuids: Vec<&str> = gpus.iter().map(|g| g.uuid.as_str()).collect();
        sandbox::write_json(&sandbox.join(GPUS_FILE), &uuids)?;
        Ok(gpus)
    }

    fn running(self: &Arc<Self>, task_id: &str, info: ExecutorInfo) {
        let mut tasks = self.lock();
        let Some(entry) = tasks.get_mut(task_id) else { return };
        entry.executor = Some(info);
        if entry.state == TaskState::Staging {
            entry.state = TaskState::Running;
            let mut update = new_update(task_id, TaskState::Running, None, None, None);
            update.limits = sandbox::read_json::<LimitsRecord>(&entry.sandbox.join(LIMITS_FILE))
                .ok()
                .flatten()
                .map(|record| record.limits.iter().map(ToString::to_string).collect())
                .unwrap_or_default();
            self.status.push(update);
            info!(%task_id, task_pid = info.task_pid, "Task running.");
        }
        persist(&entry.sandbox, &entry.state_file(None, false));
        self.start_health_checks(task_id, entry);
        if let Some(grace) = entry.kill_grace {
            drop(tasks);
            self.kill(task_id, grace, None);
        }
    }

    /// Reports the task's end from its executor's record (`exit`, `None` when there is none).
    fn finish(&self, task_id: &str, exit: Option<ExitInfo>) {
        let Some((executor, kill_requested, kill_reason)) =
            self.lock().get(task_id).map(|e| (e.executor, e.kill_grace.is_some(), e.kill_reason.clone()))
        else {
            return;
        };
        if exit.is_none() && executor.is_none() {
            let sandbox = self.sandbox(task_id);
            let executor = sandbox::read_json::<ExecutorInfo>(&sandbox.join(sandbox::EXECUTOR_FILE)).ok().flatten();
            if executor.is_none() {
                let message = "the executor ended before starting the task (see executor.log)".to_string();
                self.finish_with(task_id, Outcome { state: TaskState::Failed, exit_code: None, message });
                return;
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
        entry.runner.release(&entry.sandbox);
        self.gpus.lock().unwrap_or_else(|p| p.into_inner()).release(task_id);
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
        entry.runner.kill(&entry.sandbox, &info, grace_period_secs);
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
        // COMMAND checks run as the task's user, never as the agent's, and inside its container.
        let (env, place) = if entry.launch.container.is_some() {
            let launch = sandbox::read_json::<ExecutorLaunch>(&entry.sandbox.join(sandbox::LAUNCH_FILE));
            match (launch, entry.executor) {
                (Ok(Some(ExecutorLaunch { container: Some(c), .. })), Some(info)) => {
                    let place = CheckPlace::Container {
                        pid: info.task_pid,
                        uid: c.uid,
                        gid: c.gid,
                        working_dir: c.working_dir,
                    };
                    (c.env, place)
                }
                _ => {
                    warn!(%task_id, "Health checks not started: the container's launch record is unreadable.");
                    return;
                }
            }
        } else {
            match self.run_as(&entry.launch) {
                Ok(run_as) => (
                    task_env(&entry.launch, &self.hostname, &entry.sandbox),
                    CheckPlace::Host(run_as.map(|u| (u.uid, u.gid))),
                ),
                Err(error) => {
                    warn!(%task_id, %error, "Health checks not started: the task's user cannot be used.");
                    return;
                }
            }
        };
        for (index, check) in entry.launch.health_checks.iter().enumerate() {
            let supervisor = Arc::clone(self);
            let (task_id, check, sandbox, env, place) =
                (task_id.to_string(), check.clone(), entry.sandbox.clone(), env.clone(), place.clone());
            let run = async move { supervisor.health_loop(task_id, index, check, sandbox, env, place).await };
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
        place: CheckPlace,
    ) {
        let started = Instant::now();
        let interval = Duration::from_secs_f64(check.interval_secs.clamp(0.01, 86_400.0));
        let mut state = CheckState::default();
        loop {
            let result = health::probe(&check, &self.health_client, &sandbox, &env, &place).await;
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
            let Some(runner) = self.executor_of(&record.launch) else { return Ok(()) };
            let mut entry = TaskEntry::new(record.launch, runner, sandbox, update.state);
            entry.healthy = update.healthy;
            entry.exit_code = update.exit_code;
            entry.terminal_uuid = Some(update.uuid.clone());
            self.lock().insert(task_id.to_string(), entry);
            info!(%task_id, state = %update.state, "Resending the unacknowledged terminal update.");
            self.status.push(update.clone());
            return Ok(());
        }
        let state = state_file.as_ref().map_or(TaskState::Staging, |s| s.state);
        let Some(runner) = self.executor_of(&record.launch) else { return Ok(()) };
        let mut entry = TaskEntry::new(record.launch, runner, sandbox.clone(), state);
        entry.kill_reason = state_file.and_then(|s| s.kill_reason);
        if state == TaskState::Killing {
            entry.kill_grace = Some(entry.launch.kill_grace_period_secs);
        }
        let runner = entry.runner.clone();
        entry.executor = sandbox::read_json::<ExecutorInfo>(&sandbox.join(sandbox::EXECUTOR_FILE))?;
        if let Ok(Some(uuids)) = sandbox::read_json::<Vec<String>>(&sandbox.join(GPUS_FILE))
            && let Err(error) = self.gpus.lock().unwrap_or_else(|p| p.into_inner()).restore(task_id, &uuids)
        {
            warn!(%task_id, %error, "Cannot give a recovered task its GPUs back.");
        }
        match runner.recover(&sandbox) {
            Recovered::Running(info) => {
                entry.executor = Some(info);
                if entry.state == TaskState::Staging {
                    entry.state = TaskState::Running;
                }
                info!(%task_id, executor_pid = info.executor_pid, "Re-adopted a running task.");
                self.start_health_checks(task_id, &mut entry);
                self.lock().insert(task_id.to_string(), entry);
                let (supervisor, task_id) = (Arc::clone(self), task_id.to_string());
                self.background.spawn(async move {
                    let exit = runner.wait(&sandbox).await;
                    supervisor.finish(&task_id, exit);
                });
            }
            Recovered::Starting(spawned) => {
                info!(%task_id, executor_pid = spawned.pid, "Re-adopted a task that is still starting.");
                self.lock().insert(task_id.to_string(), entry);
                let (supervisor, task_id) = (Arc::clone(self), task_id.to_string());
                self.background.spawn(async move {
                    if let Some(info) = runner.started(&sandbox, spawned).await {
                        supervisor.running(&task_id, info);
                    }
                    let exit = runner.wait(&sandbox).await;
                    supervisor.finish(&task_id, exit);
                });
            }
            Recovered::Ended(exit) => {
                self.lock().insert(task_id.to_string(), entry);
                info!(%task_id, "Task ended while the agent was away.");
                self.finish(task_id, exit);
            }
        }
        Ok(())
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
            vec![Arc::new(crate::executors::process::ProcessExecutor::new("/nonexistent".into()))],
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

    async fn updates_until(sink: &RecordingSink, task_id: &str, state: TaskState) -> Vec<StatusUpdate> {
        for _ in 0..1000 {
            let updates: Vec<StatusUpdate> =
                sink.0.lock().expect("lock").iter().filter(|u| u.task_id == task_id).cloned().collect();
            if updates.iter().any(|u| u.state == state) {
                return updates;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{task_id} never reached {state}: {:?}", sink.0.lock().expect("lock"));
    }

    fn with_fakes(
        work_dir: &Path,
        executors: Vec<Arc<crate::executors::fake::RecordingExecutor>>,
    ) -> (Arc<Supervisor>, Arc<RecordingSink>) {
        let sink = Arc::new(RecordingSink::default());
        let executors = executors.into_iter().map(|e| e as Arc<dyn TaskExecutor>).collect();
        let supervisor =
            Supervisor::new(work_dir.to_path_buf(), executors, "h".into(), sink.clone(), Background::default());
        (supervisor, sink)
    }

    fn container_launch(task_id: &str) -> LaunchTask {
        let container = gantry_api::ContainerSpec {
            image: "team/web:1.4".into(),
            entrypoint: None,
            cmd: None,
            pull: Default::default(),
            registry_auth: None,
            working_dir: None,
        };
        LaunchTask { container: Some(container), cmd: None, ..launch(task_id) }
    }

    #[tokio::test]
    async fn a_task_no_executor_can_run_fails_with_the_reason_of_its_kind() {
        use crate::executors::fake::RecordingExecutor;
        let dir = tempfile::tempdir().expect("tempdir");
        let process = Arc::new(RecordingExecutor::unable("process", "a task with an image needs containers"));
        let container = Arc::new(RecordingExecutor::unable("container", "the agent does not run as root"));
        let (supervisor, sink) = with_fakes(dir.path(), vec![process.clone(), container.clone()]);
        supervisor.launch(container_launch("web.1"));
        let updates = updates_until(&sink, "web.1", TaskState::Failed).await;
        assert_eq!(updates.len(), 1, "no STAGING or RUNNING first: {updates:?}");
        assert_eq!(updates[0].message.as_deref(), Some("the agent does not run as root"));
        assert!(process.calls().is_empty() && container.calls().is_empty(), "nothing was launched");
    }

    #[tokio::test]
    async fn the_supervisor_reports_what_its_executor_does() {
        use crate::executors::LaunchError;
        use crate::executors::fake::{Call, RecordingExecutor};
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = Arc::new(RecordingExecutor::new("process"));
        let (supervisor, sink) = with_fakes(dir.path(), vec![fake.clone()]);

        supervisor.launch(launch("exits.1"));
        updates_until(&sink, "exits.1", TaskState::Running).await;
        let sandbox = sandbox::tasks_dir(dir.path()).join("exits.1");
        assert!(sandbox.join(sandbox::TASK_FILE).exists(), "the supervisor prepared the sandbox");
        let exit = ExitInfo {
            code: Some(3),
            signal: None,
            killed_on_request: false,
            error: None,
            limit_exceeded: None,
            finished_at: 1,
        };
        fake.end(&sandbox, exit);
        let updates = updates_until(&sink, "exits.1", TaskState::Failed).await;
        let failed = updates.last().expect("terminal");
        assert_eq!((failed.exit_code, failed.message.as_deref()), (Some(3), Some("exited with code 3")));

        supervisor.launch(launch("killed.1"));
        updates_until(&sink, "killed.1", TaskState::Running).await;
        supervisor.kill("killed.1", 2.5, None);
        let updates = updates_until(&sink, "killed.1", TaskState::Killed).await;
        assert_eq!(
            updates.iter().map(|u| u.state).collect::<Vec<_>>(),
            [TaskState::Running, TaskState::Killing, TaskState::Killed]
        );
        let killed_sandbox = sandbox::tasks_dir(dir.path()).join("killed.1");
        assert!(fake.calls().contains(&Call::Kill(killed_sandbox.clone(), 2.5)), "{:?}", fake.calls());
        assert!(fake.calls().contains(&Call::Release(killed_sandbox)), "an ended task releases what it held");

        let mut refused = launch("pull.1");
        refused.app_id = "pull".into();
        fake.refuse("pull", LaunchError { message: "registry r:5000 is unreachable".into(), transient: true });
        supervisor.launch(refused);
        let updates = updates_until(&sink, "pull.1", TaskState::Failed).await;
        assert_eq!(updates.last().and_then(|u| u.message.as_deref()), Some("registry r:5000 is unreachable"));
        assert_eq!(
            fake.calls().iter().filter(|c| matches!(c, Call::Launch(_))).count(),
            3,
            "every launch reached the executor once"
        );
    }
}
