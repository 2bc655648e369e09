//! Allocator benchmark at the scale of the benchmark issue: 10,000 agents, 1,000 apps of 100
//! instances (100,000 tasks). Prints how long loading, the first placement of everything, an
//! idle cycle and status updates take, and what one durable redb commit costs on this disk. Run: `cargo bench -p gantry-master --bench allocator`.

use gantry_api::protocol::StatusUpdate;
use gantry_api::{Agent, AgentInfo, AgentState, App, AppDefinition, PortRange, Resources, TaskState};
use gantry_master::agent_protocol::status_change;
use gantry_master::allocator::run_cycle;
use gantry_master::services::ServicesFramework;
use gantry_master::store::{AppRecord, StoreOp};
use gantry_master::{Framework, MasterConfig, MemStore, Store, build};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

const AGENTS: usize = 10_000;
const APPS: usize = 1_000;
const INSTANCES: u32 = 100;

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("allocator bench: {AGENTS} agents, {APPS} apps x {INSTANCES} instances, {cores} cores");
    let store = Arc::new(MemStore::new());
    let mut ops = Vec::new();
    for i in 0..AGENTS {
        ops.push(StoreOp::PutAgent(Agent {
            info: AgentInfo {
                id: format!("agent-{i}"),
                hostname: format!("host-{i}"),
                endpoint: String::new(),
                resources: Resources {
                    ports: vec![PortRange { begin: 31000, end: 31999 }],
                    ..Resources::scalar(32.0, 131_072.0, 1_000_000.0, 0)
                },
                attributes: BTreeMap::from([("zone".to_string(), format!("z{}", i % 3))]),
                version: String::new(),
            },
            state: AgentState::Active,
            drain: None,
            registered_at: 0,
            last_seen_at: 0,
            used: Resources::default(),
            tasks: 0,
        }));
    }
    for i in 0..APPS {
        let definition: AppDefinition = serde_json::from_value(serde_json::json!({
            "id": format!("app-{i}"), "cmd": "serve", "instances": INSTANCES, "ports": [{"name": "http"}]
        }))
        .expect("valid definition");
        let app = App { definition, version: 1, created_at: 0, updated_at: 0, status: Default::default() };
        ops.push(StoreOp::PutApp(AppRecord { app, config_version: 1 }));
    }
    store.write(&ops).expect("memory store");

    let (_shutdown, rx) = tokio::sync::watch::channel(false);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = MasterConfig::new("127.0.0.1:0".parse().expect("addr"), dir.path().to_path_buf());
    let started = Instant::now();
    let master = build(config, store.clone(), rx).expect("build");
    println!("load state:                       {:>8.1} ms", ms(started));

    let mut frameworks: Vec<Box<dyn Framework>> = vec![Box::new(ServicesFramework::new())];
    let started = Instant::now();
    run_cycle(&master, &mut frameworks);
    let placed = master.lock().task_count();
    println!("first cycle (place {placed} tasks):  {:>8.1} ms", ms(started));
    assert_eq!(placed, APPS * INSTANCES as usize, "every instance fits");

    let started = Instant::now();
    run_cycle(&master, &mut frameworks);
    println!("idle cycle:                       {:>8.1} ms", ms(started));

    let ids: Vec<(String, String)> =
        master.lock().tasks().take(10_000).map(|t| (t.id.clone(), t.agent_id.clone())).collect();
    let started = Instant::now();
    for (n, (task_id, agent_id)) in ids.iter().enumerate() {
        let update = StatusUpdate {
            uuid: format!("u{n}"),
            task_id: task_id.clone(),
            state: TaskState::Running,
            healthy: None,
            exit_code: None,
            message: None,
            timestamp: 0,
            limits: Vec::new(),
        };
        let mut state = master.lock();
        let change = status_change(&mut state, agent_id, &update, 0);
        master.commit(&mut state, change).expect("memory store");
    }
    println!("10,000 status updates (in memory):{:>8.1} ms", ms(started));

    let dir = tempfile::tempdir().expect("tempdir");
    let redb = gantry_master::RedbStore::open(dir.path()).expect("redb");
    let tasks: Vec<_> = master.lock().tasks().take(1_000).cloned().collect();
    let started = Instant::now();
    for task in tasks {
        redb.write(&[StoreOp::PutTask(task)]).expect("durable write");
    }
    println!("1,000 durable task writes (redb):  {:>8.1} ms", ms(started));
}

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}
