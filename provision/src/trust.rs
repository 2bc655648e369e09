//! The cluster's trust material as `gantry up` keeps it in the cluster's state dir: the CA
//! (`ca.pem`, `ca-key.pem`), the join token, the admin token and the key that seals secrets
//! (`secrets.key`) (all 0600 but `ca.pem`).
//!
//! `up` creates them once; `render-config` hands every master the CA, both tokens and the
//! secrets key (so their first start adopts them instead of making their own, and any of them
//! can lead) and each agent the join token only, never the CA key. The client commands read `ca.pem` and `admin-token` from the same dir, which is how
//! `gantry app list` works after `up` with no flags. `down` removes the dir with the journal.

use gantry_trust::pki::{self, Ca};
use gantry_trust::token::{self, ADMIN_TOKEN_FILE, JOIN_TOKEN_FILE, JoinToken};
use std::path::{Path, PathBuf};

/// The file of the key that seals secrets, in the state dir and in masters' data dirs.
pub const SEAL_KEY_FILE: &str = "secrets.key";

/// The trust material could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The CA.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// The secrets key.
    #[error(transparent)]
    Seal(#[from] gantry_trust::sealed::SealError),
    /// A token file.
    #[error("{path}: {message}")]
    Token {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// A cluster's CA and tokens.
pub struct ClusterTrust {
    /// The cluster CA.
    pub ca: Ca,
    /// The join token agents get.
    pub join: JoinToken,
    /// The admin API token.
    pub admin_token: String,
    /// The secrets key file's bytes, as every master gets them.
    pub seal_key: Vec<u8>,
    /// Where the secrets key is kept.
    pub seal_key_path: PathBuf,
}

impl std::fmt::Debug for ClusterTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTrust").field("ca", &self.ca).finish_non_exhaustive()
    }
}

impl PartialEq for ClusterTrust {
    fn eq(&self, other: &Self) -> bool {
        self.ca.hash() == other.ca.hash() && self.join == other.join && self.admin_token == other.admin_token
    }
}

impl Eq for ClusterTrust {}

fn token_file(dir: &Path, name: &str, make: impl FnOnce() -> String) -> Result<String, TrustError> {
    let path = dir.join(name);
    let failed = |message: String| TrustError::Token { path: path.display().to_string(), message };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let value = make();
            gantry_trust::files::write_private(&path, format!("{value}\n").as_bytes())
                .map_err(|e| failed(e.to_string()))?;
            Ok(value)
        }
        Err(e) => Err(failed(e.to_string())),
    }
}

impl ClusterTrust {
    /// Loads the material of cluster `name` from `dir`, creating what is missing.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<Self, TrustError> {
        let ca = match Ca::load(dir)? {
            Some(ca) => ca,
            None => {
                let ca = Ca::generate(name)?;
                ca.save(dir)?;
                ca
            }
        };
        let join_text = token_file(dir, JOIN_TOKEN_FILE, || JoinToken::generate(&ca.hash()).to_string())?;
        let join = JoinToken::parse(&join_text).map_err(|e| TrustError::Token {
            path: dir.join(JOIN_TOKEN_FILE).display().to_string(),
            message: e.to_string(),
        })?;
        let admin_token = token_file(dir, ADMIN_TOKEN_FILE, token::new_api_token)?;
        let seal_key_path = dir.join(SEAL_KEY_FILE);
        gantry_trust::sealed::SealKey::load_or_create(&seal_key_path)?;
        let seal_key = std::fs::read(&seal_key_path)
            .map_err(|e| TrustError::Token { path: seal_key_path.display().to_string(), message: e.to_string() })?;
        Ok(Self { ca, join, admin_token, seal_key, seal_key_path })
    }

    /// Keeps `key` (a master's secrets key file) as the cluster's from now on: for a cluster
    /// whose only master made its own before `up` kept one.
    pub fn adopt_seal_key(&self, key: &[u8]) -> Result<(), TrustError> {
        gantry_trust::files::write_private(&self.seal_key_path, key)
            .map_err(|e| TrustError::Token { path: self.seal_key_path.display().to_string(), message: e.to_string() })
    }

    /// Credentials of the admin for the cluster API.
    pub fn credentials(&self, dir: &Path) -> gantry_api::Credentials {
        gantry_api::Credentials {
            token: Some(self.admin_token.clone()),
            ca_pem: Some(self.ca.cert_pem().to_string()),
            identity: None,
            token_source: Some(dir.join(ADMIN_TOKEN_FILE).display().to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = ClusterTrust::load_or_create(dir.path(), "c").expect("create");
        let again = ClusterTrust::load_or_create(dir.path(), "c").expect("load");
        assert_eq!(first, again);
        assert_eq!(first.join.ca_hash, first.ca.hash());
        for file in [pki::CA_KEY_FILE, JOIN_TOKEN_FILE, ADMIN_TOKEN_FILE] {
            assert!(!gantry_trust::files::readable_by_others(&dir.path().join(file)).expect("mode"), "{file}");
        }
    }
}
