//! openraft's storage suite (log and state machine: membership, initial state, votes, reads,
//! purges, truncation, appends, applies, snapshot transfer) against the redb log and state
//! machine, each case on a fresh database; a crash between an apply and the next durable
//! commit; a log moving to its own file; a master alone across restarts. Groups of masters are
//! tested in `group_tests.rs`.

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
        // Most applies are not synced on their own; the next durable commit (a vote here, in the
        // same database) takes them.
        log.save_vote(&openraft::Vote::new(1, 0)).await.expect("vote");
    }
    let machine = StateMachine::new(open(dir.path()).expect("reopen")).expect("state machine");
    let state = machine.state().expect("state");
    assert_eq!(state.meta.get("a").map(String::as_str), Some("v1"));
    assert_eq!(state.meta.get("b").map(String::as_str), Some("v2"));
}

/// A data dir from before the log had a file of its own: the log and the vote, kept in
/// `state.redb`, move to `raft-log.redb` on the first open and leave `state.redb`; a second
/// open finds them there.
#[tokio::test]
async fn a_log_kept_in_the_state_file_moves_to_its_own_file_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vote = openraft::Vote::new(3, 1);
    {
        let db = open(dir.path()).expect("open");
        let txn = db.begin_write().expect("write");
        {
            let mut log = txn.open_table(redb::TableDefinition::<u64, &[u8]>::new("raft_log")).expect("log");
            for index in 1..=3 {
                let entry = serde_json::to_vec(&meta_entry(index, "k")).expect("encode");
                log.insert(index, entry.as_slice()).expect("insert");
            }
            let mut meta = txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("raft_meta")).expect("meta");
            meta.insert("vote", serde_json::to_vec(&vote).expect("encode").as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let path = dir.path().join("raft-log.redb");
    for round in ["moved", "found"] {
        let db = open(dir.path()).expect("open");
        let mut log = LogStore::open(&path, &db, 1 << 20).expect("open the log");
        let state = log.get_log_state().await.expect("log state");
        assert_eq!(state.last_log_id.map(|l| l.index), Some(3), "{round}: the log");
        assert_eq!(log.read_vote().await.expect("vote"), Some(vote), "{round}: the vote");
        let entries = openraft::RaftLogReader::try_get_log_entries(&mut log, 1..4).await.expect("entries");
        assert_eq!(entries, vec![meta_entry(1, "k"), meta_entry(2, "k"), meta_entry(3, "k")], "{round}");
        let txn = redb::ReadableDatabase::begin_read(&*db).expect("read");
        let names: Vec<String> = redb::ReadTransaction::list_tables(&txn)
            .expect("tables")
            .map(|t| redb::TableHandle::name(&t).to_string())
            .collect();
        assert!(!names.iter().any(|n| n.starts_with("raft_log") || n == "raft_meta"), "{round}: {names:?}");
    }
    assert!(!dir.path().join("raft-log.redb.new").exists(), "no half-made file is left");
}

pub(super) fn put(key: &str, value: &str) -> StoreOp {
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
