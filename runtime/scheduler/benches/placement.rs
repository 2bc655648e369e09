//! Placement throughput in the shape the allocator sees: 1,000 apps of 100 instances each placed
//! one after another against one snapshot of 10,000 agents. Prints figures; asserts nothing.
//!
//! Run: `cargo bench -p gantry-scheduler --bench placement`.

use gantry_api::{Constraint, ConstraintOperator, PortRange, Resources};
use gantry_scheduler::{AgentSlot, PlacementRequest, place};
use std::collections::BTreeMap;
use std::time::Instant;

const AGENTS: usize = 10_000;
const APPS: usize = 1_000;
const INSTANCES: usize = 100;

fn agents() -> Vec<AgentSlot> {
    (0..AGENTS)
        .map(|i| AgentSlot {
            agent_id: format!("agent-{i}"),
            hostname: format!("host-{i}.example"),
            attributes: BTreeMap::from([
                ("zone".to_string(), format!("zone-{}", i % 3)),
                ("rack".to_string(), format!("rack-{}", i % 100)),
            ]),
            free: Resources {
                ports: vec![PortRange { begin: 31000, end: 31999 }],
                ..Resources::scalar(32.0, 131_072.0, 1_000_000.0, 0)
            },
        })
        .collect()
}

fn constraints_of(app: usize) -> Vec<Constraint> {
    let c = |field: &str, operator, value: Option<&str>| Constraint {
        field: field.to_string(),
        operator,
        value: value.map(str::to_string),
    };
    match app % 10 {
        0 => vec![c("hostname", ConstraintOperator::Unique, None)],
        1 => vec![c("zone", ConstraintOperator::GroupBy, None)],
        2 => vec![c("rack", ConstraintOperator::MaxPer, Some("2"))],
        3 => vec![c("zone", ConstraintOperator::Like, Some("zone-[01]"))],
        _ => Vec::new(),
    }
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut agents = agents();
    let resources = Resources::scalar(0.5, 256.0, 100.0, 0);
    let constraints: Vec<Vec<Constraint>> = (0..APPS).map(constraints_of).collect();
    let kinds = ["UNIQUE hostname", "GROUP_BY zone", "MAX_PER rack 2", "LIKE zone", "none"];
    let mut per_kind = [(0usize, 0f64); 5];
    let started = Instant::now();
    let mut placed = 0usize;
    for (app, constraints) in constraints.iter().enumerate() {
        let app_started = Instant::now();
        let app_id = format!("/app-{app}");
        let request =
            PlacementRequest { app_id: &app_id, resources: &resources, ports: &[0], constraints, count: INSTANCES };
        let n = place(&request, &mut agents, &[]).placed.len();
        placed += n;
        let kind = &mut per_kind[(app % 10).min(4)];
        kind.0 += n;
        kind.1 += app_started.elapsed().as_secs_f64();
    }
    let elapsed = started.elapsed();
    println!(
        "placement: {placed} of {} instances of {APPS} apps on {AGENTS} agents in {:.3} s = {:.0} placements/s ({cores} cores, one thread)",
        APPS * INSTANCES,
        elapsed.as_secs_f64(),
        placed as f64 / elapsed.as_secs_f64(),
    );
    for (kind, (n, seconds)) in kinds.iter().zip(per_kind) {
        println!("  constraint {kind:>16}: {n:>6} placements in {seconds:.3} s = {:.0}/s", n as f64 / seconds);
    }
}
