//! Provisioning: everything between a cluster file and a running cluster.
//!
//! This crate owns the cluster-file schema and its validation ([`cluster_file`]), the pure
//! planner that turns (desired, journal, observed) into a plan of actions ([`planner`]), the
//! per-cluster state journal and lock ([`journal`]), and the two side-effect contracts every
//! provider and bootstrap goes through: [`provider::Provider`] (make hosts exist) and
//! [`transport::Transport`] (run commands and copy files on a host), each with a recording fake.
//!
//! How `up` will use it (the engine and the bootstrap phases are not written yet):
//!
//! ```text
//! let file = ClusterFile::load(path)?;                       // errors: file:line:col: key: … (hint: …)
//! let desired = Desired::from_cluster_file(&file);
//! let dir = journal::state_dir(file.name(), flag)?;          // flag > GANTRY_STATE_DIR > ~/.gantry/clusters
//! let _lock = ClusterLock::acquire(&dir)?;                   // refuses a second `up`/`down`
//! let mut journal = Journal::open(&dir)?;                    // replays; drops a torn last line
//! let observed = provider::observed(&provider.list_hosts().await?);
//! let plan = planner::plan(&desired, journal.state(), &observed);
//! print!("{plan}");
//! for action in &plan.actions {
//!     journal.record(RecordKind::Intent, action, None)?;     // durable before acting
//!     /* provider / transport call */
//!     journal.record(RecordKind::Done, action, None)?;       // or Failed with the error
//! }
//! ```
//!
//! It must not depend on the runtime's master or agent crates (the provisioner installs the
//! runtime; it does not link it) nor name a concrete cloud provider: only `gantry-api` (wire
//! types, workload-file parsing) is shared with the runtime. The planner performs no I/O.

pub mod access;
pub mod bootstrap;
pub mod cluster_api;
pub mod cluster_file;
pub mod engine;
pub mod journal;
pub mod planner;
pub mod provider;
pub mod supervisor;
pub mod transport;
