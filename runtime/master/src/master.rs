//! The shared core every handler and loop works on: the cluster state behind one lock, the
//! store, the command links, the event channel and the allocator's wake-up.
//!
//! [`Master::commit`] is the one place where a change becomes real, in this order: persist (one
//! durable transaction), apply to memory, publish events, send agent commands, wake the
//! allocator. Nothing is acknowledged or sent before it is stored. On a replicated store the
//! change is proposed instead of persisted, applied at once, and its events, commands and
//! answers wait for its commit ([`crate::pipeline`]).

use crate::MasterConfig;
use crate::links::AgentLinks;
use crate::pipeline::{Pipeline, Settled};
use crate::security::Security;
use crate::state::{ClusterState, uuid_meta_key};
use crate::store::{AppRecord, Store, StoreError, StoreOp};
use gantry_api::protocol::AgentCommand;
use gantry_api::{Agent, Event, Job, JobRun, Task};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, broadcast, watch};

/// One durable edit of a [`Change`]. Each edit is stored ([`Edit::store_ops`]) and applied to
/// memory ([`Edit::apply`]) in the order it was pushed; both are exhaustive matches here, so a
/// new kind of record cannot be stored without being applied, or the other way round.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Insert or replace an app.
    PutApp(AppRecord),
    /// Forget an app (its tasks stay until they are terminal and pruned).
    RemoveApp(String),
    /// Insert or replace an agent.
    PutAgent(Agent),
    /// Forget an agent (its tasks stay until they are pruned).
    RemoveAgent(String),
    /// Insert or replace a task.
    PutTask(Task),
    /// Forget a task and its applied status-update uuids.
    RemoveTask(String),
    /// The applied status-update uuids of a task.
    StatusUuids(String, Vec<String>),
    /// Set a meta entry (read back only when the master starts; e.g. app histories, whose
    /// in-memory copy their owner applies).
    PutMeta(String, String),
    /// Remove a meta entry.
    RemoveMeta(String),
    /// Insert or replace a job.
    PutJob(Job),
    /// Forget a job and, in memory, its runs (remove stored runs with [`Edit::RemoveJobRun`]).
    RemoveJob(String),
    /// Insert or replace a job run.
    PutJobRun(JobRun),
    /// Forget a job run: job id, run id.
    RemoveJobRun(String, String),
}

impl Edit {
    /// Appends the store operations of this edit to `ops`.
    fn store_ops(&self, ops: &mut Vec<StoreOp>) -> Result<(), StoreError> {
        match self {
            Self::PutApp(record) => ops.push(StoreOp::PutApp(record.clone())),
            Self::RemoveApp(id) => ops.push(StoreOp::DeleteApp(id.clone())),
            Self::PutAgent(agent) => ops.push(StoreOp::PutAgent(agent.clone())),
            Self::RemoveAgent(id) => ops.push(StoreOp::DeleteAgent(id.clone())),
            Self::PutTask(task) => ops.push(StoreOp::PutTask(task.clone())),
            Self::RemoveTask(id) => {
                ops.push(StoreOp::DeleteTask(id.clone()));
                ops.push(StoreOp::DeleteMeta(uuid_meta_key(id)));
            }
            Self::StatusUuids(task_id, uuids) => {
                ops.push(StoreOp::PutMeta(uuid_meta_key(task_id), serde_json::to_string(uuids)?));
            }
            Self::PutMeta(key, value) => ops.push(StoreOp::PutMeta(key.clone(), value.clone())),
            Self::RemoveMeta(key) => ops.push(StoreOp::DeleteMeta(key.clone())),
            Self::PutJob(job) => ops.push(StoreOp::PutJob(job.clone())),
            Self::RemoveJob(id) => ops.push(StoreOp::DeleteJob(id.clone())),
            Self::PutJobRun(run) => ops.push(StoreOp::PutJobRun(run.clone())),
            Self::RemoveJobRun(job_id, run_id) => ops.push(StoreOp::DeleteJobRun(job_id.clone(), run_id.clone())),
        }
        Ok(())
    }

    /// Applies this (stored) edit to the in-memory state.
    pub(crate) fn apply(self, state: &mut ClusterState) {
        match self {
            Self::PutApp(record) => state.put_app(record),
            Self::RemoveApp(id) => {
                state.remove_app(&id);
            }
            Self::PutAgent(agent) => state.put_agent(agent),
            Self::RemoveAgent(id) => {
                state.remove_agent(&id);
            }
            Self::PutTask(task) => state.put_task(task),
            Self::RemoveTask(id) => {
                state.remove_task(&id);
            }
            Self::StatusUuids(task_id, uuids) => state.set_status_uuids(&task_id, uuids),
            Self::PutMeta(..) | Self::RemoveMeta(_) => {}
            Self::PutJob(job) => state.put_job(job),
            Self::RemoveJob(id) => {
                state.remove_job(&id);
            }
            Self::PutJobRun(run) => state.put_job_run(run),
            Self::RemoveJobRun(job_id, run_id) => {
                state.remove_job_run(&job_id, &run_id);
            }
        }
    }
}

/// A set of edits persisted together (one transaction) and then applied in order, with the
/// events to publish and the agent commands to send once they are stored.
#[derive(Debug, Default)]
pub struct Change {
    edits: Vec<Edit>,
    /// Events to publish once stored.
    pub events: Vec<Event>,
    /// Commands to send once stored.
    pub commands: Vec<(String, AgentCommand)>,
}

