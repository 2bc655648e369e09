//! `gantry executor --sandbox DIR`: supervises one task; started by the agent.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of the hidden `executor` command.
#[derive(Debug, clap::Args)]
pub struct ExecutorArgs {
    /// The task's sandbox directory, holding its launch description.
    #[arg(long)]
    pub sandbox: PathBuf,
}

/// Runs the executor to completion and exits with its status.
pub fn run(args: &ExecutorArgs) -> ExitCode {
    let _ = &args.sandbox;
    ExitCode::FAILURE
}
