//! Bastions (jump hosts) and local port forwards through them, against real OpenSSH `sshd`s
//! started per test on 127.0.0.1 (the bastions and the host behind them). Needs what
//! `ssh_transport`'s tests need (root, `/usr/sbin/sshd`, `ssh-keygen`); without it each test
//! prints `SKIPPED: <reason>` and passes.

#[path = "../../tests/support/skip.rs"]
mod skip;
#[path = "support/sshd.rs"]
mod sshd;

use gantry_provision::transport::{HostKeyPolicy, SshSettings, SshTransport, Transport, TransportError, forward_local};
use sshd::{Sshd, bytes, cmd, eventually, free_port, keygen, start};
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

/// Settings for `target`'s sshd reached through `bastion`'s.
fn through(target: &Sshd, bastion: &Sshd) -> SshSettings {
    let mut settings = target.settings(HostKeyPolicy::AcceptNew);
    settings.jump = Some(Box::new(bastion.settings(HostKeyPolicy::AcceptNew)));
    settings
}

#[tokio::test]
async fn a_host_behind_a_bastion_is_reached_through_it_and_the_bastion_session_ends_with_it() {
    let Some(bastion) = start() else { return };
    let Some(target) = start() else { return };
    let t = SshTransport::new("behind", through(&target, &bastion));
    let out = t.run(&cmd("echo $SSH_CONNECTION")).await.expect("runs through the bastion");
    let fields: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(fields.last().copied(), Some(target.port.to_string().as_str()), "{}", out.stdout);
    let dest = target.dir.path().join("up/file");
    let content: Vec<u8> = (0..1_500_000u32).map(|i| (i % 253) as u8).collect();
    assert!(t.upload(&bytes(&dest, &content, 0o644)).await.expect("uploads through the bastion").changed);
    assert_eq!(t.read_file(&dest).await.expect("reads through the bastion"), content);
    assert_eq!(bastion.connection_pids().len(), 1, "one bastion session");
    assert_eq!(target.connection_pids().len(), 1, "one session to the host");
    let bastion_known = fs::read_to_string(bastion.known_hosts()).expect("the bastion's key is recorded");
    assert!(bastion_known.contains(&format!("[127.0.0.1]:{}", bastion.port)), "{bastion_known}");
    drop(t);
    assert!(eventually(|| bastion.connection_pids().is_empty()), "the bastion session outlived the transport");
    assert!(eventually(|| target.connection_pids().is_empty()), "the host's session outlived the transport");
}

#[tokio::test]
async fn failures_behind_a_bastion_name_the_hop_that_failed() {
    let Some(bastion) = start() else { return };
    let Some(target) = start() else { return };
    let bastion_addr = format!("127.0.0.1:{}", bastion.port);

    let mut settings = through(&target, &bastion);
    let closed = free_port();
    settings.jump.as_mut().expect("a jump").port = closed;
    let err = SshTransport::new("behind", settings).connect().await.expect_err("bastion refused");
    assert!(matches!(&err, TransportError::Refused { host, .. } if host.contains("bastion 127.0.0.1")), "{err}");

    let mut settings = through(&target, &bastion);
    let wrong = bastion.dir.path().join("wrong_key");
    keygen(&wrong);
    settings.jump.as_mut().expect("a jump").identity_files = vec![wrong];
    let err = SshTransport::new("behind", settings).connect().await.expect_err("bastion login rejected");
    assert!(
        matches!(&err, TransportError::Auth { host, .. } if host.contains(&format!("bastion {bastion_addr}"))),
        "{err}"
    );

    let mut settings = through(&target, &bastion);
    settings.port = closed;
    let err = SshTransport::new("behind", settings).connect().await.expect_err("nothing behind the bastion");
    match &err {
        TransportError::JumpFailed { host, bastion: b, addr, .. } => {
            assert_eq!(
                (host.as_str(), b.as_str(), addr.clone()),
                ("behind", bastion_addr.as_str(), format!("127.0.0.1:{closed}"))
            );
        }
        _ => panic!("expected a bastion connect failure, got {err}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&format!("the bastion {bastion_addr} could not open a connection to 127.0.0.1:{closed}")),
        "{message}"
    );
    assert!(err.is_retryable());

    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut settings = through(&target, &bastion);
    settings.port = silent.local_addr().expect("addr").port();
    settings.connect_timeout = Duration::from_millis(500);
    let err = SshTransport::new("behind", settings).connect().await.expect_err("silent host behind the bastion");
    assert!(
        matches!(&err, TransportError::ConnectTimeout { host, stage: "SSH handshake", .. } if host == "behind"),
        "{err}"
    );
    drop(silent);
}

/// A TCP server on 127.0.0.1 that echoes each connection's bytes back after the client's EOF.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut data = Vec::new();
                if stream.read_to_end(&mut data).is_ok() {
                    let _ = stream.write_all(&data);
                }
            });
        }
    });
    port
}

