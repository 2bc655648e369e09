//! The command line: one file per command. This module only declares the command tree and
//! dispatches; each command's behaviour lives in its own file.

pub mod agent;
pub mod app;
pub mod deployment;
pub mod dev;
pub mod down;
pub mod executor;
pub mod iam_policy;
pub mod image;
pub mod job;
pub mod master;
pub mod node;
pub mod plan;
pub mod policy;
pub mod secret;
pub mod snapshot;
pub mod status;
pub mod supervise;
pub mod sweep;
pub mod task;
pub mod token;
pub mod up;

use crate::output::Format;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
    /// Lists and prunes the images agents keep for container tasks.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Creates, lists, shows and revokes API tokens; a token carries policies.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Applies, lists, shows and deletes policies: what a token's holder may read and change.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Stores, lists, shows and deletes secrets; their values are written, never read back.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// Saves the whole cluster state to a file, or makes a new master from one.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
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
    /// Finds a cloud's gantry resources by tag; deletes expired and orphaned clusters (--yes).
    Sweep(sweep::SweepArgs),
    /// Prints the minimal IAM policy gantry needs on a cloud.
    IamPolicy(iam_policy::IamPolicyArgs),
    /// Runs a daemon under gantry's own supervisor (started by the bootstrap; not for people).
    #[command(hide = true)]
    Supervise(supervise::SuperviseArgs),
}

/// Options of every command that talks to a master.
#[derive(Clone, Args)]
pub struct ClientArgs {
    /// The master's URL, or every master's, separated by commas (requests go to the leader)
    /// [default: the masters of --cluster, else of the only or most recently brought-up cluster
    /// in the state dir, else https://127.0.0.1:5050].
    #[arg(long, global = true, env = "GANTRY_MASTER")]
    pub master: Option<String>,
    /// A cluster brought up by `gantry up`, by name: talk to its master.
    #[arg(long, global = true, env = "GANTRY_CLUSTER")]
    pub cluster: Option<String>,
    /// The API token to send [default: the admin token `gantry up` kept for the cluster].
    #[arg(long, global = true, env = "GANTRY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The CA certificate (PEM) to trust the master by [default: the CA `gantry up` kept for the
    /// cluster].
    #[arg(long, global = true, env = "GANTRY_CA_CERT", value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

// By hand so that the token never reaches a log or a panic message.
impl std::fmt::Debug for ClientArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientArgs")
            .field("master", &self.master)
            .field("cluster", &self.cluster)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("ca_cert", &self.ca_cert)
            .field("output", &self.output)
            .finish()
    }
}

impl ClientArgs {
    /// A client of the chosen master, with the credentials the options or the cluster's state dir
    /// give (see [`crate::discover`]), through the cluster's bastion where `up` reached the
    /// masters through one.
    pub fn client(&self) -> anyhow::Result<gantry_api::Client> {
        let root = crate::discover::state_root();
        let (url, credentials, dir) = crate::discover::connection(
            self.master.as_deref(),
            self.cluster.as_deref(),
            self.ca_cert.as_deref(),
            self.token.as_deref(),
            root.as_deref(),
        )?;
        let client = gantry_api::Client::with_credentials(&url, &credentials)?;
        // Behind a bastion, through the forwards `up` used (see [`crate::session::ApiRoute`]).
        let route = match &dir {
            Some(dir) => crate::session::ApiRoute::of_state_dir(dir)?.route(),
            None => None,
        };
        Ok(match route {
            Some(route) => client.routed(route),
            None => client,
        })
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
        Command::Image(command) => image::run(command).await,
        Command::Token(command) => token::run(command).await,
        Command::Policy(command) => policy::run(command).await,
        Command::Secret(command) => secret::run(command).await,
        Command::Snapshot(command) => snapshot::run(command).await,
        Command::Plan(args) => plan::run(args).await,
        Command::Up(args) => up::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Down(args) => down::run(args).await,
        Command::Sweep(args) => sweep::run(args).await,
        Command::IamPolicy(args) => iam_policy::run(args),
        Command::Supervise(args) => supervise::run(args).await,
        Command::Executor(_) => unreachable!("the executor is dispatched before the async runtime starts"),
    }
}

/// Parses a duration such as `3s`, `500ms` or `1m`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. `3s` or `500ms`"))
}
