//! The apply engine: performs a [`Plan`] through a [`Provider`], a [`Connector`] and the bootstrap
//! phases, journaling every action — intent (fsynced) before it acts, then done or failed. It owns
//! ordering, parallelism and retries; the planner decided what to do.
//!
//! Actions run stage by stage ([`crate::planner::stage`]): masters are created and bootstrapped
//! before agents, drains before destroys. Actions of one stage run in parallel, at most
//! [`EngineOptions::parallelism`] at once (and no more creates than the provider allows). When an
//! action fails, the rest of its stage finishes and later stages are not started. Only errors that
//! say so (`is_retryable`) are retried, with exponential backoff; phases are idempotent, so a
//! retried or interrupted phase is simply run again. An apply cancelled at any point (Ctrl-C drops
//! the future, SIGKILL ends the process) leaves intents without results in the journal; the next
//! plan resumes them.

mod progress;
#[cfg(test)]
mod tests;

pub use progress::{NoProgress, Progress, ProgressEvent, RecordingProgress};

use crate::access::{Connector, HostAccess};
use crate::bootstrap::{self, BootstrapError, HostContext, MasterMember, Phase, PhaseOutcome, RuntimeSettings};
use crate::cluster_api::ClusterApi;
use crate::cluster_file::Role;
use crate::journal::{Journal, JournalError, RecordKind};
use crate::planner::{Action, ActionKind, Plan, stage};
use crate::provider::{ErrorKind, HostDescription, HostSpec, Provider, ProviderError};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What progress names the cluster's own resources by (the provider's network, firewall, …).
pub const CLUSTER: &str = "cluster";

/// How retryable failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// Delay after the first failure; doubled after each.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 5, initial: Duration::from_millis(200), max: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    fn delay(&self, attempt: u32) -> Duration {
        self.initial.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1))).min(self.max)
    }
}

/// Knobs of an apply.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Actions of one stage running at once.
    pub parallelism: usize,
    /// Retries of retryable failures.
    pub retry: RetryPolicy,
    /// How long a daemon may take to become ready (or an agent unreachable).
    pub ready_timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { parallelism: 16, retry: RetryPolicy::default(), ready_timeout: Duration::from_secs(60) }
    }
}

/// One action that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The host.
    pub host: String,
    /// The action.
    pub action: ActionKind,
    /// Why.
    pub message: String,
}

/// An apply that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The journal could not be written: nothing more is done, since nothing could be recorded.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Some actions failed; the journal records which. Running again resumes.
    #[error("{} failed:{}", plural(.failures.len()), .failures.iter().map(|f| format!("\n  {} {}: {}", f.action.verb(), f.host, f.message)).collect::<String>())]
    Failed {
        /// The failed actions.
        failures: Vec<Failure>,
    },
}

/// The masters that stay after `plan`: agents are told about these only.
fn staying(masters: &[(MasterMember, HostAccess)], plan: &Plan) -> Vec<(MasterMember, HostAccess)> {
    let leaving: Vec<&str> = plan
        .actions
        .iter()
        .filter(|a| a.kind() == ActionKind::Destroy && a.role() == Role::Master)
        .map(Action::host_name)
        .collect();
    masters.iter().filter(|(m, _)| !leaving.contains(&m.name.as_str())).cloned().collect()
}

/// The masters' URLs, comma-separated: as the hosts reach them, and as this machine does.
fn urls(masters: &[(MasterMember, HostAccess)]) -> Option<(String, String)> {
    if masters.is_empty() {
        return None;
    }
    let join = |url: fn(&HostAccess) -> String| masters.iter().map(|(_, a)| url(a)).collect::<Vec<_>>().join(",");
    Some((join(HostAccess::master_url), join(HostAccess::public_master_url)))
}

fn plural(n: usize) -> String {
    if n == 1 { "1 action".to_string() } else { format!("{n} actions") }
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// Actions completed.
    pub completed: usize,
    /// The cluster's master URL, when a master exists after the apply.
    pub master_url: Option<String>,
}

