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
    let code = gantry_agent::executor::run_executor(&args.sandbox);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
