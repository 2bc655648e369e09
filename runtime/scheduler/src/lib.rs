//! Pure placement and allocation decisions: a snapshot in, decisions out.
//!
//! Nothing here does I/O, reads a clock or spawns: the master's allocator builds a snapshot,
//! calls these functions and performs what they return. That keeps every decision testable
//! exhaustively (see the property tests) and fast enough for 10,000 agents and 100,000 tasks.
//!
//! - [`drf`]: Dominant Resource Fairness ordering of frameworks for offers.
//! - [`placement`]: choosing agents and ports for an app's instances under its constraints, and
//!   saying why when instances cannot be placed.

mod constraints;
pub mod drf;
pub mod placement;
mod ports;
mod reason;

pub use drf::{dominant_share, drf_order};
pub use placement::{AgentSlot, Placed, PlacedOn, PlacementOutcome, PlacementRequest, place};
