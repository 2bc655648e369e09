//! Running one command on a session: `/bin/sh -c` through an exec channel, input written and
//! stdout and stderr read together without blocking (libssh2 non-blocking mode, `poll` on the socket), a deadline,
//! and on timeout the channel closed and the command's process group killed.
//!
//! The remote command first prints its shell's pid: sshd starts it with `setsid`, so that pid is
//! the process group to kill. Under sudo the script (and the kill) is wrapped by [`super::sudo`];
//! sudo without a terminal keeps the command in the caller's process group.

use super::connect::{Connection, millis};
use super::{SshSettings, sudo};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// What a finished remote command printed and how it exited.
#[derive(Debug, Default)]
pub(super) struct Exec {
    pub(super) exit_code: Option<i32>,
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
}

/// Why a remote command has no result.
#[derive(Debug)]
pub(super) enum ExecError {
    /// No channel could be opened: the session is dead, nothing ran.
    Broken(String),
    /// The deadline passed; the command was killed (if `session_ok`, cleanly: the session is usable).
    TimedOut {
        /// Whether the kill and the channel close both succeeded.
        session_ok: bool,
    },
    /// The session failed while the command ran.
    Failed(String),
}

/// `script` quoted as one shell word.
pub(super) fn quote(script: &str) -> String {
    format!("'{}'", script.replace('\'', r"'\''"))
}

/// `script` preceded by `export` lines for `env` (sshd drops most client-set variables).
pub(super) fn with_env(script: &str, env: &BTreeMap<String, String>) -> String {
    let mut out: String = env.iter().map(|(k, v)| format!("export {k}={}\n", quote(v))).collect();
    out.push_str(script);
    out
}

/// Runs `script` with `/bin/sh -c`, feeding `stdin` if given, within `timeout`.
pub(super) fn exec(
    c: &Connection,
    s: &SshSettings,
    script: &str,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Exec, ExecError> {
    let deadline = Instant::now() + timeout;
    let (wrapped, prefix) = match &c.sudo {
        Some(mode) => (sudo::wrap(script, mode), sudo::input_prefix(mode)),
        None => (script.to_string(), Vec::new()),
    };
    let session = &c.session;
    session.set_blocking(true);
    session.set_timeout(millis(s.connect_timeout));
    let mut channel =
        session.channel_session().map_err(|e| ExecError::Broken(format!("cannot open a channel: {e}")))?;
    channel
        .exec(&format!("echo $$; exec /bin/sh -c {}", quote(&wrapped)))
        .map_err(|e| ExecError::Broken(format!("cannot start a command: {e}")))?;
    let mut out = Exec::default();
    let result = (|| {
        session.set_blocking(false);
        let mut queue = [prefix.as_slice(), stdin.unwrap_or_default()];
        let mut input_open = stdin.is_some() || !prefix.is_empty();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let mut progressed = false;
            let mut open = false;
            if input_open && channel.eof() {
                // The command exited without reading all its input: its status and stderr say why.
                input_open = false;
            }
            if input_open {
                let next = queue.iter().position(|part| !part.is_empty());
                let sent = match next {
                    None => channel.send_eof().map(|()| 0).map_err(std::io::Error::from),
                    Some(i) => channel.write(queue[i]),
                };
                match sent {
                    Ok(0) if next.is_none() => {
                        input_open = false;
                        progressed = true;
                    }
                    Ok(n) => {
                        if let Some(i) = next {
                            queue[i] = &queue[i][n..];
                        }
                        progressed |= n > 0;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => open = true,
                    Err(e) => {
                        tracing::debug!(error = %e, "A remote command did not take all its input.");
                        input_open = false;
                    }
                }
            }
            for (stream_id, sink) in [(0, &mut out.stdout), (1, &mut out.stderr)] {
                match channel.stream(stream_id).read(&mut buf) {
                    Ok(0) => {}
                    Ok(n) => {
                        sink.extend_from_slice(&buf[..n]);
                        progressed = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => open = true,
                    Err(e) => return Err(ExecError::Failed(format!("reading output failed: {e}"))),
                }
            }
            if !progressed && !open && channel.eof() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ExecError::TimedOut { session_ok: true });
            }
            if !progressed {
                wait_readable(c, (deadline - now).min(Duration::from_millis(200)));
            }
        }
    })();
    session.set_blocking(true);
    let pid = take_pid(&mut out.stdout);
    match result {
        Ok(()) => {
            session.set_timeout(millis(s.connect_timeout));
            channel.wait_close().map_err(|e| ExecError::Failed(format!("waiting for the exit status failed: {e}")))?;
            let signalled = channel.exit_signal().ok().and_then(|s| s.exit_signal).is_some();
            let code = channel.exit_status().map_err(|e| ExecError::Failed(format!("no exit status: {e}")))?;
            out.exit_code = (!signalled).then_some(code);
            Ok(out)
        }
        Err(ExecError::TimedOut { .. }) => {
            session.set_timeout(millis(s.connect_timeout));
            // Kill first: sshd answers a channel close only once the command has exited.
            let killed = pid.is_some_and(|pid| kill_group(c, s, pid));
            let closed = channel.close().and_then(|()| channel.wait_close()).is_ok();
            Err(ExecError::TimedOut { session_ok: killed && closed })
        }
        Err(e) => Err(e),
    }
}

