//! Pipelined commits, on a replicated store ([`crate::store::Store::pipelined`]).
//!
//! A quorum commit takes a round trip to the other masters. Holding the state lock across it
//! would let one write through at a time, so on such a store [`crate::master::Master::commit`]
//! proposes the change (the store queues it behind the earlier ones, in the same order as the
//! state lock gave), applies it to memory at once and returns; the next change is decided on
//! that state and proposed behind it. The store gathers what queues up into few log entries.
//!
//! What is not committed yet must not be seen as if it were:
//! - events are published and agent commands sent only once their change is committed, in
//!   order, by the one task [`Pipeline::start`] spawns;
//! - an API request is answered only once every change proposed before its answer was made is
//!   committed ([`Pipeline::settled`], waited for by a layer of [`crate::api::router`]): the
//!   answer of a write, and a read of a state that held changes still in flight.
//!
//! If a change is not committed (this master stopped leading, or could not reach a majority in
//! time), memory holds a state that may never be: the pipeline *fails*. From then on nothing
//! more is proposed or answered from this core, and the term ends (see [`crate::leadership`]):
//! the next one loads the committed state from the store again.

use crate::links::AgentLinks;
use crate::store::{Store, StoreError, StoreOp};
use gantry_api::Event;
use gantry_api::protocol::AgentCommand;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::warn;

/// How far the committed changes are: see the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    /// The number of the last change committed (changes are numbered from 1 as proposed).
    pub committed: u64,
    /// Why a change was not committed, once one was not: the pipeline has failed.
    pub failed: Option<String>,
}

/// A change proposed and applied to memory, waiting for the store's outcome.
struct Pending {
    number: u64,
    outcome: oneshot::Receiver<Result<(), StoreError>>,
    events: Vec<Event>,
    commands: Vec<(String, AgentCommand)>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Pipeline {
    proposed: AtomicU64,
    settled: watch::Sender<Settled>,
    queue: mpsc::UnboundedSender<Pending>,
}

impl Pipeline {
    /// A pipeline publishing to `events` and sending through `links`, with its task spawned on
    /// the current Tokio runtime; the task ends when the pipeline is dropped.
    pub fn start(events: broadcast::Sender<Event>, links: Arc<Mutex<AgentLinks>>) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        let settled = watch::Sender::new(Settled::default());
        tokio::spawn(settle_in_order(pending, settled.clone(), events, links));
        Self { proposed: AtomicU64::new(0), settled, queue }
    }

    /// Why an earlier change was not committed, once one was not.
    pub fn failed(&self) -> Option<String> {
        self.settled.borrow().failed.clone()
    }

    /// Proposes `ops` to `store`, with the `events` and `commands` to publish and send once they
    /// are committed. Call it under the state lock, before applying the change to memory.
    pub fn propose(
        &self,
        store: &dyn Store,
        ops: Vec<StoreOp>,
        events: Vec<Event>,
        commands: Vec<(String, AgentCommand)>,
    ) {
        let number = self.proposed.fetch_add(1, Ordering::SeqCst) + 1;
        let (sender, outcome) = oneshot::channel();
        store.propose(
            ops,
            Box::new(move |result| {
                let _ = sender.send(result);
            }),
        );
        // The task sees the changes in the order they were numbered: both happen under the lock.
        let _ = self.queue.send(Pending { number, outcome, events, commands });
    }

    /// The number of the last change proposed.
    pub fn proposed(&self) -> u64 {
        self.proposed.load(Ordering::SeqCst)
    }

    /// Waits until change `number` and every one before it are committed, or the pipeline
    /// fails before that (then why).
    pub async fn settled(&self, number: u64) -> Result<(), String> {
        let mut settled = self.settled.subscribe();
        let state = settled.wait_for(|s| s.committed >= number || s.failed.is_some()).await;
        match state {
            Ok(s) if s.committed >= number => Ok(()),
            Ok(s) => Err(s.failed.clone().unwrap_or_default()),
            Err(_) => Err("the master's core has stopped".to_string()),
        }
    }

    /// How far the committed changes are, as it changes (for the term to end on a failure).
    pub fn watch(&self) -> watch::Receiver<Settled> {
        self.settled.subscribe()
    }
}

