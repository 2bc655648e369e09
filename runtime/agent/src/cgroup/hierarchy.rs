//! Where this process's cgroups are: the cgroup v2 hierarchy and every cgroup v1 hierarchy with
//! its controllers (co-mounted ones, like `cpu,cpuacct`, form one), from `/proc/self/mountinfo`
//! and `/proc/self/cgroup`. Parsing is pure, so tests describe a fake cgroupfs in a temp dir.

use std::path::{Path, PathBuf};

/// The controllers the executor uses on cgroup v1.
pub const V1_CONTROLLERS: [&str; 6] = ["cpu", "cpuacct", "memory", "pids", "freezer", "devices"];

/// Which cgroup version provides something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// A cgroup v1 hierarchy.
    V1,
    /// The cgroup v2 (unified) hierarchy.
    V2,
}

/// This process's cgroup v2 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Hierarchy {
    /// The mount point.
    pub mount: PathBuf,
    /// This process's own cgroup directory.
    pub own: PathBuf,
}

/// One cgroup v1 hierarchy of this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Its controllers, e.g. `["cpu", "cpuacct"]`.
    pub controllers: Vec<String>,
    /// This process's own cgroup directory in it.
    pub own: PathBuf,
}

/// Every cgroup hierarchy of this process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hierarchies {
    /// The v2 hierarchy, when mounted.
    pub v2: Option<V2Hierarchy>,
    /// The v1 hierarchies with a controller of [`V1_CONTROLLERS`].
    pub v1: Vec<V1Hierarchy>,
}

impl Hierarchies {
    /// This process's hierarchies; none where `/proc` cannot be read.
    pub fn detect() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        Self::parse(&read("/proc/self/mountinfo"), &read("/proc/self/cgroup"))
    }

    /// Parses the content of `/proc/self/mountinfo` and `/proc/self/cgroup`.
    pub fn parse(mountinfo: &str, proc_cgroup: &str) -> Self {
        let memberships: Vec<(Vec<&str>, &str)> = proc_cgroup
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                let controllers = if controllers.is_empty() { Vec::new() } else { controllers.split(',').collect() };
                Some((controllers, path))
            })
            .collect();
        let mut hierarchies = Self::default();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let left: Vec<&str> = left.split_whitespace().collect();
            let right: Vec<&str> = right.split_whitespace().collect();
            let (Some(root), Some(mount), Some(fstype)) = (left.get(3), left.get(4), right.first()) else { continue };
            match *fstype {
                "cgroup2" if hierarchies.v2.is_none() => {
                    if let Some((_, path)) = memberships.iter().find(|(c, _)| c.is_empty()) {
                        let own = join(Path::new(mount), root, path);
                        hierarchies.v2 = Some(V2Hierarchy { mount: PathBuf::from(mount), own });
                    }
                }
                "cgroup" => {
                    let options = right.get(2).copied().unwrap_or_default();
                    let mut controllers: Vec<String> =
                        options.split(',').filter(|o| V1_CONTROLLERS.contains(o)).map(str::to_string).collect();
                    controllers.sort();
                    let known = hierarchies.v1.iter().any(|h| h.controllers == controllers);
                    if controllers.is_empty() || known {
                        continue;
                    }
                    let membership = memberships.iter().find(|(c, _)| {
                        let mut names: Vec<&str> = c.iter().copied().filter(|n| V1_CONTROLLERS.contains(n)).collect();
                        names.sort_unstable();
                        names == controllers
                    });
                    if let Some((_, path)) = membership {
                        let own = join(Path::new(mount), root, path);
                        hierarchies.v1.push(V1Hierarchy { controllers, own });
                    }
                }
                _ => {}
            }
        }
        hierarchies
    }

    /// The v1 hierarchy holding `controller`.
    pub fn v1_with(&self, controller: &str) -> Option<&V1Hierarchy> {
        self.v1.iter().find(|h| h.controllers.iter().any(|c| c == controller))
    }

    /// The controllers of the v2 hierarchy (its root's `cgroup.controllers`).
    pub fn v2_controllers(&self) -> Vec<String> {
        self.v2.as_ref().map(|v2| read_words(&v2.mount.join("cgroup.controllers"))).unwrap_or_default()
    }

    /// Which version provides `controller` here: v2 where its hierarchy has it, else v1.
    pub fn provider(&self, controller: &str) -> Option<Version> {
        if self.v2_controllers().iter().any(|c| c == controller) {
            Some(Version::V2)
        } else if self.v1_with(controller).is_some() {
            Some(Version::V1)
        } else {
            None
        }
    }
}

/// The directory of cgroup `path` (as `/proc/self/cgroup` gives it) in a hierarchy mounted at
/// `mount` from its directory `root`: a container may see a hierarchy mounted from a sub-cgroup.
fn join(mount: &Path, root: &str, path: &str) -> PathBuf {
    let relative = match path.strip_prefix(root) {
        Some(rest) if root != "/" && (rest.is_empty() || rest.starts_with('/')) => rest,
        _ => path,
    };
    mount.join(relative.trim_start_matches('/'))
}

/// The whitespace-separated words of a file; none when it cannot be read.
pub(super) fn read_words(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|t| t.split_whitespace().map(str::to_string).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 /agent /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const PROC_CGROUP: &str = "\
9:name=systemd:/
8:pids:/agent/sub
4:memory:/process_api/abc
2:cpu,cpuacct:/
0::/system.slice/gantry.service
";

    #[test]
    fn finds_every_hierarchy_with_co_mounted_controllers_and_container_roots() {
        let found = Hierarchies::parse(MOUNTINFO, PROC_CGROUP);
        assert_eq!(
            found.v2,
            Some(V2Hierarchy {
                mount: "/sys/fs/cgroup/unified".into(),
                own: "/sys/fs/cgroup/unified/system.slice/gantry.service".into(),
            })
        );
        let v1: Vec<(Vec<String>, PathBuf)> = found.v1.iter().map(|h| (h.controllers.clone(), h.own.clone())).collect();
        assert_eq!(
            v1,
            [
                (vec!["cpu".to_string(), "cpuacct".to_string()], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")),
                (vec!["memory".to_string()], PathBuf::from("/sys/fs/cgroup/memory/process_api/abc")),
                (vec!["pids".to_string()], PathBuf::from("/sys/fs/cgroup/pids/sub")),
            ]
        );
        assert_eq!(found.v1_with("cpuacct").map(|h| h.own.clone()), Some("/sys/fs/cgroup/cpu,cpuacct".into()));
        assert_eq!(found.provider("memory"), Some(Version::V1));
        assert_eq!(found.provider("freezer"), None);
    }

    #[test]
    fn nothing_mounted_is_no_hierarchy() {
        assert_eq!(Hierarchies::parse("", ""), Hierarchies::default());
        assert_eq!(Hierarchies::parse(MOUNTINFO, "garbage"), Hierarchies::default());
    }
}
