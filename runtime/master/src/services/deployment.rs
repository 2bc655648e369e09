//! The pure deployment state machine: one active deployment, its app's definition and tasks in,
//! live progress, steps, the reason it cannot move (if it cannot) and the next transition out.
//! No clock (time comes in), no I/O; the driver performs what it returns.
//!
//! States: RUNNING → (canaries healthy, no auto-promote) PAUSED → (promote) RUNNING →
//! SUCCEEDED; RUNNING → (no progress for `progress_deadline`) FAILED, or ROLLED_BACK with a new
//! rollback deployment if `auto_rollback`. A user can CANCEL (the previous version is deployed
//! again) and a newer change SUPERSEDES. Progress means one more new instance became ready;
//! the deadline counts from the last progress and not while PAUSED.

use crate::services::reconcile::{Rollout, is_ready};
use gantry_api::deployment::{DeploymentStep, Progress, StepStatus};
use gantry_api::{AppDefinition, Deployment, DeploymentKind, DeploymentStatus, Millis, Task, TaskState};

/// What the evaluation looks at.
#[derive(Debug, Clone, Copy)]
pub struct EvalInput<'a> {
    /// The active deployment (RUNNING or PAUSED).
    pub deployment: &'a Deployment,
    /// The app's current definition (the version being rolled out).
    pub definition: &'a AppDefinition,
    /// Tasks with `app_version >= config_version` run the new configuration.
    pub config_version: u64,
    /// Every known task of the app.
    pub tasks: &'a [&'a Task],
    /// Why the app's instances wait for placement, if they do.
    pub waiting: Option<&'a str>,
    /// Now.
    pub now: Millis,
}

/// A change of the deployment's stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// One more new instance is ready: restart the deadline.
    Progressed,
    /// Canaries are healthy and must be promoted by hand.
    Paused,
    /// Canaries are healthy and promote themselves.
    Promoted,
    /// Every instance runs the new version and is ready.
    Succeeded,
    /// The progress deadline passed; why.
    Failed(String),
}

/// The live view of a deployment and what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// Live counts.
    pub progress: Progress,
    /// Steps with their status.
    pub steps: Vec<DeploymentStep>,
    /// Why it cannot move, if it cannot.
    pub reason: Option<String>,
    /// What changes, if anything.
    pub transition: Option<Transition>,
}

/// Whether a deployment starts with canaries (updates and restarts with `canary > 0`; scales and
/// rollbacks never do).
pub fn has_canaries(kind: DeploymentKind, canary: u32) -> bool {
    canary > 0 && matches!(kind, DeploymentKind::Update | DeploymentKind::Restart)
}

/// The reconciler's limits for an app, given its definition and active deployment.
pub fn rollout(definition: &AppDefinition, active: Option<&Deployment>) -> Rollout {
    let strategy = &definition.upgrade_strategy;
    let n = definition.instances;
    let canaries = active.filter(|d| !d.promoted).map(|d| d.strategy.canary.min(n));
    Rollout { min_ready: strategy.min_ready(n), max_active: strategy.max_active(n), new_cap: canaries }
}

