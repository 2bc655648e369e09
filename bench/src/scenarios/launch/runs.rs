//! Submitting one job run and waiting for its task's RUNNING event, with what is needed to
//! break its latency down afterwards: the wall-clock instants of the submit and of the event,
//! and the task's sandbox on its agent.

use crate::cluster::LocalCluster;
use anyhow::{Context, bail};
use gantry_api::{Event, TaskState};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

/// How long a run may take to reach RUNNING (a first pull of a large image included).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the tasks launched may take to end once the measurements are done.
const END_TIMEOUT: Duration = Duration::from_secs(60);

/// Submits runs on a cluster and follows its event stream.
#[derive(Debug)]
pub struct Launcher<'a> {
    cluster: &'a LocalCluster,
    events: UnboundedReceiver<(Instant, Event)>,
    /// Each agent's work dir, by agent id.
    work_dirs: HashMap<String, PathBuf>,
    /// Tasks seen RUNNING (or already ended) that have not been seen ending.
    live: HashSet<String>,
    /// Tasks seen ending.
    ended: HashSet<String>,
}

/// One run that reached RUNNING.
#[derive(Debug, Clone)]
pub struct Launched {
    /// The agent that ran it.
    pub agent_id: String,
    /// Submit → RUNNING event.
    pub latency: Duration,
    /// Submit → STAGING event, when one was seen.
    pub staged: Option<Duration>,
    /// When the run was submitted (wall clock, to compare with file times).
    pub submitted_at: SystemTime,
    /// When its RUNNING event arrived (wall clock).
    pub running_at: SystemTime,
    /// The task's sandbox on its agent, when the agent is one of the cluster's.
    pub sandbox: Option<PathBuf>,
}

impl<'a> Launcher<'a> {
    /// Subscribes to the cluster's events and learns where the work dirs of its `agents`
    /// agents (`host-<i>`, `<cluster dir>/agent-<i>`) are.
    pub async fn new(cluster: &'a LocalCluster, agents: usize) -> anyhow::Result<Self> {
        let mut work_dirs = HashMap::new();
        for i in 0..agents {
            work_dirs.insert(cluster.agent_id(i).await?, cluster.dir.path().join(format!("agent-{i}")));
        }
        let events = crate::events::subscribe(&cluster.client).await?;
        Ok(Self { cluster, events, work_dirs, live: HashSet::new(), ended: HashSet::new() })
    }

    /// Starts a run of `job` and waits until its task is RUNNING (or already FINISHED); a task
    /// that fails to start is an error with the agent's reason.
    pub async fn launch(&mut self, job: &str) -> anyhow::Result<Launched> {
        let submitted = Instant::now();
        let submitted_at = SystemTime::now();
        let run = self.cluster.client.start_job_run(job).await?;
        let prefix = format!("{job}_{}_", run.id);
        let deadline = submitted + RUN_TIMEOUT;
        let mut staged = None;
        loop {
            let Ok(Some((received, event))) = tokio::time::timeout_at(deadline, self.events.recv()).await else {
                bail!("run {} of job {job} did not reach RUNNING within {RUN_TIMEOUT:?}", run.id);
            };
            let Event::TaskChanged { task_id, agent_id, state, message, .. } = event else { continue };
            self.follow(&task_id, state);
            if !task_id.starts_with(&prefix) {
                continue;
            }
            match state {
                TaskState::Staging => {
                    staged.get_or_insert(received - submitted);
                }
                TaskState::Running | TaskState::Finished => {
                    let latency = received - submitted;
                    let sandbox = self.work_dirs.get(&agent_id).map(|dir| dir.join("tasks").join(&task_id));
                    return Ok(Launched {
                        agent_id,
                        latency,
                        staged,
                        submitted_at,
                        running_at: submitted_at + latency,
                        sandbox,
                    });
                }
                other => bail!(
                    "task {task_id} of job {job} became {} before RUNNING: {}",
                    other.name(),
                    message.as_deref().unwrap_or("no reason given")
                ),
            }
        }
    }

    /// Waits (up to a minute) until every task seen running has ended, so that the cluster is
    /// dropped with no task left to kill.
    pub async fn wait_all_ended(&mut self) {
        let deadline = Instant::now() + END_TIMEOUT;
        while !self.live.is_empty() {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some((_, Event::TaskChanged { task_id, state, .. }))) => self.follow(&task_id, state),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        if !self.live.is_empty() {
            crate::report::progress(&format!("{} tasks still running after {END_TIMEOUT:?}", self.live.len()));
        }
    }

    fn follow(&mut self, task_id: &str, state: TaskState) {
        if state.is_terminal() {
            self.live.remove(task_id);
            self.ended.insert(task_id.to_string());
        } else if state == TaskState::Running && !self.ended.contains(task_id) {
            self.live.insert(task_id.to_string());
        }
    }

    /// The work dir of the agent `agent_id`.
    pub fn work_dir(&self, agent_id: &str) -> anyhow::Result<&PathBuf> {
        self.work_dirs.get(agent_id).with_context(|| format!("agent {agent_id} is not one of the bench's"))
    }
}
