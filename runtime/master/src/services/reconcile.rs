//! The pure reconciler of the services framework: one app's desired state and its tasks in,
//! decisions out (how many to launch, which to kill). No clock, no I/O, no state of its own.
//!
//! Rules:
//! - Active instances are STAGING or RUNNING tasks. KILLING, UNREACHABLE and terminal tasks are
//!   not instances; UNREACHABLE ones are reported as replaced (new instances cover them).
//! - A task is *current* when `app_version >= config_version` (scaling does not replace tasks),
//!   and *ready* when RUNNING and, if the app has health checks, reported healthy.
//! - Scale down kills extra current instances, unready first (unhealthy, then staging, then
//!   running of unknown health), then newest.
//! - Rolling replacement under a [`Rollout`] (the app's upgrade strategy): old-version
//!   instances are kept while current ready instances number fewer than `min_ready` (so ready
//!   old + current never drop below it, if they were not below already); the rest are killed,
//!   unready first. Launches stop at `max_active` active instances (old + current). While
//!   canaries are unpromoted (`new_cap`), at most that many current instances run and no old
//!   instance is stopped (canaries are extra capacity, as in Nomad).
//! - Drains: an active task on a draining agent is *leaving*. It is no longer counted as an
//!   instance, so a replacement is launched elsewhere at once (replacements are exempt from
//!   `max_active`, like canaries: otherwise kept leaving tasks could take every slot), but a
//!   ready leaving task is kept while the ready instances elsewhere number fewer than
//!   `min_ready` (the app's minimum health capacity, as for a rolling replacement); unready
//!   leaving tasks go at once. So a drain never takes ready capacity below `min_ready`, and the
//!   agent empties as its replacements become ready.
//! - No launch before `backoff_until`. A deleted app kills every active instance.

use gantry_api::{Millis, Task, TaskState};
use std::collections::BTreeSet;

/// What the reconciler looks at for one app.
#[derive(Debug, Clone, Copy)]
pub struct ReconcileInput<'a> {
    /// Wanted instances (0 when the app is deleted).
    pub instances: u32,
    /// Tasks with `app_version >= config_version` run the current configuration.
    pub config_version: u64,
    /// Whether the app has health checks (then "ready" needs `healthy == Some(true)`).
    pub has_health_checks: bool,
    /// Whether the app was deleted: kill everything.
    pub deleted: bool,
    /// Every known task of the app (any state).
    pub tasks: &'a [&'a Task],
    /// Ids of draining agents: their tasks are leaving.
    pub draining: &'a BTreeSet<String>,
    /// Now.
    pub now: Millis,
    /// No launches before this time.
    pub backoff_until: Option<Millis>,
    /// Limits of a rolling replacement.
    pub rollout: Rollout,
}

/// Limits of a rolling replacement, from the app's upgrade strategy and deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollout {
    /// Ready instances (old and current) to keep while replacing.
    pub min_ready: u32,
    /// Active instances (old and current) allowed at once; canaries are exempt.
    pub max_active: u32,
    /// While canaries are unpromoted: at most this many current instances, no old one stopped.
    pub new_cap: Option<u32>,
}

impl Rollout {
    /// No limits beyond "keep old instances until `instances` current ones are ready".
    pub fn unlimited(instances: u32) -> Self {
        Self { min_ready: instances, max_active: u32::MAX, new_cap: None }
    }
}

/// What to do for one app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    /// New current-version instances to launch now.
    pub launch: u32,
    /// Instances still missing but held back by backoff.
    pub delayed: u32,
    /// Task ids to kill.
    pub kill: Vec<String>,
    /// UNREACHABLE tasks that no longer count and are being replaced.
    pub replaced_unreachable: Vec<String>,
    /// Leaving tasks (on draining agents) to kill: their replacements are ready, or they were
    /// not ready themselves.
    pub drained: Vec<String>,
}

/// Whether a task is ready to serve.
pub fn is_ready(task: &Task, has_health_checks: bool) -> bool {
    task.state == TaskState::Running && (!has_health_checks || task.healthy == Some(true))
}

