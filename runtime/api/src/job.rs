//! Jobs (Metronome semantics): the definition of a run-to-completion workload with optional cron
//! schedules (what a user writes), and its runs (what the master reports). Field names match the
//! TOML and JSON workload files in `configs/jobs/`.
//!
//! A run moves `INITIAL → STARTING → ACTIVE → SUCCESS | FAILED`; with restart policy
//! `ON_FAILURE` a failed attempt sends it back to `INITIAL` for another task, until the active
//! deadline. Finished runs are kept as history.

use crate::Millis;
use crate::app::validate_id;
use crate::command::TaskCommand;
use crate::container::{ContainerSpec, Volume};
use crate::error::ValidationError;
use crate::resources::Resources;
use crate::task::TaskState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A job definition. Every field but `id` and `run.cmd`/`run.args` has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobDefinition {
    /// Unique name, in the same namespace as app ids: lowercase letters, digits, `-` and `.`.
    pub id: String,
    /// What the job is for, shown by the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What every run executes.
    pub run: RunSpec,
    /// Cron schedules that start runs; none means runs start only on request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<Schedule>,
    /// Free-form labels, shown by the API.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// What a run executes and how failures are handled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// A shell command line, run with `/bin/sh -c`. Exactly one of `cmd` and `args` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// A program and its arguments, executed directly without a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Environment variables of the task.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values come from secrets: `{ DB_PASSWORD = "db/password" }`.
    /// Deploying it needs read access to those secrets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// Files of the task's sandbox (mode 0400) whose content is a secret:
    /// `{ "db.pass" = "db/password" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_files: BTreeMap<String, String>,
    /// The user the task runs as; default: the agent's (`nobody` when the agent runs as root),
    /// or in a container the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The OCI image the task runs from; without it, it runs on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerSpec>,
    /// Host directories mounted into the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// CPU shares.
    #[serde(default = "default_cpus")]
    pub cpus: f64,
    /// Memory in MiB.
    #[serde(default = "default_mem")]
    pub mem: f64,
    /// Disk in MiB.
    #[serde(default)]
    pub disk: f64,
    /// Whether a failed task is retried (`ON_FAILURE`) or fails the run (`NEVER`, the default).
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Seconds after the run was created at which it is killed and marked FAILED; none: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline: Option<f64>,
    /// Seconds between SIGTERM and SIGKILL when a run's task is stopped.
    #[serde(default = "default_kill_grace_period")]
    pub kill_grace_period: f64,
}

impl RunSpec {
    /// The name of every secret the run's task reads (environment, files, registry).
    pub fn secret_names(&self) -> impl Iterator<Item = &String> {
        let registry = self.container.as_ref().and_then(|c| c.registry_auth.as_ref());
        self.secrets.values().chain(self.secret_files.values()).chain(registry)
    }
}

fn default_cpus() -> f64 {
    0.1
}
fn default_mem() -> f64 {
    32.0
}
fn default_kill_grace_period() -> f64 {
    5.0
}

/// What happens when a run's task fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RestartPolicy {
    /// The run fails with its first failed task.
    #[default]
    Never,
    /// A failed task is replaced (with a growing delay) until one succeeds or the deadline passes.
    OnFailure,
}

/// Whether a scheduled run starts while another run of the job is active.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConcurrencyPolicy {
    /// Start it anyway.
    #[default]
    Allow,
    /// Skip it.
    Forbid,
}

/// A cron schedule of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Name of the schedule within the job.
    #[serde(default = "default_schedule_id")]
    pub id: String,
    /// Cron expression: 5 fields (minute hour day month weekday) or 6 with seconds first,
    /// e.g. `*/5 * * * * *` (every 5 seconds) or `0 2 * * *` (02:00 daily).
    pub cron: String,
    /// IANA time zone the expression is read in.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Whether a run starts while another is active.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// Seconds after its time within which a missed start still happens; later it is skipped.
    #[serde(default = "default_starting_deadline")]
    pub starting_deadline: f64,
    /// Whether the schedule starts runs.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