/// Sends `data` to `addr`, half-closes, and returns everything received.
fn exchange(addr: std::net::SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connects to the forward");
    stream.write_all(data).expect("sends");
    stream.shutdown(Shutdown::Write).expect("half-closes");
    let mut back = Vec::new();
    stream.read_to_end(&mut back).expect("receives");
    back
}

#[test]
fn a_local_forward_carries_connections_through_the_bastion_until_dropped() {
    let Some(bastion) = start() else { return };
    let echo = echo_server();
    let forward = forward_local(&bastion.settings(HostKeyPolicy::AcceptNew), ("127.0.0.1".into(), echo))
        .expect("the forward starts");
    let addr = forward.addr();
    assert!(addr.ip().is_loopback());
    let request = b"GET /v1/health HTTP/1.1\r\nHost: master\r\n\r\n";
    assert_eq!(exchange(addr, request), request);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let big = big.clone();
            std::thread::spawn(move || exchange(addr, &big) == big)
        })
        .collect();
    for h in handles {
        assert!(h.join().expect("client thread"), "a concurrent forwarded connection lost bytes");
    }
    assert_eq!(bastion.connection_pids().len(), 1, "one bastion session carries every connection");
    drop(forward);
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed on drop");
    assert!(eventually(|| bastion.connection_pids().is_empty()), "the bastion session outlived the forward");
}

#[test]
fn a_forward_whose_bastion_session_was_closed_opens_again_on_request() {
    let Some(bastion) = start() else { return };
    let echo = echo_server();
    let mut forward = forward_local(&bastion.settings(HostKeyPolicy::AcceptNew), ("127.0.0.1".into(), echo))
        .expect("the forward starts");
    assert!(!forward.reopen_if_closed().expect("an open forward is kept"), "an open forward was reopened");
    let first = forward.addr();
    assert_eq!(exchange(first, b"before"), b"before");
    let sessions = bastion.connection_pids();
    assert_eq!(sessions.len(), 1, "one bastion session");
    for pid in sessions {
        // SAFETY: kill has no memory preconditions; the pid is the bastion sshd's own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(eventually(|| !forward.is_open()), "the forward did not notice the bastion closed its session");
    assert!(TcpStream::connect(first).is_err(), "a closed forward's port still accepts connections");
    assert!(forward.reopen_if_closed().expect("the forward opens again"), "the closed forward was not reopened");
    assert!(forward.is_open());
    assert_eq!(exchange(forward.addr(), b"after"), b"after", "the reopened forward carries connections");
    assert_eq!(bastion.connection_pids().len(), 1, "one new bastion session");
}

#[test]
fn a_forwarded_connection_the_bastion_cannot_carry_is_closed_and_later_ones_are_still_accepted() {
    let Some(bastion) = start() else { return };
    let closed = free_port();
    let forward = forward_local(&bastion.settings(HostKeyPolicy::AcceptNew), ("127.0.0.1".into(), closed))
        .expect("the forward starts");
    for _ in 0..2 {
        let mut stream = TcpStream::connect(forward.addr()).expect("the local side accepts");
        // Only a guard against hanging; a forward that keeps the connection open fails the match.
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
        let mut back = Vec::new();
        let read = stream.read_to_end(&mut back);
        assert!(matches!(read, Ok(0)), "expected the connection closed, got {read:?}");
    }
}

#[tokio::test]
async fn jump_hosts_chain() {
    let Some(outer) = start() else { return };
    let Some(inner) = start() else { return };
    let Some(target) = start() else { return };
    let mut settings = through(&target, &inner);
    settings.jump.as_mut().expect("a jump").jump = Some(Box::new(outer.settings(HostKeyPolicy::AcceptNew)));
    let t = SshTransport::new("deep", settings);
    assert_eq!(t.run(&cmd("echo deep")).await.expect("runs through two bastions").stdout, "deep\n");
    let sessions = [&outer, &inner, &target].map(|s| s.connection_pids().len());
    assert_eq!(sessions, [1, 1, 1], "one session on each hop");
    drop(t);
    assert!(eventually(|| outer.connection_pids().is_empty()), "the outer bastion session outlived the transport");
}
