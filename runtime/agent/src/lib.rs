//! The gantry agent: detects its host's resources, registers with the master, launches and
//! supervises tasks through per-task executors, runs health checks, and serves sandbox files.
//!
//! It never depends on how its host was provisioned.

use gantry_api::Resources;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Settings of one agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Base URL of the master, e.g. `http://127.0.0.1:5050`.
    pub master: String,
    /// Work dir: the persistent agent id, task sandboxes, executor state.
    pub work_dir: PathBuf,
    /// Address of the agent's own HTTP endpoint (sandbox files); port 0 picks a free one.
    pub listen: SocketAddr,
    /// Hostname reported to the master; default: the host's name.
    pub hostname: Option<String>,
    /// Resources given explicitly; every resource not given is detected from the host.
    pub resources: Option<Resources>,
    /// Attributes for constraints.
    pub attributes: BTreeMap<String, String>,
    /// The `gantry` binary that runs as each task's executor (`<path> executor --sandbox DIR`).
    pub executor_path: PathBuf,
}
