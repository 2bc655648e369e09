//! New app versions and the deployments that roll them out, as [`Change`]s: pure builders over
//! the cluster state, shared by the apps API (deploy, scale, restart, rollback), the deployments
//! API (cancel, promote) and the deployment driver (auto-rollback). Callers commit the change
//! and then [`apply`] the history it carries.

use crate::master::{Change, Edit};
use crate::services::deployment::has_canaries;
use crate::services::history::{self, AppHistory};
use crate::state::ClusterState;
use crate::store::AppRecord;
use gantry_api::{App, AppDefinition, AppVersion, Deployment, DeploymentKind, DeploymentStatus, Event, Millis};

/// Why a version change cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// No such app.
    #[error("no app `{0}`")]
    NoApp(String),
    /// The version is not stored (never existed or was forgotten).
    #[error("app `{app_id}` has no stored version {version}; see `gantry app versions {app_id}`")]
    NoVersion {
        /// The app.
        app_id: String,
        /// The version asked for.
        version: u64,
    },
    /// The change cannot be encoded for the store.
    #[error("cannot encode the app history: {0}")]
    Encode(String),
}

/// A change to commit, and the history to [`apply`] once it is stored.
#[derive(Debug)]
pub struct Prepared {
    /// What to store.
    pub change: Change,
    /// The app's history after the change.
    pub history: AppHistory,
    /// The app record after the change.
    pub record: AppRecord,
    /// The deployment started by the change, if any.
    pub deployment_id: Option<String>,
}

/// How the active deployment ends when a new version replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// Its final status.
    pub status: DeploymentStatus,
    /// Why.
    pub reason: Option<String>,
}

impl Ending {
    /// A newer change took over.
    pub fn superseded(version: u64) -> Self {
        Self { status: DeploymentStatus::Superseded, reason: Some(format!("superseded by version {version}")) }
    }
}

/// Whether `new` differs from `old` only in what does not replace instances (the instance
/// count and the upgrade strategy).
pub fn is_scale_only(old: &AppDefinition, new: &AppDefinition) -> bool {
    AppDefinition { instances: new.instances, upgrade_strategy: new.upgrade_strategy.clone(), ..old.clone() } == *new
}

/// The first version of a new app.
pub fn create(definition: AppDefinition, now: Millis) -> Result<Prepared, VersionError> {
    let id = definition.id.clone();
    let app = App {
        definition: definition.clone(),
        version: 1,
        created_at: now,
        updated_at: now,
        status: Default::default(),
    };
    let record = AppRecord { app, config_version: 1 };
    let mut history = AppHistory::default();
    history.push_version(AppVersion { version: 1, created_at: now, definition });
    let mut change = Change::of([Edit::PutApp(record.clone())]);
    change.events.push(Event::AppUpdated { app_id: id.clone(), version: 1, at: now });
    history.store_in(&id, &AppHistory::default(), &mut change).map_err(|e| VersionError::Encode(e.to_string()))?;
    Ok(Prepared { change, history, record, deployment_id: None })
}

/// A new version of an existing app with `definition`, rolled out by a new deployment of
/// `kind`; the active deployment, if any, ends as `ending` (superseded by default).
pub fn new_version(
    state: &ClusterState,
    definition: AppDefinition,
    kind: DeploymentKind,
    ending: Option<Ending>,
    now: Millis,
) -> Result<Prepared, VersionError> {
    let id = definition.id.clone();
    let entry = state.app(&id).ok_or_else(|| VersionError::NoApp(id.clone()))?;
    let mut record = entry.record.clone();
    let mut history = entry.history.clone();
    let from_version = record.app.version;
    let reconfigure = kind == DeploymentKind::Restart || !is_scale_only(&record.app.definition, &definition);
    let kind = if kind == DeploymentKind::Update && !reconfigure { DeploymentKind::Scale } else { kind };
    record.app.definition = definition.clone();
    record.app.version += 1;
    record.app.updated_at = now;
    if reconfigure {
        record.config_version = record.app.version;
    }
    let version = record.app.version;
    if history.version(from_version).is_none() {
        // Apps created before versions were kept: remember the definition being replaced.
        let previous = entry.record.app.definition.clone();
        history.push_version(AppVersion {
            version: from_version,
            created_at: entry.record.app.updated_at,
            definition: previous,
        });
    }
    history.push_version(AppVersion { version, created_at: now, definition: definition.clone() });
    let mut events = vec![Event::AppUpdated { app_id: id.clone(), version, at: now }];
    let deployment_id = history::new_deployment_id();
    if let Some(active) = history.active_mut() {
        let ending = ending.unwrap_or_else(|| Ending::superseded(version));
        history::finish(active, ending.status, ending.reason.clone(), now);
        if matches!(ending.status, DeploymentStatus::Cancelled | DeploymentStatus::RolledBack) {
            active.rollback_id = Some(deployment_id.clone());
        }
        events.push(deployment_event(active, now));
    }
    let strategy = definition.upgrade_strategy.clone();
    let deployment = Deployment {
        id: deployment_id.clone(),
        app_id: id.clone(),
        kind,
        from_version,
        to_version: version,
        promoted: !has_canaries(kind, strategy.canary),
        strategy,
        status: DeploymentStatus::Running,
        reason: None,
        rollback_id: None,
        created_at: now,
        progressed_at: now,
        finished_at: None,
        progress: Default::default(),
        steps: Vec::new(),
    };
    events.push(deployment_event(&deployment, now));
    history.push_deployment(deployment);
    let mut change = Change::of([Edit::PutApp(record.clone())]);
    change.events = events;
    history.store_in(&id, &entry.history, &mut change).map_err(|e| VersionError::Encode(e.to_string()))?;
    Ok(Prepared { change, history, record, deployment_id: Some(deployment_id) })
}

/// Deploys stored version `to` of app `app_id` again as a new version.
pub fn rollback(
    state: &ClusterState,
    app_id: &str,
    to: u64,
    ending: Option<Ending>,
    now: Millis,
) -> Result<Prepared, VersionError> {
    let entry = state.app(app_id).ok_or_else(|| VersionError::NoApp(app_id.to_string()))?;
    let definition = match entry.history.version(to) {
        Some(v) => v.definition.clone(),
        None if to == entry.record.app.version => entry.record.app.definition.clone(),
        None => return Err(VersionError::NoVersion { app_id: app_id.to_string(), version: to }),
    };
    new_version(state, definition, DeploymentKind::Rollback, ending, now)
}

/// A change storing only an app's history (a deployment changed) over the stored `before`, with
/// its events.
pub fn history_change(
    app_id: &str,
    before: &AppHistory,
    history: &AppHistory,
    events: Vec<Event>,
) -> Result<Change, VersionError> {
    let mut change = Change::default();
    change.events = events;
    history.store_in(app_id, before, &mut change).map_err(|e| VersionError::Encode(e.to_string()))?;
    Ok(change)
}

/// The event announcing a deployment's status.
pub fn deployment_event(d: &Deployment, now: Millis) -> Event {
    Event::DeploymentChanged {
        deployment_id: d.id.clone(),
        app_id: d.app_id.clone(),
        version: d.to_version,
        status: d.status,
        reason: d.reason.clone(),
        at: now,
    }
}

/// Applies a stored change's history to the in-memory state (the change itself was applied by
/// `Master::commit`).
pub fn apply(state: &mut ClusterState, app_id: &str, history: AppHistory) {
    if let Some(h) = state.app_history_mut(app_id) {
        *h = history;
    }
}
