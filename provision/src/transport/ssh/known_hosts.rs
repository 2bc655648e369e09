//! The host key check against an OpenSSH known_hosts file (libssh2's `KnownHosts`).
//! `Strict`: the host must be listed with this key. `AcceptNew`: an unlisted host's key is
//! appended; a listed host with another key is refused under both policies.

use super::{HostKeyPolicy, SshSettings};
use crate::transport::TransportError;
use ssh2::{CheckResult, KnownHostFileKind, Session};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What is wrong with a host's key, and where the recorded one is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyProblem {
    /// The host offered a different key than the one recorded: reinstalled, or an attack.
    Mismatch {
        /// The name looked up (`host` or `[host]:port`).
        name: String,
        /// The known_hosts file.
        file: PathBuf,
        /// The line recording the host, when it is stored in plain (not hashed) form.
        line: Option<usize>,
    },
    /// The host is not listed and the policy is strict.
    Unknown {
        /// The name looked up (`host` or `[host]:port`).
        name: String,
        /// The known_hosts file.
        file: PathBuf,
    },
    /// The key could not be checked or recorded.
    Unusable {
        /// Why.
        message: String,
    },
}

impl fmt::Display for HostKeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mismatch { name, file, line } => {
                let at = line.map(|l| format!(" line {l}")).unwrap_or_default();
                write!(
                    f,
                    "host key for {name} does not match the one in {}{at}; if the host was reinstalled, \
                     remove the old key with `ssh-keygen -R '{name}' -f {}`, otherwise this may be an attack",
                    file.display(),
                    file.display()
                )
            }
            Self::Unknown { name, file } => write!(
                f,
                "host key for {name} is not in {} and [ssh] known_hosts is strict; add the verified key \
                 (e.g. with ssh-keyscan) or set known_hosts = \"accept-new\"",
                file.display()
            ),
            Self::Unusable { message } => write!(f, "host key check failed: {message}"),
        }
    }
}

/// The name under which OpenSSH records `address:port`.
fn entry_name(address: &str, port: u16) -> String {
    if port == 22 { address.to_string() } else { format!("[{address}]:{port}") }
}

/// Checks the session's host key against `s.known_hosts` under `s.policy`.
pub(super) fn verify(session: &Session, host: &str, s: &SshSettings) -> Result<(), TransportError> {
    let fail = |problem| TransportError::HostKey { host: host.to_string(), problem };
    let unusable = |message: String| fail(HostKeyProblem::Unusable { message });
    let name = entry_name(&s.address, s.port);
    let file = &s.known_hosts;
    let (key, key_type) = session.host_key().ok_or_else(|| unusable("the host sent no key".into()))?;
    let mut known = session.known_hosts().map_err(|e| unusable(e.to_string()))?;
    if file.exists() {
        known
            .read_file(file, KnownHostFileKind::OpenSSH)
            .map_err(|e| unusable(format!("cannot read {}: {e}", file.display())))?;
    }
    match known.check_port(&s.address, s.port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => {
            Err(fail(HostKeyProblem::Mismatch { line: plain_line(file, &name), name, file: file.clone() }))
        }
        CheckResult::NotFound if s.policy == HostKeyPolicy::Strict => {
            Err(fail(HostKeyProblem::Unknown { name, file: file.clone() }))
        }
        CheckResult::NotFound => {
            known.add(&name, key, "", key_type.into()).map_err(|e| unusable(e.to_string()))?;
            let added = known
                .hosts()
                .map_err(|e| unusable(e.to_string()))?
                .into_iter()
                .rev()
                .find(|h| h.name() == Some(name.as_str()))
                .ok_or_else(|| unusable("the new key was not recorded".into()))?;
            let line = known.write_string(&added, KnownHostFileKind::OpenSSH).map_err(|e| unusable(e.to_string()))?;
            append(file, line.trim_end()).map_err(|e| unusable(format!("cannot append to {}: {e}", file.display())))?;
            tracing::info!(%host, name = %name, file = %file.display(), "Recorded a new SSH host key.");
            Ok(())
        }
        CheckResult::Failure => Err(unusable(format!("libssh2 could not check {}", file.display()))),
    }
}

/// The 1-based line of `file` that lists `name` in plain form (hashed entries cannot be found).
fn plain_line(file: &Path, name: &str) -> Option<usize> {
    let text = fs::read_to_string(file).ok()?;
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            let hosts = l.strip_prefix("@cert-authority ").or_else(|| l.strip_prefix("@revoked ")).unwrap_or(l);
            !l.starts_with('#') && hosts.split_whitespace().next().is_some_and(|h| h.split(',').any(|h| h == name))
        })
        .map(|i| i + 1)
}

/// Appends one line to `file`, creating it (and its directory) if needed.
fn append(file: &Path, line: &str) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        fs::create_dir_all(dir)?;
    }
    let needs_newline = fs::read(file).ok().is_some_and(|b| !b.is_empty() && !b.ends_with(b"\n"));
    let mut f = OpenOptions::new().create(true).append(true).open(file)?;
    let text = format!("{}{line}\n", if needs_newline { "\n" } else { "" });
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_bracketed_off_port_22() {
        assert_eq!(entry_name("10.0.0.1", 22), "10.0.0.1");
        assert_eq!(entry_name("10.0.0.1", 2222), "[10.0.0.1]:2222");
    }

    #[test]
    fn the_plain_line_of_a_host_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("known_hosts");
        fs::write(&file, "# comment\nother ssh-ed25519 AAAA\n[h]:2222,h2 ssh-ed25519 BBBB\n").expect("write");
        assert_eq!(plain_line(&file, "[h]:2222"), Some(3));
        assert_eq!(plain_line(&file, "h2"), Some(3));
        assert_eq!(plain_line(&file, "missing"), None);
    }
}
