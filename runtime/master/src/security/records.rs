//! The records behind tokens, policies, secrets and agents' keys: how they are kept in the
//! store's meta table (`token/<name>`, `policy/<name>`, `secret/<name>`, `agent-key/<id>`,
//! `agent-revoked/<id>`) and looked up in memory.

use crate::store::{StoreError, StoreOp};
use gantry_api::Millis;
use gantry_api::security::{Policy, SecretInfo, TokenInfo};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

const TOKEN: &str = "token/";
const POLICY: &str = "policy/";
const SECRET: &str = "secret/";
const AGENT_KEY: &str = "agent-key/";
const AGENT_REVOKED: &str = "agent-revoked/";

/// A stored API token: its hash, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Unique name.
    pub name: String,
    /// Policy names.
    pub policies: Vec<String>,
    /// SHA-256 of the token, hex.
    pub hash: String,
    /// When it was made.
    pub created_at: Millis,
    /// When it stops working.
    pub expires_at: Option<Millis>,
}

impl TokenRecord {
    /// What the API shows.
    pub fn info(&self) -> TokenInfo {
        TokenInfo {
            name: self.name.clone(),
            policies: self.policies.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }
}

/// A stored secret: its value sealed with the data dir's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    /// Name.
    pub name: String,
    /// Version, from 1.
    pub version: u64,
    /// First stored.
    pub created_at: Millis,
    /// This version stored.
    pub updated_at: Millis,
    /// Nonce and ciphertext, hex.
    pub sealed: String,
}

