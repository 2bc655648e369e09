//! How a task's end (the executor's `exit.json`, or its absence) maps to a terminal state and a
//! message: a task that could not start, or that the executor stopped for going over a limit
//! (memory, disk), fails with the reason; one killed on request is `KILLED`. Pure.

use crate::process::signal_name;
use crate::sandbox::ExitInfo;
use gantry_api::TaskState;

/// A task's terminal state, exit code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `FINISHED`, `FAILED` or `KILLED`.
    pub state: TaskState,
    /// The exit code, when the task exited normally.
    pub exit_code: Option<i32>,
    /// Why, in words.
    pub message: String,
}

/// Maps the executor's record to a terminal state. `exit` is `None` when the executor died
/// without writing it; `kill_requested` says whether the agent was stopping the task, and
/// `kill_reason` why it did so on its own (failed health checks).
pub fn outcome(exit: Option<&ExitInfo>, kill_requested: bool, kill_reason: Option<&str>) -> Outcome {
    let killed = |exit_code, what: String| Outcome {
        state: TaskState::Killed,
        exit_code,
        message: match kill_reason {
            Some(reason) => format!("{reason} ({what})"),
            None => format!("killed on request ({what})"),
        },
    };
    let Some(exit) = exit else {
        if kill_requested {
            return killed(None, "executor gone, process group killed".into());
        }
        return Outcome {
            state: TaskState::Failed,
            exit_code: None,
            message: "executor died; the task's process group was killed".into(),
        };
    };
    let what = match (exit.code, exit.signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("killed by signal {}", signal_name(signal)),
        (None, None) => "exit status unknown".to_string(),
    };
    if let Some(error) = &exit.error {
        return Outcome { state: TaskState::Failed, exit_code: None, message: error.clone() };
    }
    if let Some(limit) = &exit.limit_exceeded {
        return Outcome { state: TaskState::Failed, exit_code: exit.code, message: limit.to_string() };
    }
    if exit.killed_on_request {
        return killed(exit.code, what);
    }
    let state = if exit.code == Some(0) { TaskState::Finished } else { TaskState::Failed };
    Outcome { state, exit_code: exit.code, message: what }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: Option<i32>, signal: Option<i32>, killed_on_request: bool) -> ExitInfo {
        ExitInfo { code, signal, killed_on_request, error: None, limit_exceeded: None, finished_at: 1 }
    }

    #[test]
    fn exit_zero_finishes_and_other_codes_fail() {
        let finished = outcome(Some(&exit(Some(0), None, false)), false, None);
        assert_eq!(finished.state, TaskState::Finished);
        assert_eq!(finished.exit_code, Some(0));
        let failed = outcome(Some(&exit(Some(3), None, false)), false, None);
        assert_eq!((failed.state, failed.exit_code), (TaskState::Failed, Some(3)));
        assert_eq!(failed.message, "exited with code 3");
    }

    #[test]
    fn unrequested_signals_fail_and_requested_ones_are_kills() {
        let crashed = outcome(Some(&exit(None, Some(9), false)), false, None);
        assert_eq!(crashed.state, TaskState::Failed);
        assert_eq!(crashed.message, "killed by signal SIGKILL");
        let killed = outcome(Some(&exit(None, Some(15), true)), true, None);
        assert_eq!(killed.state, TaskState::Killed);
        assert!(killed.message.contains("SIGTERM"));
        let clean_exit_on_term = outcome(Some(&exit(Some(0), None, true)), true, None);
        assert_eq!(clean_exit_on_term.state, TaskState::Killed);
    }

    #[test]
    fn health_kills_carry_their_reason() {
        let reason = "failed 3 consecutive COMMAND health checks: exited with code 1";
        let killed = outcome(Some(&exit(None, Some(15), true)), true, Some(reason));
        assert_eq!(killed.state, TaskState::Killed);
        assert!(killed.message.starts_with(reason));
    }

    #[test]
    fn a_dead_executor_fails_the_task_unless_it_was_being_killed() {
        assert_eq!(outcome(None, false, None).state, TaskState::Failed);
        assert!(outcome(None, false, None).message.contains("executor died"));
        assert_eq!(outcome(None, true, None).state, TaskState::Killed);
    }

    #[test]
    fn a_task_over_a_limit_fails_with_the_limit() {
        use crate::cgroup::limits::{LimitExceeded, MIB};
        let mut oom = exit(None, Some(9), false);
        oom.limit_exceeded = Some(LimitExceeded::Memory { limit_bytes: 128 * MIB });
        let failed = outcome(Some(&oom), false, None);
        assert_eq!((failed.state, failed.message.as_str()), (TaskState::Failed, "out of memory (limit 128 MiB)"));
        let mut disk = exit(None, Some(15), false);
        disk.limit_exceeded = Some(LimitExceeded::Disk { used_bytes: 21 * MIB, limit_bytes: 10 * MIB });
        let failed = outcome(Some(&disk), false, None);
        assert_eq!(failed.state, TaskState::Failed);
        assert_eq!(failed.message, "disk usage 21 MiB exceeds its limit of 10 MiB");
    }

    #[test]
    fn a_task_that_could_not_start_fails_with_the_reason() {
        let mut info = exit(None, None, false);
        info.error = Some("cannot start the task: No such file or directory".into());
        let failed = outcome(Some(&info), false, None);
        assert_eq!(failed.state, TaskState::Failed);
        assert!(failed.message.contains("No such file"));
    }
}
