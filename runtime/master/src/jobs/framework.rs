//! The jobs framework as an allocator [`Framework`]: every cycle it checks each job's schedules
//! (starting runs that are due), advances every unfinished run with the pure state machine,
//! stages the run changes on the view, asks for kills, and turns offers into the runs' tasks
//! with `gantry_scheduler::place`; a run that cannot be placed says why in its message.

use crate::allocator::{Accept, ClusterView, Framework, Kill, Offer};
use crate::jobs::cron::{Compiled, Fire, fire};
use crate::jobs::run::{RunAction, advance};
use crate::jobs::{is_job_task, new_run_id, parse_task_id, task_id};
use crate::master::{Change, Edit};
use gantry_api::job::RunTrigger;
use gantry_api::protocol::LaunchTask;
use gantry_api::{Event, Job, JobDefinition, JobRun, Millis, Task};
use gantry_scheduler::{AgentSlot, PlacementOutcome, PlacementRequest, place};
use std::collections::{BTreeMap, HashMap};
use tracing::{info, warn};

/// Finished runs kept per job; older ones are forgotten.
pub const KEPT_FINISHED_RUNS: usize = 100;

/// A task to launch for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingLaunch {
    job_id: String,
    run_id: String,
    attempt: u32,
}

/// The built-in framework of jobs.
#[derive(Debug, Default)]
pub struct JobsFramework {
    /// Per (job, schedule id, cron, time zone): the time up to which the schedule was checked.
    /// Not persisted: it starts at the job's last change or the schedule's newest run, whichever
    /// is later, so a restarted master still starts a missed run within its starting deadline.
    cursors: HashMap<(String, String, String, String), Millis>,
    pending: Vec<PendingLaunch>,
}

impl JobsFramework {
    /// A framework with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks `job`'s schedules over `(cursor, now]`; returns the runs to create.
    fn check_schedules(&mut self, job: &Job, runs: &[&JobRun], now: Millis) -> Vec<JobRun> {
        let active_runs = runs.iter().filter(|r| !r.status.is_terminal()).count();
        let job_id = &job.definition.id;
        let mut created = Vec::new();
        for schedule in &job.definition.schedules {
            let key = (job_id.clone(), schedule.id.clone(), schedule.cron.clone(), schedule.time_zone.clone());
            let after = *self.cursors.entry(key.clone()).or_insert_with(|| {
                let newest = runs
                    .iter()
                    .filter_map(|r| match &r.trigger {
                        RunTrigger::Schedule { schedule_id, scheduled_at } if *schedule_id == schedule.id => {
                            Some(*scheduled_at)
                        }
                        _ => None,
                    })
                    .max();
                newest.unwrap_or(0).max(job.updated_at).min(now)
            });
            self.cursors.insert(key, now);
            let compiled = match Compiled::new(schedule) {
                Ok(c) => c,
                Err(error) => {
                    warn!(%job_id, %error, "Schedule cannot be evaluated.");
                    continue;
                }
            };
            match fire(schedule, &compiled, after, now, active_runs + created.len()) {
                Fire::Nothing => {}
                Fire::Start { scheduled_at } => {
                    let trigger = RunTrigger::Schedule { schedule_id: schedule.id.clone(), scheduled_at };
                    let run = JobRun::new(job_id, new_run_id(now), trigger, now);
                    info!(%job_id, run_id = %run.id, schedule_id = %schedule.id, "Scheduled run started.");
                    created.push(run);
                }
                Fire::Skip { scheduled_at, reason } => {
                    info!(%job_id, schedule_id = %schedule.id, scheduled_at, %reason, "Scheduled run skipped.");
                }
            }
        }
        created
    }
}

/// The event of a run's current state.
pub fn run_event(run: &JobRun, at: Millis) -> Event {
    Event::JobRunChanged {
        job_id: run.job_id.clone(),
        run_id: run.id.clone(),
        status: run.status,
        message: run.message.clone(),
        at,
    }
}

impl Framework for JobsFramework {
    fn name(&self) -> &str {
        "jobs"
    }

    fn owns(&self, task: &Task) -> bool {
        is_job_task(task)
    }

