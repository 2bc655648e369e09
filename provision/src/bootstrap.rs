//! Bootstrap: named, idempotent phases that install, start, drain and remove the gantry runtime on
//! one host. Phases reach the host only through its [`crate::transport::Transport`] (and the
//! cluster through [`crate::cluster_api::ClusterApi`]), so the same phases serve every provider and
//! a recording fake sees every effect. One phase per file; the engine owns ordering, retries and
//! the journal.
//!
//! - bootstrap / reconfigure: `inspect`, `upload-binary`, `render-config`, `install-service`,
//!   `start`, `wait-ready`
//! - drain (agents being removed): `drain`, `inspect`, `stop`, `kill-tasks`, `wait-unreachable`,
//!   `revoke-agent`
//! - destroy: `inspect`, `stop`, `kill-tasks`, `remove-files`
//!
//! Drain first: the master drains the agent (its service tasks are replaced elsewhere before they
//! stop, its job runs may finish until the deadline) and only then is it stopped, its leftover
//! processes killed, and the agent removed from the cluster (revoked and forgotten).

mod drain;
mod inspect;
mod install_service;
mod join_group;
mod kill_tasks;
mod leave_group;
mod remove_files;
mod render_config;
mod revoke_agent;
mod start;
mod stop;
mod templates;
#[cfg(test)]
mod tests;
mod upload_binary;
mod wait_ready;
mod wait_unreachable;

pub use drain::{DRAIN_DEADLINE, Drain};
pub use inspect::{HostFacts, Inspect};
pub use install_service::InstallService;
pub use join_group::JoinGroup;
pub use kill_tasks::KillTasks;
pub use leave_group::LeaveGroup;
pub use remove_files::RemoveFiles;
pub use render_config::RenderConfig;
pub use revoke_agent::RevokeAgent;
pub use start::Start;
pub use stop::Stop;
pub use upload_binary::UploadBinary;
pub use wait_ready::WaitReady;
pub use wait_unreachable::WaitUnreachable;

use crate::access::HostAccess;
use crate::cluster_api::ClusterApi;
use crate::cluster_file::{ClusterFile, Role};
use crate::planner::DesiredHost;
use crate::transport::{Command, CommandOutput, TransportError};
use futures_util::future::BoxFuture;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Runtime settings every daemon of the cluster gets.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeSettings {
    /// How often agents heartbeat.
    pub heartbeat_interval: Duration,
    /// When a silent agent is marked unreachable.
    pub agent_unreachable_timeout: Duration,
    /// The cluster's CA and tokens, handed to the master and (the join token only) to agents;
    /// `None` leaves the master to make its own (agents then cannot join).
    pub trust: Option<std::sync::Arc<crate::trust::ClusterTrust>>,
    /// The user tasks run as when they name none; `None`: the agent's default.
    pub task_user: Option<String>,
    /// The agents' pids limit per task, 0 for none (`--task-pids`); `None`: the agent's default.
    pub task_pids: Option<u64>,
    /// The agents' image cache size in GiB (`--image-cache-gib`); `None`: the agent's default.
    pub image_cache_gib: Option<f64>,
    /// Registries the agents reach over plain HTTP (`--insecure-registry`, one per entry).
    pub insecure_registries: Vec<String>,
    /// Whether agents remount cgroup2 with `favordynmods` (`--cgroup-favordynmods`).
    pub cgroup_favordynmods: bool,
}

