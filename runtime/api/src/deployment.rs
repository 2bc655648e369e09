//! Versions and deployments of apps (Marathon's versions and deployments, Nomad's deadlines,
//! auto-revert and canaries): wire types only.
//!
//! Every change of an app is a new [`AppVersion`]; a change of an existing app rolls out as a
//! [`Deployment`] under the app's [`crate::app::UpgradeStrategy`]. The master stores what a
//! deployment decided (status, promotion, why it failed) and fills in its live [`Progress`],
//! [`DeploymentStep`]s and, while it cannot move, the reason, when it answers.

use crate::Millis;
use crate::app::{AppDefinition, UpgradeStrategy};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One stored definition of an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppVersion {
    /// The app's version number.
    pub version: u64,
    /// When it was created.
    pub created_at: Millis,
    /// The definition of that version.
    pub definition: AppDefinition,
}

/// What caused a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentKind {
    /// A changed definition replaces the instances.
    Update,
    /// Only the number of instances changed.
    Scale,
    /// `gantry app restart`: the same definition on fresh instances.
    Restart,
    /// A previous version deployed again (by hand, by a cancel, or automatically).
    Rollback,
}

/// Where a deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    /// Replacing instances.
    Running,
    /// Canaries are healthy; waiting for `gantry deployment promote`.
    Paused,
    /// Every instance runs the new version and is ready.
    Succeeded,
    /// It exceeded its progress deadline (see `reason`).
    Failed,
    /// It failed and the previous version is being deployed again (`rollback_id`).
    RolledBack,
    /// Cancelled by a user; the previous version is being deployed again (`rollback_id`).
    Cancelled,
    /// A newer change of the app replaced it before it finished.
    Superseded,
}

impl DeploymentStatus {
    /// Whether the deployment still drives the app (RUNNING or PAUSED).
    pub fn is_active(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }

    /// The name as shown, e.g. `rolled_back`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
            Self::Cancelled => "cancelled",
            Self::Superseded => "superseded",
        }
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// Under way.
    Running,
    /// Done.
    Done,
    /// Stopped before it was done.
    Stopped,
}

/// One step of a deployment, e.g. "start 1 canary and wait until it is healthy".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentStep {
    /// Short name: `canary`, `promote`, `replace`, `scale`.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Where it stands.
    pub status: StepStatus,
}

/// Live counts of a deployment's instances.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Instances wanted.
    pub instances: u32,
    /// New-version instances that are ready (running and healthy).
    pub new_ready: u32,
    /// New-version instances staging or running.
    pub new_active: u32,
    /// Old-version instances staging or running.
    pub old_active: u32,
    /// Old-version instances that are ready.
    pub old_ready: u32,
    /// Ready instances the strategy keeps at least.
    pub min_ready: u32,
    /// Instances the strategy allows at once.
    pub max_active: u32,
}

/// A rollout of one app version over the previous one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Unique id.
    pub id: String,
    /// The app.
    pub app_id: String,
    /// What caused it.
    pub kind: DeploymentKind,
    /// The version running before (a cancel or rollback returns to it).
    pub from_version: u64,
    /// The version being rolled out.
    pub to_version: u64,
    /// The strategy of the new version.
    pub strategy: UpgradeStrategy,
    /// Where it stands.
    pub status: DeploymentStatus,
    /// Why it cannot progress (live, while active) or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the canaries were promoted (always true without canaries).
    pub promoted: bool,
    /// The deployment that rolled back this one, after a failure or a cancel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_id: Option<String>,
    /// When it started.
    pub created_at: Millis,
    /// When one more new instance last became ready (the progress deadline counts from here).
    pub progressed_at: Millis,
    /// When it stopped being active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
    /// Live counts, filled in by the master when it answers.
    #[serde(default)]
    pub progress: Progress,
    /// Its steps, filled in by the master when it answers.
    #[serde(default)]
    pub steps: Vec<DeploymentStep>,
}

/// Body of `POST /api/v1/apps/{id}/rollback`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version to deploy again; the one before the current version if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
}
