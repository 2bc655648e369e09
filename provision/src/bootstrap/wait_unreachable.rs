//! `wait-unreachable`: after an agent with tasks was stopped, waits until the master marks it
//! UNREACHABLE — the moment its tasks are replaced on other agents. Skipped when the agent had no
//! tasks, is not registered, or the master cannot be asked (nothing would be replaced anyway).

use super::{BootstrapError, HostContext, Phase, PhaseOutcome, wait_ready::POLL};
use futures_util::future::BoxFuture;
use gantry_api::AgentState;
use std::time::Instant;

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct WaitUnreachable;

impl Phase for WaitUnreachable {
    fn name(&self) -> &'static str {
        "wait-unreachable"
    }

    fn run<'a>(&'a self, host: &'a mut HostContext) -> BoxFuture<'a, Result<PhaseOutcome, BootstrapError>> {
        Box::pin(async move {
            let Some(url) = host.api_url.clone().or_else(|| host.master_url.clone()) else {
                return Ok(PhaseOutcome::Skipped("no master".to_string()));
            };
            let started = Instant::now();
            let mut last = String::new();
            let mut first = true;
            while started.elapsed() < host.ready_timeout {
                match host.api.agent(&url, &host.name).await {
                    Err(e) if first => return Ok(PhaseOutcome::Skipped(format!("master not reachable: {e}"))),
                    Err(e) => last = e.to_string(),
                    Ok(None) => return Ok(PhaseOutcome::Skipped("not registered".to_string())),
                    Ok(Some(view)) if view.state == AgentState::Unreachable => {
                        return Ok(PhaseOutcome::Done("UNREACHABLE: its tasks are replaced elsewhere".to_string()));
                    }
                    Ok(Some(view)) if view.tasks == 0 => {
                        return Ok(PhaseOutcome::Skipped("no tasks to replace".to_string()));
                    }
                    Ok(Some(view)) => last = format!("{} with {} tasks", view.state, view.tasks),
                }
                first = false;
                tokio::time::sleep(POLL).await;
            }
            Err(BootstrapError::NotReady {
                host: host.name.clone(),
                what: "the master to mark the stopped agent UNREACHABLE".to_string(),
                waited: host.ready_timeout,
                last,
                log_tail: String::new(),
            })
        })
    }
}
