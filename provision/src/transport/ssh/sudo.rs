//! Running as root through sudo. Each script becomes `sudo -n -- /bin/sh -c '<script>'`, or,
//! when the host wants the login user's password, `sudo -k -S -p '' -- /bin/sh -c '<script>'`
//! with the password as the first line of the command's input (`-k`: sudo always reads it, so it
//! never reaches the script's own input).
//!
//! Which of the two applies is decided once per session, by running `true` under sudo: first
//! without a password, then (if one is configured) with it. A failure there is a
//! [`TransportError::Sudo`] at connect time, so a command never runs with half-working sudo.

use super::connect::Connection;
use super::exec::{self, ExecError, quote};
use super::{Passphrase, SUDO_PASSWORD_ENV, SshSettings};
use crate::transport::TransportError;
use std::fmt;
use std::time::Duration;

/// How commands become root on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sudo {
    /// sudoers allows the login user `NOPASSWD` (a configured password would be unused).
    NoPassword,
    /// sudo asks for the login user's password; this is it. It is used only when sudo without
    /// a password is refused.
    Password(Passphrase),
}

impl Sudo {
    /// [`Sudo::Password`] from `GANTRY_SUDO_PASSWORD` when that is set, else [`Sudo::NoPassword`].
    pub fn from_env() -> Self {
        match std::env::var(SUDO_PASSWORD_ENV) {
            Ok(password) => Self::Password(Passphrase(password)),
            Err(_) => Self::NoPassword,
        }
    }
}

/// Why sudo would not run commands as root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SudoProblem {
    /// sudo wants a password and none is configured.
    PasswordRequired,
    /// sudo did not accept the configured password.
    WrongPassword {
        /// What sudo printed.
        message: String,
    },
    /// sudo refused otherwise (not in sudoers, not installed, requiretty...).
    Refused {
        /// What sudo printed, or its exit code.
        message: String,
    },
}

impl fmt::Display for SudoProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PasswordRequired => write!(
                f,
                "sudo asks for a password and none is configured; set {SUDO_PASSWORD_ENV} or allow NOPASSWD \
                 for the user in sudoers"
            ),
            Self::WrongPassword { message } => {
                write!(f, "sudo did not accept the password ({message}); check {SUDO_PASSWORD_ENV}")
            }
            Self::Refused { message } => write!(f, "sudo refused to run commands as root: {message}"),
        }
    }
}

/// `script` wrapped to run as root under `mode`.
pub(super) fn wrap(script: &str, mode: &Sudo) -> String {
    let sudo = match mode {
        Sudo::NoPassword => "sudo -n",
        Sudo::Password(_) => "sudo -k -S -p ''",
    };
    format!("{sudo} -- /bin/sh -c {}", quote(script))
}

/// What goes to the command's input before its own: the password line, if any.
pub(super) fn input_prefix(mode: &Sudo) -> Vec<u8> {
    match mode {
        Sudo::NoPassword => Vec::new(),
        Sudo::Password(p) => format!("{}\n", p.0).into_bytes(),
    }
}

/// Finds out how `c` runs commands as root with `wanted`, and checks that it does.
pub(super) fn resolve(c: &mut Connection, host: &str, s: &SshSettings, wanted: &Sudo) -> Result<Sudo, TransportError> {
    let fail = |problem| TransportError::Sudo { host: host.to_string(), user: s.user.clone(), problem };
    let refused = try_as(c, host, s, Sudo::NoPassword)?;
    let Some(without) = refused else { return Ok(Sudo::NoPassword) };
    let Sudo::Password(_) = wanted else {
        return Err(fail(if asks_password(&without) {
            SudoProblem::PasswordRequired
        } else {
            SudoProblem::Refused { message: without }
        }));
    };
    match try_as(c, host, s, wanted.clone())? {
        None => Ok(wanted.clone()),
        Some(message) if is_not_allowed(&message) => Err(fail(SudoProblem::Refused { message })),
        Some(message) => Err(fail(SudoProblem::WrongPassword { message })),
    }
}

/// Runs `true` as root under `mode`; `Some(what sudo said)` when that failed.
fn try_as(c: &mut Connection, host: &str, s: &SshSettings, mode: Sudo) -> Result<Option<String>, TransportError> {
    c.sudo = Some(mode);
    let timeout = s.connect_timeout.max(Duration::from_secs(30));
    let out = exec::exec(c, s, "true", None, timeout).map_err(|e| TransportError::Connect {
        host: host.to_string(),
        message: match e {
            ExecError::Broken(m) | ExecError::Failed(m) => format!("checking sudo failed: {m}"),
            ExecError::TimedOut { .. } => {
                format!("checking sudo did not finish within {}", humantime::format_duration(timeout))
            }
        },
    });
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            c.sudo = None;
            return Err(e);
        }
    };
    if out.exit_code == Some(0) {
        return Ok(None);
    }
    c.sudo = None;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Ok(Some(match (stderr.is_empty(), out.exit_code) {
        (false, _) => stderr,
        (true, Some(127)) => "sudo is not installed".to_string(),
        (true, Some(code)) => format!("sudo exited with {code}"),
        (true, None) => "sudo was killed by a signal".to_string(),
    }))
}

/// Whether sudo's message says it wanted a password (English messages; others count as refusals).
fn asks_password(message: &str) -> bool {
    message.contains("password is required") || message.contains("a terminal is required")
}

/// Whether sudo's message says the user may not run commands as root at all.
fn is_not_allowed(message: &str) -> bool {
    message.contains("not in the sudoers") || message.contains("not allowed to") || message.contains("must have a tty")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_wrapped_once_and_quoted() {
        assert_eq!(wrap("echo 'x'", &Sudo::NoPassword), r"sudo -n -- /bin/sh -c 'echo '\''x'\'''");
        let with = Sudo::Password(Passphrase("pw".into()));
        assert_eq!(wrap("id", &with), "sudo -k -S -p '' -- /bin/sh -c 'id'");
        assert_eq!(input_prefix(&with), b"pw\n");
        assert!(input_prefix(&Sudo::NoPassword).is_empty());
    }

    #[test]
    fn the_password_hint_names_the_variable_and_nopasswd() {
        let text = SudoProblem::PasswordRequired.to_string();
        assert!(text.contains(SUDO_PASSWORD_ENV) && text.contains("NOPASSWD"), "{text}");
        assert!(!format!("{:?}", Sudo::Password(Passphrase("hunter2".into()))).contains("hunter2"));
    }
}
