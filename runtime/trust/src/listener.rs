//! The TLS listener the master's API and the agents' file endpoints are served on, for
//! `axum::serve`: TLS handshakes run concurrently off the accept loop (with a deadline, so a
//! silent client holds nothing), each connection carries the identity its client certificate
//! names ([`Peer`]), and a client that speaks plain HTTP gets a plain `400` that says to use
//! `https://` instead of a TLS alert it cannot read.
//!
//! A renewed certificate takes effect through the configuration's certificate resolver
//! ([`crate::tls::SwappableIdentity`]), not by replacing the configuration.

use crate::identity::Identity;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::debug;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const BACKLOG: usize = 1024;

/// The first byte of every TLS record that starts a handshake.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Who is on the other end of a connection: its address and, when it presented a certificate
/// of the cluster CA, the identity that certificate names. Handlers read it with
/// `ConnectInfo<Peer>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// The identity of its certificate, if it presented one.
    pub identity: Option<Identity>,
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP listener whose connections come out TLS-handshaken.
#[derive(Debug)]
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl TlsListener {
    /// Serves TLS with `config` on `listener`.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(BACKLOG);
        let accept_loop = tokio::spawn(accept_loop(listener, config, sender));
        Ok(Self { local_addr, ready, accept_loop })
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    sender: mpsc::Sender<(TlsStream<TcpStream>, Peer)>,
) {
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                debug!(%error, "Accept failed.");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if sender.is_closed() {
            return;
        }
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(config.clone());
        let sender = sender.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(tcp, addr, acceptor)).await {
                Ok(Some(connection)) => {
                    let _ = sender.send(connection).await;
                }
                Ok(None) => {}
                Err(_) => debug!(%addr, "TLS handshake timed out."),
            }
        });
    }
}

async fn handshake(
    mut tcp: TcpStream,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
) -> Option<(TlsStream<TcpStream>, Peer)> {
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await.ok()? == 0 {
        return None;
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        debug!(%addr, "Plain HTTP on the TLS port refused.");
        let body = r#"{"message":"this port speaks HTTPS only (TLS 1.3): use an https:// URL with the cluster CA (gantry's --ca-cert)"}"#;
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tcp.write_all(answer.as_bytes()).await;
        let _ = tcp.shutdown().await;
        return None;
    }
    match acceptor.accept(tcp).await {
        Ok(tls) => {
            let identity = crate::tls::peer_identity(tls.get_ref().1.peer_certificates());
            Some((tls, Peer { addr, identity }))
        }
        Err(error) => {
            debug!(%addr, %error, "TLS handshake failed.");
            None
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop only ends with the listener itself; wait for the server to stop.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer { addr: self.local_addr, identity: None })
    }
}
