//! Which change of the masters' group to make, and which to refuse: pure functions of the
//! group's membership (and, for a removal, of which masters answer the leader). The store
//! ([`super::store::RaftStore::add_master`], [`super::store::RaftStore::remove_master`]) makes
//! the change these decide on.
//!
//! - Adding master `id` at `address`: a new one becomes a learner first (the leader sends it the
//!   log or a snapshot) and a voter once it has caught up, so the group never waits for a master
//!   that cannot vote yet. A master already a voter at the same address: nothing to do. A learner
//!   at the same address (an earlier add that was interrupted, or ran out of time while it caught
//!   up): it is promoted, so calling again finishes the change. An id held at another address,
//!   or an address held by another id, is refused.
//! - Removing master `id`: refused when it is the last voter, and when the masters that would
//!   remain (and those of the change's joint step) would not hold a majority that answers the
//!   leader. The leader may remove itself: it commits the group without itself and then steps
//!   down (openraft does so once that change is applied), and the masters that stay elect one of
//!   theirs. An id that is not a member is nothing to do (so a retried removal succeeds); a
//!   learner is dropped at once.

use super::NodeId;
use openraft::{BasicNode, Membership};
use std::collections::BTreeSet;

/// Why a change of the masters' group was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// The request is wrong as written (a master number of 0, an address without a port).
    #[error("{message}")]
    Invalid {
        /// The request's field at fault: `id` or `address`.
        field: &'static str,
        /// What is wrong and how to write it.
        message: String,
    },
    /// The change is refused as the group stands: it would leave the group unable to commit, it
    /// contradicts the group's members, or another change is under way. The message says why
    /// and what to do first.
    #[error("{0}")]
    Refused(String),
    /// This master does not lead the group (any more): the change goes to the leader.
    #[error("this master does not lead the masters' group (any more); send the change to the leader{}", leader.as_deref().map(|l| format!(", {l}")).unwrap_or_default())]
    NotLeader {
        /// The leader's API address, when known.
        leader: Option<String>,
    },
    /// The group could not make the change in time (a learner that did not catch up, a change
    /// not committed): the message says what is left, and calling again resumes the change.
    #[error("{0}")]
    Unavailable(String),
}

/// The message of a store that is not replicated (a master without Raft, a test double).
pub const NOT_REPLICATED: &str = "this master's store is not replicated, so it has no group of masters to change: run the master with Raft (`gantry master --node-id N --peer M=HOST:PORT`)";

/// Checks a request's master number and API address (`host:port`, as `--peer` takes it).
pub fn validate(id: NodeId, address: Option<&str>) -> Result<(), MembershipError> {
    if id == 0 {
        return Err(MembershipError::Invalid {
            field: "id",
            message: "master numbers start at 1: give the number the master runs with (`--node-id N`)".into(),
        });
    }
    let Some(address) = address else { return Ok(()) };
    let invalid = |why: &str| MembershipError::Invalid {
        field: "address",
        message: format!(
            "`{address}` {why}: give the address the master listens on as HOST:PORT (its `--listen`, e.g. 10.0.0.14:5050)"
        ),
    };
    if address.contains("://") || address.contains('/') {
        return Err(invalid("is a URL, not an address"));
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(invalid("has no port"));
    };
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(invalid("has no host"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => Err(invalid("has no valid port")),
    }
}

/// What adding a master takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddStep {
    /// It is a voter at that address already.
    Nothing,
    /// It is a member at that address but not (yet) a voter of the group's goal: wait until it
    /// has caught up, then make it a voter (this also finishes a joint step left behind).
    Promote,
    /// It is not a member: add it as a learner, wait until it has caught up, make it a voter.
    AddLearner,
}

/// What adding master `id` at `address` to `membership` takes, or why it is refused.
pub fn plan_add(
    membership: &Membership<NodeId, BasicNode>,
    id: NodeId,
    address: &str,
) -> Result<AddStep, MembershipError> {
    if let Some((other, _)) = membership.nodes().find(|(other, node)| **other != id && node.addr == address) {
        return Err(MembershipError::Refused(format!(
            "{address} is master {other}'s address: one master serves at one address; remove master {other} first (`gantry master remove {other}`) if it is gone, or give master {id}'s own address"
        )));
    }
    let Some(node) = membership.get_node(&id) else {
        return Ok(AddStep::AddLearner);
    };
    if node.addr != address {
        return Err(MembershipError::Refused(format!(
            "master {id} is already a member, at {}: remove it first (`gantry master remove {id}`) to add it at {address}, or add the new master under another number",
            node.addr
        )));
    }
    let configs = membership.get_joint_config();
    let goal_voter = configs.last().is_some_and(|goal| goal.contains(&id));
    Ok(if goal_voter && configs.len() == 1 { AddStep::Nothing } else { AddStep::Promote })
}

