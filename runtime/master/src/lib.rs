//! The gantry master: holds cluster state in a crash-safe store, offers agents' free resources
//! to frameworks (DRF), runs the built-in `services` framework, and serves the HTTP API v1 and
//! the agent protocol (see `gantry_api::protocol`).
//!
//! It never depends on how hosts were provisioned.
//!
//! Layout: [`store`] (durable records), [`state`] (in-memory indexes), [`master`] (the shared
//! core and its one commit path), [`agent_protocol`] and [`links`] (agents), [`allocator`]
//! (offers, DRF, the [`Framework`] contract), [`services`] (the built-in framework of apps),
//! [`jobs`] (the built-in framework of jobs and cron), [`drain`] (drains and removals of agents),
//! [`api`] (HTTP). Entry points: [`start`] → [`MasterHandle`], [`run`], and [`router`] over a
//! core made by [`build`] for tests without a socket.

pub mod agent_protocol;
pub mod allocator;
pub mod api;
pub mod drain;
pub mod jobs;
pub mod leadership;
pub mod links;
pub mod master;
pub mod pipeline;
pub mod raft;
pub mod security;
pub mod services;
pub mod snapshot;
pub mod state;
pub mod store;

pub use allocator::{Accept, ClusterView, Framework, Kill, Offer};
pub use api::router;
pub use master::Master;
pub use store::{MemStore, RedbStore, Store, StoreError};

use crate::state::ClusterState;
use crate::store::StoreOp;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Settings of one master.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Address to serve the API and the agent protocol on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Directory of the state store; created if missing.
    pub data_dir: PathBuf,
    /// How often agents heartbeat (and the master pings the command streams).
    pub heartbeat_interval: Duration,
    /// An agent silent this long is marked unreachable and its tasks are replaced.
    pub agent_unreachable_timeout: Duration,
    /// Extra names (DNS names or IP addresses) the master's certificate is issued for, besides
    /// `localhost`, 127.0.0.1, ::1, the host name and the listen address.
    pub tls_names: Vec<String>,
    /// This master's number in its Raft group (1 for a master alone).
    pub node_id: u64,
    /// The other masters of the group, by number: the address each serves on (`host:port`).
    /// Empty: a master alone.
    pub peers: BTreeMap<u64, String>,
}

impl MasterConfig {
    /// Defaults for everything but the address and the data dir.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            data_dir,
            heartbeat_interval: Duration::from_secs(1),
            agent_unreachable_timeout: Duration::from_secs(3),
            tls_names: Vec::new(),
            node_id: 1,
            peers: BTreeMap::new(),
        }
    }
}

/// Why the master could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// The state store could not be opened, read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The trust material (CA, tokens, secrets key) could not be loaded or made.
    #[error(transparent)]
    Security(#[from] security::SecurityError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
    /// A signal handler could not be installed.
    #[error("cannot install a signal handler: {0}")]
    Signal(std::io::Error),
    /// A background task panicked.
    #[error("a master task panicked: {0}")]
    Panicked(String),
}

/// The meta key of the master id.
const MASTER_ID_KEY: &str = "master-id";

/// A running master.
#[derive(Debug)]
pub struct MasterHandle {
    local_addr: SocketAddr,
    data_dir: PathBuf,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<Result<(), std::io::Error>>,
    loops: Vec<JoinHandle<()>>,
    /// The store, to know when the last task holding it has let go (and its files are closed).
    store: std::sync::Weak<raft::store::RaftStore>,
    leadership: Arc<leadership::Leadership>,
}

impl MasterHandle {
    /// The address the API and the agent protocol are served on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The data dir (store and trust material).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// How this master takes part in its group: the core of the term it leads, if any.
    pub fn leadership(&self) -> &Arc<leadership::Leadership> {
        &self.leadership
    }

