//! Backoff bookkeeping of the services framework: which task transitions count as failures,
//! and when the failure count resets. Pure functions over [`AppRuntime`]; no clock.

use crate::state::AppRuntime;
use gantry_api::{Backoff, Millis, Task, TaskState};

/// A task of an app that has run this long without health checks counts as a success.
pub const STABLE_AFTER_MS: u64 = 10_000;

/// Whether moving from `previous` to `task.state` is a failure: FAILED, LOST, or KILLED when the
/// master did not ask for it (the agent killed it for failing health checks).
pub fn is_failure(previous: TaskState, task: &Task) -> bool {
    match task.state {
        TaskState::Failed | TaskState::Lost => true,
        TaskState::Killed => previous != TaskState::Killing,
        _ => false,
    }
}

/// Records a task change of an app with `policy`: failures push `backoff_until` out, a healthy
/// report resets the count.
pub fn record(runtime: &mut AppRuntime, policy: &Backoff, previous: TaskState, task: &Task, now: Millis) {
    if is_failure(previous, task) {
        runtime.failures = runtime.failures.saturating_add(1);
        let delay_ms = (policy.delay_seconds(runtime.failures) * 1000.0) as u64;
        runtime.backoff_until = Some(now + delay_ms);
    } else if task.state == TaskState::Running && task.healthy == Some(true) {
        reset(runtime);
    }
}

/// Forgets failures (redeploy, restart, scale, a healthy or stable instance).
pub fn reset(runtime: &mut AppRuntime) {
    runtime.failures = 0;
    runtime.backoff_until = None;
}

/// Whether a task of an app without health checks has run long enough to reset the backoff.
pub fn is_stable(task: &Task, has_health_checks: bool, now: Millis) -> bool {
    !has_health_checks
        && task.state == TaskState::Running
        && task.started_at.is_some_and(|s| now.saturating_sub(s) >= STABLE_AFTER_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::Resources;

    fn task(state: TaskState, healthy: Option<bool>) -> Task {
        Task {
            id: "web.1".into(),
            app_id: "web".into(),
            app_version: 1,
            agent_id: "a".into(),
            host: "h".into(),
            state,
            healthy,
            ports: vec![],
            resources: Resources::default(),
            staged_at: 0,
            started_at: Some(0),
            finished_at: None,
            exit_code: None,
            message: None,
            limits: Vec::new(),
        }
    }

    #[test]
    fn failures_back_off_and_health_resets() {
        let def = Backoff::default();
        let mut rt = AppRuntime::default();
        record(&mut rt, &def, TaskState::Running, &task(TaskState::Failed, None), 1000);
        assert_eq!(rt.backoff_until, Some(2000));
        record(&mut rt, &def, TaskState::Running, &task(TaskState::Killed, Some(false)), 3000);
        assert_eq!(rt.failures, 2);
        assert_eq!(rt.backoff_until, Some(3000 + 1150));
        record(&mut rt, &def, TaskState::Killing, &task(TaskState::Killed, None), 5000);
        assert_eq!(rt.failures, 2, "a requested kill is no failure");
        record(&mut rt, &def, TaskState::Running, &task(TaskState::Running, Some(true)), 6000);
        assert_eq!(rt, AppRuntime::default());
        assert!(is_stable(&task(TaskState::Running, None), false, STABLE_AFTER_MS));
        assert!(!is_stable(&task(TaskState::Running, None), true, STABLE_AFTER_MS));
    }
}
