//! Join tokens and API tokens.
//!
//! A join token (`gj1.<CA hash>.<secret>`, k3s style) lets an agent join a cluster: the CA hash
//! lets it verify the master on first contact, the secret lets the master trust the agent's CSR.
//! An API token (`gt1_<secret>`) is a bearer token for the API; the master keeps only its
//! SHA-256. Both secrets are 256 random bits, so a plain hash is enough to store them.

use std::fmt;

const JOIN_PREFIX: &str = "gj1";
const API_PREFIX: &str = "gt1_";
/// File name of the join token in a data or state dir (0600).
pub const JOIN_TOKEN_FILE: &str = "join-token";
/// File name of the bootstrap admin token in a data or state dir (0600).
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// A token that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a join token.
    #[error(
        "the join token is malformed: expected `gj1.<CA hash>.<secret>` as the master writes it to DATA/join-token (or `gantry up` to the cluster's state dir)"
    )]
    MalformedJoin,
    /// Not an API token.
    #[error("the token is malformed: API tokens look like `gt1_` followed by 64 hex digits")]
    MalformedApi,
}

/// A cluster's join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 (hex) of the cluster CA certificate.
    pub ca_hash: String,
    secret: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken").field("ca_hash", &self.ca_hash).finish_non_exhaustive()
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{JOIN_PREFIX}.{}.{}", self.ca_hash, self.secret)
    }
}

impl JoinToken {
    /// A new token for the CA whose hash is `ca_hash`.
    pub fn generate(ca_hash: &str) -> Self {
        Self { ca_hash: ca_hash.to_string(), secret: crate::hex(&crate::random_bytes::<32>()) }
    }

    /// Parses a token (surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let mut parts = text.trim().split('.');
        let (Some(JOIN_PREFIX), Some(ca_hash), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::MalformedJoin);
        };
        if !is_hex(ca_hash, 64) || !is_hex(secret, 64) {
            return Err(TokenError::MalformedJoin);
        }
        Ok(Self { ca_hash: ca_hash.to_string(), secret: secret.to_string() })
    }

    /// Whether `other` carries the same secret (constant time).
    pub fn same_secret(&self, other: &JoinToken) -> bool {
        constant_time_eq(self.secret.as_bytes(), other.secret.as_bytes())
    }
}

/// A new API token.
pub fn new_api_token() -> String {
    format!("{API_PREFIX}{}", crate::hex(&crate::random_bytes::<32>()))
}

/// The stored form of an API token: its SHA-256, hex. Fails on anything that is not a token,
/// so junk is refused before any lookup.
pub fn api_token_hash(token: &str) -> Result<String, TokenError> {
    let token = token.trim();
    match token.strip_prefix(API_PREFIX) {
        Some(secret) if is_hex(secret, 64) => Ok(crate::sha256_hex(token.as_bytes())),
        _ => Err(TokenError::MalformedApi),
    }
}

/// Byte-wise equality whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_tokens_round_trip_and_junk_is_refused() {
        let token = JoinToken::generate(&"ab".repeat(32));
        let parsed = JoinToken::parse(&format!(" {token}\n")).expect("parse");
        assert_eq!(parsed, token);
        assert!(parsed.same_secret(&token));
        assert!(!JoinToken::generate(&token.ca_hash).same_secret(&token));
        assert!(!format!("{token:?}").contains(&token.secret), "Debug hides the secret");
        for bad in ["", "gj1", "gj1.x.y", &format!("gj2.{}.{}", "a".repeat(64), "b".repeat(64))] {
            assert_eq!(JoinToken::parse(bad), Err(TokenError::MalformedJoin), "{bad}");
        }
    }

    #[test]
    fn api_tokens_hash_stably_and_junk_is_refused() {
        let token = new_api_token();
        assert_eq!(api_token_hash(&token).expect("hash"), api_token_hash(&format!("{token}\n")).expect("hash"));
        assert_ne!(api_token_hash(&token).expect("hash"), api_token_hash(&new_api_token()).expect("hash"));
        assert_eq!(api_token_hash("Bearer x"), Err(TokenError::MalformedApi));
        assert_eq!(api_token_hash("gt1_zz"), Err(TokenError::MalformedApi));
    }
}
