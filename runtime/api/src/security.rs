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
use serde::{Deserialize, Serialize};

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
