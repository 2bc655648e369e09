//! The Raft log and the vote in redb, in a file of their own (`raft-log.redb`, beside the state
//! tables' `state.redb`): `raft_log` (index → entry as JSON) and `raft_meta` (the vote, the
//! committed id and the last purged id, as JSON). Appends and votes are durable transactions;
//! the committed id is a hint openraft may lose, so it is not synced on its own.
//!
//! The log has its own file so that an append's fsync writes the log's pages only: in the state
//! tables' file it also wrote every page the applies since the last one had changed, which made
//! each append (the one fsync of a write, on the leader and on each follower) twice as slow.
//! Data dirs from before keep their log in `state.redb`: [`LogStore::open`] moves it over once.

use super::{NodeId, RaftStorageError, TypeConfig, read_error, write_error};
use crate::store::{StoreError, redb_err};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, OptionalSend, RaftLogReader, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "last_purged";

/// The log of one master; clones share the database.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    /// The log in `db`, its tables created if missing.
    pub fn new(db: Arc<Database>) -> Result<Self, StoreError> {
        let txn = db.begin_write().map_err(redb_err)?;
        txn.open_table(LOG).map_err(redb_err)?;
        txn.open_table(META).map_err(redb_err)?;
        txn.commit().map_err(redb_err)?;
        Ok(Self { db })
    }

    /// The log in the file `path`, created if missing. A log found in `state` (the state tables'
    /// database, where data dirs from before kept it) is moved into it first: copied into a new
    /// file that takes `path`'s name once it is complete and durable, then dropped from `state`.
    /// A crash at any point leaves one complete log, which the next open finds.
    pub fn open(path: &Path, state: &Database, cache_bytes: usize) -> Result<Self, StoreError> {
        if !path.exists() {
            let moving = path.with_extension("redb.new");
            let _ = std::fs::remove_file(&moving);
            let fresh = redb::Builder::new().set_cache_size(cache_bytes).create(&moving).map_err(redb_err)?;
            copy_tables(state, &fresh)?;
            drop(fresh);
            std::fs::rename(&moving, path)
                .map_err(|source| StoreError::DataDir { path: path.display().to_string(), source })?;
        }
        // Dropped only where left (a durable commit at every start otherwise).
        let left = state.begin_read().map_err(redb_err)?.open_table(LOG).is_ok();
        if left {
            let txn = state.begin_write().map_err(redb_err)?;
            txn.delete_table(LOG).map_err(redb_err)?;
            txn.delete_table(META).map_err(redb_err)?;
            txn.commit().map_err(redb_err)?;
        }
        let db = redb::Builder::new().set_cache_size(cache_bytes).create(path).map_err(redb_err)?;
        Self::new(Arc::new(db))
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, RaftStorageError> {
        let txn = self.db.begin_read().map_err(read_error)?;
        let table = txn.open_table(META).map_err(read_error)?;
        match table.get(key).map_err(read_error)? {
            Some(value) => serde_json::from_slice(value.value()).map(Some).map_err(read_error),
            None => Ok(None),
        }
    }

    fn put_meta<T: Serialize>(&self, key: &str, value: &T, durability: Durability) -> Result<(), RaftStorageError> {
        let bytes = serde_json::to_vec(value).map_err(write_error)?;
        let mut txn = self.db.begin_write().map_err(write_error)?;
        txn.set_durability(durability).map_err(write_error)?;
        txn.open_table(META).map_err(write_error)?.insert(key, bytes.as_slice()).map_err(write_error)?;
        txn.commit().map_err(write_error)
    }
}

/// Copies the log tables of `from` (if it has them) into `to`, in one durable transaction.
fn copy_tables(from: &Database, to: &Database) -> Result<(), StoreError> {
    let read = from.begin_read().map_err(redb_err)?;
    let txn = to.begin_write().map_err(redb_err)?;
    {
        let mut log = txn.open_table(LOG).map_err(redb_err)?;
        if let Ok(old) = read.open_table(LOG) {
            for item in old.iter().map_err(redb_err)? {
                let (index, entry) = item.map_err(redb_err)?;
                log.insert(index.value(), entry.value()).map_err(redb_err)?;
            }
        }
        let mut meta = txn.open_table(META).map_err(redb_err)?;
        if let Ok(old) = read.open_table(META) {
            for item in old.iter().map_err(redb_err)? {
                let (key, value) = item.map_err(redb_err)?;
                meta.insert(key.value(), value.value()).map_err(redb_err)?;
            }
        }
    }
    txn.commit().map_err(redb_err)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, RaftStorageError> {
        let txn = self.db.begin_read().map_err(read_error)?;
        let table = txn.open_table(LOG).map_err(read_error)?;
        let mut entries = Vec::new();
        for item in table.range::<u64>(range).map_err(read_error)? {
            let (_, value) = item.map_err(read_error)?;
            entries.push(serde_json::from_slice(value.value()).map_err(read_error)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.get_meta(PURGED)?;
        let txn = self.db.begin_read().map_err(read_error)?;
        let table = txn.open_table(LOG).map_err(read_error)?;
        let last = match table.last().map_err(read_error)? {
            Some((_, value)) => {
                Some(serde_json::from_slice::<Entry<TypeConfig>>(value.value()).map_err(read_error)?.log_id)
            }
            None => None,
        };
        Ok(LogState { last_purged_log_id, last_log_id: last.or(last_purged_log_id) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), RaftStorageError> {
        self.put_meta(VOTE, vote, Durability::Immediate)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, RaftStorageError> {
        self.get_meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), RaftStorageError> {
        self.put_meta(COMMITTED, &committed, Durability::None)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, RaftStorageError> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let txn = self.db.begin_write().map_err(write_error)?;
        {
            let mut table = txn.open_table(LOG).map_err(write_error)?;
            for entry in entries {
                let bytes = serde_json::to_vec(&entry).map_err(write_error)?;
                table.insert(entry.log_id.index, bytes.as_slice()).map_err(write_error)?;
            }
        }
        txn.commit().map_err(write_error)?;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), RaftStorageError> {
        let txn = self.db.begin_write().map_err(write_error)?;
        txn.open_table(LOG).map_err(write_error)?.retain_in(log_id.index.., |_, _| false).map_err(write_error)?;
        txn.commit().map_err(write_error)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), RaftStorageError> {
        let bytes = serde_json::to_vec(&log_id).map_err(write_error)?;
        let txn = self.db.begin_write().map_err(write_error)?;
        txn.open_table(META).map_err(write_error)?.insert(PURGED, bytes.as_slice()).map_err(write_error)?;
        txn.open_table(LOG).map_err(write_error)?.retain_in(..=log_id.index, |_, _| false).map_err(write_error)?;
        txn.commit().map_err(write_error)
    }
}
