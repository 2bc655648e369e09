//! Simulated agents: many in this process, each a few tokio tasks, speaking the real agent
//! protocol (`gantry_api::protocol`) to a real master: register with resources and attributes,
//! keep the NDJSON command stream open, heartbeat at the interval the master asks for, answer
//! `launch` with a RUNNING status update and `kill` with KILLED, each retried until the master
//! acknowledges it (2xx). They launch nothing.
//!
//! Requests other than the command streams are bounded (`max_in_flight` status updates and
//! registrations, as many heartbeats) so that 10,000 agents do not open 10,000 more connections
//! at once; heartbeats have their own bound so that a backlog of status updates never delays
//! them into an unreachable verdict.

use futures_util::StreamExt;
use gantry_api::AgentInfo;
use gantry_api::TaskState;
use gantry_api::protocol::{AgentCommand, Heartbeat, PREFIX, RegisterAgent, Registered, StatusUpdate};
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
}

/// A set of simulated agents; dropping it stops them.
#[derive(Debug)]
pub struct Fleet {
    /// What the agents did so far.
    pub counters: Arc<FleetCounters>,
    tasks: JoinSet<()>,
}

impl Fleet {
    /// Starts one simulated agent per `infos` entry against the master at `master` (base URL).
    pub fn start(master: &str, infos: Vec<AgentInfo>, max_in_flight: usize) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder().tcp_nodelay(true).pool_max_idle_per_host(max_in_flight).build()?;
        let shared = Arc::new(Shared {
            master: master.trim_end_matches('/').to_string(),
            client,
            permits: Semaphore::new(max_in_flight),
            heartbeat_permits: Semaphore::new(max_in_flight),
            counters: Arc::new(FleetCounters::default()),
        });
        let mut tasks = JoinSet::new();
        for info in infos {
            tasks.spawn(run_agent(shared.clone(), info));
        }
        Ok(Self { counters: shared.counters.clone(), tasks })
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
    client: reqwest::Client,
    permits: Semaphore,
    heartbeat_permits: Semaphore,
    counters: Arc<FleetCounters>,
}

impl Shared {
    fn url(&self, path: &str) -> String {
        format!("{}{PREFIX}/{path}", self.master)
    }

    /// Posts `body` until a 2xx answer (at most `tries` times); returns the answer's body.
    async fn post<T: serde::Serialize>(
        &self,
        path: &str,
        body: &T,
        tries: usize,
        permits: &Semaphore,
    ) -> Option<Vec<u8>> {
        let url = self.url(path);
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
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        None
    }
}

async fn run_agent(shared: Arc<Shared>, info: AgentInfo) {
    let id = info.id.clone();
    loop {
        let register = RegisterAgent { info: info.clone(), tasks: Vec::new() };
        let Some(body) = shared.post("register", &register, usize::MAX, &shared.permits).await else { return };
        let heartbeat_ms = serde_json::from_slice::<Registered>(&body).map_or(1000, |r| r.heartbeat_interval_ms);
        let heartbeats =
            tokio::spawn(heartbeat(shared.clone(), id.clone(), Duration::from_millis(heartbeat_ms.max(10))));
        follow_commands(&shared, &id).await;
        heartbeats.abort();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn heartbeat(shared: Arc<Shared>, id: String, interval: Duration) {
    // Spread the fleet's heartbeats over the interval.
    let offset = id.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let millis = u64::try_from(interval.as_millis()).unwrap_or(1000).max(1);
    tokio::time::sleep(Duration::from_millis(offset % millis)).await;
    loop {
        let _ = shared
            .post(
                &format!("{id}/heartbeat"),
                &Heartbeat { timestamp: gantry_api::now_millis() },
                1,
                &shared.heartbeat_permits,
            )
            .await;
        tokio::time::sleep(interval).await;
    }
}

async fn follow_commands(shared: &Arc<Shared>, id: &str) {
    let Ok(response) = shared.client.get(shared.url(&format!("{id}/commands"))).send().await else { return };
    if !response.status().is_success() {
        return;
    }
    shared.counters.connected.fetch_add(1, Ordering::Relaxed);
    let mut stream = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(Ok(bytes)) = stream.next().await {
        buffer.extend_from_slice(&bytes);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            match serde_json::from_slice::<AgentCommand>(line.trim_ascii()) {
                Ok(AgentCommand::Launch(launch)) => {
                    shared.counters.launched.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(report(shared.clone(), id.to_string(), launch.task_id, TaskState::Running));
                }
                Ok(AgentCommand::Kill { task_id, .. }) => {
                    tokio::spawn(report(shared.clone(), id.to_string(), task_id, TaskState::Killed));
                }
                Ok(AgentCommand::Ping) | Err(_) => {}
            }
        }
    }
    shared.counters.connected.fetch_sub(1, Ordering::Relaxed);
}

async fn report(shared: Arc<Shared>, agent_id: String, task_id: String, state: TaskState) {
    let update = StatusUpdate {
        uuid: format!("{task_id}-{state:?}"),
        task_id,
        state,
        healthy: None,
        exit_code: None,
        message: None,
        timestamp: gantry_api::now_millis(),
    };
    if shared.post(&format!("{agent_id}/status"), &update, usize::MAX, &shared.permits).await.is_some() {
        let counter = if state == TaskState::Running { &shared.counters.running } else { &shared.counters.killed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
