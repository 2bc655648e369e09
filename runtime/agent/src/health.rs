//! Health checks of one task: the decision logic (a pure state machine fed with check results)
//! and the probes (HTTP, TCP, COMMAND). Scheduling the checks and acting on the verdicts (status
//! updates, kills) belongs to task supervision.

use gantry_api::protocol::{TaskHealthCheck, TaskHealthCheckKind};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// What the agent must do after one check result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changed.
    Unchanged,
    /// The check turned healthy.
    Healthy,
    /// The check turned unhealthy.
    Unhealthy,
    /// Too many consecutive failures: kill the task (it is unhealthy).
    Kill,
}

/// The state of one health check of one task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckState {
    /// `None` until the first counted result.
    pub healthy: Option<bool>,
    /// Consecutive counted failures.
    pub consecutive_failures: u32,
    /// Whether any check succeeded yet (ends the grace period early).
    pub succeeded_once: bool,
}

impl CheckState {
    /// Feeds one result, `since_start` after the task started, and says what to do. Failures
    /// within the grace period are ignored until the first success; `max_consecutive_failures`
    /// of 0 never kills.
    pub fn record(&mut self, ok: bool, since_start: Duration, check: &TaskHealthCheck) -> Verdict {
        if ok {
            self.consecutive_failures = 0;
            self.succeeded_once = true;
            let changed = self.healthy != Some(true);
            self.healthy = Some(true);
            return if changed { Verdict::Healthy } else { Verdict::Unchanged };
        }
        if !self.succeeded_once && since_start.as_secs_f64() < check.grace_period_secs {
            return Verdict::Unchanged;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let changed = self.healthy != Some(false);
        self.healthy = Some(false);
        if check.max_consecutive_failures > 0 && self.consecutive_failures >= check.max_consecutive_failures {
            Verdict::Kill
        } else if changed {
            Verdict::Unhealthy
        } else {
            Verdict::Unchanged
        }
    }
}

/// A task's health from its checks' health: unhealthy if any is, healthy if all are, else unknown.
pub fn aggregate(checks: &[Option<bool>]) -> Option<bool> {
    if checks.is_empty() {
        None
    } else if checks.contains(&Some(false)) {
        Some(false)
    } else if checks.iter().all(|c| *c == Some(true)) {
        Some(true)
    } else {
        None
    }
}

/// The protocol name and target of a check, e.g. `HTTP health checks on port 31002`.
pub fn describe(kind: &TaskHealthCheckKind) -> String {
    match kind {
        TaskHealthCheckKind::Http { port, .. } => format!("HTTP health checks on port {port}"),
        TaskHealthCheckKind::Tcp { port } => format!("TCP health checks on port {port}"),
        TaskHealthCheckKind::Command { .. } => "COMMAND health checks".to_string(),
    }
}

/// The reason given when a task is killed for failing `failures` checks of `kind`.
pub fn kill_reason(kind: &TaskHealthCheckKind, failures: u32, last_error: &str) -> String {
    format!("failed {failures} consecutive {}: {last_error}", describe(kind))
}

/// Where a COMMAND check runs: beside a process task on the host, or inside a container task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckPlace {
    /// On the host, in the sandbox, as the task's host user (`None`: the agent's).
    Host(Option<(u32, u32)>),
    /// In the container whose init has host pid `pid` (its mount, uts and ipc namespaces), in
    /// the task's working directory, as its uid and gid (as `docker exec` does).
    Container {
        /// The container's init (the task's pid as the executor recorded it).
        pid: i32,
        /// The task's uid.
        uid: u32,
        /// The task's gid.
        gid: u32,
        /// The task's working directory inside the container.
        working_dir: String,
    },
}

