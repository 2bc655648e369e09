//! Provisioning: everything between a cluster file and a running cluster.
//!
//! This crate owns the cluster-file schema and its validation ([`cluster_file`]), the pure
//! planner that turns (desired, journal, observed) into a plan of actions ([`planner`]), the
//! per-cluster state journal and lock ([`journal`]), and the two side-effect contracts every
//! provider and bootstrap goes through: [`provider::Provider`] (make hosts exist) and
//! [`transport::Transport`] (run commands and copy files on a host), each with a recording fake.
//!
//! It also performs plans: the [`engine`] applies a plan's actions stage by stage, journaling
//! each one, through a provider, an [`access::Connector`] (how a host is reached: transport,
//! directory layout, address) and the [`bootstrap`] phases (one named, idempotent phase per file;
//! daemons run under systemd or gantry's own [`supervisor`]); [`cluster_api`] is what the phases
//! ask the cluster they install. How `up` uses it (see `src/cmd/up.rs`):
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
//! let engine = Engine { provider, connector, api, progress, runtime, binary, options, cluster };
//! let report = engine.apply(&plan, &mut journal).await?;     // intent → act → done/failed, per action
//! ```
//!
//! It must not depend on the runtime's master or agent crates (the provisioner installs the
//! runtime; it does not link it) nor name a concrete cloud provider: only `gantry-api` (wire
//! types, workload-file parsing) is shared with the runtime. The planner performs no I/O.

pub mod access;
pub mod bootstrap;
pub mod cloud;
pub mod cluster_api;
pub mod cluster_file;
pub mod engine;
pub mod journal;
pub mod planner;
pub mod provider;
pub mod supervisor;
pub mod transport;
pub mod trust;
