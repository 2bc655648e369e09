//! The allocator: two-level scheduling. Each cycle it lets every framework reconcile (and
//! performs the kills they ask for), builds one offer per ACTIVE agent that is not draining from
//! its free resources, offers them to frameworks in DRF order (lowest dominant share first,
//! remaining offers to the next), checks every accept against its offer, persists the new tasks
//! (STAGING) in one transaction and only then sends the launch commands.
//!
//! Frameworks decide what to run; the allocator owns resources and never trusts an accept it has
//! not checked. It runs when woken (an app, agent or task changed) and at least every second.

use crate::master::{Change, Edit, Master};
use crate::state::ClusterState;
use gantry_api::protocol::{AgentCommand, LaunchTask};
use gantry_api::{AgentState, Event, Millis, Resources, Task, TaskState};
use std::collections::{BTreeMap, HashMap};
use tracing::{debug, warn};

/// Free resources of one agent, offered to a framework for one cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// Unique within the cycle.
    pub id: usize,
    /// The agent.
    pub agent_id: String,
    /// Its hostname.
    pub hostname: String,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
    /// What is free on it (scalars and port ranges).
    pub free: Resources,
}

/// A framework's use of (part of) an offer: one task to create.
#[derive(Debug, Clone, PartialEq)]
pub struct Accept {
    /// The offer it takes resources from.
    pub offer_id: usize,
    /// The task to create, in state STAGING on the offer's agent; `task.resources` (ports
    /// included) is what it takes from the offer.
    pub task: Task,
    /// The command the agent receives.
    pub launch: LaunchTask,
}

/// A task a framework wants stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Kill {
    /// The task.
    pub task_id: String,
    /// Seconds between SIGTERM and SIGKILL.
    pub grace_period_secs: f64,
    /// Why, shown on the task (e.g. "scaled down to 2 instances"); the caller's default if `None`.
    pub reason: Option<String>,
}

/// What a framework sees of the cluster during a cycle: read access to everything, write access
/// only to its workloads' runtime bookkeeping, and durable changes it stages for the allocator
/// to commit (with the cycle's kills or launches).
#[derive(Debug)]
pub struct ClusterView<'a> {
    state: &'a mut ClusterState,
    now: Millis,
    staged: Change,
}

impl<'a> ClusterView<'a> {
    /// A view at time `now`.
    pub fn new(state: &'a mut ClusterState, now: Millis) -> Self {
        Self { state, now, staged: Change::default() }
    }

    /// Stages a change of the framework's own records (e.g. job runs) for the allocator to
    /// persist in the cycle's commit; it is not visible in [`Self::state`] before then.
    pub fn stage(&mut self, change: Change) {
        self.staged.absorb(change);
    }

    /// Takes what was staged.
    pub fn take_staged(&mut self) -> Change {
        std::mem::take(&mut self.staged)
    }

    /// The cycle's time.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// The cluster state.
    pub fn state(&self) -> &ClusterState {
        self.state
    }

    /// Runtime bookkeeping (backoff, waiting) of one app.
    pub fn app_runtime_mut(&mut self, app_id: &str) -> Option<&mut crate::state::AppRuntime> {
        self.state.app_runtime_mut(app_id)
    }

    /// Number of ACTIVE agents.
    pub fn active_agents(&self) -> usize {
        self.state.agents().filter(|a| a.agent.state == AgentState::Active).count()
    }
}

