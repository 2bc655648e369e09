//! The master's [`Store`] on its Raft group: a write batch is proposed as one log entry and the
//! call returns once the entry is committed (by a quorum: today the master alone) and applied to
//! this master's state tables — so a write is as durable as before, and now replicated where
//! there are peers. Reads at start come from the state machine's tables.
//!
//! openraft runs on a small runtime of its own ("gantry-raft"), so the master's synchronous
//! commit path can wait for it from any thread, also from a test's single-threaded runtime,
//! without the two waiting on each other: the state machine never takes the master's lock.

use super::log_store::LogStore;
use super::network::Solo;
use super::state_machine::StateMachine;
use super::{Batch, NodeId, TypeConfig};
use crate::store::{Snapshot, Store, StoreError, StoreOp, redb_err};
use openraft::{BasicNode, Raft, ServerState};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// redb's page cache (as [`crate::store::RedbStore`]: the master reads its tables only at start).
const CACHE_BYTES: usize = 32 << 20;
/// How long a master alone waits to lead its group at start (an election of one).
const LEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write waits to be committed by a quorum: a leader cut off from the majority
/// cannot commit, and its callers learn it after this long instead of waiting forever.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// The Raft timings, for a failover in about a second on a LAN or within a cloud region:
/// - the leader sends heartbeats every 50 ms (openraft ticks every 75 ms);
/// - a follower that has heard nothing for its leader lease (400 ms, the election timeout's
///   maximum) plus a random 200-400 ms stands for election, so one of two followers usually
///   asks first and wins at once: 600-800 ms after the leader's last heartbeat;
/// - a master refuses to vote while its own lease on the leader runs, so a master that was
///   cut off and comes back cannot depose a healthy leader.
///
/// A snapshot is taken every 10,000 entries, keeping 1,000 entries after it for followers that
/// lag a little.
fn config() -> Result<openraft::Config, StoreError> {
    openraft::Config {
        cluster_name: "gantry".to_string(),
        heartbeat_interval: 50,
        election_timeout_min: 200,
        election_timeout_max: 400,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(10_000),
        max_in_snapshot_log_to_keep: 1_000,
        ..Default::default()
    }
    .validate()
    .map_err(|e| StoreError::Replication(format!("invalid Raft configuration: {e}")))
}

/// See the module documentation.
pub struct RaftStore {
    raft: Raft<TypeConfig>,
    machine: StateMachine,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for RaftStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftStore").finish_non_exhaustive()
    }
}

impl RaftStore {
    /// Opens (or creates) the store in `data_dir` as master `node`, reaching its peers through
    /// `network`. It takes part in its group (if it has one) at once; see [`Self::initialize`].
    pub fn open<N>(data_dir: &Path, node: NodeId, network: N) -> Result<Self, StoreError>
    where
        N: openraft::network::RaftNetworkFactory<TypeConfig>,
    {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StoreError::DataDir { path: data_dir.display().to_string(), source })?;
        let db = Arc::new(
            redb::Builder::new().set_cache_size(CACHE_BYTES).create(data_dir.join("state.redb")).map_err(redb_err)?,
        );
        let log = LogStore::new(db.clone())?;
        let machine = StateMachine::new(db)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("gantry-raft")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Replication(format!("cannot start the Raft runtime: {e}")))?;
        let config = Arc::new(config()?);
        let state_machine = machine.clone();
        let raft = run(runtime.handle(), async move { Raft::new(node, config, network, log, state_machine).await })?
            .map_err(|e| StoreError::Replication(format!("cannot start Raft: {e}")))?;
        Ok(Self { raft, machine, runtime: Some(runtime) })
    }

    /// Opens the store of a master alone: master `node` serving its API at `address`, in a
    /// group of one it creates on first start; returns once it leads it and has applied its log.
    pub fn open_alone(data_dir: &Path, node: NodeId, address: &str) -> Result<Self, StoreError> {
        let store = Self::open(data_dir, node, Solo)?;
        store.initialize(&BTreeMap::from([(node, address.to_string())]))?;
        store.wait_leading(LEAD_TIMEOUT)?;
        Ok(store)
    }

    /// Opens the store of master `node` of the group `members` (number → API address, this
    /// master included), reaching the others over HTTPS with `tls` (its master certificate and
    /// the cluster CA). The master with the lowest number creates the group on its first start;
    /// the others wait to hear from its leader. It does not wait for a leader.
    pub fn open_group(
        data_dir: &Path,
        node: NodeId,
        tls: rustls::ClientConfig,
        members: &BTreeMap<NodeId, String>,
    ) -> Result<Self, StoreError> {
        let peers = super::network::Peers::new(tls).map_err(StoreError::Replication)?;
        let store = Self::open(data_dir, node, peers)?;
        if members.keys().next() == Some(&node) {
            store.initialize(members)?;
        }
        Ok(store)
    }

    /// Makes `members` (id → API address) the group, on a data dir that never belonged to one
    /// (new, or from before Raft: its state tables are kept as they are); nothing otherwise.
    pub fn initialize(&self, members: &BTreeMap<NodeId, String>) -> Result<(), StoreError> {
        let raft = self.raft.clone();
        let members: BTreeMap<NodeId, BasicNode> =
            members.iter().map(|(id, address)| (*id, BasicNode::new(address))).collect();
        run(self.handle()?, async move {
            if !raft.is_initialized().await.map_err(|e| e.to_string())? {
                raft.initialize(members).await.map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        })?
        .map_err(|e| StoreError::Replication(format!("cannot create the group: {e}")))
    }

    /// Waits up to `timeout` until this master leads its group and has applied its whole log
    /// (the entries committed before a restart and its own first one): only then does its
    /// state hold every acknowledged write.
    pub fn wait_leading(&self, timeout: Duration) -> Result<(), StoreError> {
        let raft = self.raft.clone();
        run(self.handle()?, async move {
            let wait = || raft.wait(Some(timeout));
            let metrics = wait().state(ServerState::Leader, "lead the group").await.map_err(|e| e.to_string())?;
            wait().applied_index_at_least(metrics.last_log_index, "apply the log").await.map_err(|e| e.to_string())?;
            Ok::<(), String>(())
        })?
        .map_err(|e| StoreError::Replication(format!("this master does not lead its group: {e}")))
    }

    /// The Raft node, for the RPC routes and for status.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    fn handle(&self) -> Result<&tokio::runtime::Handle, StoreError> {
        self.runtime
            .as_ref()
            .map(tokio::runtime::Runtime::handle)
            .ok_or_else(|| StoreError::Replication("Raft has stopped".into()))
    }
}

