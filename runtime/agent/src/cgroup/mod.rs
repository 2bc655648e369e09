//! The cgroups of one task: its resource limits, and a handle on every process it started —
//! also those that left its process group with `setsid` or a double fork.
//!
//! Before the task starts, the executor creates `gantry.<task id>` in every hierarchy it needs
//! (see [`hierarchy`]): the v2 one when mounted (to find and kill the task's processes, and for
//! limits where v2 has the controllers; placement in [`v2`]), and each v1 hierarchy with a
//! controller for one of the task's limits (or the freezer, to kill, when there is no v2; see
//! [`v1`]). A controller is used from v2 where v2 has it, else from v1. The limits are written
//! before the task joins: the task writes `0` to each `cgroup.procs` between fork and exec,
//! through descriptors opened before the fork ([`TaskCgroup::procs_files`]).
//!
//! Killing writes `1` to v2's `cgroup.kill`, else freezes the v1 freezer cgroup and SIGKILLs
//! its members, else SIGKILLs every member. Where no cgroup can be made (no root, a container)
//! [`TaskCgroup::create`] fails with the reason and the process group remains the only handle —
//! callers always signal the process group too; a limit that cannot be enforced is recorded as
//! such ([`limits::Enforcement::NotEnforced`]) rather than failing the task.
//!
//! The directories are recorded in the sandbox (`cgroup`, one per line) so an agent can clean up
//! after a dead executor. The sandbox's disk usage is not a cgroup matter: see
//! [`crate::disk_usage`].

pub mod dynmods;
pub mod hierarchy;
pub mod limits;
pub mod v1;
pub mod v2;

use hierarchy::{Hierarchies, Version};
use limits::{AppliedLimit, Enforcement, LimitKind, Limits};
use nix::sys::signal::Signal;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Name of the sandbox file holding the task's cgroup directories, one per line.
pub const CGROUP_FILE: &str = "cgroup";

/// The cgroup directories of one task, one per hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCgroup {
    dirs: Vec<PathBuf>,
}

/// The controller of each limit the cgroups enforce.
const CONTROLLERS: [(LimitKind, &str); 4] =
    [(LimitKind::Cpus, "cpu"), (LimitKind::Mem, "memory"), (LimitKind::Pids, "pids"), (LimitKind::Devices, "devices")];

impl TaskCgroup {
    /// Creates the task's cgroups in this process's hierarchies and applies `limits` (cpus, mem
    /// and pids; disk is not a cgroup matter). Returns them with what became of each limit, or
    /// why no cgroup at all could be made.
    pub fn create(task_id: &str, limits: &Limits) -> Result<(Self, Vec<AppliedLimit>), String> {
        Self::create_in(&Hierarchies::detect(), task_id, limits)
    }

