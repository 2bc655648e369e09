//! A real OpenSSH `sshd` per test on 127.0.0.1 for the SSH transport's tests: started with its own
//! host key, client key and config, killed on drop; `start` says why it cannot run (not root, no
//! sshd or ssh-keygen) and the test passes as skipped. The including test crate declares `skip`.
#![allow(dead_code)]

use gantry_provision::transport::{Command, HostKeyPolicy, SshSettings, SshTransport, Upload, UploadSource};
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

pub const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd, killed on drop.
pub struct Sshd {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    pub fn settings(&self, policy: HostKeyPolicy) -> SshSettings {
        let mut s = SshSettings::new("127.0.0.1", "root");
        s.port = self.port;
        s.identity_files = vec![self.client_key()];
        s.known_hosts = self.known_hosts();
        s.policy = policy;
        s.connect_timeout = Duration::from_secs(10);
        s.command_timeout = Duration::from_secs(60);
        s.use_agent = false;
        s
    }

    pub fn transport(&self) -> SshTransport {
        SshTransport::new("sshd-test", self.settings(HostKeyPolicy::AcceptNew))
    }

    /// The pids of this sshd's children (one per open connection).
    pub fn connection_pids(&self) -> Vec<i32> {
        let pid = self.child.id();
        let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        children.split_whitespace().filter_map(|p| p.parse().ok()).collect()
    }
}

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(tool)).find(|p| p.is_file())
}

pub fn keygen(path: &Path) {
    keygen_with(path, "ed25519", "");
}

pub fn keygen_with(path: &Path, kind: &str, passphrase: &str) {
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", passphrase, "-C", "gantry-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen runs");
    assert!(ok.success(), "ssh-keygen failed for {}", path.display());
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Starts sshd, or prints why it cannot and returns `None`.
pub fn start() -> Option<Sshd> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let reason = if !root {
        Some("not running as root (sshd must accept root logins)")
    } else if !Path::new(SSHD).is_file() {
        Some("/usr/sbin/sshd is not installed")
    } else if which("ssh-keygen").is_none() {
        Some("ssh-keygen is not installed")
    } else {
        None
    };
    if let Some(reason) = reason {
        crate::skip::skipped(reason);
        return None;
    }
    fs::create_dir_all("/run/sshd").expect("sshd's privilege separation dir");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    keygen(&d.join("host_key"));
    keygen(&d.join("client_key"));
    fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).expect("authorized_keys");
    let port = free_port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {auth} .ssh/authorized_keys\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
         PermitRootLogin yes\nStrictModes no\nUsePAM no\nPidFile {pid}\nAllowTcpForwarding yes\n",
        host_key = d.join("host_key").display(),
        auth = d.join("authorized_keys").display(),
        pid = d.join("sshd.pid").display(),
    );
    fs::write(d.join("sshd_config"), config).expect("sshd_config");
    let log = fs::File::create(d.join("sshd.log")).expect("log");
    let child = std::process::Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("sshd starts");
    let sshd = Sshd { child, dir, port };
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(sshd);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let log = fs::read_to_string(sshd.dir.path().join("sshd.log")).unwrap_or_default();
    panic!("sshd did not listen on port {port}; its log:\n{log}");
}

pub fn cmd(script: &str) -> Command {
    Command::new(script, Duration::from_secs(30))
}

pub fn bytes(dest: &Path, content: &[u8], mode: u32) -> Upload {
    Upload { source: UploadSource::Bytes(content.to_vec()), dest: dest.to_path_buf(), mode }
}

pub fn eventually(done: impl Fn() -> bool) -> bool {
    for _ in 0..400 {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    done()
}