/// Takes each pending change's outcome in turn: publishes and sends what a committed change
/// holds, or fails the pipeline.
async fn settle_in_order(
    mut pending: mpsc::UnboundedReceiver<Pending>,
    settled: watch::Sender<Settled>,
    events: broadcast::Sender<Event>,
    links: Arc<Mutex<AgentLinks>>,
) {
    while let Some(change) = pending.recv().await {
        let outcome = change
            .outcome
            .await
            .unwrap_or_else(|_| Err(StoreError::Replication("the store dropped the write".to_string())));
        if settled.borrow().failed.is_some() {
            continue;
        }
        match outcome {
            Ok(()) => {
                for event in change.events {
                    let _ = events.send(event);
                }
                if !change.commands.is_empty() {
                    let mut links = links.lock().unwrap_or_else(|p| p.into_inner());
                    for (agent_id, command) in change.commands {
                        links.send(&agent_id, command);
                    }
                }
                settled.send_modify(|s| s.committed = change.number);
            }
            Err(error) => {
                warn!(%error, change = change.number, "A change was not committed; this core stops serving.");
                settled.send_modify(|s| s.failed = Some(error.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Done, MemStore, Snapshot};
    use std::time::Duration;

    /// A store that keeps proposals until the test answers them.
    #[derive(Default)]
    struct HeldStore {
        held: Mutex<Vec<(Vec<StoreOp>, Option<Done>)>>,
    }

    impl std::fmt::Debug for HeldStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("HeldStore")
        }
    }

    impl HeldStore {
        fn answer(&self, index: usize, result: Result<(), StoreError>) {
            let done = self.held.lock().expect("lock")[index].1.take().expect("not answered yet");
            done(result);
        }
    }

    impl Store for HeldStore {
        fn write(&self, _batch: &[StoreOp]) -> Result<(), StoreError> {
            unreachable!("the pipeline proposes")
        }
        fn load(&self) -> Result<Snapshot, StoreError> {
            MemStore::new().load()
        }
        fn propose(&self, batch: Vec<StoreOp>, done: Done) {
            self.held.lock().expect("lock").push((batch, Some(done)));
        }
        fn pipelined(&self) -> bool {
            true
        }
    }

    fn event(n: u64) -> Event {
        Event::AppDeleted { app_id: format!("app-{n}"), at: n }
    }

    async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), future).await.expect("in time")
    }

    /// A pipeline with changes 1, 2 and 3 proposed to a store that holds them, and a receiver of
    /// its events.
    fn three_proposed() -> (HeldStore, Pipeline, broadcast::Receiver<Event>) {
        let store = HeldStore::default();
        let (events, received) = broadcast::channel(16);
        let pipeline = Pipeline::start(events, Arc::new(Mutex::new(AgentLinks::default())));
        for n in 1..=3 {
            pipeline.propose(&store, vec![StoreOp::DeleteApp(format!("app-{n}"))], vec![event(n)], vec![]);
        }
        (store, pipeline, received)
    }

    #[tokio::test]
    async fn events_wait_for_their_change_and_follow_the_order_of_proposals() {
        let (store, pipeline, mut received) = three_proposed();
        assert_eq!(pipeline.proposed(), 3);
        // The second is committed first: nothing is published until the first is.
        store.answer(1, Ok(()));
        tokio::task::yield_now().await;
        assert!(received.try_recv().is_err(), "nothing published before change 1 is committed");
        store.answer(0, Ok(()));
        within(pipeline.settled(2)).await.expect("1 and 2 committed");
        assert_eq!(within(received.recv()).await.expect("event"), event(1));
        assert_eq!(within(received.recv()).await.expect("event"), event(2));
        assert!(received.try_recv().is_err(), "change 3 is not committed");
        store.answer(2, Ok(()));
        within(pipeline.settled(3)).await.expect("all committed");
        assert_eq!(within(received.recv()).await.expect("event"), event(3));
        assert_eq!(pipeline.failed(), None);
    }

    #[tokio::test]
    async fn a_change_not_committed_fails_the_pipeline_and_everything_after_it() {
        let (store, pipeline, mut received) = three_proposed();
        store.answer(0, Ok(()));
        store.answer(1, Err(StoreError::NotLeader { leader: Some("10.0.0.2:5050".into()) }));
        store.answer(2, Ok(()));
        within(pipeline.settled(1)).await.expect("change 1 committed");
        let failure = within(pipeline.settled(3)).await.expect_err("change 2 failed");
        assert!(failure.contains("10.0.0.2:5050"), "{failure}");
        assert_eq!(pipeline.failed().as_deref(), Some(failure.as_str()));
        assert_eq!(within(received.recv()).await.expect("event"), event(1));
        assert!(received.try_recv().is_err(), "neither the failed change nor the one after it is published");
        // An earlier number is still answered as committed.
        within(pipeline.settled(1)).await.expect("change 1 stays committed");
    }
}
