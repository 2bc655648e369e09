//! The Azure lab: an emulator of Azure Resource Manager on loopback whose VMs are test hosts.
//!
//! [`AzureLab::start`] serves plain HTTP on `127.0.0.1:<port>` for the calls gantry's azure
//! provider makes with the official `azure_mgmt_*` crates: resource groups
//! (Microsoft.Resources), virtual networks, subnets, network security groups, public IPs and
//! NICs (Microsoft.Network), and virtual machines (Microsoft.Compute). Every request is checked
//! against the vendored REST specs (`lab/specs/azure/`, see [`validate`]) and answered with
//! ARM's shapes: PUTs return 201/200 with `provisioningState` Creating/Updating and an
//! `Azure-AsyncOperation` that turns Succeeded after the configured delay, DELETEs return 202
//! with `Location`, deletes of resources in use fail as Azure's do, and quota or allocation
//! failures can be injected ([`AzureLab::inject`], `POST /_lab/faults`).
//!
//! A VM that runs and whose primary NIC's private address lies in the lab network
//! ([`AzureLab::cidr`]) gets a test host named after it, with its SSH keys authorised for root
//! and its custom data (when a `#!` script) run once as root; a stopped or deallocated VM's host
//! is stopped, a deleted VM's host removed. Nothing dials the made-up public addresses.
//! Dropping the lab stops the server and removes every host and the bridge.

mod base64;
mod error;
mod faults;
mod groups;
mod hosts;
mod lifecycle;
mod nic;
mod nsg;
mod pip;
mod reply;
mod server;
mod spec;
mod state;
mod subnet;
mod usage;
mod validate;
mod vm;
mod vnet;

pub use base64::encode as base64_encode;
pub use faults::{AllocationError, Fault};

use crate::testhosts::{Host, Ipv4Cidr, Lab, LabError};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The subscription id the lab exports (any GUID is served).
pub const LAB_SUBSCRIPTION_ID: &str = "6a7e0b1c-9f3d-4c2a-8b5e-0d1f2a3b4c5d";
/// The fake bearer token the lab's clients use (any token is accepted).
pub const LAB_CREDENTIALS: &str = "lab";

/// What went wrong starting the Azure lab.
#[derive(Debug, thiserror::Error)]
pub enum AzureLabError {
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

fn io(context: &str) -> impl FnOnce(std::io::Error) -> AzureLabError + '_ {
    move |source| AzureLabError::Io { context: context.to_string(), source }
}

/// How an [`AzureLab`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureLabOptions {
    /// The lab network's third octet (`10.77.<subnet>.0/24`); default a free one.
    pub subnet: Option<u8>,
    /// How long each async operation (create, update, delete, power action) stays InProgress.
    /// Default: 200 ms.
    pub operation_delay: Duration,
    /// Whether running VMs get test hosts (needs root). Off, the emulator alone runs, anywhere,
    /// on `10.77.<subnet or 250>.0/24`, and VM operations finish without a host. Default: on.
    pub test_hosts: bool,
}

impl Default for AzureLabOptions {
    fn default() -> Self {
        AzureLabOptions { subnet: None, operation_delay: Duration::from_millis(200), test_hosts: true }
    }
}

/// A VM that has a host.
#[derive(Debug, Clone)]
pub struct VmHost {
    /// The VM's resource group.
    pub resource_group: String,
    /// The VM's name.
    pub name: String,
    /// Its host, at the VM's private address.
    pub host: Host,
    /// Whether the host runs (false while the VM is stopped or deallocated).
    pub running: bool,
    /// The output file (on this machine) of the VM's custom data, when it was a `#!` script.
    pub custom_data_log: Option<PathBuf>,
}

/// The Azure Resource Manager emulator with a test host for every running VM. See the module
/// docs.
#[derive(Debug)]
pub struct AzureLab {
    world: Arc<Mutex<state::World>>,
    hosts: Arc<hosts::Hosts>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    worker: Option<JoinHandle<()>>,
    endpoint: String,
    cidr: Ipv4Cidr,
    prefix: String,
    known_hosts: PathBuf,
    dir: PathBuf,
}

impl AzureLab {
    /// Starts an Azure lab with the default options; `dir` receives the environment to export
    /// (`env`, the lines of [`AzureLab::env`]). Needs root (for the test hosts).
    pub fn start(dir: &Path) -> Result<AzureLab, AzureLabError> {
        AzureLab::start_with(dir, AzureLabOptions::default())
    }

