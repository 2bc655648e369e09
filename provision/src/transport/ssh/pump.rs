//! A proxy thread that moves bytes between local sockets and `direct-tcpip` channels of one SSH
//! session: libssh2 in non-blocking mode, `poll` on the session's socket and every local socket,
//! bounded buffers both ways, end-of-file passed on as half-closes. It may also accept TCP
//! connections and open a channel for each (a local port forward).
//!
//! The thread owns the session. Dropping the [`Pump`] stops the thread (within one poll interval)
//! and joins it, which closes the channels, the local sockets and the session.

use super::connect::{Connection, millis};
use ssh2::{Channel, ErrorCode};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bytes buffered per direction per connection before reading that side pauses.
const CAP: usize = 256 * 1024;
/// How long one `poll` may sleep; also how soon a stop request is seen.
const POLL_MS: i32 = 100;
/// libssh2: the non-blocking call would block.
const ERROR_EAGAIN: i32 = -37;

/// A local socket a channel is bridged to.
pub(super) trait Local: Read + Write + AsRawFd + Send {
    /// Tells the peer no more data comes (half-close).
    fn shutdown_write(&self);
}

impl Local for UnixStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl Local for TcpStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

/// One local socket bridged to one channel.
pub(super) struct Pipe {
    local: Box<dyn Local>,
    channel: Channel,
    /// Read from the local socket, not yet written to the channel.
    up: Vec<u8>,
    /// Read from the channel, not yet written to the local socket.
    down: Vec<u8>,
    local_eof: bool,
    eof_sent: bool,
    remote_eof: bool,
    local_shut: bool,
    /// The local peer closed both directions: nothing more can be delivered to it.
    local_gone: bool,
    failed: bool,
}

impl Pipe {
    /// Bridges `local` (which must be non-blocking) to `channel`.
    pub(super) fn new(local: Box<dyn Local>, channel: Channel) -> Self {
        Self {
            local,
            channel,
            up: Vec::new(),
            down: Vec::new(),
            local_eof: false,
            eof_sent: false,
            remote_eof: false,
            local_shut: false,
            local_gone: false,
            failed: false,
        }
    }

    fn finished(&self) -> bool {
        self.failed || (self.eof_sent && (self.local_shut || self.local_gone))
    }

    fn fail(&mut self, what: &str, error: &dyn std::fmt::Display) -> bool {
        tracing::debug!(%error, "A forwarded connection ended: {what} failed.");
        self.failed = true;
        true
    }

    /// Moves what can be moved without blocking; true if anything happened.
    fn step(&mut self, buf: &mut [u8]) -> bool {
        let mut progressed = false;
        if !self.local_eof && self.up.len() < CAP {
            match self.local.read(buf) {
                Ok(0) => {
                    self.local_eof = true;
                    progressed = true;
                }
                Ok(n) => {
                    self.up.extend_from_slice(&buf[..n]);
                    progressed = true;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) => return self.fail("reading the local socket", &e),
            }
        }
        if !self.up.is_empty() {
            match self.channel.write(&self.up) {
                Ok(n) => {
                    self.up.drain(..n);
                    progressed |= n > 0;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return self.fail("writing to the channel", &e),
            }
        }
        if self.local_eof && self.up.is_empty() && !self.eof_sent {
            match self.channel.send_eof() {
                Ok(()) => {
                    self.eof_sent = true;
                    progressed = true;
                }
                Err(e) if e.code() == ErrorCode::Session(ERROR_EAGAIN) => {}
                Err(e) => return self.fail("sending end-of-file to the channel", &e),
            }
        }
        // Reading also processes the session's other incoming packets (window adjustments).
        if self.down.len() < CAP {
            match self.channel.read(buf) {
                Ok(0) => {
                    if self.channel.eof() && !self.remote_eof {
                        self.remote_eof = true;
                        progressed = true;
                    }
                }
                Ok(n) => {
                    self.down.extend_from_slice(&buf[..n]);
                    progressed = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return self.fail("reading the channel", &e),
            }
        }
        if !self.down.is_empty() {
            match self.local.write(&self.down) {
                Ok(n) => {
                    self.down.drain(..n);
                    progressed |= n > 0;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) => return self.fail("writing to the local socket", &e),
            }
        }
        if self.remote_eof && self.down.is_empty() && !self.local_shut {
            self.local.shutdown_write();
            self.local_shut = true;
            progressed = true;
        }
        progressed
    }
}

/// Accepts local TCP connections and bridges each to a new channel to `host:port`.
pub(super) struct Acceptor {
    /// A non-blocking listener.
    pub(super) listener: TcpListener,
    /// The target, as the session's host resolves it.
    pub(super) host: String,
    /// The target port.
    pub(super) port: u16,
    /// Limit for opening one channel.
    pub(super) open_timeout: Duration,
}

impl Acceptor {
    fn accept(&self, c: &Connection, pipes: &mut Vec<Pipe>) -> bool {
        let mut progressed = false;
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    progressed = true;
                    if let Err(e) = stream.set_nonblocking(true) {
                        tracing::warn!(%peer, error = %e, "Could not forward a connection.");
                        continue;
                    }
                    c.session.set_blocking(true);
                    c.session.set_timeout(millis(self.open_timeout));
                    let channel = c.session.channel_direct_tcpip(&self.host, self.port, None);
                    c.session.set_blocking(false);
                    match channel {
                        Ok(channel) => pipes.push(Pipe::new(Box::new(stream), channel)),
                        Err(e) => tracing::warn!(
                            %peer, target = %format!("{}:{}", self.host, self.port), error = %e,
                            "The bastion could not open a connection for a forwarded port; closing it."
                        ),
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => return progressed,
                Err(e) => {
                    tracing::warn!(error = %e, "Accepting a forwarded connection failed.");
                    return progressed;
                }
            }
        }
    }
}

/// The running proxy thread; dropping it stops and joins the thread.
pub(super) struct Pump {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Pump {
    /// Starts a thread named `name` that owns `connection` and bridges `pipes` (and, with an
    /// acceptor, every connection it accepts). Without an acceptor it ends with its last pipe.
    pub(super) fn spawn(
        name: &str,
        connection: Connection,
        pipes: Vec<Pipe>,
        acceptor: Option<Acceptor>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run(connection, pipes, acceptor, &flag))?;
        Ok(Self { stop, thread: Some(thread) })
    }