/// Runs `future` on the Raft runtime and waits for it on this thread.
fn run<F>(handle: &tokio::runtime::Handle, future: F) -> Result<F::Output, StoreError>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = sender.send(future.await);
    });
    receiver.recv().map_err(|_| StoreError::Replication("Raft stopped before answering".into()))
}

impl Store for RaftStore {
    fn write(&self, batch: &[StoreOp]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let raft = self.raft.clone();
        let batch = Batch(batch.to_vec());
        let written =
            run(self.handle()?, async move { tokio::time::timeout(COMMIT_TIMEOUT, raft.client_write(batch)).await })?;
        let Ok(written) = written else {
            return Err(StoreError::Replication(format!(
                "the write was not committed within {} s: this master cannot reach a majority of the masters (it may be cut off, or most of them down); it may still be committed once they are back",
                COMMIT_TIMEOUT.as_secs()
            )));
        };
        written.map(|_| ()).map_err(|error| match error.forward_to_leader() {
            Some(forward) => {
                StoreError::NotLeader { leader: forward.leader_node.as_ref().map(|node| node.addr.clone()) }
            }
            None => StoreError::Replication(format!("the write was not committed: {error}")),
        })
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        self.machine.state()
    }

    fn group(&self) -> Option<crate::store::Group> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let this = *id == metrics.id;
                let role = if this {
                    match metrics.state {
                        ServerState::Leader => "leader",
                        ServerState::Candidate => "candidate",
                        ServerState::Learner => "learner",
                        ServerState::Follower => "follower",
                        ServerState::Shutdown => "stopped",
                    }
                } else if Some(*id) == metrics.current_leader {
                    "leader"
                } else if voters.contains(id) {
                    "follower"
                } else {
                    "learner"
                };
                let matched = metrics.replication.as_ref().and_then(|r| r.get(id).cloned().flatten()).map(|l| l.index);
                let last_applied = if this { metrics.last_applied.map(|l| l.index) } else { matched };
                let lag = match (metrics.state, metrics.last_log_index) {
                    (ServerState::Leader, Some(_)) if this => Some(0),
                    (ServerState::Leader, Some(last)) => Some(last.saturating_sub(matched.unwrap_or(0))),
                    _ => None,
                };
                gantry_api::client::MasterInfo {
                    id: *id,
                    address: node.addr.clone(),
                    role: role.to_string(),
                    term: this.then_some(metrics.current_term),
                    last_applied,
                    lag,
                }
            })
            .collect();
        Some(crate::store::Group {
            this: metrics.id,
            term: metrics.current_term,
            leader: metrics.current_leader,
            members,
        })
    }
}

impl Drop for RaftStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            let raft = self.raft.clone();
            let _ = run(runtime.handle(), async move { raft.shutdown().await });
            // Dropping a runtime inside another one's thread would panic.
            runtime.shutdown_background();
        }
    }
}