    /// [`TaskCgroup::create`] in the given hierarchies.
    pub fn create_in(
        hierarchies: &Hierarchies,
        task_id: &str,
        limits: &Limits,
    ) -> Result<(Self, Vec<AppliedLimit>), String> {
        let name = format!("gantry.{task_id}");
        let wanted: Vec<(LimitKind, &str)> =
            CONTROLLERS.into_iter().filter(|(kind, _)| limits.value(*kind).is_some()).collect();
        let mut outcome: Vec<(LimitKind, Enforcement)> = Vec::new();
        let mut dirs = Vec::new();
        let mut failures = Vec::new();

        if let Some(v2) = &hierarchies.v2 {
            let available = hierarchies.v2_controllers();
            let needed: Vec<String> =
                wanted.iter().filter(|(_, c)| available.iter().any(|a| a == c)).map(|(_, c)| c.to_string()).collect();
            let placement = v2::place(v2, &needed);
            let enabled = if placement.refused.is_some() { Vec::new() } else { needed.clone() };
            let dir = placement.parent.join(&name);
            match make_dir(&dir) {
                Ok(()) => {
                    let swap = dir.join("memory.swap.max").exists();
                    let written = write_files(&dir, v2::files(limits, &enabled, swap));
                    outcome.extend(enforcements(&written, |files| Enforcement::CgroupV2 { files }));
                    dirs.push(dir);
                }
                Err(error) => failures.push(error),
            }
            let reason = placement.refused.or_else(|| failures.last().cloned());
            for controller in &needed {
                mark_not_enforced(&mut outcome, &wanted, controller, reason.as_deref());
            }
        }

        let killable = !dirs.is_empty();
        for hierarchy in &hierarchies.v1 {
            let serves = |controller: &str| {
                hierarchy.controllers.iter().any(|c| c == controller)
                    && hierarchies.provider(controller) == Some(Version::V1)
            };
            let limited: Vec<&(LimitKind, &str)> = wanted.iter().filter(|(_, c)| serves(c)).collect();
            let needed =
                !limited.is_empty() || (limits.cpus.is_some() && serves("cpuacct")) || (!killable && serves("freezer"));
            if !needed {
                continue;
            }
            let dir = hierarchy.own.join(&name);
            match make_dir(&dir) {
                Ok(()) => {
                    let memsw = dir.join("memory.memsw.limit_in_bytes").exists();
                    let written = write_files(&dir, v1::files(limits, &hierarchy.controllers, memsw));
                    outcome.extend(enforcements(&written, |files| Enforcement::CgroupV1 { files }));
                    dirs.push(dir);
                }
                Err(error) => {
                    for (_, controller) in limited {
                        mark_not_enforced(&mut outcome, &wanted, controller, Some(&error));
                    }
                    failures.push(error);
                }
            }
        }
        if dirs.is_empty() {
            return Err(match failures.split_first() {
                None => "no cgroup hierarchy is mounted".to_string(),
                Some((first, [])) => format!("{first}; limits need an agent running as root"),
                Some((first, more)) => {
                    format!("{first} (and {} more like it); limits need an agent running as root", more.len())
                }
            });
        }
        let applied = wanted
            .iter()
            .map(|(kind, controller)| {
                let enforcement =
                    outcome.iter().find(|(k, _)| k == kind).map(|(_, e)| e.clone()).unwrap_or_else(|| {
                        Enforcement::NotEnforced { reason: missing_controller(controller, hierarchies) }
                    });
                AppliedLimit { kind: *kind, value: limits.value(*kind).unwrap_or_default(), enforcement }
            })
            .collect();
        Ok((Self { dirs }, applied))
    }

    /// The cgroups recorded in a sandbox, if any; `None` also when a line is not an absolute path.
    pub fn from_sandbox(sandbox: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(sandbox.join(CGROUP_FILE)).ok()?;
        let dirs: Vec<PathBuf> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(PathBuf::from).collect();
        (!dirs.is_empty() && dirs.iter().all(|d| d.is_absolute())).then_some(Self { dirs })
    }

    /// Records the cgroups' paths in the sandbox.
    pub fn record(&self, sandbox: &Path) -> std::io::Result<()> {
        let lines: Vec<String> = self.dirs.iter().map(|d| d.to_string_lossy().into_owned()).collect();
        std::fs::write(sandbox.join(CGROUP_FILE), lines.join("\n") + "\n")
    }

