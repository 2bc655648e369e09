//! `revoke-agent`: the last step of draining an agent: the master removes the agent registered
//! with this host's name — revokes its certificates, so a removed host (or a copy of its disk)
//! can no longer act as that agent, and forgets it, so `gantry node list` no longer shows it.
//! Skipped when there is no master, it cannot be asked, or no agent of that name is registered
//! (as when a previous run removed it already).

use super::{BootstrapError, HostContext, Phase, PhaseOutcome};
use futures_util::future::BoxFuture;

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct RevokeAgent;

impl Phase for RevokeAgent {
    fn name(&self) -> &'static str {
        "revoke-agent"
    }

    fn run<'a>(&'a self, host: &'a mut HostContext) -> BoxFuture<'a, Result<PhaseOutcome, BootstrapError>> {
        Box::pin(async move {
            let Some(url) = host.api_url.clone().or_else(|| host.master_url.clone()) else {
                return Ok(PhaseOutcome::Skipped("no master".to_string()));
            };
            match host.api.revoke_agent(&url, &host.name).await {
                Ok(ids) if ids.is_empty() => Ok(PhaseOutcome::Skipped("not registered".to_string())),
                Ok(ids) => Ok(PhaseOutcome::Done(format!("revoked and forgotten: {}", ids.join(", ")))),
                Err(e) => Ok(PhaseOutcome::Skipped(format!("master not reachable: {e}"))),
            }
        })
    }
}
