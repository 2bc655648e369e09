//! End to end on the gce cloud lab (`gantry_lab::cloud::gce`: gantry's Compute Engine emulator, checked
//! against the official API description, whose instances become real test hosts at their private
//! addresses): the real binary runs the scenarios every cloud provider passes
//! (tests/cloud_lab/scenario.rs) on the gce provider through the official SDK crates.
//!
//! Needs root; skips with a reason otherwise (and fails where every test must run).
#![cfg(all(feature = "aws", feature = "gce", feature = "azure"))]

mod cloud_lab;
mod support;

use cloud_lab::{Kind, scenario};

#[test]
fn up_scale_kill_resume_and_down_on_the_lab() {
    scenario::lifecycle(Kind::Gce);
}

#[test]
fn sweep_removes_an_orphaned_cluster_and_keeps_a_known_one() {
    scenario::sweep_orphan(Kind::Gce);
}
