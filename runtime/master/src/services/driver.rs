//! The deployment driver: the I/O adapter of [`crate::services::deployment`]. On every cluster
//! event and at least twice a second it evaluates each app's active deployment and stores the
//! transitions it returns (progress, pause, promotion, success, failure and auto-rollback)
//! through [`Master::commit`], so every state a user can see was stored first.
//!
//! [`run`] is started by the master next to the allocator and holds the master only weakly
//! between ticks, so a stopped master is dropped (and its store closed) promptly.

use crate::master::Master;
use crate::services::deployment::{EvalInput, Transition, evaluate};
use crate::services::history;
use crate::services::versions::{self, Ending};
use crate::state::ClusterState;
use gantry_api::{DeploymentStatus, Millis};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// The longest time between two evaluations.
const TICK: Duration = Duration::from_millis(500);

/// Runs the driver of `master` until shutdown. It holds the master only weakly between ticks.
pub async fn run(master: Arc<Master>) {
    let weak = Arc::downgrade(&master);
    let mut events = master.subscribe();
    let mut shutdown = master.shutdown_signal();
    drop(master);
    loop {
        if *shutdown.borrow() {
            return;
        }
        match weak.upgrade() {
            Some(master) => tick(&master),
            None => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = events.recv() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Evaluates every active deployment once, now, and stores what changed.
pub fn tick(master: &Master) {
    tick_at(master, gantry_api::now_millis());
}

/// Evaluates every active deployment once as of `now` (milliseconds since the Unix epoch) and
/// stores what changed: progress deadlines are measured against `now`, and it stamps the
/// transitions. [`tick`] passes the wall clock; tests pass explicit instants.
pub fn tick_at(master: &Master, now: Millis) {
    let mut state = master.lock();
    let ids: Vec<String> =
        state.apps().filter(|e| e.history.active().is_some()).map(|e| e.record.app.definition.id.clone()).collect();
    for id in ids {
        if let Err(error) = drive(master, &mut state, &id, now) {
            warn!(app_id = %id, %error, "Could not store a deployment change; retrying.");
        }
    }
}

fn drive(master: &Master, state: &mut ClusterState, id: &str, now: Millis) -> Result<(), String> {
    let Some(entry) = state.app(id) else { return Ok(()) };
    let Some(active) = entry.history.active() else { return Ok(()) };
    let tasks = state.tasks_of_app(id);
    let evaluation = evaluate(&EvalInput {
        deployment: active,
        definition: &entry.record.app.definition,
        config_version: entry.record.config_version,
        tasks: &tasks,
        waiting: entry.runtime.waiting.as_deref(),
        now,
    });
    let Some(transition) = evaluation.transition else { return Ok(()) };
    if let Transition::Failed(reason) = &transition
        && active.strategy.auto_rollback
    {
        let (deployment_id, from) = (active.id.clone(), active.from_version);
        let ending = Ending { status: DeploymentStatus::RolledBack, reason: Some(reason.clone()) };
        match versions::rollback(state, id, from, Some(ending), now) {
            Ok(prepared) => {
                master.commit(state, prepared.change).map_err(|e| e.to_string())?;
                versions::apply(state, id, prepared.history);
                info!(app_id = %id, %deployment_id, version = from, %reason, "Deployment failed; rolling back.");
                return Ok(());
            }
            Err(error) => warn!(app_id = %id, %deployment_id, %error, "Cannot roll back a failed deployment."),
        }
    }
    let mut history = entry.history.clone();
    let Some(d) = history.active_mut() else { return Ok(()) };
    let mut progress = evaluation.progress.clone();
    progress.new_ready = progress.new_ready.max(d.progress.new_ready);
    d.progress = progress;
    let announce = match &transition {
        Transition::Progressed => {
            d.progressed_at = now;
            false
        }
        Transition::Paused => {
            d.status = DeploymentStatus::Paused;
            d.reason = evaluation.reason.clone();
            true
        }
        Transition::Promoted => {
            d.promoted = true;
            d.status = DeploymentStatus::Running;
            d.progressed_at = now;
            true
        }
        Transition::Succeeded => {
            history::finish(d, DeploymentStatus::Succeeded, None, now);
            true
        }
        Transition::Failed(reason) => {
            history::finish(d, DeploymentStatus::Failed, Some(reason.clone()), now);
            true
        }
    };
    let events = if announce { vec![versions::deployment_event(d, now)] } else { Vec::new() };
    let (deployment_id, status) = (d.id.clone(), d.status);
    let before = state.app(id).map(|e| &e.history).ok_or_else(|| format!("app `{id}` is gone"))?;
    let change = versions::history_change(id, before, &history, events).map_err(|e| e.to_string())?;
    master.commit(state, change).map_err(|e| e.to_string())?;
    versions::apply(state, id, history);
    if announce {
        info!(app_id = %id, %deployment_id, status = %status, "Deployment changed.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::{Change, Edit};
    use crate::store::{MemStore, Store};
    use crate::{MasterConfig, build};
    use gantry_api::{AppDefinition, DeploymentKind, Resources, Task, TaskState, UpgradeStrategy};

    /// A master over a memory store; its trust material lives in a temp dir kept as long as the
    /// shutdown sender.
    fn master() -> (Arc<Master>, Arc<MemStore>, (tokio::sync::watch::Sender<bool>, tempfile::TempDir)) {
        let store = Arc::new(MemStore::new());
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        let dir = tempfile::tempdir().expect("temp dir");
        let config = MasterConfig::new("127.0.0.1:0".parse().expect("address"), dir.path().to_path_buf());
        let master = build(config, store.clone(), rx).expect("build");
        (master, store, (shutdown, dir))
    }

    fn definition(id: &str, cmd: &str, strategy: UpgradeStrategy) -> AppDefinition {
        let mut d: AppDefinition =
            serde_json::from_value(serde_json::json!({"id": id, "cmd": cmd, "instances": 2})).expect("valid");
        d.upgrade_strategy = strategy;
        d
    }

    fn task(app: &str, n: usize, version: u64, state: TaskState) -> Task {
        Task {
            id: format!("{app}.{version}.{n}"),
            app_id: app.into(),
            app_version: version,
            agent_id: "a".into(),
            host: "h".into(),
            state,
            healthy: None,
            ports: vec![],
            resources: Resources::default(),
            staged_at: 1,
            started_at: Some(1),
            finished_at: None,
            exit_code: None,
            message: None,
            limits: Vec::new(),
        }
    }

    fn commit_tasks(master: &Master, tasks: Vec<Task>) {
        let mut state = master.lock();
        master.commit(&mut state, Change::of(tasks.into_iter().map(Edit::PutTask))).expect("store tasks");
    }

    /// A fixed instant the tests' deployments start at; the driver is ticked at explicit
    /// instants after it, so no test waits for a deadline in real time.
    const T0: Millis = 1_700_000_000_000;

    fn deploy(master: &Master, definition: AppDefinition, now: Millis) -> String {
        let mut state = master.lock();
        let prepared = if state.app(&definition.id).is_some() {
            versions::new_version(&state, definition.clone(), DeploymentKind::Update, None, now).expect("version")
        } else {
            versions::create(definition.clone(), now).expect("create")
        };
        master.commit(&mut state, prepared.change).expect("store");
        versions::apply(&mut state, &definition.id, prepared.history);
        prepared.deployment_id.unwrap_or_default()
    }

    fn deployment(master: &Master, app: &str, id: &str) -> gantry_api::Deployment {
        let state = master.lock();
        state.app(app).and_then(|e| e.history.deployments.iter().find(|d| d.id == id).cloned()).expect("deployment")
    }

    #[test]
    fn stalled_deployment_rolls_back_and_everything_is_stored_first() {
        let (master, store, _shutdown) = master();
        let strategy = UpgradeStrategy { progress_deadline: 10.0, auto_rollback: true, ..UpgradeStrategy::default() };
        deploy(&master, definition("web", "serve v1", strategy.clone()), T0);
        commit_tasks(&master, vec![task("web", 1, 1, TaskState::Running), task("web", 2, 1, TaskState::Running)]);
        let id = deploy(&master, definition("web", "serve v2", strategy), T0);
        let since = deployment(&master, "web", &id).progressed_at;
        assert_eq!(since, T0);
        tick_at(&master, since + 10_000);
        assert_eq!(deployment(&master, "web", &id).status, DeploymentStatus::Running, "at the deadline, not past it");
        tick_at(&master, since + 10_001);

        let failed = deployment(&master, "web", &id);
        assert_eq!(failed.status, DeploymentStatus::RolledBack);
        assert_eq!(failed.finished_at, Some(since + 10_001));
        assert!(failed.reason.as_deref().is_some_and(|r| r.contains("progress deadline")), "{failed:?}");
        let rollback_id = failed.rollback_id.clone().expect("rollback");
        let rollback = deployment(&master, "web", &rollback_id);
        assert_eq!((rollback.kind, rollback.from_version, rollback.to_version), (DeploymentKind::Rollback, 2, 3));
        let app = master.lock().app("web").map(|e| e.record.clone()).expect("app");
        assert_eq!((app.app.version, app.config_version), (3, 3));
        assert_eq!(app.app.definition.cmd.as_deref(), Some("serve v1"));

        // What is in memory is what the store holds: a restarted master sees the same history.
        let reloaded = ClusterState::from_snapshot(store.load().expect("load"));
        let history = master.lock().app("web").map(|e| e.history.clone()).expect("history");
        assert_eq!(reloaded.app("web").map(|e| e.history.clone()), Some(history.clone()));
        assert_eq!(history.versions.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 2, 3]);

        // The rollback's instances come up and the old ones go: it succeeds.
        let mut done = vec![task("web", 1, 1, TaskState::Killed), task("web", 2, 1, TaskState::Killed)];
        done.extend([task("web", 3, 3, TaskState::Running), task("web", 4, 3, TaskState::Running)]);
        commit_tasks(&master, done);
        tick_at(&master, since + 10_002);
        assert_eq!(deployment(&master, "web", &rollback_id).status, DeploymentStatus::Succeeded);
        assert_eq!(master.lock().app_status("web", 0).deployment, None);
    }

    #[test]
    fn without_auto_rollback_a_stalled_deployment_fails_and_progress_restarts_the_deadline() {
        let (master, _store, _shutdown) = master();
        let strategy = UpgradeStrategy { progress_deadline: 0.5, ..UpgradeStrategy::default() };
        deploy(&master, definition("api", "serve v1", strategy.clone()), T0);
        commit_tasks(&master, vec![task("api", 1, 1, TaskState::Running), task("api", 2, 1, TaskState::Running)]);
        let id = deploy(&master, definition("api", "serve v2", strategy), T0);
        let since = deployment(&master, "api", &id).progressed_at;
        tick_at(&master, since + 350);
        assert_eq!(deployment(&master, "api", &id).progressed_at, since, "no progress yet");
        commit_tasks(&master, vec![task("api", 3, 2, TaskState::Running)]);
        tick_at(&master, since + 400);
        let progressed = deployment(&master, "api", &id);
        assert_eq!((progressed.status, progressed.progress.new_ready), (DeploymentStatus::Running, 1));
        assert_eq!(progressed.progressed_at, since + 400, "progress restarts the deadline");
        tick_at(&master, since + 900);
        assert_eq!(deployment(&master, "api", &id).status, DeploymentStatus::Running, "the deadline restarted");
        tick_at(&master, since + 901);
        let failed = deployment(&master, "api", &id);
        assert_eq!(failed.status, DeploymentStatus::Failed);
        assert_eq!(failed.finished_at, Some(since + 901));
        assert!(failed.rollback_id.is_none());
        assert_eq!(master.lock().app("api").map(|e| e.record.app.version), Some(2), "no rollback");
    }
}