fn default_schedule_id() -> String {
    "default".to_string()
}
fn default_time_zone() -> String {
    "UTC".to_string()
}
fn default_starting_deadline() -> f64 {
    60.0
}
fn default_enabled() -> bool {
    true
}

/// Parses a cron expression of a [`Schedule`] (5 fields, or 6 with seconds first).
pub fn parse_cron(expression: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expression)
        .map_err(|e| {
            format!(
                "`{expression}` is not a cron expression ({e}); use 5 fields (minute hour day month weekday) or 6 with seconds first"
            )
        })
}

/// Resolves an IANA time zone name of a [`Schedule`].
pub fn parse_time_zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::TimeZone::get(name)
        .map_err(|_| format!("unknown time zone `{name}`; use an IANA name like `Europe/Berlin`"))
}

impl JobDefinition {
    /// The resources one run's task needs.
    pub fn resources(&self) -> Resources {
        Resources::scalar(self.run.cpus, self.run.mem, self.run.disk, 0)
    }

    /// Checks everything the types cannot: names, amounts, cron expressions, time zones.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_id(&self.id).map_err(|m| ValidationError::new("id", m))?;
        let run = &self.run;
        let command = TaskCommand {
            cmd: &run.cmd,
            args: &run.args,
            env: &run.env,
            cpus: run.cpus,
            mem: run.mem,
            disk: run.disk,
            container: run.container.as_ref(),
            volumes: &run.volumes,
        };
        command.validate("run.")?;
        crate::security::validate_secret_refs("run.", &run.env, &run.secrets, &run.secret_files)?;
        if let Some(user) = &run.user {
            crate::security::validate_user("run.user", user)?;
        }
        if let Some(deadline) = run.active_deadline
            && (!deadline.is_finite() || deadline <= 0.0)
        {
            return Err(ValidationError::new("run.active_deadline", "must be a positive number of seconds"));
        }
        if !run.kill_grace_period.is_finite() || run.kill_grace_period < 0.0 {
            return Err(ValidationError::new("run.kill_grace_period", "must be a non-negative number of seconds"));
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, schedule) in self.schedules.iter().enumerate() {
            let at = |f: &str| format!("schedules[{i}].{f}");
            if validate_id(&schedule.id).is_err() {
                return Err(ValidationError::new(at("id"), "use lowercase letters, digits, `-` and `.`"));
            }
            if !ids.insert(schedule.id.as_str()) {
                return Err(ValidationError::new(at("id"), format!("schedule id `{}` is used twice", schedule.id)));
            }
            parse_cron(&schedule.cron).map_err(|m| ValidationError::new(at("cron"), m))?;
            parse_time_zone(&schedule.time_zone).map_err(|m| ValidationError::new(at("time_zone"), m))?;
            if !schedule.starting_deadline.is_finite() || schedule.starting_deadline <= 0.0 {
                return Err(ValidationError::new(at("starting_deadline"), "must be a positive number of seconds"));
            }
        }
        Ok(())
    }
}

/// A job as the master reports it: the definition and a summary of its runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The current definition.
    pub definition: JobDefinition,
    /// When the job was first created.
    pub created_at: Millis,
    /// When the definition last changed.
    pub updated_at: Millis,
    /// Live summary, filled in by the master when it answers.
    #[serde(default)]
    pub status: JobStatus,
}

/// A summary of a job's runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// Runs not yet SUCCESS or FAILED.
    pub active_runs: u32,
    /// Finished runs kept as history that succeeded.
    pub successful_runs: u32,
    /// Finished runs kept as history that failed.
    pub failed_runs: u32,
    /// The status of the newest run, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunStatus>,
    /// When an enabled schedule next fires, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<Millis>,
}

/// A run's state. SUCCESS and FAILED are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// Created; waiting for a task to be launched (also between attempts).
    Initial,
    /// A task was launched and has not started yet.
    Starting,
    /// Its task runs.
    Active,
    /// A task exited 0.
    Success,
    /// A task failed (and no retry is allowed), the deadline passed, or it was stopped.
    Failed,
}

