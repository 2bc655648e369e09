//! Public-key login: each identity file in order, with the settings' passphrase (by default
//! from `GANTRY_SSH_PASSPHRASE`).
//! A refusal names the user and what happened with every key, so the fix is obvious.

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

/// One key file tried during login and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAttempt {
    /// The private key file.
    pub path: PathBuf,
    /// What happened, e.g. `rejected by the host` or `no such file`.
    pub outcome: String,
}

impl KeyAttempt {
    /// `a (outcome), b (outcome)`, or `no key files configured`.
    pub fn list(tried: &[KeyAttempt]) -> String {
        if tried.is_empty() {
            return "no key files configured".to_string();
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
                    _ if super::connect::is_timeout(&e) => {
                        return Err(TransportError::ConnectTimeout {
                            host: host.to_string(),
                            addr: s.target(),
                            stage: "SSH login",
                            after: s.connect_timeout,
                        });
                    }
                    _ => format!("failed: {e}"),
                },
            }
        };
        tried.push(KeyAttempt { path: key.clone(), outcome });
    }
    Err(TransportError::Auth { host: host.to_string(), user: s.user.clone(), tried })
}
