//! A cloud provider's own journal, `<provider>.json` in the cluster's state dir: before each
//! create call it records the intent (and, for instances, the idempotency token the call
//! carries), and after it the id the cloud answered. A `gantry up` killed between a call and its
//! answer resumes with the same token (EC2's client token, GCE's requestId: the cloud returns
//! what it already made instead of a second one) and, because every resource is tagged (labelled)
//! in its create call, finds by tag what was made; `down` deletes what the journal and the tags
//! know.
//!
//! The file is small and rewritten whole: written to a temporary file, fsynced, renamed over the
//! old one and the directory fsynced, so a crash leaves the old or the new version, never a mix.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// What the file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Records {
    /// When the cluster was first created (RFC 3339): the TTL counts from here.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Per host, the idempotency token of its create call, recorded before the call.
    #[serde(default)]
    pub tokens: BTreeMap<String, String>,
    /// Per cluster resource (`vpc`, `subnet:<zone>`, …), its id once known; `None` = the create
    /// was sent (or is about to be) and its answer is not recorded.
    #[serde(default)]
    pub resources: BTreeMap<String, Option<String>>,
}

/// The journal file, serialised by a lock.
#[derive(Debug)]
pub struct Registry {
    provider: &'static str,
    path: PathBuf,
    lock: Mutex<()>,
}

impl Registry {
    /// The registry of `provider` in `state_dir` (the file [`Registry::file`]).
    pub fn new(provider: &'static str, state_dir: &Path) -> Self {
        Self { provider, path: state_dir.join(Self::file(provider)), lock: Mutex::new(()) }
    }

    /// The registry's file name for `provider`: `<provider>.json`.
    pub fn file(provider: &str) -> String {
        format!("{provider}.json")
    }

    /// What is recorded (empty when nothing is).
    pub fn read(&self) -> Result<Records, String> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.read_unlocked()
    }

    fn read_unlocked(&self) -> Result<Records, String> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{}: unreadable: {e} (hint: restore it, or move it away and run `gantry sweep {}`)",
                    self.path.display(),
                    self.provider
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Records::default()),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    /// Forgets the cluster's resources and request tokens, durably: what a provider's teardown
    /// does once the network is gone (`created_at` stays: a TTL counts from the first `up`).
    pub fn forget_cluster(&self) -> Result<(), String> {
        self.update(|r| {
            r.resources.clear();
            r.tokens.clear();
        })
    }

    /// Changes the records durably; returns what `change` returned.
    pub fn update<T>(&self, change: impl FnOnce(&mut Records) -> T) -> Result<T, String> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut records = self.read_unlocked()?;
        let before = records.clone();
        let result = change(&mut records);
        if records != before {
            self.write(&records).map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        }
        Ok(result)
    }

    fn write(&self, records: &Records) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
        std::fs::create_dir_all(dir)?;
        let temp = self.path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(&serde_json::to_vec_pretty(records).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&temp, &self.path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_durable_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let registry = Registry::new("aws", dir.path());
        assert_eq!(registry.read(), Ok(Records::default()));
        registry
            .update(|r| {
                r.tokens.insert("agents-0".to_string(), "t1".to_string());
                r.resources.insert("vpc".to_string(), None);
            })
            .expect("update");
        let again = Registry::new("aws", dir.path()).read().expect("read");
        assert_eq!(again.tokens.get("agents-0").map(String::as_str), Some("t1"));
        assert_eq!(again.resources.get("vpc"), Some(&None));
        assert!(!dir.path().join("aws.json.tmp").exists());
        registry.update(|r| r.created_at = Some("2026-12-07T00:00:00Z".to_string())).expect("update");
        registry.forget_cluster().expect("forget");
        let left = registry.read().expect("read");
        assert!(left.tokens.is_empty() && left.resources.is_empty(), "{left:?}");
        assert_eq!(left.created_at.as_deref(), Some("2026-12-07T00:00:00Z"), "the TTL still counts from the first up");
    }

    #[test]
    fn a_damaged_file_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("aws.json"), b"{not json").expect("write");
        let error = Registry::new("aws", dir.path()).read().expect_err("damaged");
        assert!(error.contains("aws.json") && error.contains("gantry sweep aws"), "{error}");
    }
}