/// Evaluates an active deployment.
pub fn evaluate(input: &EvalInput<'_>) -> Evaluation {
    let d = input.deployment;
    let def = input.definition;
    let checks = !def.health_checks.is_empty();
    let n = def.instances;
    let mut progress = Progress {
        instances: n,
        min_ready: d.strategy.min_ready(n),
        max_active: d.strategy.max_active(n),
        ..Progress::default()
    };
    for task in input.tasks.iter().filter(|t| t.state.is_active()) {
        let ready = is_ready(task, checks);
        if task.app_version >= input.config_version {
            progress.new_active += 1;
            progress.new_ready += u32::from(ready);
        } else {
            progress.old_active += 1;
            progress.old_ready += u32::from(ready);
        }
    }
    let canaries = if has_canaries(d.kind, d.strategy.canary) { d.strategy.canary.min(n) } else { 0 };
    let canary_phase = !d.promoted;
    let done = !canary_phase && progress.new_ready >= n && progress.new_active == n && progress.old_active == 0;
    let mut reasons = Vec::new();
    if !done {
        if let Some(failed) = failed_new_tasks(input) {
            reasons.push(failed);
        }
        if progress.new_active < n.min(if canary_phase { canaries } else { n })
            && let Some(waiting) = input.waiting
        {
            reasons.push(waiting.to_string());
        }
    }
    let canaries_ready = canary_phase && progress.new_ready >= canaries;
    if canaries_ready && !d.strategy.auto_promote {
        reasons.push(format!(
            "{canaries} of {canaries} canaries are healthy; promote with `gantry deployment promote {}`",
            d.id
        ));
    }
    let reason = (!reasons.is_empty()).then(|| reasons.join("; "));
    let deadline_ms = (d.strategy.progress_deadline * 1000.0) as u64;
    let transition = if done {
        Some(Transition::Succeeded)
    } else if canaries_ready && d.strategy.auto_promote {
        Some(Transition::Promoted)
    } else if canaries_ready {
        (d.status != DeploymentStatus::Paused).then_some(Transition::Paused)
    } else if progress.new_ready > d.progress.new_ready {
        Some(Transition::Progressed)
    } else if d.status == DeploymentStatus::Running
        && deadline_ms > 0
        && input.now.saturating_sub(d.progressed_at) > deadline_ms
    {
        let why = reason.clone().unwrap_or_else(|| format!("{} of {n} new instances ready", progress.new_ready));
        Some(Transition::Failed(format!(
            "no progress within the progress deadline of {}s: {why}",
            d.strategy.progress_deadline
        )))
    } else {
        None
    };
    let steps = steps(d, &progress, canaries, done);
    Evaluation { progress, steps, reason, transition }
}

/// The steps of a finished deployment, from the counts stored when it finished.
pub fn finished_steps(d: &Deployment) -> Vec<DeploymentStep> {
    let canaries = if has_canaries(d.kind, d.strategy.canary) { d.strategy.canary } else { 0 };
    steps(d, &d.progress, canaries, d.status == DeploymentStatus::Succeeded)
}

/// The steps of a deployment, with status from its live progress.
fn steps(d: &Deployment, progress: &Progress, canaries: u32, done: bool) -> Vec<DeploymentStep> {
    let finished = !d.status.is_active();
    let stopped = finished && d.status != DeploymentStatus::Succeeded;
    let status_of = |started: bool, complete: bool| match (started, complete) {
        (_, true) => StepStatus::Done,
        (true, false) if stopped => StepStatus::Stopped,
        (true, false) => StepStatus::Running,
        (false, false) if stopped => StepStatus::Stopped,
        (false, false) => StepStatus::Pending,
    };
    let succeeded = done || d.status == DeploymentStatus::Succeeded;
    let mut steps = Vec::new();
    if d.kind == DeploymentKind::Scale {
        steps.push(DeploymentStep {
            name: "scale".into(),
            description: format!("scale to {} instances", progress.instances),
            status: status_of(true, succeeded),
        });
        return steps;
    }
    if canaries > 0 {
        steps.push(DeploymentStep {
            name: "canary".into(),
            description: format!("start {canaries} canaries and wait until they are healthy"),
            status: status_of(true, d.promoted || progress.new_ready >= canaries),
        });
        let how =
            if d.strategy.auto_promote { "promote automatically" } else { "wait for `gantry deployment promote`" };
        steps.push(DeploymentStep {
            name: "promote".into(),
            description: how.into(),
            status: status_of(d.status == DeploymentStatus::Paused || d.promoted, d.promoted),
        });
    }
    steps.push(DeploymentStep {
        name: "replace".into(),
        description: format!(
            "replace old instances with version {}, keeping at least {} ready and at most {} running",
            d.to_version, progress.min_ready, progress.max_active
        ),
        status: status_of(d.promoted, succeeded),
    });
    steps
}

