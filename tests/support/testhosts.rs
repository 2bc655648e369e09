//! The multi-host test harness (real hosts as network namespaces with their own sshd) lives in
//! the `gantry-lab` crate, `gantry_lab::testhosts`; this re-export keeps `support::testhosts`
//! paths working. New code names the crate.

#[allow(unused_imports)]
pub use gantry_lab::testhosts::*;
