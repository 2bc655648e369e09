//! One file per scenario. Each has an `Args` (its clap options, defaults sized to finish well
//! under 5 minutes on 2 cores) and a `run(&Args, &mut Report)`. To add a scenario: a file here,
//! a `pub mod`, and a variant of [`Scenario`].

pub mod api;
pub mod bootstrap;
pub mod cloud;
pub mod failover;
pub mod footprint;
pub mod launch;
pub mod placement;
pub mod up;

/// The scenarios; their names are fixed so that results compare over time.
#[derive(Debug, clap::Subcommand)]
pub enum Scenario {
    /// The real allocator and scheduler in process: placements/s and one allocation cycle.
    Placement(placement::Args),
    /// Submit → running latency of short tasks on a local cluster, against raw fork+exec.
    Launch(launch::Args),
    /// Wall time of `gantry up` and `gantry down` of a local cluster.
    Up(up::Args),
    /// SIGKILL an agent running 20 service tasks: time until all 20 run elsewhere; with
    /// `--masters 3`, SIGKILL the leading master: time until writes resume, task restarts.
    Failover(failover::Args),
    /// Idle RSS and CPU of master and agent; RSS of a master serving many simulated agents.
    Footprint(footprint::Args),
    /// Latency of single-object writes at a fixed request rate, fsync on.
    Api(api::Args),
    /// `gantry up` of N test hosts over SSH, against an Ansible playbook doing the same steps.
    Bootstrap(bootstrap::Args),
    /// `gantry up`/`down` of N instances on a cloud lab, EC2 calls counted, against the same
    /// instance calls made with the SDK.
    Cloud(cloud::Args),
}

impl Scenario {
    /// The scenario's name, as on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Placement(_) => "placement",
            Self::Launch(_) => "launch",
            Self::Up(_) => "up",
            Self::Failover(_) => "failover",
            Self::Footprint(_) => "footprint",
            Self::Api(_) => "api",
            Self::Bootstrap(_) => "bootstrap",
            Self::Cloud(_) => "cloud",
        }
    }

    /// Runs it, recording figures in `report`.
    pub fn run(&self, report: &mut crate::report::Report) -> anyhow::Result<()> {
        match self {
            Self::Placement(args) => placement::run(args, report),
            Self::Launch(args) => launch::run(args, report),
            Self::Up(args) => up::run(args, report),
            Self::Failover(args) => failover::run(args, report),
            Self::Footprint(args) => footprint::run(args, report),
            Self::Api(args) => api::run(args, report),
            Self::Bootstrap(args) => bootstrap::run(args, report),
            Self::Cloud(args) => cloud::run(args, report),
        }
    }
}
