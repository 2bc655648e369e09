//! Provisioning: everything between a cluster file and a running cluster.
//!
//! This crate owns the cluster-file schema and its validation ([`cluster_file`]), the pure
//! planner that turns (desired, journal, observed) into a plan of actions ([`planner`]), the
//! per-cluster state journal and lock ([`journal`]), and the two side-effect contracts every
//! provider and bootstrap goes through: [`provider::Provider`] (make hosts exist) and
//! [`transport::Transport`] (run commands and copy files on a host), each with a recording fake.
//!
//! It must not depend on the runtime's master or agent crates (the provisioner installs the
//! runtime; it does not link it) nor name a concrete cloud provider: only `gantry-api` (wire
//! types, workload-file parsing) is shared with the runtime. The planner performs no I/O.

pub mod cluster_file;
pub mod journal;
pub mod planner;
pub mod provider;
pub mod transport;