/// A scheduler that receives offers: the contract of the built-in frameworks (`services`,
/// later `jobs`) and, through an API, of external ones.
///
/// Each cycle the allocator calls [`Framework::reconcile`], then, if [`Framework::has_demand`],
/// [`Framework::resource_offers`] (with possibly no offers, so the framework can say why its
/// work waits). A framework must not assume an accept succeeds: the allocator drops accepts
/// that do not fit, and the framework sees the result in the next cycle's view.
pub trait Framework: Send {
    /// Name, for logs.
    fn name(&self) -> &str;
    /// Whether a task belongs to this framework (for its DRF share). All tasks of one app (one
    /// `app_id`) belong to the same framework, so the allocator asks once per app and cycle.
    fn owns(&self, task: &Task) -> bool;
    /// Compares desired and actual state; returns tasks to stop and remembers what to launch.
    fn reconcile(&mut self, view: &mut ClusterView<'_>) -> Vec<Kill>;
    /// Whether it wants resources this cycle (after `reconcile`).
    fn has_demand(&self) -> bool;
    /// Chooses tasks to run on `offers`.
    fn resource_offers(&mut self, offers: &[Offer], view: &mut ClusterView<'_>) -> Vec<Accept>;
}

/// Why an accept was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AllocatorError {
    /// The accept names an offer that does not exist (or was used up).
    #[error("task {task_id}: offer {offer_id} does not exist")]
    UnknownOffer {
        /// The task.
        task_id: String,
        /// The offer.
        offer_id: usize,
    },
    /// The task does not fit the offer's free resources.
    #[error("task {task_id}: does not fit the offer of agent {agent_id}: {reason}")]
    DoesNotFit {
        /// The task.
        task_id: String,
        /// The agent.
        agent_id: String,
        /// What is short.
        reason: String,
    },
}

/// One offer per agent that accepts tasks (ACTIVE and not draining), from its free resources;
/// an offer's id is its index.
pub fn build_offers(state: &ClusterState) -> Vec<Offer> {
    state
        .agents()
        .filter(|e| e.agent.accepts_tasks())
        .enumerate()
        .map(|(id, e)| Offer {
            id,
            agent_id: e.agent.info.id.clone(),
            hostname: e.agent.info.hostname.clone(),
            attributes: e.agent.info.attributes.clone(),
            free: e.free.clone(),
        })
        .collect()
}

/// Checks that `accept` fits its offer and takes its resources from it.
pub fn take_from_offer(offers: &mut [Offer], accept: &Accept) -> Result<(), AllocatorError> {
    let task = &accept.task;
    // Offer ids are their positions (see `build_offers`), so the lookup is O(1).
    let offer = offers
        .get_mut(accept.offer_id)
        .filter(|o| o.id == accept.offer_id)
        .ok_or_else(|| AllocatorError::UnknownOffer { task_id: task.id.clone(), offer_id: accept.offer_id })?;
    let refuse = |reason: String| AllocatorError::DoesNotFit {
        task_id: task.id.clone(),
        agent_id: offer.agent_id.clone(),
        reason,
    };
    if task.agent_id != offer.agent_id {
        return Err(refuse(format!("the task names agent {}", task.agent_id)));
    }
    if !offer.free.fits(&task.resources) {
        return Err(refuse(format!("needs {}, free {}", task.resources, offer.free)));
    }
    for range in &task.resources.ports {
        for port in range.begin..=range.end {
            if !offer.free.has_port(port) {
                return Err(refuse(format!("port {port} is not free")));
            }
        }
    }
    offer.free.subtract(&task.resources);
    Ok(())
}

/// Runs one allocation cycle.
pub fn run_cycle(master: &Master, frameworks: &mut [Box<dyn Framework>]) {
    let now = gantry_api::now_millis();
    let mut guard = master.lock();
    let state = &mut *guard;

    let mut kills = Vec::new();
    let staged = {
        let mut view = ClusterView::new(state, now);
        for framework in frameworks.iter_mut() {
            kills.extend(framework.reconcile(&mut view));
        }
        view.take_staged()
    };
    if !kills.is_empty() || !staged.is_empty() {
        let mut change = kill_change(state, &kills, "stopped by its framework", now);
        change.absorb(staged);
        if let Err(error) = master.commit(state, change) {
            warn!(%error, "Could not store task kills; retrying next cycle.");
            return;
        }
    }

    if !frameworks.iter().any(|f| f.has_demand()) {
        return;
    }
    let mut offers = build_offers(state);
    let order = framework_order(state, frameworks);
    let mut change = Change::default();
    for index in order {
        let framework = &mut frameworks[index];
        if !framework.has_demand() {
            continue;
        }
        let accepts = {
            let mut view = ClusterView::new(state, now);
            let accepts = framework.resource_offers(&offers, &mut view);
            change.absorb(view.take_staged());
            accepts
        };
        for mut accept in accepts {
            if let Err(reason) = master.security().resolve_secrets(&mut accept.launch) {
                refuse_for_secrets(state, &mut change, accept, &reason, now);
                continue;
            }
            match take_from_offer(&mut offers, &accept) {
                Ok(()) => {
                    change.events.push(task_event(&accept.task, now));
                    change.commands.push((accept.task.agent_id.clone(), AgentCommand::Launch(Box::new(accept.launch))));
                    change.push(Edit::PutTask(accept.task));
                }
                Err(error) => warn!(framework = framework.name(), %error, "Refused an accept."),
            }
        }
    }
    if change.is_empty() {
        return;
    }
    let launched = change.put_tasks().count();
    if let Err(error) = master.commit(state, change) {
        warn!(%error, "Could not store new tasks; nothing was launched.");
        return;
    }
    debug!(launched, "Allocation cycle launched tasks.");
}

/// An accept whose secrets cannot be resolved is not launched: an app waits with the reason in
/// `app show`; a job's attempt ends FAILED with the reason, so its run fails or retries.
fn refuse_for_secrets(state: &mut ClusterState, change: &mut Change, accept: Accept, reason: &str, now: Millis) {
    let app_id = accept.task.app_id.clone();
    warn!(app_id = %app_id, reason, "Task not launched: a secret it needs is missing.");
    if state.job(&app_id).is_some() {
        let mut task = accept.task;
        task.state = TaskState::Failed;
        task.finished_at = Some(now);
        task.message = Some(reason.to_string());
        change.events.push(task_event(&task, now));
        change.push(Edit::PutTask(task));
    } else if let Some(runtime) = state.app_runtime_mut(&app_id) {
        runtime.waiting = Some(reason.to_string());
    }
}

/// Frameworks in DRF order of the resources their non-terminal tasks hold.
fn framework_order(state: &ClusterState, frameworks: &[Box<dyn Framework>]) -> Vec<usize> {
    if frameworks.len() < 2 {
        return (0..frameworks.len()).collect();
    }
    let mut total = Resources::default();
    for entry in state.agents().filter(|e| e.agent.state == AgentState::Active) {
        let r = &entry.agent.info.resources;
        total.add(&Resources::scalar(r.cpus, r.mem, r.disk, r.gpus));
    }
    let mut allocated = vec![Resources::default(); frameworks.len()];
    let mut owners: HashMap<&str, Option<usize>> = HashMap::new();
    for task in state.tasks().filter(|t| !t.state.is_terminal()) {
        let owner = *owners.entry(task.app_id.as_str()).or_insert_with(|| frameworks.iter().position(|f| f.owns(task)));
        if let Some(i) = owner {
            let r = &task.resources;
            allocated[i].add(&Resources::scalar(r.cpus, r.mem, r.disk, r.gpus));
        }
    }
    gantry_scheduler::drf_order(&allocated, &total)
}

/// The event of a task's current state.
pub fn task_event(task: &Task, at: Millis) -> Event {
    Event::TaskChanged {
        task_id: task.id.clone(),
        app_id: task.app_id.clone(),
        agent_id: task.agent_id.clone(),
        state: task.state,
        healthy: task.healthy,
        message: task.message.clone(),
        at,
    }
}

/// A change that marks `kills` KILLING and sends the kill commands. Tasks that are not STAGING
/// or RUNNING are skipped.
pub fn kill_change(state: &ClusterState, kills: &[Kill], message: &str, now: Millis) -> Change {
    let mut change = Change::default();
    for kill in kills {
        let Some(task) = state.task(&kill.task_id) else { continue };
        if !task.state.is_active() {
            continue;
        }
        let mut task = task.clone();
        task.state = TaskState::Killing;
        task.message = Some(kill.reason.clone().unwrap_or_else(|| message.to_string()));
        change.events.push(task_event(&task, now));
        change.commands.push((
            task.agent_id.clone(),
            AgentCommand::Kill { task_id: task.id.clone(), grace_period_secs: kill.grace_period_secs },
        ));
        change.push(Edit::PutTask(task));
    }
    change
}

/// A new task in STAGING on an offer's agent; frameworks fill in version, ports and resources.
pub fn staging_task(offer: &Offer, id: String, workload_id: &str, now: Millis) -> Task {
    Task {
        id,
        app_id: workload_id.to_string(),
        app_version: 0,
        agent_id: offer.agent_id.clone(),
        host: offer.hostname.clone(),
        state: TaskState::Staging,
        healthy: None,
        ports: Vec::new(),
        resources: Resources::default(),
        staged_at: now,
        started_at: None,
        finished_at: None,
        exit_code: None,
        message: None,
        limits: Vec::new(),
    }
}

/// The longest pause between two cycles.
const MAX_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// How long to wait after a cycle that took `took` before the next one may start: as long as
/// the cycle itself, up to [`MAX_PAUSE`]. In a storm of changes the allocator so takes at most
/// about half of the time and each cycle handles what came in during the pause, while a change
/// after a cheap cycle (the usual: one task's status, one run) is handled almost at once. A
/// fixed 5 ms pause made every launch that followed another's status update wait for it.
fn pause_after(took: std::time::Duration) -> std::time::Duration {
    took.min(MAX_PAUSE)
}

/// Runs cycles until shutdown: when woken and at least every second.
pub async fn run(master: std::sync::Arc<Master>, mut frameworks: Vec<Box<dyn Framework>>) {
    let mut shutdown = master.shutdown_signal();
    master.set_allocating(true);
    loop {
        let started = tokio::time::Instant::now();
        run_cycle(&master, &mut frameworks);
        let ended = tokio::time::Instant::now();
        tokio::select! {
            _ = master.woken() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
        tokio::time::sleep_until(ended + pause_after(ended - started)).await;
        if *shutdown.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::PortRange;
    use std::time::Duration;

    #[test]
    fn the_pause_after_a_cycle_is_as_long_as_the_cycle_up_to_five_ms() {
        assert_eq!(pause_after(Duration::from_micros(80)), Duration::from_micros(80));
        assert_eq!(pause_after(Duration::from_millis(2)), Duration::from_millis(2));
        assert_eq!(pause_after(Duration::from_millis(40)), MAX_PAUSE);
    }

    fn offer(id: usize) -> Offer {
        Offer {
            id,
            agent_id: format!("a{id}"),
            hostname: format!("h{id}"),
            attributes: BTreeMap::new(),
            free: Resources {
                ports: vec![PortRange { begin: 100, end: 101 }],
                ..Resources::scalar(1.0, 100.0, 0.0, 0)
            },
        }
    }

    fn accept(offer_id: usize, agent: &str, cpus: f64, port: u16) -> Accept {
        let resources = Resources { ports: Resources::from_ports(&[port]), ..Resources::scalar(cpus, 10.0, 0.0, 0) };
        let task = Task {
            id: "t".into(),
            app_id: "web".into(),
            app_version: 1,
            agent_id: agent.into(),
            host: "h".into(),
            state: TaskState::Staging,
            healthy: None,
            ports: vec![port],
            resources: resources.clone(),
            staged_at: 0,
            started_at: None,
            finished_at: None,
            exit_code: None,
            message: None,
            limits: Vec::new(),
        };
        let launch = LaunchTask {
            task_id: "t".into(),
            app_id: "web".into(),
            cmd: Some("true".into()),
            args: None,
            env: BTreeMap::new(),
            resources,
            ports: vec![],
            health_checks: vec![],
            kill_grace_period_secs: 1.0,
            secrets: BTreeMap::new(),
            secret_files: BTreeMap::new(),
            secret_values: Default::default(),
            user: None,
            container: None,
            volumes: Vec::new(),
        };
        Accept { offer_id, task, launch }
    }

    /// A framework that wants 2 cpus on every offer and owns the tasks of apps named `<prefix>...`.
    struct Greedy {
        prefix: &'static str,
        offered: std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>,
    }

    impl Framework for Greedy {
        fn name(&self) -> &str {
            self.prefix
        }
        fn owns(&self, task: &Task) -> bool {
            task.app_id.starts_with(self.prefix)
        }
        fn reconcile(&mut self, _view: &mut ClusterView<'_>) -> Vec<Kill> {
            Vec::new()
        }
        fn has_demand(&self) -> bool {
            true
        }
        fn resource_offers(&mut self, offers: &[Offer], _view: &mut ClusterView<'_>) -> Vec<Accept> {
            self.offered.lock().expect("test lock").push(self.prefix);
            offers
                .iter()
                .map(|o| {
                    let mut a = accept(o.id, &o.agent_id, 2.0, 100);
                    a.task.id = format!("{}{}", self.prefix, o.id);
                    a.task.app_id = format!("{}app", self.prefix);
                    a.task.resources.ports.clear();
                    a
                })
                .collect()
        }
    }

    #[test]
    fn offers_go_first_to_the_framework_with_the_lowest_dominant_share() {
        let store = std::sync::Arc::new(crate::store::MemStore::new());
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let dir = tempfile::tempdir().expect("temp dir");
        let config = crate::MasterConfig::new("127.0.0.1:0".parse().expect("addr"), dir.path().to_path_buf());
        let master = crate::build(config, store.clone(), rx).expect("build");
        let agent = gantry_api::Agent {
            info: gantry_api::AgentInfo {
                id: "a0".into(),
                hostname: "h0".into(),
                endpoint: String::new(),
                resources: Resources::scalar(4.0, 1000.0, 0.0, 0),
                attributes: BTreeMap::new(),
                version: String::new(),
            },
            state: AgentState::Active,
            drain: None,
            registered_at: 0,
            last_seen_at: 0,
            used: Resources::default(),
            tasks: 0,
        };
        let mut held = accept(0, "a0", 2.0, 100).task;
        held.id = "heavy-held".into();
        held.app_id = "heavy-app".into();
        held.resources.ports.clear();
        held.state = TaskState::Running;
        {
            let mut state = master.lock();
            let change = Change::of([Edit::PutAgent(agent), Edit::PutTask(held)]);
            master.commit(&mut state, change).expect("store");
        }
        let offered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut frameworks: Vec<Box<dyn Framework>> = vec![
            Box::new(Greedy { prefix: "heavy-", offered: offered.clone() }),
            Box::new(Greedy { prefix: "light-", offered: offered.clone() }),
        ];
        run_cycle(&master, &mut frameworks);
        assert_eq!(*offered.lock().expect("test lock"), vec!["light-", "heavy-"]);
        let state = master.lock();
        assert_eq!(state.task("light-0").map(|t| t.state), Some(TaskState::Staging));
        assert!(state.task("heavy-0").is_none(), "the second framework's accept no longer fits");
        assert_eq!(state.agent("a0").expect("agent").free.cpus, 0.0);
        let last = store.batches().pop().expect("a batch");
        assert!(matches!(&last[..], [crate::store::StoreOp::PutTask(t)] if t.id == "light-0"));
    }

    proptest::proptest! {
        #[test]
        fn accepted_tasks_never_overcommit_an_offer(
            wants in proptest::collection::vec((0usize..3, 0.0f64..0.6, 99u16..103), 0..30),
        ) {
            let mut offers = vec![offer(0), offer(1), offer(2)];
            let mut taken: Vec<(usize, f64, u16)> = Vec::new();
            for (offer_id, cpus, port) in wants {
                let agent = format!("a{offer_id}");
                if take_from_offer(&mut offers, &accept(offer_id, &agent, cpus, port)).is_ok() {
                    taken.push((offer_id, cpus, port));
                }
            }
            for (id, offer) in offers.iter().enumerate() {
                let cpus: f64 = taken.iter().filter(|t| t.0 == id).map(|t| t.1).sum();
                proptest::prop_assert!(cpus <= 1.0 + 1e-6);
                let mut ports: Vec<u16> = taken.iter().filter(|t| t.0 == id).map(|t| t.2).collect();
                proptest::prop_assert!(ports.iter().all(|p| (100..=101).contains(p)));
                let before = ports.len();
                ports.dedup();
                ports.sort();
                ports.dedup();
                proptest::prop_assert_eq!(ports.len(), before, "a port is taken twice");
                proptest::prop_assert!((offer.free.cpus + cpus - 1.0).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn accepts_are_checked_against_their_offer() {
        let mut offers = vec![offer(0), offer(1)];
        assert!(take_from_offer(&mut offers, &accept(0, "a0", 0.5, 100)).is_ok());
        assert_eq!(offers[0].free.cpus, 0.5);
        assert!(!offers[0].free.has_port(100));
        assert!(matches!(
            take_from_offer(&mut offers, &accept(0, "a0", 0.5, 100)),
            Err(AllocatorError::DoesNotFit { .. })
        ));
        assert!(matches!(
            take_from_offer(&mut offers, &accept(0, "a0", 0.6, 101)),
            Err(AllocatorError::DoesNotFit { .. })
        ));
        assert!(matches!(
            take_from_offer(&mut offers, &accept(1, "a0", 0.1, 101)),
            Err(AllocatorError::DoesNotFit { .. })
        ));
        assert!(matches!(
            take_from_offer(&mut offers, &accept(7, "a7", 0.1, 101)),
            Err(AllocatorError::UnknownOffer { .. })
        ));
        assert!(take_from_offer(&mut offers, &accept(1, "a1", 1.0, 101)).is_ok());
    }
}
