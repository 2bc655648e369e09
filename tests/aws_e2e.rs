//! End to end on the AWS cloud lab (`gantry_lab::cloud::aws`: moto's EC2, whose instances become
//! real test hosts at their private addresses): the real binary runs the scenarios every cloud
//! provider passes (tests/cloud_lab/scenario.rs) on the aws provider through the official SDK.
//!
//! Needs root and moto (scripts/test installs both); skips with a reason otherwise (and fails
//! where every test must run).
#![cfg(all(feature = "aws", feature = "gce", feature = "azure"))]

mod cloud_lab;
mod support;

use cloud_lab::{Kind, scenario};

#[test]
fn up_scale_kill_resume_and_down_on_the_lab() {
    scenario::lifecycle(Kind::Aws);
}

#[test]
fn sweep_removes_an_orphaned_cluster_and_keeps_a_known_one() {
    scenario::sweep_orphan(Kind::Aws);
}
