//! The per-task executor (Mesos' command executor): a small supervisor process between the agent
//! and the task, so a task outlives agent restarts and its exit status is never lost.
//!
//! It runs as `gantry executor --sandbox DIR`, started by the agent, or as `gantry executor
//! --standby`, started by the agent before there is a task and told the sandbox on stdin
//! ([`run_standby`]). It is synchronous: no async
//! runtime, no threads, no logging framework. It reads `launch.json`, puts the task's limits on
//! its cgroups ([`crate::cgroup`], recorded in `limits.json`), starts the task in its own
//! process group and cgroups, records pids in `executor.json`, turns a SIGTERM into "SIGTERM the
//! task's group, SIGKILL it after the grace period", stops the task when the OOM killer acted in
//! its cgroup or its sandbox uses more disk than allowed, and when the task exits kills what is
//! left of its group and cgroups and records the outcome in `exit.json`, its last act. It must
//! never talk to the master or touch other sandboxes.

use crate::cgroup::TaskCgroup;
use crate::cgroup::limits::{self, AppliedLimit, Enforcement, LimitExceeded, LimitKind, Limits, LimitsRecord};
use crate::container::ContainerLaunch;
use crate::container::enter::{self, Prepared};
use crate::process;
use crate::sandbox::{self, ExecutorInfo, ExecutorLaunch, ExitInfo, KillRequest};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why the executor could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// A sandbox file could not be read or written.
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    /// `launch.json` is missing.
    #[error("{0} does not exist")]
    NoLaunch(String),
    /// A system call failed.
    #[error("{call} failed: {source}")]
    Sys {
        /// Which call.
        call: &'static str,
        /// Why.
        source: Errno,
    },
}

/// Runs the executor for the sandbox `sandbox` until its task has exited; returns the process
/// exit code (0 once `exit.json` is written).
pub fn run_executor(sandbox: &Path) -> i32 {
    match supervise(sandbox) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("gantry executor: {error}");
            1
        }
    }
}

/// Runs the executor of a sandbox the agent names later: blocks until one line on stdin names
/// it, then sends stdin to `/dev/null` and stderr to the sandbox's `executor.log` (where an
/// executor started with `--sandbox` has them from the agent) and runs as [`run_executor`].
/// EOF before a line (the agent gave up this standby, or ended) exits 0 having done nothing.
pub fn run_standby() -> i32 {
    use std::io::BufRead as _;
    use std::os::unix::ffi::OsStringExt as _;
    let mut line = Vec::new();
    if let Err(error) = std::io::stdin().lock().read_until(b'\n', &mut line) {
        eprintln!("gantry executor: cannot read the sandbox from stdin: {error}");
        return 1;
    }
    if line.pop() != Some(b'\n') || line.is_empty() {
        return 0;
    }
    let sandbox = std::path::PathBuf::from(std::ffi::OsString::from_vec(line));
    if let Ok(null) = File::open("/dev/null") {
        // SAFETY: dup2 onto fd 0, which this process owns; `null` is closed when dropped.
        unsafe { libc::dup2(null.as_raw_fd(), libc::STDIN_FILENO) };
    }
    match open_log(&sandbox) {
        // SAFETY: as above, onto fd 2.
        Ok(log) => unsafe {
            libc::dup2(log.as_raw_fd(), libc::STDERR_FILENO);
        },
        Err(error) => eprintln!("gantry executor: cannot open the log of {}: {error}", sandbox.display()),
    }
    run_executor(&sandbox)
}

