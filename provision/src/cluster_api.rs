//! What the bootstrap asks the cluster it installs: is the master serving, how does the master
//! see an agent, drain an agent and follow the drain, remove an agent. A small trait so phases
//! are tested without a master ([`FakeClusterApi`]); [`HttpClusterApi`] asks the real API
//! through `gantry_api::Client`.

use futures_util::future::BoxFuture;
use gantry_api::AgentState;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// How the master sees the agent with a given hostname (the most recently registered one, when
/// a host was re-created and an older registration with its name is still listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentView {
    /// Active or unreachable.
    pub state: AgentState,
    /// Its active tasks, as the master last heard.
    pub tasks: u32,
}

/// How the drain of the agents registered with one hostname stands (usually one agent; more when
/// a re-created host left an older registration under its name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainView {
    /// The draining agents.
    pub agent_ids: Vec<String>,
    /// Their tasks that have not ended yet.
    pub tasks_left: u32,
    /// Whether every drain's deadline passed (the master killed what was left).
    pub deadline_passed: bool,
    /// Why the tasks left cannot move, when the master says (no other agent takes tasks).
    pub stuck: Option<String>,
}

impl DrainView {
    /// The view of several agents' drains together.
    pub fn of(statuses: &[gantry_api::DrainStatus]) -> Self {
        Self {
            agent_ids: statuses.iter().map(|s| s.agent_id.clone()).collect(),
            tasks_left: statuses.iter().map(|s| u32::try_from(s.tasks.len()).unwrap_or(u32::MAX)).sum(),
            deadline_passed: statuses.iter().all(|s| s.deadline_passed),
            stuck: statuses.iter().find_map(|s| s.stuck.clone()),
        }
    }
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

    /// Makes master `number`, serving at `address` (as the other masters reach it), a voter of
    /// the masters' group, asking the leader among `urls` (comma-separated); a voter already is
    /// nothing to do.
    fn join_master<'a>(
        &'a self,
        urls: &'a str,
        number: u64,
        address: &'a str,
    ) -> BoxFuture<'a, Result<(), ClusterApiError>>;

    /// Removes master `number` from the masters' group, asking the leader among `urls`; a
    /// master the group does not hold is nothing to do.
    fn leave_master<'a>(&'a self, urls: &'a str, number: u64) -> BoxFuture<'a, Result<(), ClusterApiError>>;

    /// Removes every agent registered with `hostname` from the cluster (the host is being
    /// removed): the master revokes its certificates and forgets it, so `gantry node list` no
    /// longer shows it. Answers the ids removed.
    fn revoke_agent<'a>(
        &'a self,
        url: &'a str,
        hostname: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, ClusterApiError>>;

    /// Drains every agent registered with `hostname`, with `deadline` from now (asking again
    /// moves the deadline); `None` when no agent has that hostname.
    fn drain_agent<'a>(
        &'a self,
        url: &'a str,
        hostname: &'a str,
        deadline: Duration,
    ) -> BoxFuture<'a, Result<Option<DrainView>, ClusterApiError>>;

    /// How the drains of the agents registered with `hostname` stand; `None` when none of them
    /// drains any more (removed, or the drain was cancelled).
    fn drain_progress<'a>(
        &'a self,
        url: &'a str,
        hostname: &'a str,
    ) -> BoxFuture<'a, Result<Option<DrainView>, ClusterApiError>>;
}

/// The real API over HTTPS, with the cluster's admin credentials. One client per master URL is
/// kept, so polls reuse their TLS connection instead of a handshake each.
#[derive(Debug, Default, Clone)]
pub struct HttpClusterApi {
    credentials: gantry_api::Credentials,
    route: Option<gantry_api::masters::Route>,
    clients: std::sync::Arc<Mutex<BTreeMap<String, gantry_api::Client>>>,
}

impl HttpClusterApi {
    /// The API with `credentials`.
    pub fn new(credentials: gantry_api::Credentials) -> Self {
        Self { credentials, route: None, clients: Default::default() }
    }

    /// The API reaching the masters along `route` (through a bastion).
    pub fn routed(mut self, route: gantry_api::masters::Route) -> Self {
        self.route = Some(route);
        self
    }

    fn client(&self, url: &str) -> Result<gantry_api::Client, ClusterApiError> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(url) {
            return Ok(client.clone());
        }
        let mut client = gantry_api::Client::with_credentials(url, &self.credentials).map_err(failed(url))?;
        if let Some(route) = &self.route {
            client = client.routed(route.clone());
        }
        clients.insert(url.to_string(), client.clone());
        Ok(client)
    }
}

