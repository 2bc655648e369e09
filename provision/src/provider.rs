//! The provider contract: make hosts exist (create, describe, list, destroy), nothing more.
//! Installing the runtime is the bootstrap's job, through a [`crate::transport::Transport`].
//!
//! Every operation is **idempotent by host name**: `create_host` on a name that exists returns
//! that host (starting it if stopped) instead of making a second one; `destroy_host` on a name
//! that does not exist succeeds. Hosts carry the cluster name (as a tag, label or directory) so
//! `list_hosts` returns exactly this cluster's hosts — the planner destroys any of them it does
//! not know, so a provider must never list a host of another cluster.
//!
//! The methods are async because cloud SDKs are, and return boxed futures so the trait stays
//! object-safe: the binary picks a provider at run time from the cluster file and holds a
//! `Box<dyn Provider>`. Implementations write `Box::pin(async move { … })`.

pub mod conformance;
pub mod fake;

pub use fake::{FakeProvider, ProviderCall};

use crate::cluster_file::Role;
use crate::planner::{DesiredHost, ObservedHost};
use futures_util::future::BoxFuture;
use std::collections::BTreeMap;
use std::fmt;

/// What a provider failure means to the engine, which retries only [`ErrorKind::is_retryable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The host (or a resource it needs, such as an image) does not exist.
    NotFound,
    /// The name is taken by something that is not this cluster's host, or a state conflict.
    Conflict,
    /// A quota or capacity limit was reached.
    Quota,
    /// Credentials are missing, expired or not allowed to do this.
    Auth,
    /// A failure that may pass: throttling, timeouts, 5xx, eventual consistency.
    Transient,
    /// Anything else; not retried.
    Other,
}

impl ErrorKind {
    /// Whether retrying the same call may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Transient)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotFound => "not found",
            Self::Conflict => "conflict",
            Self::Quota => "quota exceeded",
            Self::Auth => "not authorized",
            Self::Transient => "transient failure",
            Self::Other => "failed",
        })
    }
}

/// A failed provider call. The kind is data (not a variant per kind) because the engine decides
/// on it uniformly for every provider; `message` carries the provider's own words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused or failed the call.
    #[error("{provider}: {operation} {host}: {kind}: {message}")]
    Call {
        /// Which provider.
        provider: String,
        /// `create`, `describe`, `list` or `destroy`.
        operation: &'static str,
        /// The host, or `*` for `list`.
        host: String,
        /// What it means to the engine.
        kind: ErrorKind,
        /// The provider's explanation.
        message: String,
    },
    /// The provider cannot do this at all (see [`ProviderCapabilities`]), e.g. `onprem` creating.
    #[error("{provider}: cannot {operation}: {reason}")]
    Unsupported {
        /// Which provider.
        provider: String,
        /// What was asked.
        operation: &'static str,
        /// Why not, and what to do instead.
        reason: String,
    },
}

impl ProviderError {
    /// What the failure means; `Unsupported` is [`ErrorKind::Other`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Call { kind, .. } => *kind,
            Self::Unsupported { .. } => ErrorKind::Other,
        }
    }

    /// Whether retrying may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }
}

/// What a provider can do; the engine checks before asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCapabilities {
    /// It can create hosts (`onprem` cannot: its hosts exist already).
    pub create: bool,
    /// It can destroy hosts (`onprem` only forgets them).
    pub destroy: bool,
    /// Creating a stopped host starts it.
    pub start_stopped: bool,
    /// How many creates may run at once (cloud rate limits); `None` = no limit.
    pub max_parallel_creates: Option<usize>,
    /// How the bootstrap reaches its hosts.
    pub transport: TransportKind,
    /// It makes resources of the cluster's own before any host ([`Provider::prepare`]).
    pub cluster_resources: bool,
}

/// How hosts of a provider are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Commands run on this machine.
    Local,
    /// Over SSH, with the cluster file's `[ssh]` settings.
    Ssh,
}