fn supervise(sandbox: &Path) -> Result<(), ExecutorError> {
    let launch_path = sandbox.join(sandbox::LAUNCH_FILE);
    let launch: ExecutorLaunch =
        sandbox::read_json(&launch_path)?.ok_or_else(|| ExecutorError::NoLaunch(launch_path.display().to_string()))?;
    // Leave the agent's session so a signal to the agent's terminal or group does not reach us;
    // it fails only if we already lead a group, which is fine.
    let _ = nix::unistd::setsid();
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGCHLD] {
        signals.add(signal);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None)
        .map_err(|source| ExecutorError::Sys { call: "sigprocmask", source })?;

    let (cgroup, cgroup_procs) = apply_limits(&launch, sandbox);
    let container = match launch.container.as_ref().map(prepare_container).transpose() {
        Ok(container) => container,
        Err(error) => {
            if let Some(cgroup) = &cgroup {
                let _ = cgroup.kill_and_remove(Duration::from_secs(1));
            }
            return write_start_failure(sandbox, &format!("cannot set up the container: {error}"));
        }
    };
    let setup = ChildSetup { cgroup_procs, container };
    let child = match build_command(&launch, sandbox).and_then(|mut command| {
        setup.install(&mut command);
        command.spawn()
    }) {
        Ok(child) => child,
        Err(error) => {
            let error = match container_failure(sandbox) {
                Some(step) => format!("{step} ({error})"),
                None => error.to_string(),
            };
            if let Some(cgroup) = &cgroup {
                let _ = cgroup.kill_and_remove(Duration::from_secs(1));
            }
            return write_start_failure(sandbox, &format!("cannot start the task: {error}"));
        }
    };
    let task_pid = child.id() as i32;
    // The child is reaped with waitpid below; the std handle must not wait on it.
    drop(child);
    let info = ExecutorInfo {
        executor_pid: std::process::id() as i32,
        executor_start_time: process::stat(std::process::id() as i32).map(|s| s.start_time).unwrap_or(0),
        task_pid,
        task_pgid: task_pid,
        task_start_time: process::stat(task_pid).map(|s| s.start_time).unwrap_or(0),
    };
    // Without fsync, like the agent's launch-path files: a machine crash ends the task too, and
    // an agent restart reads the page cache.
    sandbox::write_json_volatile(&sandbox.join(sandbox::EXECUTOR_FILE), &info)?;
    tell_the_agent_it_runs();

    let mut ended = wait_for_task(task_pid, cgroup.as_ref(), &signals, sandbox, &launch)?;
    // An OOM kill that ended the task at once is seen only now; the cgroup still tells.
    if ended.limit_exceeded.is_none() && !ended.killed_on_request {
        ended.limit_exceeded = memory_exceeded(&launch.limits, cgroup.as_ref());
    }
    // Whatever the task left behind goes with it: its group, and anything that escaped the group.
    let _ = process::signal_group(task_pid, Signal::SIGKILL);
    if let Some(cgroup) = &cgroup
        && !cgroup.kill_and_remove(Duration::from_secs(5))
    {
        eprintln!("gantry executor: the task's cgroups are not empty after SIGKILL: {:?}", cgroup.dirs());
    }
    let (code, signal) = match ended.status {
        WaitStatus::Exited(_, code) => (Some(code), None),
        WaitStatus::Signaled(_, signal, _) => (None, Some(signal as i32)),
        _ => (None, None),
    };
    let exit = ExitInfo {
        code,
        signal,
        killed_on_request: ended.killed_on_request,
        error: None,
        limit_exceeded: ended.limit_exceeded,
        finished_at: gantry_api::now_millis(),
    };
    sandbox::write_json(&sandbox.join(sandbox::EXIT_FILE), &exit)?;
    Ok(())
}

/// Makes the container's pid namespace (the task's init is the executor's next child) and
/// prepares the rest of its set-up.
fn prepare_container(container: &ContainerLaunch) -> std::io::Result<Prepared> {
    enter::new_pid_namespace()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot make a pid namespace: {e}")))?;
    Prepared::new(container)
}

/// The container set-up step that failed in the child, from the line [`enter::report`] left in
/// the task's stderr.
fn container_failure(sandbox: &Path) -> Option<String> {
    let stderr = std::fs::read_to_string(sandbox.join("stderr")).ok()?;
    let line = stderr.lines().rev().find(|l| l.starts_with("gantry: container set-up failed at "))?;
    let line = line.trim_start_matches("gantry: ");
    // "errno N" in words.
    match line.rsplit_once(": errno ") {
        Some((step, errno)) => {
            let errno = errno.trim().parse().unwrap_or(0);
            Some(format!("{step}: {}", std::io::Error::from_raw_os_error(errno)))
        }
        None => Some(line.to_string()),
    }
}

