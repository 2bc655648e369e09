//! Entering a container, in the task's child process between fork and exec.
//!
//! [`Prepared::new`] does everything that allocates or may fail slowly (paths, mount options,
//! opening the bind sources) in the executor before the fork; [`enter`] then runs only system
//! calls: new mount, uts and ipc namespaces (the pid namespace was made by the executor with
//! [`new_pid_namespace`], so the child is its pid 1), the overlay, `pivot_root` into it, `/proc`,
//! `/sys`, a fresh `/dev`, the sandbox and the volumes (detached copies of the host paths made
//! with `open_tree` before the switch and attached with `move_mount` after it, so a target is
//! resolved inside the container and no symlink in the image can point a mount at the host),
//! the host name, capabilities, `no_new_privs` and the user.
//!
//! Pid 1 of a namespace ignores every signal it has no handler for, so the child does not exec
//! the task itself: it forks once more, and while the grandchild goes on to exec the task, the
//! child stays behind as a minimal init ([`init_loop`]) that forwards signals to the task, reaps
//! orphans and exits with the task's status (128 + signal for a killed task, as a shell does).

use super::ContainerLaunch;
use super::caps;
use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

/// Host device nodes every container gets in its `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// Host files the container sees read-only (host network: the same names and resolvers).
const HOST_FILES: [&str; 2] = ["/etc/hosts", "/etc/resolv.conf"];

/// Makes a new pid namespace for the executor's next child (the task's init). Call once, in the
/// executor, before spawning the task.
pub fn new_pid_namespace() -> io::Result<()> {
    // SAFETY: unshare with a flag only.
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// One bind mount, ready: the host source, the target inside the new root, and a slot for the
/// detached copy of the source that the child makes (written between fork and exec, in memory
/// allocated before the fork).
#[derive(Debug)]
struct Bind {
    source: CString,
    target: CString,
    is_dir: bool,
    read_only: bool,
    tree: AtomicI32,
}

/// `open_tree` flags (linux/mount.h): a detached copy of the tree, closed on exec.
const OPEN_TREE_CLONE: libc::c_uint = 1;
/// `move_mount` flag: the source is the descriptor itself.
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// A container's set-up with every string and descriptor made before the fork.
#[derive(Debug)]
pub struct Prepared {
    layer_parent: CString,
    overlay_options: CString,
    merged: CString,
    hostname: CString,
    working_dir: CString,
    binds: Vec<Bind>,
    uid: u32,
    gid: u32,
    last_cap: u32,
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path holds a NUL byte"))
}

fn source_kind(path: &Path) -> io::Result<bool> {
    let metadata = std::fs::metadata(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot mount {} into the container: {e}", path.display())))?;
    Ok(metadata.is_dir())
}

impl Prepared {
    /// Prepares `launch`'s set-up: creates the overlay's directories, opens every bind source.
    pub fn new(launch: &ContainerLaunch) -> io::Result<Self> {
        for dir in [&launch.upper, &launch.work, &launch.merged] {
            std::fs::create_dir_all(dir)?;
        }
        let parent = launch.layers.first().and_then(|l| l.parent()).unwrap_or(Path::new("/"));
        // Lower dirs are named relative to their common parent (the mount's options must fit in
        // a page), top layer first as overlayfs wants them.
        let mut lower = Vec::new();
        for layer in launch.layers.iter().rev() {
            let relative = match layer.parent() {
                Some(p) if p == parent => layer.file_name().map(|n| n.as_bytes().to_vec()),
                _ => None,
            };
            if !lower.is_empty() {
                lower.push(b':');
            }
            lower.extend(relative.unwrap_or_else(|| layer.as_os_str().as_bytes().to_vec()));
        }
        if launch.layers.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the image has no layers"));
        }
        let mut options = b"lowerdir=".to_vec();
        options.extend(lower);
        options.extend(b",upperdir=");
        options.extend(launch.upper.as_os_str().as_bytes());
        options.extend(b",workdir=");
        options.extend(launch.work.as_os_str().as_bytes());
        if options.len() >= 4000 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the image has too many layers to mount"));
        }
        let mut binds = Vec::new();
        let mut add = |source: &Path, target: &str, read_only: bool| -> io::Result<()> {
            let is_dir = source_kind(source)?;
            binds.push(Bind {
                source: cstring(source.as_os_str().as_bytes())?,
                target: cstring(target.as_bytes())?,
                is_dir,
                read_only,
                tree: AtomicI32::new(-1),
            });
            Ok(())
        };
        for device in DEVICES {
            let host = Path::new("/dev").join(device);
            if host.exists() {
                add(&host, &format!("/dev/{device}"), false)?;
            }
        }
        for device in &launch.devices {
            add(device, &device.to_string_lossy(), false)?;
        }
        for file in HOST_FILES {
            if Path::new(file).is_file() {
                add(Path::new(file), file, true)?;
            }
        }
        for mount in &launch.mounts {
            add(&mount.source, &mount.target, mount.read_only)?;
        }
        Ok(Self {
            layer_parent: cstring(parent.as_os_str().as_bytes())?,
            overlay_options: cstring(&options)?,
            merged: cstring(launch.merged.as_os_str().as_bytes())?,
            hostname: cstring(launch.hostname.as_bytes())?,
            working_dir: cstring(launch.working_dir.as_bytes())?,
            binds,
            uid: launch.uid,
            gid: launch.gid,
            last_cap: caps::last_cap(),
        })
    }
}