    /// The directories, one per hierarchy.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Every `cgroup.procs`, opened for writing: a process joins by writing `0` to each.
    pub fn procs_files(&self) -> std::io::Result<Vec<File>> {
        self.dirs
            .iter()
            .map(|dir| {
                let path = dir.join("cgroup.procs");
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|error| std::io::Error::new(error.kind(), format!("{}: {error}", path.display())))
            })
            .collect()
    }

    /// Pids of the processes in the cgroups.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self.dirs.iter().flat_map(|dir| members(dir)).collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Sends `signal` to every member.
    pub fn signal_all(&self, signal: Signal) {
        for pid in self.pids() {
            let _ = crate::process::signal_pid(pid, signal);
        }
    }

    /// The content of control file `name` (e.g. `pids.current`) in the first directory that has
    /// it.
    pub fn read(&self, name: &str) -> Option<String> {
        self.dirs.iter().find_map(|dir| std::fs::read_to_string(dir.join(name)).ok())
    }

    /// How many processes the kernel's OOM killer killed in the cgroups (v1
    /// `memory.oom_control`, v2 `memory.events`: `oom_kill N`).
    pub fn oom_kills(&self) -> u64 {
        ["memory.oom_control", "memory.events"]
            .iter()
            .filter_map(|file| self.read(file))
            .map(|t| field(&t, "oom_kill"))
            .sum()
    }

    /// The CPU time used by the task so far (v1 `cpuacct.usage`, else v2 `cpu.stat`).
    pub fn cpu_usage(&self) -> Option<Duration> {
        if let Some(nanos) = self.read("cpuacct.usage").and_then(|t| t.trim().parse().ok()) {
            return Some(Duration::from_nanos(nanos));
        }
        let stat = self.read("cpu.stat")?;
        stat.lines().any(|l| l.starts_with("usage_usec ")).then(|| Duration::from_micros(field(&stat, "usage_usec")))
    }

    /// Kills every member and waits (up to `timeout`) until the cgroups are empty; then removes
    /// them. Returns whether they are gone.
    pub fn kill_and_remove(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let mut remaining: Vec<&PathBuf> = self.dirs.iter().filter(|d| d.exists()).collect();
            if remaining.is_empty() {
                return true;
            }
            if self.pids().is_empty() {
                // The kernel reaps killed members asynchronously: rmdir may fail briefly.
                remaining.retain(|dir| match std::fs::remove_dir(dir) {
                    Ok(()) => false,
                    Err(error) => error.kind() != std::io::ErrorKind::NotFound,
                });
                if remaining.is_empty() {
                    return true;
                }
            } else {
                self.kill();
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILLs every member, through the best means the cgroups offer.
    fn kill(&self) {
        let by_kill_file = self
            .dirs
            .iter()
            .map(|d| d.join("cgroup.kill"))
            .any(|file| OpenOptions::new().write(true).open(file).and_then(|mut f| f.write_all(b"1")).is_ok());
        if by_kill_file {
            return;
        }
        match self.dirs.iter().find(|d| d.join("freezer.state").exists()) {
            Some(freezer) => v1::freeze_and_kill(freezer),
            None => self.signal_all(Signal::SIGKILL),
        }
    }
}

/// Pids listed in `dir/cgroup.procs`.
fn members(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// The number after `name` on its line of a flat keyed file (`oom_kill 3`); 0 when absent.
fn field(text: &str, name: &str) -> u64 {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0)
}

fn make_dir(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(format!("cannot create {}: {error}", dir.display())),
    }
}

/// Writes each file; answers, per limit, the files written or the first error.
fn write_files(
    dir: &Path,
    files: Vec<(LimitKind, &'static str, String)>,
) -> Vec<(LimitKind, Result<Vec<String>, String>)> {
    let mut written: Vec<(LimitKind, Result<Vec<String>, String>)> = Vec::new();
    for (kind, file, value) in files {
        let index = match written.iter().position(|(k, _)| *k == kind) {
            Some(index) => index,
            None => {
                written.push((kind, Ok(Vec::new())));
                written.len() - 1
            }
        };
        if let Ok(names) = &mut written[index].1 {
            let path = dir.join(file);
            match std::fs::write(&path, &value) {
                Ok(()) if names.iter().any(|n| n == file) => {}
                Ok(()) => names.push(file.to_string()),
                Err(error) => written[index].1 = Err(format!("writing {value} to {}: {error}", path.display())),
            }
        }
    }
    written
}

fn enforcements(
    written: &[(LimitKind, Result<Vec<String>, String>)],
    by: impl Fn(Vec<String>) -> Enforcement,
) -> Vec<(LimitKind, Enforcement)> {
    written
        .iter()
        .map(|(kind, result)| {
            let enforcement = match result {
                Ok(files) => by(files.clone()),
                Err(reason) => Enforcement::NotEnforced { reason: reason.clone() },
            };
            (*kind, enforcement)
        })
        .collect()
}

/// Why no hierarchy enforces `controller`'s limit.
fn missing_controller(controller: &str, hierarchies: &Hierarchies) -> String {
    if controller == "devices" && hierarchies.v2.is_some() {
        // v2 has no devices controller: a BPF program attached to the cgroup decides instead.
        return "cgroup v2 controls devices only through a BPF program, which gantry does not load yet, and no v1 \
                `devices` hierarchy is mounted: the task can open this agent's other GPUs"
            .to_string();
    }
    format!("no cgroup hierarchy here has the `{controller}` controller")
}

fn mark_not_enforced(
    outcome: &mut Vec<(LimitKind, Enforcement)>,
    wanted: &[(LimitKind, &str)],
    controller: &str,
    reason: Option<&str>,
) {
    let Some((kind, _)) = wanted.iter().find(|(_, c)| *c == controller) else { return };
    if outcome.iter().any(|(k, _)| k == kind) {
        return;
    }
    let reason = reason.unwrap_or("its cgroup could not be made").to_string();
    outcome.push((*kind, Enforcement::NotEnforced { reason }));
}

#[cfg(test)]
mod tests;