impl RuntimeSettings {
    /// The settings of a cluster file.
    pub fn from_cluster_file(file: &ClusterFile) -> Self {
        Self {
            heartbeat_interval: file.runtime.heartbeat_interval.get_ref().0,
            agent_unreachable_timeout: file.runtime.agent_unreachable_timeout.get_ref().0,
            trust: None,
            task_user: file.runtime.task_user.as_ref().map(|u| u.get_ref().clone()),
            task_pids: file.runtime.task_pids.as_ref().map(|n| *n.get_ref()),
            image_cache_gib: file.runtime.image_cache_gib.as_ref().map(|g| *g.get_ref()),
            insecure_registries: file.runtime.insecure_registries.iter().map(|r| r.get_ref().clone()).collect(),
            cgroup_favordynmods: file.runtime.cgroup_favordynmods,
        }
    }
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(1),
            agent_unreachable_timeout: Duration::from_secs(3),
            trust: None,
            task_user: None,
            task_pids: None,
            image_cache_gib: None,
            insecure_registries: Vec::new(),
            cgroup_favordynmods: false,
        }
    }
}

/// One master of the cluster, as its group knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterMember {
    /// Its number in the group: `master-<i>` is `i + 1`.
    pub number: u64,
    /// Its host's name (`master-<i>`).
    pub name: String,
    /// `host:port` where the other hosts reach its API (and its peers its Raft RPCs).
    pub address: String,
    /// Its API's URL as this machine reaches it.
    pub url: String,
}

impl MasterMember {
    /// The URLs of `masters` other than `this`, comma-separated: whom to ask for a change of the
    /// group that concerns `this` (it may not belong to the group yet, or be stopped).
    pub fn others_urls(masters: &[MasterMember], this: u64) -> String {
        masters.iter().filter(|m| m.number != this).map(|m| m.url.as_str()).collect::<Vec<_>>().join(",")
    }

    /// The number of master host `name` (`master-<i>` → `i + 1`), if it is one.
    pub fn number_of(name: &str) -> Option<u64> {
        name.strip_prefix("master-")?.parse::<u64>().ok().map(|i| i + 1)
    }
}

/// What the phases of one host share: who it is, how to reach it, and what inspect found.
#[derive(Debug)]
pub struct HostContext {
    /// Host name (the agent's hostname).
    pub name: String,
    /// Master or agent.
    pub role: Role,
    /// The host as desired (bootstrap and reconfigure); `None` for drain and destroy.
    pub desired: Option<DesiredHost>,
    /// Provider facts reported as agent attributes (`provider`, `zone`, …).
    pub provider_attributes: BTreeMap<String, String>,
    /// Transport, layout, address, API port.
    pub access: HostAccess,
    /// The masters' URLs as the cluster's hosts reach them, separated by commas (agents: where
    /// to register; they follow the leader).
    pub master_url: Option<String>,
    /// The masters of the cluster (masters only: this master's number and its peers).
    pub masters: Vec<MasterMember>,
    /// The master's URL as this machine reaches it (drain, revoke, readiness: whom to ask);
    /// differs from `master_url` where hosts have public and private addresses.
    pub api_url: Option<String>,
    /// Cluster-wide runtime settings.
    pub runtime: RuntimeSettings,
    /// The gantry binary on this machine, uploaded to the host.
    pub binary: PathBuf,
    /// The cluster API.
    pub api: Arc<dyn ClusterApi>,
    /// How long `wait-ready` and `wait-unreachable` wait.
    pub ready_timeout: Duration,
    /// What `inspect` found.
    pub facts: Option<HostFacts>,
    /// SHA-256 of the gantry binary on the host, once `upload-binary` placed or verified it.
    pub binary_sha256: Option<String>,
}

impl HostContext {
    /// Whether the daemon is run by systemd on this host (after `inspect`).
    pub fn uses_systemd(&self) -> bool {
        self.access.use_systemd && self.facts.as_ref().is_some_and(|f| f.systemd)
    }

    /// The systemd unit name of this host's daemon.
    pub fn unit_name(&self) -> String {
        format!("gantry-{}.service", self.role)
    }

    /// Runs `script`; a non-zero exit is a [`BootstrapError::Command`].
    pub async fn sh(
        &self,
        phase: &'static str,
        script: &str,
        timeout: Duration,
    ) -> Result<CommandOutput, BootstrapError> {
        let output = self.access.transport.run(&Command::new(script, timeout)).await?;
        if output.success() {
            Ok(output)
        } else {
            Err(BootstrapError::Command {
                host: self.name.clone(),
                phase,
                exit_code: output.exit_code,
                stderr: output.stderr.trim().to_string(),
            })
        }
    }
}

