//! `placement`: the real allocator and scheduler in this process (no HTTP), over a store of
//! 10,000 heterogeneous agents (zone and rack attributes).
//!
//! 1. 100,000 tasks of 1,000 apps with a mix of constraints, placed by the `services` framework
//!    through `allocator::run_cycle`, the loop the master runs: placements per second over the
//!    cycles until everything is placed (offers, DRF, the scheduler, accept checks and the commit
//!    to the store included).
//! 2. Mesos' allocator benchmark shape: 10,000 agents × 1,000 frameworks that hold 100 tasks each
//!    and take one more task per cycle; the median time of one allocation cycle.

use crate::report::{Figure, Report, Target, progress};
use gantry_api::protocol::LaunchTask;
use gantry_api::{Agent, AgentInfo, AgentState, App, AppDefinition, PortRange, Resources, Task};
use gantry_master::allocator::{run_cycle, staging_task};
use gantry_master::services::ServicesFramework;
use gantry_master::store::{AppRecord, StoreOp};
use gantry_master::{Accept, ClusterView, Framework, Kill, MasterConfig, MemStore, Offer, RedbStore, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `placement`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Simulated agents.
    #[arg(long, default_value_t = 10_000)]
    pub agents: usize,
    /// Apps to place (the `services` framework).
    #[arg(long, default_value_t = 1_000)]
    pub apps: usize,
    /// Instances per app.
    #[arg(long, default_value_t = 100)]
    pub instances: u32,
    /// Frameworks of the allocator cycle (Mesos' benchmark shape).
    #[arg(long, default_value_t = 1_000)]
    pub frameworks: usize,
    /// Tasks each framework holds before the measured cycles.
    #[arg(long, default_value_t = 100)]
    pub tasks_per_framework: usize,
    /// Measured allocation cycles (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub cycles: usize,
    /// `redb` (durable, as in production; in a temp dir) or `mem` (the allocator alone).
    #[arg(long, default_value = "redb")]
    pub store: StoreKind,
}

/// Where the master under test keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// The production store, fsync on commit.
    Redb,
    /// In memory: the allocator without I/O.
    Mem,
}

/// Agent `i`: 8–64 cpus, 16–256 GiB, 1,000 ports, zone z0–z2, rack r0–r99.
pub fn agent(i: usize) -> Agent {
    let size = [8.0, 16.0, 32.0, 64.0][i % 4];
    Agent {
        info: AgentInfo {
            id: format!("agent-{i}"),
            hostname: format!("host-{i}.bench"),
            endpoint: String::new(),
            resources: Resources {
                ports: vec![PortRange { begin: 20_000, end: 20_999 }],
                ..Resources::scalar(size, size * 2048.0, 500_000.0, 0)
            },
            attributes: BTreeMap::from([
                ("zone".to_string(), format!("z{}", i % 3)),
                ("rack".to_string(), format!("r{}", (i / 3) % 100)),
            ]),
            version: "bench".to_string(),
        },
        state: AgentState::Active,
        drain: None,
        registered_at: 0,
        last_seen_at: 0,
        used: Resources::default(),
        tasks: 0,
    }
}

/// App `i` of the mix: a tenth each with UNIQUE hostname, GROUP_BY zone, MAX_PER rack, LIKE zone,
/// UNLIKE zone plus a port, the rest unconstrained; sizes vary.
pub fn app(i: usize, instances: u32) -> App {
    let constraints = match i % 10 {
        0 => serde_json::json!([["hostname", "UNIQUE"]]),
        1 => serde_json::json!([["zone", "GROUP_BY"]]),
        2 => serde_json::json!([["rack", "MAX_PER", "2"]]),
        3 => serde_json::json!([["zone", "LIKE", "z[01]"]]),
        4 => serde_json::json!([["zone", "UNLIKE", "z2"]]),
        _ => serde_json::json!([]),
    };
    let ports = if i.is_multiple_of(2) { serde_json::json!([{ "name": "http" }]) } else { serde_json::json!([]) };
    let cpus = [0.1, 0.25, 0.5][i % 3];
    let mem = [64.0, 128.0, 512.0][i % 3];
    let definition: AppDefinition = serde_json::from_value(serde_json::json!({
        "id": format!("app-{i}"),
        "cmd": "serve",
        "instances": instances,
        "cpus": cpus,
        "mem": mem,
        "ports": ports,
        "constraints": constraints,
    }))
    .expect("the bench's app definitions are valid");
    App { definition, version: 1, created_at: 0, updated_at: 0, status: Default::default() }
}

