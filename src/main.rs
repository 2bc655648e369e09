//! `gantry`: the provisioner, the cluster runtime (master and agent) and the command line, in one
//! binary. Each command lives in its own file under `cmd/`; this file only parses and dispatches.

mod cmd;
mod discover;
mod output;
mod session;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    if let cmd::Command::Executor(args) = &cli.command {
        // The executor runs before any runtime or logging exists: it must stay tiny and sync.
        return cmd::executor::run(args);
    }
    init_logging(cli.command.is_daemon());
    gantry_trust::tls::install_default_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(daemon: bool) {
    // openraft narrates every election and state change at info: only its warnings by default.
    let default = if daemon { "info,openraft=warn" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GANTRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
