//! The gantry agent: detects its host's resources, registers with the master, launches and
//! supervises tasks through per-task executors, runs health checks, and serves sandbox files.
//!
//! It never depends on how its host was provisioned.
//!
//! Entry points: [`start`] (in-process, returns an [`AgentHandle`]), [`run`] (the `gantry agent`
//! daemon) and [`executor::run_executor`] (the `gantry executor` process, one per task).

pub mod background;
pub mod cgroup;
pub mod container;
pub mod disk_usage;
pub mod env;
pub mod executor;
pub mod executors;
pub mod files;
pub mod gpu;
pub mod health;
pub mod images_api;
pub mod join;
pub mod master_link;
pub mod outcome;
pub mod process;
pub mod resources;
pub mod sandbox;
pub mod status;
pub mod tasks;
pub mod user;

use background::Background;
use gantry_api::{AgentInfo, Resources};
use master_link::{HttpStatusSink, MasterLink};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tasks::Supervisor;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::info;

/// Settings of one agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Base URL of the master, e.g. `https://127.0.0.1:5050`, or of every master, separated by
    /// commas: the agent talks to the leader, following followers' redirects.
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
    /// The cluster's join token; needed until the agent holds a valid certificate.
    pub join_token: Option<String>,
    /// The user tasks run as when their app or job names none; `None`: `nobody` when the agent
    /// runs as root, else the agent's own user.
    pub task_user: Option<String>,
    /// Limits every task gets besides its resources (pids), and how often disk use is checked.
    pub task_limits: cgroup::limits::LimitSettings,
    /// The image cache of container tasks.
    pub images: ImageSettings,
    /// Where the GPUs' device nodes are.
    pub gpus: gpu::GpuSettings,
    /// Remount the host's cgroup2 hierarchy with `favordynmods` at start, so that tasks join
    /// their cgroups without waiting for an RCU grace period (see [`cgroup::dynmods`]).
    pub cgroup_favordynmods: bool,
}

/// Where and how the agent keeps the images of container tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSettings {
    /// The cache directory; default: `<work_dir>/images`.
    pub dir: Option<PathBuf>,
    /// The cache size above which least recently used images not in use are removed.
    pub max_bytes: u64,
    /// Registries (`host[:port]`) spoken to over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// PEM files of CA certificates registries' HTTPS certificates may be issued by, besides the
    /// system's roots. A bad file makes the image store fail to open: the agent then refuses
    /// container tasks with the file's name and what is wrong with it.
    pub registry_ca_certs: Vec<PathBuf>,
}

impl Default for ImageSettings {
    fn default() -> Self {
        Self {
            dir: None,
            max_bytes: gantry_image::DEFAULT_MAX_BYTES,
            insecure_registries: Vec::new(),
            registry_ca_certs: Vec::new(),
        }
    }
}

/// The agent's executors: processes on the host, and containers from images cached under
/// `images` (refusing launches with the reason where this host cannot run containers).
pub fn executors(
    executor_path: &std::path::Path,
    work_dir: &std::path::Path,
    images: &ImageSettings,
) -> Vec<Arc<dyn executors::TaskExecutor>> {
    let options = gantry_image::StoreOptions {
        max_bytes: images.max_bytes,
        insecure_registries: images.insecure_registries.clone(),
        registry_ca_certs: images.registry_ca_certs.clone(),
        ..Default::default()
    };
    let dir = images.dir.clone().unwrap_or_else(|| work_dir.join("images"));
    vec![
        Arc::new(executors::process::ProcessExecutor::new(executor_path.to_path_buf())),
        Arc::new(executors::container::ContainerExecutor::new(executor_path.to_path_buf(), &dir, options)),
    ]
}

