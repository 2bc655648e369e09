//! `gantry-lab`: the developer's lab. `gantry-lab cloud aws --dir DIR` runs moto's EC2 with a
//! test host for every running instance until SIGTERM or SIGINT, printing the environment to
//! export first; `gantry-lab cleanup` removes labs that crashed runs left behind. Needs root.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;

/// The gantry lab: test hosts and cloud emulators on this machine (needs root).
#[derive(Debug, Parser)]
#[command(name = "gantry-lab", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a cloud emulator whose instances are test hosts.
    Cloud {
        #[command(subcommand)]
        cloud: Cloud,
    },
    /// Removes the labs (hosts, bridges, cgroups, emulators) of runs that died.
    Cleanup,
}

#[derive(Debug, Subcommand)]
enum Cloud {
    /// moto's EC2 on loopback: prints KEY=VALUE lines to export, then `ready`, and runs until
    /// SIGTERM or SIGINT, then removes everything it made.
    Aws {
        /// Where moto's log and the `env` file (the KEY=VALUE lines) go.
        #[arg(long)]
        dir: PathBuf,
        /// A region to watch (repeat for more); the first is exported as AWS_REGION.
        /// Default: AWS_REGION, else eu-west-1.
        #[arg(long = "region")]
        regions: Vec<String>,
        /// The lab network, `10.77.X.0/24` (what a lab cluster file names as its vpc_cidr,
        /// e.g. configs/lab-aws.toml's 10.77.250.0/24). Default: a free one.
        #[arg(long, value_parser = parse_cidr)]
        cidr: Option<u8>,
    },
    /// The Compute Engine emulator on loopback: prints KEY=VALUE lines to export, then `ready`,
    /// and runs until SIGTERM or SIGINT, then removes everything it made.
    Gce {
        /// Where the `env` file (the KEY=VALUE lines) goes.
        #[arg(long)]
        dir: PathBuf,
        /// The lab network, `10.77.X.0/24`, that a lab cluster file's subnetwork uses. Default:
        /// a free one.
        #[arg(long, value_parser = parse_cidr)]
        cidr: Option<u8>,
        /// How long each operation takes from PENDING to DONE, in milliseconds.
        #[arg(long, default_value_t = 400)]
        operation_delay_ms: u64,
    },
    /// The Azure Resource Manager emulator on loopback: prints KEY=VALUE lines to export, then
    /// `ready`, and runs until SIGTERM or SIGINT, then removes everything it made.
    Azure {
        /// Where the `env` file (the KEY=VALUE lines) goes.
        #[arg(long)]
        dir: PathBuf,
        /// The lab network, `10.77.X.0/24`, that a lab cluster file's VNet uses. Default: a
        /// free one.
        #[arg(long, value_parser = parse_cidr)]
        cidr: Option<u8>,
        /// How long each async operation stays InProgress, in milliseconds.
        #[arg(long, default_value_t = 500)]
        operation_delay_ms: u64,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Cleanup => {
            gantry_lab::testhosts::cleanup_stale();
            Ok(())
        }
        Command::Cloud { cloud: Cloud::Aws { dir, regions, cidr } } => aws(dir, regions, cidr),
        Command::Cloud { cloud: Cloud::Gce { dir, cidr, operation_delay_ms } } => gce(dir, cidr, operation_delay_ms),
        Command::Cloud { cloud: Cloud::Azure { dir, cidr, operation_delay_ms } } => {
            azure(dir, cidr, operation_delay_ms)
        }
    }
}

/// `10.77.X.0/24` → X.
fn parse_cidr(text: &str) -> Result<u8, String> {
    text.strip_prefix("10.77.")
        .and_then(|rest| rest.strip_suffix(".0/24"))
        .and_then(|x| x.parse::<u8>().ok())
        .filter(|x| (1..=254).contains(x))
        .ok_or_else(|| format!("`{text}` is not a lab network: write 10.77.X.0/24 with X from 1 to 254"))
}

#[cfg(feature = "aws")]
fn aws(dir: PathBuf, regions: Vec<String>, subnet: Option<u8>) -> anyhow::Result<()> {
    use gantry_lab::cloud::aws::{AwsLab, AwsLabOptions};
    let mut options = AwsLabOptions { subnet, ..AwsLabOptions::default() };
    if !regions.is_empty() {
        options.regions = regions;
    }
    serve(|| AwsLab::start_with(&dir, options).context("start the AWS lab"))
}

#[cfg(not(feature = "aws"))]
fn aws(_dir: PathBuf, _regions: Vec<String>, _subnet: Option<u8>) -> anyhow::Result<()> {
    anyhow::bail!("this gantry-lab was built without its `aws` feature")
}

#[cfg(feature = "gce")]
fn gce(dir: PathBuf, subnet: Option<u8>, delay_ms: u64) -> anyhow::Result<()> {
    use gantry_lab::cloud::gce::{GceLab, GceLabOptions};
    let options = GceLabOptions {
        subnet,
        operation_delay: std::time::Duration::from_millis(delay_ms),
        ..GceLabOptions::default()
    };
    serve(|| GceLab::start_with(&dir, options).context("start the GCE lab"))
}

#[cfg(not(feature = "gce"))]
fn gce(_dir: PathBuf, _subnet: Option<u8>, _delay_ms: u64) -> anyhow::Result<()> {
    anyhow::bail!("this gantry-lab was built without its `gce` feature")
}

#[cfg(feature = "azure")]
fn azure(dir: PathBuf, subnet: Option<u8>, delay_ms: u64) -> anyhow::Result<()> {
    use gantry_lab::cloud::azure::{AzureLab, AzureLabOptions};
    let options = AzureLabOptions {
        subnet,
        operation_delay: std::time::Duration::from_millis(delay_ms),
        ..AzureLabOptions::default()
    };
    serve(|| AzureLab::start_with(&dir, options).context("start the Azure lab"))
}

#[cfg(not(feature = "azure"))]
fn azure(_dir: PathBuf, _subnet: Option<u8>, _delay_ms: u64) -> anyhow::Result<()> {
    anyhow::bail!("this gantry-lab was built without its `azure` feature")
}

/// Starts a cloud lab, prints its environment and `ready`, and runs until SIGTERM or SIGINT;
/// then drops (removes) it.
#[allow(dead_code, reason = "unused only in a build with no cloud feature")]
fn serve<L: gantry_lab::cloud::CloudLab>(start: impl FnOnce() -> anyhow::Result<L>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start tokio")?;
    // Signals are caught before the lab exists, so one that arrives while it starts still
    // leads to a clean teardown.
    let (mut terminate, mut interrupt) = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        anyhow::Ok((signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?))
    })?;
    let lab = start()?;
    let mut out = std::io::stdout().lock();
    for (key, value) in lab.env() {
        writeln!(out, "{key}={value}")?;
    }
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    runtime.block_on(async {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    });
    tracing::info!(prefix = %lab.prefix(), "Signal received: removing the lab.");
    drop(lab);
    Ok(())
}
