//! The master's side of the agent protocol (`gantry_api::protocol`): registration with task
//! reconciliation, the NDJSON command stream, heartbeats, status updates, and unreachable
//! detection.
//!
//! Every change is stored (through [`Master::commit`]) before the agent gets its answer, so an
//! acknowledged status update survives a crash. Status updates are idempotent (uuids are
//! remembered per task) and terminal states never change. This module decides nothing about how
//! many instances an app needs beyond registration's "does the app still want this one".

use crate::allocator::task_event;
use crate::api::{ApiFailure, parse_json};
use crate::master::{Change, Edit, Master};
use crate::security::auth::Caller;
use crate::services::backoff;
use crate::state::ClusterState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::StreamExt;
use gantry_api::protocol::{AgentCommand, Heartbeat, PREFIX, RegisterAgent, Registered, StatusUpdate, TaskReport};
use gantry_api::{Agent, AgentState, Event, Millis, Task, TaskState};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tracing::{debug, info, warn};

/// Grace period of kills for tasks whose app is unknown.
const DEFAULT_GRACE_SECS: f64 = 5.0;

/// The routes of the protocol.
pub fn routes() -> Router<Arc<Master>> {
    Router::new()
        .route(&format!("{PREFIX}/register"), post(register))
        .route(&format!("{PREFIX}/{{id}}/commands"), get(commands))
        .route(&format!("{PREFIX}/{{id}}/heartbeat"), post(heartbeat))
        .route(&format!("{PREFIX}/{{id}}/status"), post(status))
}

fn unknown_agent(id: &str) -> ApiFailure {
    ApiFailure::not_found(format!("unknown agent `{id}`: register again"))
}

fn kill_command(agent_id: &str, task_id: &str, grace_period_secs: f64) -> (String, AgentCommand) {
    (agent_id.to_string(), AgentCommand::Kill { task_id: task_id.to_string(), grace_period_secs })
}

fn grace_of(state: &ClusterState, app_id: &str) -> f64 {
    state.app(app_id).map_or(DEFAULT_GRACE_SECS, |e| e.record.app.definition.kill_grace_period)
}

/// Queues `after` (a new version of `before`) into `change`, with its event and the app's
/// backoff bookkeeping.
fn transition(state: &mut ClusterState, change: &mut Change, before: &Task, after: Task, now: Millis) {
    if let Some(policy) = state.app(&after.app_id).map(|e| e.record.app.definition.backoff.clone())
        && let Some(runtime) = state.app_runtime_mut(&after.app_id)
    {
        backoff::record(runtime, &policy, before.state, &after, now);
    }
    change.events.push(task_event(&after, now));
    change.push(Edit::PutTask(after));
}

fn finish(task: &mut Task, state: TaskState, exit_code: Option<i32>, message: Option<String>, now: Millis) {
    let was_killing = task.state == TaskState::Killing;
    task.state = state;
    task.finished_at = Some(now);
    task.exit_code = exit_code.or(task.exit_code);
    // A task the master stopped keeps the master's reason in front of the agent's account.
    task.message = match (was_killing, task.message.take(), message) {
        (true, Some(reason), Some(detail)) => Some(format!("{reason}; {detail}")),
        (_, previous, message) => message.or(previous),
    };
}

