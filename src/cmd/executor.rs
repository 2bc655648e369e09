//! `gantry executor --sandbox DIR`: supervises one task; started by the agent. With `--standby`
//! it is started ahead of time and reads the sandbox from stdin (see the agent's spawner).

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of the hidden `executor` command.
#[derive(Debug, clap::Args)]
pub struct ExecutorArgs {
    /// The task's sandbox directory, holding its launch description.
    #[arg(long, required_unless_present = "standby", conflicts_with = "standby")]
    pub sandbox: Option<PathBuf>,
    /// Wait for one line on stdin naming the sandbox (started before there is a task, so that
    /// a launch does not wait for this process to start); EOF without one exits quietly.
    #[arg(long)]
    pub standby: bool,
}

/// Runs the executor to completion and exits with its status.
pub fn run(args: &ExecutorArgs) -> ExitCode {
    let code = match &args.sandbox {
        Some(sandbox) => gantry_agent::executor::run_executor(sandbox),
        None => gantry_agent::executor::run_standby(),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
