//! `gantry master`: runs a master until SIGINT or SIGTERM.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `gantry master`.
#[derive(Debug, clap::Args)]
pub struct MasterArgs {
    /// Address to serve the API and the agent protocol on.
    #[arg(long, default_value = "127.0.0.1:5050")]
    pub listen: SocketAddr,
    /// Directory of the state store; created if missing. A restart on it keeps all state.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// How often agents heartbeat.
    #[arg(long, default_value = "1s", value_parser = super::parse_duration)]
    pub heartbeat_interval: Duration,
    /// An agent silent this long is marked unreachable and its tasks are replaced elsewhere.
    #[arg(long, default_value = "3s", value_parser = super::parse_duration)]
    pub agent_unreachable_timeout: Duration,
    /// Another DNS name or IP address clients reach this master by, for its certificate
    /// (besides localhost, 127.0.0.1, ::1, the host name and the listen address); repeatable.
    #[arg(long = "tls-san")]
    pub tls_san: Vec<String>,
}

/// Runs the master.
pub async fn run(args: MasterArgs) -> anyhow::Result<()> {
    if args.agent_unreachable_timeout <= args.heartbeat_interval {
        anyhow::bail!(
            "--agent-unreachable-timeout ({:?}) must be longer than --heartbeat-interval ({:?})",
            args.agent_unreachable_timeout,
            args.heartbeat_interval
        );
    }
    let mut config = gantry_master::MasterConfig::new(args.listen, args.data_dir.clone());
    config.heartbeat_interval = args.heartbeat_interval;
    config.agent_unreachable_timeout = args.agent_unreachable_timeout;
    config.tls_names = args.tls_san;
    gantry_master::run(config).await.with_context(|| format!("master with data dir {}", args.data_dir.display()))
}
