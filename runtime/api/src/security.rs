//! Wire types of the security API: tokens, policies, secrets, `whoami`, and the join and
//! renewal exchanges of the agent protocol.
//!
//! Routes: `GET|POST /api/v1/tokens`, `GET|DELETE /api/v1/tokens/{name}`;
//! `GET /api/v1/policies`, `GET|PUT|DELETE /api/v1/policies/{name}` (a [`Policy`] as JSON);
//! `GET /api/v1/secrets`, `GET|PUT|DELETE /api/v1/secrets/{name}` (names may hold `/`; `GET`
//! answers [`SecretInfo`], never the value); `GET /api/v1/whoami`.
//! Agent protocol: `GET /internal/v1/ca` (the CA certificate, PEM), `POST /internal/v1/join`
//! ([`JoinRequest`] → [`JoinResponse`]), `POST /internal/v1/agents/{id}/renew`
//! ([`RenewRequest`] → [`JoinResponse`], with the agent's certificate).

use crate::Millis;
use crate::error::ValidationError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use gantry_trust::policy::{Kind, Level, Policy, Rule};

/// A token as the API shows it: never its secret, never its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Unique name.
    pub name: String,
    /// Names of the policies it carries.
    pub policies: Vec<String>,
    /// When it was made.
    pub created_at: Millis,
    /// When it stops working, if ever.
    #[serde(default)]
    pub expires_at: Option<Millis>,
}

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Unique name: lowercase letters, digits, `-`, `_`.
    pub name: String,
    /// Policies to carry (built in: `admin`, `deployer`, `read-only`).
    pub policies: Vec<String>,
    /// Lifetime in seconds; none: until revoked.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// Answer of `POST /api/v1/tokens`: the secret is shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    /// The token's record.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The bearer token itself.
    pub token: String,
}

/// A secret as the API shows it: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// Name, e.g. `db/password`.
    pub name: String,
    /// 1 for the first value, one more for each `put`.
    pub version: u64,
    /// When the first version was stored.
    pub created_at: Millis,
    /// When the current version was stored.
    pub updated_at: Millis,
}

/// Body of `PUT /api/v1/secrets/{name}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// The value (UTF-8).
    pub value: String,
}

impl std::fmt::Debug for PutSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSecret").field("value", &"…").finish()
    }
}

/// Answer of `GET /api/v1/whoami`: who the master thinks the caller is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whoami {
    /// `token:<name>`, `agent:<id>`, …
    pub identity: String,
    /// The policies that apply.
    pub policies: Vec<String>,
    /// When the credential expires, if it does.
    #[serde(default)]
    pub expires_at: Option<Millis>,
}

/// Body of `POST /internal/v1/join`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The cluster's join token.
    pub token: String,
    /// The agent's persistent id.
    pub agent_id: String,
    /// A CSR (PEM) for the agent's key.
    pub csr: String,
}

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest").field("agent_id", &self.agent_id).finish_non_exhaustive()
    }
}

/// Answer of a join or a renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResponse {
    /// The agent's certificate (PEM).
    pub certificate: String,
    /// The cluster CA (PEM).
    pub ca: String,
}

/// Body of `POST /internal/v1/agents/{id}/renew`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// A CSR (PEM) for the agent's key.
    pub csr: String,
}

/// Checks a secret name: `/`-separated segments of lowercase letters, digits, `.`, `_`, `-`,
/// each starting with a letter or digit; at most 256 characters.
pub fn validate_secret_name(name: &str) -> Result<(), String> {
    let segment_ok = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
    };
    if name.is_empty() || name.len() > 256 || !name.split('/').all(segment_ok) {
        return Err(format!(
            "`{name}` is not a secret name: use `/`-separated parts of lowercase letters, digits, `.`, `_` and `-`, like `db/password`"
        ));
    }
    Ok(())
}

/// Names a task's sandbox already uses; a secret file may not take them.
const SANDBOX_NAMES: [&str; 3] = ["stdout", "stderr", "executor.log"];

