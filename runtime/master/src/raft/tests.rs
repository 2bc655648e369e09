//! openraft's storage suite (log and state machine: membership, initial state, votes, reads,
//! purges, truncation, appends, applies, snapshot transfer) against the redb log and state
//! machine, each case on a fresh database; and a crash between an apply and the next durable
//! commit.

use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::{Batch, RaftStorageError, TypeConfig};
use crate::store::{StoreError, StoreOp};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use std::sync::Arc;

struct RedbBuilder;

fn open(dir: &std::path::Path) -> Result<Arc<redb::Database>, StoreError> {
    Ok(Arc::new(redb::Database::create(dir.join("state.redb")).map_err(crate::store::redb_err)?))
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), RaftStorageError> {
        let dir = tempfile::tempdir().map_err(super::write_error)?;
        let db = open(dir.path()).map_err(super::write_error)?;
        let log = LogStore::new(db.clone()).map_err(super::write_error)?;
        let machine = StateMachine::new(db).map_err(super::write_error)?;
        Ok((dir, log, machine))
    }
}

#[test]
fn the_redb_log_and_state_machine_pass_openraft_s_storage_suite() {
    Suite::test_all(RedbBuilder).expect("every case of the suite passes");
}

fn meta_entry(index: u64, key: &str) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
        payload: EntryPayload::Normal(Batch(vec![StoreOp::PutMeta(key.to_string(), format!("v{index}"))])),
    }
}

#[tokio::test]
async fn applied_batches_reach_the_state_tables_and_are_kept_after_a_durable_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = open(dir.path()).expect("open");
        let mut log = LogStore::new(db.clone()).expect("log");
        let mut machine = StateMachine::new(db).expect("state machine");
        machine.apply([meta_entry(1, "a"), meta_entry(2, "b")]).await.expect("apply");
        let (last, _) = machine.applied_state().await.expect("applied state");
        assert_eq!(last.map(|l| l.index), Some(2));
        assert_eq!(machine.state().expect("state").meta.get("b").map(String::as_str), Some("v2"));
        // Applies are not synced on their own; the next durable commit (a vote here) takes them.
        log.save_vote(&openraft::Vote::new(1, 0)).await.expect("vote");
    }
    let machine = StateMachine::new(open(dir.path()).expect("reopen")).expect("state machine");
    let state = machine.state().expect("state");
    assert_eq!(state.meta.get("a").map(String::as_str), Some("v1"));
    assert_eq!(state.meta.get("b").map(String::as_str), Some("v2"));
}

fn put(key: &str, value: &str) -> StoreOp {
    StoreOp::PutMeta(key.to_string(), value.to_string())
}

#[test]
fn a_master_alone_commits_through_its_group_and_keeps_everything_across_restarts() {
    use crate::store::Store as _;
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = super::store::RaftStore::open_alone(dir.path(), 1, "127.0.0.1:5050").expect("open");
        store.write(&[put("a", "1"), put("b", "2")]).expect("write");
        store.write(&[crate::store::StoreOp::DeleteMeta("a".into())]).expect("write");
        let state = store.load().expect("load");
        assert_eq!(state.meta.get("a"), None);
        assert_eq!(state.meta.get("b").map(String::as_str), Some("2"));
    }
    // Restarted on the same data dir: the same group, the writes there, and writable.
    let store = super::store::RaftStore::open_alone(dir.path(), 1, "127.0.0.1:5050").expect("reopen");
    assert_eq!(store.load().expect("load").meta.get("b").map(String::as_str), Some("2"));
    store.write(&[put("c", "3")]).expect("write after the restart");
    assert_eq!(store.load().expect("load").meta.get("c").map(String::as_str), Some("3"));
}

#[test]
fn a_data_dir_from_before_raft_keeps_its_state() {
    use crate::store::Store as _;
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let old = crate::store::RedbStore::open(dir.path()).expect("open the old store");
        old.write(&[put("kept", "yes")]).expect("write");
    }
    let store = super::store::RaftStore::open_alone(dir.path(), 1, "127.0.0.1:5050").expect("open with Raft");
    assert_eq!(store.load().expect("load").meta.get("kept").map(String::as_str), Some("yes"));
    store.write(&[put("new", "1")]).expect("write");
    let state = store.load().expect("load");
    assert_eq!(state.meta.get("kept").map(String::as_str), Some("yes"));
    assert_eq!(state.meta.get("new").map(String::as_str), Some("1"));
}

#[tokio::test]
async fn a_master_alone_commits_from_inside_a_single_threaded_runtime() {
    use crate::store::Store as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = super::store::RaftStore::open_alone(dir.path(), 1, "127.0.0.1:5050").expect("open");
    store.write(&[put("from", "current-thread")]).expect("write");
    assert_eq!(store.load().expect("load").meta.get("from").map(String::as_str), Some("current-thread"));
}

/// One master of a group in this process: its store, and its RPC server on `address`.
struct Member {
    id: u64,
    address: std::net::SocketAddr,
    store: Option<super::store::RaftStore>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// A group's CA and data dirs; members are started and stopped by the test.
struct Group {
    ca: gantry_trust::Ca,
    dirs: Vec<tempfile::TempDir>,
}

impl Group {
    fn new(size: usize) -> Self {
        gantry_trust::tls::install_default_provider();
        let ca = gantry_trust::Ca::generate("raft-test").expect("CA");
        Self { ca, dirs: (0..size).map(|_| tempfile::tempdir().expect("tempdir")).collect() }
    }

