//! Limits in cgroup v1 files, and killing through the freezer.
//!
//! One directory per hierarchy (`<mount>/<own path>/gantry.<task id>`, co-mounted controllers
//! share one): `cpu.cfs_period_us` and `cpu.cfs_quota_us` (the quota), `cpu.shares` (the
//! weight), `memory.limit_in_bytes` and, where the kernel accounts swap,
//! `memory.memsw.limit_in_bytes` with the same value (no swap beyond the limit), `pids.max`,
//! and one `devices.deny` write per device node the task may not open.
//! v1 has no rule against processes in inner cgroups, so each directory sits right under the
//! executor's own cgroup of that hierarchy.

use super::limits::{LimitKind, Limits};
use std::path::Path;
use std::time::{Duration, Instant};

/// The CFS period, in microseconds (v1 and v2).
pub const CPU_PERIOD_US: u64 = 100_000;

/// The quota of `cpus` per [`CPU_PERIOD_US`], in microseconds; at least the kernel's 1 ms.
pub fn cpu_quota_us(cpus: f64) -> u64 {
    ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000)
}

/// The files (and values) that put `limits` on a v1 cgroup of a hierarchy with `controllers`,
/// in the order to write them; `memsw` says whether the kernel offers
/// `memory.memsw.limit_in_bytes`.
pub fn files(limits: &Limits, controllers: &[String], memsw: bool) -> Vec<(LimitKind, &'static str, String)> {
    let has = |name: &str| controllers.iter().any(|c| c == name);
    let mut files = Vec::new();
    if let Some(cpus) = limits.cpus
        && has("cpu")
    {
        files.push((LimitKind::Cpus, "cpu.cfs_period_us", CPU_PERIOD_US.to_string()));
        files.push((LimitKind::Cpus, "cpu.cfs_quota_us", cpu_quota_us(cpus).to_string()));
        files.push((LimitKind::Cpus, "cpu.shares", ((cpus * 1024.0).round() as u64).max(2).to_string()));
    }
    if let Some(bytes) = limits.mem_bytes
        && has("memory")
    {
        files.push((LimitKind::Mem, "memory.limit_in_bytes", bytes.to_string()));
        if memsw {
            files.push((LimitKind::Mem, "memory.memsw.limit_in_bytes", bytes.to_string()));
        }
    }
    if let Some(pids) = limits.pids
        && has("pids")
    {
        files.push((LimitKind::Pids, "pids.max", pids.to_string()));
    }
    if has("devices") {
        // One rule per write: the kernel takes a single rule at a time.
        files.extend(limits.denied_devices.iter().map(|rule| (LimitKind::Devices, "devices.deny", rule.clone())));
    }
    files
}

/// Freezes the freezer cgroup `dir`, SIGKILLs every member and thaws it, so a process forking
/// as fast as it can cannot outrun the kill. Best effort.
pub fn freeze_and_kill(dir: &Path) {
    let state = dir.join("freezer.state");
    if std::fs::write(&state, "FROZEN").is_ok() {
        let deadline = Instant::now() + Duration::from_millis(100);
        while std::fs::read_to_string(&state).is_ok_and(|s| s.trim() != "FROZEN") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    for pid in super::members(dir) {
        let _ = crate::process::signal_pid(pid, nix::sys::signal::Signal::SIGKILL);
    }
    let _ = std::fs::write(&state, "THAWED");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_hierarchy_gets_the_files_of_its_controllers() {
        let limits = Limits {
            cpus: Some(0.5),
            mem_bytes: Some(32 << 20),
            pids: Some(64),
            disk_bytes: Some(1),
            ..Limits::default()
        };
        let cpu: Vec<(&str, String)> =
            files(&limits, &names(&["cpu", "cpuacct"]), false).into_iter().map(|(_, f, v)| (f, v)).collect();
        assert_eq!(
            cpu,
            [
                ("cpu.cfs_period_us", "100000".into()),
                ("cpu.cfs_quota_us", "50000".into()),
                ("cpu.shares", "512".into())
            ]
        );
        let memory: Vec<(&str, String)> =
            files(&limits, &names(&["memory"]), true).into_iter().map(|(_, f, v)| (f, v)).collect();
        assert_eq!(
            memory,
            [("memory.limit_in_bytes", "33554432".into()), ("memory.memsw.limit_in_bytes", "33554432".into())]
        );
        assert_eq!(files(&limits, &names(&["memory"]), false).len(), 1, "no memsw without swap accounting");
        assert_eq!(files(&limits, &names(&["pids"]), false), [(LimitKind::Pids, "pids.max", "64".into())]);
        assert!(files(&Limits::default(), &names(&["cpu", "memory", "pids"]), true).is_empty());
        assert_eq!(cpu_quota_us(0.001), 1000, "the kernel's minimum quota");
    }
}
