//! Groups of masters in this process over mutual TLS: replication and failover, changes of
//! their members (growing and shrinking under writes, a removal refused for the quorum, the
//! leader removing itself, an interrupted add finished by calling again), and masters behind a
//! purged log catching up from the leader's snapshot.

use super::membership::MembershipError;
use super::tests::put;
use crate::store::{StoreError, StoreOp};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One master of a group in this process: its store, and its RPC server on `address`.
struct Member {
    id: u64,
    address: std::net::SocketAddr,
    store: Option<Arc<super::store::RaftStore>>,
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
        Member { id, address, store: Some(Arc::new(store)), server: Some(server) }
    }
}

impl Member {
    fn store(&self) -> &super::store::RaftStore {
        self.store.as_ref().expect("a running member")
    }

    /// The store, to share with a writer thread.
    fn shared(&self) -> Arc<super::store::RaftStore> {
        self.store.clone().expect("a running member")
    }

    /// The voters of the group as this member sees it.
    fn voters(&self) -> BTreeSet<u64> {
        self.store().raft().metrics().borrow().membership_config.membership().voter_ids().collect()
    }

    /// Adds master `id` at `address` through this member's store, from a blocking thread.
    fn add_master(&self, id: u64, address: std::net::SocketAddr) -> Result<(), MembershipError> {
        tokio::task::block_in_place(|| self.store().add_master(id, &address.to_string()))
    }

    /// Removes master `id` through this member's store, from a blocking thread.
    fn remove_master(&self, id: u64) -> Result<(), MembershipError> {
        tokio::task::block_in_place(|| self.store().remove_master(id))
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

/// Writes `w-1`, `w-2`, ... through one master's store, one after the other, until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    acknowledged: tokio::sync::watch::Receiver<usize>,
    thread: std::thread::JoinHandle<(Vec<String>, Vec<String>)>,
}

impl Writer {
    fn start(store: Arc<super::store::RaftStore>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (count, acknowledged) = tokio::sync::watch::channel(0);
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut written, mut failed) = (Vec::new(), Vec::new());
                for n in 1.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let key = format!("w-{n}");
                    match crate::store::Store::write(store.as_ref(), &[put(&key, "1")]) {
                        Ok(()) => {
                            written.push(key);
                            count.send_replace(written.len());
                        }
                        Err(error) => failed.push(format!("{key}: {error}")),
                    }
                    // Paced, so that five masters on two cores keep their heartbeats.
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                (written, failed)
            })
        };
        Self { stop, acknowledged, thread }
    }

    /// Waits (up to 10 s) until `more` writes beyond those acknowledged so far are acknowledged.
    async fn commits(&mut self, more: usize, during: &str) {
        let now = *self.acknowledged.borrow();
        tokio::time::timeout(std::time::Duration::from_secs(10), self.acknowledged.wait_for(|n| *n >= now + more))
            .await
            .unwrap_or_else(|_| panic!("writes stopped committing {during}"))
            .expect("the writer runs");
    }

    /// Stops it: the keys it wrote, and the writes that failed.
    fn stop(self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the writer does not panic")
    }
}

fn any_address() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

