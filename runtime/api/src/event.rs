//! Events on the master's stream (`GET /api/v1/events`, server-sent events).

use crate::Millis;
use crate::agent::{AgentDrain, AgentState};
use crate::deployment::DeploymentStatus;
use crate::job::RunStatus;
use crate::task::TaskState;
use serde::{Deserialize, Serialize};

/// One change in the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An app was created or its definition changed.
    AppUpdated {
        /// App id.
        app_id: String,
        /// New version.
        version: u64,
        /// When.
        at: Millis,
    },
    /// An app was deleted.
    AppDeleted {
        /// App id.
        app_id: String,
        /// When.
        at: Millis,
    },
    /// A task changed state or health.
    TaskChanged {
        /// Task id.
        task_id: String,
        /// Its app.
        app_id: String,
        /// Its agent.
        agent_id: String,
        /// New state.
        state: TaskState,
        /// Health, if checked.
        healthy: Option<bool>,
        /// Why.
        message: Option<String>,
        /// When.
        at: Millis,
    },
    /// A job was created or its definition changed.
    JobUpdated {
        /// Job id.
        job_id: String,
        /// When.
        at: Millis,
    },
    /// A job was deleted.
    JobDeleted {
        /// Job id.
        job_id: String,
        /// When.
        at: Millis,
    },
    /// A job run was created or changed state.
    JobRunChanged {
        /// Job id.
        job_id: String,
        /// Run id.
        run_id: String,
        /// New state.
        status: RunStatus,
        /// Why.
        message: Option<String>,
        /// When.
        at: Millis,
    },
    /// An agent registered, re-registered or changed standing.
    AgentChanged {
        /// Agent id.
        agent_id: String,
        /// Hostname.
        hostname: String,
        /// New standing.
        state: AgentState,
        /// When.
        at: Millis,
    },
    /// An agent's drain started, moved its deadline, or was cancelled (`drain: None`).
    AgentDrainChanged {
        /// Agent id.
        agent_id: String,
        /// Hostname.
        hostname: String,
        /// The drain, if it drains.
        drain: Option<AgentDrain>,
        /// When.
        at: Millis,
    },
    /// An agent was removed from the cluster (`DELETE /api/v1/agents/{id}`): revoked and
    /// forgotten.
    AgentRemoved {
        /// Agent id.
        agent_id: String,
        /// Hostname.
        hostname: String,
        /// When.
        at: Millis,
    },
    /// A deployment started, changed status, or was promoted.
    DeploymentChanged {
        /// Deployment id.
        deployment_id: String,
        /// Its app.
        app_id: String,
        /// The version it rolls out.
        version: u64,
        /// New status.
        status: DeploymentStatus,
        /// Why, when it failed or was stopped.
        reason: Option<String>,
        /// When.
        at: Millis,
    },
}
