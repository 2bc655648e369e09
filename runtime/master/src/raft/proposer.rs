//! Group commit: the master's write batches reach the Raft log through one queue, in the order
//! they were proposed, gathered into as few log entries as the group's pace allows.
//!
//! Each log entry costs the leader one durable append and a round trip to the followers (each
//! with its own durable append). So at most [`IN_FLIGHT`] entries wait for their quorum at a
//! time; the batches proposed meanwhile gather in the queue and become the next entry, all of
//! them applied in order, all or nothing. Under a light load an entry holds one batch and
//! leaves at once; under a heavy one, entries grow instead of queueing one behind the other.
//!
//! A batch's outcome goes to the callback it was proposed with: committed (and applied on this
//! master), or why not (this master does not lead; no quorum within [`COMMIT_TIMEOUT`]; Raft
//! stopped). Every batch of an entry has the entry's outcome.

use super::{Batch, TypeConfig};
use crate::store::{Done, StoreError, StoreOp};
use openraft::Raft;
use openraft::error::ClientWriteError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// How long a write waits to be committed by a quorum: a leader cut off from the majority
/// cannot commit, and its callers learn it after this long instead of waiting forever.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Log entries waiting for their quorum at a time.
pub const IN_FLIGHT: usize = 2;

/// Batches gathered into one log entry at most (a follower stores up to 64 entries per
/// AppendEntries call within the heartbeat interval: entries stay small enough for that).
pub const MAX_GATHERED: usize = 128;

/// Why an entry was not committed; every batch in it gets its own [`StoreError`].
#[derive(Debug, Clone)]
enum Failure {
    NotLeader(Option<String>),
    Replication(String),
}

impl Failure {
    fn error(&self) -> StoreError {
        match self {
            Self::NotLeader(leader) => StoreError::NotLeader { leader: leader.clone() },
            Self::Replication(reason) => StoreError::Replication(reason.clone()),
        }
    }
}

struct Proposal {
    ops: Vec<StoreOp>,
    done: Done,
}

impl std::fmt::Debug for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proposal").field("ops", &self.ops.len()).finish_non_exhaustive()
    }
}

/// The queue in front of the log; see the module documentation.
#[derive(Debug)]
pub struct Proposer {
    queue: mpsc::UnboundedSender<Proposal>,
}

impl Proposer {
    /// Starts the proposer of `raft` on `runtime` (the Raft runtime); it ends when dropped.
    pub fn start(raft: Raft<TypeConfig>, runtime: &tokio::runtime::Handle) -> Self {
        let (queue, proposals) = mpsc::unbounded_channel();
        runtime.spawn(propose_in_order(raft, proposals));
        Self { queue }
    }

    /// Queues `ops` behind every batch proposed before; `done` gets the outcome.
    pub fn propose(&self, ops: Vec<StoreOp>, done: Done) {
        if let Err(mpsc::error::SendError(proposal)) = self.queue.send(Proposal { ops, done }) {
            (proposal.done)(Err(StoreError::Replication("Raft has stopped".into())));
        }
    }
}

async fn propose_in_order(raft: Raft<TypeConfig>, mut proposals: mpsc::UnboundedReceiver<Proposal>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = proposals.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        // Everything queued while the entries ahead were in flight goes into this one.
        let mut gathered = vec![first];
        while gathered.len() < MAX_GATHERED {
            match proposals.try_recv() {
                Ok(proposal) => gathered.push(proposal),
                Err(_) => break,
            }
        }
        let mut ops = Vec::with_capacity(gathered.iter().map(|p| p.ops.len()).sum());
        let mut done = Vec::with_capacity(gathered.len());
        for proposal in gathered {
            ops.extend(proposal.ops);
            done.push(proposal.done);
        }
        // Sent to Raft here, in queue order; only the wait for the quorum runs beside the next.
        let outcome = match raft.client_write_ff(Batch(ops)).await {
            Ok(answer) => answer,
            Err(fatal) => {
                let failure = Failure::Replication(format!("this master's Raft has stopped: {fatal}"));
                done.into_iter().for_each(|d| d(Err(failure.error())));
                continue;
            }
        };
        tokio::spawn(async move {
            let result = match tokio::time::timeout(COMMIT_TIMEOUT, outcome).await {
                Err(_) => Err(Failure::Replication(format!(
                    "the write was not committed within {} s: this master cannot reach a majority of the masters (it may be cut off, or most of them down); it may still be committed once they are back",
                    COMMIT_TIMEOUT.as_secs()
                ))),
                Ok(Err(_)) => Err(Failure::Replication("Raft stopped before answering".into())),
                Ok(Ok(Ok(_))) => Ok(()),
                Ok(Ok(Err(ClientWriteError::ForwardToLeader(forward)))) => {
                    Err(Failure::NotLeader(forward.leader_node.map(|node| node.addr)))
                }
                Ok(Ok(Err(error))) => Err(Failure::Replication(format!("the write was not committed: {error}"))),
            };
            drop(permit);
            for d in done {
                d(result.clone().map_err(|failure| failure.error()));
            }
        });
    }
}
