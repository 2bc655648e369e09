//! Simulated agents: many in this process, each a few tokio tasks, speaking the real agent
//! protocol (`gantry_api::protocol`) to a real master: register with resources and attributes,
//! keep the NDJSON command stream open, heartbeat at the interval the master asks for, answer
//! `launch` with a RUNNING status update and `kill` with KILLED, each retried until the master
//! acknowledges it (2xx). They launch nothing.
//!
//! Each agent proves who it is as a real one does: a client certificate for `agent:<id>` from
//! the cluster CA (issued here, in place of the join exchange), so each has its own HTTP client.
//! It is made when the agent starts and keeps at most one idle connection besides the command
//! stream, as a real agent has; an agent's registrations and status updates go one at a time,
//! so a burst of launches reuses that connection instead of opening one per update.
//!
//! Requests other than the command streams are bounded (`max_in_flight` status updates and
//! registrations, as many heartbeats) so that 10,000 agents do not open 10,000 more connections
//! at once; heartbeats have their own bound so that a backlog of status updates never delays
//! them into an unreachable verdict.

use futures_util::StreamExt;
use gantry_api::AgentInfo;
use gantry_api::TaskState;
use gantry_api::protocol::{AgentCommand, Heartbeat, PREFIX, RegisterAgent, Registered, StatusUpdate};
use gantry_trust::{Ca, Identity};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Counters of a fleet, shared with its agents.
#[derive(Debug, Default)]
pub struct FleetCounters {
    /// Agents whose command stream is open.
    pub connected: AtomicUsize,
    /// Launch commands received.
    pub launched: AtomicUsize,
    /// RUNNING updates acknowledged by the master.
    pub running: AtomicUsize,
    /// KILLED updates acknowledged.
    pub killed: AtomicUsize,
    /// Requests that failed or were refused (then retried).
    pub errors: AtomicUsize,
    /// Agents that could not get a certificate or an HTTP client (they stop).
    pub failed: AtomicUsize,
}

/// A set of simulated agents; dropping it stops them.
#[derive(Debug)]
pub struct Fleet {
    /// What the agents did so far.
    pub counters: Arc<FleetCounters>,
    tasks: JoinSet<()>,
}

impl Fleet {
    /// Starts one simulated agent per `infos` entry against the master at `master` (an
    /// `https://` base URL) whose cluster CA is `ca`.
    pub fn start(master: &str, ca: Ca, infos: Vec<AgentInfo>, max_in_flight: usize) -> Self {
        let shared = Arc::new(Shared {
            master: master.trim_end_matches('/').to_string(),
            ca,
            permits: Semaphore::new(max_in_flight),
            heartbeat_permits: Semaphore::new(max_in_flight),
            counters: Arc::new(FleetCounters::default()),
        });
        let mut tasks = JoinSet::new();
        for info in infos {
            tasks.spawn(run_agent(shared.clone(), info));
        }
        Self { counters: shared.counters.clone(), tasks }
    }

    /// Stops every agent (their connections close).
    pub fn stop(&mut self) {
        self.tasks.abort_all();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug)]
struct Shared {
    master: String,
    ca: Ca,
    permits: Semaphore,
    heartbeat_permits: Semaphore,
    counters: Arc<FleetCounters>,
}

impl Shared {
    fn url(&self, path: &str) -> String {
        format!("{}{PREFIX}/{path}", self.master)
    }

    /// An HTTP client presenting a new certificate for agent `id`.
    fn agent_client(&self, id: &str) -> anyhow::Result<reqwest::Client> {
        let cert = self.ca.issue(
            &Identity::Agent(id.to_string()),
            &[gantry_trust::pki::agent_dns_name(id)],
            &[],
            gantry_trust::pki::LEAF_LIFETIME,
        )?;
        let tls = gantry_trust::tls::client_config(self.ca.cert_pem(), Some((&cert.cert_pem, &cert.key_pem)))?;
        Ok(reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1)
            .connect_timeout(Duration::from_secs(10))
            .build()?)
    }
}

/// One simulated agent's link to the master.
#[derive(Debug)]
struct Link {
    shared: Arc<Shared>,
    client: reqwest::Client,
    /// One registration or status update at a time (heartbeats do not wait for it).
    updates: Semaphore,
}

