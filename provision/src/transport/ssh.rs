//! [`SshTransport`]: the host is reached over SSH (libssh2 through the `ssh2` crate).
//!
//! One session per host, opened on first use and reused; a session found broken when a channel
//! is opened is replaced once, which is safe because nothing ran on it yet. libssh2 is blocking,
//! so every call runs on `spawn_blocking` and the async runtime never waits on a socket.
//! Commands run under `/bin/sh -c` in their own session on the host (sshd calls `setsid`), so a
//! timeout kills the whole process group. Uploads go to a temp name beside the destination, are
//! checksummed on the host with `sha256sum`, chmodded, fsynced and renamed into place.
//!
//! Login tries the ssh-agent's keys first (when [`SshSettings::use_agent`]), then the key files;
//! a refusal lists every key tried. A host can be reached through a jump host
//! ([`SshSettings::jump`]): the bastion's session opens a `direct-tcpip` channel to the host and a
//! proxy thread bridges it to a socket pair under the host's own session (its own host key check
//! and login), so jump hosts chain. [`forward_local`] forwards a local port through a bastion
//! (the master's HTTP API during `gantry up`). With [`SshSettings::sudo`], every command, upload
//! and read runs as root through `sudo`; whether sudo needs the password is checked once per
//! session, so a host that asks for one when none is configured fails at connect with a hint.

mod auth;
mod connect;
mod exec;
mod files;
mod jump;
mod known_hosts;
mod pump;
mod sudo;

pub use auth::KeyAttempt;
pub use jump::{LocalForward, forward_local};
pub use known_hosts::HostKeyProblem;
pub use sudo::{Sudo, SudoProblem};

use super::{Command, CommandOutput, Transport, TransportError, Upload, Uploaded, sha256_hex};
use crate::cluster_file::{KnownHosts, SshSection};
use connect::Connection;
use exec::ExecError;
use futures_util::future::BoxFuture;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The environment variable holding the passphrase of encrypted key files.
pub const PASSPHRASE_ENV: &str = "GANTRY_SSH_PASSPHRASE";

/// The environment variable holding the sudo password of the login user (see [`Sudo::from_env`]).
pub const SUDO_PASSWORD_ENV: &str = "GANTRY_SUDO_PASSWORD";

/// The environment variable naming the ssh-agent's socket (OpenSSH's name).
pub const AGENT_SOCKET_ENV: &str = "SSH_AUTH_SOCK";

/// What to do with a host key that is not in known_hosts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// The host must be listed and its key must match.
    #[default]
    Strict,
    /// An unlisted host's key is appended to known_hosts; a different key is still refused.
    AcceptNew,
}

impl From<KnownHosts> for HostKeyPolicy {
    fn from(k: KnownHosts) -> Self {
        match k {
            KnownHosts::Strict => Self::Strict,
            KnownHosts::AcceptNew => Self::AcceptNew,
        }
    }
}

/// A key passphrase; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase(pub String);

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// How to reach and log in to one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSettings {
    /// Host name or IP address.
    pub address: String,
    /// Port of sshd.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Private keys tried in order; the first the host accepts is used.
    pub identity_files: Vec<PathBuf>,
    /// Passphrase for encrypted keys (unencrypted keys ignore it).
    pub passphrase: Option<Passphrase>,
    /// The OpenSSH known_hosts file checked (and appended to under [`HostKeyPolicy::AcceptNew`]).
    pub known_hosts: PathBuf,
    /// Host key policy.
    pub policy: HostKeyPolicy,
    /// Limit for the TCP connect and for the SSH handshake, each.
    pub connect_timeout: Duration,
    /// Limit for an upload or a file read (a command brings its own timeout).
    pub command_timeout: Duration,
    /// Try the ssh-agent's keys (before [`Self::identity_files`]).
    pub use_agent: bool,
    /// The ssh-agent's socket; `None` lets libssh2 read `SSH_AUTH_SOCK` itself.
    pub agent_socket: Option<PathBuf>,
    /// Reach this host through a jump host (bastion) with these settings; its own known_hosts
    /// check, keys and timeouts apply to it, and it may have a jump host of its own (its `sudo`
    /// is ignored). Reaching this host through it is limited by this host's `connect_timeout`.
    pub jump: Option<Box<SshSettings>>,
    /// Run every command (and the uploads and reads) as root through sudo.
    pub sudo: Option<Sudo>,
}

