//! The lab's cgroups in the cgroup v1 hierarchies. A host's processes join a cgroup of the host
//! in every v1 hierarchy too, not only in v2: what runs on a host (a gantry agent's executor)
//! makes its cgroups under its own cgroup of each hierarchy, and in v1 that would otherwise be
//! this machine's cgroup, where nothing removes them when the host goes.
//!
//! Lab `<prefix>` has `<own>/gantry-lab-<prefix>` in each hierarchy (`<own>`: this process's
//! cgroup there), with one child per host and per [`super::Lab::command`] process, like its v2
//! cgroup. The v2 cgroup kills the processes; these are removed after them. Their paths are
//! recorded in `/run/gantry-labs/<prefix>.v1`, so that cleaning up after a crashed lab finds
//! them under whatever cgroup the crashed process had.

use super::system::{REGISTRY, is_prefix};
use std::path::{Path, PathBuf};

/// This process's own cgroup directory in every writable cgroup v1 hierarchy with a controller
/// (named hierarchies such as `name=systemd` have none and are skipped).
pub(super) fn own_dirs() -> Vec<PathBuf> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    parse(&read("/proc/self/mountinfo"), &read("/proc/self/cgroup"))
}

/// [`own_dirs`] from the content of `/proc/self/mountinfo` and `/proc/self/cgroup`.
fn parse(mountinfo: &str, proc_cgroup: &str) -> Vec<PathBuf> {
    // (hierarchy id, controllers, path) of each v1 hierarchy with a controller.
    let memberships: Vec<(&str, Vec<&str>, &str)> = proc_cgroup
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let controllers: Vec<&str> =
                controllers.split(',').filter(|c| !c.is_empty() && !c.starts_with("name=")).collect();
            (!controllers.is_empty()).then_some((id, controllers, path))
        })
        .collect();
    let known = |option: &&str| memberships.iter().any(|(_, c, _)| c.contains(option));
    let mut seen = Vec::new();
    let mut dirs = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let left: Vec<&str> = left.split_whitespace().collect();
        let right: Vec<&str> = right.split_whitespace().collect();
        let (Some(root), Some(mount), Some(mount_options), Some(fstype), Some(super_options)) =
            (left.get(3), left.get(4), left.get(5), right.first(), right.get(2))
        else {
            continue;
        };
        if *fstype != "cgroup" || mount_options.split(',').any(|o| o == "ro") {
            continue;
        }
        let mut controllers: Vec<&str> = super_options.split(',').filter(known).collect();
        controllers.sort_unstable();
        let membership = memberships.iter().find(|(_, c, _)| {
            let mut c = c.clone();
            c.sort_unstable();
            c == controllers
        });
        let Some((id, _, path)) = membership else { continue };
        if seen.contains(id) {
            continue;
        }
        seen.push(*id);
        dirs.push(join(Path::new(mount), root, path));
    }
    dirs
}

/// The directory of cgroup `path` (as `/proc/self/cgroup` gives it) in a hierarchy mounted at
/// `mount` from its directory `root` (a container may see a hierarchy mounted from a sub-cgroup).
fn join(mount: &Path, root: &str, path: &str) -> PathBuf {
    let relative = match path.strip_prefix(root) {
        Some(rest) if root != "/" && (rest.is_empty() || rest.starts_with('/')) => rest,
        _ => path,
    };
    mount.join(relative.trim_start_matches('/'))
}

/// Makes cgroup `dir` (nothing when it exists). In a cpuset hierarchy it gets its parent's CPUs
/// and memory nodes, without which no process can join it.
pub(super) fn create(dir: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let Some(parent) = dir.parent() else { return Ok(()) };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(file);
        if !own.exists() || !std::fs::read_to_string(&own)?.trim().is_empty() {
            continue;
        }
        let inherited = std::fs::read_to_string(parent.join(file))?;
        if !inherited.trim().is_empty() {
            std::fs::write(&own, inherited.trim())?;
        }
    }
    Ok(())
}

/// Shell commands, each followed by ` && `, that move the shell (`$$`) into each of `dirs`.
pub(super) fn join_script(dirs: &[PathBuf]) -> String {
    dirs.iter().map(|d| format!("echo $$ > '{}' && ", d.join("cgroup.procs").display())).collect()
}

/// Removes cgroup `dir` and every cgroup below it, deepest first. Call it after the processes
/// were killed through the lab's v2 cgroup: while a cgroup holds processes (killed ones not
/// reaped yet, or a process that left the v2 cgroup) they get SIGKILL (v1 has no `cgroup.kill`).
pub(super) fn remove_tree(dir: &Path) {
    super::cleanup::remove_tree_killing(dir, kill_members);
}

