//! The per-task executor (Mesos' command executor): a small supervisor process between the agent
//! and the task, so a task outlives agent restarts and its exit status is never lost.
//!
//! It runs as `gantry executor --sandbox DIR`, started by the agent, and is synchronous: no async
//! runtime, no threads, no logging framework. It reads `launch.json`, starts the task in its own
//! process group, records pids in `executor.json`, turns a SIGTERM into "SIGTERM the task's group,
//! SIGKILL it after the grace period", and when the task exits kills what is left of its group and
//! records the outcome in `exit.json`. It must never talk to the master or touch other sandboxes.

use crate::cgroup::TaskCgroup;
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

    let cgroup = match TaskCgroup::create(&launch.task.task_id) {
        Ok(cgroup) => match cgroup.record(sandbox) {
            Ok(()) => Some(cgroup),
            Err(error) => {
                eprintln!("gantry executor: cannot record the task's cgroup ({error}); using the process group only");
                let _ = cgroup.kill_and_remove(Duration::from_secs(1));
                None
            }
        },
        Err(reason) => {
            eprintln!("gantry executor: no task cgroup ({reason}); stopping relies on the process group");
            None
        }
    };
    let procs = cgroup.as_ref().and_then(|c| c.procs_file().ok());
    let child = match build_command(&launch, sandbox, procs.as_ref()).and_then(|mut command| command.spawn()) {
        Ok(child) => child,
        Err(error) => {
            eprintln!("gantry executor: cannot start the task: {error}");
            if let Some(cgroup) = &cgroup {
                let _ = cgroup.kill_and_remove(Duration::from_secs(1));
            }
            let exit = ExitInfo {
                code: None,
                signal: None,
                killed_on_request: false,
                error: Some(format!("cannot start the task: {error}")),
                finished_at: gantry_api::now_millis(),
            };
            sandbox::write_json(&sandbox.join(sandbox::EXIT_FILE), &exit)?;
            return Ok(());
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
    sandbox::write_json(&sandbox.join(sandbox::EXECUTOR_FILE), &info)?;

    drop(procs);
    let (status, killed_on_request) =
        wait_for_task(task_pid, cgroup.as_ref(), &signals, sandbox, launch.task.kill_grace_period_secs)?;
    // Whatever the task left behind goes with it: its group, and anything that escaped the group.
    let _ = process::signal_group(task_pid, Signal::SIGKILL);
    if let Some(cgroup) = &cgroup
        && !cgroup.kill_and_remove(Duration::from_secs(5))
    {
        eprintln!("gantry executor: {} is not empty after SIGKILL", cgroup.dir().display());
    }
    let (code, signal) = match status {
        WaitStatus::Exited(_, code) => (Some(code), None),
        WaitStatus::Signaled(_, signal, _) => (None, Some(signal as i32)),
        _ => (None, None),
    };
    let exit = ExitInfo { code, signal, killed_on_request, error: None, finished_at: gantry_api::now_millis() };
    sandbox::write_json(&sandbox.join(sandbox::EXIT_FILE), &exit)?;
    Ok(())
}

fn build_command(launch: &ExecutorLaunch, sandbox: &Path, cgroup_procs: Option<&File>) -> std::io::Result<Command> {
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
    // The executor blocks SIGTERM, SIGINT, SIGHUP and SIGCHLD to wait for them synchronously; a
    // blocked mask survives exec, so the task would never see the SIGTERM of a kill. Clear it.
    // The task also joins its cgroup there, before it can fork, by writing "0" to cgroup.procs.
    let empty = SigSet::empty();
    let procs_fd = cgroup_procs.map(AsRawFd::as_raw_fd);
    // SAFETY: the closure runs between fork and exec and calls only write(2) on a descriptor
    // opened before the fork and sigprocmask, both async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            if let Some(fd) = procs_fd {
                // Best effort: a task outside its cgroup is still stopped through its group.
                let _ = libc::write(fd, b"0".as_ptr().cast(), 1);
            }
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&empty), None).map_err(std::io::Error::from)
        });
    }
    Ok(command)
}

/// Waits until the task exits, forwarding a kill request from the agent; returns its status and
/// whether it was killed on request.
fn wait_for_task(
    task_pid: i32,
    cgroup: Option<&TaskCgroup>,
    signals: &SigSet,
    sandbox: &Path,
    default_grace_secs: f64,
) -> Result<(WaitStatus, bool), ExecutorError> {
    let mut kill_deadline: Option<Instant> = None;
    let mut killed_on_request = false;
    let mut sigkill_sent = false;
    loop {
        match waitpid(Pid::from_raw(task_pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return Ok((status, killed_on_request)),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(source) => return Err(ExecutorError::Sys { call: "waitpid", source }),
        }
        if let Some(deadline) = kill_deadline
            && !sigkill_sent
            && Instant::now() >= deadline
        {
            let _ = process::signal_group(task_pid, Signal::SIGKILL);
            if let Some(cgroup) = cgroup {
                cgroup.signal_all(Signal::SIGKILL);
            }
            sigkill_sent = true;
        }
        let timeout = match kill_deadline {
            Some(deadline) if !sigkill_sent => deadline.saturating_duration_since(Instant::now()),
            _ => Duration::from_secs(1),
        };
        match wait_signal(signals, timeout) {
            Some(Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP) if !killed_on_request => {
                killed_on_request = true;
                let grace = sandbox::read_json::<KillRequest>(&sandbox.join(sandbox::KILL_FILE))
                    .ok()
                    .flatten()
                    .map_or(default_grace_secs, |k| k.grace_period_secs);
                let _ = process::signal_group(task_pid, Signal::SIGTERM);
                if let Some(cgroup) = cgroup {
                    cgroup.signal_all(Signal::SIGTERM);
                }
                kill_deadline = Some(Instant::now() + Duration::from_secs_f64(grace.clamp(0.0, 86_400.0)));
            }
            _ => {}
        }
    }
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
