//! `gantry dev`: a whole cluster in one process — a master and N agents on loopback — for
//! trying gantry and developing workloads. Agents get distinct hostnames (`dev-0`, `dev-1`, …),
//! zones (`zone=z0`, `z1`, …) and port ranges, so constraints and ports behave as on real hosts.
//! State and task sandboxes live in `--data-dir`; a restart re-adopts tasks still running.

use anyhow::Context;
use gantry_api::{PortRange, Resources};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Arguments of `gantry dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Number of agents.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub agents: u16,
    /// Address of the master's API.
    #[arg(long, default_value = "127.0.0.1:5050")]
    pub listen: SocketAddr,
    /// Directory for the master's state and the agents' work dirs (default `~/.gantry/dev`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// First port of the agents' port ranges; each agent gets `--ports-per-agent` ports after it.
    #[arg(long, default_value_t = 31000)]
    pub port_base: u16,
    /// Ports offered by each agent.
    #[arg(long, default_value_t = 500)]
    pub ports_per_agent: u16,
}

/// Runs the dev cluster until SIGINT or SIGTERM.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".gantry").join("dev"))
            .context("HOME is not set: pass --data-dir")?,
    };
    let last_port = u32::from(args.port_base) + u32::from(args.agents) * u32::from(args.ports_per_agent) - 1;
    if args.ports_per_agent == 0 || last_port > u32::from(u16::MAX) {
        anyhow::bail!(
            "--port-base {} with {} agents × {} ports passes port 65535",
            args.port_base,
            args.agents,
            args.ports_per_agent
        );
    }
    let master = gantry_master::start(gantry_master::MasterConfig::new(args.listen, data_dir.join("master")))
        .await
        .with_context(|| format!("cannot start the master on {}", args.listen))?;
    let master_url = format!("https://{}", master.local_addr());
    let join_token = std::fs::read_to_string(data_dir.join("master").join(gantry_trust::token::JOIN_TOKEN_FILE))
        .context("cannot read the master's join token")?;
    let executor_path = std::env::current_exe().context("cannot find the gantry binary to use as task executor")?;
    let mut agents = Vec::new();
    for i in 0..args.agents {
        let begin = args.port_base + i * args.ports_per_agent;
        let resources = Resources {
            ports: vec![PortRange { begin, end: begin + (args.ports_per_agent - 1) }],
            ..Resources::default()
        };
        let config = gantry_agent::AgentConfig {
            master: master_url.clone(),
            work_dir: data_dir.join(format!("agent-{i}")),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            hostname: Some(format!("dev-{i}")),
            resources: Some(resources),
            attributes: BTreeMap::from([("zone".to_string(), format!("z{}", i % 3))]),
            executor_path: executor_path.clone(),
            join_token: Some(join_token.clone()),
            // A dev cluster runs its tasks as whoever runs it, like any program they start.
            task_user: current_user(),
            task_limits: Default::default(),
            images: Default::default(),
            gpus: Default::default(),
            cgroup_favordynmods: false,
        };
        agents.push(gantry_agent::start(config).await.with_context(|| format!("cannot start agent dev-{i}"))?);
    }
    println!("gantry dev cluster: 1 master, {} agents; state in {}", args.agents, data_dir.display());
    let master_dir = data_dir.join("master");
    println!("API: {master_url}");
    println!(
        "   export GANTRY_MASTER={master_url} GANTRY_CA_CERT={} GANTRY_TOKEN=$(cat {})",
        master_dir.join(gantry_trust::pki::CA_CERT_FILE).display(),
        master_dir.join(gantry_trust::token::ADMIN_TOKEN_FILE).display()
    );
    println!("Try: gantry app deploy configs/apps/web.toml && gantry task list");
    println!("Ctrl-C stops the cluster; tasks keep running and are re-adopted by the next `gantry dev`.");
    wait_for_signal().await?;
    for agent in agents {
        agent.shutdown().await;
    }
    master.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// The name of the user running this process.
fn current_user() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::effective()).ok().flatten().map(|u| u.name)
}
