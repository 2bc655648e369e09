//! The master's side of trust: its CA and certificates, the join token, API tokens and
//! policies, sealed secrets, and who may call what.
//!
//! [`Security::open`] loads (or, on a first start, creates) the trust material in the data dir:
//! `ca.pem` and `ca-key.pem` (the cluster CA; `gantry up` puts them there, a master started by
//! hand makes them), `join-token` and `admin-token` (0600), and `secrets.key` (0600, the key
//! that seals secrets; kept apart from the store so a copy of the store alone reveals nothing).
//! Tokens, policies, secrets and agents' key bindings live in the store's meta table and in
//! memory here, behind their own lock; they never pass through [`crate::master::Change`].

pub mod access;
pub mod auth;
pub mod records;

use crate::store::{Store, StoreError, StoreOp};
use gantry_trust::Identity;
use gantry_trust::pki::{self, Ca};
use gantry_trust::sealed::SealKey;
use gantry_trust::tls::SwappableIdentity;
use gantry_trust::token::{self, ADMIN_TOKEN_FILE, JOIN_TOKEN_FILE, JoinToken};
use records::{Records, TokenRecord};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::info;

/// File name of the key that seals secrets, in the data dir.
pub const SEAL_KEY_FILE: &str = "secrets.key";

/// The trust material could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// The CA or a certificate.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// The secrets key.
    #[error(transparent)]
    Seal(#[from] gantry_trust::sealed::SealError),
    /// A TLS configuration.
    #[error(transparent)]
    Tls(#[from] gantry_trust::tls::TlsError),
    /// A token file.
    #[error("{path}: {message}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The names and addresses a master's certificate is issued for.
#[derive(Debug, Clone, Default)]
pub struct ServerNames {
    /// DNS names.
    pub dns: Vec<String>,
    /// IP addresses.
    pub ips: Vec<IpAddr>,
}

/// A master's trust material, for the life of its process: the cluster CA, the join token, the
/// key that seals secrets, and the master's own certificate (which its listener presents to
/// clients, agents and other masters, whether it leads or not).
pub struct Trust {
    ca: Ca,
    join: JoinToken,
    seal: SealKey,
    names: ServerNames,
    master_id: String,
    /// The master's certificate: presented to clients and agents, and to agents when the master
    /// fetches their files; renewed in place.
    identity: Arc<SwappableIdentity>,
    /// When the current certificate expires, seconds since the epoch.
    expires_at: AtomicI64,
    server_tls: Arc<rustls::ServerConfig>,
    agent_tls: rustls::ClientConfig,
    data_dir: PathBuf,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust").field("ca", &self.ca).field("data_dir", &self.data_dir).finish_non_exhaustive()
    }
}

/// Whether [`Trust::open`] may make a new cluster CA when the data dir holds none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewCa {
    /// Yes: a master alone, or the first master of a new group.
    Allowed,
    /// No: a master joining a group must hold the group's CA (copied from another master), or
    /// its peers would not trust it.
    Refused,
}

