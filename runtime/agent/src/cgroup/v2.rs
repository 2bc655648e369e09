//! Limits in cgroup v2 files, and where a task's v2 cgroup goes.
//!
//! Files: `cpu.max` = `<cpus × 100000> 100000`, `cpu.weight` = cpus × 100 (1 cpu weighs as
//! much as an unlimited cgroup's default 100), `memory.max`, `memory.swap.max` = 0 where the
//! kernel accounts swap, `pids.max`.
//!
//! Placement and the no-internal-process rule: a controller works in a cgroup only when it is
//! enabled in its parent's `cgroup.subtree_control`, and the kernel refuses to enable one
//! (`EBUSY`) in a non-root cgroup that holds processes. The executor lives in its own cgroup X
//! (the agent's, e.g. `/system.slice/gantry-agent.service`), so:
//! 1. no controller needed (no limit, or the controllers are bound to v1): `X/gantry.<task>`,
//!    used only to find and kill every process of the task;
//! 2. the controllers are (or can be) enabled in X's `cgroup.subtree_control` — X is the root,
//!    or was prepared so by whoever runs the agent: `X/gantry.<task>`;
//! 3. else, like Nomad's `nomad.slice`: `<mount>/gantry.tasks/gantry.<task>`, enabling the
//!    controllers in the root (always allowed) and in `gantry.tasks` (which holds no process).
//!    The task then sits outside the agent's service cgroup, so stopping the service does not
//!    reach it — as the executor design wants;
//! 4. else (no root: a container without a writable cgroup root) `X/gantry.<task>` without
//!    limits, and the limits are recorded as not enforced, with the kernel's reason.

use super::hierarchy::{V2Hierarchy, read_words};
use super::limits::{LimitKind, Limits};
use super::v1::{CPU_PERIOD_US, cpu_quota_us};
use std::path::{Path, PathBuf};

/// The cgroup below the v2 root that holds tasks whose executor's cgroup cannot hand out
/// controllers (see the module documentation).
pub const TASKS_SLICE: &str = "gantry.tasks";

/// The files (and values) that put `limits` on a v2 cgroup whose parent enabled `controllers`;
/// `swap` says whether the kernel offers `memory.swap.max`.
pub fn files(limits: &Limits, controllers: &[String], swap: bool) -> Vec<(LimitKind, &'static str, String)> {
    let has = |name: &str| controllers.iter().any(|c| c == name);
    let mut files = Vec::new();
    if let Some(cpus) = limits.cpus
        && has("cpu")
    {
        files.push((LimitKind::Cpus, "cpu.max", format!("{} {CPU_PERIOD_US}", cpu_quota_us(cpus))));
        files.push((LimitKind::Cpus, "cpu.weight", ((cpus * 100.0).round() as u64).clamp(1, 10_000).to_string()));
    }
    if let Some(bytes) = limits.mem_bytes
        && has("memory")
    {
        files.push((LimitKind::Mem, "memory.max", bytes.to_string()));
        if swap {
            files.push((LimitKind::Mem, "memory.swap.max", "0".to_string()));
        }
    }
    if let Some(pids) = limits.pids
        && has("pids")
    {
        files.push((LimitKind::Pids, "pids.max", pids.to_string()));
    }
    files
}

/// Where a task's v2 cgroup goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The parent directory of the task's cgroup.
    pub parent: PathBuf,
    /// Why the controllers could not be enabled, when they could not.
    pub refused: Option<String>,
}

/// Finds the parent of a task's cgroup with `needed` controllers enabled, enabling them where
/// needed (see the module documentation).
pub fn place(v2: &V2Hierarchy, needed: &[String]) -> Placement {
    let own = || Placement { parent: v2.own.clone(), refused: None };
    if needed.is_empty() {
        return own();
    }
    let own_error = match enable(&v2.own, needed) {
        Ok(()) => return own(),
        Err(error) => error,
    };
    let slice = v2.mount.join(TASKS_SLICE);
    let in_slice = || -> Result<(), String> {
        enable(&v2.mount, needed)?;
        match std::fs::create_dir(&slice) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(format!("cannot create {}: {error}", slice.display())),
        }
        enable(&slice, needed)
    };
    if v2.own == v2.mount {
        return Placement { parent: v2.own.clone(), refused: Some(own_error) };
    }
    match in_slice() {
        Ok(()) => Placement { parent: slice, refused: None },
        Err(error) => Placement {
            parent: v2.own.clone(),
            refused: Some(format!(
                "cgroup v2 cannot hand the {} controllers to the task: {own_error} (a cgroup that holds processes \
                 cannot enable controllers for its children), and {error}; run the agent where the root cgroup is \
                 writable",
                needed.join(", ")
            )),
        },
    }
}

/// Enables `controllers` in `dir`'s `cgroup.subtree_control` where they are not yet.
fn enable(dir: &Path, controllers: &[String]) -> Result<(), String> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = read_words(&file);
    let missing: Vec<String> = controllers.iter().filter(|c| !enabled.contains(c)).map(|c| format!("+{c}")).collect();
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::write(&file, missing.join(" "))
        .map_err(|error| format!("writing `{}` to {}: {error}", missing.join(" "), file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn limits_become_v2_files() {
        let limits = Limits { cpus: Some(0.5), mem_bytes: Some(128 << 20), pids: Some(100), ..Limits::default() };
        let written: Vec<(&str, String)> =
            files(&limits, &names(&["cpu", "memory", "pids"]), true).into_iter().map(|(_, f, v)| (f, v)).collect();
        assert_eq!(
            written,
            [
                ("cpu.max", "50000 100000".into()),
                ("cpu.weight", "50".into()),
                ("memory.max", "134217728".into()),
                ("memory.swap.max", "0".into()),
                ("pids.max", "100".into()),
            ]
        );
        assert!(files(&limits, &[], true).is_empty(), "nothing without controllers");
    }

    #[test]
    fn a_busy_own_cgroup_sends_tasks_to_the_root_slice() {
        let root = tempfile::tempdir().expect("temp dir");
        let own = root.path().join("system.slice/agent.service");
        std::fs::create_dir_all(&own).expect("own cgroup");
        let v2 = V2Hierarchy { mount: root.path().to_path_buf(), own: own.clone() };
        assert_eq!(place(&v2, &[]), Placement { parent: own.clone(), refused: None });
        // A regular file takes any write; a directory in its place refuses, as EBUSY would.
        std::fs::create_dir(own.join("cgroup.subtree_control")).expect("a refusing subtree_control");
        let placement = place(&v2, &names(&["memory", "pids"]));
        assert_eq!(placement, Placement { parent: root.path().join(TASKS_SLICE), refused: None });
        let enabled = |dir: &Path| std::fs::read_to_string(dir.join("cgroup.subtree_control")).expect("written");
        assert_eq!(enabled(root.path()), "+memory +pids");
        assert_eq!(enabled(&root.path().join(TASKS_SLICE)), "+memory +pids");

        std::fs::write(root.path().join("cgroup.subtree_control"), "memory pids").expect("already enabled");
        std::fs::remove_dir_all(root.path().join(TASKS_SLICE)).expect("clean");
        std::fs::create_dir_all(root.path().join(TASKS_SLICE).join("cgroup.subtree_control")).expect("refusing");
        let refused = place(&v2, &names(&["memory"]));
        assert_eq!(refused.parent, own, "without limits the task still gets a cgroup to be killed through");
        assert!(refused.refused.as_deref().is_some_and(|r| r.contains("memory")), "{refused:?}");
    }
}
