//! The shared core every handler and loop works on: the cluster state behind one lock, the
//! store, the command links, the event channel and the allocator's wake-up.
//!
//! [`Master::commit`] is the one place where a change becomes real, in this order: persist (one
//! durable transaction), apply to memory, publish events, send agent commands, wake the
//! allocator. Nothing is acknowledged or sent before it is stored.

use crate::MasterConfig;
use crate::links::AgentLinks;
use crate::security::Security;
use crate::state::{ClusterState, uuid_meta_key};
use crate::store::{AppRecord, Store, StoreError, StoreOp};
use gantry_api::protocol::AgentCommand;
use gantry_api::{Agent, Event, Job, JobRun, Task};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, broadcast, watch};

/// A set of changes persisted together and then applied.
#[derive(Debug, Default)]
pub struct Change {
    /// Apps to insert or replace.
    pub apps: Vec<AppRecord>,
    /// Apps to forget.
    pub removed_apps: Vec<String>,
    /// Agents to insert or replace.
    pub agents: Vec<Agent>,
    /// Tasks to insert or replace.
    pub tasks: Vec<Task>,
    /// Tasks to forget.
    pub removed_tasks: Vec<String>,
    /// Applied status-update uuids per task.
    pub status_uuids: Vec<(String, Vec<String>)>,
    /// Other meta entries.
    pub meta: Vec<(String, String)>,
    /// Jobs to insert or replace.
    pub jobs: Vec<Job>,
    /// Jobs to forget (with their runs in memory; remove stored runs with `removed_job_runs`).
    pub removed_jobs: Vec<String>,
    /// Job runs to insert or replace.
    pub job_runs: Vec<JobRun>,
    /// Job runs to forget: job id, run id.
    pub removed_job_runs: Vec<(String, String)>,
    /// Events to publish once stored.
    pub events: Vec<Event>,
    /// Commands to send once stored.
    pub commands: Vec<(String, AgentCommand)>,
}

impl Change {
    /// Whether anything is to be stored.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
            && self.removed_apps.is_empty()
            && self.agents.is_empty()
            && self.tasks.is_empty()
            && self.removed_tasks.is_empty()
            && self.status_uuids.is_empty()
            && self.meta.is_empty()
            && self.jobs.is_empty()
            && self.removed_jobs.is_empty()
            && self.job_runs.is_empty()
            && self.removed_job_runs.is_empty()
            && self.events.is_empty()
            && self.commands.is_empty()
    }

    /// Appends everything of `other` to this change.
    pub fn absorb(&mut self, other: Change) {
        self.apps.extend(other.apps);
        self.removed_apps.extend(other.removed_apps);
        self.agents.extend(other.agents);
        self.tasks.extend(other.tasks);
        self.removed_tasks.extend(other.removed_tasks);
        self.status_uuids.extend(other.status_uuids);
        self.meta.extend(other.meta);
        self.jobs.extend(other.jobs);
        self.removed_jobs.extend(other.removed_jobs);
        self.job_runs.extend(other.job_runs);
        self.removed_job_runs.extend(other.removed_job_runs);
        self.events.extend(other.events);
        self.commands.extend(other.commands);
    }

    fn ops(&self) -> Result<Vec<StoreOp>, StoreError> {
        let mut ops = Vec::new();
        ops.extend(self.apps.iter().cloned().map(StoreOp::PutApp));
        ops.extend(self.removed_apps.iter().cloned().map(StoreOp::DeleteApp));
        ops.extend(self.agents.iter().cloned().map(StoreOp::PutAgent));
        ops.extend(self.tasks.iter().cloned().map(StoreOp::PutTask));
        for id in &self.removed_tasks {
            ops.push(StoreOp::DeleteTask(id.clone()));
            ops.push(StoreOp::DeleteMeta(uuid_meta_key(id)));
        }
        for (task_id, uuids) in &self.status_uuids {
            ops.push(StoreOp::PutMeta(uuid_meta_key(task_id), serde_json::to_string(uuids)?));
        }
        ops.extend(self.meta.iter().map(|(k, v)| StoreOp::PutMeta(k.clone(), v.clone())));
        ops.extend(self.removed_jobs.iter().cloned().map(StoreOp::DeleteJob));
        ops.extend(self.jobs.iter().cloned().map(StoreOp::PutJob));
        ops.extend(self.removed_job_runs.iter().map(|(j, r)| StoreOp::DeleteJobRun(j.clone(), r.clone())));
        ops.extend(self.job_runs.iter().cloned().map(StoreOp::PutJobRun));
        Ok(ops)
    }
}

