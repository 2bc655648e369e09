//! `GET /api/v1/events`: server-sent events, one JSON [`Event`] per message, named by its type.
//! A subscriber that falls behind skips what it missed; the stream ends at shutdown.

use crate::master::Master;
use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use futures_util::{Stream, StreamExt};
use gantry_api::Event;
use std::convert::Infallible;
use std::sync::Arc;
use tokio_stream::wrappers::BroadcastStream;

/// The routes of this resource.
pub fn routes() -> Router<Arc<Master>> {
    Router::new().route("/api/v1/events", get(events))
}

/// The SSE `event:` name of an event (its `type`).
pub fn event_name(event: &Event) -> &'static str {
    match event {
        Event::AppUpdated { .. } => "app_updated",
        Event::AppDeleted { .. } => "app_deleted",
        Event::TaskChanged { .. } => "task_changed",
        Event::AgentChanged { .. } => "agent_changed",
        Event::AgentDrainChanged { .. } => "agent_drain_changed",
        Event::AgentRemoved { .. } => "agent_removed",
        Event::JobUpdated { .. } => "job_updated",
        Event::JobDeleted { .. } => "job_deleted",
        Event::JobRunChanged { .. } => "job_run_changed",
        Event::DeploymentChanged { .. } => "deployment_changed",
    }
}

async fn events(State(master): State<Arc<Master>>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut shutdown = master.shutdown_signal();
    let stream = BroadcastStream::new(master.subscribe())
        .filter_map(|item| async move {
            let event = item.ok()?;
            let data = serde_json::to_string(&event).ok()?;
            Some(Ok(SseEvent::default().event(event_name(&event)).data(data)))
        })
        .take_until(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