/// Why the agent could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The work dir could not be created or resolved.
    #[error("cannot prepare the work dir {path}: {source}")]
    WorkDir {
        /// The work dir.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A work dir file could not be read or written.
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    /// Resource detection failed.
    #[error(transparent)]
    Resources(#[from] resources::ResourcesError),
    /// The file endpoint could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The file endpoint stopped with an error.
    #[error("the file endpoint failed: {0}")]
    Serve(std::io::Error),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    /// Signal handlers could not be installed.
    #[error("cannot wait for signals: {0}")]
    Signal(std::io::Error),
    /// The agent could not get its certificate.
    #[error(transparent)]
    Join(#[from] join::JoinError),
    /// A TLS configuration could not be built from the agent's credentials.
    #[error("the agent's TLS configuration: {0}")]
    Tls(#[from] gantry_trust::tls::TlsError),
}

/// A running agent. Dropping it leaves the agent running in the background of the runtime;
/// [`AgentHandle::shutdown`] stops it.
#[derive(Debug)]
pub struct AgentHandle {
    agent_id: String,
    local_addr: SocketAddr,
    background: Background,
    server: JoinHandle<std::io::Result<()>>,
    stop_server: Option<oneshot::Sender<()>>,
}

impl AgentHandle {
    /// The persistent agent id.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// Where the file endpoint listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the agent's loops and HTTP server but leaves its tasks running, exactly as if the
    /// agent process died; a new [`start`] on the same work dir re-adopts them.
    pub async fn shutdown(mut self) {
        self.background.abort_all();
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(2), &mut self.server).await.is_err() {
            self.server.abort();
        }
        info!(agent_id = %self.agent_id, "Agent stopped; its tasks keep running.");
    }

    /// Waits until the agent stops on its own (its file endpoint failed).
    pub async fn wait(mut self) -> Result<(), AgentError> {
        let result = (&mut self.server).await;
        self.background.abort_all();
        server_result(result)
    }
}

/// Starts an agent: binds the file endpoint, loads or creates the agent id, recovers the tasks of
/// the work dir, and connects to the master in the background.
pub async fn start(config: AgentConfig) -> Result<AgentHandle, AgentError> {
    gantry_trust::tls::install_default_provider();
    let work_dir_error = |source| AgentError::WorkDir { path: config.work_dir.clone(), source };
    std::fs::create_dir_all(&config.work_dir).map_err(work_dir_error)?;
    let work_dir = std::fs::canonicalize(&config.work_dir).map_err(work_dir_error)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| AgentError::Bind { addr: config.listen, source })?;
    let local_addr = listener.local_addr().map_err(|source| AgentError::Bind { addr: config.listen, source })?;
    let agent_id = sandbox::load_or_create_agent_id(&work_dir)?;
    if config.cgroup_favordynmods {
        match cgroup::dynmods::favor_dynmods() {
            Ok(done) => info!(?done, "cgroup v2 favours dynamic modifications: tasks join their cgroups sooner."),
            Err(error) => tracing::warn!(%error, "Cannot set favordynmods; task launches wait for the kernel."),
        }
    }
    let gpus = config.gpus.detect();
    let offered = resources::merge(config.resources.as_ref(), &resources::detect_with_gpus(&work_dir, &gpus)?);
    let hostname = config.hostname.clone().unwrap_or_else(host_name);
    let endpoint_host = if local_addr.ip().is_unspecified() { hostname.clone() } else { local_addr.ip().to_string() };
    let endpoint = match local_addr {
        SocketAddr::V6(_) if !local_addr.ip().is_unspecified() => {
            format!("https://[{endpoint_host}]:{}", local_addr.port())
        }
        _ => format!("https://{endpoint_host}:{}", local_addr.port()),
    };
    let credentials =
        join::credentials(&work_dir, &agent_id, &config.master, config.join_token.as_deref(), Duration::from_secs(60))
            .await?;
    let info = AgentInfo {
        id: agent_id.clone(),
        hostname: hostname.clone(),
        endpoint,
        resources: offered,
        attributes: config.attributes.clone(),
        version: gantry_api::VERSION.to_string(),
    };

    let identity =
        gantry_trust::tls::SwappableIdentity::new(&credentials.ca_pem, &credentials.cert_pem, &credentials.key_pem)?;
    let client_tls = gantry_trust::tls::client_config_with(&credentials.ca_pem, identity.clone())?;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(client_tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(AgentError::Client)?;
    let background = Background::default();
    let masters = Arc::new(gantry_api::masters::Masters::parse(&config.master));
    let sink = Arc::new(HttpStatusSink::new(masters.clone(), &agent_id, client.clone()));
    let executors = executors(&config.executor_path, &work_dir, &config.images);
    let supervisor = Supervisor::new(work_dir.clone(), executors, hostname, sink, background.clone());
    supervisor.set_gpus(gpus, config.gpus.clone());
    supervisor.set_task_user(config.task_user.clone());
    supervisor.set_limit_settings(config.task_limits.clone());
    supervisor.recover()?;

    let (stop_server, stopped) = oneshot::channel::<()>();
    let server_tls = gantry_trust::tls::server_config_with(&credentials.ca_pem, identity.clone(), false)?;
    let listener = gantry_trust::listener::TlsListener::new(listener, Arc::new(server_tls))
        .map_err(|source| AgentError::Bind { addr: config.listen, source })?;
    let app = files::router(work_dir.clone(), Arc::clone(&supervisor))
        .into_make_service_with_connect_info::<gantry_trust::listener::Peer>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                // A dropped handle (sender gone without a send) leaves the endpoint running.
                if stopped.await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
            .await
    });
    let link = MasterLink::new(masters, client, info.clone(), supervisor);
    background.spawn(Arc::clone(&link).heartbeats());
    background.spawn(link.run());
    background.spawn(renewals(work_dir, agent_id.clone(), config.master.clone(), credentials, identity));
    info!(%agent_id, %local_addr, resources = %info.resources, master = %config.master, "Agent started.");
    Ok(AgentHandle { agent_id, local_addr, background, server, stop_server: Some(stop_server) })
}

/// Runs an agent until SIGINT or SIGTERM, then stops it, leaving its tasks running.
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    let mut handle = start(config).await?;
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(AgentError::Signal)?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.map_err(AgentError::Signal)?,
        _ = terminate.recv() => {}
        result = &mut handle.server => {
            handle.background.abort_all();
            return server_result(result);
        }
    }
    info!("Signal received; stopping the agent.");
    handle.shutdown().await;
    Ok(())
}

fn server_result(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), AgentError> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(AgentError::Serve(error)),
        Err(error) => Err(AgentError::Serve(std::io::Error::other(error))),
    }
}

/// Renews the agent's certificate while it runs, when a third of its life is left (checked
/// hourly); both the master link and the file endpoint present the new one from then on.
async fn renewals(
    work_dir: PathBuf,
    agent_id: String,
    master: String,
    mut credentials: join::Credentials,
    identity: Arc<gantry_trust::tls::SwappableIdentity>,
) {
    loop {
        let now = i64::try_from(gantry_api::now_millis() / 1000).unwrap_or(i64::MAX);
        if join::renewal_due(&credentials, now) {
            match join::renew(&work_dir, &agent_id, &master, &credentials).await {
                Ok(renewed) => match identity.replace(&renewed.ca_pem, &renewed.cert_pem, &renewed.key_pem) {
                    Ok(()) => credentials = renewed,
                    Err(error) => tracing::warn!(%error, "The renewed certificate cannot be used."),
                },
                Err(error) => tracing::warn!(%error, "Certificate renewal failed; retrying in an hour."),
            }
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// The host's name, from the kernel.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