/// Makes `command` run inside the container of `pid`: it joins the container's ipc, uts and
/// mount namespaces (which also moves its root there), switches to the task's user and works in
/// the task's working directory.
fn enter_container(
    command: &mut tokio::process::Command,
    pid: i32,
    uid: u32,
    gid: u32,
    working_dir: &str,
) -> Result<(), String> {
    let working_dir =
        std::ffi::CString::new(working_dir).map_err(|_| "the working directory holds a NUL".to_string())?;
    let mut namespaces = Vec::new();
    for (name, kind) in [("ipc", libc::CLONE_NEWIPC), ("uts", libc::CLONE_NEWUTS), ("mnt", libc::CLONE_NEWNS)] {
        let file = std::fs::File::open(format!("/proc/{pid}/ns/{name}"))
            .map_err(|e| format!("the container is gone ({name} namespace: {})", lowercase_io(&e)))?;
        namespaces.push((file, kind));
    }
    // SAFETY: the closure runs between fork and exec and makes system calls only, on descriptors
    // opened before the fork and a path made before it; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            use std::os::fd::AsRawFd;
            for (file, kind) in &namespaces {
                if libc::setns(file.as_raw_fd(), *kind) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let groups = [gid];
            if libc::setgroups(1, groups.as_ptr()) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::chdir(working_dir.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Runs one check; `Err` says why it failed. `env` is the task's environment (a container's
/// own, for a container task).
pub async fn probe(
    check: &TaskHealthCheck,
    client: &reqwest::Client,
    sandbox: &Path,
    env: &BTreeMap<String, String>,
    place: &CheckPlace,
) -> Result<(), String> {
    let timeout = Duration::from_secs_f64(check.timeout_secs.clamp(0.001, 3600.0));
    match &check.kind {
        TaskHealthCheckKind::Http { port, path } => {
            let path = if path.starts_with('/') { path.clone() } else { format!("/{path}") };
            let response = client
                .get(format!("http://127.0.0.1:{port}{path}"))
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| describe_http_error(&e, timeout))?;
            let status = response.status();
            if status.is_success() || status.is_redirection() { Ok(()) } else { Err(format!("answered {status}")) }
        }
        TaskHealthCheckKind::Tcp { port } => {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(("127.0.0.1", *port))).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(lowercase_io(&error)),
                Err(_) => Err(format!("timed out after {}s", timeout.as_secs_f64())),
            }
        }
        TaskHealthCheckKind::Command { command } => {
            let mut shell = tokio::process::Command::new("/bin/sh");
            match place {
                CheckPlace::Host(Some((uid, gid))) => {
                    shell.uid(*uid).gid(*gid);
                }
                CheckPlace::Host(None) => {}
                CheckPlace::Container { pid, uid, gid, working_dir } => {
                    enter_container(&mut shell, *pid, *uid, *gid, working_dir)?;
                }
            }
            let mut child = shell
                .arg("-c")
                .arg(command)
                .current_dir(sandbox)
                .envs(env)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot run the command: {}", lowercase_io(&e)))?;
            match tokio::time::timeout(timeout, child.wait()).await {
                Ok(Ok(status)) if status.success() => Ok(()),
                Ok(Ok(status)) => Err(match status.code() {
                    Some(code) => format!("exited with code {code}"),
                    None => "killed by a signal".to_string(),
                }),
                Ok(Err(error)) => Err(lowercase_io(&error)),
                Err(_) => {
                    if let Some(pid) = child.id() {
                        let _ = crate::process::signal_group(pid as i32, nix::sys::signal::Signal::SIGKILL);
                    }
                    let _ = child.wait().await;
                    Err(format!("timed out after {}s", timeout.as_secs_f64()))
                }
            }
        }
    }
}

fn describe_http_error(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("timed out after {}s", timeout.as_secs_f64());
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut innermost = error.to_string();
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return lowercase_io(io);
        }
        innermost = current.to_string();
        source = current.source();
    }
    innermost
}

