//! The provisioning planner: a pure function from (desired hosts, journal state, hosts observed at
//! the provider) to an ordered [`Plan`] of actions. It performs no I/O; `plan`, `up` and `down`
//! all call it, and only `up`/`down` hand its actions to a provider and a transport.
//!
//! Decisions, per host name (the union of desired, journal and observed names):
//! - Desired and not observed: create, then bootstrap (also when the journal recorded it: the
//!   host was lost at the provider, so it is recreated). Observed but stopped: create (which
//!   starts an existing host: `create_host` is idempotent by name), then bootstrap.
//! - Desired and observed running: bootstrap if the journal does not know it (it is adopted:
//!   bootstrap phases are idempotent), if it was never bootstrapped, was drained, or a create or
//!   bootstrap was interrupted; reconfigure if its settings changed or a reconfigure was
//!   interrupted; nothing otherwise.
//! - Not desired but in the journal, or observed with a name of this cluster's form
//!   (`master-<i>`, `<pool>-<i>`): destroyed, so nothing leaks. A running agent is drained first.
//!   Observed hosts with other names are never touched; they are listed as ignored.
//!
//! Order: masters are created, bootstrapped and reconfigured before agents; then drains, then
//! destroys (agents before masters). Within a pool, hosts come up in ascending index order and go
//! away from the highest index down, so scaling down removes the highest indices first.

mod desired;
mod display;
#[cfg(test)]
mod tests;

pub use desired::{Desired, DesiredHost, HostSettings};

use crate::cluster_file::Role;
use crate::journal::{HostPhase, JournalState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What the provider reports about a host of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObservedHost {
    /// Whether it is running (false: it exists but is stopped).
    pub running: bool,
}

/// The kind of an action, as recorded in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Make the host exist and run.
    Create,
    /// Install and start the runtime on it.
    Bootstrap,
    /// Apply changed settings to a bootstrapped host.
    Reconfigure,
    /// Move its tasks away and accept no new ones.
    Drain,
    /// Remove the host.
    Destroy,
}

impl ActionKind {
    /// The verb shown in plans.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Bootstrap => "bootstrap",
            Self::Reconfigure => "reconfigure",
            Self::Drain => "drain",
            Self::Destroy => "destroy",
        }
    }
}

/// Why an action is planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Desired and never created.
    New,
    /// Recorded in the journal but not found at the provider: recreated.
    Missing,
    /// The provider reports it stopped.
    Stopped,
    /// Running at the provider but unknown to the journal: adopted.
    Adopt,
    /// Created but not bootstrapped.
    NotBootstrapped,
    /// Drained earlier and desired again.
    Drained,
    /// An intent was recorded without a result: the interrupted action is resumed.
    Resume(ActionKind),
    /// These settings differ from the ones it was bootstrapped with.
    Changed(Vec<String>),
    /// No longer desired (scaled down, or its pool was removed).
    Removed,
    /// The whole cluster is being taken down (`down`: nothing is desired).
    Teardown,
    /// Named like this cluster's hosts, at the provider, but neither desired nor in the journal.
    Unknown,
    /// Recorded in the journal, no longer desired and not at the provider: forgotten.
    Gone,
    /// Bootstrapped, but the live cluster says it is not serving (why): bootstrapped again.
    Unhealthy(String),
}

/// A host an action applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRef {
    /// Host name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its pool (`master` for masters outside any pool).
    pub pool: String,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ensure the host exists and runs.
    CreateHost {
        /// The host as desired.
        host: DesiredHost,
        /// Why.
        reason: Reason,
    },
    /// Install and start the runtime with the desired settings.
    Bootstrap {
        /// The host as desired.
        host: DesiredHost,
        /// Why.
        reason: Reason,
    },
    /// Apply the desired settings to a bootstrapped host.
    Reconfigure {
        /// The host as desired.
        host: DesiredHost,
        /// Why (which settings changed).
        reason: Reason,
    },
    /// Drain an agent before it is destroyed.
    Drain {
        /// The host.
        host: HostRef,
        /// Why.
        reason: Reason,
    },
    /// Destroy the host (idempotent: a host already gone is fine).
    Destroy {
        /// The host.
        host: HostRef,
        /// Why.
        reason: Reason,
    },
}

impl Action {
    /// The kind of action.
    pub fn kind(&self) -> ActionKind {
        match self {
            Self::CreateHost { .. } => ActionKind::Create,
            Self::Bootstrap { .. } => ActionKind::Bootstrap,
            Self::Reconfigure { .. } => ActionKind::Reconfigure,
            Self::Drain { .. } => ActionKind::Drain,
            Self::Destroy { .. } => ActionKind::Destroy,
        }
    }