impl SshSettings {
    /// Port 22, the user's default keys (`~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`),
    /// the passphrase from `GANTRY_SSH_PASSPHRASE` if set, `~/.ssh/known_hosts`, strict, 10 s to
    /// connect, 10 min per file transfer; the ssh-agent at `SSH_AUTH_SOCK` when that is set; no
    /// jump host, no sudo.
    pub fn new(address: impl Into<String>, user: impl Into<String>) -> Self {
        let agent_socket = std::env::var_os(AGENT_SOCKET_ENV).filter(|s| !s.is_empty()).map(PathBuf::from);
        let ssh_dir =
            std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root")).join(".ssh");
        Self {
            address: address.into(),
            port: 22,
            user: user.into(),
            identity_files: ["id_ed25519", "id_ecdsa", "id_rsa"].iter().map(|k| ssh_dir.join(k)).collect(),
            passphrase: std::env::var(PASSPHRASE_ENV).ok().map(Passphrase),
            known_hosts: ssh_dir.join("known_hosts"),
            policy: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(600),
            use_agent: agent_socket.is_some(),
            agent_socket,
            jump: None,
            sudo: None,
        }
    }

    /// Settings for `address` from a cluster file's `[ssh]` section; `key_file` is the section's
    /// resolved key file (see `ClusterFile::ssh_key_file`), tried alone when given. The agent
    /// follows [`Self::new`]; `jump` and `sudo` are left unset for the caller to decide.
    pub fn from_section(address: impl Into<String>, ssh: &SshSection, key_file: Option<PathBuf>) -> Self {
        let mut settings = Self::new(address, ssh.user.clone());
        settings.port = ssh.port;
        if let Some(key) = key_file {
            settings.identity_files = vec![key];
        }
        settings.policy = ssh.known_hosts.into();
        settings.connect_timeout = ssh.connect_timeout.get_ref().0;
        settings
    }

    /// `address:port`, bracketed for IPv6, for messages.
    pub fn target(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

/// Runs commands and copies files on one host over one reused SSH session.
#[derive(Clone)]
pub struct SshTransport {
    inner: Arc<Inner>,
}

struct Inner {
    host: String,
    settings: SshSettings,
    connection: Mutex<Option<Connection>>,
}

impl fmt::Debug for SshTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshTransport")
            .field("host", &self.inner.host)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// Why an operation on a session failed.
enum OpError {
    /// The session is unusable and nothing ran: reconnect and try again.
    Broken(String),
    /// Report this; `drop` says whether the session must be discarded.
    Fail { error: TransportError, drop: bool },
}

impl OpError {
    fn keep(error: TransportError) -> Self {
        Self::Fail { error, drop: false }
    }
}

impl SshTransport {
    /// A transport for `host` (its name in messages); connects on first use.
    pub fn new(host: impl Into<String>, settings: SshSettings) -> Self {
        Self { inner: Arc::new(Inner { host: host.into(), settings, connection: Mutex::new(None) }) }
    }

    /// Whether `other` is a clone of this transport, sharing its SSH session.
    pub fn shares_session_with(&self, other: &SshTransport) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The settings used.
    pub fn settings(&self) -> &SshSettings {
        &self.inner.settings
    }

    /// Connects now (otherwise the first call does); a no-op when a session is open.
    pub async fn connect(&self) -> Result<(), TransportError> {
        self.blocking(|inner| inner.with_session(|_| Ok(()))).await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Inner) -> Result<T, TransportError> + Send + 'static,
    ) -> Result<T, TransportError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || op(&inner)).await.map_err(|e| TransportError::Connect {
            host: self.inner.host.clone(),
            message: format!("the SSH worker thread failed: {e}"),
        })?
    }
}

