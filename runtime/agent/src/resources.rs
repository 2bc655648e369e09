//! What the agent offers: resources given in the config, with every missing one detected from
//! the host (cpus, memory, free disk of the work dir, NVIDIA GPUs, a default port range).

use crate::gpu::{self, Gpu};
use gantry_api::{PortRange, Resources};
use std::path::Path;

/// The port range offered when none is given.
pub const DEFAULT_PORTS: PortRange = PortRange { begin: 31000, end: 32000 };

/// A resource that could not be detected.
#[derive(Debug, thiserror::Error)]
pub enum ResourcesError {
    /// `/proc/meminfo` is unreadable or has no `MemTotal`.
    #[error("cannot read the memory size from /proc/meminfo: {0}")]
    Memory(String),
    /// statvfs on the work dir failed.
    #[error("cannot read the free disk space of {path}: {source}")]
    Disk {
        /// The work dir.
        path: String,
        /// Why.
        source: nix::errno::Errno,
    },
}

/// The resources to offer: `given` as is, with cpus, mem, disk and gpus that are zero and ports
/// that are empty filled in from `detected`. Without `given`, everything is detected. A `gpus`
/// given above zero wins even over a smaller detected count.
pub fn merge(given: Option<&Resources>, detected: &Resources) -> Resources {
    let Some(given) = given else { return detected.clone() };
    let mut merged = given.clone();
    if merged.cpus <= 0.0 {
        merged.cpus = detected.cpus;
    }
    if merged.mem <= 0.0 {
        merged.mem = detected.mem;
    }
    if merged.disk <= 0.0 {
        merged.disk = detected.disk;
    }
    if merged.gpus == 0 {
        merged.gpus = detected.gpus;
    }
    if merged.ports.is_empty() {
        merged.ports = detected.ports.clone();
    }
    merged
}

/// Detects the host's resources and merges them with the given ones (see [`merge`]).
pub fn offered(given: Option<&Resources>, work_dir: &Path) -> Result<Resources, ResourcesError> {
    Ok(merge(given, &detect(work_dir)?))
}

/// Detects cpus (available parallelism), mem (MemTotal in MiB), disk (free MiB of the work
/// dir's filesystem), gpus ([`gpu::detect`]) and [`DEFAULT_PORTS`].
pub fn detect(work_dir: &Path) -> Result<Resources, ResourcesError> {
    detect_with_gpus(work_dir, &gpu::detect())
}

/// As [`detect`], offering `gpus` (for an agent that detected its GPUs once already).
pub fn detect_with_gpus(work_dir: &Path, gpus: &[Gpu]) -> Result<Resources, ResourcesError> {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let meminfo = std::fs::read_to_string("/proc/meminfo").map_err(|e| ResourcesError::Memory(e.to_string()))?;
    let mem = parse_mem_total_mib(&meminfo).ok_or_else(|| ResourcesError::Memory("no MemTotal line".into()))?;
    let stat = nix::sys::statvfs::statvfs(work_dir)
        .map_err(|source| ResourcesError::Disk { path: work_dir.display().to_string(), source })?;
    let free_bytes = stat.blocks_available() as f64 * stat.fragment_size() as f64;
    let disk = (free_bytes / (1024.0 * 1024.0)).floor();
    let gpus = u32::try_from(gpus.len()).unwrap_or(u32::MAX);
    Ok(Resources { cpus, mem, disk, gpus, ports: vec![DEFAULT_PORTS] })
}

/// `MemTotal` of `/proc/meminfo` content, in whole MiB.
pub fn parse_mem_total_mib(meminfo: &str) -> Option<f64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let value: f64 = parts.next()?.parse().ok()?;
    let factor = match parts.next().unwrap_or("kB") {
        "kB" => 1024.0,
        "mB" | "MB" => 1024.0 * 1024.0,
        "B" => 1.0,
        _ => return None,
    };
    Some((value * factor / (1024.0 * 1024.0)).floor())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mem_total() {
        let meminfo = "MemTotal:       24588040 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_mem_total_mib(meminfo), Some(24011.0));
        assert_eq!(parse_mem_total_mib("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn fills_only_what_was_not_given() {
        let detected = Resources { cpus: 8.0, mem: 1000.0, disk: 5000.0, gpus: 0, ports: vec![DEFAULT_PORTS] };
        let given = Resources::parse("cpus=2;gpus=1;ports=[40000-40010]").expect("valid");
        let merged = merge(Some(&given), &detected);
        assert_eq!(merged.cpus, 2.0);
        assert_eq!(merged.mem, 1000.0);
        assert_eq!(merged.disk, 5000.0);
        assert_eq!(merged.gpus, 1);
        assert_eq!(merged.ports, vec![PortRange { begin: 40000, end: 40010 }]);
        assert_eq!(merge(None, &detected), detected);
        let scalars_only = merge(Some(&Resources::parse("mem=10").expect("valid")), &detected);
        assert_eq!(scalars_only.ports, vec![DEFAULT_PORTS]);
        let with_gpus = Resources { gpus: 2, ..detected.clone() };
        assert_eq!(merge(Some(&Resources::parse("mem=10").expect("valid")), &with_gpus).gpus, 2);
        assert_eq!(merge(Some(&given), &with_gpus).gpus, 1);
    }

    #[test]
    fn detects_this_host() {
        let dir = tempfile::tempdir().expect("tempdir");
        let detected = detect(dir.path()).expect("detect");
        assert!(detected.cpus >= 1.0);
        assert!(detected.mem > 0.0);
        assert!(detected.disk > 0.0);
        assert_eq!(detected.gpus as usize, gpu::detect().len());
        assert_eq!(detected.port_count(), 1001);
    }
}
