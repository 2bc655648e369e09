//! The master's in-memory cluster state: apps, tasks, agents, jobs and job runs as loaded from the store, with
//! the indexes the allocator and the API need (tasks by app, tasks by agent, each agent's used
//! and free resources, maintained incrementally on every task change).
//!
//! This module only holds data and keeps its indexes consistent. It does no I/O and makes no
//! decisions: callers persist a change first (see `master::Change`) and then apply it here.

use crate::store::{AppRecord, Snapshot};
use gantry_api::{Agent, AgentState, AppStatus, Job, JobRun, Millis, Resources, Task, TaskState};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

/// How many applied status-update uuids are remembered per task.
const REMEMBERED_UUIDS: usize = 8;

/// Bookkeeping of the services framework for one app; not persisted (a restarted master
/// starts without backoff).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppRuntime {
    /// Consecutive failures since the last reset.
    pub failures: u32,
    /// No launches before this time.
    pub backoff_until: Option<Millis>,
    /// Why instances wait for placement, if they do.
    pub waiting: Option<String>,
}

/// An app and its runtime bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct AppEntry {
    /// The stored app.
    pub record: AppRecord,
    /// Backoff and waiting.
    pub runtime: AppRuntime,
    /// Stored versions and deployments (see `services::history`).
    pub history: crate::services::history::AppHistory,
}

/// An agent with its free resources and when it was last heard from.
#[derive(Debug, Clone)]
pub struct AgentEntry {
    /// The agent as reported (its `used` and `tasks` are kept current).
    pub agent: Agent,
    /// `agent.info.resources` minus the resources of its non-terminal tasks.
    pub free: Resources,
    /// Monotonic time of the last registration or heartbeat.
    pub last_heard: Instant,
    /// Whether it registered with this master process. Agents loaded from the store must
    /// register again (their heartbeats get 404) so their tasks are reconciled after a restart.
    pub registered: bool,
}

/// The whole cluster as the master knows it.
#[derive(Debug, Default)]
pub struct ClusterState {
    apps: BTreeMap<String, AppEntry>,
    tasks: HashMap<String, Task>,
    tasks_by_app: HashMap<String, BTreeSet<String>>,
    tasks_by_agent: HashMap<String, BTreeSet<String>>,
    agents: BTreeMap<String, AgentEntry>,
    status_uuids: HashMap<String, Vec<String>>,
    jobs: BTreeMap<String, Job>,
    job_runs: HashMap<String, BTreeMap<String, JobRun>>,
}

/// Whether a task holds resources on its agent.
pub fn holds_resources(state: TaskState) -> bool {
    !state.is_terminal()
}

/// The meta key under which a task's applied status-update uuids are kept.
pub fn uuid_meta_key(task_id: &str) -> String {
    format!("status-uuids/{task_id}")
}

impl ClusterState {
    /// Builds the state from a store snapshot; every agent counts as just heard from.
    pub fn from_snapshot(snapshot: Snapshot) -> Self {
        let mut state = Self::default();
        for record in snapshot.apps {
            state.put_app(record);
        }
        for agent in snapshot.agents {
            state.put_agent(agent);
        }
        for job in snapshot.jobs {
            state.put_job(job);
        }
        for run in snapshot.job_runs {
            state.put_job_run(run);
        }
        for task in snapshot.tasks {
            state.put_task(task);
        }
        for (app_id, history) in crate::services::history::from_meta(&snapshot.meta) {
            if let Some(entry) = state.apps.get_mut(&app_id) {
                entry.history = history;
            }
        }
        for (key, value) in snapshot.meta {
            if let Some(task_id) = key.strip_prefix("status-uuids/") {
                let uuids: Vec<String> = serde_json::from_str(&value).unwrap_or_default();
                state.status_uuids.insert(task_id.to_string(), uuids);
            }
        }
        state
    }

    /// Every app, by id.
    pub fn apps(&self) -> impl Iterator<Item = &AppEntry> {
        self.apps.values()
    }

    /// One app.
    pub fn app(&self, id: &str) -> Option<&AppEntry> {
        self.apps.get(id)
    }

    /// One app's runtime bookkeeping, for the services framework.
    pub fn app_runtime_mut(&mut self, id: &str) -> Option<&mut AppRuntime> {
        self.apps.get_mut(id).map(|e| &mut e.runtime)
    }

