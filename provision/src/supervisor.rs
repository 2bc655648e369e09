//! gantry's own supervisor, for hosts without systemd (`gantry supervise`): it detaches from the
//! caller (a new session), writes its pid file, runs the daemon with its output appended to a log
//! file, restarts it with exponential backoff when it exits on its own, and on SIGTERM or SIGINT
//! forwards SIGTERM to the daemon, waits for it (SIGKILL after a grace period), removes its pid
//! files and exits. The daemon's pid is kept beside the supervisor's (`<name>.daemon.pid`) so
//! whoever stops a supervisor that was killed can still find the daemon.
//!
//! The daemon's command line may reference `${NAME}` variables of an env file (`NAME=value`
//! lines, as systemd's `EnvironmentFile=`); each reference becomes exactly one argument, and the
//! file's variables are also set in the daemon's environment. The file is re-read at every
//! (re)start.

use crate::access::daemon_pid_file;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};

/// What to supervise and where its files go.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// The supervisor's pid file; the daemon's is derived from it.
    pub pid_file: PathBuf,
    /// The daemon's stdout and stderr are appended here.
    pub log_file: PathBuf,
    /// Variables for the daemon and for `${NAME}` in its command line.
    pub env_file: Option<PathBuf>,
    /// The daemon's program and arguments.
    pub command: Vec<String>,
    /// First restart delay; doubled after every quick exit.
    pub backoff_initial: Duration,
    /// Longest restart delay.
    pub backoff_max: Duration,
    /// A daemon that ran this long resets the backoff.
    pub backoff_reset_after: Duration,
    /// How long the daemon may take to exit after SIGTERM before it is killed.
    pub stop_grace: Duration,
}

impl SupervisorConfig {
    /// A config with default backoff (0.5 s doubling to 30 s, reset after 10 s up) and a 15 s grace.
    pub fn new(pid_file: PathBuf, log_file: PathBuf, env_file: Option<PathBuf>, command: Vec<String>) -> Self {
        Self {
            pid_file,
            log_file,
            env_file,
            command,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            backoff_reset_after: Duration::from_secs(10),
            stop_grace: Duration::from_secs(15),
        }
    }
}

/// A supervisor that could not start or run its daemon.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// A file operation or spawn failed.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The env file or the command line is not valid.
    #[error("{0}")]
    Invalid(String),
    /// Another supervisor runs with this pid file.
    #[error("a supervisor with pid file {} is already running (pid {pid})", .pid_file.display())]
    AlreadyRunning {
        /// The pid file.
        pid_file: PathBuf,
        /// Its pid.
        pid: i32,
    },
    /// The detached supervisor did not come up.
    #[error("the detached supervisor did not start: {0}")]
    Detach(String),
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SupervisorError {
    let path = path.to_path_buf();
    move |source| SupervisorError::Io { op, path, source }
}

/// Parses an env file: `NAME=value` lines; blank lines and `#` comments are skipped; a value may
/// be wrapped in double or single quotes.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, SupervisorError> {
    let mut vars = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| SupervisorError::Invalid(format!("env file line {}: `{line}` is not NAME=value", i + 1)))?;
        let value = value.trim();
        let unquoted =
            ['"', '\''].iter().find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q))).unwrap_or(value);
        vars.insert(name.trim().to_string(), unquoted.to_string());
    }
    Ok(vars)
}

/// Replaces `${NAME}` in `arg` with the variable's value; an unknown name is an error.
pub fn expand(arg: &str, vars: &BTreeMap<String, String>) -> Result<String, SupervisorError> {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end =
            after.find('}').ok_or_else(|| SupervisorError::Invalid(format!("unclosed `${{` in argument `{arg}`")))?;
        let name = &after[..end];
        let value = vars.get(name).ok_or_else(|| {
            SupervisorError::Invalid(format!("argument `{arg}` uses ${{{name}}}, which the env file does not set"))
        })?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether `pid` is a live (non-zombie) process whose command line contains `needle`.
fn alive_naming(pid: i32, needle: &str) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let running = stat.rsplit(") ").next().is_some_and(|rest| !rest.is_empty() && !rest.starts_with(['Z', 'X']));
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    running && String::from_utf8_lossy(&cmdline).contains(needle)
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn write_pid(path: &Path, pid: u32) -> Result<(), SupervisorError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io("create dir", dir))?;
    }
    let tmp = path.with_extension("pid.tmp");
    fs::write(&tmp, format!("{pid}\n")).map_err(io("write", &tmp))?;
    fs::rename(&tmp, path).map_err(io("rename", &tmp))
}

fn open_log(path: &Path) -> Result<File, SupervisorError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io("create dir", dir))?;
    }
    OpenOptions::new().create(true).append(true).open(path).map_err(io("open", path))
}