    /// Stops serving and the background loops; the store is closed when this returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.stop().await;
    }

    /// Waits until the server stops (after [`MasterHandle::shutdown`] from elsewhere, or on a
    /// server error).
    pub async fn wait(mut self) -> Result<(), MasterError> {
        let result = (&mut self.server).await;
        let _ = self.shutdown.send(true);
        for handle in self.loops.drain(..) {
            let _ = handle.await;
        }
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(MasterError::Serve(e)),
            Err(e) => Err(MasterError::Panicked(e.to_string())),
        }
    }

    async fn stop(self) -> Result<(), MasterError> {
        let mut server = self.server;
        let result = match tokio::time::timeout(Duration::from_secs(5), &mut server).await {
            Ok(joined) => joined,
            Err(_) => {
                warn!("The HTTP server did not stop within 5 s; aborting open connections.");
                server.abort();
                server.await
            }
        };
        for handle in self.loops {
            let _ = handle.await;
        }
        // Connection tasks of the server (a command stream being torn down) may still hold the
        // core for a moment; the store closes when the last of them drops it.
        drop(self.leadership);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.store.strong_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if self.store.strong_count() > 0 {
            warn!("The master's state is still held 5 s after shutdown; its store stays open until released.");
        }
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(MasterError::Serve(e)),
            Err(e) if e.is_cancelled() => Ok(()),
            Err(e) => Err(MasterError::Panicked(e.to_string())),
        }
    }
}

/// Builds the shared core over `store`: loads the state and the master id (creating it), and
/// the trust material of the data dir (creating what is missing).
pub fn build(
    config: MasterConfig,
    store: Arc<dyn Store>,
    shutdown: watch::Receiver<bool>,
) -> Result<Arc<Master>, MasterError> {
    let trust = Arc::new(security::Trust::open(
        &config.data_dir,
        &config.node_id.to_string(),
        server_names(&config),
        security::NewCa::Allowed,
    )?);
    build_on(config, store, trust, shutdown)
}

/// Builds the core of a term over `store` with the process's `trust`: loads the state and the
/// cluster's id (creating it on the first term ever).
pub fn build_on(
    config: MasterConfig,
    store: Arc<dyn Store>,
    trust: Arc<security::Trust>,
    shutdown: watch::Receiver<bool>,
) -> Result<Arc<Master>, MasterError> {
    let snapshot = store.load()?;
    let master_id = match snapshot.meta.get(MASTER_ID_KEY) {
        Some(id) => id.clone(),
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            store.write(&[StoreOp::PutMeta(MASTER_ID_KEY.to_string(), id.clone())])?;
            id
        }
    };
    let security = security::Security::with_trust(trust, &snapshot.meta, store.clone())?;
    let state = ClusterState::from_snapshot(snapshot);
    info!(%master_id, apps = state.apps().count(), tasks = state.task_count(), agents = state.agents().count(), "State loaded.");
    Ok(Arc::new(Master::new(config, master_id, store, state, shutdown, Arc::new(security))))
}

/// Starts the loops of a leading master's core: the allocator over `frameworks`, housekeeping
/// and the services driver; each ends with the core's shutdown signal.
pub fn start_loops(master: &Arc<Master>, frameworks: Vec<Box<dyn Framework>>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(allocator::run(master.clone(), frameworks)),
        tokio::spawn(housekeeping(master.clone())),
        tokio::spawn(services::driver::run(master.clone())),
    ]
}

/// The built-in frameworks, made afresh for each term.
fn builtin_frameworks() -> Vec<Box<dyn Framework>> {
    vec![Box::new(services::ServicesFramework::new()), Box::new(jobs::JobsFramework::new())]
}

/// What the master's certificate names: loopback, the host name, the listen address (when it is
/// not a wildcard) and the configured extra names.
fn server_names(config: &MasterConfig) -> security::ServerNames {
    let mut names = security::ServerNames {
        dns: vec!["localhost".to_string()],
        ips: vec![std::net::Ipv4Addr::LOCALHOST.into(), std::net::Ipv6Addr::LOCALHOST.into()],
    };
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            names.dns.push(host.to_string());
        }
    }
    if !config.listen.ip().is_unspecified() && !names.ips.contains(&config.listen.ip()) {
        names.ips.push(config.listen.ip());
    }
    for name in &config.tls_names {
        match name.parse::<std::net::IpAddr>() {
            Ok(ip) if !names.ips.contains(&ip) => names.ips.push(ip),
            Ok(_) => {}
            Err(_) if !names.dns.contains(name) => names.dns.push(name.clone()),
            Err(_) => {}
        }
    }
    names
}

