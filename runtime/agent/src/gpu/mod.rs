//! NVIDIA GPUs on the agent: what the host has, which task holds which device, and what a task
//! must be given to see exactly its devices and no others.
//!
//! - [`detect`] asks NVML (`libnvidia-ml.so.1`, loaded at run time: the binary builds and runs on
//!   hosts without a driver, where it finds no GPUs).
//! - [`GpuAllocator`] is pure bookkeeping of task → devices on one agent.
//! - [`task_env`] and [`device_nodes`] say what a launch needs: `NVIDIA_VISIBLE_DEVICES` /
//!   `CUDA_VISIBLE_DEVICES`, and the device nodes for device cgroup rules and bind mounts.
//!
//! This module applies nothing itself: the launch path writes the env, the cgroup rules and the
//! mounts.

mod assign;
mod devices;
mod env;
mod nvml;

pub use assign::GpuAllocator;
pub use devices::{CONTROL_DEVICES, DeviceKind, DeviceNode, GpuNodes, device_nodes, device_nodes_in};
pub use env::task_env;
pub use nvml::{NVML_LIBRARY_ENV, detect, detect_from};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the agent finds NVML and the GPUs' device nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuSettings {
    /// The NVML library to load; `None`: the one [`NVML_LIBRARY_ENV`] names, else
    /// `libnvidia-ml.so.1` (see [`detect`]).
    pub nvml_library: Option<PathBuf>,
    /// The directory of the `nvidia<minor>` and control nodes; `/dev` but in tests.
    pub dev_root: PathBuf,
}

impl Default for GpuSettings {
    fn default() -> Self {
        Self { nvml_library: None, dev_root: PathBuf::from("/dev") }
    }
}

impl GpuSettings {
    /// The GPUs of this host, from [`GpuSettings::nvml_library`] or as [`detect`] finds them.
    pub fn detect(&self) -> Vec<Gpu> {
        match &self.nvml_library {
            Some(library) => detect_from(Some(library)),
            None => detect(),
        }
    }
}

/// One NVIDIA GPU of this host, as NVML reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Gpu {
    /// NVML's index (PCI bus order); not stable across reboots or driver changes, see `uuid`.
    pub index: u32,
    /// The stable identity, e.g. `GPU-5a4e2b3c-…`; what tasks are given and what is persisted.
    pub uuid: String,
    /// The product name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// Total memory in MiB; 0 where the driver cannot say.
    pub memory_mib: u64,
    /// The minor number of its device node, `/dev/nvidia<minor>`.
    pub minor: u32,
}

impl Gpu {
    /// The device node's name under the `/dev` root, `nvidia<minor>`.
    pub fn node_name(&self) -> String {
        format!("nvidia{}", self.minor)
    }
}

/// Why GPUs could not be assigned, restored or given to a task.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// Fewer devices are free than the task asks for.
    #[error(
        "task {task_id} asks for {wanted} GPU(s) but {free} of this agent's {total} are free; lower the task's \
         `gpus` or wait until a task holding GPUs ends"
    )]
    NotEnough {
        /// The task.
        task_id: String,
        /// How many it asks for.
        wanted: u32,
        /// How many are free.
        free: usize,
        /// How many the agent has.
        total: usize,
    },
    /// The task already holds devices; release them before assigning again.
    #[error("task {task_id} already holds GPU(s) {uuids}; release them before assigning again")]
    AlreadyAssigned {
        /// The task.
        task_id: String,
        /// The devices it holds, comma-separated.
        uuids: String,
    },
    /// A device recorded for a task is not on this host (any more).
    #[error("task {task_id} held GPU {uuid}, which this agent no longer finds; check `nvidia-smi -L`")]
    UnknownDevice {
        /// The task.
        task_id: String,
        /// The missing device.
        uuid: String,
    },
    /// A device recorded for a task is held by another task.
    #[error("task {task_id} held GPU {uuid}, which task {holder} holds now")]
    Busy {
        /// The task being restored.
        task_id: String,
        /// The device.
        uuid: String,
        /// The task that holds it.
        holder: String,
    },
    /// A device node a task needs is missing or is not a device.
    #[error("GPU device node {path}: {reason}; is the NVIDIA driver loaded (`nvidia-smi`)?")]
    DeviceNode {
        /// The node.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}