/// Checks the `secrets` (variable → secret) and `secret_files` (file → secret) of an app or a
/// job run; `prefix` is the path of their parent in error messages (`""` or `run.`).
pub fn validate_secret_refs(
    prefix: &str,
    env: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, String>,
    secret_files: &BTreeMap<String, String>,
) -> Result<(), ValidationError> {
    for (variable, name) in secrets {
        let field = format!("{prefix}secrets.{variable}");
        let valid = variable.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && variable.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ValidationError::new(field, "not an environment variable name: letters, digits and `_`"));
        }
        if env.contains_key(variable) {
            return Err(ValidationError::new(field, "also set in `env`: a variable comes from one or the other"));
        }
        validate_secret_name(name).map_err(|m| ValidationError::new(field, m))?;
    }
    for (file, name) in secret_files {
        let field = format!("{prefix}secret_files.{file}");
        let valid = !file.is_empty()
            && file.len() <= 128
            && !file.starts_with('.')
            && file.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && !file.ends_with(".json")
            && !SANDBOX_NAMES.contains(&file.as_str());
        if !valid {
            return Err(ValidationError::new(
                field,
                "not a usable file name: letters, digits, `.`, `_`, `-`, not starting with `.`, not ending in `.json`, not stdout, stderr or executor.log",
            ));
        }
        validate_secret_name(name).map_err(|m| ValidationError::new(field, m))?;
    }
    Ok(())
}

/// Checks a task user name: a POSIX user name (letters, digits, `_`, `-`, `.`; not starting with
/// `-`), at most 32 characters.
pub fn validate_user(field: &str, user: &str) -> Result<(), ValidationError> {
    let valid = !user.is_empty()
        && user.len() <= 32
        && !user.starts_with('-')
        && user.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid { Ok(()) } else { Err(ValidationError::new(field, format!("`{user}` is not a user name"))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_references_are_checked() {
        let none = BTreeMap::new();
        let env = BTreeMap::from([("A".to_string(), "1".to_string())]);
        let ok = BTreeMap::from([("DB_PASSWORD".to_string(), "db/password".to_string())]);
        let files = BTreeMap::from([("db.pass".to_string(), "db/password".to_string())]);
        assert!(validate_secret_refs("", &env, &ok, &files).is_ok());
        let clash = BTreeMap::from([("A".to_string(), "db/password".to_string())]);
        assert_eq!(validate_secret_refs("", &env, &clash, &none).expect_err("clash").field, "secrets.A");
        let bad_var = BTreeMap::from([("1X".to_string(), "db/password".to_string())]);
        assert!(validate_secret_refs("run.", &none, &bad_var, &none).is_err());
        for file in ["stdout", "task.json", ".hidden", "a/b", ""] {
            let bad = BTreeMap::from([(file.to_string(), "x".to_string())]);
            assert!(validate_secret_refs("", &none, &none, &bad).is_err(), "{file}");
        }
        let bad_name = BTreeMap::from([("X".to_string(), "../etc".to_string())]);
        assert!(validate_secret_refs("", &none, &bad_name, &none).is_err());
        assert!(validate_user("user", "www-data").is_ok());
        assert!(validate_user("user", "-rf").is_err() && validate_user("user", "a b").is_err());
    }

    #[test]
    fn secret_names_are_paths_of_plain_segments() {
        for good in ["db/password", "a", "team-a/api.key", "x_1/y-2/z.3"] {
            assert!(validate_secret_name(good).is_ok(), "{good}");
        }
        for bad in ["", "/a", "a/", "a//b", "A", "../x", "a/.b", "a b", &"a".repeat(257)] {
            assert!(validate_secret_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_values_never_show_in_debug() {
        let values = crate::protocol::SecretValues(BTreeMap::from([("db/password".into(), "hunter2".into())]));
        let shown = format!("{values:?}");
        assert!(shown.contains("db/password") && !shown.contains("hunter2"), "{shown}");
    }
}
