//! An app's history: its stored versions and its deployments (the active one and recent ones),
//! kept in memory beside the app and stored as `meta` entries, one per version and one per
//! deployment, written in the same transaction as the app change they belong to. A change
//! writes only the entries it adds or changes and removes those it forgets, so a new version
//! of an app costs one version's bytes in the log, whatever its history holds.
//!
//! Histories stored before (one entry holding all of an app's versions, one all its
//! deployments) are still read; the app's next change stores its whole history the new way
//! and removes the old entries.
//!
//! Pure data and encoding; the API handlers and the deployment driver build the changes.

use crate::master::{Change, Edit};
use gantry_api::{AppVersion, Deployment, Millis};
use std::collections::BTreeMap;

/// Versions kept per app (the oldest are forgotten beyond this).
pub const MAX_VERSIONS: usize = 50;
/// Finished deployments kept per app.
pub const MAX_FINISHED_DEPLOYMENTS: usize = 10;

/// `app-version/<app>/<version, 20 digits>`: one stored version.
const VERSION_PREFIX: &str = "app-version/";
/// `app-deployment/<app>/<version it deploys, 20 digits>`: one deployment (each deployment
/// rolls out a new version of its app, so the key is its own and sorts as they were created).
const DEPLOYMENT_PREFIX: &str = "app-deployment/";
/// The entries of histories stored before: all versions of an app in one.
const LEGACY_VERSIONS_PREFIX: &str = "app-versions/";
/// The entries of histories stored before: all deployments of an app in one.
const LEGACY_DEPLOYMENTS_PREFIX: &str = "app-deployments/";

/// The versions and deployments of one app.
#[derive(Debug, Clone, Default)]
pub struct AppHistory {
    /// Stored versions, oldest first.
    pub versions: Vec<AppVersion>,
    /// Deployments, oldest first; at most one is active (the last).
    pub deployments: Vec<Deployment>,
    /// Read from the entries of before (see the module documentation).
    legacy: bool,
}

impl PartialEq for AppHistory {
    /// The same versions and deployments, however they were stored.
    fn eq(&self, other: &Self) -> bool {
        self.versions == other.versions && self.deployments == other.deployments
    }
}

impl AppHistory {
    /// The active deployment, if any.
    pub fn active(&self) -> Option<&Deployment> {
        self.deployments.iter().rev().find(|d| d.status.is_active())
    }

    /// The active deployment, to change.
    pub fn active_mut(&mut self) -> Option<&mut Deployment> {
        self.deployments.iter_mut().rev().find(|d| d.status.is_active())
    }

    /// One stored version.
    pub fn version(&self, version: u64) -> Option<&AppVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// Adds a version, forgetting the oldest beyond [`MAX_VERSIONS`].
    pub fn push_version(&mut self, version: AppVersion) {
        self.versions.retain(|v| v.version != version.version);
        self.versions.push(version);
        let extra = self.versions.len().saturating_sub(MAX_VERSIONS);
        self.versions.drain(..extra);
    }

    /// Adds a deployment, forgetting the oldest finished ones beyond [`MAX_FINISHED_DEPLOYMENTS`].
    pub fn push_deployment(&mut self, deployment: Deployment) {
        self.deployments.push(deployment);
        let finished = self.deployments.iter().filter(|d| !d.status.is_active()).count();
        let mut extra = finished.saturating_sub(MAX_FINISHED_DEPLOYMENTS);
        self.deployments.retain(|d| {
            if extra > 0 && !d.status.is_active() {
                extra -= 1;
                false
            } else {
                true
            }
        });
    }

    /// Adds to `change` the meta entries that turn the stored history of `app_id`, `before`,
    /// into this one: the versions and deployments that are new or changed, and the removal of
    /// those forgotten.
    pub fn store_in(&self, app_id: &str, before: &AppHistory, change: &mut Change) -> Result<(), serde_json::Error> {
        let empty = AppHistory::default();
        let before = if before.legacy {
            change.push(Edit::RemoveMeta(format!("{LEGACY_VERSIONS_PREFIX}{app_id}")));
            change.push(Edit::RemoveMeta(format!("{LEGACY_DEPLOYMENTS_PREFIX}{app_id}")));
            &empty
        } else {
            before
        };
        for version in &self.versions {
            if before.version(version.version) != Some(version) {
                change.push(Edit::PutMeta(version_key(app_id, version), serde_json::to_string(version)?));
            }
        }
        for old in &before.versions {
            if self.version(old.version).is_none() {
                change.push(Edit::RemoveMeta(version_key(app_id, old)));
            }
        }
        for deployment in &self.deployments {
            if before.deployments.iter().find(|d| d.id == deployment.id) != Some(deployment) {
                change.push(Edit::PutMeta(deployment_key(app_id, deployment), serde_json::to_string(deployment)?));
            }
        }
        for old in &before.deployments {
            if !self.deployments.iter().any(|d| d.id == old.id) {
                change.push(Edit::RemoveMeta(deployment_key(app_id, old)));
            }
        }
        Ok(())
    }