/// Removes the leading `pid\n` line from `stdout` and returns the pid.
fn take_pid(stdout: &mut Vec<u8>) -> Option<u32> {
    let end = stdout.iter().position(|&b| b == b'\n')?;
    let pid = std::str::from_utf8(&stdout[..end]).ok()?.trim().parse().ok();
    stdout.drain(..=end);
    pid
}

/// Kills process group `pid` on the host; false if that failed (the session may be the problem).
fn kill_group(c: &Connection, s: &SshSettings, pid: u32) -> bool {
    let kill = format!("kill -s KILL -- -{pid} 2>/dev/null");
    let killed = (|| -> std::io::Result<()> {
        let mut ch = c.session.channel_session()?;
        match &c.sudo {
            Some(mode) => {
                ch.exec(&sudo::wrap(&kill, mode))?;
                ch.write_all(&sudo::input_prefix(mode))?;
                ch.send_eof()?;
            }
            None => ch.exec(&kill)?,
        }
        Ok(ch.wait_close()?)
    })();
    if let Err(e) = &killed {
        tracing::warn!(host = %s.target(), pid, error = %e, "Could not kill a timed-out command.");
    }
    killed.is_ok()
}

/// Waits until the socket is ready in the direction libssh2 is blocked on, or `limit` passes.
fn wait_readable(c: &Connection, limit: Duration) {
    let dirs = c.session.block_directions();
    let mut events = 0;
    if matches!(dirs, ssh2::BlockDirections::Inbound | ssh2::BlockDirections::Both | ssh2::BlockDirections::None) {
        events |= libc::POLLIN;
    }
    if matches!(dirs, ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both) {
        events |= libc::POLLOUT;
    }
    let mut fd = libc::pollfd { fd: c.socket.as_raw_fd(), events, revents: 0 };
    let ms = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX).max(1);
    // SAFETY: `fd` is one valid pollfd on the stack and the count is 1; the socket outlives this call.
    unsafe {
        libc::poll(&mut fd, 1, ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("echo 'a b'"), r"'echo '\''a b'\'''");
    }

    #[test]
    fn the_pid_line_is_removed() {
        let mut out = b"123\nhello\n".to_vec();
        assert_eq!(take_pid(&mut out), Some(123));
        assert_eq!(out, b"hello\n");
    }

    #[test]
    fn env_becomes_exports() {
        let env = BTreeMap::from([("A".to_string(), "x'y".to_string())]);
        assert_eq!(with_env("echo $A", &env), "export A='x'\\''y'\necho $A");
    }
}