    fn reconcile(&mut self, view: &mut ClusterView<'_>) -> Vec<Kill> {
        self.pending.clear();
        let now = view.now();
        let mut change = Change::default();
        let mut kills = Vec::new();
        let state = view.state();
        let jobs: Vec<Job> = state.jobs().cloned().collect();
        self.cursors.retain(|(job_id, ..), _| state.job(job_id).is_some());
        for stored in &jobs {
            let job = &stored.definition;
            let mut tasks_by_run: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
            for task in state.tasks_of_app(&job.id) {
                if let Some((job_id, run_id, _)) = parse_task_id(&task.id)
                    && job_id == job.id
                {
                    tasks_by_run.entry(run_id).or_default().push(task);
                }
            }
            let runs: Vec<&JobRun> = state.job_runs(&job.id).collect();
            let created = self.check_schedules(stored, &runs, now);
            let mut finished = Vec::new();
            for run in runs.iter().copied().chain(created.iter()) {
                let tasks = tasks_by_run.get(run.id.as_str()).map(Vec::as_slice).unwrap_or_default();
                let has_live_task = tasks.iter().any(|t| t.state.is_active());
                if run.status.is_terminal() && !has_live_task {
                    finished.push((run.finished_at.unwrap_or(run.created_at), run.id.clone()));
                    continue;
                }
                let step = advance(run, &job.run, tasks, now);
                match step.action {
                    Some(RunAction::Launch { attempt }) => {
                        self.pending.push(PendingLaunch { job_id: job.id.clone(), run_id: run.id.clone(), attempt });
                    }
                    Some(RunAction::Kill { task_id, reason }) => {
                        kills.push(Kill {
                            task_id,
                            grace_period_secs: job.run.kill_grace_period,
                            reason: Some(reason),
                        });
                    }
                    None => {}
                }
                let is_new = created.iter().any(|c| c.id == run.id);
                if step.run != *run || is_new {
                    if step.run.status != run.status || is_new {
                        info!(job_id = %job.id, run_id = %run.id, status = %step.run.status, "Job run changed.");
                        change.events.push(run_event(&step.run, now));
                    }
                    change.push(Edit::PutJobRun(step.run));
                }
            }
            if finished.len() > KEPT_FINISHED_RUNS {
                finished.sort();
                let excess = finished.len() - KEPT_FINISHED_RUNS;
                for (_, id) in finished.into_iter().take(excess) {
                    change.push(Edit::RemoveJobRun(job.id.clone(), id));
                }
            }
        }
        view.stage(change);
        kills
    }

    fn has_demand(&self) -> bool {
        !self.pending.is_empty()
    }

    fn resource_offers(&mut self, offers: &[Offer], view: &mut ClusterView<'_>) -> Vec<Accept> {
        let pending = std::mem::take(&mut self.pending);
        let mut slots: Vec<AgentSlot> = offers
            .iter()
            .map(|o| AgentSlot {
                agent_id: o.agent_id.clone(),
                hostname: o.hostname.clone(),
                attributes: o.attributes.clone(),
                free: o.free.clone(),
            })
            .collect();
        let now = view.now();
        let no_agents = view.active_agents() == 0;
        let mut accepts = Vec::new();
        let mut waiting = Change::default();
        for launch in pending {
            let Some(job) = view.state().job(&launch.job_id) else { continue };
            let definition = &job.definition;
            let resources = definition.resources();
            let request = PlacementRequest {
                app_id: &definition.id,
                resources: &resources,
                ports: &[],
                constraints: &[],
                count: 1,
            };
            let outcome = if no_agents {
                PlacementOutcome { placed: Vec::new(), reason: Some(crate::services::framework::NO_AGENTS.to_string()) }
            } else if slots.is_empty() {
                PlacementOutcome {
                    placed: Vec::new(),
                    reason: Some(crate::services::framework::ALL_DRAINING.to_string()),
                }
            } else {
                place(&request, &mut slots, &[])
            };
            for placed in &outcome.placed {
                let Some(offer) = offers.get(placed.agent_index) else { continue };
                accepts.push(build_accept(definition, &launch.run_id, launch.attempt, offer, now));
            }
            if outcome.placed.is_empty() {
                let reason = outcome.reason.unwrap_or_else(|| "not enough free resources on any agent".to_string());
                let message = format!("waiting for resources: {reason}");
                let run = view.state().job_run(&launch.job_id, &launch.run_id);
                if let Some(run) = run.filter(|r| r.message.as_deref() != Some(message.as_str())) {
                    let mut run = run.clone();
                    run.message = Some(message);
                    waiting.events.push(run_event(&run, now));
                    waiting.push(Edit::PutJobRun(run));
                }
            }
        }
        view.stage(waiting);
        accepts
    }
}

