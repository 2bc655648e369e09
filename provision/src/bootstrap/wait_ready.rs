//! `wait-ready`: waits until the daemon serves — a master answers `GET /health`; an agent is
//! registered and ACTIVE in the master's agent list under its hostname. On timeout the error
//! carries the end of the daemon's log.

use super::{BootstrapError, HostContext, Phase, PhaseOutcome};
use crate::cluster_api::AgentView;
use crate::cluster_file::Role;
use crate::transport::Command;
use futures_util::future::BoxFuture;
use gantry_api::AgentState;
use std::time::{Duration, Instant};

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct WaitReady;

/// How often readiness is polled, at most.
pub(crate) const POLL: Duration = Duration::from_millis(100);
/// The first poll interval: a daemon is usually ready within tens of milliseconds of its start
/// (an agent joins and registers in about 20 ms), so the wait starts short and grows to [`POLL`].
const FIRST_POLL: Duration = Duration::from_millis(5);

/// The last `lines` lines of the daemon's log, indented, or empty.
pub(crate) async fn log_tail(host: &HostContext, lines: usize) -> String {
    let log = super::quote(host.access.layout.log_file(host.role).display().to_string());
    let command = Command::new(format!("tail -n {lines} {log} 2>/dev/null; exit 0"), Duration::from_secs(10));
    match host.access.transport.run(&command).await {
        Ok(output) => output.stdout.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n"),
        Err(_) => String::new(),
    }
}

impl Phase for WaitReady {
    fn name(&self) -> &'static str {
        "wait-ready"
    }

    fn run<'a>(&'a self, host: &'a mut HostContext) -> BoxFuture<'a, Result<PhaseOutcome, BootstrapError>> {
        Box::pin(async move {
            let started = Instant::now();
            let (url, what) = match host.role {
                Role::Master => (host.access.public_master_url(), "the master's API to answer".to_string()),
                Role::Agent => (
                    host.api_url.clone().or_else(|| host.master_url.clone()).unwrap_or_default(),
                    format!("agent {} to be ACTIVE at the master", host.name),
                ),
            };
            let mut last = String::from("no answer yet");
            let mut poll = FIRST_POLL;
            while started.elapsed() < host.ready_timeout {
                let ready = match host.role {
                    Role::Master => host.api.health(&url).await.map(|()| true),
                    Role::Agent => host.api.agent(&url, &host.name).await.map(|view| match view {
                        Some(AgentView { state: AgentState::Active, .. }) => true,
                        Some(view) => {
                            last = format!("the master reports it {}", view.state);
                            false
                        }
                        None => {
                            last = "not registered yet".to_string();
                            false
                        }
                    }),
                };
                match ready {
                    Ok(true) => {
                        return Ok(PhaseOutcome::Done(match host.role {
                            Role::Master => url,
                            Role::Agent => "ACTIVE".to_string(),
                        }));
                    }
                    Ok(false) => {}
                    Err(e) => last = e.to_string(),
                }
                tokio::time::sleep(poll).await;
                poll = (poll * 2).min(POLL);
            }
            Err(BootstrapError::NotReady {
                host: host.name.clone(),
                what,
                waited: host.ready_timeout,
                last,
                log_tail: log_tail(host, 20).await,
            })
        })
    }
}
