//! The status update queue: every update gets a uuid and is posted until the master answers
//! 2xx, with backoff (50 ms → 1 s). Updates of one task are delivered in order, one at a time;
//! different tasks do not wait for each other. The queue knows nothing about tasks beyond ids;
//! what an acknowledged terminal update means is decided by its `on_acked` callback.

use crate::background::Background;
use futures_util::future::BoxFuture;
use gantry_api::protocol::StatusUpdate;
use gantry_api::{Millis, TaskState};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{debug, warn};

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Where status updates go: the master, or a recording double in tests.
pub trait StatusSink: Send + Sync + 'static {
    /// Delivers one update; `Ok` only once the receiver stored it.
    fn post<'a>(&'a self, update: &'a StatusUpdate) -> BoxFuture<'a, Result<(), String>>;
}

/// Called with every acknowledged update.
pub type OnAcked = Arc<dyn Fn(&StatusUpdate) + Send + Sync>;

/// A new update with a fresh uuid, observed now.
pub fn new_update(
    task_id: &str,
    state: TaskState,
    healthy: Option<bool>,
    exit_code: Option<i32>,
    message: Option<String>,
) -> StatusUpdate {
    StatusUpdate {
        uuid: uuid::Uuid::new_v4().to_string(),
        task_id: task_id.to_string(),
        state,
        healthy,
        exit_code,
        message,
        timestamp: gantry_api::now_millis() as Millis,
        limits: Vec::new(),
    }
}

/// Unacknowledged updates per task, each task with its own delivery loop.
pub struct StatusQueue {
    pending: Mutex<HashMap<String, VecDeque<StatusUpdate>>>,
    kick: Notify,
    sink: Arc<dyn StatusSink>,
    on_acked: OnAcked,
    background: Background,
}

impl fmt::Debug for StatusQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusQueue").field("pending", &self.pending).finish_non_exhaustive()
    }
}

impl StatusQueue {
    /// A queue posting to `sink`, running its loops in `background`.
    pub fn new(sink: Arc<dyn StatusSink>, on_acked: OnAcked, background: Background) -> Arc<Self> {
        Arc::new(Self { pending: Mutex::default(), kick: Notify::new(), sink, on_acked, background })
    }

    /// Queues `update` behind the task's earlier unacknowledged updates.
    pub fn push(self: &Arc<Self>, update: StatusUpdate) {
        let task_id = update.task_id.clone();
        let mut pending = self.pending.lock().expect("status queue lock is never poisoned");
        match pending.get_mut(&task_id) {
            Some(queue) => queue.push_back(update),
            None => {
                pending.insert(task_id.clone(), VecDeque::from([update]));
                let queue = Arc::clone(self);
                self.background.spawn(async move { queue.deliver(task_id).await });
            }
        }
    }

    /// Retries every pending update now instead of after its backoff (after a re-registration).
    pub fn resend_now(&self) {
        self.kick.notify_waiters();
    }

    /// Every unacknowledged update, oldest first per task.
    pub fn pending(&self) -> Vec<StatusUpdate> {
        let pending = self.pending.lock().expect("status queue lock is never poisoned");
        pending.values().flatten().cloned().collect()
    }

    async fn deliver(self: Arc<Self>, task_id: String) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let head = {
                let pending = self.pending.lock().expect("status queue lock is never poisoned");
                match pending.get(&task_id).and_then(|q| q.front()) {
                    Some(update) => update.clone(),
                    None => return,
                }
            };
            match self.sink.post(&head).await {
                Ok(()) => {
                    debug!(%task_id, uuid = %head.uuid, state = %head.state, "Status update acknowledged.");
                    backoff = FIRST_BACKOFF;
                    (self.on_acked)(&head);
                    let mut pending = self.pending.lock().expect("status queue lock is never poisoned");
                    if let Some(queue) = pending.get_mut(&task_id) {
                        queue.pop_front();
                        if queue.is_empty() {
                            pending.remove(&task_id);
                            return;
                        }
                    }
                }
                Err(error) => {
                    warn!(%task_id, uuid = %head.uuid, state = %head.state, %error, "Status update not acknowledged; retrying.");
                    let kicked = self.kick.notified();
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = kicked => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Records posts and refuses the first `failures` of them.
    #[derive(Default)]
    struct RecordingSink {
        posts: Mutex<Vec<StatusUpdate>>,
        failures: AtomicUsize,
    }

    impl StatusSink for RecordingSink {
        fn post<'a>(&'a self, update: &'a StatusUpdate) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                self.posts.lock().expect("lock").push(update.clone());
                let failed =
                    self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                if failed { Err("500".to_string()) } else { Ok(()) }
            })
        }
    }

    async fn until(mut condition: impl FnMut() -> bool) {
        for _ in 0..1000 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not met in 10 s");
    }

    #[tokio::test]
    async fn retries_with_the_same_uuid_and_keeps_per_task_order() {
        let sink = Arc::new(RecordingSink { failures: AtomicUsize::new(2), ..RecordingSink::default() });
        let acked = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&acked);
        let on_acked: OnAcked = Arc::new(move |u: &StatusUpdate| record.lock().expect("lock").push(u.uuid.clone()));
        let queue = StatusQueue::new(sink.clone(), on_acked, Background::default());
        let running = new_update("t1", TaskState::Running, None, None, None);
        let finished = new_update("t1", TaskState::Finished, None, Some(0), None);
        queue.push(running.clone());
        queue.push(finished.clone());
        until(|| acked.lock().expect("lock").len() == 2).await;
        assert_eq!(*acked.lock().expect("lock"), vec![running.uuid.clone(), finished.uuid.clone()]);
        let posts = sink.posts.lock().expect("lock");
        assert_eq!(posts.len(), 4, "two refused posts, then one each");
        assert!(posts[..3].iter().all(|p| p.uuid == running.uuid), "the head is retried as is");
        assert_eq!(posts[3].uuid, finished.uuid);
        assert!(queue.pending().is_empty());
    }
}
