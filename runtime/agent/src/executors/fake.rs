//! A recording fake executor for the supervisor's tests: it runs nothing, records every call,
//! and ends a task when the test says so — so the supervisor's decisions (states, messages,
//! kills before the start, recovery) are tested without processes and without waiting.

use super::{Capabilities, LaunchError, LaunchRequest, Recovered, Started, TaskExecutor};
use crate::sandbox::{ExecutorInfo, ExitInfo, SpawnedExecutor};
use futures_util::future::BoxFuture;
use gantry_api::protocol::LaunchTask;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::sync::watch;

/// One call the supervisor made.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `launch` of this task id.
    Launch(String),
    /// `kill` of the task in this sandbox, with its grace period.
    Kill(PathBuf, f64),
    /// `recover` of this sandbox.
    Recover(PathBuf),
    /// `release` of this sandbox.
    Release(PathBuf),
}

/// See the module documentation.
#[derive(Debug)]
pub struct RecordingExecutor {
    name: &'static str,
    calls: Mutex<Vec<Call>>,
    /// Refuse launches whose app id is a key, with the value as the reason.
    refuse: Mutex<HashMap<String, LaunchError>>,
    /// A launch whose task id is here "can't be handled" by this executor.
    cant_handle: Option<String>,
    /// The end of each task, by sandbox: `None` while it runs.
    ends: Mutex<HashMap<PathBuf, watch::Sender<Option<ExitInfo>>>>,
    /// What `recover` answers.
    recovered: Mutex<HashMap<PathBuf, Recovered>>,
}

impl RecordingExecutor {
    /// A fake named `name` that runs every launch.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            calls: Mutex::default(),
            refuse: Mutex::default(),
            cant_handle: None,
            ends: Mutex::default(),
            recovered: Mutex::default(),
        }
    }

    /// A fake that refuses every launch as this host cannot run it, with `reason`.
    pub fn unable(name: &'static str, reason: &str) -> Self {
        Self { cant_handle: Some(reason.to_string()), ..Self::new(name) }
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes the launch of app `app_id` fail with `error`.
    pub fn refuse(&self, app_id: &str, error: LaunchError) {
        self.refuse.lock().unwrap_or_else(|p| p.into_inner()).insert(app_id.to_string(), error);
    }

    /// Ends the task of `sandbox` with `exit`.
    pub fn end(&self, sandbox: &Path, exit: ExitInfo) {
        let sender = self.sender(sandbox);
        sender.send_replace(Some(exit));
    }

    /// Sets what `recover` answers for `sandbox`.
    pub fn set_recovered(&self, sandbox: &Path, recovered: Recovered) {
        self.recovered.lock().unwrap_or_else(|p| p.into_inner()).insert(sandbox.to_path_buf(), recovered);
    }

    fn sender(&self, sandbox: &Path) -> watch::Sender<Option<ExitInfo>> {
        self.ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(sandbox.to_path_buf())
            .or_insert_with(|| watch::channel(None).0)
            .clone()
    }

    fn record(&self, call: Call) {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(call);
    }
}

/// The executor info the fake reports for a running task: pids no process has.
pub const FAKE_INFO: ExecutorInfo =
    ExecutorInfo { executor_pid: -1, executor_start_time: 0, task_pid: -1, task_pgid: -1, task_start_time: 0 };

impl TaskExecutor for RecordingExecutor {
    fn name(&self) -> &'static str {
        self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { containers: self.name == "container", unavailable: self.cant_handle.clone() }
    }

    fn cant_handle(&self, _launch: &LaunchTask) -> Option<String> {
        self.cant_handle.clone()
    }

    fn launch<'a>(&'a self, request: &'a LaunchRequest) -> BoxFuture<'a, Result<Started, LaunchError>> {
        Box::pin(async move {
            self.record(Call::Launch(request.launch.task_id.clone()));
            if let Some(error) = self.refuse.lock().unwrap_or_else(|p| p.into_inner()).get(&request.launch.app_id) {
                return Err(error.clone());
            }
            self.sender(&request.sandbox);
            Ok(Started::Running(FAKE_INFO))
        })
    }

    fn wait<'a>(&'a self, sandbox: &'a Path) -> BoxFuture<'a, Option<ExitInfo>> {
        Box::pin(async move {
            let mut receiver = self.sender(sandbox).subscribe();
            receiver.wait_for(Option::is_some).await.ok().and_then(|exit| exit.clone())
        })
    }

    fn started<'a>(&'a self, _sandbox: &'a Path, _spawned: SpawnedExecutor) -> BoxFuture<'a, Option<ExecutorInfo>> {
        Box::pin(async { Some(FAKE_INFO) })
    }

    /// Records the kill and ends the task as killed on request, as a real executor does.
    fn kill(&self, sandbox: &Path, _executor: &ExecutorInfo, grace_period_secs: f64) {
        self.record(Call::Kill(sandbox.to_path_buf(), grace_period_secs));
        let exit = ExitInfo {
            code: None,
            signal: Some(15),
            killed_on_request: true,
            error: None,
            limit_exceeded: None,
            finished_at: gantry_api::now_millis(),
        };
        self.end(sandbox, exit);
    }

    fn recover(&self, sandbox: &Path) -> Recovered {
        self.record(Call::Recover(sandbox.to_path_buf()));
        self.recovered.lock().unwrap_or_else(|p| p.into_inner()).get(sandbox).cloned().unwrap_or(Recovered::Ended(None))
    }

    fn release(&self, sandbox: &Path) {
        self.record(Call::Release(sandbox.to_path_buf()));
    }
}
