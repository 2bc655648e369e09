//! The container executor: pulls the task's image into the agent's image store (no daemon),
//! works out the container ([`crate::container::plan`]) and hands it to the task's
//! `gantry executor`, which enters it between fork and exec. It keeps a lease on every image a
//! task of this agent uses, so pruning the cache never removes an image in use.

use super::spawned::Spawner;
use super::{Capabilities, LaunchError, LaunchRequest, Recovered, Started, TaskExecutor};
use crate::container::plan::{ImageParts, plan};
use crate::sandbox::{self, ExecutorInfo, ExecutorLaunch, ExitInfo, SpawnedExecutor};
use futures_util::future::BoxFuture;
use gantry_api::protocol::LaunchTask;
use gantry_image::{Image, ImageStore, PullPolicy, RegistryAuth, StoreOptions};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing::{info, warn};

/// See the module documentation.
#[derive(Debug)]
pub struct ContainerExecutor {
    spawner: Spawner,
    store: Result<Arc<ImageStore>, String>,
    /// The image (manifest digest) each live task runs from, by sandbox.
    leases: Mutex<HashMap<PathBuf, String>>,
}

impl ContainerExecutor {
    /// Runs container tasks through `executor_path`, with images cached under `store_root`.
    /// Where containers cannot run here (not root, no overlayfs, an unusable store) the executor
    /// exists but refuses every launch with the reason.
    pub fn new(executor_path: PathBuf, store_root: &Path, options: StoreOptions) -> Self {
        let store = host_supports_containers()
            .and_then(|()| ImageStore::open(store_root, options).map_err(|e| e.to_string()))
            .map(Arc::new);
        if let Err(reason) = &store {
            info!(%reason, "Container tasks cannot run on this agent.");
        }
        Self { spawner: Spawner::new(executor_path), store, leases: Mutex::default() }
    }

    /// The image store, when containers run here.
    pub fn store(&self) -> Option<&Arc<ImageStore>> {
        self.store.as_ref().ok()
    }

    fn lease(&self, sandbox: &Path, image: &str) {
        self.leases.lock().unwrap_or_else(|p| p.into_inner()).insert(sandbox.to_path_buf(), image.to_string());
    }

    /// Manifest digests (or, while they are pulled, references) of the images live tasks run from.
    pub fn in_use(&self) -> HashSet<String> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    async fn pull(&self, store: &ImageStore, launch: &LaunchTask) -> Result<Image, LaunchError> {
        let spec = launch.container.as_ref().ok_or_else(|| LaunchError::permanent("the launch has no container"))?;
        let auth = match &spec.registry_auth {
            None => None,
            Some(name) => {
                let value = launch.secret_values.get(name).ok_or_else(|| {
                    LaunchError::permanent(format!("the value of secret `{name}` did not come with the launch"))
                })?;
                let (user, password) = value.split_once(':').ok_or_else(|| {
                    LaunchError::permanent(format!(
                        "secret `{name}` must hold `user:password` for the registry (it has no `:`)"
                    ))
                })?;
                Some(RegistryAuth::basic(user, password.trim_end_matches('\n')).from_secret(name))
            }
        };
        let policy = match spec.pull {
            gantry_api::PullPolicy::IfNotPresent => PullPolicy::IfNotPresent,
            gantry_api::PullPolicy::Always => PullPolicy::Always,
        };
        store.pull(&spec.image, policy, auth).await.map_err(|error| LaunchError {
            message: format!("cannot pull image {}: {error}", spec.image),
            transient: error.is_transient(),
        })
    }

    /// Prunes the cache down to its size, in the background, keeping images in use.
    fn prune_if_over(&self, store: &Arc<ImageStore>) {
        if store.total_bytes() <= store.max_bytes() {
            return;
        }
        let (store, in_use) = (Arc::clone(store), self.in_use());
        tokio::task::spawn_blocking(move || {
            let report = store.prune(&in_use, store.max_bytes());
            info!(removed = report.removed.len(), freed_bytes = report.freed_bytes, "Pruned the image cache.");
        });
    }
}