/// A failed step of [`enter`]: which one, and the errno.
#[derive(Debug, Clone, Copy)]
pub struct StepError {
    /// The step.
    pub step: &'static str,
    /// The errno.
    pub errno: i32,
}

impl From<StepError> for io::Error {
    fn from(e: StepError) -> Self {
        io::Error::from_raw_os_error(e.errno)
    }
}

fn check(step: &'static str, result: libc::c_int) -> Result<(), StepError> {
    if result < 0 {
        Err(StepError { step, errno: io::Error::last_os_error().raw_os_error().unwrap_or(0) })
    } else {
        Ok(())
    }
}

fn mount(
    step: &'static str,
    source: &CStr,
    target: &CStr,
    fstype: &CStr,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<(), StepError> {
    let data = data.map_or(std::ptr::null(), |d| d.as_ptr().cast());
    // SAFETY: every pointer is a valid C string for the call (or null for data).
    check(step, unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, data) })
}

/// `mkdir -p` of an absolute path, without allocating: the path is copied into a stack buffer.
fn mkdir_p(path: &CStr, mode: libc::mode_t) -> Result<(), StepError> {
    let bytes = path.to_bytes();
    let mut buffer = [0u8; 4096];
    if bytes.len() >= buffer.len() {
        return Err(StepError { step: "mkdir (path too long)", errno: libc::ENAMETOOLONG });
    }
    buffer[..bytes.len()].copy_from_slice(bytes);
    for end in 1..=bytes.len() {
        if end == bytes.len() || bytes[end] == b'/' {
            let saved = buffer[end];
            buffer[end] = 0;
            // SAFETY: the buffer is NUL-terminated at `end`.
            let result = unsafe { libc::mkdir(buffer.as_ptr().cast(), mode) };
            buffer[end] = saved;
            if result != 0 {
                let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
                if errno != libc::EEXIST {
                    return Err(StepError { step: "mkdir", errno });
                }
            }
        }
    }
    Ok(())
}

/// Creates an empty file to bind a file onto (its parent first).
fn touch(path: &CStr) -> Result<(), StepError> {
    let bytes = path.to_bytes();
    if let Some(slash) = bytes.iter().rposition(|b| *b == b'/')
        && slash > 0
    {
        let mut buffer = [0u8; 4096];
        if slash >= buffer.len() {
            return Err(StepError { step: "touch (path too long)", errno: libc::ENAMETOOLONG });
        }
        buffer[..slash].copy_from_slice(&bytes[..slash]);
        // SAFETY: NUL-terminated by the zeroed buffer.
        mkdir_p(unsafe { CStr::from_ptr(buffer.as_ptr().cast()) }, 0o755)?;
    }
    // SAFETY: a valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644) };
    check("create a mount point", fd)?;
    // SAFETY: a descriptor we just opened.
    unsafe { libc::close(fd) };
    Ok(())
}