/// A client error of the master at `url`.
fn failed(url: &str) -> impl Fn(gantry_api::ClientError) -> ClusterApiError + '_ {
    move |e| ClusterApiError { url: url.to_string(), message: e.to_string() }
}

impl HttpClusterApi {
    /// The client of `url` and the agents registered there with `hostname`.
    async fn agents_named(
        &self,
        url: &str,
        hostname: &str,
    ) -> Result<(gantry_api::Client, Vec<gantry_api::Agent>), ClusterApiError> {
        let client = self.client(url)?;
        let agents = client.list_agents().await.map_err(failed(url))?;
        Ok((client, agents.into_iter().filter(|a| a.info.hostname == hostname).collect()))
    }
}

impl ClusterApi for HttpClusterApi {
    fn join_master<'a>(
        &'a self,
        urls: &'a str,
        number: u64,
        address: &'a str,
    ) -> BoxFuture<'a, Result<(), ClusterApiError>> {
        Box::pin(async move { self.client(urls)?.add_master(number, address).await.map(|_| ()).map_err(failed(urls)) })
    }

    fn leave_master<'a>(&'a self, urls: &'a str, number: u64) -> BoxFuture<'a, Result<(), ClusterApiError>> {
        Box::pin(async move { self.client(urls)?.remove_master(number).await.map(|_| ()).map_err(failed(urls)) })
    }

    fn health<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<(), ClusterApiError>> {
        Box::pin(async move {
            let health = self.client(url)?.health().await.map_err(failed(url))?;
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
            let (_, agents) = self.agents_named(url, hostname).await?;
            Ok(agents
                .into_iter()
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
            let (client, agents) = self.agents_named(url, hostname).await?;
            let mut revoked = Vec::new();
            for agent in agents {
                client.revoke_agent(&agent.info.id).await.map_err(failed(url))?;
                revoked.push(agent.info.id);
            }
            Ok(revoked)
        })
    }

    fn drain_agent<'a>(
        &'a self,
        url: &'a str,
        hostname: &'a str,
        deadline: Duration,
    ) -> BoxFuture<'a, Result<Option<DrainView>, ClusterApiError>> {
        Box::pin(async move {
            let (client, agents) = self.agents_named(url, hostname).await?;
            let request = gantry_api::DrainRequest { deadline: deadline.as_secs_f64() };
            let mut statuses = Vec::new();
            for agent in agents {
                statuses.push(client.drain_agent(&agent.info.id, &request).await.map_err(failed(url))?);
            }
            Ok((!statuses.is_empty()).then(|| DrainView::of(&statuses)))
        })
    }

    fn drain_progress<'a>(
        &'a self,
        url: &'a str,
        hostname: &'a str,
    ) -> BoxFuture<'a, Result<Option<DrainView>, ClusterApiError>> {
        Box::pin(async move {
            let (client, agents) = self.agents_named(url, hostname).await?;
            let mut statuses = Vec::new();
            for agent in agents.into_iter().filter(|a| a.drain.is_some()) {
                match client.agent_drain(&agent.info.id).await {
                    Ok(status) => statuses.push(status),
                    Err(e) if gantry_api::client::is_not_found(&e) => {}
                    Err(e) => return Err(failed(url)(e)),
                }
            }
            Ok((!statuses.is_empty()).then(|| DrainView::of(&statuses)))
        })
    }
}

/// A cluster API for tests: the master is healthy, and every agent is ACTIVE with no tasks unless
/// a test sets its view; a drain ends at once unless a test scripts it.
#[derive(Debug, Default)]
pub struct FakeClusterApi {
    agents: Mutex<BTreeMap<String, Option<AgentView>>>,
    /// Changes of the masters' group asked for: `+N address` or `-N`, with the URLs asked.
    group_changes: Mutex<Vec<(String, String)>>,
    revoked: Mutex<Vec<String>>,
    drains: Mutex<FakeDrains>,
}

/// What the fake answers about drains, and what it was asked.
#[derive(Debug, Default)]
struct FakeDrains {
    /// Per hostname: the views to answer, in order (the last one repeats).
    scripts: BTreeMap<String, Vec<DrainView>>,
    /// Drains asked for: hostname, deadline.
    asked: Vec<(String, Duration)>,
    /// Progress polls per hostname.
    polls: BTreeMap<String, usize>,
    /// Set: every drain request fails with this message.
    fail_drains: Option<String>,
    /// Set: every progress poll fails with this message.
    fail_polls: Option<String>,
}

