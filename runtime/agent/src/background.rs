//! The agent's background tasks, kept in one set so shutdown can stop every loop at once
//! (the tasks themselves, i.e. the processes, are left running).

use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::task::{AbortHandle, JoinSet};

/// A cloneable handle to the agent's set of background tasks.
#[derive(Debug, Clone, Default)]
pub struct Background {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    set: JoinSet<()>,
    closed: bool,
}

impl Background {
    /// Spawns `future` in the set; after [`Background::abort_all`] the future is dropped instead.
    pub fn spawn<F>(&self, future: F) -> Option<AbortHandle>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut inner = self.inner.lock().expect("background set lock is never poisoned");
        if inner.closed {
            return None;
        }
        while inner.set.try_join_next().is_some() {}
        Some(inner.set.spawn(future))
    }

    /// Stops every background task and refuses new ones.
    pub fn abort_all(&self) {
        let mut inner = self.inner.lock().expect("background set lock is never poisoned");
        inner.closed = true;
        inner.set.abort_all();
    }
}