/// What the engine asks a provider to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// Cluster the host belongs to (tag it with this).
    pub cluster: String,
    /// Host name, unique in the cluster.
    pub name: String,
    /// Master or agent.
    pub role: Role,
    /// Pool it belongs to.
    pub pool: String,
    /// Resources requested, in the agent's text form; `None` = the provider's default size.
    pub resources: Option<String>,
    /// Attributes from the cluster file (zone placement hints, custom labels).
    pub attributes: BTreeMap<String, String>,
}

impl HostSpec {
    /// The spec of a desired host of `cluster`.
    pub fn for_host(cluster: &str, host: &DesiredHost) -> Self {
        Self {
            cluster: cluster.to_string(),
            name: host.name.clone(),
            role: host.role,
            pool: host.pool.clone(),
            resources: host.resources.clone(),
            attributes: host.attributes.clone(),
        }
    }
}

/// What the planner needs from a provider's `list_hosts`: a pending host counts as running
/// (it exists and is coming up; `create_host` would only return it).
pub fn observed(hosts: &[HostDescription]) -> BTreeMap<String, ObservedHost> {
    hosts.iter().map(|h| (h.name.clone(), ObservedHost { running: h.state != HostState::Stopped })).collect()
}

/// A host's state at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    /// Being created or started.
    Pending,
    /// Up.
    Running,
    /// Exists but stopped.
    Stopped,
}

/// What a provider reports about a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDescription {
    /// Host name.
    pub name: String,
    /// Its state.
    pub state: HostState,
    /// Address the transport connects to (IP or DNS name); `None` until known.
    pub address: Option<String>,
    /// Provider facts, reported by the agent as attributes: `provider`, `region`, `zone`,
    /// `instance_type`.
    pub attributes: BTreeMap<String, String>,
}

/// A resource a provider makes once per cluster, before any host: a cloud's network, firewall
/// rules, key pair. `plan` and `status` list them; `down` deletes them after the last host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterResource {
    /// What it is, in the provider's words: `vpc`, `subnet`, `security-group`, …
    pub kind: String,
    /// Its name (or what it is for, e.g. the zone of a subnet).
    pub name: String,
    /// Its id at the provider; `None` while it does not exist (it will be created).
    pub id: Option<String>,
    /// Whether gantry made it (and `down` deletes it); false for resources the file names.
    pub owned: bool,
}

/// Makes hosts exist. See the module docs for the idempotency contract.
pub trait Provider: Send + Sync + fmt::Debug {
    /// The provider's name, as in cluster files (`local`, `aws`, …).
    fn name(&self) -> &str;

    /// What this provider can do.
    fn capabilities(&self) -> ProviderCapabilities;

    /// Ensures a host named `spec.name` exists and runs; returns it. Idempotent: an existing host
    /// of this cluster with that name is returned (and started if stopped), never duplicated.
    fn create_host<'a>(&'a self, spec: &'a HostSpec) -> BoxFuture<'a, Result<HostDescription, ProviderError>>;

    /// Describes one host; [`ErrorKind::NotFound`] when it does not exist.
    fn describe_host<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<HostDescription, ProviderError>>;

    /// Every host of this cluster, in any state.
    fn list_hosts(&self) -> BoxFuture<'_, Result<Vec<HostDescription>, ProviderError>>;

    /// Destroys a host. Idempotent: a host that does not exist is not an error.
    fn destroy_host<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ProviderError>>;

    /// Makes the cluster's own resources (a cloud's network, firewall, key pair) before the first
    /// host is created. Idempotent: what exists is found (by tag) and kept. Default: nothing.
    fn prepare(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async { Ok(()) })
    }

    /// Deletes what [`Self::prepare`] made, once the cluster has no host left. Idempotent: what
    /// is already gone is fine. Default: nothing.
    fn teardown(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async { Ok(()) })
    }

    /// The cluster's own resources as they are now, or as `prepare` would make them (`id: None`).
    /// Default: none.
    fn cluster_resources(&self) -> BoxFuture<'_, Result<Vec<ClusterResource>, ProviderError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}