/// Records that the task could not be started.
fn write_start_failure(sandbox: &Path, error: &str) -> Result<(), ExecutorError> {
    eprintln!("gantry executor: {error}");
    let exit = ExitInfo {
        code: None,
        signal: None,
        killed_on_request: false,
        error: Some(error.to_string()),
        limit_exceeded: None,
        finished_at: gantry_api::now_millis(),
    };
    sandbox::write_json(&sandbox.join(sandbox::EXIT_FILE), &exit)?;
    Ok(())
}

/// Creates the task's cgroups with its limits and records what is enforced (`cgroup`,
/// `limits.json`, and a line in the executor log for each limit that is not). Returns the
/// cgroups with their `cgroup.procs` opened for the child to join; `None` where no cgroup can
/// be made — the task then runs without, stopped through its process group.
fn apply_limits(launch: &ExecutorLaunch, sandbox: &Path) -> (Option<TaskCgroup>, Vec<File>) {
    let limits = &launch.limits;
    let created = TaskCgroup::create(&launch.task.task_id, limits).and_then(|(cgroup, applied)| {
        match cgroup.record(sandbox).and_then(|()| cgroup.procs_files()) {
            Ok(procs) => Ok((cgroup, procs, applied)),
            Err(error) => {
                let _ = cgroup.kill_and_remove(Duration::from_secs(1));
                Err(format!("the task cannot join its cgroups: {error}"))
            }
        }
    });
    let (cgroup, procs, mut applied) = match created {
        Ok((cgroup, procs, applied)) => (Some(cgroup), procs, applied),
        Err(reason) => {
            eprintln!("gantry executor: no task cgroup ({reason}); stopping relies on the process group");
            let _ = std::fs::remove_file(sandbox.join(crate::cgroup::CGROUP_FILE));
            (None, Vec::new(), limits.not_enforced(&reason))
        }
    };
    if let Some(disk) = limits.disk_bytes {
        applied.push(AppliedLimit {
            kind: LimitKind::Disk,
            value: limits::mib(disk),
            enforcement: Enforcement::DiskWatch { interval_ms: launch.disk_check_interval_ms },
        });
    }
    let record =
        LimitsRecord { cgroups: cgroup.as_ref().map(|c| c.dirs().to_vec()).unwrap_or_default(), limits: applied };
    for limit in record.not_enforced() {
        eprintln!("gantry executor: limit {limit}");
    }
    if let Err(error) = sandbox::write_json_volatile(&sandbox.join(limits::LIMITS_FILE), &record) {
        eprintln!("gantry executor: cannot record the task's limits: {error}");
    }
    (cgroup, procs)
}

/// What the task's process does between fork and exec, all prepared before the fork so that the
/// child makes only async-signal-safe calls. In this order:
/// 1. join the task's cgroups (write `0` to each `cgroup.procs`), so its limits hold before it
///    can allocate or fork; a failure fails the start rather than run the task unlimited;
/// 2. for a container, enter it ([`enter::enter`]: namespaces, root, capabilities, user, and
///    a minimal init as pid 1) — after joining, so the task cannot leave its cgroups;
/// 3. clear the signal mask: the executor blocks SIGTERM, SIGINT, SIGHUP and SIGCHLD to wait
///    for them synchronously, and a blocked mask survives exec, so the task would never see the
///    SIGTERM of a kill.
#[derive(Debug)]
struct ChildSetup {
    /// The `cgroup.procs` files of the task's cgroups, opened for writing.
    cgroup_procs: Vec<File>,
    /// The container's set-up, for a container task.
    container: Option<Prepared>,
}

impl ChildSetup {
    /// Makes `command` run the set-up in its child.
    fn install(self, command: &mut Command) {
        let empty = SigSet::empty();
        let procs = self.cgroup_procs;
        let container = self.container;
        // SAFETY: the closure runs between fork and exec and calls only write(2) on descriptors
        // opened before the fork and sigprocmask, both async-signal-safe; it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                for file in &procs {
                    if libc::write(file.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(container) = &container
                    && let Err(error) = enter::enter(container)
                {
                    enter::report(error);
                    return Err(error.into());
                }
                sigprocmask(SigmaskHow::SIG_SETMASK, Some(&empty), None).map_err(std::io::Error::from)
            });
        }
    }
}