/// Binds the listener, opens the store (joining the group of `config.peers`, or a group of
/// one), and spawns the HTTP server and the leadership loop: the master serves the cluster in
/// every term it leads (see [`leadership`]). A master alone leads before this returns.
pub async fn start(config: MasterConfig) -> Result<MasterHandle, MasterError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| MasterError::Bind { addr: config.listen, source })?;
    let local_addr = listener.local_addr().map_err(|source| MasterError::Bind { addr: config.listen, source })?;
    let alone = config.peers.is_empty();
    if !alone && local_addr.ip().is_unspecified() {
        return Err(MasterError::Bind {
            addr: local_addr,
            source: std::io::Error::other(
                "a master with peers must listen on the address its peers reach it by, not on a wildcard",
            ),
        });
    }
    // Its address in the group is the one it serves on.
    let mut members = config.peers.clone();
    members.insert(config.node_id, local_addr.to_string());
    let first = members.keys().next().copied() == Some(config.node_id);
    let new_ca = if alone || first { security::NewCa::Allowed } else { security::NewCa::Refused };
    let trust =
        Arc::new(security::Trust::open(&config.data_dir, &config.node_id.to_string(), server_names(&config), new_ca)?);
    let data_dir = config.data_dir.clone();
    let (node, tls) = (config.node_id, trust.client_tls());
    let store = Arc::new(
        tokio::task::spawn_blocking(move || {
            if alone {
                raft::store::RaftStore::open_first(&data_dir, node, &members[&node], tls)
            } else {
                raft::store::RaftStore::open_group(&data_dir, node, tls, &members)
            }
        })
        .await
        .map_err(|e| StoreError::Replication(format!("the store's start failed: {e}")))??,
    );
    let (shutdown, shutdown_rx) = watch::channel(false);
    let leadership = leadership::Leadership::new(store.clone(), trust.clone(), config.clone());
    let listener = gantry_trust::listener::TlsListener::new(listener, trust.server_tls())
        .map_err(|source| MasterError::Bind { addr: config.listen, source })?;
    let app =
        leadership::router(leadership.clone()).into_make_service_with_connect_info::<gantry_trust::listener::Peer>();
    let mut server_shutdown = shutdown_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_shutdown.wait_for(|stop| *stop).await;
            })
            .await
    });
    let mut leading = leadership.leading();
    let loops = vec![
        tokio::spawn(leadership::run(leadership.clone(), builtin_frameworks, shutdown_rx.clone())),
        tokio::spawn(renewals(trust, shutdown_rx)),
    ];
    if alone {
        // A master alone leads at once (its store waited for that): serve as before, ready.
        let _ = tokio::time::timeout(Duration::from_secs(10), leading.wait_for(|term| *term > 0)).await;
    }
    info!(%local_addr, node = config.node_id, peers = config.peers.len(), data_dir = %config.data_dir.display(), "Master serving.");
    Ok(MasterHandle {
        local_addr,
        data_dir: config.data_dir.clone(),
        shutdown,
        server,
        loops,
        store: Arc::downgrade(&store),
        leadership,
    })
}

/// Renews the master's certificate when it is due (checked hourly), whether it leads or not.
async fn renewals(trust: Arc<security::Trust>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let now = i64::try_from(gantry_api::now_millis() / 1000).unwrap_or(i64::MAX);
        if let Err(error) = trust.renew_if_due(now) {
            warn!(%error, "Could not renew the master's certificate; retrying in an hour.");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// Unreachable detection, drain deadlines, command-stream pings and pruning of finished tasks,
/// until shutdown.
async fn housekeeping(master: Arc<Master>) {
    let mut shutdown = master.shutdown_signal();
    let heartbeat = master.config.heartbeat_interval.max(Duration::from_millis(10));
    let tick = (master.config.agent_unreachable_timeout / 4).clamp(Duration::from_millis(10), heartbeat);
    let mut last_ping = tokio::time::Instant::now();
    let mut last_prune = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => return,
        }
        agent_protocol::mark_unreachable(&master);
        agent_protocol::enforce_drain_deadlines(&master);
        if last_ping.elapsed() >= heartbeat {
            master.links().ping_all();
            last_ping = tokio::time::Instant::now();
        }
        if last_prune.elapsed() >= Duration::from_secs(10) {
            agent_protocol::prune_tasks(&master);
            last_prune = tokio::time::Instant::now();
        }
    }
}

/// Starts the master and serves until SIGINT or SIGTERM, then shuts down cleanly.
pub async fn run(config: MasterConfig) -> Result<(), MasterError> {
    use tokio::signal::unix::{SignalKind, signal};
    let handle = start(config).await?;
    let mut terminate = signal(SignalKind::terminate()).map_err(MasterError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(MasterError::Signal)?;
    tokio::select! {
        _ = terminate.recv() => info!("SIGTERM received; stopping."),
        _ = interrupt.recv() => info!("SIGINT received; stopping."),
    }
    let _ = handle.shutdown.send(true);
    handle.stop().await
}
