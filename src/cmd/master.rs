//! `gantry master`: runs a master until SIGINT or SIGTERM; `gantry master list|add|remove`
//! shows and changes the masters' group.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `gantry master`: runs one, or with `list`, `add` or `remove`, shows or changes
/// the masters' group.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct MasterArgs {
    /// `list`, `add`, `remove`: the masters' group, instead of running a master.
    #[command(subcommand)]
    pub command: Option<MasterCommand>,
    /// Address to serve the API and the agent protocol on.
    #[arg(long, default_value = "127.0.0.1:5050")]
    pub listen: SocketAddr,
    /// Directory of the state store; created if missing. A restart on it keeps all state.
    #[arg(long, required = true)]
    pub data_dir: Option<PathBuf>,
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
    /// This master's number in its group of masters (1, 2, 3, ...); with one master, 1.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub node_id: u64,
    /// Another master of the group, as `NUMBER=HOST:PORT` (the address it listens on);
    /// repeat for each, or give them all at once with `--peers A,B,...`. The master with the
    /// lowest number creates the group on its first start; every other one needs the group's
    /// CA, secrets key and admin token in its data dir.
    #[arg(long = "peer", value_name = "NUMBER=HOST:PORT", value_parser = parse_peer)]
    pub peer: Vec<(u64, String)>,
    /// The other masters of the group, comma-separated `NUMBER=HOST:PORT` (as `--peer`).
    #[arg(long, value_name = "NUMBER=HOST:PORT,...", value_delimiter = ',', value_parser = parse_peer)]
    pub peers: Vec<(u64, String)>,
}

/// `--peer NUMBER=HOST:PORT`.
fn parse_peer(text: &str) -> Result<(u64, String), String> {
    let (number, address) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NUMBER=HOST:PORT (for example 2=10.0.0.12:5050)"))?;
    let number: u64 = number
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{number}` in `{text}` is not a master number (1, 2, 3, ...)"))?;
    let address = address.trim();
    let (host, port) =
        address.rsplit_once(':').ok_or_else(|| format!("`{address}` in `{text}` has no port: write HOST:PORT"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("`{address}` in `{text}` is not HOST:PORT"));
    }
    Ok((number, address.to_string()))
}

/// `gantry master …`
#[derive(Debug, clap::Subcommand)]
pub enum MasterCommand {
    /// Lists the masters: number, address, role (leader, follower, learner), term, last applied
    /// index and how far each lags behind the leader.
    List {
        #[command(flatten)]
        client: super::ClientArgs,
    },
    /// Adds a running master to the group (admin): it joins as a learner and becomes a voter
    /// once it has caught up. Start it first with `gantry master --node-id ID --listen
    /// HOST:PORT --peer ...` (the group's CA, secrets key and admin token in its data dir).
    /// Running it again is safe: it finishes an add that was interrupted.
    Add {
        /// The new master's number (its `--node-id`).
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
        /// The address it serves on, as the other masters reach it (its `--listen`).
        #[arg(value_name = "HOST:PORT")]
        address: String,
        #[command(flatten)]
        client: super::ClientArgs,
    },
    /// Removes a master from the group (admin); stop its process afterwards. Refused when the
    /// masters left could not commit (the last one, or no majority of answering masters), and
    /// for the leader (stop it first: another master leads, and the removal goes there).
    Remove {
        /// The master's number.
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
        #[command(flatten)]
        client: super::ClientArgs,
    },
}

/// Runs the master, or a `master` subcommand.
pub async fn run(args: MasterArgs) -> anyhow::Result<()> {
    match args.command {
        Some(MasterCommand::List { client }) => return list(&client).await,
        Some(MasterCommand::Add { id, address, client }) => {
            let masters = client.client()?.add_master(id, &address).await?;
            return show(&masters, client.output);
        }
        Some(MasterCommand::Remove { id, client }) => {
            let masters = client.client()?.remove_master(id).await?;
            return show(&masters, client.output);
        }
        None => {}
    }
    let data_dir = args.data_dir.context("--data-dir is required to run a master")?;
    if args.agent_unreachable_timeout <= args.heartbeat_interval {
        anyhow::bail!(
            "--agent-unreachable-timeout ({:?}) must be longer than --heartbeat-interval ({:?})",
            args.agent_unreachable_timeout,
            args.heartbeat_interval
        );
    }
    let mut config = gantry_master::MasterConfig::new(args.listen, data_dir.clone());
    config.heartbeat_interval = args.heartbeat_interval;
    config.agent_unreachable_timeout = args.agent_unreachable_timeout;
    config.tls_names = args.tls_san;
    config.node_id = args.node_id;
    for (number, address) in args.peer.into_iter().chain(args.peers) {
        if number == args.node_id {
            anyhow::bail!(
                "--peer {number}={address} names this master's own number (--node-id {number}): list only the others"
            );
        }
        if config.peers.insert(number, address).is_some() {
            anyhow::bail!("--peer names master {number} twice");
        }
    }
    gantry_master::run(config).await.with_context(|| format!("master with data dir {}", data_dir.display()))
}

async fn list(client: &super::ClientArgs) -> anyhow::Result<()> {
    show(&client.client()?.list_masters().await?, client.output)
}

/// Prints the masters as a table, or as JSON.
fn show(masters: &[gantry_api::client::MasterInfo], output: crate::output::Format) -> anyhow::Result<()> {
    if output == crate::output::Format::Json {
        return crate::output::json(masters);
    }
    let or_dash = |value: Option<u64>| value.map_or_else(|| "-".to_string(), |v| v.to_string());
    let rows: Vec<Vec<String>> = masters
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.address.clone(),
                m.role.clone(),
                or_dash(m.term),
                or_dash(m.last_applied),
                or_dash(m.lag),
            ]
        })
        .collect();
    crate::output::table(&["ID", "ADDRESS", "ROLE", "TERM", "APPLIED", "LAG"], &rows);
    Ok(())
}
