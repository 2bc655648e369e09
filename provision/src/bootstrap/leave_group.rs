//! `leave-group`: before a master's host is destroyed, and while its daemon still runs, the
//! leader removes it from the masters' Raft group, so the group's majority is counted among the
//! masters that stay (5 → 3 leaves a group of 3 that survives one loss, not a group of 5 with two
//! gone). It runs before `stop`: removing a voter takes a majority of the group before the change
//! too, which may need this very master (3 → 2 voters). A leading master removes itself: it
//! commits the group without itself, then steps down, and the masters that stay elect one of
//! theirs (so 3 → 1 works whichever master leads). The leader refuses a removal that would leave
//! no answering majority. A master the group does not hold (removed by an earlier run) is nothing
//! to do; a master alone is skipped.

use super::{BootstrapError, HostContext, MasterMember, Phase, PhaseOutcome};
use crate::cluster_file::Role;
use futures_util::future::BoxFuture;

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct LeaveGroup;

impl Phase for LeaveGroup {
    fn name(&self) -> &'static str {
        "leave-group"
    }

    fn run<'a>(&'a self, host: &'a mut HostContext) -> BoxFuture<'a, Result<PhaseOutcome, BootstrapError>> {
        Box::pin(async move {
            if host.role != Role::Master || host.masters.len() < 2 {
                return Ok(PhaseOutcome::Skipped("not a master of a group".to_string()));
            }
            let Some(number) = MasterMember::number_of(&host.name) else {
                return Ok(PhaseOutcome::Skipped("not a numbered master".to_string()));
            };
            let others = MasterMember::others_urls(&host.masters, number);
            host.api
                .leave_master(&others, number)
                .await
                .map_err(|e| BootstrapError::Group { host: host.name.clone(), message: e.to_string() })?;
            Ok(PhaseOutcome::Done(format!("master {number} left the group")))
        })
    }
}
