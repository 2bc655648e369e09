//! The shared core every handler and loop works on: the cluster state behind one lock, the
//! store, the command links, the event channel and the allocator's wake-up.
//!
//! [`Master::commit`] is the one place where a change becomes real, in this order: persist (one
//! durable transaction), apply to memory, publish events, send agent commands, wake the
//! allocator. Nothing is acknowledged or sent before it is stored.

use crate::MasterConfig;
use crate::links::AgentLinks;
use crate::state::{ClusterState, uuid_meta_key};
use crate::store::{AppRecord, Store, StoreError, StoreOp};
use gantry_api::protocol::AgentCommand;
use gantry_api::{Agent, Event, Task};
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
            && self.events.is_empty()
            && self.commands.is_empty()
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
    /// Client for proxying to agents.
    pub http: reqwest::Client,
    shutdown: watch::Receiver<bool>,
}

impl Master {
    /// A core over a loaded state.
    pub fn new(
        config: MasterConfig,
        master_id: String,
        store: Arc<dyn Store>,
        state: ClusterState,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let (events, _) = broadcast::channel(1024);
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(3))
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            config,
            master_id,
            store,
            state: Mutex::new(state),
            links: Mutex::new(AgentLinks::default()),
            events,
            wake: Notify::new(),
            http,
            shutdown,
        }
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
