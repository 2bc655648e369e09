//! `footprint`: resident memory and CPU of an idle master and agent, and the resident memory of
//! a master serving many simulated agents and tasks.
//!
//! 1. Idle: a local cluster (master + 3 agents, no workloads) left alone for `--idle`; RSS at
//!    the end, CPU as a share of one core over the window.
//! 2. Loaded: a master process and `--agents` simulated agents ([`crate::sim_agent`]) speaking
//!    the real protocol; `--apps` apps of `--instances` instances deployed through the API; RSS
//!    once every task is RUNNING. Its data dir is on tmpfs (`/dev/shm`) when there is one: this
//!    measures memory, and 200,000 fsynced status updates on a disk would only make it slow.
//!    Each simulated agent has its own certificate and so its own TLS connections, two like a
//!    real agent (the command stream and one for everything else): the master holds two per
//!    agent, and so does this process. The scenario raises its open-files limit (the master
//!    inherits it); where the hard limit holds fewer agents than `--agents`, it simulates as many
//!    as fit, says so, and reports the loaded RSS without the target.

use crate::cluster::{LocalCluster, MasterOptions};
use crate::process::{cpu_time, mib, raise_open_files, rss_bytes};
use crate::report::{Figure, Report, Target, progress};
use crate::sim_agent::Fleet;
use anyhow::{Context, bail};
use futures_util::StreamExt;
use gantry_api::{AgentInfo, PortRange, Resources};
use gantry_trust::Ca;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// Options of `footprint`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// How long the idle cluster is left alone.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub idle: Duration,
    /// Simulated agents of the loaded master (0 skips the loaded part).
    #[arg(long, default_value_t = 10_000)]
    pub agents: usize,
    /// Apps deployed on them.
    #[arg(long, default_value_t = 1_000)]
    pub apps: usize,
    /// Instances per app.
    #[arg(long, default_value_t = 100)]
    pub instances: u32,
    /// Heartbeat interval of the loaded master (the product's default is 1s; unreachable after
    /// three intervals). 5s by default here: 10,000 agents at 1 s are 10,000 heartbeats/s that
    /// the simulating process and the master share 2 cores for.
    #[arg(long, default_value = "5s")]
    pub heartbeat_interval: String,
    /// Give up on the loaded part after this long. Registering 10,000 agents over mutual TLS
    /// takes about 40 s of it on 2 cores (two handshakes per agent).
    #[arg(long, default_value = "240s", value_parser = humantime::parse_duration)]
    pub load_timeout: Duration,
    /// Registrations and status updates in flight from the simulated agents together (as many
    /// heartbeats again), besides their command streams. Each agent has its own connections, as
    /// a real one does; 10,000 real agents can have 10,000 requests in flight.
    #[arg(long, default_value_t = 512)]
    pub max_in_flight: usize,
}

/// Runs the scenario.
pub fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let bin = crate::binary::gantry()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (agents, limit) = agents_that_fit(args.agents, args.max_in_flight);
    if args.agents > 0 && agents == 0 {
        bail!("the open-files limit ({limit}) holds no simulated agent: raise it (`ulimit -n`)");
    }
    if agents < args.agents {
        report.note(format!(
            "the open-files limit ({limit}, `ulimit -Hn`) holds {agents} simulated agents with two TLS connections \
             each, not {}: the loaded RSS has no target in this run",
            args.agents
        ));
    }
    runtime.block_on(idle(args, report, &bin))?;
    if agents > 0 {
        runtime.block_on(loaded(args, agents, report, &bin))?;
    }
    Ok(())
}

/// How many of `wanted` simulated agents the open-files limit holds, after raising it as far as
/// this process may, and that limit: each agent takes two connections in this process and two
/// in the master, besides up to `max_in_flight` short-lived ones and the files both keep open.
fn agents_that_fit(wanted: usize, max_in_flight: usize) -> (usize, u64) {
    let reserve = max_in_flight as u64 + 256;
    let limit = raise_open_files(2 * wanted as u64 + reserve);
    let fit = usize::try_from(limit.saturating_sub(reserve) / 2).map_or(wanted, |fit| fit.min(wanted));
    (fit, limit)
}

async fn idle(args: &Args, report: &mut Report, bin: &std::path::Path) -> anyhow::Result<()> {
    let cluster = LocalCluster::start(bin, 3).await?;
    let master = cluster.master.pid().context("the master runs")?;
    let agent = cluster.agents[0].pid().context("the agent runs")?;
    progress(&format!("idle for {:?}", args.idle));
    let (master_cpu, agent_cpu) = (cpu_time(master), cpu_time(agent));
    tokio::time::sleep(args.idle).await;
    let window = args.idle.as_secs_f64().max(1e-3);
    let share = |before: Option<Duration>, pid| match (before, cpu_time(pid)) {
        (Some(before), Some(after)) => (after.saturating_sub(before)).as_secs_f64() / window * 100.0,
        _ => f64::NAN,
    };
    let master_rss = rss_bytes(master).context("master RSS")?;
    let agent_rss = rss_bytes(agent).context("agent RSS")?;
    report.add(Figure::new("footprint.master_idle_rss_mib", mib(master_rss), "MiB").target(Target::at_most(40.0)));
    report.add(Figure::new("footprint.agent_idle_rss_mib", mib(agent_rss), "MiB").target(Target::at_most(15.0)));
    report.add(Figure::new("footprint.master_idle_cpu_pct", share(master_cpu, master), "%"));
    report.add(Figure::new("footprint.agent_idle_cpu_pct", share(agent_cpu, agent), "%"));
    Ok(())
}