    /// Adds to `change` the removal of every entry of this stored history of `app_id` (the app
    /// is deleted).
    pub fn remove_from(&self, app_id: &str, change: &mut Change) {
        change.push(Edit::RemoveMeta(format!("{LEGACY_VERSIONS_PREFIX}{app_id}")));
        change.push(Edit::RemoveMeta(format!("{LEGACY_DEPLOYMENTS_PREFIX}{app_id}")));
        if !self.legacy {
            for version in &self.versions {
                change.push(Edit::RemoveMeta(version_key(app_id, version)));
            }
            for deployment in &self.deployments {
                change.push(Edit::RemoveMeta(deployment_key(app_id, deployment)));
            }
        }
    }
}

/// The meta key of one stored version of `app_id`.
fn version_key(app_id: &str, version: &AppVersion) -> String {
    format!("{VERSION_PREFIX}{app_id}/{:020}", version.version)
}

/// The meta key of one deployment of `app_id` (keys sort as deployments were created).
fn deployment_key(app_id: &str, deployment: &Deployment) -> String {
    format!("{DEPLOYMENT_PREFIX}{app_id}/{:020}", deployment.to_version)
}

/// Histories by app id from the store's meta entries; unreadable entries are skipped (a
/// history is a record of the past, never needed to run an app).
pub fn from_meta(meta: &BTreeMap<String, String>) -> BTreeMap<String, AppHistory> {
    let mut out: BTreeMap<String, AppHistory> = BTreeMap::new();
    // Keys come in order: an app's versions by number, its deployments as they were created.
    for (key, value) in meta {
        if let Some(rest) = key.strip_prefix(VERSION_PREFIX) {
            let app_id = rest.split('/').next().unwrap_or_default();
            match serde_json::from_str(value) {
                Ok(version) => out.entry(app_id.to_string()).or_default().versions.push(version),
                Err(error) => tracing::warn!(%key, %error, "Skipping an unreadable app version."),
            }
        } else if let Some(rest) = key.strip_prefix(DEPLOYMENT_PREFIX) {
            let app_id = rest.split('/').next().unwrap_or_default();
            match serde_json::from_str(value) {
                Ok(deployment) => out.entry(app_id.to_string()).or_default().deployments.push(deployment),
                Err(error) => tracing::warn!(%key, %error, "Skipping an unreadable app deployment."),
            }
        } else if let Some(app_id) = key.strip_prefix(LEGACY_VERSIONS_PREFIX) {
            match serde_json::from_str(value) {
                Ok(versions) => {
                    let history = out.entry(app_id.to_string()).or_default();
                    history.versions = versions;
                    history.legacy = true;
                }
                Err(error) => tracing::warn!(%app_id, %error, "Skipping unreadable app versions."),
            }
        } else if let Some(app_id) = key.strip_prefix(LEGACY_DEPLOYMENTS_PREFIX) {
            match serde_json::from_str(value) {
                Ok(deployments) => {
                    let history = out.entry(app_id.to_string()).or_default();
                    history.deployments = deployments;
                    history.legacy = true;
                }
                Err(error) => tracing::warn!(%app_id, %error, "Skipping unreadable app deployments."),
            }
        }
    }
    out
}