/// The task's command: its program, arguments, environment, user, working directory and
/// output, in a process group of its own. What happens in the child before exec is
/// [`ChildSetup`]'s.
fn build_command(launch: &ExecutorLaunch, sandbox: &Path) -> std::io::Result<Command> {
    if let Some(container) = &launch.container {
        return container_command(container, sandbox);
    }
    let mut command = match (&launch.task.cmd, &launch.task.args) {
        (Some(cmd), _) => {
            let mut command = Command::new("/bin/sh");
            command.arg("-c").arg(cmd);
            command
        }
        (None, Some(args)) if !args.is_empty() => {
            let mut command = Command::new(&args[0]);
            command.args(&args[1..]);
            command
        }
        _ => return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the launch has neither cmd nor args")),
    };
    let output = |name: &str| OpenOptions::new().create(true).append(true).open(sandbox.join(name));
    if let Some((uid, gid)) = launch.run_as {
        // std drops supplementary groups (setgroups) when root switches to a uid.
        command.uid(uid).gid(gid);
    }
    command
        .current_dir(sandbox)
        .envs(&launch.env)
        .stdin(Stdio::null())
        .stdout(output("stdout")?)
        .stderr(output("stderr")?)
        .process_group(0);
    Ok(command)
}

/// A container task's command: the planned program (absolute inside the container) with only the
/// planned environment; the user and the working directory are set by [`enter::enter`].
fn container_command(container: &ContainerLaunch, sandbox: &Path) -> std::io::Result<Command> {
    let (program, args) = container
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "the container has no command"))?;
    let output = |name: &str| OpenOptions::new().create(true).append(true).open(sandbox.join(name));
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(sandbox)
        .env_clear()
        .envs(&container.env)
        .stdin(Stdio::null())
        .stdout(output("stdout")?)
        .stderr(output("stderr")?)
        .process_group(0);
    Ok(command)
}

/// How the task ended.
#[derive(Debug)]
struct Ended {
    status: WaitStatus,
    killed_on_request: bool,
    limit_exceeded: Option<LimitExceeded>,
}

/// A stop under way: SIGTERM sent, SIGKILL due at `sigkill_at`.
#[derive(Debug, Clone, Copy)]
struct Stopping {
    sigkill_at: Instant,
    sigkill_sent: bool,
}

/// Tells the agent that started this executor that `executor.json` is written: a line on
/// stdout, which the agent reads from a pipe rather than polling the file. Stdout then goes to
/// `/dev/null`, so nothing later writes into a pipe whose reader is gone. An executor started
/// otherwise (stdout a file or a terminal) writes the line there; an agent that restarted has
/// closed the pipe, and the write fails harmlessly (std ignores SIGPIPE).
fn tell_the_agent_it_runs() {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(b"running\n").and_then(|()| stdout.flush());
    if let Ok(null) = OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 onto fd 1, which this process owns; `null` is closed when dropped.
        unsafe { libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO) };
    }
}

/// Sends SIGTERM to the task's group and cgroups; SIGKILL follows after `grace`.
fn begin_stop(task_pid: i32, cgroup: Option<&TaskCgroup>, grace: Duration, current: Option<Stopping>) -> Stopping {
    let _ = process::signal_group(task_pid, Signal::SIGTERM);
    if let Some(cgroup) = cgroup {
        cgroup.signal_all(Signal::SIGTERM);
    }
    let sigkill_at = Instant::now() + grace;
    match current {
        Some(stopping) if stopping.sigkill_sent || stopping.sigkill_at <= sigkill_at => stopping,
        _ => Stopping { sigkill_at, sigkill_sent: false },
    }
}

