//! Tasks: one running instance of an app on one agent, and its life-cycle states.

use crate::Millis;
use crate::resources::Resources;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A task's state. Terminal states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    /// Accepted by the master, launch command sent to the agent.
    Staging,
    /// The agent started the process.
    Running,
    /// The agent is stopping it (SIGTERM sent, grace period running).
    Killing,
    /// Exited with status 0.
    Finished,
    /// Exited non-zero, by a signal it did not ask for, or could not start.
    Failed,
    /// Stopped on request (scale down, delete, kill, failed health checks).
    Killed,
    /// The agent no longer knows it (lost while the agent was away or restarting).
    Lost,
    /// Its agent stopped heartbeating; it may still run. Not counted as an instance.
    Unreachable,
}

impl TaskState {
    /// Whether the state is final.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Finished | Self::Failed | Self::Killed | Self::Lost)
    }

    /// Whether the task counts as a live instance of its app.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Staging | Self::Running)
    }

    /// The wire name, e.g. `RUNNING`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Staging => "STAGING",
            Self::Running => "RUNNING",
            Self::Killing => "KILLING",
            Self::Finished => "FINISHED",
            Self::Failed => "FAILED",
            Self::Killed => "KILLED",
            Self::Lost => "LOST",
            Self::Unreachable => "UNREACHABLE",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One instance of an app on one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// `<app id>.<uuid>`.
    pub id: String,
    /// The app this task is an instance of.
    pub app_id: String,
    /// The app version the task runs.
    pub app_version: u64,
    /// The agent it was placed on.
    pub agent_id: String,
    /// The agent's hostname.
    pub host: String,
    /// Current state.
    pub state: TaskState,
    /// Health as last reported; `None` without health checks or before the first result.
    #[serde(default)]
    pub healthy: Option<bool>,
    /// Host ports assigned, in the order of the app's `ports`.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Resources reserved for it on the agent (ports included).
    pub resources: Resources,
    /// When the master created it.
    pub staged_at: Millis,
    /// When the agent reported it running.
    #[serde(default)]
    pub started_at: Option<Millis>,
    /// When it reached a terminal state.
    #[serde(default)]
    pub finished_at: Option<Millis>,
    /// Exit status, when it exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Human-readable reason of the last state change.
    #[serde(default)]
    pub message: Option<String>,
    /// The limits the agent enforces on it and how, e.g. `mem 64 MiB: cgroup v1
    /// (memory.limit_in_bytes)`, or why one is not enforced; reported once it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<String>,
}
