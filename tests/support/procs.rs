//! Finding the processes a test (or a bench run) started: every live process whose command line
//! or environment names its temporary directory. Shared by `tests/` and `bench/` (which includes
//! this file), so both clean up the same way. Only `std`.

use std::path::Path;

/// The environment of `pid`, one `KEY=value` per line (empty when unreadable).
pub fn environ(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', "\n"))
        .unwrap_or_default()
}

/// Pids of live processes (not this one, not zombies) whose command line or environment names
/// `dir`.
pub fn processes_naming(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().to_string();
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return pids };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        // Zombies have no command line and cannot run anything: skip them.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.rsplit(") ").next().is_some_and(|rest| rest.starts_with('Z')) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).to_string())
            .unwrap_or_default();
        if cmdline.contains(&needle) || environ(pid).contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}
