//! Drains and removals of agents: the pure decisions behind `POST|GET|DELETE
//! /api/v1/agents/{id}/drain`, `DELETE /api/v1/agents/{id}` and the housekeeping loop's deadline
//! check. State and time in, a [`Change`] (or kills, or a status) out; no I/O, no clock.
//!
//! What a drain means, and where each part lives:
//! - The drain is stored with its agent ([`gantry_api::Agent::drain`]), so neither the agent's
//!   restart (registration keeps it) nor the master's loses it.
//! - A draining agent gets no offers (`allocator::build_offers`), so no new task lands on it.
//! - The services reconciler treats its tasks as leaving (`services::reconcile`): each is
//!   replaced elsewhere first and stopped once ready replacements keep the app at its minimum
//!   health capacity.
//! - Job runs on it go on; when the deadline passes, whatever is still active on the agent is
//!   killed ([`overdue_kills`]) with [`DEADLINE_PASSED`] as the reason, which a run killed so
//!   reports.
//! - Cancelling ([`cancel`]) lets the agent take tasks again. Removing the agent ([`removal`])
//!   forgets it: `GET /api/v1/agents` no longer lists it, and tasks it still had are LOST (and so
//!   replaced).

use crate::allocator::{Kill, task_event};
use crate::master::{Change, Edit};
use crate::state::ClusterState;
use gantry_api::{AgentDrain, AgentState, DrainStatus, Event, Millis, Task, TaskState};

/// Why a task was killed when its agent's drain deadline passed.
pub const DEADLINE_PASSED: &str = "its agent's drain deadline passed";

/// Why a draining agent's tasks cannot move: there is nowhere to go.
pub const NOWHERE_TO_GO: &str = "no other agent accepts tasks";

/// Why a draining agent's tasks cannot move: the master cannot reach the agent (they are
/// replaced elsewhere or given up already, and end when it comes back or is removed).
pub const UNREACHABLE: &str = "the agent is unreachable: its tasks are replaced elsewhere or given up";

/// Why a task still on an agent that was removed is LOST.
pub const AGENT_REMOVED: &str = "its agent was removed from the cluster";

/// Grace period of kills for tasks whose workload is unknown.
const DEFAULT_GRACE_SECS: f64 = 5.0;

/// The change that starts draining `agent_id` with a deadline `deadline_ms` from `now`, or moves
/// the deadline of a drain under way (its start stays). `None` for an unknown agent.
pub fn start(state: &ClusterState, agent_id: &str, deadline_ms: u64, now: Millis) -> Option<Change> {
    let mut agent = state.agent(agent_id)?.agent.clone();
    let started_at = agent.drain.map_or(now, |d| d.started_at);
    agent.drain = Some(AgentDrain { started_at, deadline: now.saturating_add(deadline_ms) });
    Some(drain_changed(agent, now))
}

/// The change that cancels the drain of `agent_id` (empty when it is not draining). `None` for
/// an unknown agent.
pub fn cancel(state: &ClusterState, agent_id: &str, now: Millis) -> Option<Change> {
    let mut agent = state.agent(agent_id)?.agent.clone();
    if agent.drain.take().is_none() {
        return Some(Change::default());
    }
    Some(drain_changed(agent, now))
}

fn drain_changed(agent: gantry_api::Agent, now: Millis) -> Change {
    let event = Event::AgentDrainChanged {
        agent_id: agent.info.id.clone(),
        hostname: agent.info.hostname.clone(),
        drain: agent.drain,
        at: now,
    };
    let mut change = Change::of([Edit::PutAgent(agent)]);
    change.events.push(event);
    change
}

/// The drain of `agent_id` and what is left on it at `now`. `None` for an unknown agent.
pub fn status(state: &ClusterState, agent_id: &str, now: Millis) -> Option<DrainStatus> {
    let entry = state.agent(agent_id)?;
    let agent = &entry.agent;
    let tasks: Vec<Task> =
        state.tasks_of_agent(agent_id).into_iter().filter(|t| !t.state.is_terminal()).cloned().collect();
    let elsewhere = state.agents().any(|e| e.agent.info.id != agent_id && e.agent.accepts_tasks());
    let stuck = if agent.drain.is_none() || tasks.is_empty() {
        None
    } else if agent.state == AgentState::Unreachable {
        Some(UNREACHABLE.to_string())
    } else if !elsewhere && tasks.iter().any(|t| t.state.is_active()) {
        Some(NOWHERE_TO_GO.to_string())
    } else {
        None
    };
    Some(DrainStatus {
        agent_id: agent_id.to_string(),
        hostname: agent.info.hostname.clone(),
        state: agent.state,
        drain: agent.drain,
        deadline_passed: agent.drain.is_some_and(|d| now >= d.deadline),
        tasks,
        stuck,
    })
}