/// What removing a master takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveStep {
    /// It is not a member.
    Nothing,
    /// It is a learner: drop it (no vote changes).
    DropLearner,
    /// It is a voter (or the goal of an interrupted change still holds it in its joint step):
    /// check that the group keeps a majority that answers, then remove it.
    RemoveVoter,
}

/// What removing master `id` from `membership` takes, or why it is refused before asking who
/// answers (see [`check_quorum`]). The leader may remove itself: it commits the group without
/// itself, then steps down, and the masters that stay elect one of theirs (about a second).
pub fn plan_remove(membership: &Membership<NodeId, BasicNode>, id: NodeId) -> Result<RemoveStep, MembershipError> {
    let configs = membership.get_joint_config();
    if !configs.iter().any(|config| config.contains(&id)) {
        return Ok(if membership.get_node(&id).is_some() { RemoveStep::DropLearner } else { RemoveStep::Nothing });
    }
    let goal = configs.last().cloned().unwrap_or_default();
    if goal.iter().all(|voter| *voter == id) {
        return Err(MembershipError::Refused(format!(
            "master {id} is the group's last voter: without it no master could commit anything; add its successor first (`gantry master add`), then remove it"
        )));
    }
    Ok(RemoveStep::RemoveVoter)
}

/// Checks that removing master `id` leaves every configuration the change passes through (the
/// group's goal `configs.last()`, and it without `id`) with a majority of masters that answer
/// the leader (`answering`, the leader included). A master that does not answer cannot vote, so
/// a group whose answering voters are no majority stops committing.
pub fn check_quorum(
    configs: &[BTreeSet<NodeId>],
    id: NodeId,
    answering: &BTreeSet<NodeId>,
) -> Result<(), MembershipError> {
    let goal = configs.last().cloned().unwrap_or_default();
    let after: BTreeSet<NodeId> = goal.iter().copied().filter(|voter| *voter != id).collect();
    let majority = |config: &BTreeSet<NodeId>| config.len() / 2 + 1;
    let up = |config: &BTreeSet<NodeId>| config.intersection(answering).copied().collect::<BTreeSet<_>>();
    let down = |config: &BTreeSet<NodeId>| config.difference(answering).copied().collect::<BTreeSet<_>>();
    if up(&goal).len() < majority(&goal) {
        return Err(MembershipError::Refused(format!(
            "the group cannot commit a change now: only masters {} of {} answer the leader, and a group of {} needs {}. Bring masters {} back first",
            list(&up(&goal)),
            list(&goal),
            goal.len(),
            majority(&goal),
            list(&down(&goal)),
        )));
    }
    if up(&after).len() < majority(&after) {
        return Err(MembershipError::Refused(format!(
            "removing master {id} would leave masters {} to commit, of which only masters {} answer the leader (masters {} do not): a group of {} needs {} to commit, so it would stop taking writes. Bring masters {} back first, or remove a master that does not answer instead",
            list(&after),
            list(&up(&after)),
            list(&down(&after)),
            after.len(),
            majority(&after),
            list(&down(&after)),
        )));
    }
    Ok(())
}