/// A store of the chosen kind; the temp dir (if any) must outlive it.
fn open_store(kind: StoreKind) -> anyhow::Result<(Arc<dyn Store>, Option<tempfile::TempDir>)> {
    Ok(match kind {
        StoreKind::Mem => (Arc::new(MemStore::new()), None),
        StoreKind::Redb => {
            let dir = tempfile::Builder::new().prefix("gantry-bench-placement-").tempdir()?;
            (Arc::new(RedbStore::open(dir.path())?), Some(dir))
        }
    })
}

/// A master core over `store`, with the sender of its shutdown signal (keep it alive).
fn master_over(
    store: Arc<dyn Store>,
) -> anyhow::Result<(Arc<gantry_master::Master>, tokio::sync::watch::Sender<bool>)> {
    let (shutdown, rx) = tokio::sync::watch::channel(false);
    let config = MasterConfig::new("127.0.0.1:0".parse()?, "/nonexistent".into());
    Ok((gantry_master::build(config, store, rx)?, shutdown))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the scenario.
pub fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    report.note(format!(
        "{} agents, {} apps x {} instances, {} frameworks x {} tasks, store {:?}; one thread",
        args.agents, args.apps, args.instances, args.frameworks, args.tasks_per_framework, args.store
    ));
    services_placement(args, report)?;
    allocation_cycle(args, report)
}

fn services_placement(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    progress("loading agents and apps");
    let (store, _dir) = open_store(args.store)?;
    let mut ops: Vec<StoreOp> = (0..args.agents).map(|i| StoreOp::PutAgent(agent(i))).collect();
    ops.extend((0..args.apps).map(|i| StoreOp::PutApp(AppRecord { app: app(i, args.instances), config_version: 1 })));
    store.write(&ops)?;
    let (master, _shutdown) = master_over(store)?;
    let mut frameworks: Vec<Box<dyn Framework>> = vec![Box::new(ServicesFramework::new())];
    let wanted = args.apps * args.instances as usize;
    progress(&format!("placing {wanted} tasks"));
    let mut busy = Duration::ZERO;
    let mut cycles = 0;
    let mut placed = 0;
    while placed < wanted && cycles < 50 {
        let started = Instant::now();
        run_cycle(&master, &mut frameworks);
        busy += started.elapsed();
        cycles += 1;
        let now = master.lock().task_count();
        if now == placed {
            break;
        }
        placed = now;
    }
    if placed < wanted {
        report.note(format!("only {placed} of {wanted} tasks fit"));
    }
    let rate = placed as f64 / busy.as_secs_f64().max(1e-9);
    report.add(Figure::new("placement.placements_per_s", rate, "placements/s").target(Target::at_least(100_000.0)));
    report.add(Figure::new("placement.place_all_s", busy.as_secs_f64(), "s"));
    report.add(Figure::new("placement.place_all_cycles", cycles as f64, "cycles"));
    let started = Instant::now();
    run_cycle(&master, &mut frameworks);
    report.add(Figure::new("placement.idle_cycle_ms", ms(started.elapsed()), "ms"));
    Ok(())
}