impl RunStatus {
    /// Whether the status is final.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Failed)
    }

    /// The wire name, e.g. `ACTIVE`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Initial => "INITIAL",
            Self::Starting => "STARTING",
            Self::Active => "ACTIVE",
            Self::Success => "SUCCESS",
            Self::Failed => "FAILED",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What started a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunTrigger {
    /// `POST /api/v1/jobs/{id}/runs` (`gantry job run`).
    Manual,
    /// A cron schedule.
    Schedule {
        /// The schedule's id.
        schedule_id: String,
        /// The cron time it fired for.
        scheduled_at: Millis,
    },
}

/// One task of a run, as last seen (kept after the task itself is forgotten).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAttempt {
    /// The task id: `<job id>_<run id>_<attempt>`.
    pub task_id: String,
    /// Its agent.
    pub agent_id: String,
    /// Its state when last seen.
    pub state: TaskState,
    /// Its exit status, if it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// When it reached a terminal state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
    /// Why it is in its state, when the master or the agent said (e.g. killed because its
    /// agent's drain deadline passed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRun {
    /// Unique within the job: `<UTC yyyymmddhhmmss><5 random letters>`.
    pub id: String,
    /// The job.
    pub job_id: String,
    /// Current state.
    pub status: RunStatus,
    /// What started it.
    pub trigger: RunTrigger,
    /// When it was created.
    pub created_at: Millis,
    /// When its first task started running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Millis>,
    /// When it became SUCCESS or FAILED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
    /// Its tasks in launch order.
    #[serde(default)]
    pub attempts: Vec<RunAttempt>,
    /// Whether a stop was requested (the run ends FAILED once its task is gone).
    #[serde(default)]
    pub stop_requested: bool,
    /// Why it is in its state, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl JobRun {
    /// A new INITIAL run.
    pub fn new(job_id: &str, id: String, trigger: RunTrigger, now: Millis) -> Self {
        Self {
            id,
            job_id: job_id.to_string(),
            status: RunStatus::Initial,
            trigger,
            created_at: now,
            started_at: None,
            finished_at: None,
            attempts: Vec::new(),
            stop_requested: false,
            message: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(schedule: &str) -> JobDefinition {
        serde_json::from_str(&format!(r#"{{"id":"nightly","run":{{"cmd":"true"}},"schedules":[{schedule}]}}"#))
            .expect("valid JSON")
    }

    #[test]
    fn defaults_and_valid_schedules() {
        let def = job(r#"{"cron":"*/5 * * * * *","time_zone":"Europe/Berlin","concurrency_policy":"FORBID"}"#);
        def.validate().expect("valid");
        assert_eq!(def.run.restart_policy, RestartPolicy::Never);
        assert_eq!(def.schedules[0].id, "default");
        assert_eq!(def.schedules[0].concurrency_policy, ConcurrencyPolicy::Forbid);
        job(r#"{"cron":"0 2 * * *"}"#).validate().expect("5 fields");
    }

    #[test]
    fn bad_cron_and_zone_name_their_field() {
        let err = job(r#"{"cron":"every minute"}"#).validate().expect_err("bad cron");
        assert_eq!(err.field, "schedules[0].cron");
        let err = job(r#"{"cron":"* * * * *","time_zone":"Mars/Olympus"}"#).validate().expect_err("bad zone");
        assert_eq!(err.field, "schedules[0].time_zone");
        assert!(err.message.contains("Mars/Olympus"));
    }

    #[test]
    fn run_needs_a_command_and_a_positive_deadline() {
        let def: JobDefinition = serde_json::from_str(r#"{"id":"j","run":{}}"#).expect("parses");
        assert_eq!(def.validate().expect_err("no cmd").field, "run.cmd");
        let def: JobDefinition =
            serde_json::from_str(r#"{"id":"j","run":{"cmd":"x","active_deadline":0}}"#).expect("parses");
        assert_eq!(def.validate().expect_err("zero deadline").field, "run.active_deadline");
    }
}