/// Kill preference: lower is killed first (unhealthy, staging, unknown health, then healthy),
/// and among equals the newest first.
fn kill_order(task: &Task, has_health_checks: bool) -> (u8, std::cmp::Reverse<Millis>, &str) {
    let rank = if is_ready(task, has_health_checks) {
        3
    } else if task.healthy == Some(false) {
        0
    } else if task.state == TaskState::Staging {
        1
    } else {
        2
    };
    (rank, std::cmp::Reverse(task.staged_at), task.id.as_str())
}

/// Decides launches and kills for one app.
pub fn reconcile(input: &ReconcileInput<'_>) -> Decisions {
    let mut decisions = Decisions::default();
    let checks = input.has_health_checks;
    let mut current: Vec<&Task> = Vec::new();
    let mut old: Vec<&Task> = Vec::new();
    let mut leaving: Vec<&Task> = Vec::new();
    for task in input.tasks {
        if task.state == TaskState::Unreachable {
            decisions.replaced_unreachable.push(task.id.clone());
        } else if task.state.is_active() && input.draining.contains(&task.agent_id) {
            leaving.push(task);
        } else if task.state.is_active() {
            if task.app_version >= input.config_version { current.push(task) } else { old.push(task) }
        }
    }
    if input.deleted {
        decisions.kill = current.iter().chain(&old).chain(&leaving).map(|t| t.id.clone()).collect();
        decisions.kill.sort();
        return decisions;
    }
    let target = input.instances as usize;
    let excess = current.len().saturating_sub(target);
    if excess > 0 {
        current.sort_by(|a, b| kill_order(a, checks).cmp(&kill_order(b, checks)));
    }
    old.sort_by(|a, b| kill_order(a, checks).cmp(&kill_order(b, checks)));
    decisions.kill.extend(current.iter().take(excess).map(|t| t.id.clone()));
    let kept_current = &current[excess..];
    let current_ready = kept_current.iter().filter(|t| is_ready(t, checks)).count();
    let rollout = input.rollout;
    let old_allowed = match rollout.new_cap {
        Some(_) => old.len(),
        None => (rollout.min_ready as usize).min(target).saturating_sub(current_ready),
    };
    let old_excess = old.len().saturating_sub(old_allowed);
    decisions.kill.extend(old.iter().take(old_excess).map(|t| t.id.clone()));
    let ready_elsewhere = current_ready + old[old_excess..].iter().filter(|t| is_ready(t, checks)).count();
    let leaving_ready = leaving.iter().filter(|t| is_ready(t, checks)).count();
    let keep_leaving = (rollout.min_ready as usize).min(target).saturating_sub(ready_elsewhere).min(leaving_ready);
    leaving.sort_by(|a, b| kill_order(a, checks).cmp(&kill_order(b, checks)));
    let leaving_excess = leaving.len() - keep_leaving;
    decisions.drained.extend(leaving.iter().take(leaving_excess).map(|t| t.id.clone()));
    let active_after = old.len() - old_excess + kept_current.len();
    let mut missing = target.saturating_sub(kept_current.len());
    match rollout.new_cap {
        Some(cap) => missing = missing.min((cap as usize).saturating_sub(kept_current.len())),
        None => missing = missing.min((rollout.max_active as usize).saturating_sub(active_after)),
    }
    let missing = u32::try_from(missing).unwrap_or(u32::MAX);
    if input.backoff_until.is_some_and(|until| until > input.now) {
        decisions.delayed = missing;
    } else {
        decisions.launch = missing;
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::Resources;
    use proptest::prelude::*;

    fn task(id: usize, version: u64, state: TaskState, healthy: Option<bool>) -> Task {
        Task {
            id: format!("t{id:03}"),
            app_id: "web".to_string(),
            app_version: version,
            agent_id: "a".to_string(),
            host: "h".to_string(),
            state,
            healthy,
            ports: vec![],
            resources: Resources::default(),
            staged_at: id as u64,
            started_at: None,
            finished_at: None,
            exit_code: None,
            message: None,
            limits: Vec::new(),
        }
    }

    static NO_DRAIN: BTreeSet<String> = BTreeSet::new();

    fn input<'a>(tasks: &'a [&'a Task], instances: u32) -> ReconcileInput<'a> {
        ReconcileInput {
            instances,
            config_version: 2,
            has_health_checks: false,
            deleted: false,
            tasks,
            draining: &NO_DRAIN,
            now: 100,
            backoff_until: None,
            rollout: Rollout::unlimited(instances),
        }
    }

    #[test]
    fn launches_what_is_missing() {
        let t = task(1, 2, TaskState::Running, None);
        let tasks = [&t];
        let d = reconcile(&input(&tasks, 3));
        assert_eq!(d.launch, 2);
        assert!(d.kill.is_empty());
    }

    #[test]
    fn backoff_delays_launches() {
        let tasks: [&Task; 0] = [];
        let d = reconcile(&ReconcileInput { backoff_until: Some(200), ..input(&tasks, 2) });
        assert_eq!((d.launch, d.delayed), (0, 2));
        let d = reconcile(&ReconcileInput { backoff_until: Some(50), ..input(&tasks, 2) });
        assert_eq!((d.launch, d.delayed), (2, 0));
    }

    #[test]
    fn scale_down_prefers_unhealthy_then_staging_then_newest() {
        let a = task(1, 2, TaskState::Running, Some(true));
        let b = task(2, 2, TaskState::Running, Some(false));
        let c = task(3, 2, TaskState::Staging, None);
        let d = task(4, 2, TaskState::Running, Some(true));
        let tasks = [&a, &b, &c, &d];
        let out = reconcile(&ReconcileInput { has_health_checks: true, ..input(&tasks, 1) });
        assert_eq!(out.kill, vec!["t002", "t003", "t004"]);
        assert_eq!(out.launch, 0);
    }

    #[test]
    fn old_versions_stay_until_new_ones_are_ready() {
        let o1 = task(1, 1, TaskState::Running, None);
        let o2 = task(2, 1, TaskState::Running, None);
        let n1 = task(3, 2, TaskState::Staging, None);
        let tasks = [&o1, &o2, &n1];
        let out = reconcile(&input(&tasks, 2));
        assert!(out.kill.is_empty());
        assert_eq!(out.launch, 1);
        let n1 = task(3, 2, TaskState::Running, None);
        let tasks = [&o1, &o2, &n1];
        let out = reconcile(&input(&tasks, 2));
        assert_eq!(out.kill, vec!["t002"]);
    }

    #[test]
    fn unreachable_tasks_are_replaced_and_deleted_apps_killed() {
        let u = task(1, 2, TaskState::Unreachable, None);
        let r = task(2, 2, TaskState::Running, None);
        let tasks = [&u, &r];
        let out = reconcile(&input(&tasks, 2));
        assert_eq!(out.replaced_unreachable, vec!["t001"]);
        assert_eq!(out.launch, 1);
        let out = reconcile(&ReconcileInput { deleted: true, ..input(&tasks, 2) });
        assert_eq!(out.kill, vec!["t002"]);
        assert_eq!(out.launch, 0);
    }

    fn on(agent: &str, mut task: Task) -> Task {
        task.agent_id = agent.to_string();
        task
    }

    #[test]
    fn a_drain_launches_the_replacement_first_and_stops_the_task_once_it_is_ready() {
        let draining = BTreeSet::from(["a2".to_string()]);
        let t1 = on("a0", task(1, 2, TaskState::Running, Some(true)));
        let t2 = on("a1", task(2, 2, TaskState::Running, Some(true)));
        let t3 = on("a2", task(3, 2, TaskState::Running, Some(true)));
        let tasks = [&t1, &t2, &t3];
        let drain = |tasks| ReconcileInput { has_health_checks: true, draining: &draining, ..input(tasks, 3) };
        let out = reconcile(&drain(&tasks));
        assert_eq!((out.launch, out.drained.clone(), out.kill.clone()), (1, vec![], vec![]), "replacement first");
        let t4 = on("a0", task(4, 2, TaskState::Staging, None));
        let tasks = [&t1, &t2, &t3, &t4];
        let out = reconcile(&drain(&tasks));
        assert_eq!((out.launch, out.drained.clone()), (0, vec![]), "kept until the replacement is ready");
        let t4 = on("a0", task(4, 2, TaskState::Running, Some(true)));
        let tasks = [&t1, &t2, &t3, &t4];
        let out = reconcile(&drain(&tasks));
        assert_eq!((out.launch, out.drained, out.kill), (0, vec!["t003".to_string()], vec![]));
    }

    #[test]
    fn a_drain_stops_at_once_what_the_minimum_health_capacity_can_spare_and_every_unready_task() {
        let draining = BTreeSet::from(["a2".to_string()]);
        let half = Rollout { min_ready: 2, max_active: 6, new_cap: None };
        let t1 = on("a0", task(1, 2, TaskState::Running, None));
        let t2 = on("a1", task(2, 2, TaskState::Running, None));
        let t3 = on("a2", task(3, 2, TaskState::Running, None));
        let t4 = on("a2", task(4, 2, TaskState::Staging, None));
        let tasks = [&t1, &t2, &t3, &t4];
        let out = reconcile(&ReconcileInput { draining: &draining, rollout: half, ..input(&tasks, 4) });
        assert_eq!(out.drained, vec!["t004", "t003"], "2 ready elsewhere already meet min_ready = 2");
        assert_eq!(out.launch, 2);
        let out = reconcile(&ReconcileInput { draining: &draining, ..input(&tasks, 4) });
        assert_eq!(out.drained, vec!["t004"], "min_ready = 4: the ready one stays, the staging one goes");
        assert_eq!(out.launch, 2);
        let out = reconcile(&ReconcileInput { draining: &draining, deleted: true, ..input(&tasks, 4) });
        assert_eq!(out.kill, vec!["t001", "t002", "t003", "t004"], "a deleted app's leaving tasks go too");
    }

    fn any_task() -> impl Strategy<Value = (u64, TaskState, Option<bool>)> {
        (
            1u64..=2,
            prop_oneof![
                Just(TaskState::Staging),
                Just(TaskState::Running),
                Just(TaskState::Killing),
                Just(TaskState::Unreachable),
                Just(TaskState::Failed),
            ],
            prop_oneof![Just(None), Just(Some(true)), Just(Some(false))],
        )
    }

    proptest! {
        #[test]
        fn never_drops_ready_capacity_and_converges(
            specs in proptest::collection::vec(any_task(), 0..12),
            instances in 0u32..6,
            checks in any::<bool>(),
        ) {
            let mut tasks: Vec<Task> =
                specs.iter().enumerate().map(|(i, (v, s, h))| task(i, *v, *s, *h)).collect();
            let mut next = tasks.len();
            for round in 0..20 {
                if round > 0 {
                    // Launched and current instances come up healthy.
                    for t in tasks.iter_mut().filter(|t| t.state.is_active() && t.app_version == 2) {
                        t.state = TaskState::Running;
                        t.healthy = Some(true);
                    }
                }
                let refs: Vec<&Task> = tasks.iter().collect();
                let d = reconcile(&ReconcileInput { has_health_checks: checks, ..input(&refs, instances) });
                let ready_before = tasks.iter().filter(|t| t.state.is_active() && is_ready(t, checks)).count();
                let ready_after = tasks
                    .iter()
                    .filter(|t| t.state.is_active() && is_ready(t, checks) && !d.kill.contains(&t.id))
                    .count();
                prop_assert!(ready_after >= ready_before.min(instances as usize));
                for id in &d.kill {
                    let t = tasks.iter().find(|t| &t.id == id).expect("killed task exists");
                    prop_assert!(t.state.is_active());
                }
                if d.kill.is_empty() && d.launch == 0 && round > 0 {
                    break;
                }
                for t in tasks.iter_mut() {
                    if d.kill.contains(&t.id) {
                        t.state = TaskState::Killed;
                    }
                }
                for _ in 0..d.launch {
                    next += 1;
                    tasks.push(task(next, 2, TaskState::Staging, None));
                }
            }
            let active_current = tasks.iter().filter(|t| t.state.is_active() && t.app_version == 2).count();
            let active_old = tasks.iter().filter(|t| t.state.is_active() && t.app_version < 2).count();
            prop_assert_eq!(active_current, instances as usize);
            prop_assert_eq!(active_old, 0);
        }

        /// Tasks spread over 4 agents, some draining; replacements land on agents that are not
        /// draining and come up ready a round later. Ready capacity never drops below
        /// min(ready before, min_ready), and the draining agents end with no active task.
        #[test]
        fn drains_keep_the_minimum_health_capacity_and_empty_the_agents(
            specs in proptest::collection::vec((any_task(), 0usize..4), 0..12),
            draining in proptest::collection::btree_set(0usize..3, 1..3),
            instances in 0u32..6,
            min_ready in 0u32..6,
            surge in 0u32..3,
            checks in any::<bool>(),
        ) {
            let draining: BTreeSet<String> = draining.into_iter().map(|i| format!("a{i}")).collect();
            let mut tasks: Vec<Task> = specs
                .iter()
                .enumerate()
                .map(|(i, ((v, s, h), a))| on(&format!("a{a}"), task(i, *v, *s, *h)))
                .collect();
            let min_ready = min_ready.min(instances);
            let rollout = Rollout { min_ready, max_active: instances + surge.max(1), new_cap: None };
            let mut next = tasks.len();
            for round in 0..40 {
                if round > 0 {
                    for t in tasks.iter_mut().filter(|t| t.state.is_active() && t.app_version == 2) {
                        t.state = TaskState::Running;
                        t.healthy = Some(true);
                    }
                }
                let refs: Vec<&Task> = tasks.iter().collect();
                let d = reconcile(&ReconcileInput {
                    has_health_checks: checks,
                    draining: &draining,
                    rollout,
                    ..input(&refs, instances)
                });
                let ready = |t: &&Task| t.state.is_active() && is_ready(t, checks);
                let ready_before = tasks.iter().filter(ready).count();
                let stopped = |t: &Task| d.kill.contains(&t.id) || d.drained.contains(&t.id);
                let ready_after = tasks.iter().filter(ready).filter(|t| !stopped(t)).count();
                prop_assert!(ready_after >= ready_before.min(min_ready as usize), "round {round}: {ready_before} → {ready_after}");
                for id in &d.drained {
                    let t = tasks.iter().find(|t| &t.id == id).expect("drained task exists");
                    prop_assert!(t.state.is_active() && draining.contains(&t.agent_id));
                }
                if d.kill.is_empty() && d.drained.is_empty() && d.launch == 0 && round > 0 {
                    break;
                }
                for t in tasks.iter_mut().filter(|t| stopped(t)) {
                    t.state = TaskState::Killed;
                }
                for _ in 0..d.launch {
                    next += 1;
                    tasks.push(on("a3", task(next, 2, TaskState::Staging, None)));
                }
            }
            let left = tasks.iter().filter(|t| t.state.is_active() && draining.contains(&t.agent_id)).count();
            prop_assert_eq!(left, 0, "the draining agents are empty");
            let active_current = tasks.iter().filter(|t| t.state.is_active() && t.app_version == 2).count();
            prop_assert_eq!(active_current, instances as usize);
        }

        #[test]
        fn delete_kills_every_active_task(specs in proptest::collection::vec(any_task(), 0..12)) {
            let tasks: Vec<Task> = specs.iter().enumerate().map(|(i, (v, s, h))| task(i, *v, *s, *h)).collect();
            let refs: Vec<&Task> = tasks.iter().collect();
            let d = reconcile(&ReconcileInput { deleted: true, ..input(&refs, 3) });
            prop_assert_eq!(d.launch, 0);
            prop_assert_eq!(d.kill.len(), tasks.iter().filter(|t| t.state.is_active()).count());
        }
    }
}
