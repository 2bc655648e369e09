//! The master's [`Store`] on its Raft group: a write batch is proposed as one log entry and the
//! call returns once the entry is committed (by a quorum: today the master alone) and applied to
//! this master's state tables — so a write is as durable as before, and now replicated where
//! there are peers. Reads at start come from the state machine's tables.
//!
//! openraft runs on a small runtime of its own ("gantry-raft"), so the master's synchronous
//! commit path can wait for it from any thread, also from a test's single-threaded runtime,
//! without the two waiting on each other: the state machine never takes the master's lock.
//!
//! The group's members change through the leader's store ([`RaftStore::add_master`],
//! [`RaftStore::remove_master`]), one change at a time, as [`super::membership`] decides.

use super::log_store::LogStore;
use super::membership::{self, AddStep, MembershipError, RemoveStep};
use super::network::Solo;
use super::proposer::{COMMIT_TIMEOUT, Proposer};
use super::state_machine::StateMachine;
use super::{Batch, NodeId, TypeConfig};
use crate::store::{Done, Snapshot, Store, StoreError, StoreOp, redb_err};
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft, RaftMetrics, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};

/// redb's page cache (as [`crate::store::RedbStore`]: the master reads its tables only at start).
const CACHE_BYTES: usize = 32 << 20;
/// How long a master alone waits to lead its group at start (an election of one).
const LEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a master being added may take to catch up (receive the log, or a snapshot, up to
/// where it was added) before the call gives up; it stays a learner, and calling again resumes.
/// With the commits around it, an add fits in a client's 30 s.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a change of the voters (a joint step, then the new group) may take to commit.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(8);
/// How long a removal waits for the master removed to learn it no longer votes.
const DEMOTE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a voter has to acknowledge a probe entry the leader has committed, to count as
/// answering before a removal.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// The Raft timings, for a failover in about a second on a LAN or within a cloud region:
/// - the leader sends heartbeats every 100 ms (openraft ticks every 150 ms). openraft 0.9 also
///   gives each AppendEntries call this long to answer, so a batch holds at most 64 entries: a
///   follower that fell behind (a restarted master) gets the log in pieces it can store in time,
///   instead of batches that time out again and again;
/// - a follower that has heard nothing for its leader lease (500 ms, the election timeout's
///   maximum) plus a random 250-500 ms stands for election, so one of two followers usually
///   asks first and wins at once: 750-1000 ms after the leader's last heartbeat;
/// - a master refuses to vote while its own lease on the leader runs, so a master that was
///   cut off and comes back cannot depose a healthy leader.
///
/// A snapshot is taken every 10,000 entries, keeping 1,000 entries after it for followers that
/// lag a little.
fn config() -> Result<openraft::Config, StoreError> {
    openraft::Config {
        cluster_name: "gantry".to_string(),
        heartbeat_interval: 100,
        election_timeout_min: 250,
        election_timeout_max: 500,
        max_payload_entries: 64,
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
    /// Every write reaches the log through it, in order (group commit).
    proposer: Proposer,
    machine: StateMachine,
    runtime: Option<tokio::runtime::Runtime>,
    /// A master alone ([`Self::open_alone`]) has no network to reach another master by.
    alone: bool,
    /// Held for the whole of a change of the members, so that changes wait for each other
    /// instead of refusing each other.
    changing: Mutex<()>,
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
        let log = LogStore::open(&data_dir.join("raft-log.redb"), &db, CACHE_BYTES)?;
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
        let proposer = Proposer::start(raft.clone(), runtime.handle());
        Ok(Self { raft, proposer, machine, runtime: Some(runtime), alone: false, changing: Mutex::new(()) })
    }

    /// Opens the store of a master alone: master `node` serving its API at `address`, in a
    /// group of one it creates on first start; returns once it leads it and has applied its log.
    pub fn open_alone(data_dir: &Path, node: NodeId, address: &str) -> Result<Self, StoreError> {
        let mut store = Self::open(data_dir, node, Solo)?;
        store.alone = true;
        store.lead_alone(node, address)?;
        Ok(store)
    }

    /// As [`Self::open_alone`], but reaching other masters over HTTPS with `tls` (its master
    /// certificate and the cluster CA), so the group of one can grow: `gantry master add` (or
    /// `up` with more masters) adds masters to it while it serves.
    pub fn open_first(
        data_dir: &Path,
        node: NodeId,
        address: &str,
        tls: rustls::ClientConfig,
    ) -> Result<Self, StoreError> {
        let peers = super::network::Peers::new(tls).map_err(StoreError::Replication)?;
        let store = Self::open(data_dir, node, peers)?;
        store.lead_alone(node, address)?;
        Ok(store)
    }

    /// Creates the group of this master alone (on a new data dir) and waits until it leads it.
    fn lead_alone(&self, node: NodeId, address: &str) -> Result<(), StoreError> {
        self.initialize(&BTreeMap::from([(node, address.to_string())]))?;
        self.wait_leading(LEAD_TIMEOUT)
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

    /// Adds master `id`, serving its API at `address`, to the group as a voter, on the leader:
    /// as a learner first, then, once it has caught up (within 15 s), as a voter. The master
    /// must be running already (`gantry master --node-id ID --peer ...`, with the group's CA,
    /// secrets key and admin token in its data dir) and reachable from this one.
    ///
    /// Idempotent and resumable: a voter at `address` already is left as it is; a learner at
    /// `address` (an add that was interrupted or ran out of time) is promoted. Refused: an id
    /// held at another address (or an address held by another id), a master alone (it has no
    /// network to the others). Blocks the calling thread: call it off an async worker.
    pub fn add_master(&self, id: NodeId, address: &str) -> Result<(), MembershipError> {
        membership::validate(id, Some(address))?;
        if self.alone {
            let this = self.raft.metrics().borrow().id;
            return Err(MembershipError::Refused(format!(
                "this master runs alone (started without --peer), so it cannot reach another master: restart it as master {this} of a group (add `--node-id {this} --peer {id}={address}`; its state is kept), then add master {id}"
            )));
        }
        let (raft, address) = (self.raft.clone(), address.to_string());
        self.change(async move { add(&raft, id, &address).await })
    }

    /// Removes master `id` from the group (from the voters and the nodes), on the leader;
    /// stop its process afterwards. A master that is not a member is nothing to do. The leader
    /// may remove itself: once the group without it is committed, it steps down and the others
    /// elect a leader (about a second). Refused (see [`membership::plan_remove`] and
    /// [`membership::check_quorum`]): the last voter, and a removal after which the masters that
    /// answer the leader would not be a majority. Blocks the calling thread: call it off an
    /// async worker.
    pub fn remove_master(&self, id: NodeId) -> Result<(), MembershipError> {
        membership::validate(id, None)?;
        let raft = self.raft.clone();
        self.change(async move { remove(&raft, id).await })
    }

    /// Runs a change of the members on the Raft runtime, one at a time.
    fn change<F>(&self, change: F) -> Result<(), MembershipError>
    where
        F: std::future::Future<Output = Result<(), MembershipError>> + Send + 'static,
    {
        let _one_at_a_time = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let stopped = |e: StoreError| MembershipError::Unavailable(e.to_string());
        run(self.handle().map_err(stopped)?, change).map_err(stopped)?
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

/// The metrics of `raft` while it leads; refuses a change on a master that does not.
fn leading(raft: &Raft<TypeConfig>) -> Result<RaftMetrics<NodeId, BasicNode>, MembershipError> {
    let metrics = raft.metrics().borrow().clone();
    if metrics.state == ServerState::Leader {
        return Ok(metrics);
    }
    let membership = metrics.membership_config.membership();
    let leader = metrics.current_leader.and_then(|id| membership.get_node(&id)).map(|node| node.addr.clone());
    Err(MembershipError::NotLeader { leader })
}

/// The last log index the leader knows master `id` holds.
fn matched(metrics: &RaftMetrics<NodeId, BasicNode>, id: NodeId) -> Option<u64> {
    metrics.replication.as_ref()?.get(&id)?.as_ref().map(|log_id| log_id.index)
}

/// Whether master `id` holds the log up to `index` (the leader, which reports no replication to
/// itself, holds its own).
fn caught_up(metrics: &RaftMetrics<NodeId, BasicNode>, id: NodeId, index: u64) -> bool {
    id == metrics.id || matched(metrics, id) >= Some(index)
}

/// Waits up to `limit` for a write of the leader (`what`) to be committed.
async fn within<T>(
    limit: Duration,
    what: &str,
    write: impl std::future::Future<Output = Result<T, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>>,
) -> Result<T, MembershipError> {
    match tokio::time::timeout(limit, write).await {
        Ok(written) => written.map_err(change_error),
        Err(_) => Err(MembershipError::Unavailable(format!(
            "{what} was not committed within {} s: a majority of the masters (of the group before and after the change) must answer the leader; it may still complete, and calling again finishes it",
            limit.as_secs()
        ))),
    }
}

fn change_error(error: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> MembershipError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            MembershipError::NotLeader { leader: forward.leader_node.map(|node| node.addr) }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(e))) => {
            MembershipError::Refused(format!(
                "another change of the masters' group is under way ({e}): retry once it is committed"
            ))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            MembershipError::Refused(format!("the group refused the change: {e}"))
        }
        RaftError::Fatal(fatal) => MembershipError::Unavailable(format!("this master's Raft has stopped: {fatal}")),
    }
}

/// [`RaftStore::add_master`], on the Raft runtime.
async fn add(raft: &Raft<TypeConfig>, id: NodeId, address: &str) -> Result<(), MembershipError> {
    let metrics = leading(raft)?;
    let since = match membership::plan_add(metrics.membership_config.membership(), id, address)? {
        AddStep::Nothing => return Ok(()),
        AddStep::Promote => metrics.last_log_index.unwrap_or_default(),
        AddStep::AddLearner => {
            let added =
                within(COMMIT_TIMEOUT, "adding the learner", raft.add_learner(id, BasicNode::new(address), false))
                    .await?;
            info!(id, address, "Master added as a learner; waiting until it has caught up.");
            added.log_id.index
        }
    };
    let waited = raft
        .wait(Some(CATCH_UP_TIMEOUT))
        .metrics(|m| m.state != ServerState::Leader || caught_up(m, id, since), "the new master catches up")
        .await;
    let metrics = leading(raft)?;
    if waited.is_err() || !caught_up(&metrics, id, since) {
        let holds = matched(&metrics, id).map_or_else(|| "nothing yet".to_string(), |index| format!("up to {index}"));
        return Err(MembershipError::Unavailable(format!(
            "master {id} at {address} has not caught up within {} s (it holds the log {holds}, it needs {since}): is it running (`gantry master --node-id {id} --listen {address} --peer ...`, with the group's trust files), and can this master reach it? It stays a learner: `gantry master add {id} {address}` again finishes the change, `gantry master remove {id}` drops it",
            CATCH_UP_TIMEOUT.as_secs()
        )));
    }
    within(
        CHANGE_TIMEOUT,
        "making it a voter",
        raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false),
    )
    .await?;
    info!(target: "gantry::audit", id, address, "Master added to the group as a voter.");
    Ok(())
}