/// The master's shared core.
#[derive(Debug)]
pub struct Master {
    /// Settings.
    pub config: MasterConfig,
    /// This master's id (persisted in the store's meta).
    pub master_id: String,
    /// Where acknowledged state lives.
    pub store: Arc<dyn Store>,
    state: Mutex<ClusterState>,
    links: Mutex<AgentLinks>,
    events: broadcast::Sender<Event>,
    wake: Notify,
    shutdown: watch::Receiver<bool>,
    security: Arc<Security>,
    allocating: AtomicBool,
}

impl Master {
    /// A core over a loaded state.
    pub fn new(
        config: MasterConfig,
        master_id: String,
        store: Arc<dyn Store>,
        state: ClusterState,
        shutdown: watch::Receiver<bool>,
        security: Arc<Security>,
    ) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            config,
            master_id,
            store,
            state: Mutex::new(state),
            links: Mutex::new(AgentLinks::default()),
            events,
            wake: Notify::new(),
            shutdown,
            security,
            allocating: AtomicBool::new(false),
        }
    }

    /// Trust: the CA, tokens, policies, secrets.
    pub fn security(&self) -> &Security {
        &self.security
    }

    /// Tells whether the allocator loop runs (set by the loop itself).
    pub fn set_allocating(&self, running: bool) {
        self.allocating.store(running, Ordering::SeqCst);
    }

    /// Whether the master serves: the allocator runs and no shutdown has begun.
    pub fn ready(&self) -> bool {
        self.allocating.load(Ordering::SeqCst) && !*self.shutdown.borrow()
    }

    /// Locks the cluster state. Never hold the guard across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, ClusterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the command links. Never take the state lock while holding this one.
    pub fn links(&self) -> MutexGuard<'_, AgentLinks> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Wakes the allocator for a new cycle.
    pub fn wake_allocator(&self) {
        self.wake.notify_one();
    }

    /// Resolves when the allocator is woken.
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// A receiver that turns `true` when the master shuts down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// Persists `change` in one transaction, then applies it to `state`, publishes its events,
    /// sends its commands and wakes the allocator.
    pub fn commit(&self, state: &mut ClusterState, change: Change) -> Result<(), StoreError> {
        if change.is_empty() {
            return Ok(());
        }
        let ops = change.ops()?;
        // A durable commit waits for the disk: let the runtime move other work off this thread.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| self.store.write(&ops))?;
            }
            _ => self.store.write(&ops)?,
        }
        for id in &change.removed_apps {
            state.remove_app(id);
        }
        for record in change.apps {
            state.put_app(record);
        }
        for agent in change.agents {
            state.put_agent(agent);
        }
        for task in change.tasks {
            state.put_task(task);
        }
        for id in &change.removed_tasks {
            state.remove_task(id);
        }
        for (task_id, uuids) in change.status_uuids {
            state.set_status_uuids(&task_id, uuids);
        }
        for id in &change.removed_jobs {
            state.remove_job(id);
        }
        for job in change.jobs {
            state.put_job(job);
        }
        for (job_id, run_id) in &change.removed_job_runs {
            state.remove_job_run(job_id, run_id);
        }
        for run in change.job_runs {
            state.put_job_run(run);
        }
        for event in change.events {
            let _ = self.events.send(event);
        }
        if !change.commands.is_empty() {
            let mut links = self.links();
            for (agent_id, command) in change.commands {
                links.send(&agent_id, command);
            }
        }
        self.wake_allocator();
        Ok(())
    }
}
