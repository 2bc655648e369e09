//! `/api/v1/jobs`: create, read, replace and delete jobs; start, list, show and stop their runs.
//!
//! Job and app ids share one namespace: a job whose id names an app is a 409. Replacing a
//! definition does not touch active runs (their next attempt uses the new one). Starting a run
//! stores it INITIAL; stopping one stores the request; the jobs framework does the rest.

use crate::allocator::{Kill, kill_change};
use crate::api::{ApiFailure, parse_json};
use crate::jobs::cron::Compiled;
use crate::jobs::framework::run_event;
use crate::jobs::new_run_id;
use crate::master::{Change, Edit, Master};
use crate::security::auth::Caller;
use crate::state::ClusterState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use gantry_api::job::{JobStatus, RunTrigger};
use gantry_api::{Event, Job, JobDefinition, JobRun, Millis, RunStatus};
use serde::Deserialize;
use std::sync::Arc;
use tracing::info;

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new()
        .route("/api/v1/jobs", get(list).post(create))
        .route("/api/v1/jobs/{id}", get(show).put(put).delete(delete))
        .route("/api/v1/jobs/{id}/runs", get(list_runs).post(start_run))
        .route("/api/v1/jobs/{id}/runs/{run}", get(show_run))
        .route("/api/v1/jobs/{id}/runs/{run}/stop", post(stop_run))
}

/// Query of `DELETE /api/v1/jobs/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Stop active runs instead of refusing with 409.
    #[serde(default)]
    pub stop_current_runs: bool,
}

/// A job with its run summary.
pub fn job_view(state: &ClusterState, id: &str, now: Millis) -> Option<Job> {
    let mut job = state.job(id)?.clone();
    let mut status = JobStatus::default();
    let mut newest: Option<&JobRun> = None;
    for run in state.job_runs(id) {
        match run.status {
            RunStatus::Success => status.successful_runs += 1,
            RunStatus::Failed => status.failed_runs += 1,
            _ => status.active_runs += 1,
        }
        if newest.is_none_or(|n| (run.created_at, &run.id) > (n.created_at, &n.id)) {
            newest = Some(run);
        }
    }
    status.last_run = newest.map(|r| r.status);
    status.next_run_at = job
        .definition
        .schedules
        .iter()
        .filter(|s| s.enabled)
        .filter_map(|s| Compiled::new(s).ok()?.next_after(now))
        .min();
    job.status = status;
    Some(job)
}

fn not_found(id: &str) -> ApiFailure {
    ApiFailure::not_found(format!("no job `{id}`"))
}

fn run_not_found(id: &str, run: &str) -> ApiFailure {
    ApiFailure::not_found(format!("job `{id}` has no run `{run}`"))
}

fn parse_definition(body: &[u8]) -> Result<JobDefinition, ApiFailure> {
    let definition: JobDefinition = parse_json(body)?;
    definition.validate().map_err(|e| ApiFailure::invalid(Some(e.field), e.message))?;
    Ok(definition)
}

fn refuse_app_id(state: &ClusterState, id: &str) -> Result<(), ApiFailure> {
    if state.app(id).is_some() {
        return Err(ApiFailure::conflict(format!("an app is named `{id}`; jobs and apps share one namespace")));
    }
    Ok(())
}

async fn list(State(master): State<Arc<Master>>) -> Json<Vec<Job>> {
    let now = gantry_api::now_millis();
    let state = master.lock();
    Json(state.jobs().filter_map(|j| job_view(&state, &j.definition.id, now)).collect())
}