    /// Like [`AzureLab::start`], with `options`.
    pub fn start_with(dir: &Path, options: AzureLabOptions) -> Result<AzureLab, AzureLabError> {
        std::fs::create_dir_all(dir).map_err(io("create the lab directory"))?;
        let lab = if options.test_hosts { Some(Lab::try_new_in(0, options.subnet)?) } else { None };
        let (cidr, prefix, known_hosts) = match &lab {
            Some(lab) => (lab.cidr(), lab.prefix().to_string(), lab.known_hosts_file().to_path_buf()),
            None => {
                let known_hosts = dir.join("known_hosts");
                std::fs::write(&known_hosts, "").map_err(io("write known_hosts"))?;
                let network = Ipv4Addr::new(10, 77, options.subnet.unwrap_or(250), 0);
                (Ipv4Cidr { network, prefix_len: 24 }, "azure-emulator".to_string(), known_hosts)
            }
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("bind the emulator's port"))?;
        listener.set_nonblocking(true).map_err(io("make the emulator's socket non-blocking"))?;
        let port = listener.local_addr().map_err(io("read the emulator's port"))?.port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut world = state::World::new(options.operation_delay, cidr, lab.is_some());
        world.base_url = endpoint.clone();
        let world = Arc::new(Mutex::new(world));
        let hosts = Arc::new(hosts::Hosts::default());
        let (worker, sender) = match lab {
            Some(lab) => {
                let (sender, receiver) = mpsc::channel();
                let (hosts, world) = (Arc::clone(&hosts), Arc::clone(&world));
                let worker = std::thread::Builder::new()
                    .name(format!("gantry-lab-azure-hosts-{prefix}"))
                    .spawn(move || hosts::run(lab, &hosts, &world, &receiver))
                    .map_err(io("start the host worker"))?;
                (Some(worker), Some(sender))
            }
            None => (None, None),
        };
        let app = server::App { world: Arc::clone(&world), spec: Arc::new(spec::Spec::load()), hosts: sender };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::Builder::new()
            .name(format!("gantry-lab-azure-{prefix}"))
            .spawn(move || serve(app, listener, stopped))
            .map_err(io("start the emulator thread"))?;
        let lab = AzureLab {
            world,
            hosts,
            stop: Some(stop),
            server: Some(server),
            worker,
            endpoint,
            cidr,
            prefix,
            known_hosts,
            dir: dir.to_path_buf(),
        };
        let lines: String = lab.env().iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(dir.join("env"), lines).map_err(io("write the env file"))?;
        tracing::info!(endpoint = %lab.endpoint, cidr = %lab.cidr, prefix = %lab.prefix, "Azure lab ready.");
        Ok(lab)
    }

    /// What to export for a client of the lab: `GANTRY_AZURE_ENDPOINT_URL` (the emulator),
    /// `GANTRY_AZURE_CREDENTIALS` (a fake token), `AZURE_SUBSCRIPTION_ID` and
    /// `GANTRY_LAB_CIDR`, the lab network, which a lab cluster file uses as its VNet's range.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("GANTRY_AZURE_ENDPOINT_URL", self.endpoint.clone()),
            ("GANTRY_AZURE_CREDENTIALS", LAB_CREDENTIALS.to_string()),
            ("AZURE_SUBSCRIPTION_ID", LAB_SUBSCRIPTION_ID.to_string()),
            ("GANTRY_LAB_CIDR", self.cidr.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The emulator's URL, `http://127.0.0.1:<port>`.
    pub fn endpoint_url(&self) -> &str {
        &self.endpoint
    }

    /// The subscription id the lab exports ([`LAB_SUBSCRIPTION_ID`]).
    pub fn subscription_id(&self) -> &str {
        LAB_SUBSCRIPTION_ID
    }

    /// The lab network, `10.77.X.0/24`.
    pub fn cidr(&self) -> Ipv4Cidr {
        self.cidr
    }

    /// The lab's name prefix (see [`crate::testhosts`]).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A known_hosts file with the host key of every VM's host.
    pub fn known_hosts_file(&self) -> &Path {
        &self.known_hosts
    }

    /// The directory given to [`AzureLab::start`].
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The VMs that have a host now.
    pub fn instances(&self) -> Vec<VmHost> {
        self.hosts.all()
    }

    /// Waits until `check`, given the VMs that have a host, answers something, for at most
    /// `timeout`; `None` when it never did. `check` runs now and after every change of a host.
    pub fn wait_for<T>(&self, timeout: Duration, check: impl FnMut(&[VmHost]) -> Option<T>) -> Option<T> {
        self.hosts.wait_for(Instant::now() + timeout, check)
    }

    /// Waits until VM `name` has a host that runs (`running`) or is stopped (`!running`), for
    /// at most `timeout`.
    pub fn wait_for_vm(&self, name: &str, running: bool, timeout: Duration) -> Option<VmHost> {
        self.wait_for(timeout, |all| all.iter().find(|v| v.name == name && v.running == running).cloned())
    }

    /// Waits until VM `name` has no host, for at most `timeout`; whether it has none.
    pub fn wait_for_removal(&self, name: &str, timeout: Duration) -> bool {
        self.wait_for(timeout, |all| (!all.iter().any(|v| v.name == name)).then_some(())).is_some()
    }

    /// Injects a failure (see [`Fault`]).
    pub fn inject(&self, fault: Fault) {
        self.world.lock().unwrap_or_else(|e| e.into_inner()).faults.add(fault);
    }

    /// The id of every resource that exists now (resource groups, network resources, VMs, OS
    /// disks), including those being deleted, sorted.
    pub fn resources(&self) -> Vec<String> {
        let mut world = self.world.lock().unwrap_or_else(|e| e.into_inner());
        world.tick(Instant::now());
        let mut ids: Vec<String> = world.resources.values().map(|r| r.id.clone()).collect();
        ids.sort();
        ids
    }

    /// Stops the server, removes every host and the bridge (what dropping the lab does).
    pub fn shutdown(self) {
        drop(self);
    }
}

/// The emulator thread: serves until `stopped` fires, moving the clock every 20 ms.
fn serve(app: server::App, listener: std::net::TcpListener, stopped: tokio::sync::oneshot::Receiver<()>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "The Azure emulator's runtime did not start.");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(error = %e, "The Azure emulator's socket could not be used.");
                return;
            }
        };
        let ticker = {
            let app = app.clone();
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(Duration::from_millis(20));
                loop {
                    interval.tick().await;
                    app.tick();
                }
            })
        };
        let served = axum::serve(listener, server::router(app)).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(e) = served.await {
            tracing::error!(error = %e, "The Azure emulator stopped.");
        }
        ticker.abort();
    });
}

impl Drop for AzureLab {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
        // The server's end of the host channel went with it: the worker drains, drops the lab
        // (every host and the bridge) and ends.
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl super::CloudLab for AzureLab {
    fn env(&self) -> Vec<(String, String)> {
        AzureLab::env(self)
    }

    fn prefix(&self) -> &str {
        AzureLab::prefix(self)
    }
}
