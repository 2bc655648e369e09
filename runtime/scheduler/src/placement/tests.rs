//! Unit tests of placement: every operator, ports, resources, reasons, determinism.

use super::*;
use gantry_api::{ConstraintOperator as Op, PortRange};

fn agent(hostname: &str, attributes: &[(&str, &str)], free: Resources) -> AgentSlot {
    AgentSlot {
        agent_id: format!("id-{hostname}"),
        hostname: hostname.to_string(),
        attributes: attributes.iter().map(|&(k, v)| (k.to_string(), v.to_string())).collect(),
        free,
    }
}

fn roomy() -> Resources {
    Resources { ports: vec![PortRange { begin: 31000, end: 31009 }], ..Resources::scalar(8.0, 8192.0, 10000.0, 0) }
}

fn zoned(zones: &[&str]) -> Vec<AgentSlot> {
    zones.iter().enumerate().map(|(i, z)| agent(&format!("h{i}"), &[("zone", z)], roomy())).collect()
}

fn on(hostname: &str, attributes: &[(&str, &str)]) -> PlacedOn {
    PlacedOn {
        hostname: hostname.to_string(),
        attributes: attributes.iter().map(|&(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

fn rule(field: &str, operator: Op, value: Option<&str>) -> Constraint {
    Constraint { field: field.to_string(), operator, value: value.map(str::to_string) }
}

fn small() -> Resources {
    Resources::scalar(1.0, 128.0, 0.0, 0)
}

fn run(
    agents: &mut [AgentSlot],
    ports: &[u16],
    constraints: &[Constraint],
    count: usize,
    existing: &[PlacedOn],
) -> PlacementOutcome {
    let resources = small();
    let request = PlacementRequest { app_id: "/web", resources: &resources, ports, constraints, count };
    place(&request, agents, existing)
}

fn indices(outcome: &PlacementOutcome) -> Vec<usize> {
    outcome.placed.iter().map(|p| p.agent_index).collect()
}

#[test]
fn spreads_over_agents_and_subtracts_what_it_places() {
    let mut agents = zoned(&["a", "a", "a"]);
    let outcome = run(&mut agents, &[], &[], 5, &[]);
    assert_eq!(indices(&outcome), vec![0, 1, 2, 0, 1]);
    assert_eq!(outcome.reason, None);
    assert_eq!(agents[0].free.cpus, 6.0);
    assert_eq!(agents[2].free.mem, 8192.0 - 128.0);
}

#[test]
fn prefers_agents_without_existing_instances() {
    let mut agents = zoned(&["a", "a", "a"]);
    let outcome = run(&mut agents, &[], &[], 3, &[on("h0", &[]), on("h1", &[])]);
    assert_eq!(indices(&outcome), vec![2, 0, 1]);
}

#[test]
fn zero_count_places_nothing_and_needs_no_reason() {
    let mut agents = zoned(&["a"]);
    let outcome = run(&mut agents, &[], &[], 0, &[]);
    assert_eq!(outcome, PlacementOutcome { placed: vec![], reason: None });
}

#[test]
fn no_agents() {
    let outcome = run(&mut [], &[], &[], 1, &[]);
    assert!(outcome.placed.is_empty());
    assert_eq!(outcome.reason.as_deref(), Some("no agents are offered"));
}

#[test]
fn unique_hostname_reason_names_agents_and_instances() {
    let mut agents = zoned(&["a", "b", "c"]);
    let outcome = run(&mut agents, &[], &[rule("hostname", Op::Unique, None)], 4, &[]);
    assert_eq!(indices(&outcome), vec![0, 1, 2]);
    assert_eq!(outcome.reason.as_deref(), Some("no agent satisfies UNIQUE hostname: 3 agents, 4 instances"));
}

#[test]
fn unique_counts_existing_instances_and_requires_the_attribute() {
    let mut agents = zoned(&["a", "b", "c"]);
    agents.push(agent("bare", &[], roomy()));
    let outcome = run(&mut agents, &[], &[rule("zone", Op::Unique, None)], 3, &[on("x", &[("zone", "b")])]);
    assert_eq!(indices(&outcome), vec![0, 2]);
    assert_eq!(outcome.reason.as_deref(), Some("no agent satisfies UNIQUE zone: 3 zones, 4 instances"));
}

#[test]
fn cluster_with_value_only_uses_matching_agents() {
    let mut agents = zoned(&["a", "b", "b"]);
    let outcome = run(&mut agents, &[], &[rule("zone", Op::Cluster, Some("b"))], 3, &[]);
    assert_eq!(indices(&outcome), vec![1, 2, 1]);
}

#[test]
fn cluster_without_value_follows_existing_instances_or_the_first_placed() {
    let mut agents = zoned(&["a", "b", "b", "a"]);
    let together = [rule("zone", Op::Cluster, None)];
    let outcome = run(&mut agents, &[], &together, 3, &[on("elsewhere", &[("zone", "b")])]);
    assert_eq!(indices(&outcome), vec![1, 2, 1]);
    let mut agents = zoned(&["a", "b", "b", "a"]);
    let outcome = run(&mut agents, &[], &together, 3, &[]);
    assert_eq!(indices(&outcome), vec![0, 3, 0]);
}

#[test]
fn cluster_reason_names_the_pinned_value() {
    let mut agents = zoned(&["a", "b"]);
    agents[1].free = Resources::scalar(0.5, 100.0, 0.0, 0);
    let outcome = run(&mut agents, &[], &[rule("zone", Op::Cluster, None)], 1, &[on("x", &[("zone", "b")])]);
    assert!(outcome.placed.is_empty());
    let reason = outcome.reason.expect("nothing placed");
    assert!(reason.starts_with("CLUSTER zone keeps instances on zone b"), "{reason}");
}

#[test]
fn group_by_fills_the_emptiest_value_first() {
    let mut agents = zoned(&["a", "a", "a", "b", "c"]);
    let existing = [on("x", &[("zone", "a")]), on("y", &[("zone", "b")])];
    let outcome = run(&mut agents, &[], &[rule("zone", Op::GroupBy, None)], 4, &existing);
    let zones: Vec<&str> = outcome.placed.iter().map(|p| agents[p.agent_index].attributes["zone"].as_str()).collect();
    // Ties between equally loaded values go to the value seen first among the agents.
    assert_eq!(zones, vec!["c", "a", "b", "c"]);
}

#[test]
fn group_by_minimum_refuses_to_stack_on_too_few_values() {
    let mut agents = zoned(&["a", "b"]);
    let outcome = run(&mut agents, &[], &[rule("zone", Op::GroupBy, Some("3"))], 3, &[]);
    assert_eq!(indices(&outcome), vec![0, 1]);
    assert_eq!(
        outcome.reason.as_deref(),
        Some("GROUP_BY zone 3 needs 3 distinct zones with room, but only 2 can take an instance")
    );
}

#[test]
fn group_by_skips_values_without_room() {
    let mut agents = zoned(&["a", "b"]);
    agents[0].free = Resources::scalar(0.0, 0.0, 0.0, 0);
    let outcome = run(&mut agents, &[], &[rule("zone", Op::GroupBy, None)], 2, &[]);
    assert_eq!(indices(&outcome), vec![1, 1]);
    assert_eq!(outcome.reason, None);
}

#[test]
fn like_and_unlike_match_whole_values() {
    let mut agents = zoned(&["us-east", "eu-west", "us"]);
    agents.push(agent("bare", &[], roomy()));
    let outcome = run(&mut agents, &[], &[rule("zone", Op::Like, Some("us-.*"))], 2, &[]);
    assert_eq!(indices(&outcome), vec![0, 0]);
    let mut agents_again = agents.clone();
    let outcome = run(&mut agents_again, &[], &[rule("zone", Op::Unlike, Some("us.*"))], 2, &[]);
    assert_eq!(indices(&outcome), vec![1, 3]);
}

#[test]
fn like_reason_when_nothing_matches() {
    let mut agents = zoned(&["eu-1", "eu-2", "ap-1"]);
    let outcome = run(&mut agents, &[], &[rule("zone", Op::Like, Some("^us-.*"))], 1, &[]);
    assert_eq!(outcome.reason.as_deref(), Some("no agent matches LIKE zone ^us-.*: 3 agents offered"));
}

#[test]
fn a_constraint_is_named_before_the_room_of_agents_it_excludes() {
    let mut agents = zoned(&["eu-1", "eu-2"]);
    agents[0].free = Resources::default();
    let outcome = run(&mut agents, &[], &[rule("zone", Op::Like, Some("us-.*"))], 1, &[]);
    assert_eq!(outcome.reason.as_deref(), Some("no agent matches LIKE zone us-.*: 2 agents offered"));
}

#[test]
fn max_per_caps_each_value() {
    let mut agents = zoned(&["a", "a", "b"]);
    let outcome = run(&mut agents, &[], &[rule("zone", Op::MaxPer, Some("2"))], 5, &[on("x", &[("zone", "b")])]);
    assert_eq!(indices(&outcome), vec![0, 1, 2]);
    assert_eq!(outcome.reason.as_deref(), Some("MAX_PER zone 2 reached on every zone (2 zones, 6 instances)"));
}

#[test]
fn invalid_constraints_place_nothing_and_say_why() {
    let mut agents = zoned(&["a"]);
    let outcome = run(&mut agents, &[], &[rule("zone", Op::Like, Some("(("))], 1, &[]);
    assert!(outcome.placed.is_empty());
    assert!(outcome.reason.expect("refused").contains("not a valid regular expression"));
    assert_eq!(agents[0].free, roomy());
}

#[test]
fn fixed_and_dynamic_ports_are_chosen_and_removed() {
    let mut agents = zoned(&["a"]);
    let outcome = run(&mut agents, &[0, 31002, 0], &[], 1, &[]);
    assert_eq!(outcome.placed[0].ports, vec![31000, 31002, 31001]);
    assert_eq!(agents[0].free.ports, vec![PortRange { begin: 31003, end: 31009 }]);
    let outcome = run(&mut agents, &[0, 0], &[], 2, &[]);
    assert_eq!(
        outcome.placed.iter().map(|p| p.ports.clone()).collect::<Vec<_>>(),
        vec![vec![31003, 31004], vec![31005, 31006]]
    );
    assert_eq!(agents[0].free.ports, vec![PortRange { begin: 31007, end: 31009 }]);
}

#[test]
fn a_fixed_port_is_used_once_per_agent() {
    let mut agents = zoned(&["a", "b", "c"]);
    agents[1].free.ports.clear();
    let outcome = run(&mut agents, &[31005], &[], 3, &[]);
    assert_eq!(indices(&outcome), vec![0, 2]);
    assert_eq!(outcome.reason.as_deref(), Some("port 31005 is not free on any of 3 agents"));
    assert!(!agents[0].free.has_port(31005) && agents[0].free.has_port(31004));
}

#[test]
fn port_conflicts_within_a_request_are_refused() {
    let mut agents = zoned(&["a"]);
    let outcome = run(&mut agents, &[31001, 0, 31001], &[], 1, &[]);
    assert!(outcome.placed.is_empty());
    assert!(outcome.reason.expect("refused").starts_with("port 31001 is requested twice"));
}

#[test]
fn too_few_ports_is_reported() {
    let mut agents = zoned(&["a"]);
    let outcome = run(&mut agents, &[0; 4], &[], 3, &[]);
    assert_eq!(outcome.placed.len(), 2);
    assert_eq!(
        outcome.reason.as_deref(),
        Some("not enough free ports: needs 4 per instance; 1 agent offered, the most free on one is 2")
    );
}

#[test]
fn insufficient_resources_reason_shows_the_closest_agent() {
    let mut agents = vec![
        agent("h0", &[], Resources::scalar(0.5, 900.0, 1000.0, 0)),
        agent("h1", &[], Resources::scalar(0.25, 4000.0, 0.0, 0)),
        agent("h2", &[], Resources::scalar(1.0, 64.0, 0.0, 0)),
    ];
    let outcome = run(&mut agents, &[], &[], 1, &[]);
    assert!(outcome.placed.is_empty());
    assert_eq!(
        outcome.reason.as_deref(),
        Some(
            "insufficient resources: needs cpus=1 mem=128 disk=0 per instance; 3 agents offered, \
             the largest free has cpus=0.5 mem=900 disk=1000"
        )
    );
}

#[test]
fn resources_run_out_after_placing() {
    let mut agents = vec![agent("h0", &[], Resources::scalar(2.5, 1000.0, 0.0, 0))];
    let outcome = run(&mut agents, &[], &[], 3, &[]);
    assert_eq!(outcome.placed.len(), 2);
    assert_eq!(
        outcome.reason.as_deref(),
        Some(
            "insufficient resources: needs cpus=1 mem=128 disk=0 per instance; 1 agent offered, \
             the largest free has cpus=0.5 mem=744 disk=0"
        )
    );
    assert_eq!(agents[0].free.cpus, 0.5);
}

#[test]
fn same_input_same_output() {
    let agents = zoned(&["a", "b", "a", "c", "b"]);
    let constraints = [rule("zone", Op::GroupBy, None), rule("hostname", Op::MaxPer, Some("2"))];
    let (mut first, mut second) = (agents.clone(), agents);
    let a = run(&mut first, &[0], &constraints, 7, &[on("h1", &[("zone", "b")])]);
    let b = run(&mut second, &[0], &constraints, 7, &[on("h1", &[("zone", "b")])]);
    assert_eq!(a, b);
    assert_eq!(first, second);
}
