//! Opening a session: TCP connect with a timeout (directly, or through a jump host), the SSH
//! handshake, the host key check, login, and the sudo check. Each failure becomes the
//! [`TransportError`] a user can act on.

use super::pump::Pump;
use super::{SshSettings, Sudo, auth, jump, known_hosts, sudo};
use crate::transport::TransportError;
use ssh2::{ErrorCode, Session};
use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

/// An authenticated session and a duplicate of its socket (kept to wait for readiness with
/// `poll`): a TCP socket, or one end of the socket pair bridged to a bastion's channel.
/// Fields drop in order: the session and its socket close first, then the bridge ends.
pub(super) struct Connection {
    pub(super) session: Session,
    pub(super) socket: OwnedFd,
    /// How commands become root, once checked ([`SshSettings::sudo`]).
    pub(super) sudo: Option<Sudo>,
    /// The proxy thread to the bastion, for a host reached through one.
    pub(super) _bridge: Option<Pump>,
}

/// libssh2's code for a blocking call that ran past the session timeout.
pub(super) const ERROR_TIMEOUT: i32 = -9;
/// libssh2's code for a socket that timed out (older code paths).
const ERROR_SOCKET_TIMEOUT: i32 = -30;

/// Whether `e` is libssh2 giving up after the session timeout.
pub(super) fn is_timeout(e: &ssh2::Error) -> bool {
    matches!(e.code(), ErrorCode::Session(ERROR_TIMEOUT | ERROR_SOCKET_TIMEOUT))
}

/// Milliseconds for `Session::set_timeout` (0 would mean "no limit", so at least 1).
pub(super) fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

/// Connects (through `s.jump` if set), checks the host key, logs in and checks sudo.
pub(super) fn connect(host: &str, s: &SshSettings) -> Result<Connection, TransportError> {
    let mut connection = match &s.jump {
        None => {
            let tcp = tcp_connect(host, s)?;
            let _ = tcp.set_nodelay(true);
            let socket = tcp.try_clone().map_err(|e| TransportError::Connect {
                host: host.to_string(),
                message: format!("cannot use the socket to {}: {e}", s.target()),
            })?;
            open(host, s, tcp, socket.into(), None)?
        }
        Some(bastion) => {
            let (stream, bridge) = jump::through(host, s, bastion)?;
            let socket = stream.try_clone().map_err(|e| TransportError::Connect {
                host: host.to_string(),
                message: format!("cannot use the socket pair to the bastion: {e}"),
            })?;
            open(host, s, stream, socket.into(), Some(bridge))?
        }
    };
    if let Some(wanted) = &s.sudo {
        let mode = sudo::resolve(&mut connection, host, s, wanted)?;
        connection.sudo = Some(mode);
    }
    Ok(connection)
}

/// A TCP connection to `s.address:s.port` within `s.connect_timeout`.
fn tcp_connect(host: &str, s: &SshSettings) -> Result<TcpStream, TransportError> {
    let target = s.target();
    let connect_error = |message: String| TransportError::Connect { host: host.to_string(), message };
    let addrs = (s.address.as_str(), s.port)
        .to_socket_addrs()
        .map_err(|e| connect_error(format!("cannot resolve {}: {e}", s.address)))?;
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, s.connect_timeout) {
            Ok(tcp) => {
                stream = Some(tcp);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let stream = match (stream, last) {
        (Some(tcp), _) => tcp,
        (None, Some(e)) if e.kind() == ErrorKind::ConnectionRefused => {
            return Err(TransportError::Refused { host: host.to_string(), addr: target });
        }
        (None, Some(e)) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            return Err(TransportError::ConnectTimeout {
                host: host.to_string(),
                addr: target,
                stage: "TCP connect",
                after: s.connect_timeout,
            });
        }
        (None, Some(e)) => return Err(connect_error(format!("cannot connect to {target}: {e}"))),
        (None, None) => return Err(connect_error(format!("{} resolves to no address", s.address))),
    };
    Ok(stream)
}

/// The SSH handshake, host key check and login over `stream` (whose duplicate is `socket`).
fn open(
    host: &str,
    s: &SshSettings,
    stream: impl AsRawFd + 'static,
    socket: OwnedFd,
    bridge: Option<Pump>,
) -> Result<Connection, TransportError> {
    let target = s.target();
    let connect_error = |message: String| TransportError::Connect { host: host.to_string(), message };
    let mut session = Session::new().map_err(|e| connect_error(format!("cannot start an SSH session: {e}")))?;
    session.set_tcp_stream(stream);
    session.set_timeout(millis(s.connect_timeout));
    session.handshake().map_err(|e| {
        if is_timeout(&e) {
            TransportError::ConnectTimeout {
                host: host.to_string(),
                addr: target.clone(),
                stage: "SSH handshake",
                after: s.connect_timeout,
            }
        } else {
            connect_error(format!("SSH handshake with {target} failed: {e}"))
        }
    })?;
    known_hosts::verify(&session, host, s)?;
    auth::authenticate(&session, host, s)?;
    tracing::debug!(%host, addr = %target, user = %s.user, "SSH session opened.");
    Ok(Connection { session, socket, sudo: None, _bridge: bridge })
}