/// Makes voter `id` (another master, one that answers) a learner, and waits (up to
/// [`DEMOTE_TIMEOUT`]) until it holds the group in which it is one. Removed outright, a master
/// only ever receives the joint step of the change, in which it still votes, so it would stand
/// for election for as long as it runs (refused by the others, but it never stops); a learner
/// never stands. Dropping the learner afterwards sends it nothing more.
async fn demote(raft: &Raft<TypeConfig>, id: NodeId) -> Result<(), MembershipError> {
    let demoted = within(
        CHANGE_TIMEOUT,
        "removing the master's vote",
        raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), true),
    )
    .await?;
    let since = demoted.log_id.index;
    let learned = raft
        .wait(Some(DEMOTE_TIMEOUT))
        .metrics(|m| m.state != ServerState::Leader || caught_up(m, id, since), "the master learns it no longer votes")
        .await;
    if learned.is_err() {
        warn!(id, "The removed master has not learned it no longer votes (it stopped answering); dropping it anyway.");
    }
    Ok(())
}

/// [`RaftStore::remove_master`], on the Raft runtime.
async fn remove(raft: &Raft<TypeConfig>, id: NodeId) -> Result<(), MembershipError> {
    let metrics = leading(raft)?;
    let current = metrics.membership_config.membership().clone();
    let change = match membership::plan_remove(&current, id)? {
        RemoveStep::Nothing => return Ok(()),
        RemoveStep::DropLearner => ChangeMembers::RemoveNodes(BTreeSet::from([id])),
        RemoveStep::RemoveVoter => {
            let answering = answering(raft, &current.voter_ids().collect()).await?;
            membership::check_quorum(current.get_joint_config(), id, &answering)?;
            if id != metrics.id && answering.contains(&id) {
                demote(raft, id).await?;
                ChangeMembers::RemoveNodes(BTreeSet::from([id]))
            } else {
                ChangeMembers::RemoveVoters(BTreeSet::from([id]))
            }
        }
    };
    within(CHANGE_TIMEOUT, "removing the master", raft.change_membership(change, false)).await?;
    info!(target: "gantry::audit", id, "Master removed from the group.");
    Ok(())
}

