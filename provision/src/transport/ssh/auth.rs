//! Public-key login: the ssh-agent's keys first (when enabled), then each identity file in
//! order, with the settings' passphrase (by default from `GANTRY_SSH_PASSPHRASE`).
//! A refusal names the user and what happened with every key (and with the agent), so the fix
//! is obvious.

use super::{PASSPHRASE_ENV, SshSettings};
use crate::transport::TransportError;
use ssh2::{ErrorCode, Session};
use std::fmt;
use std::path::PathBuf;

/// libssh2: the private key file could not be read or decrypted.
const ERROR_FILE: i32 = -16;
/// libssh2: the server refused the key.
const ERROR_AUTHENTICATION_FAILED: i32 = -18;
/// libssh2: the key could not be verified (wrong passphrase, unsupported format).
const ERROR_PUBLICKEY_UNVERIFIED: i32 = -19;

/// One key tried during login and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAttempt {
    /// The private key file; `ssh-agent:<comment>` for a key held by the ssh-agent, or
    /// `ssh-agent` when the agent could not be asked.
    pub path: PathBuf,
    /// What happened, e.g. `rejected by the host` or `no such file`.
    pub outcome: String,
}

impl KeyAttempt {
    /// `a: outcome, b: outcome`, or `no keys configured`.
    pub fn list(tried: &[KeyAttempt]) -> String {
        if tried.is_empty() {
            return "no keys configured".to_string();
        }
        tried.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for KeyAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.outcome)
    }
}

/// Logs in as `s.user` with the first key the host accepts.
pub(super) fn authenticate(session: &Session, host: &str, s: &SshSettings) -> Result<(), TransportError> {
    let passphrase = s.passphrase.as_ref().map(|p| p.0.as_str());
    let mut tried = Vec::new();
    if s.use_agent && with_agent(session, host, s, &mut tried)? {
        return Ok(());
    }
    for key in &s.identity_files {
        let outcome = if !key.is_file() {
            "no such file".to_string()
        } else {
            match session.userauth_pubkey_file(&s.user, None, key, passphrase) {
                Ok(()) if session.authenticated() => {
                    tracing::debug!(%host, user = %s.user, key = %key.display(), "SSH login accepted.");
                    return Ok(());
                }
                Ok(()) => "not accepted".to_string(),
                Err(e) => match e.code() {
                    ErrorCode::Session(ERROR_AUTHENTICATION_FAILED) => "rejected by the host".to_string(),
                    ErrorCode::Session(ERROR_FILE | ERROR_PUBLICKEY_UNVERIFIED) => {
                        format!("cannot be read or decrypted (is {PASSPHRASE_ENV} right?): {}", e.message())
                    }
                    _ if super::connect::is_timeout(&e) => return Err(login_timeout(host, s)),
                    _ => format!("failed: {e}"),
                },
            }
        };
        tried.push(KeyAttempt { path: key.clone(), outcome });
    }
    Err(TransportError::Auth { host: host.to_string(), user: s.user.clone(), tried })
}

/// Tries each key the ssh-agent holds; true once the host accepted one. What happened with each
/// (or why the agent could not be asked) is appended to `tried`.
fn with_agent(
    session: &Session,
    host: &str,
    s: &SshSettings,
    tried: &mut Vec<KeyAttempt>,
) -> Result<bool, TransportError> {
    let socket = s.agent_socket.as_ref().map(|p| p.display().to_string());
    let at = socket.as_deref().unwrap_or("$SSH_AUTH_SOCK");
    let unusable = |tried: &mut Vec<KeyAttempt>, outcome: String| {
        tried.push(KeyAttempt { path: PathBuf::from("ssh-agent"), outcome });
        Ok(false)
    };
    let mut agent = match session.agent() {
        Ok(agent) => agent,
        Err(e) => return unusable(tried, format!("cannot be used: {e}")),
    };
    if let Some(Err(e)) = s.agent_socket.as_ref().map(|path| agent.set_identity_path(path)) {
        return unusable(tried, format!("bad socket path {at}: {e}"));
    }
    if let Err(e) = agent.connect() {
        return unusable(tried, format!("unreachable at {at}: {}", e.message()));
    }
    let identities = match agent.list_identities().and_then(|()| agent.identities()) {
        Ok(identities) => identities,
        Err(e) => return unusable(tried, format!("did not list its keys at {at}: {}", e.message())),
    };
    if identities.is_empty() {
        return unusable(tried, format!("holds no keys at {at}"));
    }
    for identity in &identities {
        let path = PathBuf::from(format!("ssh-agent:{}", identity.comment()));
        let outcome = match agent.userauth(&s.user, identity) {
            Ok(()) if session.authenticated() => {
                tracing::debug!(%host, user = %s.user, key = %path.display(), "SSH login accepted.");
                let _ = agent.disconnect();
                return Ok(true);
            }
            Ok(()) => "not accepted".to_string(),
            Err(e) if super::connect::is_timeout(&e) => return Err(login_timeout(host, s)),
            Err(e) => match e.code() {
                ErrorCode::Session(ERROR_AUTHENTICATION_FAILED | ERROR_PUBLICKEY_UNVERIFIED) => {
                    "rejected by the host".to_string()
                }
                _ => format!("failed: {e}"),
            },
        };
        tried.push(KeyAttempt { path, outcome });
    }
    let _ = agent.disconnect();
    Ok(false)
}

fn login_timeout(host: &str, s: &SshSettings) -> TransportError {
    TransportError::ConnectTimeout {
        host: host.to_string(),
        addr: s.target(),
        stage: "SSH login",
        after: s.connect_timeout,
    }
}