impl Change {
    /// A change of `edits`, without events or commands.
    pub fn of(edits: impl IntoIterator<Item = Edit>) -> Self {
        Self { edits: edits.into_iter().collect(), ..Self::default() }
    }

    /// Adds an edit after those already in the change.
    pub fn push(&mut self, edit: Edit) {
        self.edits.push(edit);
    }

    /// The edits, in order.
    pub fn edits(&self) -> &[Edit] {
        &self.edits
    }

    /// The tasks this change inserts or replaces, in order.
    pub fn put_tasks(&self) -> impl Iterator<Item = &Task> {
        self.edits.iter().filter_map(|e| match e {
            Edit::PutTask(task) => Some(task),
            _ => None,
        })
    }

    /// The job runs this change inserts or replaces, in order.
    pub fn put_job_runs(&self) -> impl Iterator<Item = &JobRun> {
        self.edits.iter().filter_map(|e| match e {
            Edit::PutJobRun(run) => Some(run),
            _ => None,
        })
    }

    /// Whether anything is to be stored, published or sent.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty() && self.events.is_empty() && self.commands.is_empty()
    }

    /// Appends everything of `other` to this change.
    pub fn absorb(&mut self, other: Change) {
        self.edits.extend(other.edits);
        self.events.extend(other.events);
        self.commands.extend(other.commands);
    }

    fn ops(&self) -> Result<Vec<StoreOp>, StoreError> {
        let mut ops = Vec::with_capacity(self.edits.len());
        for edit in &self.edits {
            edit.store_ops(&mut ops)?;
        }
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
    links: Arc<Mutex<AgentLinks>>,
    /// On a replicated store, with a runtime to settle commits on.
    pipeline: Option<Pipeline>,
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
        let links = Arc::new(Mutex::new(AgentLinks::default()));
        let pipeline = (store.pipelined() && tokio::runtime::Handle::try_current().is_ok())
            .then(|| Pipeline::start(events.clone(), links.clone()));
        Self {
            config,
            master_id,
            store,
            state: Mutex::new(state),
            links,
            pipeline,
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

    /// The number of the last change committed or proposed (0 without a pipeline).
    pub fn proposed(&self) -> u64 {
        self.pipeline.as_ref().map_or(0, Pipeline::proposed)
    }

    /// Waits until change `number` and every one before it are committed (at once without a
    /// pipeline), or why not: see [`crate::pipeline`].
    pub async fn settled(&self, number: u64) -> Result<(), String> {
        match &self.pipeline {
            Some(pipeline) => pipeline.settled(number).await,
            None => Ok(()),
        }
    }

    /// How far the committed changes are, as it changes (`None` without a pipeline).
    pub fn settling(&self) -> Option<watch::Receiver<Settled>> {
        self.pipeline.as_ref().map(Pipeline::watch)
    }

    /// Persists `change` in one transaction, then applies it to `state`, publishes its events,
    /// sends its commands and wakes the allocator. On a replicated store: proposes it, applies
    /// it, wakes the allocator and returns; its events and commands go out once it is committed
    /// ([`crate::pipeline`]).
    pub fn commit(&self, state: &mut ClusterState, change: Change) -> Result<(), StoreError> {
        if change.is_empty() {
            return Ok(());
        }
        let ops = change.ops()?;
        if let Some(pipeline) = &self.pipeline {
            if let Some(reason) = pipeline.failed() {
                return Err(StoreError::Replication(format!(
                    "an earlier change was not committed ({reason}); this master reloads the committed state before it takes more: retry"
                )));
            }
            let Change { edits, events, commands } = change;
            pipeline.propose(self.store.as_ref(), ops, events, commands);
            for edit in edits {
                edit.apply(state);
            }
            self.wake_allocator();
            return Ok(());
        }
        // A durable commit waits for the disk: let the runtime move other work off this thread.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| self.store.write(&ops))?;
            }
            _ => self.store.write(&ops)?,
        }
        for edit in change.edits {
            edit.apply(state);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use gantry_api::App;

    fn record(id: &str, version: u64) -> AppRecord {
        let definition = serde_json::from_value(serde_json::json!({"id": id, "cmd": "serve"})).expect("valid");
        AppRecord {
            app: App { definition, version, created_at: 1, updated_at: 1, status: Default::default() },
            config_version: 1,
        }
    }

    #[test]
    fn edits_are_stored_and_applied_in_the_order_they_were_pushed() {
        let store = Arc::new(MemStore::new());
        let (_shutdown, rx) = watch::channel(false);
        let dir = tempfile::tempdir().expect("temp dir");
        let config = MasterConfig::new("127.0.0.1:0".parse().expect("address"), dir.path().to_path_buf());
        let master = crate::build(config, store.clone(), rx).expect("build");
        let mut state = master.lock();
        let stored =
            |store: &MemStore| store.load().expect("load").apps.iter().map(|r| r.app.version).collect::<Vec<_>>();

        // Put, then remove: gone from the store and from memory alike.
        master
            .commit(&mut state, Change::of([Edit::PutApp(record("web", 1)), Edit::RemoveApp("web".into())]))
            .expect("commit");
        assert!(state.app("web").is_none());
        assert!(stored(&store).is_empty());
        // Remove, then put: there in both.
        master
            .commit(&mut state, Change::of([Edit::RemoveApp("web".into()), Edit::PutApp(record("web", 2))]))
            .expect("commit");
        assert_eq!(state.app("web").map(|e| e.record.app.version), Some(2));
        assert_eq!(stored(&store), vec![2]);
    }
}