/// A new deployment id.
pub fn new_deployment_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Marks an active deployment finished with `status` at `now`.
pub fn finish(deployment: &mut Deployment, status: gantry_api::DeploymentStatus, reason: Option<String>, now: Millis) {
    deployment.status = status;
    deployment.reason = reason;
    deployment.finished_at = Some(now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::{AppDefinition, DeploymentKind, DeploymentStatus, UpgradeStrategy};

    fn deployment(id: &str, to_version: u64, status: DeploymentStatus) -> Deployment {
        Deployment {
            id: id.into(),
            app_id: "web".into(),
            kind: DeploymentKind::Update,
            from_version: to_version - 1,
            to_version,
            strategy: UpgradeStrategy::default(),
            status,
            reason: None,
            promoted: true,
            rollback_id: None,
            created_at: 0,
            progressed_at: 0,
            finished_at: None,
            progress: Default::default(),
            steps: vec![],
        }
    }

    fn version(v: u64) -> AppVersion {
        let definition: AppDefinition = serde_json::from_str(r#"{"id":"web","cmd":"true"}"#).expect("valid");
        AppVersion { version: v, created_at: v, definition }
    }

    /// Applies the meta edits of `change` to `meta`.
    fn apply(meta: &mut BTreeMap<String, String>, change: &Change) {
        for edit in change.edits() {
            match edit {
                Edit::PutMeta(k, v) => {
                    meta.insert(k.clone(), v.clone());
                }
                Edit::RemoveMeta(k) => {
                    meta.remove(k);
                }
                _ => {}
            }
        }
    }

    fn bounded_history() -> AppHistory {
        let mut history = AppHistory::default();
        for v in 1..=(MAX_VERSIONS as u64 + 5) {
            history.push_version(version(v));
        }
        for i in 0..15 {
            history.push_deployment(deployment(&format!("d{i}"), i + 2, DeploymentStatus::Succeeded));
        }
        history.push_deployment(deployment("live", 100, DeploymentStatus::Running));
        history
    }

    #[test]
    fn bounded_and_round_trips_through_meta() {
        let history = bounded_history();
        assert_eq!(history.versions.len(), MAX_VERSIONS);
        assert_eq!(history.versions[0].version, 6);
        assert_eq!(history.deployments.len(), MAX_FINISHED_DEPLOYMENTS + 1);
        assert_eq!(history.active().map(|d| d.id.as_str()), Some("live"));
        let mut change = Change::default();
        history.store_in("web", &AppHistory::default(), &mut change).expect("encode");
        let mut meta = BTreeMap::new();
        apply(&mut meta, &change);
        assert_eq!(from_meta(&meta).get("web"), Some(&history));
    }

    #[test]
    fn a_change_stores_only_what_it_adds_changes_or_forgets() {
        let before = bounded_history();
        let mut meta = BTreeMap::new();
        let mut first = Change::default();
        before.store_in("web", &AppHistory::default(), &mut first).expect("encode");
        apply(&mut meta, &first);
        // A new version and a new deployment; the oldest version is forgotten and the active
        // deployment ends.
        let mut after = before.clone();
        after.push_version(version(200));
        if let Some(live) = after.active_mut() {
            finish(live, DeploymentStatus::Succeeded, None, 5);
        }
        after.push_deployment(deployment("next", 200, DeploymentStatus::Running));
        let mut change = Change::default();
        after.store_in("web", &before, &mut change).expect("encode");
        let written: Vec<&str> = change
            .edits()
            .iter()
            .filter_map(|e| match e {
                Edit::PutMeta(k, _) => Some(k.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            written,
            [
                "app-version/web/00000000000000000200",
                "app-deployment/web/00000000000000000100",
                "app-deployment/web/00000000000000000200"
            ]
        );
        let removed = change.edits().iter().filter(|e| matches!(e, Edit::RemoveMeta(_))).count();
        assert_eq!(removed, 2, "the oldest version and the oldest finished deployment");
        apply(&mut meta, &change);
        assert_eq!(from_meta(&meta).get("web"), Some(&after));
        // Deleting the app removes every entry.
        let mut delete = Change::default();
        after.remove_from("web", &mut delete);
        apply(&mut meta, &delete);
        assert!(meta.is_empty(), "{meta:?}");
    }

    #[test]
    fn a_history_stored_before_is_read_and_stored_again_the_new_way() {
        let history = bounded_history();
        let mut meta = BTreeMap::from([
            ("app-versions/web".to_string(), serde_json::to_string(&history.versions).expect("encode")),
            ("app-deployments/web".to_string(), serde_json::to_string(&history.deployments).expect("encode")),
        ]);
        let loaded = from_meta(&meta).remove("web").expect("read");
        assert_eq!(loaded, history);
        let mut after = loaded.clone();
        after.push_version(version(300));
        let mut change = Change::default();
        after.store_in("web", &loaded, &mut change).expect("encode");
        apply(&mut meta, &change);
        assert!(!meta.contains_key("app-versions/web") && !meta.contains_key("app-deployments/web"));
        assert_eq!(from_meta(&meta).get("web"), Some(&after));
    }
}