/// How a phase ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhaseOutcome {
    /// It changed something; the text says what (may be empty).
    Done(String),
    /// Nothing to do; the text says why.
    Skipped(String),
}

/// A failed phase.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The transport failed (retryable when the transport error is).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A command exited non-zero.
    #[error("{host}: {phase}: command failed with {}: {stderr}",
        .exit_code.map_or("a signal".to_string(), |c| format!("exit code {c}")))]
    Command {
        /// The host.
        host: String,
        /// The phase.
        phase: &'static str,
        /// Its exit code (`None`: killed by a signal).
        exit_code: Option<i32>,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A template could not be rendered (a bug of this build).
    #[error("template {name}: {message}")]
    Template {
        /// The template.
        name: &'static str,
        /// Tera's explanation.
        message: String,
    },
    /// The host cannot run gantry, or something the phase needs is missing.
    #[error("{host}: {message}")]
    Unsupported {
        /// The host.
        host: String,
        /// Why.
        message: String,
    },
    /// The masters' group did not take a change of its members (retried: an election, a
    /// master still starting).
    #[error("{host}: the masters' group: {message}")]
    Group {
        /// The host.
        host: String,
        /// What the leader answered.
        message: String,
    },
    /// The daemon did not become ready in time.
    #[error("{host}: {what} not within {}: {last}{}", humantime::format_duration(*.waited),
        if .log_tail.is_empty() { String::new() } else { format!("\n  last lines of its log:\n{}", .log_tail) })]
    NotReady {
        /// The host.
        host: String,
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
        /// The last answer or error seen.
        last: String,
        /// The end of the daemon's log, indented.
        log_tail: String,
    },
}

impl BootstrapError {
    /// Whether running the (idempotent) phase again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(e) => e.is_retryable(),
            Self::Group { .. } => true,
            _ => false,
        }
    }
}

/// One named, idempotent step on one host.
pub trait Phase: Send + Sync + fmt::Debug {
    /// Its name in progress lines (`upload-binary`).
    fn name(&self) -> &'static str;

    /// Runs it. Running it again after success changes nothing (and says `Skipped`).
    fn run<'a>(&'a self, host: &'a mut HostContext) -> BoxFuture<'a, Result<PhaseOutcome, BootstrapError>>;
}

/// Phases that install or update the runtime (bootstrap and reconfigure).
pub fn bootstrap_phases() -> Vec<Box<dyn Phase>> {
    vec![
        Box::new(Inspect),
        Box::new(UploadBinary),
        Box::new(RenderConfig),
        Box::new(InstallService),
        Box::new(Start),
        Box::new(JoinGroup),
        Box::new(WaitReady),
    ]
}

/// Phases that take an agent out of service before it is destroyed.
pub fn drain_phases() -> Vec<Box<dyn Phase>> {
    vec![
        Box::new(Drain::default()),
        Box::new(Inspect),
        Box::new(Stop),
        Box::new(KillTasks),
        Box::new(WaitUnreachable),
        Box::new(RevokeAgent),
    ]
}

/// Phases that remove the runtime from a host before the provider destroys it.
pub fn destroy_phases() -> Vec<Box<dyn Phase>> {
    vec![Box::new(Inspect), Box::new(LeaveGroup), Box::new(Stop), Box::new(KillTasks), Box::new(RemoveFiles)]
}

/// `text` single-quoted for `/bin/sh`.
pub fn quote(text: impl AsRef<str>) -> String {
    format!("'{}'", text.as_ref().replace('\'', "'\\''"))
}

/// A shell function `alive PID`: the process exists and is not a zombie.
pub(crate) const ALIVE_FN: &str = r#"alive() { s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; case "${s##*) }" in Z*|X*) return 1;; esac; return 0; }"#;
