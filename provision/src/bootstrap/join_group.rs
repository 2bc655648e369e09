//! `join-group`: makes a master of a group a voter of the masters' Raft group, asking the leader
//! (through the other masters' URLs) to add it: as a learner that catches up, then as a voter.
//! A master the group has already (every master of a new group: the first one made the group
//! with all of them) is nothing to do, so it runs on every bootstrap and is how `up` grows the
//! masters from 1 to 3 or 3 to 5. Skipped for a master alone and for agents.

use super::{BootstrapError, HostContext, MasterMember, Phase, PhaseOutcome};
use crate::cluster_file::Role;
use futures_util::future::BoxFuture;

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct JoinGroup;

impl Phase for JoinGroup {
    fn name(&self) -> &'static str {
        "join-group"
    }

    fn run<'a>(&'a self, host: &'a mut HostContext) -> BoxFuture<'a, Result<PhaseOutcome, BootstrapError>> {
        Box::pin(async move {
            if host.role != Role::Master || host.masters.len() < 2 {
                return Ok(PhaseOutcome::Skipped("not a master of a group".to_string()));
            }
            let Some(this) = MasterMember::number_of(&host.name)
                .and_then(|number| host.masters.iter().find(|m| m.number == number))
                .cloned()
            else {
                return Err(BootstrapError::Unsupported {
                    host: host.name.clone(),
                    message: "this master is not among the cluster's masters (master-0, master-1, …)".to_string(),
                });
            };
            let others = MasterMember::others_urls(&host.masters, this.number);
            host.api
                .join_master(&others, this.number, &this.address)
                .await
                .map_err(|e| BootstrapError::Group { host: host.name.clone(), message: e.to_string() })?;
            Ok(PhaseOutcome::Done(format!("master {} of {} votes", this.number, host.masters.len())))
        })
    }
}
