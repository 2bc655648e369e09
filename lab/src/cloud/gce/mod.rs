//! The Compute Engine lab: an emulator of the GCE API (the calls gantry makes) on loopback,
//! whose running instances are test hosts.
//!
//! [`GceLab::start`] creates a lab with no hosts (its bridge only) and serves the API at
//! [`GceLab::endpoint_url`] (`http://127.0.0.1:<port>`, plain HTTP: the official SDK's endpoint
//! override points there, with anonymous credentials). Every request is checked against the
//! vendored discovery document (`lab/specs/gce/`, see [`spec`]): a request the real API would
//! refuse gets its status and error shape. Resources live in memory: networks, subnetworks,
//! firewalls, instances and their operations, which go PENDING → RUNNING → DONE over
//! [`GceLabOptions::operation_delay`]. Any project id is accepted; the regions, zones,
//! machine types and images are fixed ([`catalog`]).
//!
//! An instance that becomes RUNNING with its first interface's address inside the lab network
//! ([`GceLab::cidr`]) gets a host at that address, named after the instance, with every key
//! of its `ssh-keys` metadata authorised for root and its `startup-script` run once as root
//! ([`InstanceHost::startup_log`]); stopping the instance stops the host, starting starts it,
//! deleting removes it. Instances elsewhere get none (logged once). Nothing dials the made-up
//! external addresses (203.0.113.0/24).
//!
//! Faults ([`Fault`]) are injected with [`GceLab::inject`] or `POST /_lab/faults`. Dropping the
//! [`GceLab`] stops the server and removes every host and the bridge.

mod catalog;
mod error;
mod faults;
mod filter;
mod firewalls;
mod hosts;
mod instances;
mod names;
mod networks;
mod operations;
mod resources;
mod server;
mod spec;
mod state;
mod subnetworks;

pub use catalog::{IMAGES, MACHINE_TYPES, REGIONS};
pub use error::ApiError;
pub use faults::Fault;
pub use server::router;
pub use spec::{Call, DISCOVERY, SERVICE_PATH, Spec, spec};

use crate::testhosts::{Host, Ipv4Cidr, Lab, LabError};
use hosts::Hosts;
use state::Api;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The project [`GceLab::env`] exports (any other is accepted too).
pub const DEFAULT_PROJECT: &str = "gantry-lab";

/// What `GANTRY_GCE_CREDENTIALS` says: the emulator wants no credentials.
pub const CREDENTIALS: &str = "anonymous";

/// What went wrong starting the GCE lab.
#[derive(Debug, thiserror::Error)]
pub enum GceLabError {
    /// The test-host lab failed ([`LabError::Unsupported`] when this machine cannot run it).
    #[error(transparent)]
    Lab(#[from] LabError),
    /// A file, socket or thread operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the lab was doing.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl GceLabError {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> GceLabError {
        let context = context.into();
        move |source| GceLabError::Io { context, source }
    }
}

/// How a [`GceLab`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GceLabOptions {
    /// The lab network's third octet (`10.77.<subnet>.0/24`); default a free one.
    pub subnet: Option<u8>,
    /// How long an operation takes from PENDING to DONE (half PENDING, half RUNNING).
    /// Default: 200 ms.
    pub operation_delay: Duration,
    /// The project [`GceLab::env`] exports. Default: [`DEFAULT_PROJECT`].
    pub project: String,
    /// Whether running instances get test hosts (needs root). Without, the emulator alone
    /// runs (any user): the network is then `10.77.<subnet or 254>.0/24` and no host is made.
    /// Default: true.
    pub test_hosts: bool,
}

impl Default for GceLabOptions {
    fn default() -> Self {
        GceLabOptions {
            subnet: None,
            operation_delay: Duration::from_millis(200),
            project: DEFAULT_PROJECT.to_string(),
            test_hosts: true,
        }
    }
}

