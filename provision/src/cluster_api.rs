//! What the bootstrap asks the cluster it installs: is the master serving, and how does the
//! master see an agent. A small trait so phases are tested without a master
//! ([`FakeClusterApi`]); [`HttpClusterApi`] asks the real API through `gantry_api::Client`.

use futures_util::future::BoxFuture;
use gantry_api::AgentState;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

/// How the master sees the agent with a given hostname (the most recently registered one, when
/// a host was re-created and an older registration with its name is still listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentView {
    /// Active or unreachable.
    pub state: AgentState,
    /// Its active tasks, as the master last heard.
    pub tasks: u32,
}

/// A failed call to the cluster API (the master is not up yet, or answered an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url}: {message}")]
pub struct ClusterApiError {
    /// The master URL.
    pub url: String,
    /// What went wrong.
    pub message: String,
}

/// The cluster API, as far as the bootstrap needs it.
pub trait ClusterApi: Send + Sync + fmt::Debug {
    /// Succeeds when the master at `url` answers `GET /health` with `ok`.
    fn health<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<(), ClusterApiError>>;

    /// The agent registered with `hostname`, if any.
    fn agent<'a>(
        &'a self,
        url: &'a str,
        hostname: &'a str,
    ) -> BoxFuture<'a, Result<Option<AgentView>, ClusterApiError>>;

    /// Revokes the certificates of every agent registered with `hostname` (the host is being
    /// removed); answers the ids revoked.
    fn revoke_agent<'a>(
        &'a self,
        url: &'a str,
        hostname: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, ClusterApiError>>;
}

/// The real API over HTTPS, with the cluster's admin credentials. One client per master URL is
/// kept, so polls reuse their TLS connection instead of a handshake each.
#[derive(Debug, Default, Clone)]
pub struct HttpClusterApi {
    credentials: gantry_api::Credentials,
    clients: std::sync::Arc<Mutex<BTreeMap<String, gantry_api::Client>>>,
}

impl HttpClusterApi {
    /// The API with `credentials`.
    pub fn new(credentials: gantry_api::Credentials) -> Self {
        Self { credentials, clients: Default::default() }
    }

    fn client(&self, url: &str) -> Result<gantry_api::Client, ClusterApiError> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(url) {
            return Ok(client.clone());
        }
        let client = gantry_api::Client::with_credentials(url, &self.credentials)
            .map_err(|e| ClusterApiError { url: url.to_string(), message: e.to_string() })?;
        clients.insert(url.to_string(), client.clone());
        Ok(client)
    }
}

impl ClusterApi for HttpClusterApi {
    fn health<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<(), ClusterApiError>> {
        Box::pin(async move {
            let health = self
                .client(url)?
                .health()
                .await
                .map_err(|e| ClusterApiError { url: url.to_string(), message: e.to_string() })?;
            if health.status == "ok" {
                Ok(())
            } else {
                Err(ClusterApiError { url: url.to_string(), message: format!("health is `{}`", health.status) })
            }
        })
    }

    fn agent<'a>(
        &'a self,
        url: &'a str,
        hostname: &'a str,
    ) -> BoxFuture<'a, Result<Option<AgentView>, ClusterApiError>> {
        Box::pin(async move {
            let agents = self
                .client(url)?
                .list_agents()
                .await
                .map_err(|e| ClusterApiError { url: url.to_string(), message: e.to_string() })?;
            Ok(agents
                .into_iter()
                .filter(|a| a.info.hostname == hostname)
                .max_by_key(|a| (a.state == AgentState::Active, a.last_seen_at))
                .map(|a| AgentView { state: a.state, tasks: a.tasks }))
        })
    }

    fn revoke_agent<'a>(
        &'a self,
        url: &'a str,
        hostname: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, ClusterApiError>> {
        Box::pin(async move {
            let failed = |e: gantry_api::ClientError| ClusterApiError { url: url.to_string(), message: e.to_string() };
            let client = self.client(url)?;
            let agents = client.list_agents().await.map_err(failed)?;
            let mut revoked = Vec::new();
            for agent in agents.into_iter().filter(|a| a.info.hostname == hostname) {
                client.revoke_agent(&agent.info.id).await.map_err(failed)?;
                revoked.push(agent.info.id);
            }
            Ok(revoked)
        })
    }
}

/// A cluster API for tests: the master is healthy, and every agent is ACTIVE with no tasks unless
/// a test sets its view.
#[derive(Debug, Default)]
pub struct FakeClusterApi {
    agents: Mutex<BTreeMap<String, Option<AgentView>>>,
    revoked: Mutex<Vec<String>>,
}

impl FakeClusterApi {
    /// A fake cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// The hostnames whose agents were revoked, in order.
    pub fn revoked(&self) -> Vec<String> {
        self.revoked.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How the master sees `hostname` from now on (`None`: not registered).
    pub fn set_agent(&self, hostname: &str, view: Option<AgentView>) {
        self.agents.lock().unwrap_or_else(PoisonError::into_inner).insert(hostname.to_string(), view);
    }
}

impl ClusterApi for FakeClusterApi {
    fn health<'a>(&'a self, _url: &'a str) -> BoxFuture<'a, Result<(), ClusterApiError>> {
        Box::pin(async { Ok(()) })
    }

    fn agent<'a>(
        &'a self,
        _url: &'a str,
        hostname: &'a str,
    ) -> BoxFuture<'a, Result<Option<AgentView>, ClusterApiError>> {
        Box::pin(async move {
            let agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
            Ok(agents.get(hostname).copied().unwrap_or(Some(AgentView { state: AgentState::Active, tasks: 0 })))
        })
    }

    fn revoke_agent<'a>(
        &'a self,
        _url: &'a str,
        hostname: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, ClusterApiError>> {
        Box::pin(async move {
            let registered = self.agents.lock().unwrap_or_else(PoisonError::into_inner).get(hostname).copied();
            if registered == Some(None) {
                return Ok(Vec::new());
            }
            self.revoked.lock().unwrap_or_else(PoisonError::into_inner).push(hostname.to_string());
            Ok(vec![format!("id-of-{hostname}")])
        })
    }
}
