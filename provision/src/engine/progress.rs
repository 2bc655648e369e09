//! What the engine reports while it applies a plan: one event per action and per phase. The CLI
//! prints them as lines (`[workers-1] upload-binary … done (12 ms)`); tests record them.

use crate::planner::ActionKind;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// One thing that happened during an apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// An action's intent is journaled and it starts.
    ActionStarted {
        /// The host.
        host: String,
        /// The action.
        action: ActionKind,
    },
    /// A phase (or provider call: `create`, `destroy-host`) finished.
    PhaseFinished {
        /// The host.
        host: String,
        /// The phase.
        phase: String,
        /// Whether it changed something.
        skipped: bool,
        /// What it did, or why it had nothing to do.
        detail: String,
        /// How long it took.
        elapsed: Duration,
    },
    /// A phase failed with a retryable error and runs again after `delay`.
    Retrying {
        /// The host.
        host: String,
        /// The phase.
        phase: String,
        /// The attempt that failed (from 1).
        attempt: u32,
        /// Wait before the next attempt.
        delay: Duration,
        /// The error.
        error: String,
    },
    /// A phase failed for good.
    PhaseFailed {
        /// The host.
        host: String,
        /// The phase.
        phase: String,
        /// The error.
        error: String,
        /// How long it took.
        elapsed: Duration,
    },
    /// An action completed (journaled as done).
    ActionFinished {
        /// The host.
        host: String,
        /// The action.
        action: ActionKind,
        /// How long it took.
        elapsed: Duration,
    },
    /// An action failed (journaled as failed).
    ActionFailed {
        /// The host.
        host: String,
        /// The action.
        action: ActionKind,
        /// The error.
        error: String,
    },
}

/// Receives the engine's events, from several hosts at once.
pub trait Progress: Send + Sync {
    /// Called for every event, in the order they happen on each host.
    fn event(&self, event: ProgressEvent);
}

/// A [`Progress`] that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: ProgressEvent) {}
}

/// A [`Progress`] that keeps every event, for tests.
#[derive(Debug, Default)]
pub struct RecordingProgress {
    events: Mutex<Vec<ProgressEvent>>,
}

impl RecordingProgress {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<ProgressEvent> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// `(host, phase)` of every finished phase, in order.
    pub fn phases(&self) -> Vec<(String, String)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                ProgressEvent::PhaseFinished { host, phase, .. } => Some((host, phase)),
                _ => None,
            })
            .collect()
    }
}

impl Progress for RecordingProgress {
    fn event(&self, event: ProgressEvent) {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).push(event);
    }
}