/// Simulated agent `i`: 16 cpus, 64 GiB, 1,000 ports, zone and rack.
fn sim_info(i: usize) -> AgentInfo {
    AgentInfo {
        id: format!("sim-{i}"),
        hostname: format!("sim-{i}.bench"),
        endpoint: format!("https://sim-{i}.bench:5051"),
        resources: Resources {
            ports: vec![PortRange { begin: 20_000, end: 20_999 }],
            ..Resources::scalar(16.0, 65_536.0, 100_000.0, 0)
        },
        attributes: BTreeMap::from([
            ("zone".to_string(), format!("z{}", i % 3)),
            ("rack".to_string(), format!("r{}", (i / 3) % 100)),
        ]),
        version: "bench".to_string(),
    }
}

async fn loaded(args: &Args, agents: usize, report: &mut Report, bin: &std::path::Path) -> anyhow::Result<()> {
    let shm = std::path::Path::new("/dev/shm");
    let options = MasterOptions {
        heartbeat_interval: Some(args.heartbeat_interval.clone()),
        agent_unreachable_timeout: Some(format!(
            "{}s",
            3 * humantime::parse_duration(&args.heartbeat_interval)?.as_secs().max(1)
        )),
        data_parent: shm.is_dir().then(|| shm.to_path_buf()),
        masters: 1,
    };
    let cluster = LocalCluster::start_master(bin, &options).await?;
    let master = cluster.master.pid().context("the master runs")?;
    let wanted = args.apps * args.instances as usize;
    report.note(format!(
        "loaded: {} simulated agents, {} apps x {} instances, heartbeat {}, data dir {}",
        agents,
        args.apps,
        args.instances,
        args.heartbeat_interval,
        cluster.data_dir.display()
    ));
    let started = Instant::now();
    progress(&format!("registering {agents} simulated agents"));
    let ca = Ca::load(&cluster.data_dir)?.context("the master's data dir has no cluster CA")?;
    let fleet = Fleet::start(&cluster.master_url, ca, (0..agents).map(sim_info).collect(), args.max_in_flight);
    let deadline = started + args.load_timeout;
    let mut last = Instant::now();
    while fleet.counters.connected.load(Ordering::Relaxed) < agents {
        if fleet.counters.failed.load(Ordering::Relaxed) > 0 {
            bail!("{} simulated agents could not start", fleet.counters.failed.load(Ordering::Relaxed));
        }
        if Instant::now() > deadline {
            bail!("only {} agents connected", fleet.counters.connected.load(Ordering::Relaxed));
        }
        if last.elapsed() > Duration::from_secs(10) {
            progress(&format!(
                "{} agents connected, {} requests failed or refused",
                fleet.counters.connected.load(Ordering::Relaxed),
                fleet.counters.errors.load(Ordering::Relaxed)
            ));
            last = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report.add(Figure::new("footprint.loaded_agents", agents as f64, "agents"));
    report.add(Figure::new("footprint.register_agents_s", started.elapsed().as_secs_f64(), "s"));
    progress(&format!("deploying {wanted} tasks"));
    let client = &cluster.client;
    let instances = args.instances;
    let created: Vec<bool> = futures_util::stream::iter(0..args.apps)
        .map(|i| async move {
            if Instant::now() > deadline {
                return false;
            }
            let definition = serde_json::from_value(serde_json::json!({
                "id": format!("load-{i}"), "cmd": "serve", "instances": instances, "cpus": 0.1, "mem": 64,
            }));
            match definition {
                Ok(definition) => client.create_app(&definition).await.is_ok(),
                Err(_) => false,
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let deployed = created.iter().filter(|ok| **ok).count();
    if deployed < args.apps {
        report.note(format!("only {deployed} of {} apps were deployed before the timeout", args.apps));
    }
    let wanted = deployed * args.instances as usize;
    last = Instant::now();
    while fleet.counters.running.load(Ordering::Relaxed) < wanted {
        if Instant::now() > deadline {
            report.note(format!(
                "loaded part stopped at the timeout: {} of {wanted} tasks running",
                fleet.counters.running.load(Ordering::Relaxed)
            ));
            break;
        }
        if last.elapsed() > Duration::from_secs(10) {
            let counters = &fleet.counters;
            progress(&format!(
                "{} of {wanted} tasks running; {} agents connected, {} requests failed or refused",
                counters.running.load(Ordering::Relaxed),
                counters.connected.load(Ordering::Relaxed),
                counters.errors.load(Ordering::Relaxed)
            ));
            last = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let running = fleet.counters.running.load(Ordering::Relaxed);
    report.add(Figure::new("footprint.loaded_tasks_running", running as f64, "tasks"));
    report.add(Figure::new("footprint.load_s", started.elapsed().as_secs_f64(), "s"));
    let rss = rss_bytes(master).context("master RSS")?;
    let figure = Figure::new("footprint.master_loaded_rss_mib", mib(rss), "MiB");
    report.add(if agents == args.agents { figure.target(Target::at_most(1024.0)) } else { figure });
    Ok(())
}