impl Trust {
    /// Loads the trust material of master `master_id` in `data_dir`, creating what is missing
    /// (the CA only as `new_ca` allows), and issues the master's certificate for `names`.
    pub fn open(data_dir: &Path, master_id: &str, names: ServerNames, new_ca: NewCa) -> Result<Self, SecurityError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| pki::PkiError::Io { path: data_dir.display().to_string(), source })?;
        let ca = match (Ca::load(data_dir)?, new_ca) {
            (Some(ca), _) => ca,
            (None, NewCa::Allowed) => {
                let ca = Ca::generate(master_id)?;
                ca.save(data_dir)?;
                info!(path = %data_dir.join(pki::CA_CERT_FILE).display(), "Created the cluster CA.");
                ca
            }
            (None, NewCa::Refused) => {
                return Err(SecurityError::TokenFile {
                    path: data_dir.join(pki::CA_CERT_FILE),
                    message: format!(
                        "a master joining a group needs the group's CA: copy {}, {}, {} and {} from the data dir of a master of the group (gantry up does this)",
                        pki::CA_CERT_FILE,
                        pki::CA_KEY_FILE,
                        SEAL_KEY_FILE,
                        ADMIN_TOKEN_FILE
                    ),
                });
            }
        };
        let join = load_or_create_join_token(data_dir, &ca)?;
        let (seal, created) = SealKey::load_or_create(&data_dir.join(SEAL_KEY_FILE))?;
        if created {
            info!(path = %data_dir.join(SEAL_KEY_FILE).display(), "Created the key that seals secrets.");
        }
        let issued = issue(&ca, master_id, &names)?;
        let identity = SwappableIdentity::new(ca.cert_pem(), &issued.cert_pem, &issued.key_pem)?;
        let server_tls = Arc::new(gantry_trust::tls::server_config_with(ca.cert_pem(), identity.clone(), true)?);
        let agent_tls = gantry_trust::tls::client_config_with(ca.cert_pem(), identity.clone())?;
        Ok(Self {
            ca,
            join,
            seal,
            names,
            master_id: master_id.to_string(),
            expires_at: AtomicI64::new(pki::not_after(&issued.cert_pem).unwrap_or(0)),
            identity,
            server_tls,
            agent_tls,
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// The TLS configuration of the API listener.
    pub fn server_tls(&self) -> Arc<rustls::ServerConfig> {
        self.server_tls.clone()
    }

    /// A TLS client configuration presenting the master's certificate (to agents and to the
    /// other masters).
    pub fn client_tls(&self) -> rustls::ClientConfig {
        self.agent_tls.clone()
    }

    /// Issues a fresh certificate when less than a third of the current one's life is left; the
    /// listener and the master's clients present it from the next handshake on. Returns whether
    /// it renewed.
    pub fn renew_if_due(&self, now_secs: i64) -> Result<bool, SecurityError> {
        let lifetime = i64::try_from(pki::LEAF_LIFETIME.as_secs()).unwrap_or(i64::MAX);
        if self.expires_at.load(Ordering::SeqCst) - now_secs > lifetime / 3 {
            return Ok(false);
        }
        let issued = issue(&self.ca, &self.master_id, &self.names)?;
        self.identity.replace(self.ca.cert_pem(), &issued.cert_pem, &issued.key_pem)?;
        self.expires_at.store(pki::not_after(&issued.cert_pem).unwrap_or(0), Ordering::SeqCst);
        info!("Renewed the master's certificate.");
        Ok(true)
    }
}

/// The master's trust state while it serves the cluster: its [`Trust`], and the records
/// (tokens, policies, secrets, agents' keys) of the replicated store.
pub struct Security {
    trust: Arc<Trust>,
    records: Mutex<Records>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security").field("trust", &self.trust).finish_non_exhaustive()
    }
}

impl Security {
    /// Loads or creates the trust material of the master `master_id` in `data_dir`, with the
    /// records in `meta` (the store's meta table as loaded).
    pub fn open(
        data_dir: &Path,
        master_id: &str,
        names: ServerNames,
        meta: &BTreeMap<String, String>,
        store: Arc<dyn Store>,
    ) -> Result<Self, SecurityError> {
        let trust = Arc::new(Trust::open(data_dir, master_id, names, NewCa::Allowed)?);
        Self::with_trust(trust, meta, store)
    }

    /// The security of a master holding `trust`, with the records in `meta`; stores the admin
    /// token's record (from the data dir's `admin-token`) when the store has none.
    pub fn with_trust(
        trust: Arc<Trust>,
        meta: &BTreeMap<String, String>,
        store: Arc<dyn Store>,
    ) -> Result<Self, SecurityError> {
        let data_dir = &trust.data_dir;
        let mut records = Records::from_meta(meta);
        if records.token("admin").is_none() {
            let admin = load_or_create_admin_token(data_dir)?;
            let record = TokenRecord {
                name: "admin".to_string(),
                policies: vec!["admin".to_string()],
                hash: token::api_token_hash(&admin).map_err(|e| SecurityError::TokenFile {
                    path: data_dir.join(ADMIN_TOKEN_FILE),
                    message: e.to_string(),
                })?,
                created_at: gantry_api::now_millis(),
                expires_at: None,
            };
            store.write(&[records::put_token(&record)?])?;
            records.insert_token(record);
        }
        info!(
            data_dir = %data_dir.display(),
            ca = pki::CA_CERT_FILE, join_token = JOIN_TOKEN_FILE, admin_token = ADMIN_TOKEN_FILE,
            "Trust material ready: agents join with the join token; clients use the CA and the admin token."
        );
        Ok(Self { trust, records: Mutex::new(records), store })
    }

    /// The process-wide trust material.
    pub fn trust(&self) -> &Arc<Trust> {
        &self.trust
    }

    /// The TLS configuration of the API listener.
    pub fn server_tls(&self) -> Arc<rustls::ServerConfig> {
        self.trust.server_tls()
    }