/// Whether this host can run containers: root (mounts, namespaces) and overlayfs.
fn host_supports_containers() -> Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("the agent does not run as root: containers need root to mount and make namespaces".into());
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems.lines().any(|l| l.split_whitespace().last() == Some("overlay")) {
        // The module may load on first use.
        let _ = std::process::Command::new("modprobe").arg("overlay").status();
        let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
        if !filesystems.lines().any(|l| l.split_whitespace().last() == Some("overlay")) {
            return Err("the kernel has no overlay filesystem (modprobe overlay)".into());
        }
    }
    Ok(())
}

impl TaskExecutor for ContainerExecutor {
    fn name(&self) -> &'static str {
        "container"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { containers: self.store.is_ok(), unavailable: self.store.as_ref().err().cloned() }
    }

    fn cant_handle(&self, launch: &LaunchTask) -> Option<String> {
        if launch.container.is_none() {
            return Some("a task without an image runs on the process executor".into());
        }
        self.store.as_ref().err().map(|reason| format!("this agent cannot run containers: {reason}"))
    }

    fn launch<'a>(&'a self, request: &'a LaunchRequest) -> BoxFuture<'a, Result<Started, LaunchError>> {
        Box::pin(async move {
            let store = self.store.as_ref().map_err(|reason| LaunchError::permanent(reason.clone()))?;
            let launch = &request.launch;
            let spec =
                launch.container.as_ref().ok_or_else(|| LaunchError::permanent("the launch has no container"))?;
            // Leased by reference before the pull (a prune treats references in use as kept),
            // by digest once it is known.
            self.lease(&request.sandbox, &spec.image);
            // A failed launch is released by the supervisor, as every ended task is.
            let image = self.pull(store, launch).await?;
            let parts = ImageParts {
                digest: image.manifest_digest.clone(),
                layers: image.layers.clone(),
                entrypoint: Some(image.config.entrypoint.clone()).filter(|e| !e.is_empty()),
                cmd: Some(image.config.cmd.clone()).filter(|c| !c.is_empty()),
                env: image.config.env.clone(),
                working_dir: image.config.working_dir.clone(),
                user: image.config.user.clone(),
            };
            let mut container = plan(launch, spec, &parts, &request.env, &request.sandbox, &request.hostname)
                .map_err(|e| LaunchError::permanent(e.to_string()))?;
            container.devices = request.devices.clone();
            if container.uid != 0 {
                // The task works in its sandbox (mounted at /mnt/sandbox) as its own user.
                std::os::unix::fs::chown(&request.sandbox, Some(container.uid), Some(container.gid)).map_err(|e| {
                    LaunchError::permanent(format!("cannot give the sandbox to uid {}: {e}", container.uid))
                })?;
            }
            self.lease(&request.sandbox, &image.manifest_digest);
            self.prune_if_over(store);
            let mut executor_launch = request.executor_launch();
            executor_launch.run_as = None;
            executor_launch.container = Some(container);
            self.spawner.start(&request.sandbox, &executor_launch).await
        })
    }

    fn wait<'a>(&'a self, sandbox: &'a Path) -> BoxFuture<'a, Option<ExitInfo>> {
        Box::pin(self.spawner.wait(sandbox))
    }

    fn started<'a>(&'a self, sandbox: &'a Path, spawned: SpawnedExecutor) -> BoxFuture<'a, Option<ExecutorInfo>> {
        Box::pin(self.spawner.started_after_recovery(sandbox, spawned))
    }

    fn kill(&self, sandbox: &Path, executor: &ExecutorInfo, grace_period_secs: f64) {
        self.spawner.kill(sandbox, executor, grace_period_secs);
    }

    fn recover(&self, sandbox: &Path) -> Recovered {
        let recovered = self.spawner.recover(sandbox);
        if !matches!(recovered, Recovered::Ended(_)) {
            match sandbox::read_json::<ExecutorLaunch>(&sandbox.join(sandbox::LAUNCH_FILE)) {
                Ok(Some(ExecutorLaunch { container: Some(container), .. })) => {
                    self.leases
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(sandbox.to_path_buf(), container.digest);
                }
                Ok(_) => {}
                Err(error) => warn!(%error, "Cannot read the image of a recovered container task."),
            }
        }
        recovered
    }

    fn release(&self, sandbox: &Path) {
        self.leases.lock().unwrap_or_else(|p| p.into_inner()).remove(sandbox);
    }

    fn as_container(&self) -> Option<&ContainerExecutor> {
        Some(self)
    }
}