/// A new STAGING task for attempt `attempt` of run `run_id` on `offer`'s agent, and its launch
/// command. The task gets `GANTRY_JOB_ID` and `GANTRY_JOB_RUN_ID` in its environment.
pub fn build_accept(definition: &JobDefinition, run_id: &str, attempt: u32, offer: &Offer, now: Millis) -> Accept {
    let id = task_id(&definition.id, run_id, attempt);
    let resources = definition.resources();
    let mut env = definition.run.env.clone();
    env.insert("GANTRY_JOB_ID".to_string(), definition.id.clone());
    env.insert("GANTRY_JOB_RUN_ID".to_string(), run_id.to_string());
    let launch = LaunchTask {
        task_id: id.clone(),
        app_id: definition.id.clone(),
        cmd: definition.run.cmd.clone(),
        args: definition.run.args.clone(),
        env,
        resources: resources.clone(),
        ports: Vec::new(),
        health_checks: Vec::new(),
        kill_grace_period_secs: definition.run.kill_grace_period,
        secrets: definition.run.secrets.clone(),
        secret_files: definition.run.secret_files.clone(),
        secret_values: Default::default(),
        user: definition.run.user.clone(),
        container: definition.run.container.clone(),
        volumes: definition.run.volumes.clone(),
    };
    let task = Task { resources, ..crate::allocator::staging_task(offer, id, &definition.id, now) };
    Accept { offer_id: offer.id, task, launch }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::Resources;

    fn scheduled_job(updated_at: Millis) -> Job {
        let definition: JobDefinition = serde_json::from_str(
            r#"{"id":"tick","run":{"cmd":"true"},
                "schedules":[{"id":"s","cron":"*/5 * * * * *","concurrency_policy":"FORBID"}]}"#,
        )
        .expect("valid");
        Job { definition, created_at: updated_at, updated_at, status: Default::default() }
    }

    /// 2026-01-01T00:00:00Z.
    const T: Millis = 1_767_225_600_000;

    fn reconcile_at(framework: &mut JobsFramework, state: &mut crate::state::ClusterState, now: Millis) -> Change {
        let mut view = ClusterView::new(state, now);
        let kills = framework.reconcile(&mut view);
        assert!(kills.is_empty());
        view.take_staged()
    }

    #[test]
    fn a_due_schedule_starts_one_run_and_a_restarted_master_does_not_repeat_it() {
        let mut state = crate::state::ClusterState::default();
        state.put_job(scheduled_job(T + 1));
        let mut framework = JobsFramework::new();
        assert!(reconcile_at(&mut framework, &mut state, T + 4_000).put_job_runs().next().is_none());
        let change = reconcile_at(&mut framework, &mut state, T + 5_200);
        let runs: Vec<&JobRun> = change.put_job_runs().collect();
        let [run] = runs.as_slice() else { panic!("{change:?}") };
        let run = (*run).clone();
        assert_eq!(run.trigger, RunTrigger::Schedule { schedule_id: "s".into(), scheduled_at: T + 5_000 });
        assert!(framework.has_demand(), "the new run wants a task");
        state.put_job_run(run.clone());
        // FORBID: the next time is skipped while the run is active.
        assert!(reconcile_at(&mut framework, &mut state, T + 10_100).put_job_runs().all(|r| r.id == run.id));
        // A new master (fresh framework) starts checking after the newest scheduled run.
        let mut restarted = JobsFramework::new();
        let mut done = run.clone();
        done.status = gantry_api::RunStatus::Success;
        state.put_job_run(done);
        assert!(reconcile_at(&mut restarted, &mut state, T + 9_000).put_job_runs().next().is_none());
        let change = reconcile_at(&mut restarted, &mut state, T + 10_300);
        assert_eq!(change.put_job_runs().count(), 1, "{change:?}");
    }

    #[test]
    fn accepts_name_the_run_and_are_owned_by_jobs() {
        let definition: JobDefinition =
            serde_json::from_str(r#"{"id":"nightly","run":{"cmd":"backup","env":{"A":"1"}}}"#).expect("valid");
        let offer = Offer {
            id: 2,
            agent_id: "a1".into(),
            hostname: "h1".into(),
            attributes: BTreeMap::new(),
            free: Resources::scalar(1.0, 100.0, 0.0, 0),
        };
        let accept = build_accept(&definition, "r1", 3, &offer, 5);
        assert_eq!(accept.task.id, "nightly_r1_3");
        assert_eq!(accept.offer_id, 2);
        assert_eq!(accept.launch.env.get("GANTRY_JOB_RUN_ID").map(String::as_str), Some("r1"));
        assert!(JobsFramework::new().owns(&accept.task));
        assert!(!crate::services::ServicesFramework::new().owns(&accept.task));
    }
}