/// `1, 2, 3` (`none` for no master).
fn list(ids: &BTreeSet<NodeId>) -> String {
    if ids.is_empty() {
        return "none".to_string();
    }
    ids.iter().map(NodeId::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn group(configs: &[&[NodeId]], learners: &[NodeId]) -> Membership<NodeId, BasicNode> {
        let configs: Vec<BTreeSet<NodeId>> = configs.iter().map(|c| c.iter().copied().collect()).collect();
        let nodes: BTreeMap<NodeId, BasicNode> = configs
            .iter()
            .flatten()
            .chain(learners)
            .map(|id| (*id, BasicNode::new(format!("10.0.0.{id}:5050"))))
            .collect();
        Membership::new(configs, nodes)
    }

    fn ids(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    fn refused(result: Result<impl std::fmt::Debug, MembershipError>, says: &str) {
        match result {
            Err(MembershipError::Refused(message)) => assert!(message.contains(says), "{message}"),
            other => panic!("expected a refusal saying `{says}`: {other:?}"),
        }
    }

    #[test]
    fn requests_need_a_master_number_and_a_host_and_port() {
        assert_eq!(validate(4, Some("10.0.0.4:5050")), Ok(()));
        assert_eq!(validate(4, Some("[::1]:5050")), Ok(()));
        assert_eq!(validate(4, None), Ok(()));
        for (id, address, field) in [
            (0, Some("10.0.0.4:5050"), "id"),
            (4, Some("10.0.0.4"), "address"),
            (4, Some(":5050"), "address"),
            (4, Some("10.0.0.4:0"), "address"),
            (4, Some("10.0.0.4:http"), "address"),
            (4, Some("https://10.0.0.4:5050"), "address"),
        ] {
            match validate(id, address) {
                Err(MembershipError::Invalid { field: named, message }) => {
                    assert_eq!(named, field, "{id} {address:?}: {message}");
                    assert!(message.contains("HOST:PORT") || message.contains("--node-id"), "{message}");
                }
                other => panic!("{id} {address:?} must be invalid: {other:?}"),
            }
        }
    }

    #[test]
    fn an_add_is_a_new_learner_a_promotion_or_nothing() {
        let three = group(&[&[1, 2, 3]], &[4]);
        assert_eq!(plan_add(&three, 5, "10.0.0.5:5050"), Ok(AddStep::AddLearner));
        assert_eq!(plan_add(&three, 4, "10.0.0.4:5050"), Ok(AddStep::Promote), "a learner left behind");
        assert_eq!(plan_add(&three, 3, "10.0.0.3:5050"), Ok(AddStep::Nothing), "a voter already");
        let joint = group(&[&[1, 2, 3], &[1, 2, 3, 4]], &[]);
        assert_eq!(plan_add(&joint, 4, "10.0.0.4:5050"), Ok(AddStep::Promote), "a joint step left behind");
        refused(plan_add(&three, 3, "10.0.0.9:5050"), "already a member, at 10.0.0.3:5050");
        refused(plan_add(&three, 5, "10.0.0.2:5050"), "master 2's address");
    }

    #[test]
    fn a_removal_refuses_the_last_voter_only() {
        let three = group(&[&[1, 2, 3]], &[4]);
        assert_eq!(plan_remove(&three, 3), Ok(RemoveStep::RemoveVoter));
        assert_eq!(plan_remove(&three, 4), Ok(RemoveStep::DropLearner));
        assert_eq!(plan_remove(&three, 9), Ok(RemoveStep::Nothing), "an unknown master: nothing to do");
        assert_eq!(plan_remove(&three, 1), Ok(RemoveStep::RemoveVoter), "the leader removes itself");
        refused(plan_remove(&group(&[&[1]], &[]), 1), "last voter");
        let leaving = group(&[&[1, 2, 3], &[1, 2]], &[]);
        assert_eq!(plan_remove(&leaving, 3), Ok(RemoveStep::RemoveVoter), "an interrupted removal is finished");
    }

    #[test]
    fn a_removal_keeps_a_majority_that_answers() {
        let five = [ids(&[1, 2, 3, 4, 5])];
        assert_eq!(check_quorum(&five, 5, &ids(&[1, 2, 3, 4, 5])), Ok(()));
        // 5 → 4 with master 4 down: 3 of 4 answer, a majority.
        assert_eq!(check_quorum(&five, 5, &ids(&[1, 2, 3, 5])), Ok(()));
        assert_eq!(check_quorum(&five, 4, &ids(&[1, 2, 3, 5])), Ok(()), "removing the one that does not answer");
        // 5 → 4 with two down: 2 of 4 answer, no majority.
        refused(check_quorum(&five, 5, &ids(&[1, 2, 5])), "only masters 1, 2 answer");
        let three = [ids(&[1, 2, 3])];
        refused(check_quorum(&three, 2, &ids(&[1, 2])), "Bring masters 3 back");
        assert_eq!(check_quorum(&three, 3, &ids(&[1, 2])), Ok(()), "the unanswering master may go");
        // A group that cannot commit now cannot commit the change either.
        refused(check_quorum(&three, 3, &ids(&[1])), "cannot commit a change now");
    }
}
