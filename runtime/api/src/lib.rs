//! Wire types of the gantry cluster API and a typed HTTP client.
//!
//! This crate owns every type that crosses a process boundary: the public API v1 (apps, tasks,
//! agents, events), the master ↔ agent protocol, and the JSON error body. It holds no server code
//! and no decisions; the master, the agent and the command line all speak through these types.

pub mod agent;
pub mod app;
pub mod client;
pub mod client_deployments;
pub mod client_images;
pub mod client_jobs;
pub mod client_security;
mod command;
pub mod container;
pub mod deployment;
pub mod error;
pub mod event;
pub mod image;
pub mod job;
pub mod masters;
pub mod protocol;
pub mod resources;
pub mod security;
pub mod task;
pub mod workload;

pub use agent::{Agent, AgentDrain, AgentInfo, AgentState, DrainRequest, DrainStatus};
pub use app::{
    App, AppDefinition, AppStatus, Backoff, Constraint, ConstraintOperator, HealthCheck, HealthProtocol,
    PortDefinition, UpgradeStrategy,
};
pub use client::{Client, ClientError, Credentials};
pub use container::{ContainerSpec, PullPolicy, Volume, VolumeMode};
pub use deployment::{AppVersion, Deployment, DeploymentKind, DeploymentStatus};
pub use error::{ApiError, ValidationError};
pub use event::Event;
pub use job::{Job, JobDefinition, JobRun, RunStatus};
pub use resources::{PortRange, Resources, ResourcesParseError};
pub use task::{Task, TaskState};

/// The version of this build, reported by `/version` and `gantry --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Milliseconds since the Unix epoch: the one timestamp format on the wire.
pub type Millis = u64;

/// The current time in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as Millis).unwrap_or(0)
}