/// Which of `voters` answer the leader: it commits an empty entry and gives every voter a
/// moment to acknowledge it (the leader answers for itself). A master that is down, cut off or
/// far behind does not.
async fn answering(raft: &Raft<TypeConfig>, voters: &BTreeSet<NodeId>) -> Result<BTreeSet<NodeId>, MembershipError> {
    let probe = within(COMMIT_TIMEOUT, "a probe of which masters answer", raft.client_write(Batch::default())).await?;
    let index = probe.log_id.index;
    let answered = |m: &RaftMetrics<NodeId, BasicNode>| -> BTreeSet<NodeId> {
        voters.iter().copied().filter(|voter| caught_up(m, *voter, index)).collect()
    };
    let _ = raft.wait(Some(ANSWER_TIMEOUT)).metrics(|m| answered(m).len() == voters.len(), "every voter answers").await;
    let metrics = raft.metrics().borrow().clone();
    Ok(answered(&metrics))
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
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.proposer.propose(
            batch.to_vec(),
            Box::new(move |outcome| {
                let _ = sender.send(outcome);
            }),
        );
        receiver.recv().map_err(|_| StoreError::Replication("Raft stopped before answering".into()))?
    }

    fn propose(&self, batch: Vec<StoreOp>, done: Done) {
        self.proposer.propose(batch, done);
    }

    fn pipelined(&self) -> bool {
        true
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        self.machine.state()
    }

    fn add_master(&self, id: u64, address: &str) -> Result<(), MembershipError> {
        RaftStore::add_master(self, id, address)
    }

    fn remove_master(&self, id: u64) -> Result<(), MembershipError> {
        RaftStore::remove_master(self, id)
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
                let matched = matched(&metrics, *id);
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
