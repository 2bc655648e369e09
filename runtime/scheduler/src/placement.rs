//! Placement of an app's instances on offered agents.

use gantry_api::{Constraint, Resources};
use std::collections::BTreeMap;

/// An agent as offered to a framework: who it is and what is free on it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSlot {
    /// Agent id.
    pub agent_id: String,
    /// Hostname (the `hostname` constraint field).
    pub hostname: String,
    /// Attributes (every other constraint field).
    pub attributes: BTreeMap<String, String>,
    /// Free scalars and free port ranges. `place` subtracts what it places.
    pub free: Resources,
}

/// Where an existing (active) instance of the app runs, for constraints.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedOn {
    /// Hostname of its agent.
    pub hostname: String,
    /// Attributes of its agent.
    pub attributes: BTreeMap<String, String>,
}

/// What to place.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementRequest<'a> {
    /// The app (for messages).
    pub app_id: &'a str,
    /// Scalars one instance needs (ports are in `ports`).
    pub resources: &'a Resources,
    /// Host ports per instance, in the app's order; 0 means any free port of the agent.
    pub ports: &'a [u16],
    /// The app's constraints.
    pub constraints: &'a [Constraint],
    /// How many new instances to place.
    pub count: usize,
}

/// One placed instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// Index into the `agents` slice.
    pub agent_index: usize,
    /// Host ports chosen, one per requested port, in order.
    pub ports: Vec<u16>,
}

/// The result of one placement call.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementOutcome {
    /// Instances placed, at most `count`.
    pub placed: Vec<Placed>,
    /// Why fewer than `count` were placed, in words a user acts on, e.g.
    /// "no agent satisfies UNIQUE hostname: 3 agents, 4 instances".
    pub reason: Option<String>,
}

/// Places up to `request.count` instances on `agents`, honouring resources, ports and
/// constraints given the instances already running (`existing`). Subtracts what it places from
/// the agents' `free` so several apps can be placed against one snapshot.
pub fn place(request: &PlacementRequest<'_>, agents: &mut [AgentSlot], existing: &[PlacedOn]) -> PlacementOutcome {
    let _ = (request, agents, existing);
    unreachable!("implemented by the scheduler work")
}
