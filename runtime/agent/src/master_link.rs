//! The agent's side of the master connection: registration, the command stream, heartbeats,
//! and the HTTP delivery of status updates.
//!
//! The link reconnects forever with backoff (100 ms → 2 s), re-registering before every new
//! command stream, when the stream ends, fails, or stays silent for three heartbeat intervals.
//! It hands commands to the [`Supervisor`] and never decides anything about tasks itself.

use crate::status::StatusSink;
use crate::tasks::Supervisor;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use gantry_api::AgentInfo;
use gantry_api::masters::Masters;
use gantry_api::protocol::{AgentCommand, Heartbeat, PREFIX, RegisterAgent, Registered, StatusUpdate};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Until the master says otherwise.
const DEFAULT_HEARTBEAT_MS: u64 = 1000;
/// Timeout of every request except the command stream.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A failed exchange with the master.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The request did not complete.
    #[error("request to {url} failed: {source}")]
    Http {
        /// The URL.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The master answered with an error status.
    #[error("{url} answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: reqwest::StatusCode,
    },
}

/// The connection to the master.
pub struct MasterLink {
    masters: Arc<Masters>,
    client: reqwest::Client,
    info: AgentInfo,
    supervisor: Arc<Supervisor>,
    heartbeat_ms: AtomicU64,
    registered: AtomicBool,
    reregister: Notify,
}

impl fmt::Debug for MasterLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterLink").field("masters", &self.masters.all()).field("agent_id", &self.info.id).finish()
    }
}

impl MasterLink {
    /// A link to `masters` for the agent described by `info`; `client` must not follow
    /// redirects (the link does, to the leader).
    pub fn new(
        masters: Arc<Masters>,
        client: reqwest::Client,
        info: AgentInfo,
        supervisor: Arc<Supervisor>,
    ) -> Arc<Self> {
        Arc::new(Self {
            masters,
            client,
            info,
            supervisor,
            heartbeat_ms: AtomicU64::new(DEFAULT_HEARTBEAT_MS),
            registered: AtomicBool::new(false),
            reregister: Notify::new(),
        })
    }

    /// Sends the request `build` makes for a protocol path's URL to the leader.
    async fn send(
        &self,
        path: &str,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, LinkError> {
        gantry_api::masters::send(&self.masters, |base| build(&format!("{base}{PREFIX}/{path}")))
            .await
            .map_err(|(base, source)| LinkError::Http { url: format!("{base}{PREFIX}/{path}"), source })
    }

    fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed).max(10))
    }

    /// Registers, follows the command stream and reconnects, forever.
    pub async fn run(self: Arc<Self>) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.register().await {
                Ok(registered) => {
                    self.heartbeat_ms.store(registered.heartbeat_interval_ms, Ordering::Relaxed);
                    self.registered.store(true, Ordering::Relaxed);
                    info!(agent_id = %self.info.id, heartbeat_interval_ms = registered.heartbeat_interval_ms, "Agent registered.");
                    self.supervisor.status().resend_now();
                    match self.follow_commands().await {
                        Ok(true) => backoff = FIRST_BACKOFF,
                        Ok(false) => {}
                        Err(error) => warn!(%error, "Command stream failed."),
                    }
                }
                Err(error) => warn!(%error, "Registration failed."),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Posts a heartbeat every interval; a 404 makes the link re-register.
    pub async fn heartbeats(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.heartbeat_interval()).await;
            if !self.registered.load(Ordering::Relaxed) {
                continue;
            }
            let path = format!("{}/heartbeat", self.info.id);
            let body = Heartbeat { timestamp: gantry_api::now_millis() };
            match self.send(&path, |url| self.client.post(url).json(&body).timeout(REQUEST_TIMEOUT)).await {
                Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => {
                    warn!(agent_id = %self.info.id, "The master does not know this agent; registering again.");
                    self.registered.store(false, Ordering::Relaxed);
                    self.reregister.notify_one();
                }
                Ok(response) if !response.status().is_success() => {
                    warn!(status = %response.status(), "Heartbeat refused.");
                }
                Ok(_) => {}
                Err(error) => warn!(%error, "Heartbeat failed."),
            }
        }
    }

    async fn register(&self) -> Result<Registered, LinkError> {
        let body = RegisterAgent { info: self.info.clone(), tasks: self.supervisor.reports() };
        let response = self.send("register", |url| self.client.post(url).json(&body).timeout(REQUEST_TIMEOUT)).await?;
        let url = response.url().to_string();
        if !response.status().is_success() {
            return Err(LinkError::Status { url, status: response.status() });
        }
        response.json().await.map_err(|source| LinkError::Http { url, source })
    }

    /// Follows the command stream until it ends; says whether anything arrived.
    async fn follow_commands(&self) -> Result<bool, LinkError> {
        let response = self.send(&format!("{}/commands", self.info.id), |url| self.client.get(url)).await?;
        let url = response.url().to_string();
        if !response.status().is_success() {
            return Err(LinkError::Status { url: url.clone(), status: response.status() });
        }
        let mut stream = response.bytes_stream();
        let mut buffer: Vec<u8> = Vec::new();
        let mut received = false;
        loop {
            let silence = self.heartbeat_interval() * 3;
            let next = tokio::select! {
                next = tokio::time::timeout(silence, stream.next()) => next,
                () = self.reregister.notified() => return Ok(received),
            };
            let bytes = match next {
                Err(_) => {
                    warn!(silence_ms = silence.as_millis() as u64, "No command or ping from the master; reconnecting.");
                    return Ok(received);
                }
                Ok(None) => {
                    info!("Command stream ended; reconnecting.");
                    return Ok(received);
                }
                Ok(Some(Err(source))) => return Err(LinkError::Http { url, source }),
                Ok(Some(Ok(bytes))) => bytes,
            };
            buffer.extend_from_slice(&bytes);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                received = true;
                match serde_json::from_slice::<AgentCommand>(line) {
                    Ok(command) => {
                        debug!(?command, "Command received.");
                        self.supervisor.handle(command);
                    }
                    Err(error) => warn!(%error, line = %String::from_utf8_lossy(line), "Unreadable command ignored."),
                }
            }
        }
    }
}

/// Posts status updates to the leading master's status endpoint.
#[derive(Debug)]
pub struct HttpStatusSink {
    client: reqwest::Client,
    masters: Arc<Masters>,
    path: String,
}

impl HttpStatusSink {
    /// A sink for agent `agent_id` of `masters`; `client` must not follow redirects.
    pub fn new(masters: Arc<Masters>, agent_id: &str, client: reqwest::Client) -> Self {
        Self { client, masters, path: format!("{PREFIX}/{agent_id}/status") }
    }
}

impl StatusSink for HttpStatusSink {
    fn post<'a>(&'a self, update: &'a StatusUpdate) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let response = gantry_api::masters::send(&self.masters, |base| {
                self.client.post(format!("{base}{}", self.path)).json(update).timeout(REQUEST_TIMEOUT)
            })
            .await
            .map_err(|(_, e)| e.to_string())?;
            if response.status().is_success() { Ok(()) } else { Err(format!("answered {}", response.status())) }
        })
    }
}
