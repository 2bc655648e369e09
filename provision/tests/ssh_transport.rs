//! `SshTransport` against a real OpenSSH `sshd` started per test on 127.0.0.1 (no traffic leaves
//! loopback). Needs root (to log in as root), `/usr/sbin/sshd` and `ssh-keygen`; without them each
//! test prints `SKIPPED: <reason>` and passes. No wall-clock assertions: errors are checked by kind.
//! The agent tests also need `ssh-agent` and `ssh-add`; the sudo tests
//! need `sudo` and create (and remove) users and sudoers.d files with unique names. Bastions and
//! forwards through them: `ssh_bastion.rs`; the sshd itself: `support/sshd.rs`.

#[path = "../../tests/support/skip.rs"]
mod skip;
#[path = "support/sshd.rs"]
mod sshd;

use gantry_provision::transport::{
    Command, HostKeyPolicy, HostKeyProblem, Passphrase, SshSettings, SshTransport, Sudo, SudoProblem, Transport,
    TransportError, Upload, UploadSource, sha256_hex,
};
use sshd::{Sshd, bytes, cmd, eventually, free_port, keygen, keygen_with, start, which};
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

#[tokio::test]
async fn runs_commands_with_output_and_exit_codes_on_one_session() {
    let Some(sshd) = start() else { return };
    let t = sshd.transport();
    let mut c = cmd("echo out; echo err >&2; echo \"$GREETING\"; exit 3");
    c.env.insert("GREETING".into(), "it's me".into());
    let out = t.run(&c).await.expect("runs");
    assert_eq!(out.exit_code, Some(3));
    assert_eq!(out.stdout, "out\nit's me\n");
    assert_eq!(out.stderr, "err\n");
    let ok = t.run(&cmd("true")).await.expect("runs again");
    assert!(ok.success());
    assert_eq!(sshd.connection_pids().len(), 1, "the session is reused");
    let big = t.run(&cmd("head -c 300000 /dev/zero | tr '\\0' x; head -c 200000 /dev/zero | tr '\\0' y >&2")).await;
    let big = big.expect("large output");
    assert_eq!((big.stdout.len(), big.stderr.len()), (300_000, 200_000));
}

#[tokio::test]
async fn a_command_past_its_timeout_is_killed_and_the_session_still_works() {
    let Some(sshd) = start() else { return };
    let t = sshd.transport();
    let pidfile = sshd.dir.path().join("sleep.pid");
    let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
    let err = t.run(&Command::new(script, Duration::from_millis(500))).await.expect_err("times out");
    assert!(matches!(err, TransportError::Timeout { .. }), "{err}");
    assert!(err.is_retryable());
    let pid: i32 = fs::read_to_string(&pidfile).expect("pid written").trim().parse().expect("a pid");
    let mut alive = true;
    for _ in 0..100 {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        alive = stat.split(") ").nth(1).is_some_and(|rest| !rest.starts_with('Z'));
        if !alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive, "the remote `sleep` (pid {pid}) outlived the timeout");
    assert!(t.run(&cmd("true")).await.expect("runs after a timeout").success());
}

