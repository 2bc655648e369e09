//! The command line: one file per command.

pub mod executor;

use clap::{Parser, Subcommand};

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
    /// Runs one task's executor (started by the agent; not for people).
    #[command(hide = true)]
    Executor(executor::ExecutorArgs),
}

impl Command {
    /// Whether the command is a long-running daemon (logs at info by default).
    pub fn is_daemon(&self) -> bool {
        false
    }
}

/// Runs an async command.
pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Executor(_) => unreachable!("the executor is dispatched before the async runtime starts"),
    }
}
