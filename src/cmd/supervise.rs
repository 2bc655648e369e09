//! `gantry supervise --pid-file F --log-file L [--env-file E] [--detach] -- CMD ARGS…`: runs a
//! daemon under gantry's own supervisor on hosts without systemd (started by the bootstrap's
//! start script; not for people). See `gantry_provision::supervisor`.

use anyhow::Context;
use gantry_provision::supervisor::{self, SupervisorConfig};
use std::ffi::OsString;
use std::path::PathBuf;

/// Arguments of the hidden `supervise` command.
#[derive(Debug, clap::Args)]
pub struct SuperviseArgs {
    /// The supervisor's pid file (the daemon's is `<stem>.daemon.pid` beside it).
    #[arg(long)]
    pub pid_file: PathBuf,
    /// The daemon's output is appended here.
    #[arg(long)]
    pub log_file: PathBuf,
    /// `NAME=value` lines: the daemon's environment and the values of `${NAME}` in its arguments.
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// Start the supervisor in the background and return once it runs.
    #[arg(long)]
    pub detach: bool,
    /// The daemon's command line.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Runs `gantry supervise`.
pub async fn run(args: SuperviseArgs) -> anyhow::Result<()> {
    if args.detach {
        let exe = std::env::current_exe().context("cannot find this gantry binary")?;
        let mut before_command = true;
        let argv: Vec<OsString> = std::env::args_os()
            .skip(1)
            .filter(|a| {
                if a == "--" {
                    before_command = false;
                }
                !(before_command && a == "--detach")
            })
            .collect();
        supervisor::detach(&exe, &argv, &args.pid_file, &args.log_file)?;
        return Ok(());
    }
    let config = SupervisorConfig::new(args.pid_file, args.log_file, args.env_file, args.command);
    Ok(supervisor::run(config).await?)
}