fn lowercase_io(error: &std::io::Error) -> String {
    let text = error.kind().to_string();
    if text == "other error" || text == "uncategorized error" { error.to_string() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(grace: f64, max: u32) -> TaskHealthCheck {
        TaskHealthCheck {
            kind: TaskHealthCheckKind::Tcp { port: 31000 },
            grace_period_secs: grace,
            interval_secs: 1.0,
            timeout_secs: 1.0,
            max_consecutive_failures: max,
        }
    }

    #[test]
    fn failures_in_the_grace_period_are_ignored_until_the_first_success() {
        let check = check(10.0, 2);
        let mut state = CheckState::default();
        assert_eq!(state.record(false, Duration::from_secs(1), &check), Verdict::Unchanged);
        assert_eq!(state.record(false, Duration::from_secs(2), &check), Verdict::Unchanged);
        assert_eq!(state.healthy, None);
        assert_eq!(state.record(true, Duration::from_secs(3), &check), Verdict::Healthy);
        assert_eq!(state.record(false, Duration::from_secs(4), &check), Verdict::Unhealthy, "grace ended by a success");
        assert_eq!(state.record(false, Duration::from_secs(5), &check), Verdict::Kill);
    }

    #[test]
    fn failures_after_the_grace_period_count() {
        let check = check(1.0, 3);
        let mut state = CheckState::default();
        assert_eq!(state.record(false, Duration::from_secs(2), &check), Verdict::Unhealthy);
        assert_eq!(state.record(false, Duration::from_secs(3), &check), Verdict::Unchanged);
        assert_eq!(state.record(true, Duration::from_secs(4), &check), Verdict::Healthy);
        assert_eq!(state.consecutive_failures, 0);
        assert_eq!(state.record(true, Duration::from_secs(5), &check), Verdict::Unchanged);
        for _ in 0..2 {
            assert_ne!(state.record(false, Duration::from_secs(6), &check), Verdict::Kill);
        }
        assert_eq!(state.record(false, Duration::from_secs(7), &check), Verdict::Kill);
    }

    #[test]
    fn zero_max_failures_never_kills() {
        let check = check(0.0, 0);
        let mut state = CheckState::default();
        for _ in 0..100 {
            assert_ne!(state.record(false, Duration::from_secs(9), &check), Verdict::Kill);
        }
    }

    #[test]
    fn aggregates_health_over_checks() {
        assert_eq!(aggregate(&[]), None);
        assert_eq!(aggregate(&[Some(true), None]), None);
        assert_eq!(aggregate(&[Some(true), Some(true)]), Some(true));
        assert_eq!(aggregate(&[Some(true), Some(false), None]), Some(false));
    }

    #[test]
    fn kill_reasons_name_the_check() {
        let kind = TaskHealthCheckKind::Http { port: 31002, path: "/".into() };
        assert_eq!(
            kill_reason(&kind, 3, "connection refused"),
            "failed 3 consecutive HTTP health checks on port 31002: connection refused"
        );
    }

    #[tokio::test]
    async fn probes_report_why_they_failed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let dir = tempfile::tempdir().expect("tempdir");
        gantry_trust::tls::install_default_provider();
        let client = reqwest::Client::new();
        let env = BTreeMap::new();
        let mut tcp = check(0.0, 1);
        tcp.kind = TaskHealthCheckKind::Tcp { port };
        assert_eq!(
            probe(&tcp, &client, dir.path(), &env, &CheckPlace::Host(None)).await,
            Err("connection refused".to_string())
        );
        let mut command = check(0.0, 1);
        command.kind = TaskHealthCheckKind::Command { command: "exit 4".into() };
        assert_eq!(
            probe(&command, &client, dir.path(), &env, &CheckPlace::Host(None)).await,
            Err("exited with code 4".to_string())
        );
        command.kind = TaskHealthCheckKind::Command { command: "test -d .".into() };
        assert_eq!(probe(&command, &client, dir.path(), &env, &CheckPlace::Host(None)).await, Ok(()));
        let mut http = check(0.0, 1);
        http.kind = TaskHealthCheckKind::Http { port, path: "/".into() };
        assert_eq!(
            probe(&http, &client, dir.path(), &env, &CheckPlace::Host(None)).await,
            Err("connection refused".to_string())
        );
    }
}
