//! A cgroup v2 per task, so that stopping a task reaches every process it started — also those
//! that left its process group with `setsid` or a double fork.
//!
//! The executor creates `<its own v2 cgroup>/gantry.<task id>` before starting the task, and the
//! task moves itself into it between fork and exec. Killing writes `1` to `cgroup.kill` (or
//! SIGKILLs every member where the kernel lacks it). Where cgroup v2 is not mounted or not
//! writable (no root, a container), [`TaskCgroup::create`] returns `None` and the process group
//! remains the only handle — callers always signal the process group too.
//!
//! The path is recorded in the sandbox (`cgroup`) so an agent can clean up after a dead executor.
//! This module owns no resource limits; isolation (memory, cpu) is a later step.

use nix::sys::signal::Signal;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Name of the sandbox file holding the task's cgroup directory.
pub const CGROUP_FILE: &str = "cgroup";

/// The cgroup v2 directory of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCgroup {
    dir: PathBuf,
}

impl TaskCgroup {
    /// Creates the task's cgroup under this process's own v2 cgroup, or `None` when cgroup v2
    /// is unavailable here (the reason is returned for the executor's log).
    pub fn create(task_id: &str) -> Result<Self, String> {
        let mount = v2_mount().ok_or("cgroup v2 is not mounted")?;
        let own = own_v2_path().ok_or("this process has no cgroup v2 path")?;
        let parent = mount.join(own.trim_start_matches('/'));
        let dir = parent.join(format!("gantry.{task_id}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(format!("cannot create {}: {error}", dir.display())),
        }
        let cgroup = Self { dir };
        // Writability of cgroup.procs is what matters; check it now rather than in the child.
        cgroup.procs_file().map_err(|error| format!("cannot join {}: {error}", cgroup.dir.display()))?;
        Ok(cgroup)
    }

    /// The cgroup recorded in a sandbox, if any.
    pub fn from_sandbox(sandbox: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(sandbox.join(CGROUP_FILE)).ok()?;
        let dir = PathBuf::from(text.trim());
        dir.is_absolute().then_some(Self { dir })
    }

    /// Records the cgroup's path in the sandbox.
    pub fn record(&self, sandbox: &Path) -> std::io::Result<()> {
        std::fs::write(sandbox.join(CGROUP_FILE), self.dir.to_string_lossy().as_bytes())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `cgroup.procs`, opened for writing: a process joins by writing `0` to it.
    pub fn procs_file(&self) -> std::io::Result<File> {
        OpenOptions::new().write(true).open(self.dir.join("cgroup.procs"))
    }

    /// Pids of the processes in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Sends `signal` to every member.
    pub fn signal_all(&self, signal: Signal) {
        for pid in self.pids() {
            let _ = crate::process::signal_pid(pid, signal);
        }
    }

    /// Kills every member and waits (up to `timeout`) until the cgroup is empty; then removes
    /// it. Returns whether it is gone.
    pub fn kill_and_remove(&self, timeout: Duration) -> bool {
        if !self.dir.exists() {
            return true;
        }
        let deadline = Instant::now() + timeout;
        let kill_file = self.dir.join("cgroup.kill");
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                // The kernel reaps killed members asynchronously: rmdir may fail briefly.
                match std::fs::remove_dir(&self.dir) {
                    Ok(()) => return true,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => return true,
                    Err(_) if Instant::now() < deadline => {}
                    Err(_) => return false,
                }
            } else if OpenOptions::new().write(true).open(&kill_file).and_then(|mut f| f.write_all(b"1")).is_err() {
                for pid in pids {
                    let _ = crate::process::signal_pid(pid, Signal::SIGKILL);
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Where the cgroup v2 hierarchy is mounted, from `/proc/self/mountinfo`.
fn v2_mount() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        (fstype == "cgroup2").then(|| left.split_whitespace().nth(4).map(PathBuf::from)).flatten()
    })
}

/// This process's cgroup v2 path (the `0::` line of `/proc/self/cgroup`).
fn own_v2_path() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|line| line.strip_prefix("0::").map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_cgroup_is_found_again_and_relative_paths_are_refused() {
        let sandbox = tempfile::tempdir().expect("temp dir");
        assert_eq!(TaskCgroup::from_sandbox(sandbox.path()), None);
        let cgroup = TaskCgroup { dir: PathBuf::from("/sys/fs/cgroup/unified/gantry.t1") };
        cgroup.record(sandbox.path()).expect("record");
        assert_eq!(TaskCgroup::from_sandbox(sandbox.path()), Some(cgroup));
        std::fs::write(sandbox.path().join(CGROUP_FILE), "relative/path").expect("write");
        assert_eq!(TaskCgroup::from_sandbox(sandbox.path()), None);
    }

    #[test]
    fn removing_a_cgroup_that_does_not_exist_succeeds() {
        let cgroup = TaskCgroup { dir: PathBuf::from("/nonexistent/gantry.none") };
        assert!(cgroup.kill_and_remove(Duration::from_millis(10)));
        assert!(cgroup.pids().is_empty());
    }
}
