//! The state machine: committed batches applied to the master's state tables (the same tables
//! [`crate::store::RedbStore`] keeps), with the last applied id and the membership in
//! `raft_applied`. Applies are not synced one by one: every [`DURABLE_EVERY`]th is, which makes
//! all before it durable too (and lets redb reuse the pages they freed); after a crash, the
//! entries of the applies that were lost are applied again from the log, which keeps every entry
//! after the last snapshot. Installing a snapshot and building one are synced. The current
//! snapshot (its meta and the state as JSON) is kept in `raft_snapshot`, so a restarted master
//! can still send it to a lagging one.

use super::{NodeId, RaftStorageError, TypeConfig, any, read_error, write_error};
use crate::store::{self, StoreError, redb_err};
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotSignature};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use serde::de::DeserializeOwned;
use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const APPLIED: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_applied");
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");
const LAST_APPLIED: &str = "last_applied";
const MEMBERSHIP: &str = "membership";
const SNAPSHOT_META: &str = "meta";
const SNAPSHOT_DATA: &str = "data";

type Membership = StoredMembership<NodeId, BasicNode>;

/// One apply in this many is synced (see the module documentation).
pub const DURABLE_EVERY: u64 = 64;

/// The state of one master; clones share the database.
#[derive(Debug, Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    applies: Arc<AtomicU64>,
}

fn get<T: DeserializeOwned>(
    table: &impl redb::ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, RaftStorageError> {
    match table.get(key).map_err(read_error)? {
        Some(value) => serde_json::from_slice(value.value()).map(Some).map_err(read_error),
        None => Ok(None),
    }
}

impl StateMachine {
    /// The state machine in `db`, its tables created if missing.
    pub fn new(db: Arc<Database>) -> Result<Self, StoreError> {
        let txn = db.begin_write().map_err(redb_err)?;
        store::create_state_tables(&txn)?;
        txn.open_table(APPLIED).map_err(redb_err)?;
        txn.open_table(SNAPSHOT).map_err(redb_err)?;
        txn.commit().map_err(redb_err)?;
        Ok(Self { db, applies: Arc::new(AtomicU64::new(0)) })
    }

    /// Every record applied so far (what the master loads when it starts).
    pub fn state(&self) -> Result<store::Snapshot, StoreError> {
        store::load_from(&self.db.begin_read().map_err(redb_err)?)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, Membership), RaftStorageError> {
        let txn = self.db.begin_read().map_err(read_error)?;
        let table = txn.open_table(APPLIED).map_err(read_error)?;
        Ok((get(&table, LAST_APPLIED)?, get(&table, MEMBERSHIP)?.unwrap_or_default()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut txn = self.db.begin_write().map_err(write_error)?;
        // Lost in a crash unless a later apply is synced; the log has the entries again.
        if !self.applies.fetch_add(1, Ordering::Relaxed).is_multiple_of(DURABLE_EVERY) {
            txn.set_durability(Durability::None).map_err(write_error)?;
        }
        let mut replies = Vec::new();
        let mut last = None;
        let mut membership = None;
        for entry in entries {
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => {
                    store::apply_ops(&txn, &batch.0).map_err(|e| StorageIOError::apply(entry.log_id, any(e)))?;
                }
                EntryPayload::Membership(config) => membership = Some(Membership::new(Some(entry.log_id), config)),
            }
            last = Some(entry.log_id);
            replies.push(());
        }
        {
            let mut table = txn.open_table(APPLIED).map_err(write_error)?;
            if let Some(last) = last {
                table
                    .insert(LAST_APPLIED, serde_json::to_vec(&last).map_err(write_error)?.as_slice())
                    .map_err(write_error)?;
            }
            if let Some(membership) = membership {
                table
                    .insert(MEMBERSHIP, serde_json::to_vec(&membership).map_err(write_error)?.as_slice())
                    .map_err(write_error)?;
            }
        }
        txn.commit().map_err(write_error)?;
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, RaftStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), RaftStorageError> {
        let data = snapshot.into_inner();
        let signature = Some(meta.signature());
        let state: store::Snapshot =
            serde_json::from_slice(&data).map_err(|e| StorageIOError::read_snapshot(signature.clone(), any(e)))?;
        let write = |e: StoreError| snapshot_write_error(&signature, e);
        let txn = self.db.begin_write().map_err(|e| write(redb_err(e)))?;
        store::clear_state(&txn).map_err(write)?;
        store::write_snapshot(&txn, &state).map_err(write)?;
        {
            let mut applied = txn.open_table(APPLIED).map_err(|e| write(redb_err(e)))?;
            let last = serde_json::to_vec(&meta.last_log_id).map_err(|e| write(e.into()))?;
            applied.insert(LAST_APPLIED, last.as_slice()).map_err(|e| write(redb_err(e)))?;
            let membership = serde_json::to_vec(&meta.last_membership).map_err(|e| write(e.into()))?;
            applied.insert(MEMBERSHIP, membership.as_slice()).map_err(|e| write(redb_err(e)))?;
        }
        keep_snapshot(&txn, meta, &data).map_err(write)?;
        txn.commit().map_err(|e| write(redb_err(e)))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError> {
        let txn = self.db.begin_read().map_err(read_error)?;
        let table = txn.open_table(SNAPSHOT).map_err(read_error)?;
        let Some(meta) = get::<SnapshotMeta<NodeId, BasicNode>>(&table, SNAPSHOT_META)? else { return Ok(None) };
        let data = table.get(SNAPSHOT_DATA).map_err(read_error)?.map(|v| v.value().to_vec()).unwrap_or_default();
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

/// A failed write of the snapshot `signature`, as openraft reports it.
fn snapshot_write_error(signature: &Option<SnapshotSignature<NodeId>>, error: StoreError) -> RaftStorageError {
    StorageIOError::write_snapshot(signature.clone(), any(error)).into()
}

/// Records `meta` and `data` as the current snapshot in `txn`.
fn keep_snapshot(
    txn: &redb::WriteTransaction,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    data: &[u8],
) -> Result<(), StoreError> {
    let mut table = txn.open_table(SNAPSHOT).map_err(redb_err)?;
    table.insert(SNAPSHOT_META, serde_json::to_vec(meta)?.as_slice()).map_err(redb_err)?;
    table.insert(SNAPSHOT_DATA, data).map_err(redb_err)?;
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        // One read transaction: the state and the id it is at agree.
        let (state, last_log_id, last_membership) = {
            let txn = self.db.begin_read().map_err(read_error)?;
            let state = store::load_from(&txn).map_err(read_error)?;
            let applied = txn.open_table(APPLIED).map_err(read_error)?;
            let last: Option<LogId<NodeId>> = get(&applied, LAST_APPLIED)?;
            let membership: Membership = get(&applied, MEMBERSHIP)?.unwrap_or_default();
            (state, last, membership)
        };
        let snapshot_id = match &last_log_id {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, uuid::Uuid::new_v4().simple()),
            None => format!("empty-{}", uuid::Uuid::new_v4().simple()),
        };
        let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
        let data = serde_json::to_vec(&state).map_err(write_error)?;
        let signature = Some(meta.signature());
        let write = |e: StoreError| snapshot_write_error(&signature, e);
        let txn = self.db.begin_write().map_err(|e| write(redb_err(e)))?;
        keep_snapshot(&txn, &meta, &data).map_err(write)?;
        txn.commit().map_err(|e| write(redb_err(e)))?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}
