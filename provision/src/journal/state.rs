//! What the journal says about a cluster's hosts: the pure fold of its records. Replaying a
//! journal file and simulating an apply in tests go through the same [`JournalState::apply`].

use crate::cluster_file::Role;
use crate::planner::{ActionKind, HostSettings};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether a record announces an action or reports its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// Written (and fsynced) before the provider or transport acts.
    Intent,
    /// The action completed.
    Done,
    /// The action failed; `detail.error` says why.
    Failed,
}

/// One line of the journal file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Position in the journal, from 1, strictly increasing.
    pub seq: u64,
    /// When it was written, RFC 3339 UTC (informational; never compared).
    pub at: String,
    /// Intent, done or failed.
    pub kind: RecordKind,
    /// The action.
    pub action: ActionKind,
    /// The host acted on.
    pub host: String,
    /// Role, pool, settings applied and error, as far as they apply.
    #[serde(default)]
    pub detail: RecordDetail,
}

/// The variable part of a record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordDetail {
    /// Role of the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Pool of the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Settings a bootstrap or reconfigure applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<HostSettings>,
    /// Why a failed action failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How far a host has come, per the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostPhase {
    /// Its creation was intended but never confirmed: it may or may not exist.
    Requested,
    /// The provider created it; not bootstrapped since.
    Created,
    /// Bootstrapped with [`HostRecord::settings`].
    Bootstrapped,
    /// Drained: runs no tasks and accepts none.
    Drained,
}

/// The journal's knowledge of one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    /// Role of the host.
    pub role: Role,
    /// Pool of the host.
    pub pool: String,
    /// How far it has come.
    pub phase: HostPhase,
    /// Settings of its last bootstrap or reconfigure (empty before the first).
    pub settings: HostSettings,
    /// An action whose intent was recorded without a result: interrupted, to be resumed.
    pub pending: Option<ActionKind>,
}

/// Hosts known to the journal; a destroyed host is forgotten.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalState {
    /// Hosts by name.
    pub hosts: BTreeMap<String, HostRecord>,
    /// Sequence number of the last record applied (0 for an empty journal).
    pub last_seq: u64,
}

impl JournalState {
    /// Folds one record into the state.
    pub fn apply(&mut self, record: &Record) {
        self.last_seq = self.last_seq.max(record.seq);
        let detail = &record.detail;
        let host = self.hosts.entry(record.host.clone()).or_insert_with(|| HostRecord {
            role: detail.role.unwrap_or(Role::Agent),
            pool: detail.pool.clone().unwrap_or_default(),
            phase: HostPhase::Requested,
            settings: HostSettings::new(),
            pending: None,
        });
        if let Some(role) = detail.role {
            host.role = role;
        }
        if let Some(pool) = &detail.pool {
            host.pool.clone_from(pool);
        }
        match record.kind {
            RecordKind::Intent => host.pending = Some(record.action),
            RecordKind::Failed => host.pending = None,
            RecordKind::Done => {
                host.pending = None;
                match record.action {
                    ActionKind::Create => host.phase = HostPhase::Created,
                    ActionKind::Bootstrap | ActionKind::Reconfigure => {
                        host.phase = HostPhase::Bootstrapped;
                        if let Some(settings) = &detail.settings {
                            host.settings.clone_from(settings);
                        }
                    }
                    ActionKind::Drain => host.phase = HostPhase::Drained,
                    ActionKind::Destroy => {
                        self.hosts.remove(&record.host);
                    }
                }
            }
        }
    }

    /// Actions recorded as intended but never completed or failed: `(host, action)`.
    pub fn incomplete(&self) -> Vec<(&str, ActionKind)> {
        self.hosts.iter().filter_map(|(name, h)| h.pending.map(|a| (name.as_str(), a))).collect()
    }
}