impl SecretRecord {
    /// What the API shows.
    pub fn info(&self) -> SecretInfo {
        SecretInfo {
            name: self.name.clone(),
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Every security record, in memory.
#[derive(Debug, Default)]
pub struct Records {
    tokens: BTreeMap<String, TokenRecord>,
    by_hash: HashMap<String, String>,
    policies: BTreeMap<String, Policy>,
    secrets: BTreeMap<String, SecretRecord>,
    agent_keys: HashMap<String, String>,
    revoked_agents: BTreeSet<String>,
}

impl Records {
    /// The records in the store's meta table; entries that do not parse are skipped.
    pub fn from_meta(meta: &BTreeMap<String, String>) -> Self {
        let mut records = Self::default();
        for (key, value) in meta {
            if key.starts_with(TOKEN) {
                if let Ok(record) = serde_json::from_str::<TokenRecord>(value) {
                    records.insert_token(record);
                }
            } else if key.starts_with(POLICY) {
                if let Ok(policy) = serde_json::from_str::<Policy>(value) {
                    records.policies.insert(policy.name.clone(), policy);
                }
            } else if key.starts_with(SECRET) {
                if let Ok(secret) = serde_json::from_str::<SecretRecord>(value) {
                    records.secrets.insert(secret.name.clone(), secret);
                }
            } else if let Some(id) = key.strip_prefix(AGENT_KEY) {
                records.agent_keys.insert(id.to_string(), value.clone());
            } else if let Some(id) = key.strip_prefix(AGENT_REVOKED) {
                records.revoked_agents.insert(id.to_string());
            }
        }
        records
    }

    /// Adds or replaces a token.
    pub fn insert_token(&mut self, record: TokenRecord) {
        if let Some(old) = self.tokens.get(&record.name) {
            self.by_hash.remove(&old.hash);
        }
        self.by_hash.insert(record.hash.clone(), record.name.clone());
        self.tokens.insert(record.name.clone(), record);
    }

    /// Forgets a token.
    pub fn remove_token(&mut self, name: &str) -> Option<TokenRecord> {
        let record = self.tokens.remove(name)?;
        self.by_hash.remove(&record.hash);
        Some(record)
    }

    /// A token by name.
    pub fn token(&self, name: &str) -> Option<&TokenRecord> {
        self.tokens.get(name)
    }

    /// A token by its hash.
    pub fn token_by_hash(&self, hash: &str) -> Option<&TokenRecord> {
        self.by_hash.get(hash).and_then(|name| self.tokens.get(name))
    }

    /// Every token, by name.
    pub fn tokens(&self) -> impl Iterator<Item = &TokenRecord> {
        self.tokens.values()
    }

    /// A policy by name: stored ones, then the built-ins.
    pub fn policy(&self, name: &str) -> Option<Policy> {
        self.policies.get(name).cloned().or_else(|| gantry_trust::policy::builtin(name))
    }

    /// Every policy: the built-ins, then the stored ones.
    pub fn policies(&self) -> Vec<Policy> {
        let mut all = gantry_trust::policy::builtins();
        all.extend(self.policies.values().cloned());
        all
    }

    /// Adds or replaces a stored policy.
    pub fn insert_policy(&mut self, policy: Policy) {
        self.policies.insert(policy.name.clone(), policy);
    }

    /// Forgets a stored policy.
    pub fn remove_policy(&mut self, name: &str) -> Option<Policy> {
        self.policies.remove(name)
    }

    /// Which tokens carry policy `name`.
    pub fn tokens_with_policy(&self, name: &str) -> Vec<String> {
        self.tokens.values().filter(|t| t.policies.iter().any(|p| p == name)).map(|t| t.name.clone()).collect()
    }

    /// A secret by name.
    pub fn secret(&self, name: &str) -> Option<&SecretRecord> {
        self.secrets.get(name)
    }

    /// Every secret, by name.
    pub fn secrets(&self) -> impl Iterator<Item = &SecretRecord> {
        self.secrets.values()
    }

    /// Adds or replaces a secret.
    pub fn insert_secret(&mut self, secret: SecretRecord) {
        self.secrets.insert(secret.name.clone(), secret);
    }

    /// Forgets a secret.
    pub fn remove_secret(&mut self, name: &str) -> Option<SecretRecord> {
        self.secrets.remove(name)
    }

    /// The key hash agent `id` joined with.
    pub fn agent_key(&self, id: &str) -> Option<&str> {
        self.agent_keys.get(id).map(String::as_str)
    }

    /// Binds agent `id` to a key (and lifts a revocation: it joined again with the token).
    pub fn bind_agent(&mut self, id: &str, key_hash: &str) {
        self.agent_keys.insert(id.to_string(), key_hash.to_string());
        self.revoked_agents.remove(id);
    }

    /// Whether agent `id`'s certificates were revoked.
    pub fn agent_revoked(&self, id: &str) -> bool {
        self.revoked_agents.contains(id)
    }

    /// Revokes agent `id`'s certificates and its key binding.
    pub fn revoke_agent(&mut self, id: &str) {
        self.agent_keys.remove(id);
        self.revoked_agents.insert(id.to_string());
    }
}

/// The store op that keeps `record`.
pub fn put_token(record: &TokenRecord) -> Result<StoreOp, StoreError> {
    Ok(StoreOp::PutMeta(format!("{TOKEN}{}", record.name), serde_json::to_string(record)?))
}

/// The store op that forgets token `name`.
pub fn delete_token(name: &str) -> StoreOp {
    StoreOp::DeleteMeta(format!("{TOKEN}{name}"))
}

/// The store op that keeps `policy`.
pub fn put_policy(policy: &Policy) -> Result<StoreOp, StoreError> {
    Ok(StoreOp::PutMeta(format!("{POLICY}{}", policy.name), serde_json::to_string(policy)?))
}

/// The store op that forgets policy `name`.
pub fn delete_policy(name: &str) -> StoreOp {
    StoreOp::DeleteMeta(format!("{POLICY}{name}"))
}

/// The store op that keeps `secret`.
pub fn put_secret(secret: &SecretRecord) -> Result<StoreOp, StoreError> {
    Ok(StoreOp::PutMeta(format!("{SECRET}{}", secret.name), serde_json::to_string(secret)?))
}

/// The store op that forgets secret `name`.
pub fn delete_secret(name: &str) -> StoreOp {
    StoreOp::DeleteMeta(format!("{SECRET}{name}"))
}

/// The store ops that bind agent `id` to `key_hash` and lift a revocation.
pub fn bind_agent(id: &str, key_hash: &str) -> Vec<StoreOp> {
    vec![
        StoreOp::PutMeta(format!("{AGENT_KEY}{id}"), key_hash.to_string()),
        StoreOp::DeleteMeta(format!("{AGENT_REVOKED}{id}")),
    ]
}

/// The store ops that revoke agent `id`.
pub fn revoke_agent(id: &str) -> Vec<StoreOp> {
    vec![
        StoreOp::DeleteMeta(format!("{AGENT_KEY}{id}")),
        StoreOp::PutMeta(format!("{AGENT_REVOKED}{id}"), "1".to_string()),
    ]
}