/// Starts master 1 alone in a group of its own (with the network of a group), waits until it
/// leads.
async fn first_of(group: &Group) -> Member {
    let first = group.start(1, any_address()).await;
    let alone = BTreeMap::from([(1, first.address.to_string())]);
    tokio::task::block_in_place(|| first.store().initialize(&alone)).expect("initialize the group");
    assert_eq!(first.leader_other_than(None).await, 1, "master 1 leads its group of one");
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_group_grows_from_one_to_five_and_shrinks_to_three_while_writes_keep_committing() {
    let group = Group::new(5);
    let mut members = vec![first_of(&group).await];
    for id in 2..=5 {
        members.push(group.start(id, any_address()).await);
    }
    let address = |id: u64| members[usize::try_from(id - 1).expect("index")].address;
    let mut writer = Writer::start(members[0].shared());
    writer.commits(3, "with one master").await;

    // 1 → 3 → 5, each new master a learner until it has caught up, then a voter.
    for (ids, size) in [([2, 3], 3), ([4, 5], 5)] {
        for id in ids {
            members[0].add_master(id, address(id)).expect("add a master");
            writer.commits(3, &format!("after adding master {id}")).await;
        }
        assert_eq!(members[0].voters(), (1..=size).collect(), "{size} voters");
    }
    // Adding a voter again changes nothing.
    members[0].add_master(2, address(2)).expect("adding a voter again is a no-op");
    assert_eq!(members[0].voters(), (1..=5).collect());

    // 5 → 3: masters 4 and 5 leave, then stop.
    for id in [4, 5] {
        members[0].remove_master(id).expect("remove a master");
        writer.commits(3, &format!("after removing master {id}")).await;
    }
    assert_eq!(members[0].voters(), (1..=3).collect(), "three voters");
    let listed: Vec<u64> =
        crate::store::Store::group(members[0].store()).expect("a group").members.iter().map(|m| m.id).collect();
    assert_eq!(listed, vec![1, 2, 3], "the removed masters are no members at all");
    for removed in &members[3..] {
        // Each learned it no longer votes before it was dropped: it never stands for election.
        let metrics = removed.store().raft().metrics().borrow().clone();
        assert_eq!(metrics.state, openraft::ServerState::Learner, "master {} still votes", removed.id);
        assert!(!removed.voters().contains(&removed.id), "master {} holds a group where it votes", removed.id);
    }
    members[0].remove_master(5).expect("removing a master that is gone is a no-op");
    members[3].stop();
    members[4].stop();
    // A majority of the three commits: with 3 stopped too, 2 of 3 (it would be 2 of 5 without
    // the removals, which cannot commit).
    members[2].stop();
    writer.commits(3, "with two of the three masters").await;

    let (written, failed) = writer.stop();
    assert!(failed.is_empty(), "every write committed: {failed:?}");
    let last = members[0].store().raft().metrics().borrow().last_log_index.expect("an index");
    for member in &members[..2] {
        let state = member.state_at(last).await;
        let missing: Vec<&String> = written.iter().filter(|key| !state.meta.contains_key(*key)).collect();
        assert!(missing.is_empty(), "master {} holds every acknowledged write; missing {missing:?}", member.id);
    }
    for member in &mut members {
        member.stop();
    }
}

/// Masters 1, 2 and 3 of `group`, all voters (master 1 made the group and added the others).
async fn three_voters(group: &Group) -> Vec<Member> {
    let mut members = vec![first_of(group).await];
    for id in 2..=3 {
        members.push(group.start(id, any_address()).await);
        let address = members[usize::try_from(id - 1).expect("index")].address;
        members[0].add_master(id, address).expect("add a master");
    }
    members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removal_that_would_leave_no_answering_majority_is_refused() {
    let group = Group::new(3);
    let mut members = three_voters(&group).await;
    assert_eq!(members[0].voters(), BTreeSet::from([1, 2, 3]));

    // Master 3 is down: removing the healthy master 2 would leave 1 and 3, of which only 1
    // answers.
    members[2].stop();
    match members[0].remove_master(2) {
        Err(MembershipError::Refused(message)) => {
            assert!(message.contains("Bring masters 3 back"), "the refusal says what to do: {message}");
        }
        other => panic!("removing a healthy master while another is down must be refused: {other:?}"),
    }
    match members[0].remove_master(1) {
        Err(MembershipError::Refused(message)) => assert!(message.contains("Bring masters 3 back"), "{message}"),
        other => panic!("nor may the leader remove itself, leaving 2 and 3: {other:?}"),
    }
    assert_eq!(members[0].voters(), BTreeSet::from([1, 2, 3]), "nothing changed");

    // Removing the master that is down leaves 1 and 2, both answering: allowed, and it commits.
    members[0].remove_master(3).expect("remove the master that is down");
    assert_eq!(members[0].voters(), BTreeSet::from([1, 2]));
    members[0].write(vec![put("after", "removal")]).await.expect("the two commit");
    let last = members[0].store().raft().metrics().borrow().last_log_index.expect("an index");
    assert_eq!(members[1].state_at(last).await.meta.get("after").map(String::as_str), Some("removal"));
    for member in &mut members {
        member.stop();
    }
}

/// 3 → 2 → 1 by removing the leader each time: a leader that removes itself commits the group
/// without itself, steps down, and the masters that stay elect one of theirs, which commits;
/// down to one master alone, which leads its group of one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_removes_itself_down_to_one_master_and_the_rest_go_on() {
    let group = Group::new(3);
    let mut members = three_voters(&group).await;
    members[0].write(vec![put("with", "three")]).await.expect("three commit");
    let mut leader = 1;
    for remaining in [2, 1] {
        let at = |id: u64| usize::try_from(id - 1).expect("index");
        members[at(leader)].remove_master(leader).expect("the leader removes itself");
        let stays = members.iter().find(|m| m.store.is_some() && m.id != leader).expect("a master stays");
        let new = stays.leader_other_than(Some(leader)).await;
        assert_ne!(new, leader, "a master that stays leads");
        assert_eq!(members[at(new)].voters().len(), remaining, "{remaining} voters");
        assert!(!members[at(new)].voters().contains(&leader), "the old leader is no voter");
        let key = format!("after-{remaining}");
        let wrote = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                match members[at(new)].write(vec![put(&key, "ok")]).await {
                    Ok(()) => break,
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                }
            }
        })
        .await;
        assert!(wrote.is_ok(), "the new leader commits with {remaining} master(s)");
        members[at(leader)].stop();
        leader = new;
    }
    let last = members[usize::try_from(leader - 1).expect("index")].store().raft().metrics().borrow().last_log_index;
    let state = members[usize::try_from(leader - 1).expect("index")].state_at(last.expect("an index")).await;
    for key in ["with", "after-2", "after-1"] {
        assert!(state.meta.contains_key(key), "the last master holds {key}");
    }
    for member in &mut members {
        member.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_add_interrupted_after_the_learner_step_is_finished_by_calling_again() {
    let group = Group::new(2);
    let mut members = vec![first_of(&group).await];
    members.push(group.start(2, any_address()).await);
    let address = members[1].address;

    // What an add interrupted after its first step leaves: master 2 a learner that caught up.
    members[0]
        .store()
        .raft()
        .add_learner(2, openraft::BasicNode::new(address.to_string()), true)
        .await
        .expect("add a learner");
    let role = |members: &[Member]| {
        let group = crate::store::Store::group(members[0].store()).expect("a group");
        group.members.iter().find(|m| m.id == 2).map(|m| m.role.clone())
    };
    assert_eq!(role(&members).as_deref(), Some("learner"));
    assert_eq!(members[0].voters(), BTreeSet::from([1]));

    // The same id at another address, or the same address under another id, is refused.
    match members[0].add_master(2, "127.0.0.1:1".parse().expect("address")) {
        Err(MembershipError::Refused(message)) => assert!(message.contains("already a member"), "{message}"),
        other => panic!("an id at another address must be refused: {other:?}"),
    }
    match members[0].add_master(3, address) {
        Err(MembershipError::Refused(message)) => assert!(message.contains("master 2's address"), "{message}"),
        other => panic!("another master's address must be refused: {other:?}"),
    }

    // Calling again promotes it.
    members[0].add_master(2, address).expect("finish the add");
    assert_eq!(members[0].voters(), BTreeSet::from([1, 2]));
    assert_eq!(role(&members).as_deref(), Some("follower"));
    members[0].write(vec![put("two", "voters")]).await.expect("write");
    let last = members[0].store().raft().metrics().borrow().last_log_index.expect("an index");
    assert_eq!(members[1].state_at(last).await.meta.get("two").map(String::as_str), Some("voters"));
    for member in &mut members {
        member.stop();
    }
}

/// Snapshots `member`'s state (it leads) and purges its log up to the snapshot; returns the
/// index purged up to.
async fn snapshot_and_purge(member: &Member) -> u64 {
    let raft = member.store().raft();
    let applied = raft.metrics().borrow().last_applied.expect("something applied").index;
    raft.trigger().snapshot().await.expect("snapshot");
    let wait = || raft.wait(Some(std::time::Duration::from_secs(10)));
    wait().metrics(|m| m.snapshot.is_some_and(|s| s.index >= applied), "the snapshot").await.expect("built");
    raft.trigger().purge_log(applied).await.expect("purge");
    wait()
        .metrics(|m| m.purged.is_some_and(|p| p.index >= applied), "the purge")
        .await
        .expect("the log before the snapshot is purged");
    applied
}

/// Waits until `member` has applied the leader's last entry; asserts that it got there by
/// installing a snapshot taken at `purged` or later, and that it holds `keys`.
async fn caught_up_by_snapshot(member: &Member, leader: &Member, purged: u64, keys: &[String]) {
    let last = leader.store().raft().metrics().borrow().last_log_index.expect("an index");
    let state = member.state_at(last).await;
    let snapshot = member.store().raft().metrics().borrow().snapshot;
    assert!(
        snapshot.is_some_and(|s| s.index >= purged),
        "master {} installed a snapshot taken at {purged} or later: {snapshot:?}",
        member.id
    );
    let missing: Vec<&String> = keys.iter().filter(|k| !state.meta.contains_key(*k)).collect();
    assert!(missing.is_empty(), "master {} holds every write; missing {missing:?}", member.id);
}

/// Masters the leader's log no longer reaches get its snapshot over the network (mutual TLS):
/// masters added after the log was purged, then a master restarted on its disk after missing
/// entries the leader has purged since. Each then follows the log again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn masters_behind_a_purged_log_catch_up_by_installing_the_leader_s_snapshot() {
    let group = Group::new(3);
    let mut members = vec![first_of(&group).await];
    let keys: Vec<String> = (0..100).map(|n| format!("k-{n}")).collect();
    for key in &keys[..50] {
        members[0].write(vec![put(key, "1")]).await.expect("write");
    }
    let purged = snapshot_and_purge(&members[0]).await;

    for id in 2..=3 {
        members.push(group.start(id, any_address()).await);
        let address = members[usize::try_from(id - 1).expect("index")].address;
        members[0].add_master(id, address).expect("add a master behind the purged log");
    }
    assert_eq!(members[0].voters(), BTreeSet::from([1, 2, 3]));
    for member in &members[1..] {
        caught_up_by_snapshot(member, &members[0], purged, &keys[..50]).await;
    }

    // Master 3 is down while 50 more writes commit and the leader purges them from its log.
    let address = members[2].address;
    members[2].stop();
    for key in &keys[50..] {
        members[0].write(vec![put(key, "1")]).await.expect("write with two of three");
    }
    let purged = snapshot_and_purge(&members[0]).await;
    members[2] = group.start(3, address).await;
    caught_up_by_snapshot(&members[2], &members[0], purged, &keys).await;

    // Replication goes on from the snapshot.
    members[0].write(vec![put("after", "1")]).await.expect("write with three");
    let last = members[0].store().raft().metrics().borrow().last_log_index.expect("an index");
    assert!(members[2].state_at(last).await.meta.contains_key("after"), "the log follows the snapshot");
    for member in &mut members {
        member.stop();
    }
}

#[test]
fn a_master_alone_refuses_to_add_another_and_says_how_to_make_it_a_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = super::store::RaftStore::open_alone(dir.path(), 1, "127.0.0.1:5050").expect("open");
    match store.add_master(2, "127.0.0.1:5051") {
        Err(MembershipError::Refused(message)) => {
            assert!(message.contains("--node-id 1 --peer 2=127.0.0.1:5051"), "{message}");
        }
        other => panic!("a master alone cannot reach another: {other:?}"),
    }
    match store.remove_master(1) {
        Err(MembershipError::Refused(message)) => assert!(message.contains("last voter"), "{message}"),
        other => panic!("the last voter stays: {other:?}"),
    }
}
