//! Jump hosts (bastions) and local port forwards through them. Both log in to the bastion with
//! its own [`SshSettings`] (known_hosts check, keys, timeouts; it may have a jump host itself;
//! its `sudo` is ignored) and open `direct-tcpip` channels, which the bastion's sshd connects to the target; a
//! [`Pump`] thread bridges the channels to local sockets.
//!
//! For [`SshSettings::jump`], the host's own session runs over one end of a socket pair whose
//! other end is bridged to the channel, so the host's key check and login are end to end.

use super::SshSettings;
use super::connect::{self, is_timeout, millis};
use super::pump::{Acceptor, Pipe, Pump};
use crate::transport::TransportError;
use ssh2::Channel;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;

/// A local port forwarded to a target through a jump host; see [`forward_local`]. Dropping it
/// closes the listener, every forwarded connection and the bastion's session.
pub struct LocalForward {
    addr: SocketAddr,
    jump: SshSettings,
    target: (String, u16),
    pump: Pump,
}

impl LocalForward {
    /// The local address to connect to (`127.0.0.1` and a port the system chose).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the forward still carries connections: false once the bastion closed its session
    /// (sshd restarted, the session killed, the bastion rebooted), after which the local port
    /// refuses every connection.
    pub fn is_open(&self) -> bool {
        self.pump.is_running()
    }

    /// Opens the forward again (a new bastion session and a new local port: see
    /// [`LocalForward::addr`]) if the bastion closed it; true when it did. Blocks like
    /// [`forward_local`]; on failure the forward stays closed and the next call tries again.
    pub fn reopen_if_closed(&mut self) -> Result<bool, TransportError> {
        if self.is_open() {
            return Ok(false);
        }
        tracing::info!(target = %self.shown(), bastion = %self.jump.target(), old = %self.addr, "The bastion closed a forward; opening it again.");
        *self = forward_local(&self.jump, self.target.clone())?;
        Ok(true)
    }

    fn shown(&self) -> String {
        format!("{}:{}", self.target.0, self.target.1)
    }
}

impl fmt::Debug for LocalForward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalForward").field("addr", &self.addr).field("target", &self.shown()).finish()
    }
}

/// Forwards a new local port on 127.0.0.1 to `target` (`(address, port)` as the bastion
/// resolves it) through the jump host `jump`: each accepted connection gets its own channel of
/// one bastion session. Used to reach the master's HTTP API behind a bastion.
///
/// Blocks while it connects and logs in to `jump` (within its timeouts); call it from
/// `spawn_blocking` in async code. A connection the bastion cannot carry to the target (refused,
/// or not within `jump.connect_timeout`) is closed at once and logged; while one is being opened,
/// the other forwarded connections wait. A session the bastion closes ends the forward
/// ([`LocalForward::is_open`]); [`LocalForward::reopen_if_closed`] opens it again.
pub fn forward_local(jump: &SshSettings, target: (String, u16)) -> Result<LocalForward, TransportError> {
    let label = format!("bastion {}", jump.target());
    let (host, port) = target.clone();
    let shown = format!("{host}:{port}");
    let fail = |what: &str, e: std::io::Error| TransportError::Connect {
        host: label.clone(),
        message: format!("cannot {what} for a forward to {shown}: {e}"),
    };
    let connection = connect::connect(&label, &without_sudo(jump))?;
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| fail("listen on 127.0.0.1", e))?;
    listener.set_nonblocking(true).map_err(|e| fail("set up the listener", e))?;
    let addr = listener.local_addr().map_err(|e| fail("set up the listener", e))?;
    let acceptor = Acceptor { listener, host, port, open_timeout: jump.connect_timeout };
    let pump = Pump::spawn("gantry-ssh-fwd", connection, Vec::new(), Some(acceptor))
        .map_err(|e| fail("start the forwarding thread", e))?;
    tracing::debug!(%addr, target = %shown, bastion = %jump.target(), "Forwarding a local port through a bastion.");
    Ok(LocalForward { addr, jump: jump.clone(), target, pump })
}

/// Connects to `bastion` and returns a stream that reaches `s.address:s.port` through it (for
/// the host's own SSH session), and the thread bridging it.
pub(super) fn through(
    host: &str,
    s: &SshSettings,
    bastion: &SshSettings,
) -> Result<(UnixStream, Pump), TransportError> {
    let label = format!("bastion {} for {host}", bastion.target());
    let connection = connect::connect(&label, &without_sudo(bastion))?;
    let channel = open_channel(&connection.session, host, s, bastion)?;
    let bridge_error = |e: std::io::Error| TransportError::Connect {
        host: host.to_string(),
        message: format!("cannot bridge the connection through the bastion {}: {e}", bastion.target()),
    };
    let (ours, theirs) = UnixStream::pair().map_err(bridge_error)?;
    theirs.set_nonblocking(true).map_err(bridge_error)?;
    let pump = Pump::spawn("gantry-ssh-jump", connection, vec![Pipe::new(Box::new(theirs), channel)], None)
        .map_err(bridge_error)?;
    Ok((ours, pump))
}

/// A bastion only forwards connections: its settings' `sudo` is not checked.
fn without_sudo(bastion: &SshSettings) -> SshSettings {
    SshSettings { sudo: None, ..bastion.clone() }
}

/// Asks the bastion for a connection to `s.address:s.port` within `s.connect_timeout`.
fn open_channel(
    session: &ssh2::Session,
    host: &str,
    s: &SshSettings,
    bastion: &SshSettings,
) -> Result<Channel, TransportError> {
    session.set_blocking(true);
    session.set_timeout(millis(s.connect_timeout));
    session.channel_direct_tcpip(&s.address, s.port, None).map_err(|e| {
        if is_timeout(&e) {
            TransportError::ConnectTimeout {
                host: host.to_string(),
                addr: s.target(),
                stage: "TCP connect through the bastion",
                after: s.connect_timeout,
            }
        } else {
            TransportError::JumpFailed {
                host: host.to_string(),
                bastion: bastion.target(),
                addr: s.target(),
                message: e.message().to_string(),
            }
        }
    })
}