/// Starts `exe args` (a `gantry supervise` without `--detach`) in the background with its output
/// in `log_file`, and returns its pid once it has written `pid_file`.
pub fn detach(exe: &Path, args: &[OsString], pid_file: &Path, log_file: &Path) -> Result<u32, SupervisorError> {
    let log = open_log(log_file)?;
    let err = log.try_clone().map_err(io("open", log_file))?;
    let mut child = std::process::Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(io("spawn", exe))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if read_pid(pid_file) == i32::try_from(child.id()).ok() {
            return Ok(child.id());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(SupervisorError::Detach(format!("it exited with {status}; see {}", log_file.display())));
        }
        if Instant::now() > deadline {
            return Err(SupervisorError::Detach(format!("no pid file {} after 30 s", pid_file.display())));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the supervisor until SIGTERM or SIGINT; see the module docs.
pub async fn run(config: SupervisorConfig) -> Result<(), SupervisorError> {
    // A new session: the caller's terminal, process group and exit do not reach us. Fails only
    // when already a session leader, which is fine.
    let _ = nix::unistd::setsid();
    let pid_text = config.pid_file.display().to_string();
    if let Some(pid) = read_pid(&config.pid_file)
        && pid != std::process::id() as i32
        && alive_naming(pid, &pid_text)
    {
        return Err(SupervisorError::AlreadyRunning { pid_file: config.pid_file.clone(), pid });
    }
    if config.command.is_empty() {
        return Err(SupervisorError::Invalid("no command to supervise".to_string()));
    }
    let mut terminate = signal(SignalKind::terminate()).map_err(io("install SIGTERM handler", &config.pid_file))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(io("install SIGINT handler", &config.pid_file))?;
    write_pid(&config.pid_file, std::process::id())?;
    let daemon_pid_path = daemon_pid_file(&config.pid_file);
    let mut backoff = config.backoff_initial;
    let result = loop {
        let mut child = match spawn_daemon(&config) {
            Ok(child) => child,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot start the daemon; retrying.");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = terminate.recv() => break Ok(()),
                    _ = interrupt.recv() => break Ok(()),
                }
                backoff = (backoff * 2).min(config.backoff_max);
                continue;
            }
        };
        let pid = child.id().unwrap_or(0);
        if let Err(e) = write_pid(&daemon_pid_path, pid) {
            tracing::warn!(error = %e, "Cannot write the daemon's pid file.");
        }
        let started = Instant::now();
        let stop = tokio::select! {
            status = child.wait() => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                if started.elapsed() >= config.backoff_reset_after {
                    backoff = config.backoff_initial;
                }
                tracing::warn!(pid, %status, restart_in = ?backoff, "The daemon exited; restarting it.");
                false
            }
            _ = terminate.recv() => true,
            _ = interrupt.recv() => true,
        };
        if stop {
            stop_daemon(&mut child, pid, config.stop_grace).await;
            break Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = terminate.recv() => break Ok(()),
            _ = interrupt.recv() => break Ok(()),
        }
        backoff = (backoff * 2).min(config.backoff_max);
    };
    let _ = fs::remove_file(&daemon_pid_path);
    let _ = fs::remove_file(&config.pid_file);
    result
}

fn spawn_daemon(config: &SupervisorConfig) -> Result<tokio::process::Child, SupervisorError> {
    let vars = match &config.env_file {
        Some(path) => parse_env_file(&fs::read_to_string(path).map_err(io("read", path))?)?,
        None => BTreeMap::new(),
    };
    let argv: Vec<String> = config.command.iter().map(|a| expand(a, &vars)).collect::<Result<_, _>>()?;
    let log = open_log(&config.log_file)?;
    let err = log.try_clone().map_err(io("open", &config.log_file))?;
    let program = PathBuf::from(&argv[0]);
    let mut log_for_note = log.try_clone().map_err(io("open", &config.log_file))?;
    let _ = writeln!(log_for_note, "gantry supervise: starting {}", argv.join(" "));
    tokio::process::Command::new(&program)
        .args(&argv[1..])
        .envs(&vars)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(io("spawn", &program))
}

async fn stop_daemon(child: &mut tokio::process::Child, pid: u32, grace: Duration) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        tracing::warn!(pid, "The daemon did not stop within the grace period; killing it.");
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_and_expansion() {
        let vars = parse_env_file("# c\n\nA=1\nB=\"x y\"\nC='z'\nD=cpus=2;ports=[1-2]\n").expect("valid");
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "x y");
        assert_eq!(vars["C"], "z");
        assert_eq!(vars["D"], "cpus=2;ports=[1-2]");
        assert_eq!(expand("${B}", &vars).expect("known"), "x y");
        assert_eq!(expand("--x=${A}-${C}", &vars).expect("known"), "--x=1-z");
        assert_eq!(expand("plain", &vars).expect("plain"), "plain");
        assert!(expand("${NOPE}", &vars).is_err());
        assert!(expand("${A", &vars).is_err());
        assert!(parse_env_file("nonsense").is_err());
    }
}
