//! Capabilities of a container task: Docker's default set for root inside the container, nothing
//! for any other user (the kernel clears them at `setuid`), and a bounding set cut down to the
//! default set so no exec can regain more. Raw `prctl`/`capset`, called between fork and exec.

/// Docker's default capabilities (moby `oci/caps/defaults.go`), by number (linux/capability.h).
pub const DEFAULT: [u32; 14] = [
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
    13, // CAP_NET_RAW
    18, // CAP_SYS_CHROOT
    27, // CAP_MKNOD
    29, // CAP_AUDIT_WRITE
    31, // CAP_SETFCAP
];

/// The highest capability number of this kernel (`/proc/sys/kernel/cap_last_cap`); read before
/// the fork.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|t| t.trim().parse().ok()).unwrap_or(40)
}

/// The default set as a 64-bit mask.
pub fn default_mask() -> u64 {
    DEFAULT.iter().fold(0, |mask, cap| mask | (1 << cap))
}

/// Drops every capability outside [`DEFAULT`] from the bounding set and clears the ambient set.
/// Async-signal-safe (syscalls only).
pub fn drop_bounding(last_cap: u32) -> std::io::Result<()> {
    let mask = default_mask();
    for cap in 0..=last_cap {
        if mask & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) } != 0 {
            let error = std::io::Error::last_os_error();
            // EINVAL: a capability this kernel does not know.
            if error.raw_os_error() != Some(libc::EINVAL) {
                return Err(error);
            }
        }
    }
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) };
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets this thread's effective and permitted capabilities to the default set (inheritable:
/// none). For a root task after the switch of user; async-signal-safe.
pub fn set_default() -> std::io::Result<()> {
    let mask = default_mask();
    let header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    let low = CapData { effective: mask as u32, permitted: mask as u32, inheritable: 0 };
    let high = CapData { effective: (mask >> 32) as u32, permitted: (mask >> 32) as u32, inheritable: 0 };
    let data = [low, high];
    // SAFETY: header and data are valid for the call; capset reads two CapData for version 3.
    let result = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if result != 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

/// Reads the effective set of process `pid` from `/proc/<pid>/status` (`CapEff`), for tests and
/// `task show`.
pub fn effective_of(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_mask_holds_exactly_dockers_fourteen() {
        let mask = default_mask();
        assert_eq!(mask.count_ones(), 14);
        assert_eq!(mask & (1 << 21), 0, "no CAP_SYS_ADMIN");
        assert_ne!(mask & (1 << 10), 0, "CAP_NET_BIND_SERVICE");
        assert!(last_cap() >= 31);
        assert!(effective_of(std::process::id() as i32).is_some());
    }
}
