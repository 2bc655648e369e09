//! Who a certificate belongs to. The cluster CA writes the identity into the subject common
//! name of every leaf it issues (`agent:<id>`, `master:<id>`, `user:<name>`); the master
//! believes nothing else about a peer that presents a certificate.

use std::fmt;

/// The identity a certificate of the cluster CA names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// An agent, by its persistent id.
    Agent(String),
    /// A master, by its id.
    Master(String),
    /// A person or program with a client certificate instead of a token.
    User(String),
}

/// A certificate that names no identity gantry knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the certificate names no gantry identity: {0}")]
pub struct IdentityError(pub String);

impl Identity {
    /// Parses `agent:<id>`, `master:<id>` or `user:<name>`.
    pub fn parse(name: &str) -> Result<Self, IdentityError> {
        let (kind, id) = name.split_once(':').ok_or_else(|| IdentityError(format!("common name `{name}`")))?;
        if id.is_empty() || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(IdentityError(format!("common name `{name}`")));
        }
        match kind {
            "agent" => Ok(Self::Agent(id.to_string())),
            "master" => Ok(Self::Master(id.to_string())),
            "user" => Ok(Self::User(id.to_string())),
            _ => Err(IdentityError(format!("common name `{name}`"))),
        }
    }

    /// The identity in the subject common name of a certificate (DER). The caller has already
    /// verified the certificate against the cluster CA.
    pub fn from_cert_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError(format!("unreadable certificate: {e}")))?;
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or_else(|| IdentityError("no subject common name".to_string()))?;
        Self::parse(cn)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Agent(id) => write!(f, "agent:{id}"),
            Self::Master(id) => write!(f, "master:{id}"),
            Self::User(name) => write!(f, "user:{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_and_junk_is_refused() {
        for identity in [Identity::Agent("a-1".into()), Identity::Master("m".into()), Identity::User("ops".into())] {
            assert_eq!(Identity::parse(&identity.to_string()).expect("parse"), identity);
        }
        for bad in ["agent", "agent:", "root:x", "agent:a b", "agent:a\nb"] {
            assert!(Identity::parse(bad).is_err(), "{bad}");
        }
    }
}