fn allocation_cycle(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    progress(&format!("allocation cycles: {} agents x {} frameworks", args.agents, args.frameworks));
    let (store, _dir) = open_store(args.store)?;
    let ops: Vec<StoreOp> = (0..args.agents).map(|i| StoreOp::PutAgent(agent(i))).collect();
    store.write(&ops)?;
    let (master, _shutdown) = master_over(store)?;
    let mut frameworks: Vec<Box<dyn Framework>> = (0..args.frameworks)
        .map(|i| Box::new(BenchFramework::new(i, args.tasks_per_framework, 1)) as Box<dyn Framework>)
        .collect();
    let started = Instant::now();
    run_cycle(&master, &mut frameworks);
    let held = master.lock().task_count();
    report.note(format!("warm-up cycle placed {held} tasks in {:.0} ms", ms(started.elapsed())));
    let mut times = Vec::new();
    for _ in 0..args.cycles.max(1) {
        let started = Instant::now();
        run_cycle(&master, &mut frameworks);
        times.push(started.elapsed());
    }
    let samples = crate::stats::Samples::from_durations(&times);
    report.add(Figure::new("placement.allocation_cycle_ms", samples.median(), "ms").target(Target::at_most(50.0)));
    report.note("reference: Mesos' allocator benchmark, 10,000 agents x 1,000 frameworks: 1.06 s per cycle");
    Ok(())
}

/// A framework of the cycle benchmark: wants `first` tasks (0.01 cpus, 16 MiB) in its first
/// cycle and `per_cycle` more in every later one and takes them from the offers starting at a position of its own, like the trivial
/// frameworks of Mesos' allocator benchmark. It owns the tasks whose app id is `fw<i>`.
#[derive(Debug)]
struct BenchFramework {
    app_id: String,
    name: String,
    index: usize,
    first: usize,
    per_cycle: usize,
    cycles: usize,
    next_task: usize,
}

impl BenchFramework {
    fn new(index: usize, first: usize, per_cycle: usize) -> Self {
        Self {
            app_id: format!("fw{index}"),
            name: format!("bench-{index}"),
            index,
            first,
            per_cycle,
            cycles: 0,
            next_task: 0,
        }
    }

    fn wanted(&self) -> usize {
        if self.cycles == 0 { self.first } else { self.per_cycle }
    }
}

impl Framework for BenchFramework {
    fn name(&self) -> &str {
        &self.name
    }

    fn owns(&self, task: &Task) -> bool {
        task.app_id == self.app_id
    }

    fn reconcile(&mut self, _view: &mut ClusterView<'_>) -> Vec<Kill> {
        Vec::new()
    }

    fn has_demand(&self) -> bool {
        self.wanted() > 0
    }

    fn resource_offers(&mut self, offers: &[Offer], view: &mut ClusterView<'_>) -> Vec<Accept> {
        let need = Resources::scalar(0.01, 16.0, 0.0, 0);
        let wanted = self.wanted();
        self.cycles += 1;
        let mut accepts = Vec::new();
        if offers.is_empty() {
            return accepts;
        }
        let start = (self.index * 7919 + self.next_task * 13) % offers.len();
        for k in 0..offers.len() {
            if accepts.len() == wanted {
                break;
            }
            let offer = &offers[(start + k) % offers.len()];
            if !offer.free.fits(&need) {
                continue;
            }
            let id = format!("{}-{}", self.app_id, self.next_task);
            self.next_task += 1;
            let mut task = staging_task(offer, id.clone(), &self.app_id, view.now());
            task.resources = need.clone();
            let launch = LaunchTask {
                task_id: id,
                app_id: self.app_id.clone(),
                cmd: Some("true".to_string()),
                args: None,
                env: BTreeMap::new(),
                resources: need.clone(),
                ports: Vec::new(),
                health_checks: Vec::new(),
                kill_grace_period_secs: 1.0,
                secrets: BTreeMap::new(),
                secret_files: BTreeMap::new(),
                secret_values: Default::default(),
                user: None,
                container: None,
                volumes: Vec::new(),
            };
            accepts.push(Accept { offer_id: offer.id, task, launch });
        }
        accepts
    }
}