/// Sets up the container in the task's child (see the module documentation). Returns in the
/// process that is to exec the task; the namespace's init never returns. Only system calls: no
/// allocation, no locks.
pub fn enter(prepared: &Prepared) -> Result<(), StepError> {
    // SAFETY (whole function): raw system calls on valid C strings and stack buffers.
    unsafe {
        check("unshare", libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC))?;
    }
    mount("make / private", c"none", c"/", c"", libc::MS_REC | libc::MS_PRIVATE, None)?;
    // SAFETY: valid C strings.
    unsafe { check("chdir to the layers", libc::chdir(prepared.layer_parent.as_ptr()))? };
    mount("mount the overlay", c"overlay", &prepared.merged, c"overlay", 0, Some(&prepared.overlay_options))?;
    for bind in &prepared.binds {
        let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint;
        // SAFETY: a valid C string; the result is a descriptor or -1.
        let tree = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, bind.source.as_ptr(), flags) };
        check("copy a mount source", tree as libc::c_int)?;
        bind.tree.store(tree as i32, Ordering::Relaxed);
    }
    // SAFETY: valid C strings; pivot_root(".", ".") stacks the old root under the new one, and
    // the detach below removes it (the way runc does it).
    unsafe {
        check("chdir to the root", libc::chdir(prepared.merged.as_ptr()))?;
        check("pivot_root", libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int)?;
    }
    mount("keep the old root private", c"none", c".", c"", libc::MS_REC | libc::MS_SLAVE, None)?;
    // SAFETY: valid C strings.
    unsafe {
        check("detach the old root", libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
        check("chdir /", libc::chdir(c"/".as_ptr()))?;
    }
    let quiet = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mkdir_p(c"/proc", 0o555)?;
    mount("mount /proc", c"proc", c"/proc", c"proc", quiet, None)?;
    mkdir_p(c"/sys", 0o555)?;
    mount("mount /sys", c"sysfs", c"/sys", c"sysfs", quiet | libc::MS_RDONLY, None)?;
    mkdir_p(c"/dev", 0o755)?;
    mount("mount /dev", c"tmpfs", c"/dev", c"tmpfs", libc::MS_NOSUID, Some(c"mode=755,size=65536k"))?;
    mkdir_p(c"/dev/shm", 0o1777)?;
    mount("mount /dev/shm", c"shm", c"/dev/shm", c"tmpfs", quiet, Some(c"mode=1777,size=65536k"))?;
    mkdir_p(c"/dev/pts", 0o755)?;
    mount(
        "mount /dev/pts",
        c"devpts",
        c"/dev/pts",
        c"devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some(c"newinstance,ptmxmode=0666,mode=620"),
    )?;
    // SAFETY: valid C strings.
    unsafe {
        for (target, link) in [
            (c"/proc/self/fd", c"/dev/fd"),
            (c"/proc/self/fd/0", c"/dev/stdin"),
            (c"/proc/self/fd/1", c"/dev/stdout"),
            (c"/proc/self/fd/2", c"/dev/stderr"),
            (c"pts/ptmx", c"/dev/ptmx"),
        ] {
            libc::symlink(target.as_ptr(), link.as_ptr());
        }
    }
    for bind in &prepared.binds {
        if bind.is_dir {
            mkdir_p(&bind.target, 0o755)?;
        } else {
            touch(&bind.target)?;
        }
        // SAFETY: a descriptor from open_tree and valid C strings.
        let moved = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                bind.tree.load(Ordering::Relaxed),
                c"".as_ptr(),
                libc::AT_FDCWD,
                bind.target.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        check("bind a volume", moved as libc::c_int)?;
        if bind.read_only {
            let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
            mount("make a volume read-only", c"none", &bind.target, c"", flags, None)?;
        }
    }
    // SAFETY: valid C strings and a stack array.
    unsafe {
        let name = prepared.hostname.to_bytes();
        check("sethostname", libc::sethostname(name.as_ptr().cast(), name.len()))?;
        mkdir_p(&prepared.working_dir, 0o755)?;
        caps::drop_bounding(prepared.last_cap)
            .map_err(|e| StepError { step: "drop capabilities", errno: e.raw_os_error().unwrap_or(0) })?;
        check("no_new_privs", libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        let groups = [prepared.gid];
        check("setgroups", libc::setgroups(1, groups.as_ptr()))?;
        check("setgid", libc::setgid(prepared.gid))?;
        check("setuid", libc::setuid(prepared.uid))?;
        if prepared.uid == 0 {
            caps::set_default().map_err(|e| StepError { step: "capset", errno: e.raw_os_error().unwrap_or(0) })?;
        }
        check("chdir to the working directory", libc::chdir(prepared.working_dir.as_ptr()))?;
        let child = libc::fork();
        check("fork the task", child)?;
        if child > 0 {
            init_loop(child);
        }
    }
    Ok(())
}

/// Pid 1 of the container: forwards signals to the task, reaps every child, and exits with the
/// task's status. Never returns.
fn init_loop(task: libc::pid_t) -> ! {
    // SAFETY: system calls on stack values only; `_exit` ends the process without running
    // anything of the parent's.
    unsafe {
        // Nothing of the executor's stays open here (std's exec-status pipe among them: holding
        // it would make the executor wait for this process).
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        loop {
            let signal = libc::sigwaitinfo(&set, std::ptr::null_mut());
            if signal == libc::SIGCHLD || signal < 0 {
                loop {
                    let mut status = 0;
                    let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                    if pid == task {
                        let code = if libc::WIFEXITED(status) {
                            libc::WEXITSTATUS(status)
                        } else {
                            128 + libc::WTERMSIG(status)
                        };
                        libc::_exit(code);
                    }
                    if pid <= 0 {
                        break;
                    }
                }
            } else if signal > 0 {
                libc::kill(task, signal);
            }
        }
    }
}

/// Writes `gantry: container set-up failed at <step>: errno <n>` to the task's stderr (fd 2)
/// without allocating, so the reason of a failed start reaches `task show` through the sandbox.
pub fn report(error: StepError) {
    let mut buffer = [0u8; 256];
    let mut len = 0;
    let mut push = |bytes: &[u8]| {
        for b in bytes {
            if len < buffer.len() {
                buffer[len] = *b;
                len += 1;
            }
        }
    };
    push(b"gantry: container set-up failed at ");
    push(error.step.as_bytes());
    push(b": errno ");
    let mut digits = [0u8; 12];
    let mut n = error.errno.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    push(&digits[i..]);
    push(b"\n");
    // SAFETY: writing a stack buffer to fd 2.
    unsafe { libc::write(2, buffer.as_ptr().cast(), len) };
}