    /// Starts master `id` (1-based) on `address` ("127.0.0.1:0" at first).
    async fn start(&self, id: u64, address: std::net::SocketAddr) -> Member {
        let identity = self
            .ca
            .issue(
                &gantry_trust::Identity::Master(id.to_string()),
                &[],
                &[std::net::Ipv4Addr::LOCALHOST.into()],
                gantry_trust::pki::LEAF_LIFETIME,
            )
            .expect("certificate");
        let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
        let address = listener.local_addr().expect("address");
        let client =
            gantry_trust::tls::client_config(self.ca.cert_pem(), Some((&identity.cert_pem, &identity.key_pem)))
                .expect("client TLS");
        let peers = super::network::Peers::new(client).expect("peers");
        let dir = self.dirs[usize::try_from(id - 1).expect("id")].path().to_path_buf();
        let store = tokio::task::spawn_blocking(move || super::store::RaftStore::open(&dir, id, peers))
            .await
            .expect("join")
            .expect("open");
        let tls = gantry_trust::tls::server_config(self.ca.cert_pem(), &identity.cert_pem, &identity.key_pem, false)
            .expect("server TLS");
        let listener = gantry_trust::listener::TlsListener::new(listener, Arc::new(tls)).expect("TLS listener");
        let app = super::rpc::router::<()>(store.raft().clone())
            .into_make_service_with_connect_info::<gantry_trust::listener::Peer>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Member { id, address, store: Some(store), server: Some(server) }
    }
}

impl Member {
    fn store(&self) -> &super::store::RaftStore {
        self.store.as_ref().expect("a running member")
    }

    /// Stops it as a crash would look to the others: its server and its Raft go away.
    fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
        self.store = None;
    }

    /// Waits (up to 10 s) until this member sees a leader other than `not`; returns its id.
    async fn leader_other_than(&self, not: Option<u64>) -> u64 {
        let metrics = self
            .store()
            .raft()
            .wait(Some(std::time::Duration::from_secs(10)))
            .metrics(|m| m.current_leader.is_some() && m.current_leader != not, "a new leader")
            .await
            .expect("a leader is elected");
        metrics.current_leader.expect("leader")
    }

    /// Writes `ops` from a blocking thread (the store's write waits for the commit).
    async fn write(&self, ops: Vec<StoreOp>) -> Result<(), StoreError> {
        let raft_store: &super::store::RaftStore = self.store();
        tokio::task::block_in_place(|| crate::store::Store::write(raft_store, &ops))
    }

    /// Waits until this member has applied at least `index`, then reads its state.
    async fn state_at(&self, index: u64) -> crate::store::Snapshot {
        self.store()
            .raft()
            .wait(Some(std::time::Duration::from_secs(10)))
            .applied_index_at_least(Some(index), "catch up")
            .await
            .expect("it catches up");
        crate::store::Store::load(self.store()).expect("load")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_masters_replicate_over_mutual_tls_elect_a_new_leader_and_a_restarted_one_catches_up() {
    let group = Group::new(3);
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
    let mut members = Vec::new();
    for id in 1..=3 {
        members.push(group.start(id, any).await);
    }
    let addresses: std::collections::BTreeMap<u64, String> =
        members.iter().map(|m| (m.id, m.address.to_string())).collect();
    let first = &members[0];
    tokio::task::block_in_place(|| first.store().initialize(&addresses)).expect("initialize the group");
    let leader = first.leader_other_than(None).await;
    let at = |id: u64| usize::try_from(id - 1).expect("index");

    // Writes go through the leader; a follower refuses them and names the leader.
    members[at(leader)].write(vec![put("app", "v1"), put("gone", "x")]).await.expect("write on the leader");
    members[at(leader)].write(vec![crate::store::StoreOp::DeleteMeta("gone".into())]).await.expect("delete");
    let follower = members.iter().find(|m| m.id != leader).expect("a follower");
    match follower.write(vec![put("nope", "1")]).await {
        Err(StoreError::NotLeader { leader: named }) => {
            assert_eq!(named, Some(members[at(leader)].address.to_string()), "the follower names the leader");
        }
        other => panic!("a follower's write must be refused with the leader's address: {other:?}"),
    }
    let last = members[at(leader)].store().raft().metrics().borrow().last_log_index.expect("an index");
    for member in &members {
        let state = member.state_at(last).await;
        assert_eq!(state.meta.get("app").map(String::as_str), Some("v1"), "master {} has the write", member.id);
        assert_eq!(state.meta.get("gone"), None, "master {} has the delete", member.id);
        assert_eq!(state.meta.get("nope"), None, "master {}: the refused write is nowhere", member.id);
    }

    // The leader dies: the other two elect one of themselves and keep writing.
    let old = leader;
    let old_address = members[at(old)].address;
    members[at(old)].stop();
    let survivor = members.iter().find(|m| m.id != old).expect("a survivor");
    let new_leader = survivor.leader_other_than(Some(old)).await;
    assert_ne!(new_leader, old);
    members[at(new_leader)].write(vec![put("app", "v2")]).await.expect("write on the new leader");

    // The old leader comes back on its data dir and address: it catches up as a follower.
    members[at(old)] = group.start(old, old_address).await;
    let last = members[at(new_leader)].store().raft().metrics().borrow().last_log_index.expect("an index");
    let state = members[at(old)].state_at(last).await;
    assert_eq!(state.meta.get("app").map(String::as_str), Some("v2"), "the restarted master caught up");
    assert_eq!(state.meta.get("gone"), None);
    for member in &mut members {
        member.stop();
    }
}