impl FakeClusterApi {
    /// A fake cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// The changes of the masters' group asked for, in order: (`+N address` or `-N`, URLs).
    pub fn group_changes(&self) -> Vec<(String, String)> {
        self.group_changes.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The hostnames whose agents were revoked, in order.
    pub fn revoked(&self) -> Vec<String> {
        self.revoked.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The drains asked for, in order: hostname and deadline.
    pub fn drained(&self) -> Vec<(String, Duration)> {
        self.drains.lock().unwrap_or_else(PoisonError::into_inner).asked.clone()
    }

    /// How many times the drain of `hostname` was polled.
    pub fn drain_polls(&self, hostname: &str) -> usize {
        self.drains.lock().unwrap_or_else(PoisonError::into_inner).polls.get(hostname).copied().unwrap_or(0)
    }

    /// What the drain of `hostname` answers: the first view to the drain request, the next ones
    /// to successive polls (the last one repeats).
    pub fn script_drain(&self, hostname: &str, views: Vec<DrainView>) {
        self.drains.lock().unwrap_or_else(PoisonError::into_inner).scripts.insert(hostname.to_string(), views);
    }

    /// Every drain request fails with `message` from now on.
    pub fn fail_drains(&self, message: &str) {
        self.drains.lock().unwrap_or_else(PoisonError::into_inner).fail_drains = Some(message.to_string());
    }

    /// Every drain progress poll fails with `message` from now on.
    pub fn fail_drain_polls(&self, message: &str) {
        self.drains.lock().unwrap_or_else(PoisonError::into_inner).fail_polls = Some(message.to_string());
    }

    /// The `index`th scripted view of `hostname`'s drain, or an empty drain; `None` when
    /// `hostname` is not registered.
    fn drain_view(&self, hostname: &str, index: usize) -> Option<DrainView> {
        let registered = self.agents.lock().unwrap_or_else(PoisonError::into_inner).get(hostname).copied();
        if registered == Some(None) {
            return None;
        }
        let drains = self.drains.lock().unwrap_or_else(PoisonError::into_inner);
        let scripted = drains.scripts.get(hostname).and_then(|views| views.get(index).or_else(|| views.last()));
        Some(scripted.cloned().unwrap_or_else(|| DrainView {
            agent_ids: vec![format!("id-of-{hostname}")],
            tasks_left: 0,
            deadline_passed: false,
            stuck: None,
        }))
    }

    /// How the master sees `hostname` from now on (`None`: not registered).
    pub fn set_agent(&self, hostname: &str, view: Option<AgentView>) {
        self.agents.lock().unwrap_or_else(PoisonError::into_inner).insert(hostname.to_string(), view);
    }
}

impl ClusterApi for FakeClusterApi {
    fn join_master<'a>(
        &'a self,
        urls: &'a str,
        number: u64,
        address: &'a str,
    ) -> BoxFuture<'a, Result<(), ClusterApiError>> {
        let change = (format!("+{number} {address}"), urls.to_string());
        Box::pin(async move {
            self.group_changes.lock().unwrap_or_else(PoisonError::into_inner).push(change);
            Ok(())
        })
    }

    fn leave_master<'a>(&'a self, urls: &'a str, number: u64) -> BoxFuture<'a, Result<(), ClusterApiError>> {
        let change = (format!("-{number}"), urls.to_string());
        Box::pin(async move {
            self.group_changes.lock().unwrap_or_else(PoisonError::into_inner).push(change);
            Ok(())
        })
    }

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

    fn drain_agent<'a>(
        &'a self,
        url: &'a str,
        hostname: &'a str,
        deadline: Duration,
    ) -> BoxFuture<'a, Result<Option<DrainView>, ClusterApiError>> {
        Box::pin(async move {
            {
                let mut drains = self.drains.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(message) = &drains.fail_drains {
                    return Err(ClusterApiError { url: url.to_string(), message: message.clone() });
                }
                drains.asked.push((hostname.to_string(), deadline));
            }
            Ok(self.drain_view(hostname, 0))
        })
    }

    fn drain_progress<'a>(
        &'a self,
        url: &'a str,
        hostname: &'a str,
    ) -> BoxFuture<'a, Result<Option<DrainView>, ClusterApiError>> {
        Box::pin(async move {
            let polls = {
                let mut drains = self.drains.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(message) = &drains.fail_polls {
                    return Err(ClusterApiError { url: url.to_string(), message: message.clone() });
                }
                let polls = drains.polls.entry(hostname.to_string()).or_default();
                *polls += 1;
                *polls
            };
            Ok(self.drain_view(hostname, polls))
        })
    }
}
