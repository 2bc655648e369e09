//! The process executor: the task's command runs on the host, as the task's host user, in the
//! sandbox, under its own `gantry executor` (cgroup limits, kill with grace, exit record).

use super::spawned::Spawner;
use super::{Capabilities, LaunchError, LaunchRequest, Recovered, Started, TaskExecutor};
use crate::sandbox::{ExecutorInfo, ExitInfo, SpawnedExecutor};
use futures_util::future::BoxFuture;
use gantry_api::protocol::LaunchTask;
use std::path::{Path, PathBuf};

/// See the module documentation.
#[derive(Debug)]
pub struct ProcessExecutor {
    spawner: Spawner,
}

impl ProcessExecutor {
    /// Runs tasks through `executor_path executor --sandbox DIR`.
    pub fn new(executor_path: PathBuf) -> Self {
        Self { spawner: Spawner::new(executor_path) }
    }
}

impl TaskExecutor for ProcessExecutor {
    fn name(&self) -> &'static str {
        "process"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { containers: false, unavailable: None }
    }

    fn cant_handle(&self, launch: &LaunchTask) -> Option<String> {
        launch.container.as_ref().map(|c| format!("image {} needs the container executor", c.image))
    }

    fn launch<'a>(&'a self, request: &'a LaunchRequest) -> BoxFuture<'a, Result<Started, LaunchError>> {
        Box::pin(async move { self.spawner.start(&request.sandbox, &request.executor_launch()).await })
    }

    fn wait<'a>(&'a self, sandbox: &'a Path) -> BoxFuture<'a, Option<ExitInfo>> {
        Box::pin(self.spawner.wait(sandbox))
    }

    fn started<'a>(&'a self, sandbox: &'a Path, spawned: SpawnedExecutor) -> BoxFuture<'a, Option<ExecutorInfo>> {
        Box::pin(self.spawner.started_after_recovery(sandbox, spawned))
    }

    fn kill(&self, sandbox: &Path, executor: &ExecutorInfo, grace_period_secs: f64) {
        self.spawner.kill(sandbox, executor, grace_period_secs);
    }

    fn recover(&self, sandbox: &Path) -> Recovered {
        self.spawner.recover(sandbox)
    }
}