    /// The cluster CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        self.trust.ca.cert_pem()
    }

    /// The cluster CA.
    pub fn ca(&self) -> &Ca {
        &self.trust.ca
    }

    /// Whether `token` is this cluster's join token.
    pub fn join_token_matches(&self, token: &JoinToken) -> bool {
        token.ca_hash == self.trust.ca.hash() && token.same_secret(&self.trust.join)
    }

    /// The sealing key of secrets.
    pub fn seal(&self) -> &SealKey {
        &self.trust.seal
    }

    /// The store the records are written to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Locks the records. Never hold the guard across an `.await` or while taking the state lock.
    pub fn records(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A TLS client configuration presenting the master's certificate (master → agent).
    pub fn agent_client_tls(&self) -> rustls::ClientConfig {
        self.trust.client_tls()
    }

    /// See [`Trust::renew_if_due`].
    pub fn renew_if_due(&self, now_secs: i64) -> Result<bool, SecurityError> {
        self.trust.renew_if_due(now_secs)
    }

    /// Fills in the values of the secrets `launch` names. Fails, naming the first missing one,
    /// when a secret does not exist or does not open.
    pub fn resolve_secrets(&self, launch: &mut gantry_api::protocol::LaunchTask) -> Result<(), String> {
        let names: Vec<String> = launch.secret_names().cloned().collect();
        if names.is_empty() {
            return Ok(());
        }
        let records = self.records();
        for name in &names {
            if launch.secret_values.0.contains_key(name) {
                continue;
            }
            let secret = records
                .secret(name)
                .ok_or_else(|| format!("secret `{name}` does not exist: store it with `gantry secret put {name}`"))?;
            let sealed = gantry_trust::from_hex(&secret.sealed)
                .ok_or_else(|| format!("secret `{name}` is damaged in the store"))?;
            let value = self.trust.seal.open(&secret.name, secret.version, &sealed).map_err(|e| e.to_string())?;
            let value = String::from_utf8(value).map_err(|_| format!("secret `{name}` is not UTF-8"))?;
            launch.secret_values.0.insert(name.clone(), value);
        }
        Ok(())
    }

    /// Persists `ops` and then applies `apply` to the records, both under the records lock.
    pub fn write<T>(&self, ops: &[StoreOp], apply: impl FnOnce(&mut Records) -> T) -> Result<T, StoreError> {
        let mut records = self.records();
        if !ops.is_empty() {
            self.store.write(ops)?;
        }
        Ok(apply(&mut records))
    }
}

/// A new certificate of master `master_id` for `names`.
fn issue(ca: &Ca, master_id: &str, names: &ServerNames) -> Result<gantry_trust::IssuedCert, SecurityError> {
    Ok(ca.issue(&Identity::Master(master_id.to_string()), &names.dns, &names.ips, pki::LEAF_LIFETIME)?)
}

fn load_or_create_join_token(data_dir: &Path, ca: &Ca) -> Result<JoinToken, SecurityError> {
    let path = data_dir.join(JOIN_TOKEN_FILE);
    let invalid = |message: String| SecurityError::TokenFile { path: path.clone(), message };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = JoinToken::parse(&text).map_err(|e| invalid(e.to_string()))?;
            if token.ca_hash != ca.hash() {
                return Err(invalid(
                    "this join token pins another CA than ca.pem: restore the matching ca.pem, or remove the token to make a new one (agents then need it)".to_string(),
                ));
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = JoinToken::generate(&ca.hash());
            gantry_trust::files::write_private(&path, format!("{token}\n").as_bytes())
                .map_err(|e| invalid(e.to_string()))?;
            info!(path = %path.display(), "Created the join token.");
            Ok(token)
        }
        Err(e) => Err(invalid(e.to_string())),
    }
}

fn load_or_create_admin_token(data_dir: &Path) -> Result<String, SecurityError> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let admin = token::new_api_token();
            gantry_trust::files::write_private(&path, format!("{admin}\n").as_bytes())
                .map_err(|e| SecurityError::TokenFile { path: path.clone(), message: e.to_string() })?;
            info!(path = %path.display(), "Created the admin token.");
            Ok(admin)
        }
        Err(e) => Err(SecurityError::TokenFile { path, message: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trust_material_is_kept_and_the_certificate_renewed_when_due() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> = Arc::new(crate::store::MemStore::new());
        let meta = BTreeMap::new();
        let names = ServerNames { dns: vec!["localhost".into()], ips: vec![] };
        let first = Security::open(dir.path(), "m1", names.clone(), &meta, store.clone()).expect("open");
        let again = Security::open(dir.path(), "m1", names, &meta, store).expect("reopen");
        assert_eq!(first.ca().hash(), again.ca().hash(), "a restarted master keeps its CA");
        assert!(first.join_token_matches(&again.trust.join), "and its join token");
        let now = i64::try_from(gantry_api::now_millis() / 1000).expect("now");
        assert!(!first.renew_if_due(now).expect("check"), "a new certificate is not due");
        let late = now + 25 * 24 * 3600;
        assert!(first.renew_if_due(late).expect("renew"), "five days left: renewed");
        assert!(first.trust.expires_at.load(Ordering::SeqCst) >= now + 29 * 24 * 3600, "the new one lives 30 days");
    }
}
