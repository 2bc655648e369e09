//! The master ↔ agent protocol, HTTP/JSON under `/internal/v1/agents`.
//!
//! 1. The agent registers: `POST /internal/v1/agents/register` with [`RegisterAgent`] (its
//!    persistent id, resources, attributes and every task it still knows). The master answers
//!    [`Registered`] after reconciling: tasks the master has given up on are killed, tasks the
//!    master expects but the agent does not report become `LOST`.
//! 2. The agent opens `GET /internal/v1/agents/{id}/commands`, a stream of newline-delimited JSON
//!    [`AgentCommand`]s that stays open. The master sends `ping` every heartbeat interval, so an
//!    agent that hears nothing for three intervals reconnects (and re-registers).
//! 3. The agent posts `POST /internal/v1/agents/{id}/heartbeat` every heartbeat interval.
//!    A 404 answer means the master does not know it: register again.
//! 4. The agent posts [`StatusUpdate`]s to `POST /internal/v1/agents/{id}/status` and retries each
//!    until it gets a 2xx: the master answers only after the update is stored. Updates carry a
//!    uuid so a retried update is applied once.
//!
//! The agent serves its own HTTP endpoint for sandbox files: `GET /files/{task_id}/{stream}`
//! with `offset` and `length` query parameters, answered with [`FileChunk`].

use crate::Millis;
use crate::agent::AgentInfo;
use crate::container::{ContainerSpec, Volume};
use crate::resources::Resources;
use crate::task::TaskState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Path prefix of the protocol.
pub const PREFIX: &str = "/internal/v1/agents";

/// Registration (and re-registration) of an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterAgent {
    /// Who the agent is and what it offers.
    pub info: AgentInfo,
    /// Every task the agent still has, running or finished but not yet acknowledged.
    #[serde(default)]
    pub tasks: Vec<TaskReport>,
}

/// The master's answer to a registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    /// The agent id (echoed).
    pub agent_id: String,
    /// How often the agent must heartbeat, in milliseconds.
    pub heartbeat_interval_ms: u64,
}

/// A task as the agent knows it, sent at registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    /// Task id.
    pub task_id: String,
    /// State on the agent.
    pub state: TaskState,
    /// Health, if checked.
    #[serde(default)]
    pub healthy: Option<bool>,
    /// Exit status, if it exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
}

/// A command from the master, one JSON object per line on the command stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentCommand {
    /// Keep-alive; sent every heartbeat interval.
    Ping,
    /// Start a task (boxed: a launch is far larger than the other commands).
    Launch(Box<LaunchTask>),
    /// Stop a task: SIGTERM to its process group, SIGKILL after the grace period.
    Kill {
        /// The task to stop.
        task_id: String,
        /// Seconds between SIGTERM and SIGKILL.
        grace_period_secs: f64,
    },
}

/// Everything the agent needs to run a task; it does not know apps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchTask {
    /// Task id; also the sandbox directory name.
    pub task_id: String,
    /// App id, exported as `GANTRY_APP_ID`.
    pub app_id: String,
    /// A shell command (`/bin/sh -c`), or `None` when `args` is used.
    #[serde(default)]
    pub cmd: Option<String>,
    /// A program and its arguments, when `cmd` is `None`.
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// Environment of the app; the agent adds `PORT0..N`, `PORT_<NAME>`, `PORT`, `HOST`,
    /// `GANTRY_TASK_ID`, `GANTRY_APP_ID`, `GANTRY_SANDBOX`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Reserved resources (ports included).
    pub resources: Resources,
    /// Host ports in the order of the app's port definitions, with their names.
    #[serde(default)]
    pub ports: Vec<NamedPort>,
    /// Health checks to run, already resolved to ports.
    #[serde(default)]
    pub health_checks: Vec<TaskHealthCheck>,
    /// Seconds between SIGTERM and SIGKILL when the task is stopped.
    pub kill_grace_period_secs: f64,
    /// Environment variables whose values are secrets: variable → secret name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// Files of the sandbox (mode 0400) whose content is a secret: file name → secret name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_files: BTreeMap<String, String>,
    /// The values of the secrets named above, by name: filled in by the master as it sends the
    /// launch to the agent (over mutual TLS), never stored by the master.
    #[serde(default, skip_serializing_if = "SecretValues::is_empty")]
    pub secret_values: SecretValues,
    /// The user the task runs as; `None`: the agent's default (`nobody` when it runs as root),
    /// in a container the image's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The image the task runs from; `None`: on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerSpec>,
    /// Host directories mounted into the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
}

impl LaunchTask {
    /// The name of every secret the task reads: its environment's, its files' and its
    /// registry credentials'.
    pub fn secret_names(&self) -> impl Iterator<Item = &String> {
        let registry = self.container.as_ref().and_then(|c| c.registry_auth.as_ref());
        self.secrets.values().chain(self.secret_files.values()).chain(registry)
    }
}

/// Secret values by secret name. Its `Debug` shows the names only, so no log line can print a
/// value by accident.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretValues(pub BTreeMap<String, String>);

impl SecretValues {
    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of secret `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A port assigned to a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedPort {
    /// The app's port name.
    pub name: String,
    /// The host port.
    pub port: u16,
}

/// A health check with its port resolved, as the agent runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "protocol", rename_all = "UPPERCASE")]
pub enum TaskHealthCheckKind {
    /// HTTP GET on `127.0.0.1:port` + path; 2xx/3xx healthy.
    Http {
        /// Host port.
        port: u16,
        /// Request path.
        path: String,
    },
    /// TCP connect to `127.0.0.1:port`.
    Tcp {
        /// Host port.
        port: u16,
    },
    /// Shell command in the sandbox; exit 0 healthy.
    Command {
        /// The command.
        command: String,
    },
}

/// A resolved health check and its timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskHealthCheck {
    /// What to check.
    pub kind: TaskHealthCheckKind,
    /// Seconds after start in which failures do not count, until the first success.
    pub grace_period_secs: f64,
    /// Seconds between checks.
    pub interval_secs: f64,
    /// Seconds before a check counts as failed.
    pub timeout_secs: f64,
    /// Consecutive failures after which the agent kills the task.
    pub max_consecutive_failures: u32,
}

/// A change of a task's state or health, posted by the agent until acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// Unique per update; a retried update carries the same uuid.
    pub uuid: String,
    /// The task.
    pub task_id: String,
    /// New state.
    pub state: TaskState,
    /// Health, if checked.
    #[serde(default)]
    pub healthy: Option<bool>,
    /// Exit status, when it exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why, in words.
    #[serde(default)]
    pub message: Option<String>,
    /// When the agent observed it.
    pub timestamp: Millis,
    /// With the first RUNNING update: the limits the agent enforces on the task, in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<String>,
}

/// Heartbeat body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// When the agent sent it.
    pub timestamp: Millis,
}

/// A piece of a sandbox file, from the agent's file endpoint (and the master's log proxy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChunk {
    /// Offset of `data` in the file.
    pub offset: u64,
    /// The bytes read, lossily decoded as UTF-8.
    pub data: String,
    /// Offset just after `data`: pass it as the next `offset` to follow the file.
    pub next_offset: u64,
    /// Whether the task has reached a terminal state (nothing more will be written).
    pub eof: bool,
}
