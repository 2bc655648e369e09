//! The built-in `jobs` framework (Metronome semantics): runs jobs to completion, on request or
//! on cron schedules.
//!
//! [`run`] advances one run from its tasks (pure), [`cron`] says which schedule time is due
//! (pure), and [`framework`] adapts both to the allocator's [`crate::allocator::Framework`]
//! contract. It never talks to agents or the store itself: run changes are staged on the
//! allocator's view and committed with the cycle's kills and launches.
//!
//! Ownership: a job run's task id is `<job id>_<run id>_<attempt>`. App and job ids never
//! contain `_` and app task ids are `<app id>.<uuid>`, so [`is_job_task`] decides from the task
//! alone which framework a task belongs to. App and job ids share one namespace (the API refuses
//! a job whose id is an app's), so `Task::app_id` names exactly one workload.

pub mod cron;
pub mod framework;
pub mod run;

pub use framework::JobsFramework;

use gantry_api::{Millis, Task};

/// The task id of attempt `attempt` of run `run_id` of job `job_id`.
pub fn task_id(job_id: &str, run_id: &str, attempt: u32) -> String {
    format!("{job_id}_{run_id}_{attempt}")
}

/// Splits a job task id into job id, run id and attempt; `None` for any other task id.
pub fn parse_task_id(task_id: &str) -> Option<(&str, &str, u32)> {
    let mut parts = task_id.rsplitn(3, '_');
    let attempt = parts.next()?.parse().ok()?;
    let run_id = parts.next()?;
    let job_id = parts.next()?;
    (!job_id.is_empty() && !run_id.is_empty()).then_some((job_id, run_id, attempt))
}

/// Whether a task is a job run's task (and so belongs to the jobs framework, not to services).
pub fn is_job_task(task: &Task) -> bool {
    parse_task_id(&task.id).is_some_and(|(job_id, _, _)| job_id == task.app_id)
}

/// A new run id: the UTC creation time to the second and 5 random hex digits, so ids sort by
/// creation.
pub fn new_run_id(now: Millis) -> String {
    let stamp = i64::try_from(now)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| now.to_string(), |t| t.strftime("%Y%m%d%H%M%S").to_string());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{stamp}{}", &random[..5])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_round_trip_and_app_task_ids_do_not_parse() {
        let id = task_id("nightly.db", "20261122061500abcde", 3);
        assert_eq!(parse_task_id(&id), Some(("nightly.db", "20261122061500abcde", 3)));
        assert_eq!(parse_task_id("web.6f1c7e8a-1b2c-4d5e-8f90-123456789abc"), None);
        assert!(new_run_id(1_795_000_000_000).starts_with("2026"));
        assert_eq!(new_run_id(1_795_000_000_000).len(), 19);
    }
}
