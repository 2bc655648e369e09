//! The command line: one file per command. This module only declares the command tree and
//! dispatches; each command's behaviour lives in its own file.

pub mod agent;
pub mod app;
pub mod deployment;
pub mod dev;
pub mod down;
pub mod executor;
pub mod job;
pub mod master;
pub mod node;
pub mod plan;
pub mod status;
pub mod supervise;
pub mod task;
pub mod up;

use crate::output::Format;
use clap::{Args, Parser, Subcommand};

/// gantry: one binary that provisions hosts, runs the cluster runtime and talks to it.
#[derive(Debug, Parser)]
#[command(name = "gantry", version, about)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Every top-level command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs a master: cluster state, allocation, the API.
    Master(master::MasterArgs),
    /// Runs an agent: offers this host's resources and runs tasks.
    Agent(agent::AgentArgs),
    /// Runs a master and several agents in this one process, for trying gantry out.
    Dev(dev::DevArgs),
    /// Deploys and manages apps (long-running services).
    #[command(subcommand)]
    App(app::AppCommand),
    /// Lists, shows, cancels and promotes deployments (rollouts of app changes).
    #[command(subcommand)]
    Deployment(deployment::DeploymentCommand),
    /// Deploys jobs (run to completion, on request or on a cron schedule) and manages their runs.
    #[command(subcommand)]
    Job(job::JobCommand),
    /// Lists, inspects and kills tasks; shows their logs.
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// Lists the cluster's agents.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Runs one task's executor (started by the agent; not for people).
    #[command(hide = true)]
    Executor(executor::ExecutorArgs),
    /// Shows what `up` would change, and changes nothing.
    Plan(up::ClusterArgs),
    /// Creates and bootstraps the cluster a cluster file declares, then deploys its workloads.
    Up(up::ClusterArgs),
    /// Shows each host as the journal, the provider and the live cluster see it.
    Status(up::ClusterArgs),
    /// Removes everything `up` made for a cluster file.
    Down(up::ClusterArgs),
    /// Runs a daemon under gantry's own supervisor (started by the bootstrap; not for people).
    #[command(hide = true)]
    Supervise(supervise::SuperviseArgs),
}

/// Options of every command that talks to a master.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The master's URL [default: the master of --cluster, else of the only or most recently
    /// brought-up cluster in the state dir, else http://127.0.0.1:5050].
    #[arg(long, global = true, env = "GANTRY_MASTER")]
    pub master: Option<String>,
    /// A cluster brought up by `gantry up`, by name: talk to its master.
    #[arg(long, global = true, env = "GANTRY_CLUSTER")]
    pub cluster: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

impl ClientArgs {
    /// A client of the chosen master.
    pub fn client(&self) -> anyhow::Result<gantry_api::Client> {
        let root = crate::discover::state_root();
        let url = crate::discover::master_url(self.master.as_deref(), self.cluster.as_deref(), root.as_deref())?;
        Ok(gantry_api::Client::new(&url)?)
    }
}

impl Command {
    /// Whether the command is a long-running daemon (logs at info by default).
    pub fn is_daemon(&self) -> bool {
        matches!(self, Command::Master(_) | Command::Agent(_) | Command::Dev(_))
    }
}

/// Runs an async command.
pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Master(args) => master::run(args).await,
        Command::Agent(args) => agent::run(args).await,
        Command::Dev(args) => dev::run(args).await,
        Command::App(command) => app::run(command).await,
        Command::Job(command) => job::run(command).await,
        Command::Deployment(command) => deployment::run(command).await,
        Command::Task(command) => task::run(command).await,
        Command::Node(command) => node::run(command).await,
        Command::Plan(args) => plan::run(args).await,
        Command::Up(args) => up::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Down(args) => down::run(args).await,
        Command::Supervise(args) => supervise::run(args).await,
        Command::Executor(_) => unreachable!("the executor is dispatched before the async runtime starts"),
    }
}

/// Parses a duration such as `3s`, `500ms` or `1m`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. `3s` or `500ms`"))
}
