//! What the lab asks of this machine: prerequisites, mounts, free names and subnets, and the
//! commands it runs.

use super::{LabError, Skip};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

pub(super) const SSHD: &str = "/usr/sbin/sshd";
pub(super) const REGISTRY: &str = "/run/gantry-labs";

/// Checks what a lab needs; returns the cgroup v2 mount point.
pub(super) fn prerequisites() -> Result<PathBuf, Skip> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Skip("test hosts need root (network namespaces, mounts, cgroups)".into()));
    }
    for tool in ["ip", "unshare", "ssh-keygen", "ssh", "nft"] {
        if !in_path(tool) {
            return Err(Skip(format!("`{tool}` is not installed (scripts/test installs it)")));
        }
    }
    if !Path::new(SSHD).exists() {
        return Err(Skip(format!("{SSHD} is missing (install openssh-server)")));
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems.lines().any(|l| l.split_whitespace().last() == Some("overlay")) {
        return Err(Skip("the kernel has no overlayfs".into()));
    }
    let cgroup2 = cgroup2_mount().ok_or_else(|| Skip("no cgroup v2 hierarchy is mounted".into()))?;
    if !cgroup2.join("cgroup.kill").exists() && !has_kill_file(&cgroup2) {
        return Err(Skip("this kernel's cgroup v2 has no cgroup.kill".into()));
    }
    Ok(cgroup2)
}

/// Where the cgroup v2 hierarchy is mounted.
pub(super) fn cgroup2_mount() -> Option<PathBuf> {
    mounts().into_iter().find(|m| m.fstype == "cgroup2").map(|m| PathBuf::from(m.target))
}

/// Whether the v2 hierarchy at `cgroup2` has `cgroup.kill` (Linux 5.14+). Asked once per
/// process: tests start labs in parallel, and two probes made at once used to race (one test's
/// probe directory already existed, or was removed under it, and that test skipped, failing CI).
fn has_kill_file(cgroup2: &Path) -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| probe_kill_file(cgroup2))
}

fn probe_kill_file(cgroup2: &Path) -> bool {
    // The root cgroup has no cgroup.kill; look at a child, making one when there is none.
    let child = std::fs::read_dir(cgroup2)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().is_dir() && e.path().join("cgroup.kill").exists());
    if child {
        return true;
    }
    let probe = cgroup2.join(format!("gantry-lab-probe-{}", std::process::id()));
    let found = std::fs::create_dir(&probe).is_ok() && probe.join("cgroup.kill").exists();
    let _ = std::fs::remove_dir(&probe);
    found
}

fn in_path(tool: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file())).unwrap_or(false)
        || ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().any(|d| Path::new(d).join(tool).is_file())
}

/// Whether `name` may name a host (it is its hostname) or a lab process: 1 to 63 letters,
/// digits, `-` and `.`, starting with a letter or digit.
pub(super) fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
}

#[derive(Debug)]
struct Mount {
    fstype: String,
    target: String,
    options: String,
}

fn mounts() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| Mount { fstype: f[2].into(), target: f[1].into(), options: f[3].into() })
        })
        .collect()
}

/// Shell lines re-mounting, inside a host, the cgroup hierarchies mounted under /sys/fs/cgroup
/// here (`ip netns exec` mounts a fresh /sys, which hides them).
pub(super) fn cgroup_mount_script() -> String {
    let mut script = String::new();
    for m in mounts() {
        if !(m.target == "/sys/fs/cgroup" || m.target.starts_with("/sys/fs/cgroup/")) {
            continue;
        }
        let line = match m.fstype.as_str() {
            "tmpfs" if m.target == "/sys/fs/cgroup" => "mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup\n".to_string(),
            "cgroup" => {
                let opts: Vec<&str> =
                    m.options.split(',').filter(|o| !matches!(*o, "rw" | "ro" | "relatime")).collect();
                format!("mkdir -p {t}\nmount -t cgroup -o {o} cgroup {t}\n", t = m.target, o = opts.join(","))
            }
            "cgroup2" => format!("mkdir -p {t}\nmount -t cgroup2 cgroup2 {t}\n", t = m.target),
            _ => continue,
        };
        script.push_str(&line);
    }
    script
}