    /// One app's versions and deployments, to change after they were stored.
    pub fn app_history_mut(&mut self, id: &str) -> Option<&mut crate::services::history::AppHistory> {
        self.apps.get_mut(id).map(|e| &mut e.history)
    }

    /// Inserts or replaces an app, keeping its runtime bookkeeping.
    pub fn put_app(&mut self, record: AppRecord) {
        let id = record.app.definition.id.clone();
        match self.apps.get_mut(&id) {
            Some(entry) => entry.record = record,
            None => {
                self.apps.insert(id, AppEntry { record, runtime: AppRuntime::default(), history: Default::default() });
            }
        }
    }

    /// Forgets an app (its tasks stay until they are terminal and pruned).
    pub fn remove_app(&mut self, id: &str) -> Option<AppEntry> {
        self.apps.remove(id)
    }

    /// Whether an app or a job has this id (they share one namespace).
    pub fn has_workload(&self, id: &str) -> bool {
        self.apps.contains_key(id) || self.jobs.contains_key(id)
    }

    /// Every job, by id.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// One job.
    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.get(id)
    }

    /// Inserts or replaces a job.
    pub fn put_job(&mut self, job: Job) {
        self.jobs.insert(job.definition.id.clone(), job);
    }

    /// Forgets a job and its runs (its tasks stay until they are terminal and pruned).
    pub fn remove_job(&mut self, id: &str) -> Option<Job> {
        self.job_runs.remove(id);
        self.jobs.remove(id)
    }

    /// Runs of one job, by run id (ids sort by creation time).
    pub fn job_runs(&self, job_id: &str) -> impl Iterator<Item = &JobRun> {
        self.job_runs.get(job_id).into_iter().flat_map(|runs| runs.values())
    }

    /// One run.
    pub fn job_run(&self, job_id: &str, run_id: &str) -> Option<&JobRun> {
        self.job_runs.get(job_id).and_then(|runs| runs.get(run_id))
    }

    /// Inserts or replaces a run.
    pub fn put_job_run(&mut self, run: JobRun) {
        self.job_runs.entry(run.job_id.clone()).or_default().insert(run.id.clone(), run);
    }

    /// Forgets a run.
    pub fn remove_job_run(&mut self, job_id: &str, run_id: &str) -> Option<JobRun> {
        let runs = self.job_runs.get_mut(job_id)?;
        let run = runs.remove(run_id);
        if runs.is_empty() {
            self.job_runs.remove(job_id);
        }
        run
    }

    /// One task.
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.get(id)
    }

    /// Every task, in no particular order.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values()
    }

    /// Number of tasks known.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// Tasks of one app (including terminal ones not yet pruned), in id order.
    pub fn tasks_of_app(&self, app_id: &str) -> Vec<&Task> {
        self.tasks_by_app
            .get(app_id)
            .map(|ids| ids.iter().filter_map(|id| self.tasks.get(id)).collect())
            .unwrap_or_default()
    }

    /// Tasks on one agent (including terminal ones not yet pruned), in id order.
    pub fn tasks_of_agent(&self, agent_id: &str) -> Vec<&Task> {
        self.tasks_by_agent
            .get(agent_id)
            .map(|ids| ids.iter().filter_map(|id| self.tasks.get(id)).collect())
            .unwrap_or_default()
    }

    /// Inserts or replaces a task, updating the indexes and its agent's resources.
    pub fn put_task(&mut self, task: Task) {
        if let Some(old) = self.tasks.remove(&task.id) {
            self.release(&old);
        }
        self.tasks_by_app.entry(task.app_id.clone()).or_default().insert(task.id.clone());
        self.tasks_by_agent.entry(task.agent_id.clone()).or_default().insert(task.id.clone());
        self.hold(&task);
        self.tasks.insert(task.id.clone(), task);
    }

    /// Forgets a task.
    pub fn remove_task(&mut self, id: &str) -> Option<Task> {
        let task = self.tasks.remove(id)?;
        self.release(&task);
        if let Some(ids) = self.tasks_by_app.get_mut(&task.app_id) {
            ids.remove(id);
            if ids.is_empty() {
                self.tasks_by_app.remove(&task.app_id);
            }
        }
        if let Some(ids) = self.tasks_by_agent.get_mut(&task.agent_id) {
            ids.remove(id);
            if ids.is_empty() {
                self.tasks_by_agent.remove(&task.agent_id);
            }
        }
        self.status_uuids.remove(id);
        Some(task)
    }

    fn hold(&mut self, task: &Task) {
        if !holds_resources(task.state) {
            return;
        }
        if let Some(entry) = self.agents.get_mut(&task.agent_id) {
            entry.agent.used.add(&task.resources);
            entry.agent.tasks += 1;
            entry.free.subtract(&task.resources);
        }
    }

    fn release(&mut self, task: &Task) {
        if !holds_resources(task.state) {
            return;
        }
        if let Some(entry) = self.agents.get_mut(&task.agent_id) {
            entry.agent.used.subtract(&task.resources);
            entry.agent.tasks = entry.agent.tasks.saturating_sub(1);
            entry.free.add(&task.resources);
        }
    }

    /// Every agent, by id.
    pub fn agents(&self) -> impl Iterator<Item = &AgentEntry> {
        self.agents.values()
    }

    /// One agent.
    pub fn agent(&self, id: &str) -> Option<&AgentEntry> {
        self.agents.get(id)
    }

    /// Forgets an agent (its tasks stay, indexed by its id, until they are pruned).
    pub fn remove_agent(&mut self, id: &str) -> Option<AgentEntry> {
        self.agents.remove(id)
    }

    /// Marks an agent as just heard from.
    pub fn touch_agent(&mut self, id: &str, now: Millis) {
        if let Some(entry) = self.agents.get_mut(id) {
            entry.last_heard = Instant::now();
            entry.agent.last_seen_at = now;
        }
    }

    /// Marks an agent as registered with this master process and just heard from.
    pub fn confirm_registration(&mut self, id: &str, now: Millis) {
        self.touch_agent(id, now);
        if let Some(entry) = self.agents.get_mut(id) {
            entry.registered = true;
        }
    }

    /// Inserts or replaces an agent; `used`, `tasks` and free resources are recomputed from its
    /// tasks (the caller's values of `used` and `tasks` are ignored).
    pub fn put_agent(&mut self, mut agent: Agent) {
        let id = agent.info.id.clone();
        let (last_heard, registered) =
            self.agents.get(&id).map_or_else(|| (Instant::now(), false), |e| (e.last_heard, e.registered));
        let mut used = Resources::default();
        let mut count = 0;
        for task in self.tasks_of_agent(&id) {
            if holds_resources(task.state) {
                used.add(&task.resources);
                count += 1;
            }
        }
        let mut free = agent.info.resources.clone();
        free.subtract(&used);
        agent.used = used;
        agent.tasks = count;
        self.agents.insert(id, AgentEntry { agent, free, last_heard, registered });
    }

    /// Whether the status update `uuid` was already applied to `task_id`.
    pub fn status_applied(&self, task_id: &str, uuid: &str) -> bool {
        self.status_uuids.get(task_id).is_some_and(|u| u.iter().any(|x| x == uuid))
    }

    /// The uuids remembered for `task_id` after applying `uuid` (to persist, then
    /// [`Self::set_status_uuids`]).
    pub fn status_uuids_with(&self, task_id: &str, uuid: &str) -> Vec<String> {
        let mut uuids = self.status_uuids.get(task_id).cloned().unwrap_or_default();
        uuids.push(uuid.to_string());
        if uuids.len() > REMEMBERED_UUIDS {
            uuids.remove(0);
        }
        uuids
    }

    /// Records the applied uuids of a task.
    pub fn set_status_uuids(&mut self, task_id: &str, uuids: Vec<String>) {
        self.status_uuids.insert(task_id.to_string(), uuids);
    }

    /// Live counts of an app's tasks.
    pub fn app_status(&self, app_id: &str, now: Millis) -> AppStatus {
        let Some(entry) = self.apps.get(app_id) else {
            return AppStatus::default();
        };
        let has_checks = !entry.record.app.definition.health_checks.is_empty();
        let mut status = AppStatus {
            instances: entry.record.app.definition.instances,
            waiting: entry.runtime.waiting.clone(),
            backoff_until: entry.runtime.backoff_until.filter(|until| *until > now),
            deployment: entry.history.active().map(|d| d.id.clone()),
            ..AppStatus::default()
        };
        for task in self.tasks_of_app(app_id) {
            match task.state {
                TaskState::Staging => status.staged += 1,
                TaskState::Running => {
                    status.running += 1;
                    match (has_checks, task.healthy) {
                        (false, _) | (true, Some(true)) => status.healthy += 1,
                        (true, Some(false)) => status.unhealthy += 1,
                        (true, None) => {}
                    }
                }
                _ => {}
            }
        }
        status
    }

    /// Ids of agents that are ACTIVE and have not been heard from for `timeout`.
    pub fn silent_agents(&self, timeout: std::time::Duration) -> Vec<String> {
        self.agents
            .values()
            .filter(|e| e.agent.state == AgentState::Active && e.last_heard.elapsed() > timeout)
            .map(|e| e.agent.info.id.clone())
            .collect()
    }

    /// Terminal tasks to forget: finished more than `max_age_ms` ago, or beyond the newest
    /// `keep` terminal tasks of their app.
    pub fn prunable_tasks(&self, now: Millis, max_age_ms: u64, keep: usize) -> Vec<String> {
        let mut out = Vec::new();
        for ids in self.tasks_by_app.values() {
            let mut terminal: Vec<&Task> =
                ids.iter().filter_map(|id| self.tasks.get(id)).filter(|t| t.state.is_terminal()).collect();
            terminal.sort_by_key(|t| std::cmp::Reverse(t.finished_at.unwrap_or(0)));
            for (i, task) in terminal.iter().enumerate() {
                let old = now.saturating_sub(task.finished_at.unwrap_or(0)) > max_age_ms;
                if old || i >= keep {
                    out.push(task.id.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::{AgentInfo, PortRange};

    fn agent(id: &str) -> Agent {
        Agent {
            info: AgentInfo {
                id: id.to_string(),
                hostname: format!("{id}.local"),
                endpoint: "http://127.0.0.1:1".to_string(),
                resources: Resources {
                    ports: vec![PortRange { begin: 31000, end: 31009 }],
                    ..Resources::scalar(4.0, 4096.0, 1000.0, 0)
                },
                attributes: BTreeMap::new(),
                version: String::new(),
            },
            state: AgentState::Active,
            drain: None,
            registered_at: 0,
            last_seen_at: 0,
            used: Resources::default(),
            tasks: 0,
        }
    }

    fn task(id: &str, agent: &str, state: TaskState, port: u16) -> Task {
        Task {
            id: id.to_string(),
            app_id: "web".to_string(),
            app_version: 1,
            agent_id: agent.to_string(),
            host: String::new(),
            state,
            healthy: None,
            ports: vec![port],
            resources: Resources { ports: Resources::from_ports(&[port]), ..Resources::scalar(1.0, 100.0, 0.0, 0) },
            staged_at: 0,
            started_at: None,
            finished_at: None,
            exit_code: None,
            message: None,
            limits: Vec::new(),
        }
    }

    #[test]
    fn free_resources_follow_task_changes() {
        let mut state = ClusterState::default();
        state.put_agent(agent("a1"));
        state.put_task(task("t1", "a1", TaskState::Staging, 31000));
        state.put_task(task("t2", "a1", TaskState::Running, 31005));
        let entry = state.agent("a1").expect("agent");
        assert_eq!(entry.free.cpus, 2.0);
        assert!(!entry.free.has_port(31000));
        assert_eq!(entry.agent.tasks, 2);
        state.put_task(task("t1", "a1", TaskState::Failed, 31000));
        let entry = state.agent("a1").expect("agent");
        assert_eq!(entry.free.cpus, 3.0);
        assert!(entry.free.has_port(31000));
        assert_eq!(entry.agent.tasks, 1);
        state.remove_task("t2");
        assert_eq!(state.agent("a1").expect("agent").free, agent("a1").info.resources);
        assert!(state.tasks_of_app("web").iter().all(|t| t.id == "t1"));
        assert!(state.tasks_of_agent("a1").len() == 1);
    }

    #[test]
    fn re_registered_agent_recomputes_free_from_its_tasks() {
        let mut state = ClusterState::default();
        state.put_task(task("t1", "a1", TaskState::Running, 31000));
        state.put_agent(agent("a1"));
        let entry = state.agent("a1").expect("agent");
        assert_eq!(entry.agent.tasks, 1);
        assert_eq!(entry.free.cpus, 3.0);
    }

    #[test]
    fn prunes_old_and_excess_terminal_tasks() {
        let mut state = ClusterState::default();
        for i in 0..5u64 {
            let mut t = task(&format!("t{i}"), "a1", TaskState::Failed, 31000);
            t.finished_at = Some(1000 + i);
            state.put_task(t);
        }
        let mut pruned = state.prunable_tasks(1005, 3, 2);
        pruned.sort();
        assert_eq!(pruned, vec!["t0", "t1", "t2"]);
    }
}
