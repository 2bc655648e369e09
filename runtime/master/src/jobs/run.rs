//! The pure run-state machine: one run, its job's run spec and the run's tasks in, the run's new
//! state and at most one action out. No clock (time is an argument), no I/O.
//!
//! Rules, in order:
//! 1. The run's attempts are refreshed from its tasks (a task that vanished while not terminal
//!    counts as LOST). The latest attempt decides.
//! 2. A SUCCESS or FAILED run never changes; a task of it still STAGING or RUNNING is killed.
//!    A FINISHED latest attempt makes the run SUCCESS (even if a stop was requested meanwhile).
//! 3. A stop request or a passed active deadline kills the live task; once no task is live the
//!    run is FAILED.
//! 4. No attempt yet: launch attempt 1 (INITIAL). STAGING → STARTING, RUNNING → ACTIVE.
//!    KILLING: wait.
//! 5. A failed attempt (FAILED, KILLED, LOST, or UNREACHABLE, which is given up): with `NEVER`
//!    the run is FAILED; with `ON_FAILURE` the run goes back to INITIAL and the next attempt is
//!    launched after [`retry_delay_ms`].

use gantry_api::job::{RestartPolicy, RunAttempt, RunSpec};
use gantry_api::{JobRun, Millis, RunStatus, Task, TaskState};

/// What the framework must do for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAction {
    /// Launch a task for attempt `attempt` (1-based).
    Launch {
        /// The attempt number.
        attempt: u32,
    },
    /// Stop a task.
    Kill {
        /// The task.
        task_id: String,
        /// Why, shown on the task.
        reason: String,
    },
}

/// The outcome of [`advance`].
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The run after this step (equal to the input when nothing changed).
    pub run: JobRun,
    /// What to do, if anything.
    pub action: Option<RunAction>,
}

/// Delay before attempt `failures + 1` after `failures` failed attempts: 1 s, doubling, at most
/// 60 s.
pub fn retry_delay_ms(failures: u32) -> u64 {
    let exponent = failures.saturating_sub(1).min(6);
    (1000u64 << exponent).min(60_000)
}

/// The time after which the run is killed, if the spec has an active deadline.
pub fn deadline_at(run: &JobRun, spec: &RunSpec) -> Option<Millis> {
    spec.active_deadline.map(|seconds| run.created_at.saturating_add((seconds * 1000.0) as u64))
}

fn is_failure(state: TaskState) -> bool {
    matches!(state, TaskState::Failed | TaskState::Killed | TaskState::Lost | TaskState::Unreachable)
}

fn is_live(state: TaskState) -> bool {
    !state.is_terminal() && state != TaskState::Unreachable
}

/// "task j_r_1 FAILED (exit code 1)"; a killed or lost attempt says why, e.g. "task j_r_1 KILLED:
/// its agent's drain deadline passed".
fn describe(attempt: &RunAttempt) -> String {
    let what = match attempt.exit_code {
        Some(code) => format!("task {} {} (exit code {code})", attempt.task_id, attempt.state),
        None => format!("task {} {}", attempt.task_id, attempt.state),
    };
    // The agent's "exited with code N" says no more than the exit code; any other reason (an
    // image not found, a missing program, out of memory, a kill) is worth reading.
    match (&attempt.message, attempt.exit_code) {
        (Some(why), Some(code)) if *why == format!("exited with code {code}") => what,
        (Some(why), _) => format!("{what}: {why}"),
        (None, _) => what,
    }
}

/// Refreshes `run.attempts` from `tasks` (the run's tasks the master still knows).
fn refresh_attempts(run: &mut JobRun, tasks: &[&Task], now: Millis) {
    for task in tasks {
        let known = run.attempts.iter().find(|a| a.task_id == task.id).and_then(|a| a.finished_at);
        // An UNREACHABLE task is given up when first seen so; remember when, for the retry delay.
        let given_up = (task.state == TaskState::Unreachable).then_some(now);
        let seen = RunAttempt {
            task_id: task.id.clone(),
            agent_id: task.agent_id.clone(),
            state: task.state,
            exit_code: task.exit_code,
            finished_at: task.finished_at.or(known).or(given_up),
            message: task.message.clone(),
        };
        match run.attempts.iter_mut().find(|a| a.task_id == task.id) {
            Some(attempt) => *attempt = seen,
            None => run.attempts.push(seen),
        }
    }
    for attempt in &mut run.attempts {
        if !attempt.state.is_terminal() && !tasks.iter().any(|t| t.id == attempt.task_id) {
            attempt.state = TaskState::Lost;
            attempt.finished_at = Some(now);
        }
    }
    run.attempts.sort_by_key(|a| super::parse_task_id(&a.task_id).map_or(0, |(_, _, n)| n));
}