#[tokio::test]
async fn uploads_are_atomic_checksummed_idempotent_and_keep_the_mode() {
    let Some(sshd) = start() else { return };
    let t = sshd.transport();
    let dest = sshd.dir.path().join("remote/etc/gantry/agent.toml");
    let first = t.upload(&bytes(&dest, b"hello", 0o640)).await.expect("upload");
    assert!(first.changed);
    assert_eq!((first.sha256.as_str(), first.bytes), (sha256_hex(b"hello").as_str(), 5));
    assert_eq!(fs::read(&dest).expect("read"), b"hello");
    assert_eq!(fs::metadata(&dest).expect("stat").permissions().mode() & 0o7777, 0o640);
    assert!(!t.upload(&bytes(&dest, b"hello", 0o640)).await.expect("again").changed);
    assert!(t.upload(&bytes(&dest, b"hello", 0o600)).await.expect("new mode").changed);
    assert_eq!(fs::metadata(&dest).expect("stat").permissions().mode() & 0o7777, 0o600);
    let src = sshd.dir.path().join("gantry.bin");
    let content: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(&src, &content).expect("write");
    let from_file = t
        .upload(&Upload { source: UploadSource::File(src), dest: dest.clone(), mode: 0o755 })
        .await
        .expect("file upload");
    assert!(from_file.changed);
    assert_eq!(from_file.sha256, sha256_hex(&content));
    assert_eq!(fs::read(&dest).expect("read"), content);
    assert_eq!(fs::metadata(&dest).expect("stat").permissions().mode() & 0o7777, 0o755);
    let leftovers: Vec<_> = fs::read_dir(dest.parent().expect("parent"))
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n != "agent.toml")
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[tokio::test]
async fn reads_files_and_reports_missing_ones_as_not_found() {
    let Some(sshd) = start() else { return };
    let t = sshd.transport();
    let path = sshd.dir.path().join("data.bin");
    fs::write(&path, b"\x00\x01binary\xff").expect("write");
    assert_eq!(t.read_file(&path).await.expect("read"), b"\x00\x01binary\xff");
    let err = t.read_file(&sshd.dir.path().join("missing")).await.expect_err("missing");
    assert!(matches!(err, TransportError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn accept_new_records_the_host_key_and_strict_then_accepts_it() {
    let Some(sshd) = start() else { return };
    let strict = SshTransport::new("h", sshd.settings(HostKeyPolicy::Strict));
    let err = strict.connect().await.expect_err("unknown host");
    assert!(matches!(&err, TransportError::HostKey { problem: HostKeyProblem::Unknown { .. }, .. }), "{err}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains(&sshd.known_hosts().display().to_string()), "{err}");
    sshd.transport().connect().await.expect("accept-new connects");
    let recorded = fs::read_to_string(sshd.known_hosts()).expect("known_hosts written");
    assert!(recorded.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", sshd.port)), "{recorded}");
    let strict = SshTransport::new("h", sshd.settings(HostKeyPolicy::Strict));
    assert!(strict.run(&cmd("true")).await.expect("strict connects").success());
    sshd.transport().connect().await.expect("accept-new again");
    assert_eq!(fs::read_to_string(sshd.known_hosts()).expect("read"), recorded, "nothing appended twice");
}

#[tokio::test]
async fn a_changed_host_key_is_refused_naming_the_known_hosts_line() {
    let Some(sshd) = start() else { return };
    let other = sshd.dir.path().join("other_host_key");
    keygen(&other);
    let other_pub = fs::read_to_string(other.with_extension("pub")).expect("pub");
    let key = other_pub.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    fs::write(sshd.known_hosts(), format!("# hosts\n[127.0.0.1]:{} {key}\n", sshd.port)).expect("write");
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let err = SshTransport::new("h", sshd.settings(policy)).connect().await.expect_err("mismatch");
        match &err {
            TransportError::HostKey { problem: HostKeyProblem::Mismatch { file, line, .. }, .. } => {
                assert_eq!((file, *line), (&sshd.known_hosts(), Some(2)));
            }
            _ => panic!("expected a host key mismatch, got {err}"),
        }
        assert!(err.to_string().contains(&format!("{} line 2", sshd.known_hosts().display())), "{err}");
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn a_key_the_host_does_not_know_is_rejected_naming_each_key_tried() {
    let Some(sshd) = start() else { return };
    let wrong = sshd.dir.path().join("wrong_key");
    keygen(&wrong);
    let missing = sshd.dir.path().join("id_missing");
    let mut settings = sshd.settings(HostKeyPolicy::AcceptNew);
    settings.identity_files = vec![missing.clone(), wrong.clone()];
    let err = SshTransport::new("h", settings).connect().await.expect_err("rejected");
    match &err {
        TransportError::Auth { user, tried, .. } => {
            assert_eq!(user, "root");
            assert_eq!(tried.iter().map(|k| &k.path).collect::<Vec<_>>(), [&missing, &wrong]);
        }
        _ => panic!("expected an auth error, got {err}"),
    }
    let message = err.to_string();
    assert!(message.contains("user root") && message.contains(&wrong.display().to_string()), "{message}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_closed_port_is_refused() {
    let Some(sshd) = start() else { return };
    let mut settings = sshd.settings(HostKeyPolicy::AcceptNew);
    settings.port = free_port();
    let err = SshTransport::new("h", settings).run(&cmd("true")).await.expect_err("refused");
    assert!(matches!(err, TransportError::Refused { .. }), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_listener_that_never_sends_a_banner_times_out() {
    let Some(sshd) = start() else { return };
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut settings = sshd.settings(HostKeyPolicy::AcceptNew);
    settings.port = silent.local_addr().expect("addr").port();
    settings.connect_timeout = Duration::from_millis(500);
    let err = SshTransport::new("h", settings).connect().await.expect_err("times out");
    assert!(matches!(err, TransportError::ConnectTimeout { stage: "SSH handshake", .. }), "{err}");
    assert!(err.is_retryable());
    drop(silent);
}

#[tokio::test]
async fn a_broken_session_is_replaced_once() {
    let Some(sshd) = start() else { return };
    let t = sshd.transport();
    assert!(t.run(&cmd("true")).await.expect("first").success());
    for pid in sshd.connection_pids() {
        // SAFETY: kill has no memory preconditions; the pid is a child of the sshd this test started.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    let out = t.run(&cmd("echo again")).await.expect("reconnects");
    assert_eq!(out.stdout, "again\n");
}

#[tokio::test]
async fn encrypted_and_ecdsa_keys_log_in_with_the_passphrase() {
    let Some(sshd) = start() else { return };
    let ecdsa = sshd.dir.path().join("ecdsa_key");
    keygen_with(&ecdsa, "ecdsa", "s3cret");
    let authorized = sshd.dir.path().join("authorized_keys");
    let mut keys = fs::read_to_string(&authorized).expect("read");
    keys.push_str(&fs::read_to_string(ecdsa.with_extension("pub")).expect("pub"));
    fs::write(&authorized, keys).expect("write");
    let mut settings = sshd.settings(HostKeyPolicy::AcceptNew);
    settings.identity_files = vec![ecdsa.clone()];
    settings.passphrase = Some(Passphrase("wrong".into()));
    let err = SshTransport::new("h", settings.clone()).connect().await.expect_err("wrong passphrase");
    assert!(
        matches!(&err, TransportError::Auth { tried, .. } if tried[0].outcome.contains("GANTRY_SSH_PASSPHRASE")),
        "{err}"
    );
    settings.passphrase = Some(Passphrase("s3cret".into()));
    let t = SshTransport::new("h", settings);
    assert!(t.run(&cmd("true")).await.expect("logs in").success());
    assert!(!format!("{t:?}").contains("s3cret"), "the passphrase is never printed");
}

#[tokio::test]
async fn failures_on_the_host_name_the_path_and_the_cause() {
    let Some(sshd) = start() else { return };
    let t = sshd.transport();
    let file = sshd.dir.path().join("a_file");
    fs::write(&file, b"x").expect("write");
    let big: Vec<u8> = vec![7; 4_000_000];
    let err = t.upload(&bytes(&file.join("below/dest"), &big, 0o644)).await.expect_err("parent is a file");
    assert!(matches!(&err, TransportError::Io { op: "write", .. }), "{err}");
    assert!(err.to_string().contains("Not a directory"), "{err}");
    let err = t.read_file(sshd.dir.path()).await.expect_err("a directory");
    assert!(matches!(&err, TransportError::Io { op: "read", .. }), "{err}");
    assert!(t.run(&cmd("true")).await.expect("the session still works").success());
}

/// Whether `done` became true within a generous bound (not a timing assertion: it only ends the wait).
/// A running `ssh-agent -D` holding some keys, killed on drop.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts an agent with a socket in `dir` holding `keys`, or prints why it cannot.
fn start_agent(dir: &Path, keys: &[&Path]) -> Option<Agent> {
    if which("ssh-agent").is_none() || which("ssh-add").is_none() {
        skip::skipped("ssh-agent or ssh-add is not installed");
        return None;
    }
    let socket = dir.join("agent.sock");
    let child = std::process::Command::new("ssh-agent")
        .args(["-D", "-a"])
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh-agent starts");
    let agent = Agent { child, socket };
    assert!(eventually(|| agent.socket.exists()), "ssh-agent made no socket");
    for key in keys {
        let added = std::process::Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &agent.socket)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("ssh-add runs");
        assert!(added.success(), "ssh-add {} failed", key.display());
    }
    Some(agent)
}

#[tokio::test]
async fn agent_keys_log_in_without_key_files() {
    let Some(sshd) = start() else { return };
    let Some(agent) = start_agent(sshd.dir.path(), &[&sshd.client_key()]) else { return };
    let mut settings = sshd.settings(HostKeyPolicy::AcceptNew);
    settings.identity_files = vec![sshd.dir.path().join("id_missing")];
    settings.use_agent = true;
    settings.agent_socket = Some(agent.socket.clone());
    let out = SshTransport::new("h", settings).run(&cmd("echo via-agent")).await.expect("the agent's key logs in");
    assert_eq!(out.stdout, "via-agent\n");
}

#[tokio::test]
async fn agent_keys_the_host_rejects_and_an_unreachable_agent_are_named() {
    let Some(sshd) = start() else { return };
    let wrong = sshd.dir.path().join("agent_wrong_key");
    keygen(&wrong);
    let Some(agent) = start_agent(sshd.dir.path(), &[&wrong]) else { return };
    let missing = sshd.dir.path().join("id_missing");
    let mut settings = sshd.settings(HostKeyPolicy::AcceptNew);
    settings.identity_files = vec![missing.clone()];
    settings.use_agent = true;
    settings.agent_socket = Some(agent.socket.clone());
    let err = SshTransport::new("h", settings.clone()).connect().await.expect_err("rejected");
    let TransportError::Auth { tried, .. } = &err else { panic!("expected an auth error, got {err}") };
    assert_eq!(tried.len(), 2, "{err}");
    assert_eq!(tried[0].path, PathBuf::from("ssh-agent:gantry-test"));
    assert_eq!(tried[0].outcome, "rejected by the host");
    assert_eq!(tried[1].path, missing);
    assert!(!err.is_retryable());

    let gone = sshd.dir.path().join("no-agent.sock");
    settings.agent_socket = Some(gone.clone());
    let err = SshTransport::new("h", settings).connect().await.expect_err("no agent, no key");
    let TransportError::Auth { tried, .. } = &err else { panic!("expected an auth error, got {err}") };
    assert_eq!(tried[0].path, PathBuf::from("ssh-agent"));
    assert!(tried[0].outcome.contains(&gone.display().to_string()), "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
}

/// A login user made for one test (home, `~/.ssh/authorized_keys` with the client key, a
/// password, a sudoers.d rule); removed with its home and rule on drop, even when the test fails.
struct TestUser {
    name: String,
    password: String,
    sudoers: PathBuf,
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.sudoers);
        let _ = std::process::Command::new("userdel")
            .args(["-r", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Creates user `gt<tag><pid>` whose sudoers rule is `<name> ALL=(ALL) <rule>ALL`, or prints why
/// it cannot (no sudo, no useradd).
fn sudo_user(sshd: &Sshd, tag: &str, rule: &str) -> Option<TestUser> {
    let missing = ["sudo", "useradd", "userdel", "chpasswd"]
        .into_iter()
        .find(|tool| which(tool).is_none() && !Path::new("/usr/sbin").join(tool).is_file());
    if let Some(tool) = missing {
        skip::skipped(&format!("{tool} is not installed"));
        return None;
    }
    let name = format!("gt{tag}{}", std::process::id());
    let user = TestUser {
        password: format!("pw-{name}-x"),
        sudoers: PathBuf::from(format!("/etc/sudoers.d/gantry-test-{name}")),
        name,
    };
    let run = |program: &str, args: &[&str], input: Option<String>| {
        let mut child = std::process::Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} runs: {e}"));
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.unwrap_or_default().as_bytes()).expect("input");
        drop(stdin);
        assert!(child.wait().expect("waits").success(), "{program} {args:?} failed");
    };
    run("useradd", &["-m", "-s", "/bin/sh", &user.name], None);
    run("chpasswd", &[], Some(format!("{}:{}\n", user.name, user.password)));
    let ssh_dir = Path::new("/home").join(&user.name).join(".ssh");
    fs::create_dir_all(&ssh_dir).expect("~/.ssh");
    fs::copy(sshd.client_key().with_extension("pub"), ssh_dir.join("authorized_keys")).expect("authorized_keys");
    run("chown", &["-R", &format!("{0}:{0}", user.name), &ssh_dir.to_string_lossy()], None);
    fs::write(&user.sudoers, format!("{} ALL=(ALL) {rule}ALL\n", user.name)).expect("sudoers rule");
    fs::set_permissions(&user.sudoers, fs::Permissions::from_mode(0o440)).expect("chmod sudoers rule");
    Some(user)
}

impl TestUser {
    fn settings(&self, sshd: &Sshd, sudo: Option<Sudo>) -> SshSettings {
        let mut settings = sshd.settings(HostKeyPolicy::AcceptNew);
        settings.user = self.name.clone();
        settings.sudo = sudo;
        settings
    }
}

#[tokio::test]
async fn sudo_runs_commands_uploads_reads_and_kills_as_root_for_a_nopasswd_user() {
    let Some(sshd) = start() else { return };
    let Some(user) = sudo_user(&sshd, "np", "NOPASSWD: ") else { return };
    let plain = SshTransport::new("h", user.settings(&sshd, None));
    assert_ne!(plain.run(&cmd("id -u")).await.expect("runs").stdout, "0\n", "the login user is not root");
    let t = SshTransport::new("h", user.settings(&sshd, Some(Sudo::NoPassword)));
    let mut c = cmd("id -u; echo \"$GREETING\"");
    c.env.insert("GREETING".into(), "it's root".into());
    assert_eq!(t.run(&c).await.expect("runs as root").stdout, "0\nit's root\n");
    let root_only = sshd.dir.path().join("root-only");
    fs::create_dir(&root_only).expect("mkdir");
    fs::set_permissions(&root_only, fs::Permissions::from_mode(0o700)).expect("chmod");
    let dest = root_only.join("etc/agent.toml");
    assert!(t.upload(&bytes(&dest, b"as root", 0o600)).await.expect("uploads as root").changed);
    assert_eq!(fs::read(&dest).expect("read"), b"as root");
    assert_eq!(fs::metadata(&dest).expect("stat").uid(), 0);
    assert_eq!(t.read_file(&dest).await.expect("reads as root"), b"as root");
    assert!(plain.read_file(&dest).await.is_err(), "without sudo the file is out of reach");

    // As root through sudo, and as the user whose login shell is /bin/sh (dash on Debian).
    let home = Path::new("/home").join(&user.name);
    for (transport, pidfile) in [(&t, root_only.join("sleep.pid")), (&plain, home.join("sleep.pid"))] {
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let err = transport.run(&Command::new(script, Duration::from_millis(500))).await.expect_err("times out");
        assert!(matches!(err, TransportError::Timeout { .. }), "{err}");
        let pid: i32 = fs::read_to_string(&pidfile).expect("pid written").trim().parse().expect("a pid");
        let gone = eventually(|| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.split(") ").nth(1).is_none_or(|rest| rest.starts_with('Z'))
        });
        assert!(gone, "the `sleep` (pid {pid}, {}) outlived the timeout", pidfile.display());
    }
    assert_eq!(t.run(&cmd("id -u")).await.expect("runs after a timeout").stdout, "0\n");
}

#[tokio::test]
async fn sudo_that_wants_a_password_fails_clearly_without_one_and_works_with_it() {
    let Some(sshd) = start() else { return };
    let Some(user) = sudo_user(&sshd, "pw", "") else { return };
    let err = SshTransport::new("h", user.settings(&sshd, Some(Sudo::NoPassword))).connect().await.expect_err("asks");
    assert!(matches!(&err, TransportError::Sudo { problem: SudoProblem::PasswordRequired, .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("GANTRY_SUDO_PASSWORD") && message.contains("NOPASSWD"), "{message}");
    assert!(!err.is_retryable());

    let wrong = Sudo::Password(Passphrase("not-it".into()));
    let err = SshTransport::new("h", user.settings(&sshd, Some(wrong))).connect().await.expect_err("wrong password");
    assert!(matches!(&err, TransportError::Sudo { problem: SudoProblem::WrongPassword { .. }, .. }), "{err}");

    let right = Sudo::Password(Passphrase(user.password.clone()));
    let t = SshTransport::new("h", user.settings(&sshd, Some(right)));
    assert_eq!(t.run(&cmd("id -u")).await.expect("runs as root").stdout, "0\n");
    let dest = sshd.dir.path().join("pw/file");
    assert!(t.upload(&bytes(&dest, b"exact content", 0o644)).await.expect("uploads").changed);
    assert_eq!(fs::read(&dest).expect("read"), b"exact content", "the password never reaches a command's input");
    assert_eq!(fs::metadata(&dest).expect("stat").uid(), 0);
    assert!(!format!("{t:?}").contains(&user.password), "the password is never printed");
}
