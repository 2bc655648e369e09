//! An app's history: its stored versions and its deployments (the active one and recent ones),
//! kept in memory beside the app and stored as two `meta` entries per app, written in the same
//! transaction as the app change they belong to.
//!
//! Pure data and encoding; the API handlers and the deployment driver build the changes.

use crate::master::{Change, Edit};
use gantry_api::{AppVersion, Deployment, Millis};
use std::collections::BTreeMap;

/// Versions kept per app (the oldest are forgotten beyond this).
pub const MAX_VERSIONS: usize = 50;
/// Finished deployments kept per app.
pub const MAX_FINISHED_DEPLOYMENTS: usize = 10;

const VERSIONS_PREFIX: &str = "app-versions/";
const DEPLOYMENTS_PREFIX: &str = "app-deployments/";

/// The versions and deployments of one app.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppHistory {
    /// Stored versions, oldest first.
    pub versions: Vec<AppVersion>,
    /// Deployments, oldest first; at most one is active (the last).
    pub deployments: Vec<Deployment>,
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

    /// Adds the meta entries storing this history of `app_id` to `change`.
    pub fn store_in(&self, app_id: &str, change: &mut Change) -> Result<(), serde_json::Error> {
        change.push(Edit::PutMeta(versions_key(app_id), serde_json::to_string(&self.versions)?));
        change.push(Edit::PutMeta(deployments_key(app_id), serde_json::to_string(&self.deployments)?));
        Ok(())
    }
}

/// The meta key of an app's versions.
pub fn versions_key(app_id: &str) -> String {
    format!("{VERSIONS_PREFIX}{app_id}")
}

/// The meta key of an app's deployments.
pub fn deployments_key(app_id: &str) -> String {
    format!("{DEPLOYMENTS_PREFIX}{app_id}")
}

/// Histories by app id from the store's meta entries; unreadable entries are skipped (a
/// history is a record of the past, never needed to run an app).
pub fn from_meta(meta: &BTreeMap<String, String>) -> BTreeMap<String, AppHistory> {
    let mut out: BTreeMap<String, AppHistory> = BTreeMap::new();
    for (key, value) in meta {
        if let Some(app_id) = key.strip_prefix(VERSIONS_PREFIX) {
            match serde_json::from_str(value) {
                Ok(versions) => out.entry(app_id.to_string()).or_default().versions = versions,
                Err(error) => tracing::warn!(%app_id, %error, "Skipping unreadable app versions."),
            }
        } else if let Some(app_id) = key.strip_prefix(DEPLOYMENTS_PREFIX) {
            match serde_json::from_str(value) {
                Ok(deployments) => out.entry(app_id.to_string()).or_default().deployments = deployments,
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

    fn deployment(id: &str, status: DeploymentStatus) -> Deployment {
        Deployment {
            id: id.into(),
            app_id: "web".into(),
            kind: DeploymentKind::Update,
            from_version: 1,
            to_version: 2,
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

    #[test]
    fn bounded_and_round_trips_through_meta() {
        let definition: AppDefinition = serde_json::from_str(r#"{"id":"web","cmd":"true"}"#).expect("valid");
        let mut history = AppHistory::default();
        for v in 1..=(MAX_VERSIONS as u64 + 5) {
            history.push_version(AppVersion { version: v, created_at: v, definition: definition.clone() });
        }
        assert_eq!(history.versions.len(), MAX_VERSIONS);
        assert_eq!(history.versions[0].version, 6);
        for i in 0..15 {
            history.push_deployment(deployment(&format!("d{i}"), DeploymentStatus::Succeeded));
        }
        history.push_deployment(deployment("live", DeploymentStatus::Running));
        assert_eq!(history.deployments.len(), MAX_FINISHED_DEPLOYMENTS + 1);
        assert_eq!(history.active().map(|d| d.id.as_str()), Some("live"));
        let mut change = Change::default();
        history.store_in("web", &mut change).expect("encode");
        let meta: BTreeMap<String, String> = change
            .edits()
            .iter()
            .filter_map(|e| match e {
                Edit::PutMeta(k, v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(from_meta(&meta).get("web"), Some(&history));
    }
}
