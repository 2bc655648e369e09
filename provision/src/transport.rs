//! The transport contract: run a command, upload a file (checksummed), read a file — on one host.
//! Every provider hands its hosts to the same bootstrap through this trait; bootstrap phases never
//! spawn processes or touch remote files any other way, so a recording fake sees every effect.
//!
//! A command that runs and exits non-zero is not an error of the transport: the output says so,
//! and the phase decides. Transport errors are about reaching the host, time and files. Methods
//! return boxed futures so the trait is object-safe (`Box<dyn Transport>` per host; the binary
//! chooses Local or SSH at run time).

pub mod fake;
pub mod local;
pub mod ssh;

pub use fake::{FakeTransport, TransportCall};
pub use local::LocalTransport;
pub use ssh::{
    HostKeyPolicy, HostKeyProblem, KeyAttempt, LocalForward, Passphrase, SshSettings, SshTransport, Sudo, SudoProblem,
    forward_local,
};

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A shell script to run on a host with `/bin/sh -c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The script.
    pub script: String,
    /// Kill it (and everything it started) after this long.
    pub timeout: Duration,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
}

impl Command {
    /// A script with a timeout and no extra environment.
    pub fn new(script: impl Into<String>, timeout: Duration) -> Self {
        Self { script: script.into(), timeout, env: BTreeMap::new() }
    }
}

/// What a finished command printed and how it exited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit code; `None` when killed by a signal.
    pub exit_code: Option<i32>,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
}

impl CommandOutput {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// Where uploaded bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadSource {
    /// Bytes in memory (rendered configs).
    Bytes(Vec<u8>),
    /// A local file (the gantry binary).
    File(PathBuf),
}

impl UploadSource {
    /// The bytes to upload (reads the file; blocking). `host` names the upload in errors.
    pub fn contents(&self, host: &str) -> Result<Vec<u8>, TransportError> {
        match self {
            Self::Bytes(bytes) => Ok(bytes.clone()),
            Self::File(path) => std::fs::read(path).map_err(|source| TransportError::Io {
                host: host.to_string(),
                op: "read",
                path: path.clone(),
                source,
            }),
        }
    }
}

/// A file to place on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Its content.
    pub source: UploadSource,
    /// Absolute destination path on the host; parent directories are created.
    pub dest: PathBuf,
    /// Unix permission bits, e.g. `0o755`.
    pub mode: u32,
}

/// The result of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// SHA-256 of the content, lowercase hex, verified on the host after writing.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// False when the destination already had this content and mode (nothing was written).
    pub changed: bool,
}

/// A transport failure. Non-zero exits are not errors (see [`CommandOutput`]).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The host could not be reached or the session broke.
    #[error("{host}: cannot connect: {message}")]
    Connect {
        /// The host.
        host: String,
        /// Why.
        message: String,
    },
    /// Nothing accepted the TCP connection (no sshd on that port yet, or a firewall rejects it).
    #[error("{host}: connection to {addr} refused; is sshd running and listening on that port?")]
    Refused {
        /// The host.
        host: String,
        /// The address and port tried.
        addr: String,
    },
    /// The TCP connection or the SSH handshake did not complete in time.
    #[error(
        "{host}: {stage} with {addr} did not complete within {}; check the address, the port and firewalls",
        humantime::format_duration(*.after)
    )]
    ConnectTimeout {
        /// The host.
        host: String,
        /// The address and port tried.
        addr: String,
        /// `TCP connect` or `SSH handshake`.
        stage: &'static str,
        /// The connect timeout.
        after: Duration,
    },
    /// The host reached through a bastion could not be connected to by the bastion (nothing
    /// listens there, no route, or the bastion forbids forwarding).
    #[error("{host}: the bastion {bastion} could not open a connection to {addr}: {message}")]
    JumpFailed {
        /// The host.
        host: String,
        /// The bastion's address and port.
        bastion: String,
        /// The address and port the bastion was asked to connect to.
        addr: String,
        /// What the bastion answered.
        message: String,
    },
    /// The host accepted none of the keys tried for the user.
    #[error(
        "{host}: user {user} was not accepted with any key tried ({}); add a public key to that user's \
         authorized_keys on the host, or set [ssh] key_file",
        KeyAttempt::list(.tried)
    )]
    Auth {
        /// The host.
        host: String,
        /// The login user.
        user: String,
        /// Each key file tried, in order, and what happened.
        tried: Vec<KeyAttempt>,
    },
    /// sudo would not run commands as root for the login user (checked once per session).
    #[error("{host}: user {user}: {problem}")]
    Sudo {
        /// The host.
        host: String,
        /// The login user.
        user: String,
        /// What sudo wanted or said.
        problem: SudoProblem,
    },
    /// The host's key is not the one recorded, or is unknown under the strict policy.
    #[error("{host}: {problem}")]
    HostKey {
        /// The host.
        host: String,
        /// What is wrong and where.
        problem: HostKeyProblem,
    },
    /// The command did not finish in time; it was killed.
    #[error("{host}: `{script}` did not finish within {}", humantime::format_duration(*.after))]
    Timeout {
        /// The host.
        host: String,
        /// The script.
        script: String,
        /// The timeout.
        after: Duration,
    },
    /// A file to read does not exist.
    #[error("{host}: {}: no such file", .path.display())]
    NotFound {
        /// The host.
        host: String,
        /// The file.
        path: PathBuf,
    },
    /// Reading, writing or spawning failed.
    #[error("{host}: {op} {}: {source}", .path.display())]
    Io {
        /// The host.
        host: String,
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The uploaded file's checksum on the host differs from the source's.
    #[error("{host}: {}: checksum mismatch after upload (expected {expected}, found {actual})", .path.display())]
    Checksum {
        /// The host.
        host: String,
        /// The destination.
        path: PathBuf,
        /// SHA-256 of the source.
        expected: String,
        /// SHA-256 found on the host.
        actual: String,
    },
}

impl TransportError {
    /// Whether retrying may succeed: the failure can be transient. True for a broken or
    /// unreachable connection, a connect or command timeout, a checksum mismatch, and for a refused
    /// connection, directly or behind a bastion ([`Self::Refused`], [`Self::JumpFailed`]): a host
    /// that is still booting refuses until its sshd listens, so a caller bringing up fresh
    /// machines must retry it, but a wrong port refuses the same way, so callers retry against a
    /// deadline, never indefinitely. False for what stays wrong until a person acts: a rejected
    /// key, a wrong or unknown host key, sudo refusing, a missing file, a failed read or write.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::Refused { .. }
                | Self::JumpFailed { .. }
                | Self::ConnectTimeout { .. }
                | Self::Timeout { .. }
                | Self::Checksum { .. }
        )
    }
}

/// Runs commands and moves files on one host.
pub trait Transport: Send + Sync + fmt::Debug {
    /// The host this transport reaches (for messages).
    fn host(&self) -> &str;

    /// Runs `command.script` with `/bin/sh -c`; kills it and everything it started on timeout.
    fn run<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<CommandOutput, TransportError>>;

    /// Places a file atomically (temp name, fsync, rename) and verifies its SHA-256 on the host.
    /// Idempotent: the same content and mode already there is not rewritten.
    fn upload<'a>(&'a self, upload: &'a Upload) -> BoxFuture<'a, Result<Uploaded, TransportError>>;

    /// Reads a whole file; [`TransportError::NotFound`] when it does not exist.
    fn read_file<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<Vec<u8>, TransportError>>;
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