    /// Name of the host acted on.
    pub fn host_name(&self) -> &str {
        match self {
            Self::CreateHost { host, .. } | Self::Bootstrap { host, .. } | Self::Reconfigure { host, .. } => &host.name,
            Self::Drain { host, .. } | Self::Destroy { host, .. } => &host.name,
        }
    }

    /// Role of the host acted on.
    pub fn role(&self) -> Role {
        match self {
            Self::CreateHost { host, .. } | Self::Bootstrap { host, .. } | Self::Reconfigure { host, .. } => host.role,
            Self::Drain { host, .. } | Self::Destroy { host, .. } => host.role,
        }
    }

    /// Pool of the host acted on.
    pub fn pool(&self) -> &str {
        match self {
            Self::CreateHost { host, .. } | Self::Bootstrap { host, .. } | Self::Reconfigure { host, .. } => &host.pool,
            Self::Drain { host, .. } | Self::Destroy { host, .. } => &host.pool,
        }
    }

    /// Settings the action applies (create, bootstrap and reconfigure).
    pub fn settings(&self) -> Option<&HostSettings> {
        match self {
            Self::CreateHost { host, .. } | Self::Bootstrap { host, .. } | Self::Reconfigure { host, .. } => {
                Some(&host.settings)
            }
            Self::Drain { .. } | Self::Destroy { .. } => None,
        }
    }

    /// Why it is planned.
    pub fn reason(&self) -> &Reason {
        match self {
            Self::CreateHost { reason, .. }
            | Self::Bootstrap { reason, .. }
            | Self::Reconfigure { reason, .. }
            | Self::Drain { reason, .. }
            | Self::Destroy { reason, .. } => reason,
        }
    }
}

/// An ordered list of actions that brings the cluster to the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Cluster name.
    pub cluster: String,
    /// The cluster file it was planned from (for messages).
    pub source: String,
    /// Actions, in the order they must start.
    pub actions: Vec<Action>,
    /// Hosts the provider reported whose names this cluster never gives; left alone.
    pub ignored: Vec<String>,
}

impl Plan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Splits a host name of this cluster's form, `<pool>-<index>` (masters: `master-<index>`).
pub fn parse_host_name(name: &str) -> Option<(&str, u32)> {
    let (pool, index) = name.rsplit_once('-')?;
    let valid_pool = pool.starts_with(|c: char| c.is_ascii_lowercase())
        && pool.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let index = index.parse::<u32>().ok().filter(|_| index.chars().all(|c| c.is_ascii_digit()))?;
    valid_pool.then_some((pool, index))
}

/// Plans the actions that take the cluster from what the journal and the provider say to
/// `desired`. `observed` holds every host the provider lists for this cluster.
pub fn plan(desired: &Desired, journal: &JournalState, observed: &BTreeMap<String, ObservedHost>) -> Plan {
    let wanted: BTreeMap<&str, &DesiredHost> = desired.hosts.iter().map(|h| (h.name.as_str(), h)).collect();
    let mut ignored = Vec::new();
    let mut names: BTreeSet<&str> = wanted.keys().copied().chain(journal.hosts.keys().map(String::as_str)).collect();
    for name in observed.keys() {
        if parse_host_name(name).is_some() {
            names.insert(name);
        } else {
            ignored.push(name.clone());
        }
    }
    let mut actions = Vec::new();
    for name in names {
        let record = journal.hosts.get(name);
        let seen = observed.get(name);
        match wanted.get(name) {
            Some(host) => plan_desired(host, record, seen, &mut actions),
            None => plan_removal(name, record, seen, desired.hosts.is_empty(), &mut actions),
        }
    }
    actions.sort_by_key(order_key);
    Plan { cluster: desired.cluster.clone(), source: desired.source.clone(), actions, ignored }
}

/// Adds a bootstrap for every desired host the live cluster reports unhealthy (`unhealthy`: host
/// → why) that the plan does not act on already, so `up` restarts daemons that died. Pure: the
/// caller asks the cluster. Bootstrap phases are idempotent, so only what is broken changes.
pub fn heal(plan: &mut Plan, desired: &Desired, unhealthy: &BTreeMap<String, String>) {
    for host in &desired.hosts {
        if let Some(why) = unhealthy.get(&host.name)
            && !plan.actions.iter().any(|a| a.host_name() == host.name)
        {
            plan.actions.push(Action::Bootstrap { host: host.clone(), reason: Reason::Unhealthy(why.clone()) });
        }
    }
    plan.actions.sort_by_key(order_key);
}