fn finish(run: &mut JobRun, status: RunStatus, message: String, now: Millis) {
    run.status = status;
    run.finished_at = Some(now);
    run.message = Some(message);
}

/// Advances one run. `tasks` are the run's tasks the master knows (any state, any order).
pub fn advance(run: &JobRun, spec: &RunSpec, tasks: &[&Task], now: Millis) -> Step {
    let mut next = run.clone();
    refresh_attempts(&mut next, tasks, now);
    // A task may start and end between two evaluations: the run started when its first task did.
    if next.started_at.is_none() {
        next.started_at = tasks.iter().filter_map(|t| t.started_at).min();
    }
    let latest = next.attempts.last().cloned();
    let live = latest.as_ref().filter(|a| is_live(a.state));
    if next.status.is_terminal() {
        let action = live
            .filter(|a| a.state.is_active())
            .map(|a| RunAction::Kill { task_id: a.task_id.clone(), reason: format!("its run ended {}", next.status) });
        return Step { run: next, action };
    }
    if let Some(done) = latest.as_ref().filter(|a| a.state == TaskState::Finished) {
        finish(&mut next, RunStatus::Success, describe(done), now);
        return Step { run: next, action: None };
    }
    let stop_reason = if run.stop_requested {
        Some("stopped on request".to_string())
    } else if deadline_at(run, spec).is_some_and(|at| now >= at) {
        Some(format!("active deadline of {}s exceeded", spec.active_deadline.unwrap_or_default()))
    } else {
        None
    };
    if let Some(reason) = stop_reason {
        return match live {
            Some(a) if a.state.is_active() => {
                let action = Some(RunAction::Kill { task_id: a.task_id.clone(), reason: reason.clone() });
                next.message = Some(reason);
                Step { run: next, action }
            }
            Some(_) => Step { run: next, action: None },
            None => {
                finish(&mut next, RunStatus::Failed, reason, now);
                Step { run: next, action: None }
            }
        };
    }
    let Some(latest) = latest else {
        next.status = RunStatus::Initial;
        return Step { run: next, action: Some(RunAction::Launch { attempt: 1 }) };
    };
    match latest.state {
        TaskState::Staging => {
            if next.status != RunStatus::Starting {
                next.message = None;
            }
            next.status = RunStatus::Starting;
        }
        TaskState::Running => {
            next.status = RunStatus::Active;
            next.started_at = next.started_at.or(Some(now));
        }
        TaskState::Killing | TaskState::Finished => {}
        state if is_failure(state) => {
            if spec.restart_policy == RestartPolicy::Never {
                finish(&mut next, RunStatus::Failed, describe(&latest), now);
            } else {
                let failures = u32::try_from(next.attempts.len()).unwrap_or(u32::MAX);
                let retry_at = latest.finished_at.unwrap_or(now).saturating_add(retry_delay_ms(failures));
                next.status = RunStatus::Initial;
                next.message = Some(format!("{}; retrying (restart policy ON_FAILURE)", describe(&latest)));
                if now >= retry_at {
                    let attempt = failures.saturating_add(1);
                    return Step { run: next, action: Some(RunAction::Launch { attempt }) };
                }
            }
        }
        _ => {}
    }
    Step { run: next, action: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::Resources;
    use gantry_api::job::RunTrigger;
    use proptest::prelude::*;

    fn spec(policy: RestartPolicy, deadline: Option<f64>) -> RunSpec {
        let mut spec: RunSpec = serde_json::from_str(r#"{"cmd":"true"}"#).expect("valid");
        spec.restart_policy = policy;
        spec.active_deadline = deadline;
        spec
    }

    fn run() -> JobRun {
        JobRun::new("j", "r1".to_string(), RunTrigger::Manual, 0)
    }

    #[test]
    fn a_task_that_ran_and_ended_between_two_evaluations_still_starts_the_run() {
        let spec = spec(RestartPolicy::Never, None);
        let mut run = run();
        run.status = RunStatus::Starting;
        let finished = task(1, TaskState::Finished, 500);
        let step = advance(&run, &spec, &[&finished], 600);
        assert_eq!(step.run.status, RunStatus::Success);
        assert_eq!(step.run.started_at, Some(500));
        assert_eq!(step.run.finished_at, Some(600));
    }

    fn task(attempt: u32, state: TaskState, at: Millis) -> Task {
        Task {
            id: super::super::task_id("j", "r1", attempt),
            app_id: "j".into(),
            app_version: 0,
            agent_id: "a".into(),
            host: "h".into(),
            state,
            healthy: None,
            ports: vec![],
            resources: Resources::default(),
            staged_at: at,
            started_at: (state != TaskState::Staging).then_some(at),
            finished_at: state.is_terminal().then_some(at),
            exit_code: match state {
                TaskState::Finished => Some(0),
                TaskState::Failed => Some(1),
                _ => None,
            },
            message: None,
            limits: Vec::new(),
        }
    }

    #[test]
    fn success_path() {
        let s = spec(RestartPolicy::Never, None);
        let step = advance(&run(), &s, &[], 1);
        assert_eq!(step.action, Some(RunAction::Launch { attempt: 1 }));
        let t = task(1, TaskState::Staging, 2);
        let step = advance(&step.run, &s, &[&t], 2);
        assert_eq!((step.run.status, step.action.clone()), (RunStatus::Starting, None));
        let t = task(1, TaskState::Running, 3);
        let step = advance(&step.run, &s, &[&t], 3);
        assert_eq!(step.run.status, RunStatus::Active);
        let t = task(1, TaskState::Finished, 4);
        let step = advance(&step.run, &s, &[&t], 4);
        assert_eq!(step.run.status, RunStatus::Success);
        assert_eq!(step.run.finished_at, Some(4));
        assert_eq!(step.run.attempts.len(), 1);
    }

    #[test]
    fn never_fails_once_and_on_failure_retries_after_a_delay() {
        let t = task(1, TaskState::Failed, 10);
        let never = advance(&run(), &spec(RestartPolicy::Never, None), &[&t], 10);
        assert_eq!((never.run.status, never.action), (RunStatus::Failed, None));
        let retry = spec(RestartPolicy::OnFailure, None);
        let waiting = advance(&run(), &retry, &[&t], 10);
        assert_eq!((waiting.run.status, waiting.action), (RunStatus::Initial, None));
        let due = advance(&waiting.run, &retry, &[&t], 10 + retry_delay_ms(1));
        assert_eq!(due.action, Some(RunAction::Launch { attempt: 2 }));
    }

    #[test]
    fn deadline_kills_then_fails_and_stop_does_the_same() {
        let s = spec(RestartPolicy::OnFailure, Some(2.0));
        let t = task(1, TaskState::Running, 1);
        let step = advance(&run(), &s, &[&t], 2000);
        assert!(matches!(step.action, Some(RunAction::Kill { ref reason, .. }) if reason.contains("deadline")));
        assert!(!step.run.status.is_terminal());
        let t = task(1, TaskState::Killing, 2001);
        let step = advance(&step.run, &s, &[&t], 2001);
        assert_eq!(step.action, None);
        let t = task(1, TaskState::Killed, 2002);
        let step = advance(&step.run, &s, &[&t], 2002);
        assert_eq!(step.run.status, RunStatus::Failed);
        assert!(step.run.message.as_deref().is_some_and(|m| m.contains("deadline")), "{:?}", step.run.message);
        let stopped = JobRun { stop_requested: true, ..run() };
        let step = advance(&stopped, &s, &[], 5);
        assert_eq!((step.run.status, step.run.message.as_deref()), (RunStatus::Failed, Some("stopped on request")));
    }

    #[test]
    fn a_run_killed_by_its_agents_drain_deadline_says_so() {
        let mut killed = task(1, TaskState::Killed, 10);
        killed.message = Some(format!("{}; stopped with SIGTERM", crate::drain::DEADLINE_PASSED));
        let step = advance(&run(), &spec(RestartPolicy::Never, None), &[&killed], 10);
        assert_eq!(step.run.status, RunStatus::Failed);
        assert_eq!(
            step.run.message.as_deref(),
            Some("task j_r1_1 KILLED: its agent's drain deadline passed; stopped with SIGTERM")
        );
        let retried = advance(&run(), &spec(RestartPolicy::OnFailure, None), &[&killed], 10);
        let message = retried.run.message.unwrap_or_default();
        assert!(message.contains("drain deadline passed") && message.contains("retrying"), "{message}");
        let failed = task(1, TaskState::Failed, 10);
        let step = advance(
            &run(),
            &spec(RestartPolicy::Never, None),
            &[&Task { message: Some("exited with code 1".into()), ..failed.clone() }],
            10,
        );
        assert_eq!(step.run.message.as_deref(), Some("task j_r1_1 FAILED (exit code 1)"), "exit codes say enough");
        let not_started =
            Task { exit_code: None, message: Some("cannot pull image r/x:9: not found".into()), ..failed.clone() };
        let step = advance(&run(), &spec(RestartPolicy::Never, None), &[&not_started], 10);
        assert_eq!(
            step.run.message.as_deref(),
            Some("task j_r1_1 FAILED: cannot pull image r/x:9: not found"),
            "a task that never started says why"
        );
        let oom = Task { exit_code: Some(137), message: Some("out of memory (limit 64 MiB)".into()), ..failed };
        let step = advance(&run(), &spec(RestartPolicy::Never, None), &[&oom], 10);
        assert_eq!(
            step.run.message.as_deref(),
            Some("task j_r1_1 FAILED (exit code 137): out of memory (limit 64 MiB)")
        );
    }

    fn outcome() -> impl Strategy<Value = TaskState> {
        prop_oneof![
            Just(TaskState::Finished),
            Just(TaskState::Failed),
            Just(TaskState::Killed),
            Just(TaskState::Lost),
            Just(TaskState::Unreachable),
        ]
    }

    proptest! {
        /// Simulates a run whose attempts end with random outcomes: it never has two live tasks,
        /// never launches after SUCCESS/FAILED or past its deadline, `NEVER` makes one attempt,
        /// and it ends SUCCESS exactly when its last attempt finished.
        #[test]
        fn runs_converge_with_one_task_at_a_time(
            outcomes in proptest::collection::vec(outcome(), 1..8),
            on_failure in any::<bool>(),
            deadline in proptest::option::of(1u32..40),
            stop_at in proptest::option::of(0usize..40),
        ) {
            let policy = if on_failure { RestartPolicy::OnFailure } else { RestartPolicy::Never };
            let s = spec(policy, deadline.map(|d| f64::from(d) * 10.0));
            let mut current = run();
            let mut tasks: Vec<Task> = Vec::new();
            let mut now: Millis = 0;
            let mut next_outcome = outcomes.iter();
            for round in 0..200usize {
                if stop_at == Some(round) {
                    current.stop_requested = true;
                }
                let refs: Vec<&Task> = tasks.iter().collect();
                let step = advance(&current, &s, &refs, now);
                if current.status.is_terminal() {
                    prop_assert_eq!(step.run.status, current.status);
                }
                let live = tasks.iter().filter(|t| is_live(t.state)).count();
                prop_assert!(live <= 1);
                match &step.action {
                    Some(RunAction::Launch { attempt }) => {
                        prop_assert_eq!(live, 0);
                        prop_assert!(!step.run.status.is_terminal());
                        prop_assert!(!step.run.stop_requested);
                        prop_assert!(deadline_at(&step.run, &s).is_none_or(|at| now < at));
                        prop_assert_eq!(*attempt as usize, tasks.len() + 1);
                        prop_assert!(on_failure || tasks.is_empty());
                        tasks.push(task(*attempt, TaskState::Running, now));
                    }
                    Some(RunAction::Kill { task_id, .. }) => {
                        if let Some(t) = tasks.iter_mut().find(|t| &t.id == task_id) {
                            t.state = TaskState::Killed;
                            t.finished_at = Some(now);
                        }
                    }
                    None => {
                        let attempt = tasks.len() as u32;
                        if let Some(t) = tasks.iter_mut().find(|t| t.state == TaskState::Running) {
                            let state = next_outcome.next().copied().unwrap_or(TaskState::Finished);
                            *t = task(attempt, state, now);
                        }
                    }
                }
                current = step.run;
                now += 1000;
                if current.status.is_terminal() && tasks.iter().all(|t| !is_live(t.state)) {
                    break;
                }
            }
            prop_assert!(current.status.is_terminal(), "run did not end: {:?}", current);
            let last = current.attempts.last().map(|a| a.state);
            prop_assert_eq!(current.status == RunStatus::Success, last == Some(TaskState::Finished));
            if !on_failure {
                prop_assert!(current.attempts.len() <= 1);
            }
        }
    }
}