/// "2 new tasks failed health checks: connection refused on port http", from the new-version
/// tasks that ended or turned unhealthy since the deployment began.
fn failed_new_tasks(input: &EvalInput<'_>) -> Option<String> {
    let since = input.deployment.created_at;
    let mut health = 0;
    let mut health_detail: Option<String> = None;
    let mut failed = 0;
    let mut failed_detail: Option<String> = None;
    for task in input.tasks.iter().filter(|t| t.app_version >= input.config_version) {
        let ended = task.state.is_terminal() && task.finished_at.unwrap_or(task.staged_at) >= since;
        let message = task.message.as_deref().unwrap_or_default();
        if (ended && message.contains("health checks")) || (task.state.is_active() && task.healthy == Some(false)) {
            health += 1;
            if ended && health_detail.is_none() {
                health_detail = health_failure(message, task, input.definition);
            }
        } else if ended && matches!(task.state, TaskState::Failed | TaskState::Lost) {
            failed += 1;
            if failed_detail.is_none() && !message.is_empty() {
                failed_detail = Some(message.to_string());
            }
        }
    }
    let plural = |k: u32| if k == 1 { "task" } else { "tasks" };
    let mut parts = Vec::new();
    if health > 0 {
        let detail = health_detail.map(|d| format!(": {d}")).unwrap_or_default();
        parts.push(format!("{health} new {} failed health checks{detail}", plural(health)));
    }
    if failed > 0 {
        let detail = failed_detail.map(|d| format!(": {d}")).unwrap_or_default();
        parts.push(format!("{failed} new {} failed{detail}", plural(failed)));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// "connection refused on port http" from an agent's kill message such as "failed 3 consecutive
/// HTTP health checks on port 31002: connection refused (stopped with SIGTERM)".
fn health_failure(message: &str, task: &Task, definition: &AppDefinition) -> Option<String> {
    let (head, error) = message.split_once(": ")?;
    let error = match error.rfind(" (") {
        Some(i) if error.ends_with(')') => &error[..i],
        _ => error,
    };
    let port = head.rsplit("on port ").next().and_then(|p| p.trim().parse::<u16>().ok());
    let name = port.and_then(|p| {
        let index = task.ports.iter().position(|q| *q == p)?;
        definition.ports.get(index).map(|d| d.name.clone())
    });
    Some(match (name, port) {
        (Some(name), _) => format!("{error} on port {name}"),
        (None, Some(port)) => format!("{error} on port {port}"),
        (None, None) => error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::reconcile::{ReconcileInput, reconcile};
    use gantry_api::{Resources, UpgradeStrategy};
    use proptest::prelude::*;

    fn definition(instances: u32, strategy: UpgradeStrategy) -> AppDefinition {
        let mut d: AppDefinition = serde_json::from_str(
            r#"{"id":"web","cmd":"serve","ports":[{"name":"http"}],"health_checks":[{"protocol":"HTTP"}]}"#,
        )
        .expect("valid");
        d.instances = instances;
        d.upgrade_strategy = strategy;
        d
    }

    fn task(id: usize, version: u64, state: TaskState, healthy: Option<bool>) -> Task {
        Task {
            id: format!("t{id:03}"),
            app_id: "web".into(),
            app_version: version,
            agent_id: "a".into(),
            host: "h".into(),
            state,
            healthy,
            ports: vec![31000 + id as u16],
            resources: Resources::default(),
            staged_at: 10 + id as u64,
            started_at: None,
            finished_at: None,
            exit_code: None,
            message: None,
            limits: Vec::new(),
        }
    }

    fn deployment(strategy: UpgradeStrategy, kind: DeploymentKind) -> Deployment {
        Deployment {
            id: "d1".into(),
            app_id: "web".into(),
            kind,
            from_version: 1,
            to_version: 2,
            promoted: !has_canaries(kind, strategy.canary),
            strategy,
            status: DeploymentStatus::Running,
            reason: None,
            rollback_id: None,
            created_at: 5,
            progressed_at: 5,
            finished_at: None,
            progress: Progress::default(),
            steps: vec![],
        }
    }

    fn eval(d: &Deployment, def: &AppDefinition, tasks: &[Task], waiting: Option<&str>, now: Millis) -> Evaluation {
        let refs: Vec<&Task> = tasks.iter().collect();
        evaluate(&EvalInput { deployment: d, definition: def, config_version: 2, tasks: &refs, waiting, now })
    }

    #[test]
    fn broken_version_says_why_and_fails_on_the_deadline() {
        let strategy = UpgradeStrategy { progress_deadline: 10.0, auto_rollback: true, ..UpgradeStrategy::default() };
        let def = definition(3, strategy.clone());
        let d = deployment(strategy, DeploymentKind::Update);
        let mut tasks: Vec<Task> = (0..3).map(|i| task(i, 1, TaskState::Running, Some(true))).collect();
        for i in 3..5 {
            let mut t = task(i, 2, TaskState::Killed, Some(false));
            t.finished_at = Some(100);
            t.message = Some(format!(
                "failed 3 consecutive HTTP health checks on port {}: connection refused (stopped with SIGTERM)",
                31000 + i
            ));
            tasks.push(t);
        }
        let e = eval(&d, &def, &tasks, None, 1000);
        assert_eq!(e.reason.as_deref(), Some("2 new tasks failed health checks: connection refused on port http"));
        assert_eq!(e.transition, None);
        assert_eq!((e.progress.old_ready, e.progress.new_ready), (3, 0));
        let e = eval(&d, &def, &tasks, Some("no agent satisfies UNIQUE hostname: 3 agents, 3 instances"), 20_000);
        let Some(Transition::Failed(why)) = e.transition else { panic!("fails: {e:?}") };
        assert!(why.contains("10s") && why.contains("connection refused on port http"), "{why}");
        assert!(why.contains("no agent satisfies UNIQUE hostname"), "{why}");
    }

    #[test]
    fn canaries_pause_then_promote_and_the_rollout_finishes() {
        let strategy = UpgradeStrategy { canary: 1, ..UpgradeStrategy::default() };
        let def = definition(2, strategy.clone());
        let mut d = deployment(strategy.clone(), DeploymentKind::Update);
        assert!(!d.promoted);
        let mut tasks = vec![task(0, 1, TaskState::Running, Some(true)), task(1, 1, TaskState::Running, Some(true))];
        assert_eq!(rollout(&def, Some(&d)).new_cap, Some(1));
        tasks.push(task(2, 2, TaskState::Running, Some(true)));
        let e = eval(&d, &def, &tasks, None, 50);
        assert_eq!(e.transition, Some(Transition::Paused));
        assert!(e.reason.as_deref().is_some_and(|r| r.contains("gantry deployment promote d1")), "{e:?}");
        assert_eq!(
            e.steps.iter().map(|s| s.status).collect::<Vec<_>>(),
            [StepStatus::Done, StepStatus::Pending, StepStatus::Pending]
        );
        d.status = DeploymentStatus::Paused;
        assert_eq!(eval(&d, &def, &tasks, None, 1_000_000).transition, None, "no deadline while paused");
        let auto = Deployment { strategy: UpgradeStrategy { auto_promote: true, ..strategy }, ..d.clone() };
        assert_eq!(eval(&auto, &def, &tasks, None, 60).transition, Some(Transition::Promoted));
        d.promoted = true;
        d.status = DeploymentStatus::Running;
        assert_eq!(rollout(&def, Some(&d)).new_cap, None);
        let done = vec![task(2, 2, TaskState::Running, Some(true)), task(3, 2, TaskState::Running, Some(true))];
        assert_eq!(eval(&d, &def, &done, None, 70).transition, Some(Transition::Succeeded));
    }

    fn any_task() -> impl Strategy<Value = (u64, TaskState, Option<bool>)> {
        (
            1u64..=2,
            prop_oneof![Just(TaskState::Staging), Just(TaskState::Running), Just(TaskState::Killing)],
            prop_oneof![Just(None), Just(Some(true)), Just(Some(false))],
        )
    }

    proptest! {
        /// During any step of a rollout: ready old + new instances stay at or above
        /// ceil(minimum_health_capacity × instances) once they were, active instances stay within
        /// instances + floor(maximum_over_capacity × instances) (+1 when nothing could move
        /// otherwise) once they were, unpromoted canaries never stop a ready old instance, and a
        /// rollout whose new instances come up healthy finishes with only new ones.
        #[test]
        fn rollout_keeps_capacity_within_bounds_and_finishes(
            old in 0u32..7,
            extra in proptest::collection::vec(any_task(), 0..4),
            instances in 1u32..7,
            min_health in 0u32..=10,
            over in 0u32..=10,
            canary in 0u32..3,
        ) {
            let strategy = UpgradeStrategy {
                minimum_health_capacity: f64::from(min_health) / 10.0,
                maximum_over_capacity: f64::from(over) / 10.0,
                canary: canary.min(instances),
                ..UpgradeStrategy::default()
            };
            let def = definition(instances, strategy.clone());
            let mut d = deployment(strategy.clone(), DeploymentKind::Update);
            let mut tasks: Vec<Task> = (0..old as usize).map(|i| task(i, 1, TaskState::Running, Some(true))).collect();
            for (v, s, h) in &extra {
                let i = tasks.len();
                tasks.push(task(i, *v, *s, *h));
            }
            let min_ready = strategy.min_ready(instances) as usize;
            let max_active = strategy.max_active(instances) as usize;
            let mut next = tasks.len();
            let mut finished = false;
            for round in 0..40 {
                if round > 0 {
                    for t in tasks.iter_mut().filter(|t| t.state.is_active() && t.app_version == 2) {
                        t.state = TaskState::Running;
                        t.healthy = Some(true);
                    }
                }
                let refs: Vec<&Task> = tasks.iter().collect();
                let e = evaluate(&EvalInput { deployment: &d, definition: &def, config_version: 2, tasks: &refs, waiting: None, now: 10 });
                match e.transition {
                    Some(Transition::Succeeded) => { finished = true; break; }
                    Some(Transition::Paused) | Some(Transition::Promoted) => { d.promoted = true; }
                    Some(Transition::Progressed) => d.progress = e.progress.clone(),
                    _ => {}
                }
                let input = ReconcileInput {
                    instances,
                    config_version: 2,
                    has_health_checks: true,
                    deleted: false,
                    tasks: &refs,
                    draining: &std::collections::BTreeSet::new(),
                    now: 10,
                    backoff_until: None,
                    rollout: rollout(&def, Some(&d)),
                };
                let decisions = reconcile(&input);
                let ready = |t: &&Task| t.state.is_active() && is_ready(t, true);
                let active_before = tasks.iter().filter(|t| t.state.is_active()).count();
                let ready_before = tasks.iter().filter(ready).count();
                let ready_after = tasks.iter().filter(ready).filter(|t| !decisions.kill.contains(&t.id)).count();
                prop_assert!(ready_after >= ready_before.min(min_ready), "round {round}: {ready_before} → {ready_after}");
                if !d.promoted {
                    let old_ready_killed = tasks.iter().filter(ready).any(|t| t.app_version == 1 && decisions.kill.contains(&t.id));
                    prop_assert!(!old_ready_killed, "canaries stop no ready old instance");
                }
                for t in tasks.iter_mut() {
                    if decisions.kill.contains(&t.id) {
                        t.state = TaskState::Killed;
                    }
                }
                for _ in 0..decisions.launch {
                    next += 1;
                    tasks.push(task(next, 2, TaskState::Staging, None));
                }
                let active_after = tasks.iter().filter(|t| t.state.is_active()).count();
                if d.promoted && decisions.launch > 0 {
                    prop_assert!(active_after <= max_active.max(active_before), "{active_before} → {active_after} > {max_active}");
                }
                if !d.promoted {
                    let current = tasks.iter().filter(|t| t.state.is_active() && t.app_version == 2).count();
                    prop_assert!(decisions.launch == 0 || current <= strategy.canary as usize);
                }
            }
            prop_assert!(finished, "the rollout finishes");
            prop_assert_eq!(tasks.iter().filter(|t| t.state.is_active() && t.app_version == 1).count(), 0);
        }
    }
}
