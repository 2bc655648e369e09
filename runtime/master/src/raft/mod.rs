//! The master's store replicated with Raft ([openraft] 0.9): every write batch becomes a log
//! entry, committed by a quorum of masters before it is acknowledged, and applied to each
//! master's copy of the state tables.
//!
//! Both halves are redb databases in the master's data dir:
//! - [`log_store::LogStore`]: the log (`raft_log`, index → entry as JSON) and the vote, the
//!   committed id and the last purged id (`raft_meta`), in `raft-log.redb`. An append is one
//!   durable transaction: the one fsync a write waits for, on each master.
//! - [`state_machine::StateMachine`]: applies committed batches to the state tables in
//!   `state.redb`, with the last applied id and the membership (`raft_applied`), in transactions
//!   that are synced only now and then — after a crash the entries they held are applied again
//!   from the log, which is why an apply may be lost but never half-done. Snapshots are the whole
//!   state as JSON, kept in `raft_snapshot`.
//!
//! [`membership`] decides how the group's members change (a master added as a learner, then a
//! voter; a removal refused where the group could not commit).
//!
//! One master is a cluster of one on the same code path.

// openraft's storage traits return its `StorageError` (over 200 bytes); the helpers beside
// them return the same.
#[allow(clippy::result_large_err)]
pub mod log_store;
pub mod membership;
pub mod network;
pub mod proposer;
pub mod rpc;
#[allow(clippy::result_large_err)]
pub mod state_machine;
pub mod store;

use crate::store::StoreOp;
use openraft::{AnyError, StorageIOError};
use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// What one log entry carries: one write batch of the master, applied all or nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch(pub Vec<StoreOp>);

impl std::fmt::Display for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "batch of {} ops", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// The masters' Raft types: write batches in, nothing out; nodes are masters by number,
    /// with the address of their API.
    pub TypeConfig:
        D = Batch,
        R = (),
);

/// A master's number in the Raft group.
pub type NodeId = u64;
/// A storage error of the masters' Raft group.
pub type RaftStorageError = openraft::StorageError<NodeId>;

/// Any error, as openraft carries it.
fn any(error: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&error)
}

/// A failed read of the log or the state, as openraft reports it.
fn read_error(error: impl std::error::Error + 'static) -> RaftStorageError {
    StorageIOError::read(any(error)).into()
}

/// A failed write of the log or the state, as openraft reports it.
fn write_error(error: impl std::error::Error + 'static) -> RaftStorageError {
    StorageIOError::write(any(error)).into()
}

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod tests;