    /// Whether the thread still runs (it ends when the bastion closes the session).
    pub(super) fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(c: Connection, mut pipes: Vec<Pipe>, acceptor: Option<Acceptor>, stop: &AtomicBool) {
    c.session.set_blocking(false);
    let mut buf = vec![0u8; 32 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let mut progressed = acceptor.as_ref().is_some_and(|a| a.accept(&c, &mut pipes));
        for pipe in &mut pipes {
            progressed |= pipe.step(&mut buf);
        }
        pipes.retain_mut(|p| {
            if p.finished() {
                let _ = p.channel.close();
            }
            !p.finished()
        });
        if acceptor.is_none() && pipes.is_empty() {
            break;
        }
        if !progressed && !wait(&c, &mut pipes, acceptor.as_ref()) {
            tracing::debug!("The bastion closed the session; the proxy thread ends.");
            break;
        }
    }
}

/// Sleeps until a socket is ready or [`POLL_MS`] pass; false when the session's socket is closed.
fn wait(c: &Connection, pipes: &mut [Pipe], acceptor: Option<&Acceptor>) -> bool {
    let mut session_events = libc::POLLRDHUP;
    if pipes.iter().any(|p| p.down.len() < CAP) {
        session_events |= libc::POLLIN;
    }
    if matches!(c.session.block_directions(), ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both) {
        session_events |= libc::POLLOUT;
    }
    let mut fds = vec![libc::pollfd { fd: c.socket.as_raw_fd(), events: session_events, revents: 0 }];
    for p in pipes.iter() {
        let mut events = 0;
        if !p.local_eof && p.up.len() < CAP {
            events |= libc::POLLIN;
        }
        if !p.down.is_empty() {
            events |= libc::POLLOUT;
        }
        fds.push(libc::pollfd { fd: p.local.as_raw_fd(), events, revents: 0 });
    }
    if let Some(a) = acceptor {
        fds.push(libc::pollfd { fd: a.listener.as_raw_fd(), events: libc::POLLIN, revents: 0 });
    }
    let count = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `fds` is a live Vec of `count` pollfds; every fd is owned by `c`, a pipe or the
    // acceptor, all of which outlive this call.
    unsafe {
        libc::poll(fds.as_mut_ptr(), count, POLL_MS);
    }
    for (p, fd) in pipes.iter_mut().zip(&fds[1..]) {
        if p.local_eof && fd.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            p.local_gone = true;
        }
    }
    fds[0].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL | libc::POLLRDHUP) == 0
}
