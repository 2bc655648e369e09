//! `favordynmods` on the cgroup v2 mount, for fast task launches (`gantry agent
//! --cgroup-favordynmods`).
//!
//! Every process that joins a cgroup by writing `cgroup.procs` takes the kernel's
//! `cgroup_threadgroup_rwsem` for writing, and by default that write lock first waits for an RCU
//! grace period: negligible on an idle host, 10–15 ms on a busy one (both cores compiling). The
//! `favordynmods` mount option of cgroup2 (Linux 6.0+) keeps the lock in the mode where writers
//! do not wait, at the price of slightly slower forks and exits host-wide. The lock is global, so
//! the option also speeds up joining v1 hierarchies. v1 mounts cannot change their options on
//! remount (only the kernel's `cgroup_favordynmods=` boot option can), so the agent sets it on
//! the v2 mount, which hybrid hosts have too.
//!
//! It is a host-wide setting the agent changes only when asked to. A remount replaces every
//! cgroup2 option, so the mount's own options (`nsdelegate`, `memory_recursiveprot`, …) and
//! flags (`nosuid`, `nodev`, `noexec`, …) are given again.

use nix::mount::MsFlags;
use std::path::PathBuf;

/// What [`favor_dynmods`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dynmods {
    /// The v2 mount already has the option.
    AlreadyOn(PathBuf),
    /// The agent remounted the v2 mount with it.
    TurnedOn(PathBuf),
}

/// The cgroup2 mount of `mountinfo` (the text of `/proc/self/mountinfo`): its mount point, its
/// per-mount flags and its filesystem options (without `rw`/`ro`).
fn cgroup2_mount(mountinfo: &str) -> Option<(PathBuf, MsFlags, Vec<String>)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split_whitespace().collect();
        let right: Vec<&str> = right.split_whitespace().collect();
        if right.first() != Some(&"cgroup2") {
            return None;
        }
        let (target, mount_options) = (left.get(4)?, left.get(5)?);
        let mut flags = MsFlags::MS_REMOUNT;
        for option in mount_options.split(',') {
            flags |= match option {
                "ro" => MsFlags::MS_RDONLY,
                "nosuid" => MsFlags::MS_NOSUID,
                "nodev" => MsFlags::MS_NODEV,
                "noexec" => MsFlags::MS_NOEXEC,
                "noatime" => MsFlags::MS_NOATIME,
                "nodiratime" => MsFlags::MS_NODIRATIME,
                "relatime" => MsFlags::MS_RELATIME,
                "strictatime" => MsFlags::MS_STRICTATIME,
                _ => MsFlags::empty(),
            };
        }
        let options = right
            .get(2)
            .map(|o| o.split(',').filter(|o| *o != "rw" && *o != "ro").map(str::to_string).collect())
            .unwrap_or_default();
        Some((unescape(target), flags, options))
    })
}

/// A mountinfo path, whose spaces, tabs, newlines and backslashes are octal escapes.
fn unescape(field: &str) -> PathBuf {
    let mut bytes = Vec::with_capacity(field.len());
    let raw = field.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        let octal = raw.get(i + 1..i + 4).filter(|d| raw[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(digits) => {
                bytes.push(digits.iter().fold(0u8, |n, d| n.wrapping_mul(8).wrapping_add(d - b'0')));
                i += 4;
            }
            None => {
                bytes.push(raw[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes))
}

/// The `mount(2)` flags and data that remount the cgroup2 mount of `mountinfo` with
/// `favordynmods`, keeping everything else; `None` where it already has it.
fn remount_arguments(mountinfo: &str) -> Result<Option<(PathBuf, MsFlags, String)>, String> {
    let (target, flags, mut options) = cgroup2_mount(mountinfo).ok_or_else(|| {
        "no cgroup v2 hierarchy is mounted; favordynmods is a cgroup v2 mount option (on v1 alone, boot the kernel \
         with cgroup_favordynmods=true)"
            .to_string()
    })?;
    if options.iter().any(|o| o == "favordynmods") {
        return Ok(None);
    }
    options.push("favordynmods".to_string());
    Ok(Some((target, flags, options.join(","))))
}

/// Remounts this host's cgroup2 hierarchy with `favordynmods` unless it has it; see the module
/// documentation. Needs root in the host's initial namespaces and Linux 6.0 or later.
pub fn favor_dynmods() -> Result<Dynmods, String> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let Some((target, flags, data)) = remount_arguments(&mountinfo)? else {
        let target = cgroup2_mount(&mountinfo).map(|(target, _, _)| target).unwrap_or_default();
        return Ok(Dynmods::AlreadyOn(target));
    };
    nix::mount::mount(None::<&str>, &target, None::<&str>, flags, Some(data.as_str())).map_err(|errno| {
        format!(
            "remounting {} with {data}: {errno} (it needs root in the host's namespaces and Linux 6.0 or later)",
            target.display()
        )
    })?;
    // An old kernel may take the remount and ignore the option: look again.
    let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    match remount_arguments(&after) {
        Ok(None) => Ok(Dynmods::TurnedOn(target)),
        _ => Err(format!("{} was remounted but does not show favordynmods: this kernel lacks it", target.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
35 31 0:32 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn the_remount_keeps_the_mounts_flags_and_options() {
        let (target, flags, data) = remount_arguments(HYBRID).expect("mounted").expect("not yet on");
        assert_eq!(target, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(
            flags,
            MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME
        );
        assert_eq!(data, "nsdelegate,memory_recursiveprot,favordynmods");
    }

    #[test]
    fn a_mount_with_the_option_is_left_alone_and_v1_alone_says_what_to_do() {
        let on = "40 31 0:37 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,favordynmods\n";
        assert_eq!(remount_arguments(on), Ok(None));
        let error =
            remount_arguments("35 31 0:32 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n").expect_err("no cgroup2");
        assert!(error.contains("cgroup_favordynmods=true"), "{error}");
    }

    #[test]
    fn escaped_mount_points_are_read_back() {
        assert_eq!(unescape(r"/mnt/with\040space"), PathBuf::from("/mnt/with space"));
        assert_eq!(unescape(r"/plain\x"), PathBuf::from(r"/plain\x"));
    }
}