async fn register(
    State(master): State<Arc<Master>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Json<Registered>, ApiFailure> {
    let request: RegisterAgent = parse_json(&body)?;
    let id = request.info.id.clone();
    if !matches!(&caller, Caller::Agent(agent) if *agent == id) {
        return Err(ApiFailure::new(
            StatusCode::FORBIDDEN,
            format!("{} may not register as agent `{id}`", caller.describe()),
        ));
    }
    validate_info(&request.info)?;
    let now = gantry_api::now_millis();
    let mut state = master.lock();
    master.links().clear_queue(&id);
    // A drain outlives the agent's restarts: it is the master's decision, not the agent's.
    let (registered_at, drain) = state.agent(&id).map_or((now, None), |e| (e.agent.registered_at, e.agent.drain));
    let hostname = request.info.hostname.clone();
    let agent = Agent {
        info: request.info,
        state: AgentState::Active,
        drain,
        registered_at,
        last_seen_at: now,
        used: Default::default(),
        tasks: 0,
    };
    let mut change = Change::default();
    change.events.push(Event::AgentChanged {
        agent_id: id.clone(),
        hostname: hostname.clone(),
        state: AgentState::Active,
        at: now,
    });
    change.push(Edit::PutAgent(agent));
    let mut live_by_app: HashMap<String, usize> = HashMap::new();
    for report in &request.tasks {
        reconcile_report(&mut state, &mut change, &id, report, &mut live_by_app, now);
    }
    let reported: std::collections::HashSet<&str> = request.tasks.iter().map(|r| r.task_id.as_str()).collect();
    let missing: Vec<Task> = state
        .tasks_of_agent(&id)
        .into_iter()
        .filter(|t| !t.state.is_terminal() && !reported.contains(t.id.as_str()))
        .cloned()
        .collect();
    for task in missing {
        let mut after = task.clone();
        finish(&mut after, TaskState::Lost, None, Some("the agent no longer knows this task".to_string()), now);
        transition(&mut state, &mut change, &task, after, now);
    }
    let killed = change.commands.len();
    master.commit(&mut state, change)?;
    state.confirm_registration(&id, now);
    info!(agent_id = %id, hostname, reported = request.tasks.len(), killed, "Agent registered.");
    Ok(Json(Registered {
        agent_id: id,
        heartbeat_interval_ms: u64::try_from(master.config.heartbeat_interval.as_millis()).unwrap_or(u64::MAX),
    }))
}

/// Refuses agent facts that could reach a template, an env file or a log line as something else:
/// control characters anywhere, shell metacharacters in attributes, a non-URL endpoint.
fn validate_info(info: &gantry_api::AgentInfo) -> Result<(), ApiFailure> {
    crate::api::join::validate_agent_id(&info.id)?;
    let invalid = |field: String, what: &str| {
        Err(ApiFailure::invalid(Some(field), format!("{what}: letters, digits and `-_.:/=@,+` only")))
    };
    let plain = |text: &str| {
        !text.is_empty()
            && text.len() <= 256
            && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:/=@,+".contains(c))
    };
    if !plain(&info.hostname) {
        return invalid("info.hostname".to_string(), "the hostname holds characters that are not allowed");
    }
    for (key, value) in &info.attributes {
        if !plain(key) || !(value.is_empty() || plain(value)) {
            return invalid(format!("info.attributes.{key}"), "the attribute holds characters that are not allowed");
        }
    }
    if !(info.endpoint.starts_with("https://") && plain(&info.endpoint.replace(['[', ']'], ""))) {
        return Err(ApiFailure::invalid(
            Some("info.endpoint".to_string()),
            "the endpoint must be an https:// URL of the agent's own address",
        ));
    }
    Ok(())
}

/// Reconciles one task an agent reports at registration.
fn reconcile_report(
    state: &mut ClusterState,
    change: &mut Change,
    agent_id: &str,
    report: &TaskReport,
    live_by_app: &mut HashMap<String, usize>,
    now: Millis,
) {
    let known = state.task(&report.task_id).filter(|t| t.agent_id == agent_id && !t.state.is_terminal()).cloned();
    let Some(task) = known else {
        if !report.state.is_terminal() {
            change.commands.push(kill_command(agent_id, &report.task_id, DEFAULT_GRACE_SECS));
        }
        return;
    };
    let mut after = task.clone();
    if report.state.is_terminal() {
        finish(&mut after, report.state, report.exit_code, Some("reported at agent registration".to_string()), now);
        after.healthy = report.healthy.or(after.healthy);
        transition(state, change, &task, after, now);
        return;
    }
    let grace = grace_of(state, &task.app_id);
    let wanted = state.app(&task.app_id).map(|e| {
        let def = &e.record.app.definition;
        (def.instances as usize, e.record.config_version)
    });
    let kill = |after: &mut Task, change: &mut Change, why: &str| {
        after.state = TaskState::Killing;
        after.message = Some(why.to_string());
        change.commands.push(kill_command(agent_id, &task.id, grace));
    };
    let job_task = crate::jobs::is_job_task(&task) && state.job(&task.app_id).is_some();
    match (wanted, task.state) {
        (_, TaskState::Unreachable) if job_task => {
            kill(&mut after, change, "given up while its agent was unreachable");
        }
        (None, _) if !job_task => kill(&mut after, change, "its app was deleted"),
        (_, TaskState::Killing) => {
            change.commands.push(kill_command(agent_id, &task.id, grace));
        }
        (Some((instances, config_version)), TaskState::Unreachable) => {
            let live = *live_by_app.entry(task.app_id.clone()).or_insert_with(|| {
                state
                    .tasks_of_app(&task.app_id)
                    .iter()
                    .filter(|t| t.state.is_active() && t.app_version >= config_version)
                    .count()
            });
            if task.app_version >= config_version && live < instances {
                after.state = if report.state == TaskState::Staging { TaskState::Staging } else { TaskState::Running };
                after.healthy = report.healthy;
                after.message = Some("its agent is back".to_string());
                live_by_app.insert(task.app_id.clone(), live + 1);
            } else {
                kill(&mut after, change, "replaced while its agent was unreachable");
            }
        }
        _ => {
            if report.state == TaskState::Running && task.state == TaskState::Staging {
                after.state = TaskState::Running;
                after.started_at = Some(now);
            }
            after.healthy = report.healthy.or(after.healthy);
        }
    }
    if after != task {
        transition(state, change, &task, after, now);
    }
}

async fn commands(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Response, ApiFailure> {
    if master.lock().agent(&id).is_none() {
        return Err(unknown_agent(&id));
    }
    let receiver = {
        let mut links = master.links();
        let receiver = links.connect(&id);
        links.send(&id, AgentCommand::Ping);
        receiver
    };
    debug!(agent_id = %id, "Agent command stream opened.");
    let mut shutdown = master.shutdown_signal();
    let stream = UnboundedReceiverStream::new(receiver)
        .filter_map(|command| async move {
            let mut line = serde_json::to_vec(&command).ok()?;
            line.push(b'\n');
            Some(Ok::<_, Infallible>(Bytes::from(line)))
        })
        .take_until(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        });
    Response::builder()
        .header(CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiFailure::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn heartbeat(
    State(master): State<Arc<Master>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiFailure> {
    let _: Heartbeat = parse_json(&body)?;
    let mut state = master.lock();
    match state.agent(&id) {
        Some(entry) if entry.agent.state == AgentState::Active && entry.registered => {
            state.touch_agent(&id, gantry_api::now_millis());
            Ok(Json(serde_json::json!({})))
        }
        _ => Err(unknown_agent(&id)),
    }
}

async fn status(
    State(master): State<Arc<Master>>,
    Path(agent_id): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiFailure> {
    let update: StatusUpdate = parse_json(&body)?;
    let now = gantry_api::now_millis();
    let mut state = master.lock();
    if let Some(task) = state.task(&update.task_id)
        && task.agent_id != agent_id
    {
        warn!(%agent_id, task_id = %update.task_id, owner = %task.agent_id, "Status update for another agent's task refused.");
        return Err(ApiFailure::new(
            StatusCode::FORBIDDEN,
            format!("task `{}` is not assigned to agent `{agent_id}`", update.task_id),
        ));
    }
    let change = status_change(&mut state, &agent_id, &update, now);
    master.commit(&mut state, change)?;
    Ok(Json(serde_json::json!({})))
}

/// What applying one status update changes (empty when it was applied before).
pub fn status_change(state: &mut ClusterState, agent_id: &str, update: &StatusUpdate, now: Millis) -> Change {
    let mut change = Change::default();
    if state.status_applied(&update.task_id, &update.uuid) {
        debug!(task_id = %update.task_id, uuid = %update.uuid, "Duplicate status update acknowledged.");
        return change;
    }
    let Some(task) = state.task(&update.task_id).cloned() else {
        if !update.state.is_terminal() {
            warn!(agent_id, task_id = %update.task_id, "Status update for an unknown task; killing it.");
            change.commands.push(kill_command(agent_id, &update.task_id, DEFAULT_GRACE_SECS));
        }
        return change;
    };
    if task.state.is_terminal() {
        return change;
    }
    let mut after = task.clone();
    if update.state.is_terminal() {
        finish(&mut after, update.state, update.exit_code, update.message.clone(), now);
        after.healthy = update.healthy.or(after.healthy);
    } else if task.state != TaskState::Unreachable {
        if update.state == TaskState::Running && task.state == TaskState::Staging {
            after.state = TaskState::Running;
            after.started_at = Some(now);
        }
        if update.healthy.is_some() {
            after.healthy = update.healthy;
        }
        if !update.limits.is_empty() {
            after.limits = update.limits.clone();
        }
        if update.message.is_some() && task.state != TaskState::Killing {
            after.message = update.message.clone();
        }
        if !state.has_workload(&task.app_id) && after.state.is_active() {
            after.state = TaskState::Killing;
            change.commands.push(kill_command(agent_id, &task.id, DEFAULT_GRACE_SECS));
        }
    }
    change.push(Edit::StatusUuids(task.id.clone(), state.status_uuids_with(&task.id, &update.uuid)));
    if after != task {
        debug!(task_id = %task.id, from = %task.state, to = %after.state, "Task changed.");
        transition(state, &mut change, &task, after, now);
    }
    change
}

/// Marks agents silent for longer than the unreachable timeout UNREACHABLE, and their STAGING
/// and RUNNING tasks UNREACHABLE (no longer instances; the services framework replaces them).
pub fn mark_unreachable(master: &Master) {
    let mut state = master.lock();
    let silent = state.silent_agents(master.config.agent_unreachable_timeout);
    if silent.is_empty() {
        return;
    }
    let now = gantry_api::now_millis();
    let mut change = Change::default();
    for id in &silent {
        let Some(entry) = state.agent(id) else { continue };
        let mut agent = entry.agent.clone();
        agent.state = AgentState::Unreachable;
        change.events.push(Event::AgentChanged {
            agent_id: id.clone(),
            hostname: agent.info.hostname.clone(),
            state: AgentState::Unreachable,
            at: now,
        });
        change.push(Edit::PutAgent(agent));
        for task in state.tasks_of_agent(id).into_iter().filter(|t| t.state.is_active()) {
            let mut task = task.clone();
            task.state = TaskState::Unreachable;
            task.message = Some("its agent is unreachable".to_string());
            change.events.push(task_event(&task, now));
            change.push(Edit::PutTask(task));
        }
    }
    if let Err(error) = master.commit(&mut state, change) {
        warn!(%error, "Could not store unreachable agents; retrying.");
        return;
    }
    let mut links = master.links();
    for id in &silent {
        links.disconnect(id);
        warn!(agent_id = %id, "Agent unreachable; its tasks will be replaced.");
    }
}

/// Kills what still runs on draining agents whose deadline passed (see [`crate::drain`]).
pub fn enforce_drain_deadlines(master: &Master) {
    let now = gantry_api::now_millis();
    let mut state = master.lock();
    let kills = crate::drain::overdue_kills(&state, now);
    if kills.is_empty() {
        return;
    }
    let change = crate::allocator::kill_change(&state, &kills, crate::drain::DEADLINE_PASSED, now);
    if let Err(error) = master.commit(&mut state, change) {
        warn!(%error, "Could not store the kills of a passed drain deadline; retrying.");
        return;
    }
    info!(killed = kills.len(), "Drain deadline passed; killed what was left on the agent.");
}

/// Forgets terminal tasks older than an hour, keeping at most 100 per app.
pub fn prune_tasks(master: &Master) {
    let now = gantry_api::now_millis();
    let mut state = master.lock();
    let removed_tasks = state.prunable_tasks(now, 3_600_000, 100);
    if removed_tasks.is_empty() {
        return;
    }
    let change = Change::of(removed_tasks.into_iter().map(Edit::RemoveTask));
    if let Err(error) = master.commit(&mut state, change) {
        warn!(%error, "Could not prune finished tasks.");
    }
}
