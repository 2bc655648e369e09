//! Agents as the API reports them, and their drains (`POST /api/v1/agents/{id}/drain`).

use crate::Millis;
use crate::resources::Resources;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What an agent says about itself when it registers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Persistent id, kept in the agent's work dir across restarts.
    pub id: String,
    /// The host's name; the `hostname` constraint field.
    pub hostname: String,
    /// Base URL of the agent's own HTTP endpoint (sandbox files), e.g. `http://10.0.0.5:5051`.
    pub endpoint: String,
    /// Everything the agent offers to tasks.
    pub resources: Resources,
    /// Attributes for constraints, e.g. `zone=a`.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The agent's build version.
    #[serde(default)]
    pub version: String,
}

/// An agent's standing with the master: whether it is heard from. Whether it takes new tasks
/// is a separate matter: a draining agent ([`Agent::drain`]) is ACTIVE but gets none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AgentState {
    /// Heartbeating; receives tasks.
    Active,
    /// Missed heartbeats for longer than the unreachable timeout; its tasks are replaced.
    Unreachable,
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Active => "ACTIVE",
            Self::Unreachable => "UNREACHABLE",
        })
    }
}

/// An agent as the master reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// What it registered with.
    pub info: AgentInfo,
    /// Active or unreachable.
    pub state: AgentState,
    /// Set while the agent is drained: it gets no new tasks, its service tasks are replaced
    /// elsewhere and its job runs may finish until the deadline. Kept across its restarts and the
    /// master's, until the drain is cancelled or the agent is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<AgentDrain>,
    /// When it first registered.
    pub registered_at: Millis,
    /// When the master last heard from it.
    pub last_seen_at: Millis,
    /// Resources held by its active tasks.
    #[serde(default)]
    pub used: Resources,
    /// Number of its active tasks.
    #[serde(default)]
    pub tasks: u32,
}

impl Agent {
    /// Whether the allocator offers its resources: it is ACTIVE and not draining.
    pub fn accepts_tasks(&self) -> bool {
        self.state == AgentState::Active && self.drain.is_none()
    }

    /// Its standing in one word for people: `ACTIVE`, `DRAINING` or `UNREACHABLE`.
    pub fn standing(&self) -> &'static str {
        match (self.state, &self.drain) {
            (AgentState::Active, Some(_)) => "DRAINING",
            (AgentState::Active, None) => "ACTIVE",
            (AgentState::Unreachable, _) => "UNREACHABLE",
        }
    }
}

/// A drain of an agent, as stored with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentDrain {
    /// When the drain was asked for.
    pub started_at: Millis,
    /// When whatever still runs on the agent is killed.
    pub deadline: Millis,
}

/// Body of `POST /api/v1/agents/{id}/drain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// Seconds from now until whatever still runs on the agent is killed (default 300). Asking
    /// again for a draining agent moves its deadline.
    #[serde(default = "default_drain_deadline")]
    pub deadline: f64,
}

/// The deadline of a drain when none is given: five minutes.
pub const DEFAULT_DRAIN_DEADLINE_SECS: f64 = 300.0;

fn default_drain_deadline() -> f64 {
    DEFAULT_DRAIN_DEADLINE_SECS
}

impl Default for DrainRequest {
    fn default() -> Self {
        Self { deadline: DEFAULT_DRAIN_DEADLINE_SECS }
    }
}

/// Answer of `GET|POST|DELETE /api/v1/agents/{id}/drain`: the agent's drain and what is left on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrainStatus {
    /// The agent.
    pub agent_id: String,
    /// Its hostname.
    pub hostname: String,
    /// Whether it is heard from.
    pub state: AgentState,
    /// The drain; `None` when the agent is not draining (never was, or it was cancelled).
    pub drain: Option<AgentDrain>,
    /// Its tasks that have not ended yet (staging, running, being killed, or unreachable).
    pub tasks: Vec<crate::Task>,
    /// Whether the deadline passed (what was left has been killed).
    pub deadline_passed: bool,
    /// Why the tasks left cannot move before the deadline, when the master knows: no other agent
    /// accepts tasks, or the agent itself is unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck: Option<String>,
}

impl DrainStatus {
    /// Whether the agent is draining and nothing runs on it any more.
    pub fn done(&self) -> bool {
        self.drain.is_some() && self.tasks.is_empty()
    }
}
