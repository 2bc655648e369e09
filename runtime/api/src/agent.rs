//! Agents as the API reports them.

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

/// An agent's standing with the master.
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
