//! The deployment driver: the I/O adapter of [`crate::services::deployment`]. On every cluster
//! event and at least twice a second it evaluates each app's active deployment and stores the
//! transitions it returns (progress, pause, promotion, success, failure and auto-rollback)
//! through [`Master::commit`], so every state a user can see was stored first.
//!
//! It is started with the HTTP application ([`spawn`], once per master) and holds the master
//! only weakly between ticks, so a stopped master is dropped (and its store closed) promptly.

use crate::master::Master;
use crate::services::deployment::{EvalInput, Transition, evaluate};
use crate::services::history;
use crate::services::versions::{self, Ending};
use crate::state::ClusterState;
use gantry_api::{DeploymentStatus, Millis};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tracing::{info, warn};

/// The longest time between two evaluations.
const TICK: Duration = Duration::from_millis(500);

/// Starts the driver of `master` on the current tokio runtime, unless it runs already or there
/// is no runtime (a router built outside one, in a synchronous test).
pub fn spawn(master: &Arc<Master>) {
    static STARTED: Mutex<Vec<Weak<Master>>> = Mutex::new(Vec::new());
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    let mut started = STARTED.lock().unwrap_or_else(|p| p.into_inner());
    started.retain(|w| w.strong_count() > 0);
    if started.iter().any(|w| w.upgrade().is_some_and(|m| Arc::ptr_eq(&m, master))) {
        return;
    }
    started.push(Arc::downgrade(master));
    let weak = Arc::downgrade(master);
    let mut events = master.subscribe();
    let mut shutdown = master.shutdown_signal();
    runtime.spawn(async move {
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
    });
}

/// Evaluates every active deployment once and stores what changed.
pub fn tick(master: &Master) {
    let now = gantry_api::now_millis();
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
    let change = versions::history_change(id, &history, events).map_err(|e| e.to_string())?;
    master.commit(state, change).map_err(|e| e.to_string())?;
    versions::apply(state, id, history);
    if announce {
        info!(app_id = %id, %deployment_id, status = %status, "Deployment changed.");
    }
    Ok(())
}