fn plan_desired(
    host: &DesiredHost,
    record: Option<&crate::journal::HostRecord>,
    seen: Option<&ObservedHost>,
    actions: &mut Vec<Action>,
) {
    let pending = record.and_then(|r| r.pending);
    let ensure = |reason: Reason, actions: &mut Vec<Action>| {
        actions.push(Action::CreateHost { host: host.clone(), reason: reason.clone() });
        actions.push(Action::Bootstrap { host: host.clone(), reason });
    };
    match (seen, record) {
        (None, _) => {
            let reason = match (pending, record) {
                (Some(ActionKind::Create), _) => Reason::Resume(ActionKind::Create),
                (_, Some(_)) => Reason::Missing,
                (_, None) => Reason::New,
            };
            ensure(reason, actions);
        }
        (Some(o), _) if !o.running => ensure(Reason::Stopped, actions),
        (Some(_), None) => actions.push(Action::Bootstrap { host: host.clone(), reason: Reason::Adopt }),
        (Some(_), Some(r)) => match (r.pending, r.phase) {
            (Some(ActionKind::Destroy), _) => ensure(Reason::Resume(ActionKind::Destroy), actions),
            (Some(kind @ (ActionKind::Create | ActionKind::Bootstrap | ActionKind::Drain)), _) => {
                actions.push(Action::Bootstrap { host: host.clone(), reason: Reason::Resume(kind) });
            }
            (Some(ActionKind::Reconfigure), _) => actions
                .push(Action::Reconfigure { host: host.clone(), reason: Reason::Resume(ActionKind::Reconfigure) }),
            (None, HostPhase::Requested | HostPhase::Created) => {
                actions.push(Action::Bootstrap { host: host.clone(), reason: Reason::NotBootstrapped });
            }
            (None, HostPhase::Drained) => {
                actions.push(Action::Bootstrap { host: host.clone(), reason: Reason::Drained })
            }
            (None, HostPhase::Bootstrapped) => {
                let changed = changed_settings(&r.settings, &host.settings);
                if !changed.is_empty() {
                    actions.push(Action::Reconfigure { host: host.clone(), reason: Reason::Changed(changed) });
                }
            }
        },
    }
}

fn plan_removal(
    name: &str,
    record: Option<&crate::journal::HostRecord>,
    seen: Option<&ObservedHost>,
    teardown: bool,
    actions: &mut Vec<Action>,
) {
    let (role, pool) = match record {
        Some(r) => (r.role, r.pool.clone()),
        None => {
            let pool = parse_host_name(name).map_or("", |(p, _)| p);
            (if pool == "master" { Role::Master } else { Role::Agent }, pool.to_string())
        }
    };
    let host = HostRef { name: name.to_string(), role, pool };
    let drained = record.is_some_and(|r| r.phase == HostPhase::Drained && r.pending.is_none());
    let removed = if teardown { Reason::Teardown } else { Reason::Removed };
    if role == Role::Agent && seen.is_some_and(|o| o.running) && !drained {
        actions.push(Action::Drain { host: host.clone(), reason: removed.clone() });
    }
    let reason = match (record, seen) {
        (Some(r), _) if r.pending == Some(ActionKind::Destroy) => Reason::Resume(ActionKind::Destroy),
        (None, _) => Reason::Unknown,
        (Some(_), None) => Reason::Gone,
        (Some(_), Some(_)) => removed,
    };
    actions.push(Action::Destroy { host, reason });
}

/// Names of settings whose values differ (added, removed or changed).
fn changed_settings(old: &HostSettings, new: &HostSettings) -> Vec<String> {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter().filter(|k| old.get(*k) != new.get(*k)).cloned().collect()
}

/// Sort key: stage (masters up, agents up, drains, agent destroys, master destroys), then pool,
/// then index ascending on the way up and descending on the way down.
fn order_key(action: &Action) -> (u8, String, i64) {
    let stage = stage(action);
    let (prefix, index) = parse_host_name(action.host_name()).unwrap_or((action.host_name(), 0));
    let index = i64::from(index);
    let index = if stage >= 6 { -index } else { index };
    (stage, prefix.to_string(), index)
}

/// The stage of an action: 0 create every host (masters and agents: a cloud boots them all at
/// once), 1 bootstrap masters, 2 reconfigure masters, 4–5 bootstrap and reconfigure agents,
/// 6 drains, 7 agent destroys, 8 master destroys. A plan's actions are sorted by stage; actions of
/// one stage are independent of each other and may run in parallel.
pub fn stage(action: &Action) -> u8 {
    let master = action.role() == Role::Master;
    match (action.kind(), master) {
        (ActionKind::Create, true) => 0,
        (ActionKind::Bootstrap, true) => 1,
        (ActionKind::Reconfigure, true) => 2,
        (ActionKind::Create, false) => 0,
        (ActionKind::Bootstrap, false) => 4,
        (ActionKind::Reconfigure, false) => 5,
        (ActionKind::Drain, _) => 6,
        (ActionKind::Destroy, false) => 7,
        (ActionKind::Destroy, true) => 8,
    }
}
