//! `gantry-lab`: a developer tool, never shipped. It owns the one test-host harness of the
//! project ([`testhosts`]: Linux network namespaces with their own filesystem view and a real
//! sshd, testing ladder rung 4) and the cloud emulators built on it ([`cloud`]: an emulated
//! cloud API whose instances are real test hosts, rung 5). Tests, benchmarks and newcomers use
//! it through this library or the `gantry-lab` binary.
//!
//! It must never be a dependency of the product: only `tests/`, the bench and this crate's own
//! binary name it.

pub mod cloud;
pub mod linearizability;
pub mod registry;
pub mod testhosts;
