//! Removing labs: the teardown of one lab, and the cleanup of labs whose process died.

use super::STALE_AFTER;
use super::cgroup_v1;
use super::system::{REGISTRY, cgroup2_mount, is_prefix, link_names, netns_names, prefix_of};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// Removes everything of lab `prefix`: kills its hosts (and the processes it started with
/// [`super::Lab::command`]), removes its cgroups (v2, then v1), namespaces (with their veths and nft
/// tables), bridge and registry entry. The lab's temp dir is left to its owner (or
/// [`cleanup_stale`]).
pub(super) fn teardown(prefix: &str, cgroup: &Path) {
    remove_cgroup_tree(cgroup);
    cgroup_v1::remove_lab(prefix);
    for ns in netns_names() {
        if prefix_of(&ns) == Some(prefix) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
    }
    for link in link_names() {
        if prefix_of(&link) == Some(prefix) {
            let _ = Command::new("ip").args(["link", "del", &link]).output();
        }
    }
    let _ = std::fs::remove_file(Path::new(REGISTRY).join(prefix));
}

/// Kills every process in cgroup `dir` and below, then removes it and every cgroup below it.
pub(super) fn remove_cgroup_tree(cgroup: &Path) {
    let children: Vec<PathBuf> =
        std::fs::read_dir(cgroup).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    for dir in children.iter().chain([&cgroup.to_path_buf()]) {
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    }
    // Hosts' processes made cgroups of their own inside (an agent's task cgroups, left empty when
    // their executor was killed).
    remove_tree_killing(cgroup, |dir| {
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    });
}

/// Removes cgroup `dir` and every cgroup below it, deepest first (a cgroup with children cannot
/// go). Killed processes are reaped asynchronously, so while a cgroup still holds some `kill`
/// is called on it again and removal retried, for up to 10 s; one left then is logged.
pub(super) fn remove_tree_killing(dir: &Path, kill: impl Fn(&Path)) {
    let mut dirs = Vec::new();
    collect_cgroups(dir, &mut dirs);
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    let deadline = Instant::now() + Duration::from_secs(10);
    for dir in &dirs {
        while dir.exists() && std::fs::remove_dir(dir).is_err() && Instant::now() < deadline {
            kill(dir);
            std::thread::sleep(Duration::from_millis(20));
        }
        if dir.exists() {
            tracing::warn!(cgroup = %dir.display(), "A lab cgroup could not be removed: a process in it outlived \
                 SIGKILL; remove it with rmdir once its processes are gone.");
        }
    }
}

fn age(path: &Path) -> Option<Duration> {
    let modified = std::fs::symlink_metadata(path).and_then(|m| m.modified()).ok()?;
    Some(SystemTime::now().duration_since(modified).unwrap_or_default())
}

/// Removes what earlier labs left behind when their process died without dropping the lab:
/// every `gt<4 hex>` prefix whose registered owner process is gone, or that has no registry
/// entry and whose namespaces, cgroup and temp dir are all older than a few minutes. Only names
/// of this harness's patterns are touched.
pub fn cleanup_stale() {
    let Some(cgroup2) = cgroup2_mount() else {
        return;
    };
    let tmp = std::env::temp_dir();
    let mut prefixes = BTreeSet::new();
    let mut artifacts: Vec<(String, PathBuf)> = Vec::new();
    for ns in netns_names() {
        if let Some(p) = prefix_of(&ns) {
            prefixes.insert(p.to_string());
            artifacts.push((p.to_string(), Path::new("/run/netns").join(&ns)));
        }
    }
    for link in link_names() {
        if let Some(p) = prefix_of(&link) {
            prefixes.insert(p.to_string());
        }
    }
    let dirs = |root: &Path, lead: &str| -> Vec<(String, PathBuf)> {
        std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let p = name.strip_prefix(lead)?.get(..6)?;
                let rest = &name[lead.len() + 6..];
                (is_prefix(p) && (rest.is_empty() || rest.starts_with('-'))).then(|| (p.to_string(), e.path()))
            })
            .collect()
    };
    let cgroups = dirs(&cgroup2, "gantry-lab-");
    let temps = dirs(&tmp, "gantry-lab-");
    let registered = dirs(Path::new(REGISTRY), "");
    let v1_records = cgroup_v1::records();
    for (p, path) in cgroups.iter().chain(&temps).chain(&registered).chain(&v1_records) {
        prefixes.insert(p.clone());
        artifacts.push((p.clone(), path.clone()));
    }
    for prefix in prefixes {
        let registry = Path::new(REGISTRY).join(&prefix);
        let stale = match std::fs::read_to_string(&registry) {
            Ok(pid) => !Path::new("/proc").join(pid.trim()).exists(),
            Err(_) => artifacts
                .iter()
                .filter(|(p, _)| *p == prefix)
                .all(|(_, path)| age(path).is_none_or(|a| a > STALE_AFTER)),
        };
        if !stale {
            continue;
        }
        teardown(&prefix, &cgroup2.join(format!("gantry-lab-{prefix}")));
        for (p, path) in &temps {
            if *p == prefix {
                let _ = std::fs::remove_dir_all(path);
            }
        }
    }
}

/// `dir` and every cgroup below it.
pub(super) fn collect_cgroups(dir: &Path, into: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    into.push(dir.to_path_buf());
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_cgroups(&entry.path(), into);
        }
    }
}