fn kill_members(dir: &Path) {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<libc::pid_t>().ok()).filter(|&pid| pid > 1) {
        // SAFETY: kill has no memory-safety preconditions; the process is in the lab's cgroup.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Where lab `prefix`'s v1 cgroups are recorded.
fn record_file(prefix: &str) -> PathBuf {
    Path::new(REGISTRY).join(format!("{prefix}.v1"))
}

/// Records `dirs` as lab `prefix`'s v1 cgroups (one path a line), before they are made.
pub(super) fn record(prefix: &str, dirs: &[PathBuf]) -> std::io::Result<()> {
    let lines: String = dirs.iter().map(|d| format!("{}\n", d.display())).collect();
    std::fs::write(record_file(prefix), lines)
}

/// Removes the v1 cgroups recorded for lab `prefix` (its processes killed already), then the
/// record. Only recorded paths named `gantry-lab-<prefix>` are touched.
pub(super) fn remove_lab(prefix: &str) {
    let file = record_file(prefix);
    let name = format!("gantry-lab-{prefix}");
    let recorded = std::fs::read_to_string(&file).unwrap_or_default();
    for dir in recorded.lines().map(Path::new).filter(|d| d.is_absolute() && d.file_name() == Some(name.as_ref())) {
        remove_tree(dir);
    }
    let _ = std::fs::remove_file(&file);
}

/// The labs with a record of v1 cgroups: (prefix, record file).
pub(super) fn records() -> Vec<(String, PathBuf)> {
    std::fs::read_dir(REGISTRY)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let prefix = name.strip_suffix(".v1")?;
            is_prefix(prefix).then(|| (prefix.to_string(), e.path()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:32 / /mnt/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:33 / /sys/fs/cgroup/blkio ro,relatime - cgroup cgroup rw,blkio
39 31 0:36 /agent /sys/fs/cgroup/pids rw,relatime shared:5 - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const PROC_CGROUP: &str = "\
9:name=systemd:/
8:pids:/agent/sub
7:blkio:/
5:cpuset:/
4:memory:/process_api/abc
2:cpu,cpuacct:/
0::/system.slice/gantry.service
";

    #[test]
    fn finds_each_writable_hierarchy_with_controllers_once() {
        let dirs = parse(MOUNTINFO, PROC_CGROUP);
        let expected: Vec<PathBuf> = [
            "/sys/fs/cgroup/cpu,cpuacct",
            "/sys/fs/cgroup/cpuset",
            "/sys/fs/cgroup/memory/process_api/abc",
            "/sys/fs/cgroup/pids/sub",
        ]
        .into_iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(dirs, expected);
    }

    #[test]
    fn no_v1_hierarchy_is_no_dir() {
        assert!(parse("", "").is_empty());
        assert!(parse(MOUNTINFO, "0::/\n").is_empty());
        assert!(parse("41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", PROC_CGROUP).is_empty());
    }

    #[test]
    fn the_join_script_moves_the_shell_into_each_dir() {
        let dirs = [PathBuf::from("/c/pids/x"), PathBuf::from("/c/memory/y")];
        assert_eq!(
            join_script(&dirs),
            "echo $$ > '/c/pids/x/cgroup.procs' && echo $$ > '/c/memory/y/cgroup.procs' && "
        );
        assert_eq!(join_script(&[]), "");
    }

    #[test]
    fn a_cpuset_child_gets_its_parents_cpus_and_nodes() {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::write(root.path().join("cpuset.cpus"), "0-3\n").expect("write cpus");
        std::fs::write(root.path().join("cpuset.mems"), "0\n").expect("write mems");
        let child = root.path().join("lab");
        // A real cpuset cgroup appears with its (empty) files; a plain dir gets them here.
        std::fs::create_dir(&child).expect("mkdir");
        std::fs::write(child.join("cpuset.cpus"), "\n").expect("write empty cpus");
        std::fs::write(child.join("cpuset.mems"), "").expect("write empty mems");
        create(&child).expect("create");
        assert_eq!(std::fs::read_to_string(child.join("cpuset.cpus")).expect("cpus"), "0-3");
        assert_eq!(std::fs::read_to_string(child.join("cpuset.mems")).expect("mems"), "0");
        let plain = root.path().join("plain");
        create(&plain).expect("create a plain dir");
        assert!(plain.is_dir() && !plain.join("cpuset.cpus").exists());
    }
}