impl Inner {
    /// Runs `op` on the host's session, connecting first if needed and reconnecting once if the
    /// reused session turns out to be broken.
    fn with_session<T>(&self, op: impl Fn(&Connection) -> Result<T, OpError>) -> Result<T, TransportError> {
        let mut slot = self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut reconnected = false;
        loop {
            let fresh = slot.is_none();
            let connection = match slot.take() {
                Some(c) => c,
                None => connect::connect(&self.host, &self.settings)?,
            };
            match op(&connection) {
                Ok(value) => {
                    *slot = Some(connection);
                    return Ok(value);
                }
                Err(OpError::Broken(message)) if !fresh && !reconnected => {
                    tracing::debug!(host = %self.host, %message, "SSH session broken; reconnecting.");
                    reconnected = true;
                }
                Err(OpError::Broken(message)) => {
                    return Err(TransportError::Connect { host: self.host.clone(), message });
                }
                Err(OpError::Fail { error, drop }) => {
                    if !drop {
                        *slot = Some(connection);
                    }
                    return Err(error);
                }
            }
        }
    }

    /// Maps an [`ExecError`] of `script` to an [`OpError`].
    fn exec_error(&self, script: &str, after: Duration, e: ExecError) -> OpError {
        match e {
            ExecError::Broken(message) => OpError::Broken(message),
            ExecError::TimedOut { session_ok } => OpError::Fail {
                error: TransportError::Timeout { host: self.host.clone(), script: script.to_string(), after },
                drop: !session_ok,
            },
            ExecError::Failed(message) => {
                OpError::Fail { error: TransportError::Connect { host: self.host.clone(), message }, drop: true }
            }
        }
    }

    fn run(&self, command: &Command) -> Result<CommandOutput, TransportError> {
        let script = exec::with_env(&command.script, &command.env);
        self.with_session(|c| {
            let out = exec::exec(c, &self.settings, &script, None, command.timeout)
                .map_err(|e| self.exec_error(&command.script, command.timeout, e))?;
            Ok(CommandOutput {
                exit_code: out.exit_code,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        })
    }
}

impl Transport for SshTransport {
    fn host(&self) -> &str {
        &self.inner.host
    }

    fn run<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<CommandOutput, TransportError>> {
        let command = command.clone();
        Box::pin(self.blocking(move |inner| inner.run(&command)))
    }

    fn upload<'a>(&'a self, upload: &'a Upload) -> BoxFuture<'a, Result<Uploaded, TransportError>> {
        let upload = upload.clone();
        Box::pin(self.blocking(move |inner| {
            let content = upload.source.contents(&inner.host)?;
            let sha256 = sha256_hex(&content);
            let changed = files::upload(inner, &upload, &content, &sha256)?;
            Ok(Uploaded { bytes: content.len() as u64, sha256, changed })
        }))
    }

    fn read_file<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<Vec<u8>, TransportError>> {
        let path = path.to_path_buf();
        Box::pin(self.blocking(move |inner| files::read_file(inner, &path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_file::ClusterFile;

    #[test]
    fn settings_follow_the_cluster_file_ssh_section() {
        let text = "version = 1\n[cluster]\nname = \"dev\"\nprovider = \"local\"\n\
                    [ssh]\nuser = \"ops\"\nkey_file = \"keys/id\"\nport = 2222\nknown_hosts = \"accept-new\"\n\
                    connect_timeout = \"3s\"\n";
        let file = ClusterFile::parse(Path::new("/etc/gantry/c.toml"), text).expect("parses");
        let s = SshSettings::from_section("10.0.0.5", &file.ssh, file.ssh_key_file());
        assert_eq!((s.user.as_str(), s.port, s.policy), ("ops", 2222, HostKeyPolicy::AcceptNew));
        assert_eq!(s.identity_files, [PathBuf::from("/etc/gantry/keys/id")]);
        assert_eq!(s.connect_timeout, Duration::from_secs(3));
        assert_eq!(s.target(), "10.0.0.5:2222");
        let defaults = SshSettings::from_section("h", &SshSection::default(), None);
        let names: Vec<_> = defaults.identity_files.iter().filter_map(|p| p.file_name()).collect();
        assert_eq!(names, ["id_ed25519", "id_ecdsa", "id_rsa"]);
        assert_eq!(defaults.policy, HostKeyPolicy::Strict);
    }
}