/// Performs plans; see the module docs.
pub struct Engine<'a> {
    /// The cluster's name (hosts are tagged with it).
    pub cluster: String,
    /// Makes hosts exist.
    pub provider: &'a dyn Provider,
    /// Reaches them.
    pub connector: &'a dyn Connector,
    /// Asks the cluster whether daemons are ready.
    pub api: Arc<dyn ClusterApi>,
    /// Receives events.
    pub progress: &'a dyn Progress,
    /// Settings of every daemon.
    pub runtime: RuntimeSettings,
    /// The gantry binary uploaded to hosts.
    pub binary: PathBuf,
    /// Parallelism, retries, timeouts.
    pub options: EngineOptions,
}

impl fmt::Debug for Engine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine").field("provider", &self.provider.name()).field("options", &self.options).finish()
    }
}

/// Why an action failed, before it is reported.
#[derive(Debug)]
enum ActError {
    Provider(ProviderError),
    Bootstrap(BootstrapError),
}

impl fmt::Display for ActError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Provider(e) => e.fmt(f),
            Self::Bootstrap(e) => e.fmt(f),
        }
    }
}

impl Engine<'_> {
    /// Applies `plan`, recording every action in `journal`. See the module docs.
    pub async fn apply(&self, plan: &Plan, journal: &mut Journal) -> Result<ApplyReport, EngineError> {
        let journal = Mutex::new(journal);
        let mut completed = 0;
        let mut master_url = None;
        let mut masters = Vec::new();
        let mut stay = Vec::new();
        let mut stages: BTreeMap<u8, Vec<&Action>> = BTreeMap::new();
        for action in &plan.actions {
            stages.entry(stage(action)).or_default().push(action);
        }
        let mut prepared = false;
        for (stage, actions) in stages {
            if !prepared
                && self.provider.capabilities().cluster_resources
                && actions.iter().any(|a| a.kind() == ActionKind::Create)
            {
                // The cluster's own resources (a cloud's network) come before its first host.
                prepared = true;
                if let Err(error) = self.provider_call(CLUSTER, "prepare", || self.provider.prepare()).await {
                    return Err(EngineError::Failed {
                        failures: vec![Failure {
                            host: CLUSTER.to_string(),
                            action: ActionKind::Create,
                            message: error.to_string(),
                        }],
                    });
                }
            }
            if stage >= 1 && masters.is_empty() {
                masters = self.masters().await;
            }
            if stage >= 1 && stay.is_empty() {
                stay = staying(&masters, plan);
            }
            if stage >= 3 && master_url.is_none() {
                // Agents hear of the masters that stay; while the whole cluster goes (`down`,
                // masters last), of every master.
                master_url = urls(if stay.is_empty() { &masters } else { &stay });
            }
            let mut limit = self.options.parallelism.max(1);
            if actions
                .iter()
                .any(|a| matches!(a.kind(), ActionKind::Destroy | ActionKind::Reconfigure) && a.role() == Role::Master)
            {
                // Masters leave their group one at a time (each removal needs a majority of the
                // group as it is then), and restart with a new config one at a time (so the
                // others keep a majority and a leader).
                limit = 1;
            }
            if actions.iter().any(|a| a.kind() == ActionKind::Create)
                && let Some(max) = self.provider.capabilities().max_parallel_creates
            {
                limit = limit.min(max.max(1));
            }
            let url = master_url.as_ref();
            let (group, stay) = (&masters, &stay);
            let results: Vec<Result<(), EngineError>> = futures_util::stream::iter(actions)
                .map(|action| {
                    // A master being destroyed leaves the group through the masters that stay
                    // (none when the whole cluster goes: nothing to leave).
                    let group = match action {
                        Action::Destroy { .. } if action.role() == Role::Master => stay
                            .iter()
                            .chain(group.iter().filter(|(m, _)| m.name == action.host_name()))
                            .cloned()
                            .collect(),
                        _ => group.clone(),
                    };
                    self.run_action(action, &journal, url, group)
                })
                .buffer_unordered(limit)
                .collect()
                .await;
            let mut failures = Vec::new();
            for result in results {
                match result {
                    Ok(()) => completed += 1,
                    Err(EngineError::Failed { failures: f }) => failures.extend(f),
                    Err(e) => return Err(e),
                }
            }
            if !failures.is_empty() {
                return Err(EngineError::Failed { failures });
            }
        }
        // The masters as they are now (some may have gone in this apply).
        if let Some(now) = urls(&self.masters().await) {
            master_url = Some(now);
        }
        Ok(ApplyReport { completed, master_url: master_url.map(|(_, api)| api) })
    }

    /// The cluster's masters that exist (`master-0`, `master-1`, … up to the first missing
    /// one), each with its access.
    async fn masters(&self) -> Vec<(MasterMember, HostAccess)> {
        let mut masters = Vec::new();
        for i in 0.. {
            let name = format!("master-{i}");
            let Ok(host) = self.provider.describe_host(&name).await else { break };
            let Ok(access) = self.connector.connect(&host) else { break };
            let address = format!("{}:{}", access.address, access.api_port);
            let url = access.public_master_url();
            masters.push((MasterMember { number: i + 1, name, address, url }, access));
        }
        masters
    }

    async fn run_action(
        &self,
        action: &Action,
        journal: &Mutex<&mut Journal>,
        master_url: Option<&(String, String)>,
        masters: Vec<(MasterMember, HostAccess)>,
    ) -> Result<(), EngineError> {
        let masters = masters.as_slice();
        let host = action.host_name().to_string();
        let record = |kind: RecordKind, error: Option<&str>| {
            journal.lock().unwrap_or_else(PoisonError::into_inner).record(kind, action, error).map(|_| ())
        };
        record(RecordKind::Intent, None)?;
        self.progress.event(ProgressEvent::ActionStarted { host: host.clone(), action: action.kind() });
        let started = Instant::now();
        let result = match action {
            Action::CreateHost { host, .. } => {
                let spec = HostSpec::for_host(&self.cluster, host);
                self.provider_call(&host.name, "create", || self.provider.create_host(&spec)).await.map(|_| ())
            }
            Action::Bootstrap { host: desired, .. } | Action::Reconfigure { host: desired, .. } => {
                match self.describe(&host).await {
                    Ok(Some(description)) => {
                        self.run_phases(
                            &description,
                            desired.role,
                            Some(desired.clone()),
                            master_url,
                            masters,
                            bootstrap::bootstrap_phases(),
                        )
                        .await
                    }
                    Ok(None) => Err(ActError::Provider(ProviderError::Call {
                        provider: self.provider.name().to_string(),
                        operation: "describe",
                        host: host.clone(),
                        kind: ErrorKind::NotFound,
                        message: "the host to bootstrap does not exist (run `up` again to create it)".to_string(),
                    })),
                    Err(e) => Err(e),
                }
            }
            Action::Drain { host: target, .. } => match self.describe(&host).await {
                Ok(Some(description)) => {
                    self.run_phases(&description, target.role, None, master_url, masters, bootstrap::drain_phases())
                        .await
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
            Action::Destroy { host: target, .. } => {
                let phases = match self.describe(&host).await {
                    Ok(Some(description)) => {
                        self.run_phases(
                            &description,
                            target.role,
                            None,
                            master_url,
                            masters,
                            bootstrap::destroy_phases(),
                        )
                        .await
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                match phases {
                    Ok(()) => self.provider_call(&host, "destroy-host", || self.provider.destroy_host(&host)).await,
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(()) => {
                record(RecordKind::Done, None)?;
                self.progress.event(ProgressEvent::ActionFinished {
                    host,
                    action: action.kind(),
                    elapsed: started.elapsed(),
                });
                Ok(())
            }
            Err(error) => {
                let message = error.to_string();
                record(RecordKind::Failed, Some(&message))?;
                self.progress.event(ProgressEvent::ActionFailed {
                    host: host.clone(),
                    action: action.kind(),
                    error: message.clone(),
                });
                Err(EngineError::Failed { failures: vec![Failure { host, action: action.kind(), message }] })
            }
        }
    }

    /// The host at the provider; `None` when it does not exist.
    async fn describe(&self, host: &str) -> Result<Option<HostDescription>, ActError> {
        let mut attempt = 1;
        loop {
            match self.provider.describe_host(host).await {
                Ok(description) => return Ok(Some(description)),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) if e.is_retryable() && attempt < self.options.retry.attempts => {
                    self.retrying(host, "describe", attempt, &e.to_string()).await;
                    attempt += 1;
                }
                Err(e) => return Err(ActError::Provider(e)),
            }
        }
    }

    async fn retrying(&self, host: &str, phase: &str, attempt: u32, error: &str) {
        let delay = self.options.retry.delay(attempt);
        self.progress.event(ProgressEvent::Retrying {
            host: host.to_string(),
            phase: phase.to_string(),
            attempt,
            delay,
            error: error.to_string(),
        });
        tokio::time::sleep(delay).await;
    }

    /// A provider call as a pseudo-phase, retried while its error is retryable.
    async fn provider_call<T, F, Fut>(&self, host: &str, phase: &str, mut call: F) -> Result<(), ActError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(_) => {
                    self.progress.event(ProgressEvent::PhaseFinished {
                        host: host.to_string(),
                        phase: phase.to_string(),
                        skipped: false,
                        detail: String::new(),
                        elapsed: started.elapsed(),
                    });
                    return Ok(());
                }
                Err(e) if e.is_retryable() && attempt < self.options.retry.attempts => {
                    self.retrying(host, phase, attempt, &e.to_string()).await;
                    attempt += 1;
                }
                Err(e) => {
                    self.progress.event(ProgressEvent::PhaseFailed {
                        host: host.to_string(),
                        phase: phase.to_string(),
                        error: e.to_string(),
                        elapsed: started.elapsed(),
                    });
                    return Err(ActError::Provider(e));
                }
            }
        }
    }

    async fn run_phases(
        &self,
        description: &HostDescription,
        role: Role,
        desired: Option<crate::planner::DesiredHost>,
        master_url: Option<&(String, String)>,
        masters: &[(MasterMember, HostAccess)],
        phases: Vec<Box<dyn Phase>>,
    ) -> Result<(), ActError> {
        let access: HostAccess = self.connector.connect(description).map_err(ActError::Provider)?;
        let (master_url, api_url) = match role {
            // A master is asked about itself: its health is its own.
            Role::Master => (Some(access.master_url()), Some(access.public_master_url())),
            Role::Agent => (master_url.map(|(hosts, _)| hosts.clone()), master_url.map(|(_, api)| api.clone())),
        };
        let masters = if role == Role::Master { masters.iter().map(|(m, _)| m.clone()).collect() } else { Vec::new() };
        let mut ctx = HostContext {
            name: description.name.clone(),
            role,
            desired,
            provider_attributes: description.attributes.clone(),
            access,
            master_url,
            api_url,
            masters,
            runtime: self.runtime.clone(),
            binary: self.binary.clone(),
            api: self.api.clone(),
            ready_timeout: self.options.ready_timeout,
            facts: None,
            binary_sha256: None,
        };
        for phase in phases {
            let started = Instant::now();
            let mut attempt = 1;
            loop {
                match phase.run(&mut ctx).await {
                    Ok(outcome) => {
                        let (skipped, detail) = match outcome {
                            PhaseOutcome::Done(detail) => (false, detail),
                            PhaseOutcome::Skipped(detail) => (true, detail),
                        };
                        self.progress.event(ProgressEvent::PhaseFinished {
                            host: ctx.name.clone(),
                            phase: phase.name().to_string(),
                            skipped,
                            detail,
                            elapsed: started.elapsed(),
                        });
                        break;
                    }
                    Err(e) if e.is_retryable() && attempt < self.options.retry.attempts => {
                        self.retrying(&ctx.name, phase.name(), attempt, &e.to_string()).await;
                        attempt += 1;
                    }
                    Err(e) => {
                        self.progress.event(ProgressEvent::PhaseFailed {
                            host: ctx.name.clone(),
                            phase: phase.name().to_string(),
                            error: e.to_string(),
                            elapsed: started.elapsed(),
                        });
                        return Err(ActError::Bootstrap(e));
                    }
                }
            }
        }
        Ok(())
    }
}
