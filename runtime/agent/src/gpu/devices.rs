//! The device nodes a task holding GPUs needs: one `nvidia<minor>` per GPU and the driver's
//! control nodes, with their numbers, for device cgroup rules and container bind mounts.

use super::{Gpu, GpuError};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The driver's control nodes a CUDA task opens besides its GPUs, under the `/dev` root; each is
/// given where present (`nvidia-uvm*` appear once the module is loaded, `nvidia-modeset` only
/// with the display driver).
pub const CONTROL_DEVICES: [&str; 4] = ["nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"];

/// Character or block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A character device (every NVIDIA node).
    Char,
    /// A block device.
    Block,
}

/// One device node and its numbers, as stat reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// The node on this host, e.g. `/dev/nvidia0`; in a container it goes to `/dev/<file name>`.
    pub path: PathBuf,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Character or block.
    pub kind: DeviceKind,
}

impl DeviceNode {
    /// The cgroup v1 `devices.allow` line for read, write and mknod, e.g. `c 195:0 rwm`.
    pub fn cgroup_rule(&self) -> String {
        let kind = match self.kind {
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        };
        format!("{kind} {}:{} rwm", self.major, self.minor)
    }
}

/// The nodes under `/dev` for a task holding `gpus`; see [`device_nodes_in`].
pub fn device_nodes(gpus: &[Gpu]) -> Result<Vec<DeviceNode>, GpuError> {
    device_nodes_in(Path::new("/dev"), gpus)
}

/// The nodes under `dev_root` for a task holding `gpus`: each GPU's `nvidia<minor>` (an error if
/// missing or not a device) and then the [`CONTROL_DEVICES`] present. No GPUs, no nodes.
pub fn device_nodes_in(dev_root: &Path, gpus: &[Gpu]) -> Result<Vec<DeviceNode>, GpuError> {
    if gpus.is_empty() {
        return Ok(Vec::new());
    }
    let mut nodes = Vec::with_capacity(gpus.len() + CONTROL_DEVICES.len());
    for gpu in gpus {
        let path = dev_root.join(gpu.node_name());
        let node = stat_node(&path)?.ok_or_else(|| GpuError::DeviceNode { path, reason: "missing".to_string() })?;
        nodes.push(node);
    }
    for name in CONTROL_DEVICES {
        nodes.extend(stat_node(&dev_root.join(name))?);
    }
    Ok(nodes)
}

/// The `devices.deny` rule of each GPU of a host, stat'ed once when the agent starts, so that a
/// launch only picks the rules of the GPUs it was not given ([`GpuNodes::denied`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuNodes {
    /// GPU uuid → the rule of its node; a GPU without a node under the root has none (it cannot
    /// be opened anyway).
    rules: Vec<(String, String)>,
}

impl GpuNodes {
    /// The rules of `all`'s nodes under `dev_root`.
    pub fn stat(dev_root: &Path, all: &[Gpu]) -> Self {
        let rules = all
            .iter()
            .filter_map(|gpu| {
                let node = stat_node(&dev_root.join(gpu.node_name())).ok().flatten()?;
                Some((gpu.uuid.clone(), node.cgroup_rule()))
            })
            .collect();
        Self { rules }
    }

    /// The rules that keep a task holding `given` away from every other GPU. The driver's
    /// control nodes stay open: CUDA needs them, and they give no GPU.
    pub fn denied(&self, given: &[Gpu]) -> Vec<String> {
        self.rules
            .iter()
            .filter(|(uuid, _)| !given.iter().any(|g| &g.uuid == uuid))
            .map(|(_, rule)| rule.clone())
            .collect()
    }
}

/// The node at `path` (links followed), `None` where nothing is there.
fn stat_node(path: &Path) -> Result<Option<DeviceNode>, GpuError> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(GpuError::DeviceNode { path: path.to_path_buf(), reason: error.to_string() }),
    };
    let file_type = metadata.file_type();
    let kind = if file_type.is_char_device() {
        DeviceKind::Char
    } else if file_type.is_block_device() {
        DeviceKind::Block
    } else {
        return Err(GpuError::DeviceNode { path: path.to_path_buf(), reason: "not a device node".to_string() });
    };
    let rdev = metadata.rdev();
    Ok(Some(DeviceNode {
        path: path.to_path_buf(),
        major: nix::sys::stat::major(rdev),
        minor: nix::sys::stat::minor(rdev),
        kind,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(minor: u32) -> Gpu {
        Gpu { index: minor, uuid: format!("GPU-{minor}"), name: "Test".into(), memory_mib: 0, minor }
    }

    #[test]
    fn a_task_is_denied_exactly_the_gpus_it_was_not_given() {
        let dev = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/dev/null", dev.path().join("nvidia0")).expect("link");
        std::os::unix::fs::symlink("/dev/zero", dev.path().join("nvidia2")).expect("link");
        let all = [gpu(0), gpu(1), gpu(2)];
        let nodes = GpuNodes::stat(dev.path(), &all);
        // nvidia1 has no node: nothing to deny. /dev/null is c 1:3, /dev/zero c 1:5.
        assert_eq!(nodes.denied(&[gpu(1)]), ["c 1:3 rwm", "c 1:5 rwm"]);
        assert_eq!(nodes.denied(&[gpu(0)]), ["c 1:5 rwm"]);
        assert!(nodes.denied(&all).is_empty());
        assert!(GpuNodes::stat(dev.path(), &[]).denied(&[]).is_empty());
    }

    #[test]
    fn stats_the_gpu_and_the_control_nodes_present() {
        let dev = tempfile::tempdir().expect("tempdir");
        // Links to /dev/null (c 1:3) stand in for the NVIDIA nodes: no root needed.
        std::os::unix::fs::symlink("/dev/null", dev.path().join("nvidia1")).expect("link");
        std::os::unix::fs::symlink("/dev/null", dev.path().join("nvidiactl")).expect("link");
        let nodes = device_nodes_in(dev.path(), &[gpu(1)]).expect("nodes");
        let paths: Vec<_> = nodes.iter().map(|node| node.path.clone()).collect();
        assert_eq!(paths, vec![dev.path().join("nvidia1"), dev.path().join("nvidiactl")]);
        assert_eq!(nodes[0].kind, DeviceKind::Char);
        assert_eq!((nodes[0].major, nodes[0].minor), (1, 3));
        assert_eq!(nodes[0].cgroup_rule(), "c 1:3 rwm");
        assert!(device_nodes_in(dev.path(), &[]).expect("no gpus").is_empty());
    }

    #[test]
    fn a_missing_or_fake_gpu_node_is_an_error() {
        let dev = tempfile::tempdir().expect("tempdir");
        let missing = device_nodes_in(dev.path(), &[gpu(0)]).expect_err("missing");
        assert!(missing.to_string().contains("nvidia0: missing"), "{missing}");
        std::fs::write(dev.path().join("nvidia0"), b"").expect("file");
        let file = device_nodes_in(dev.path(), &[gpu(0)]).expect_err("a file");
        assert!(file.to_string().contains("not a device node"), "{file}");
    }
}