/// Kills of every task still STAGING or RUNNING on a draining agent whose deadline passed.
pub fn overdue_kills(state: &ClusterState, now: Millis) -> Vec<Kill> {
    let mut kills = Vec::new();
    for entry in state.agents() {
        if entry.agent.drain.is_none_or(|d| now < d.deadline) {
            continue;
        }
        for task in state.tasks_of_agent(&entry.agent.info.id).into_iter().filter(|t| t.state.is_active()) {
            kills.push(Kill {
                task_id: task.id.clone(),
                grace_period_secs: grace_of(state, &task.app_id),
                reason: Some(DEADLINE_PASSED.to_string()),
            });
        }
    }
    kills
}

/// The kill grace period of a workload (app or job).
fn grace_of(state: &ClusterState, workload_id: &str) -> f64 {
    state
        .app(workload_id)
        .map(|e| e.record.app.definition.kill_grace_period)
        .or_else(|| state.job(workload_id).map(|j| j.definition.run.kill_grace_period))
        .unwrap_or(DEFAULT_GRACE_SECS)
}

/// The change that forgets `agent_id` (its certificate is revoked separately): its record goes,
/// and tasks it still had that have not ended are LOST, so their apps and jobs replace them.
/// `None` for an unknown agent.
pub fn removal(state: &ClusterState, agent_id: &str, now: Millis) -> Option<Change> {
    let agent = &state.agent(agent_id)?.agent;
    let mut change = Change::of([Edit::RemoveAgent(agent_id.to_string())]);
    for task in state.tasks_of_agent(agent_id).into_iter().filter(|t| !t.state.is_terminal()) {
        let mut lost = task.clone();
        lost.state = TaskState::Lost;
        lost.finished_at = Some(now);
        lost.message = Some(AGENT_REMOVED.to_string());
        change.events.push(task_event(&lost, now));
        change.push(Edit::PutTask(lost));
    }
    change.events.push(Event::AgentRemoved {
        agent_id: agent_id.to_string(),
        hostname: agent.info.hostname.clone(),
        at: now,
    });
    Some(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::{Agent, AgentInfo, Resources};
    use std::collections::BTreeMap;

    fn agent(id: &str) -> Agent {
        Agent {
            info: AgentInfo {
                id: id.to_string(),
                hostname: format!("{id}.local"),
                endpoint: "https://127.0.0.1:1".to_string(),
                resources: Resources::scalar(4.0, 4096.0, 1000.0, 0),
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

    fn task(id: &str, workload: &str, agent: &str, state: TaskState) -> Task {
        Task {
            id: id.to_string(),
            app_id: workload.to_string(),
            app_version: 1,
            agent_id: agent.to_string(),
            host: format!("{agent}.local"),
            state,
            healthy: None,
            ports: vec![],
            resources: Resources::scalar(0.5, 64.0, 0.0, 0),
            staged_at: 0,
            started_at: None,
            finished_at: None,
            exit_code: None,
            message: None,
            limits: Vec::new(),
        }
    }

    /// Applies a change to memory as `Master::commit` does after storing it.
    fn apply(change: Change, state: &mut ClusterState) {
        for edit in change.edits().to_vec() {
            edit.apply(state);
        }
    }

    fn cluster() -> ClusterState {
        let mut state = ClusterState::default();
        for id in ["a1", "a2"] {
            state.put_agent(agent(id));
        }
        state.put_task(task("web.1", "web", "a1", TaskState::Running));
        state.put_task(task("nightly_r1_1", "nightly", "a1", TaskState::Running));
        state.put_task(task("web.0", "web", "a1", TaskState::Finished));
        state.put_task(task("web.2", "web", "a2", TaskState::Running));
        state
    }

    #[test]
    fn a_drain_is_stored_with_its_agent_and_asking_again_moves_only_the_deadline() {
        let mut state = cluster();
        assert!(start(&state, "nope", 1000, 5).is_none());
        let change = start(&state, "a1", 60_000, 1_000).expect("known agent");
        assert!(matches!(&change.events[..], [Event::AgentDrainChanged { drain: Some(_), .. }]));
        apply(change, &mut state);
        let drain = state.agent("a1").and_then(|e| e.agent.drain).expect("draining");
        assert_eq!(drain, AgentDrain { started_at: 1_000, deadline: 61_000 });
        assert!(!state.agent("a1").expect("a1").agent.accepts_tasks());
        apply(start(&state, "a1", 10_000, 2_000).expect("again"), &mut state);
        let drain = state.agent("a1").and_then(|e| e.agent.drain).expect("draining");
        assert_eq!(drain, AgentDrain { started_at: 1_000, deadline: 12_000 });
        apply(cancel(&state, "a1", 3_000).expect("known"), &mut state);
        assert!(state.agent("a1").expect("a1").agent.accepts_tasks());
        assert!(cancel(&state, "a1", 4_000).expect("known").is_empty(), "cancelling twice changes nothing");
    }

    #[test]
    fn status_lists_what_is_left_and_says_when_nothing_can_move() {
        let mut state = cluster();
        let idle = status(&state, "a1", 0).expect("known");
        assert_eq!((idle.drain, idle.deadline_passed, idle.stuck.clone()), (None, false, None));
        assert!(!idle.done());
        apply(start(&state, "a1", 1_000, 0).expect("drain"), &mut state);
        let s = status(&state, "a1", 500).expect("known");
        let left: Vec<&str> = s.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(left, vec!["nightly_r1_1", "web.1"], "terminal tasks are not left");
        assert_eq!((s.deadline_passed, s.stuck.clone()), (false, None), "a2 takes tasks");
        assert!(status(&state, "a1", 1_000).expect("known").deadline_passed);
        apply(start(&state, "a2", 1_000, 0).expect("drain a2 too"), &mut state);
        assert_eq!(status(&state, "a1", 500).expect("known").stuck.as_deref(), Some(NOWHERE_TO_GO));
        let mut gone = state.agent("a1").expect("a1").agent.clone();
        gone.state = AgentState::Unreachable;
        state.put_agent(gone.clone());
        assert_eq!(status(&state, "a1", 500).expect("known").stuck.as_deref(), Some(UNREACHABLE));
        gone.state = AgentState::Active;
        state.put_agent(gone);
        for id in ["web.1", "nightly_r1_1"] {
            let mut t = state.task(id).cloned().expect("task");
            t.state = TaskState::Killed;
            state.put_task(t);
        }
        let s = status(&state, "a1", 500).expect("known");
        assert!(s.done() && s.stuck.is_none(), "{s:?}");
    }

    #[test]
    fn at_the_deadline_what_is_still_active_is_killed_with_the_reason() {
        let mut state = cluster();
        let mut killing = task("web.3", "web", "a1", TaskState::Killing);
        killing.message = Some("scaled down".into());
        state.put_task(killing);
        apply(start(&state, "a1", 1_000, 0).expect("drain"), &mut state);
        assert!(overdue_kills(&state, 999).is_empty(), "before the deadline nothing is killed");
        let kills = overdue_kills(&state, 1_000);
        let mut ids: Vec<&str> = kills.iter().map(|k| k.task_id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, vec!["nightly_r1_1", "web.1"], "only STAGING and RUNNING tasks, only on a1");
        assert!(kills.iter().all(|k| k.reason.as_deref() == Some(DEADLINE_PASSED)));
        assert!(kills.iter().all(|k| k.grace_period_secs == DEFAULT_GRACE_SECS), "unknown workloads");
    }

    #[test]
    fn a_removed_agent_is_forgotten_and_its_live_tasks_are_lost() {
        let mut state = cluster();
        assert!(removal(&state, "nope", 1).is_none());
        let change = removal(&state, "a1", 7).expect("known");
        assert!(matches!(change.events.last(), Some(Event::AgentRemoved { agent_id, .. }) if agent_id == "a1"));
        apply(change, &mut state);
        assert!(state.agent("a1").is_none());
        assert_eq!(state.agents().count(), 1);
        let web1 = state.task("web.1").expect("kept until pruned");
        assert_eq!(
            (web1.state, web1.finished_at, web1.message.as_deref()),
            (TaskState::Lost, Some(7), Some(AGENT_REMOVED))
        );
        assert_eq!(state.task("web.0").map(|t| t.state), Some(TaskState::Finished), "ended tasks stay as they were");
        assert_eq!(state.task("web.2").map(|t| t.state), Some(TaskState::Running), "other agents' tasks are untouched");
    }
}