/// An instance that has a host.
#[derive(Debug, Clone)]
pub struct InstanceHost {
    /// The instance's zone.
    pub zone: String,
    /// The instance's name.
    pub name: String,
    /// Its host, at the instance's private address.
    pub host: Host,
    /// Whether the host runs (false while the instance is stopped).
    pub running: bool,
    /// The output file (on this machine) of the instance's startup script, when it had one.
    pub startup_log: Option<PathBuf>,
}

/// The GCE emulator on loopback, with a test host for every running instance. See the module
/// docs.
#[derive(Debug)]
pub struct GceLab {
    api: Arc<Api>,
    hosts: Option<Arc<Hosts>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    host_thread: Option<JoinHandle<()>>,
    endpoint: String,
    project: String,
    cidr: Ipv4Cidr,
    prefix: String,
    known_hosts: PathBuf,
    dir: PathBuf,
}

impl GceLab {
    /// Starts a GCE lab with the default options; `dir` receives the environment to export
    /// (`env`, the lines of [`GceLab::env`]). Needs root (for the hosts).
    pub fn start(dir: &Path) -> Result<GceLab, GceLabError> {
        GceLab::start_with(dir, GceLabOptions::default())
    }

    /// Like [`GceLab::start`], with `options`.
    pub fn start_with(dir: &Path, options: GceLabOptions) -> Result<GceLab, GceLabError> {
        std::fs::create_dir_all(dir).map_err(GceLabError::io(format!("create {}", dir.display())))?;
        let (hosts, cidr, prefix, known_hosts, sender, receiver) = if options.test_hosts {
            let lab = Lab::try_new_in(0, options.subnet)?;
            let (cidr, prefix, known) = (lab.cidr(), lab.prefix().to_string(), lab.known_hosts_file().to_path_buf());
            let (sender, receiver) = mpsc::channel();
            (Some(Arc::new(Hosts::new(lab))), cidr, prefix, known, Some(sender), Some(receiver))
        } else {
            let cidr = Ipv4Cidr { network: Ipv4Addr::new(10, 77, options.subnet.unwrap_or(254), 0), prefix_len: 24 };
            let known = dir.join("known_hosts");
            std::fs::write(&known, "").map_err(GceLabError::io("write known_hosts"))?;
            (None, cidr, "gce-emulator".to_string(), known, None, None)
        };
        let api = Arc::new(Api::new(options.operation_delay, cidr, sender));
        let host_thread = match (&hosts, receiver) {
            (Some(hosts), Some(receiver)) => {
                let hosts = Arc::clone(hosts);
                Some(
                    std::thread::Builder::new()
                        .name(format!("gantry-lab-gce-hosts-{prefix}"))
                        .spawn(move || hosts.run(&receiver))
                        .map_err(GceLabError::io("start the host thread"))?,
                )
            }
            _ => None,
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(GceLabError::io("bind 127.0.0.1"))?;
        listener.set_nonblocking(true).map_err(GceLabError::io("make the listener non-blocking"))?;
        let port = listener.local_addr().map_err(GceLabError::io("read the listener's port"))?.port();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let server = {
            let app = server::router(Arc::clone(&api));
            std::thread::Builder::new()
                .name(format!("gantry-lab-gce-{prefix}"))
                .spawn(move || serve(listener, app, stopped))
                .map_err(GceLabError::io("start the server thread"))?
        };
        let lab = GceLab {
            api,
            hosts,
            stop: Some(stop),
            server: Some(server),
            host_thread,
            endpoint: format!("http://127.0.0.1:{port}"),
            project: options.project,
            cidr,
            prefix,
            known_hosts,
            dir: dir.to_path_buf(),
        };
        let lines: String = lab.env().iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(dir.join("env"), lines).map_err(GceLabError::io("write the env file"))?;
        tracing::info!(endpoint = %lab.endpoint, cidr = %lab.cidr, prefix = %lab.prefix, "GCE lab ready.");
        Ok(lab)
    }

    /// What to export for a client of the lab: `GANTRY_GCE_ENDPOINT_URL` (the emulator),
    /// `GANTRY_GCE_CREDENTIALS=anonymous`, `GOOGLE_CLOUD_PROJECT` and `GANTRY_LAB_CIDR`, the lab
    /// network, which a lab cluster file uses as its subnetwork's range.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("GANTRY_GCE_ENDPOINT_URL", self.endpoint.clone()),
            ("GANTRY_GCE_CREDENTIALS", CREDENTIALS.to_string()),
            ("GOOGLE_CLOUD_PROJECT", self.project.clone()),
            ("GANTRY_LAB_CIDR", self.cidr.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The emulator's URL, `http://127.0.0.1:<port>` (the API is under `/compute/v1/`).
    pub fn endpoint_url(&self) -> &str {
        &self.endpoint
    }

    /// The project [`GceLab::env`] exports.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The lab network, `10.77.X.0/24`.
    pub fn cidr(&self) -> Ipv4Cidr {
        self.cidr
    }

    /// The lab's name prefix (see [`crate::testhosts`]).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A known_hosts file with the host key of every instance's host.
    pub fn known_hosts_file(&self) -> &Path {
        &self.known_hosts
    }

    /// The directory given to [`GceLab::start`].
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The instances that have a host now.
    pub fn instances(&self) -> Vec<InstanceHost> {
        self.hosts.as_ref().map(|h| h.instances()).unwrap_or_default()
    }

    /// Waits until `check`, given the instances that have a host, answers something, for at
    /// most `timeout`; `None` when it never did. `check` runs now and after every change of
    /// the hosts.
    pub fn wait_for<T>(&self, timeout: Duration, mut check: impl FnMut(&[InstanceHost]) -> Option<T>) -> Option<T> {
        match &self.hosts {
            Some(hosts) => hosts.wait_for(Instant::now() + timeout, check),
            None => check(&[]),
        }
    }

    /// Waits until instance `name` (in any zone) has a host that runs (`running`) or is stopped
    /// (`!running`), for at most `timeout`.
    pub fn wait_for_instance(&self, name: &str, running: bool, timeout: Duration) -> Option<InstanceHost> {
        self.wait_for(timeout, |all| all.iter().find(|i| i.name == name && i.running == running).cloned())
    }

    /// Waits until instance `name` has no host, for at most `timeout`; whether it has none.
    pub fn wait_for_removal(&self, name: &str, timeout: Duration) -> bool {
        self.wait_for(timeout, |all| (!all.iter().any(|i| i.name == name)).then_some(())).is_some()
    }

    /// Injects `fault` (see [`Fault`]).
    pub fn inject(&self, fault: Fault) {
        self.api.lock().faults.push(fault);
    }

    /// Removes every injected fault not yet used up.
    pub fn clear_faults(&self) {
        self.api.lock().faults.clear();
    }

    /// Every network, subnetwork, firewall and instance that exists, by path
    /// (`projects/p/zones/z/instances/i`), sorted: empty after a clean `down`.
    pub fn resources(&self) -> Vec<String> {
        self.api.lock().resources.keys().cloned().collect()
    }

    /// Stops the server, removes every host and the bridge (what dropping the lab does).
    pub fn shutdown(self) {
        drop(self);
    }
}

fn serve(listener: std::net::TcpListener, app: axum::Router, stopped: tokio::sync::oneshot::Receiver<()>) {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "The GCE emulator's runtime did not start.");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(error = %e, "The GCE emulator cannot listen.");
                return;
            }
        };
        tokio::select! {
            served = axum::serve(listener, app) => {
                if let Err(e) = served {
                    tracing::error!(error = %e, "The GCE emulator stopped serving.");
                }
            }
            _ = stopped => {}
        }
    });
    runtime.shutdown_background();
}

impl Drop for GceLab {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
        self.api.close_hosts();
        if let Some(thread) = self.host_thread.take() {
            let _ = thread.join();
        }
        // The last reference to the lab goes with `self.hosts`: its drop removes the hosts.
    }
}

impl super::CloudLab for GceLab {
    fn env(&self) -> Vec<(String, String)> {
        GceLab::env(self)
    }

    fn prefix(&self) -> &str {
        GceLab::prefix(self)
    }
}
