//! gantry's benchmark command (`gantry-bench <scenario> [--json]`): scenarios that measure the
//! runtime and the provisioner against the targets of the benchmark issue, each printing the
//! machine first and then one line per figure.
//!
//! The bench links the runtime crates for in-process scenarios (`placement`) and runs the real
//! `gantry` binary for the others; it is never part of the product binary.

pub mod binary;
pub mod cloud_proxy;
pub mod cluster;
pub mod events;
pub mod process;
pub mod report;
pub mod scenarios;
pub mod sim_agent;
pub mod stats;