async fn show(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<Job>, ApiFailure> {
    let state = master.lock();
    job_view(&state, &id, gantry_api::now_millis()).map(Json).ok_or_else(|| not_found(&id))
}

async fn create(
    State(master): State<Arc<Master>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<(StatusCode, Json<Job>), ApiFailure> {
    let definition = parse_definition(&body)?;
    caller.may_read_secrets(definition.run.secret_names())?;
    let mut state = master.lock();
    if state.job(&definition.id).is_some() {
        return Err(ApiFailure::conflict(format!(
            "job `{}` exists; use PUT /api/v1/jobs/{} to update it",
            definition.id, definition.id
        )));
    }
    refuse_app_id(&state, &definition.id)?;
    store_job(&master, &mut state, definition, None).map(|job| (StatusCode::CREATED, Json(job)))
}

fn store_job(
    master: &Master,
    state: &mut ClusterState,
    definition: JobDefinition,
    created_at: Option<Millis>,
) -> Result<Job, ApiFailure> {
    let now = gantry_api::now_millis();
    let id = definition.id.clone();
    let job = Job { definition, created_at: created_at.unwrap_or(now), updated_at: now, status: JobStatus::default() };
    let mut change = Change::of([Edit::PutJob(job)]);
    change.events.push(Event::JobUpdated { job_id: id.clone(), at: now });
    master.commit(state, change)?;
    info!(job_id = %id, created = created_at.is_none(), "Job stored.");
    job_view(state, &id, now).ok_or_else(|| not_found(&id))
}

async fn put(
    State(master): State<Arc<Master>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Job>), ApiFailure> {
    let definition = parse_definition(&body)?;
    caller.may_read_secrets(definition.run.secret_names())?;
    super::same_id(&definition.id, &id)?;
    let mut state = master.lock();
    let Some(existing) = state.job(&id) else {
        refuse_app_id(&state, &id)?;
        return store_job(&master, &mut state, definition, None).map(|job| (StatusCode::CREATED, Json(job)));
    };
    if existing.definition == definition {
        let job = job_view(&state, &id, gantry_api::now_millis()).ok_or_else(|| not_found(&id))?;
        return Ok((StatusCode::OK, Json(job)));
    }
    let created_at = existing.created_at;
    store_job(&master, &mut state, definition, Some(created_at)).map(|job| (StatusCode::OK, Json(job)))
}

async fn delete(
    State(master): State<Arc<Master>>,
    Path(id): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Result<Json<Job>, ApiFailure> {
    let now = gantry_api::now_millis();
    let mut state = master.lock();
    let job = job_view(&state, &id, now).ok_or_else(|| not_found(&id))?;
    if job.status.active_runs > 0 && !query.stop_current_runs {
        return Err(ApiFailure::conflict(format!(
            "job `{id}` has {} active run(s); stop them first or pass stop_current_runs=true",
            job.status.active_runs
        )));
    }
    let grace = job.definition.run.kill_grace_period;
    let kills: Vec<Kill> = state
        .tasks_of_app(&id)
        .into_iter()
        .filter(|t| crate::jobs::is_job_task(t) && t.state.is_active())
        .map(|t| Kill { task_id: t.id.clone(), grace_period_secs: grace, reason: None })
        .collect();
    let mut change = kill_change(&state, &kills, "its job was deleted", now);
    for run in state.job_runs(&id) {
        change.push(Edit::RemoveJobRun(id.clone(), run.id.clone()));
    }
    change.push(Edit::RemoveJob(id.clone()));
    change.events.push(Event::JobDeleted { job_id: id.clone(), at: now });
    master.commit(&mut state, change)?;
    info!(job_id = %id, killed = kills.len(), "Job deleted.");
    Ok(Json(job))
}

async fn list_runs(State(master): State<Arc<Master>>, Path(id): Path<String>) -> Result<Json<Vec<JobRun>>, ApiFailure> {
    let state = master.lock();
    if state.job(&id).is_none() {
        return Err(not_found(&id));
    }
    let mut runs: Vec<JobRun> = state.job_runs(&id).cloned().collect();
    runs.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    Ok(Json(runs))
}

async fn show_run(
    State(master): State<Arc<Master>>,
    Path((id, run)): Path<(String, String)>,
) -> Result<Json<JobRun>, ApiFailure> {
    let state = master.lock();
    if state.job(&id).is_none() {
        return Err(not_found(&id));
    }
    state.job_run(&id, &run).cloned().map(Json).ok_or_else(|| run_not_found(&id, &run))
}

async fn start_run(
    State(master): State<Arc<Master>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobRun>), ApiFailure> {
    let now = gantry_api::now_millis();
    let mut state = master.lock();
    if state.job(&id).is_none() {
        return Err(not_found(&id));
    }
    let run = JobRun::new(&id, new_run_id(now), RunTrigger::Manual, now);
    let mut change = Change::of([Edit::PutJobRun(run.clone())]);
    change.events.push(run_event(&run, now));
    master.commit(&mut state, change)?;
    info!(job_id = %id, run_id = %run.id, "Job run requested.");
    Ok((StatusCode::CREATED, Json(run)))
}

async fn stop_run(
    State(master): State<Arc<Master>>,
    Path((id, run_id)): Path<(String, String)>,
) -> Result<Json<JobRun>, ApiFailure> {
    let now = gantry_api::now_millis();
    let mut state = master.lock();
    if state.job(&id).is_none() {
        return Err(not_found(&id));
    }
    let mut run = state.job_run(&id, &run_id).cloned().ok_or_else(|| run_not_found(&id, &run_id))?;
    if run.status.is_terminal() {
        return Err(ApiFailure::conflict(format!("run `{run_id}` of job `{id}` already ended {}", run.status)));
    }
    if !run.stop_requested {
        run.stop_requested = true;
        run.message = Some("stop requested".to_string());
        let mut change = Change::of([Edit::PutJobRun(run.clone())]);
        change.events.push(run_event(&run, now));
        master.commit(&mut state, change)?;
        info!(job_id = %id, %run_id, "Job run stop requested.");
    }
    Ok(Json(run))
}