/// A fresh prefix whose subnet no interface or route of this machine uses.
pub(super) fn pick_prefix(wanted: Option<u8>) -> Result<(String, u8), String> {
    let links = command_stdout(Command::new("ip").args(["-o", "link", "show"]));
    let used = command_stdout(Command::new("ip").args(["-4", "-o", "addr", "show"]))
        + &command_stdout(Command::new("ip").args(["-4", "route", "show", "table", "all"]));
    for attempt in 0u64..1000 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(attempt);
        hasher.write_u32(std::process::id());
        hasher.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
        let r = (hasher.finish() & 0xffff) as u16;
        let prefix = format!("gt{r:04x}");
        let subnet = wanted.unwrap_or(1 + (r % 254) as u8);
        if used.contains(&format!("10.77.{subnet}.")) {
            if wanted.is_some() {
                return Err(format!("10.77.{subnet}.0/24 is in use on this machine (another lab?)"));
            }
            continue;
        }
        let taken = links.contains(&format!("{prefix}br")) || Path::new(REGISTRY).join(&prefix).exists();
        if !taken {
            return Ok((prefix, subnet));
        }
    }
    Err("no free lab prefix and subnet".to_string())
}

/// Turns IPv6 off on one of the lab's interfaces in the root namespace (where the kernel has it).
pub(super) fn disable_ipv6(link: &str) {
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{link}/disable_ipv6"), "1");
}

/// Runs `cmd`; an error when it cannot start or fails.
pub(super) fn run(cmd: &mut Command) -> Result<(), LabError> {
    let command = format!("{cmd:?}");
    let failed = |message: String| LabError::Command { command, message };
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => return Err(failed(e.to_string())),
    };
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())))
    }
}

/// Runs `cmd`; panics when it cannot start or fails (the test-facing fault injections).
pub(super) fn run_ok(cmd: &mut Command) {
    if let Err(e) = run(cmd) {
        panic!("{e}");
    }
}

pub(super) fn command_stdout(cmd: &mut Command) -> String {
    cmd.output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

pub(super) fn cgroup_empty(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.procs")).map(|s| s.trim().is_empty()).unwrap_or(true)
}

/// Whether `name` is a lab prefix: `gt` and four lowercase hex digits.
pub(super) fn is_prefix(name: &str) -> bool {
    name.len() == 6
        && name.starts_with("gt")
        && name[2..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The lab prefix a name of ours starts with: `<prefix>br`, `<prefix>v<i>`, `<prefix>-h<i>`.
pub(super) fn prefix_of(name: &str) -> Option<&str> {
    let (prefix, rest) = (name.get(..6)?, name.get(6..)?);
    let ours = rest == "br"
        || rest.strip_prefix('v').is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
        || rest.strip_prefix("-h").is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()));
    (is_prefix(prefix) && ours).then_some(prefix)
}

pub(super) fn netns_names() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

pub(super) fn link_names() -> Vec<String> {
    command_stdout(Command::new("ip").args(["-o", "link", "show"]))
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_lab_are_recognised_and_others_are_not() {
        assert_eq!(prefix_of("gt12abbr"), Some("gt12ab"));
        assert_eq!(prefix_of("gt12abv17"), Some("gt12ab"));
        assert_eq!(prefix_of("gt12ab-h3"), Some("gt12ab"));
        assert_eq!(prefix_of("gt12abv"), None);
        assert_eq!(prefix_of("gt12ABbr"), None);
        assert_eq!(prefix_of("eth0"), None);
        assert_eq!(prefix_of("gt12ab-hx"), None);
    }

    #[test]
    fn host_names_are_hostnames() {
        for good in ["host-0", "i-0123abcd", "web.lab", "A1"] {
            assert!(valid_name(good), "{good}");
        }
        let long = "a".repeat(64);
        for bad in ["", "-x", ".x", "a b", "a_b", "x'y", "a/b", long.as_str()] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