impl Link {
    /// A registration or status update: after the agent's earlier ones, retried until acknowledged.
    async fn update<T: serde::Serialize>(&self, path: &str, body: &T) -> Option<Vec<u8>> {
        let _turn = self.updates.acquire().await.ok()?;
        self.post(path, body, usize::MAX, &self.shared.permits).await
    }

    /// Posts `body` until a 2xx answer (at most `tries` times); returns the answer's body.
    async fn post<T: serde::Serialize>(
        &self,
        path: &str,
        body: &T,
        tries: usize,
        permits: &Semaphore,
    ) -> Option<Vec<u8>> {
        let url = self.shared.url(path);
        let mut delay = Duration::from_millis(50);
        for _ in 0..tries {
            let result = {
                let _permit = permits.acquire().await.ok()?;
                match self.client.post(&url).json(body).timeout(Duration::from_secs(30)).send().await {
                    Ok(response) if response.status().is_success() => response.bytes().await.ok(),
                    Ok(_) | Err(_) => None,
                }
            };
            if let Some(bytes) = result {
                return Some(bytes.to_vec());
            }
            self.shared.counters.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        None
    }
}

async fn run_agent(shared: Arc<Shared>, info: AgentInfo) {
    let id = info.id.clone();
    let client = match shared.agent_client(&id) {
        Ok(client) => client,
        Err(e) => {
            if shared.counters.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("  .. simulated agent {id} has no client: {e:#}");
            }
            return;
        }
    };
    let link = Arc::new(Link { shared, client, updates: Semaphore::new(1) });
    loop {
        let register = RegisterAgent { info: info.clone(), tasks: Vec::new() };
        let Some(body) = link.update("register", &register).await else { return };
        let heartbeat_ms = serde_json::from_slice::<Registered>(&body).map_or(1000, |r| r.heartbeat_interval_ms);
        let heartbeats = tokio::spawn(heartbeat(link.clone(), id.clone(), Duration::from_millis(heartbeat_ms.max(10))));
        follow_commands(&link, &id).await;
        heartbeats.abort();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn heartbeat(link: Arc<Link>, id: String, interval: Duration) {
    // Spread the fleet's heartbeats over the interval.
    let offset = id.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let millis = u64::try_from(interval.as_millis()).unwrap_or(1000).max(1);
    tokio::time::sleep(Duration::from_millis(offset % millis)).await;
    loop {
        let _ = link
            .post(
                &format!("{id}/heartbeat"),
                &Heartbeat { timestamp: gantry_api::now_millis() },
                1,
                &link.shared.heartbeat_permits,
            )
            .await;
        tokio::time::sleep(interval).await;
    }
}

async fn follow_commands(link: &Arc<Link>, id: &str) {
    let Ok(response) = link.client.get(link.shared.url(&format!("{id}/commands"))).send().await else { return };
    if !response.status().is_success() {
        return;
    }
    let counters = &link.shared.counters;
    counters.connected.fetch_add(1, Ordering::Relaxed);
    let mut stream = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(Ok(bytes)) = stream.next().await {
        buffer.extend_from_slice(&bytes);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            match serde_json::from_slice::<AgentCommand>(line.trim_ascii()) {
                Ok(AgentCommand::Launch(launch)) => {
                    counters.launched.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(report(link.clone(), id.to_string(), launch.task_id, TaskState::Running));
                }
                Ok(AgentCommand::Kill { task_id, .. }) => {
                    tokio::spawn(report(link.clone(), id.to_string(), task_id, TaskState::Killed));
                }
                Ok(AgentCommand::Ping) | Err(_) => {}
            }
        }
    }
    counters.connected.fetch_sub(1, Ordering::Relaxed);
}

async fn report(link: Arc<Link>, agent_id: String, task_id: String, state: TaskState) {
    let update = StatusUpdate {
        uuid: format!("{task_id}-{state:?}"),
        task_id,
        state,
        healthy: None,
        exit_code: None,
        message: None,
        timestamp: gantry_api::now_millis(),
        limits: Vec::new(),
    };
    if link.update(&format!("{agent_id}/status"), &update).await.is_some() {
        let counters = &link.shared.counters;
        let counter = if state == TaskState::Running { &counters.running } else { &counters.killed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