/// Waits until the task exits, forwarding a kill request from the agent and stopping the task
/// when it goes over its memory (an OOM kill in its cgroup) or disk limit.
fn wait_for_task(
    task_pid: i32,
    cgroup: Option<&TaskCgroup>,
    signals: &SigSet,
    sandbox: &Path,
    launch: &ExecutorLaunch,
) -> Result<Ended, ExecutorError> {
    let mut stopping: Option<Stopping> = None;
    let mut killed_on_request = false;
    let mut limit_exceeded = None;
    let disk_interval = Duration::from_millis(launch.disk_check_interval_ms.max(10));
    let mut next_disk_check = launch.limits.disk_bytes.map(|_| Instant::now() + disk_interval);
    loop {
        match waitpid(Pid::from_raw(task_pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                return Ok(Ended { status, killed_on_request, limit_exceeded });
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(source) => return Err(ExecutorError::Sys { call: "waitpid", source }),
        }
        if limit_exceeded.is_none() && !killed_on_request {
            let disk = match (next_disk_check, launch.limits.disk_bytes) {
                (Some(due), Some(limit)) if Instant::now() >= due => {
                    next_disk_check = Some(Instant::now() + disk_interval);
                    let used = crate::disk_usage::usage_bytes(sandbox);
                    (used > limit).then_some(LimitExceeded::Disk { used_bytes: used, limit_bytes: limit })
                }
                _ => None,
            };
            limit_exceeded = disk.or_else(|| memory_exceeded(&launch.limits, cgroup));
            if let Some(limit) = &limit_exceeded {
                eprintln!("gantry executor: stopping the task: {limit}");
                // Past its memory, the task is already broken: no grace.
                let grace = match limit {
                    LimitExceeded::Memory { .. } => Duration::ZERO,
                    LimitExceeded::Disk { .. } => grace_period(launch.task.kill_grace_period_secs),
                };
                stopping = Some(begin_stop(task_pid, cgroup, grace, stopping));
            }
        }
        if let Some(stop) = &mut stopping
            && !stop.sigkill_sent
            && Instant::now() >= stop.sigkill_at
        {
            let _ = process::signal_group(task_pid, Signal::SIGKILL);
            if let Some(cgroup) = cgroup {
                cgroup.signal_all(Signal::SIGKILL);
            }
            stop.sigkill_sent = true;
        }
        let mut timeout = Duration::from_secs(1);
        if let Some(stop) = stopping.filter(|s| !s.sigkill_sent) {
            timeout = timeout.min(stop.sigkill_at.saturating_duration_since(Instant::now()));
        }
        if let Some(due) = next_disk_check.filter(|_| limit_exceeded.is_none()) {
            timeout = timeout.min(due.saturating_duration_since(Instant::now()));
        }
        match wait_signal(signals, timeout) {
            Some(Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP) if !killed_on_request => {
                killed_on_request = true;
                let grace = sandbox::read_json::<KillRequest>(&sandbox.join(sandbox::KILL_FILE))
                    .ok()
                    .flatten()
                    .map_or(launch.task.kill_grace_period_secs, |k| k.grace_period_secs);
                stopping = Some(begin_stop(task_pid, cgroup, grace_period(grace), stopping));
            }
            _ => {}
        }
    }
}

/// A grace period in seconds, bounded to a day.
fn grace_period(secs: f64) -> Duration {
    Duration::from_secs_f64(if secs.is_finite() { secs.clamp(0.0, 86_400.0) } else { 0.0 })
}

/// The task's memory limit, when the kernel's OOM killer acted in its cgroups.
fn memory_exceeded(limits: &Limits, cgroup: Option<&TaskCgroup>) -> Option<LimitExceeded> {
    let limit_bytes = limits.mem_bytes?;
    (cgroup?.oom_kills() > 0).then_some(LimitExceeded::Memory { limit_bytes })
}

/// Waits up to `timeout` for one of the blocked `signals`.
fn wait_signal(signals: &SigSet, timeout: Duration) -> Option<Signal> {
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: the set and the timespec are valid for the duration of the call, and a null
    // siginfo pointer is allowed.
    let signal = unsafe { libc::sigtimedwait(signals.as_ref(), std::ptr::null_mut(), &timeout) };
    if signal <= 0 { None } else { Signal::try_from(signal).ok() }
}

/// Opens the executor log of a sandbox for the agent to hand to a new executor.
pub fn open_log(sandbox: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(sandbox.join(sandbox::EXECUTOR_LOG))
}
