//! Containers without a daemon: a task from an OCI image runs in its own mount, pid, ipc and uts
//! namespaces (the host's network, with its ports), on an overlay of the image's unpacked layers
//! with a writable layer in its sandbox, after `pivot_root`, with the capabilities of Docker's
//! default set (none at all for a non-root user) and `no_new_privs`.
//!
//! The agent pulls the image ([`gantry_image`]) and works out everything the task needs with
//! [`plan::plan`] (a missing program or user is reported before anything starts); the executor
//! makes the pid namespace ([`enter::new_pid_namespace`]) and, in the task's child process
//! between fork and exec, builds the rest ([`enter::enter`]). When the task (pid 1 of its
//! namespace) exits, the kernel ends every process of the namespace and tears down its mounts:
//! nothing stays mounted on the host.

pub mod caps;
pub mod enter;
pub mod plan;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where the task's sandbox appears inside the container (`GANTRY_SANDBOX`).
pub const SANDBOX_PATH: &str = "/mnt/sandbox";

/// Everything the executor needs to run a task in a container (part of `launch.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerLaunch {
    /// The image as the app names it.
    pub image: String,
    /// Its manifest digest.
    pub digest: String,
    /// Unpacked layer directories, bottom first (overlay lower dirs).
    pub layers: Vec<PathBuf>,
    /// The writable layer (in the sandbox).
    pub upper: PathBuf,
    /// Overlay's work dir (in the sandbox).
    pub work: PathBuf,
    /// Where the root is assembled before `pivot_root`.
    pub merged: PathBuf,
    /// The program (an absolute path inside the container) and its arguments.
    pub argv: Vec<String>,
    /// The complete environment (nothing of the executor's own is inherited).
    pub env: BTreeMap<String, String>,
    /// The uid the task runs as inside (and outside: no user namespace) the container.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// The working directory inside the container.
    pub working_dir: String,
    /// The host name the container sees (its own uts namespace).
    pub hostname: String,
    /// Bind mounts: the sandbox and the app's volumes.
    pub mounts: Vec<BindMount>,
    /// Device nodes of the host to give the task (its GPUs), by path.
    #[serde(default)]
    pub devices: Vec<PathBuf>,
}

/// A host path mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// On the host.
    pub source: PathBuf,
    /// Inside the container (absolute).
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}
