//! Property tests of `place` over random agents, requests and existing instances.

use gantry_api::{Constraint, ConstraintOperator, PortRange, Resources};
use gantry_scheduler::{AgentSlot, PlacedOn, PlacementOutcome, PlacementRequest, place};
use proptest::prelude::*;
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet, HashMap};

const HOSTS: &[&str] = &["h0", "h1", "h2", "h3", "h4", "h5"];
const ZONES: &[&str] = &["a", "b", "c"];
const RACKS: &[&str] = &["r0", "r1", "r2", "r3"];
const FIELDS: &[&str] = &["hostname", "zone", "rack"];
const PATTERNS: &[&str] = &["a|b", "h[0-2]", "r.*", ".*", "c", "r[13]"];
const PORTS: std::ops::Range<u16> = 8000..8024;

fn attributes() -> impl Strategy<Value = BTreeMap<String, String>> {
    (proptest::option::of(proptest::sample::select(ZONES)), proptest::option::of(proptest::sample::select(RACKS)))
        .prop_map(|(zone, rack)| {
            let mut attributes = BTreeMap::new();
            if let Some(zone) = zone {
                attributes.insert("zone".to_string(), zone.to_string());
            }
            if let Some(rack) = rack {
                attributes.insert("rack".to_string(), rack.to_string());
            }
            attributes
        })
}

fn agent() -> impl Strategy<Value = AgentSlot> {
    (
        proptest::sample::select(HOSTS),
        attributes(),
        (0u32..=16, 0u32..=32, 0u32..=10, 0u32..=2),
        proptest::collection::vec(PORTS, 0..12),
    )
        .prop_map(|(hostname, attributes, (cpus, mem, disk, gpus), ports)| AgentSlot {
            agent_id: format!("agent-{hostname}"),
            hostname: hostname.to_string(),
            attributes,
            free: Resources {
                ports: Resources::from_ports(&ports),
                ..Resources::scalar(f64::from(cpus) * 0.5, f64::from(mem) * 64.0, f64::from(disk) * 100.0, gpus)
            },
        })
}

fn existing() -> impl Strategy<Value = PlacedOn> {
    (proptest::sample::select(HOSTS), attributes())
        .prop_map(|(hostname, attributes)| PlacedOn { hostname: hostname.to_string(), attributes })
}

fn constraint() -> impl Strategy<Value = Constraint> {
    let field = proptest::sample::select(FIELDS);
    let operator = proptest::sample::select(vec![
        ConstraintOperator::Unique,
        ConstraintOperator::Cluster,
        ConstraintOperator::GroupBy,
        ConstraintOperator::Like,
        ConstraintOperator::Unlike,
        ConstraintOperator::MaxPer,
    ]);
    (field, operator, any::<bool>(), 0usize..6).prop_map(|(field, operator, with_value, pick)| {
        let values: &[&str] = match field {
            "hostname" => HOSTS,
            "zone" => ZONES,
            _ => RACKS,
        };
        let value = match operator {
            ConstraintOperator::Unique => None,
            ConstraintOperator::Cluster => with_value.then(|| values[pick % values.len()].to_string()),
            ConstraintOperator::GroupBy => with_value.then(|| (pick % 4).to_string()),
            ConstraintOperator::Like | ConstraintOperator::Unlike => Some(PATTERNS[pick].to_string()),
            ConstraintOperator::MaxPer => Some((pick % 4).to_string()),
        };
        Constraint { field: field.to_string(), operator, value }
    })
}

#[derive(Debug, Clone)]
struct Case {
    agents: Vec<AgentSlot>,
    resources: Resources,
    ports: Vec<u16>,
    constraints: Vec<Constraint>,
    count: usize,
    existing: Vec<PlacedOn>,
}

fn case(max_constraints: usize, max_ports: usize) -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(agent(), 0..10),
        (0u32..=4, 0u32..=8, 0u32..=2, 0u32..=1),
        proptest::collection::vec(prop_oneof![Just(0u16), PORTS], 0..=max_ports),
        proptest::collection::vec(constraint(), 0..=max_constraints),
        0usize..14,
        proptest::collection::vec(existing(), 0..5),
    )
        .prop_map(|(agents, (cpus, mem, disk, gpus), ports, constraints, count, existing)| Case {
            agents,
            resources: Resources::scalar(f64::from(cpus) * 0.5, f64::from(mem) * 64.0, f64::from(disk) * 100.0, gpus),
            ports,
            constraints,
            count,
            existing,
        })
}

fn run(case: &Case) -> (PlacementOutcome, Vec<AgentSlot>) {
    let mut agents = case.agents.clone();
    let request = PlacementRequest {
        app_id: "/prop",
        resources: &case.resources,
        ports: &case.ports,
        constraints: &case.constraints,
        count: case.count,
    };
    (place(&request, &mut agents, &case.existing), agents)
}

fn value<'a>(field: &str, hostname: &'a str, attributes: &'a BTreeMap<String, String>) -> Option<&'a str> {
    if field == "hostname" { Some(hostname) } else { attributes.get(field).map(String::as_str) }
}

const TOLERANCE: f64 = 1e-6;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn count_and_reason_agree(case in case(3, 3)) {
        let (outcome, _) = run(&case);
        prop_assert!(outcome.placed.len() <= case.count);
        prop_assert_eq!(outcome.reason.is_some(), outcome.placed.len() < case.count, "{:?}", outcome);
        if let Some(reason) = &outcome.reason {
            prop_assert!(!reason.is_empty());
        }
    }

    #[test]
    fn scalars_are_never_overcommitted(case in case(3, 3)) {
        let (outcome, after) = run(&case);
        let mut per_agent = vec![0u32; case.agents.len()];
        for p in &outcome.placed {
            per_agent[p.agent_index] += 1;
        }
        for (i, &n) in per_agent.iter().enumerate() {
            let (before, now, need, k) = (&case.agents[i].free, &after[i].free, &case.resources, f64::from(n));
            prop_assert!(need.cpus * k <= before.cpus + TOLERANCE);
            prop_assert!(need.mem * k <= before.mem + TOLERANCE);
            prop_assert!(need.disk * k <= before.disk + TOLERANCE);
            prop_assert!(need.gpus * n <= before.gpus);
            prop_assert!((now.cpus - (before.cpus - need.cpus * k)).abs() < TOLERANCE);
            prop_assert!((now.mem - (before.mem - need.mem * k)).abs() < TOLERANCE);
            prop_assert!((now.disk - (before.disk - need.disk * k)).abs() < TOLERANCE);
            prop_assert_eq!(now.gpus, before.gpus - need.gpus * n);
        }
    }

    #[test]
    fn ports_are_free_distinct_and_taken(case in case(2, 4)) {
        let (outcome, after) = run(&case);
        let mut chosen: HashMap<usize, BTreeSet<u16>> = HashMap::new();
        for p in &outcome.placed {
            prop_assert_eq!(p.ports.len(), case.ports.len());
            for (&want, &got) in case.ports.iter().zip(&p.ports) {
                if want != 0 {
                    prop_assert_eq!(want, got);
                }
                prop_assert!(case.agents[p.agent_index].free.has_port(got), "port {} was not free", got);
                prop_assert!(!after[p.agent_index].free.has_port(got), "port {} is still free", got);
                prop_assert!(chosen.entry(p.agent_index).or_default().insert(got), "port {} chosen twice", got);
            }
        }
        for (i, agent) in after.iter().enumerate() {
            let taken = chosen.get(&i).map_or(0, BTreeSet::len);
            prop_assert_eq!(agent.free.port_count() + taken, case.agents[i].free.port_count());
        }
    }

    #[test]
    fn constraints_hold_over_existing_and_placed(case in case(3, 1)) {
        let (outcome, _) = run(&case);
        for c in &case.constraints {
            let field = c.field.as_str();
            let placed_values: Vec<Option<&str>> = outcome
                .placed
                .iter()
                .map(|p| value(field, &case.agents[p.agent_index].hostname, &case.agents[p.agent_index].attributes))
                .collect();
            let mut existing_per_value: HashMap<&str, usize> = HashMap::new();
            for e in &case.existing {
                if let Some(v) = value(field, &e.hostname, &e.attributes) {
                    *existing_per_value.entry(v).or_default() += 1;
                }
            }
            let mut placed_per_value: HashMap<&str, usize> = HashMap::new();
            for v in &placed_values {
                prop_assert!(v.is_some() || matches!(c.operator, ConstraintOperator::Unlike), "{} on an agent without {}", c, field);
                if let Some(v) = v {
                    *placed_per_value.entry(v).or_default() += 1;
                }
            }
            let existing_on = |v: &str| existing_per_value.get(v).copied().unwrap_or(0);
            match c.operator {
                ConstraintOperator::Unique => {
                    for (v, &n) in &placed_per_value {
                        prop_assert!(n == 1 && existing_on(v) == 0, "{} broken on {}", c, v);
                    }
                }
                ConstraintOperator::MaxPer => {
                    let max: usize = c.value.as_deref().expect("generated with a value").parse().expect("a number");
                    for (v, &n) in &placed_per_value {
                        prop_assert!(n + existing_on(v) <= max, "{} broken on {}", c, v);
                    }
                }
                ConstraintOperator::Cluster => {
                    let pinned = c.value.as_deref().or_else(|| {
                        case.existing.iter().find_map(|e| value(field, &e.hostname, &e.attributes))
                    });
                    let distinct: BTreeSet<&str> = placed_per_value.keys().copied().collect();
                    prop_assert!(distinct.len() <= 1, "{} spread over {:?}", c, distinct);
                    if let (Some(pin), Some(got)) = (pinned, distinct.first()) {
                        prop_assert_eq!(pin, *got, "{}", c);
                    }
                }
                ConstraintOperator::Like | ConstraintOperator::Unlike => {
                    let re = Regex::new(&format!("^(?:{})$", c.value.as_deref().expect("generated with a value")))
                        .expect("generated patterns are valid");
                    let like = c.operator == ConstraintOperator::Like;
                    for v in &placed_values {
                        prop_assert_eq!(v.is_some_and(|v| re.is_match(v)), like, "{} broken on {:?}", c, v);
                    }
                }
                ConstraintOperator::GroupBy => {}
            }
        }
    }

    #[test]
    fn placement_is_deterministic(case in case(3, 2)) {
        let (first, after_first) = run(&case);
        let (second, after_second) = run(&case);
        prop_assert_eq!(first, second);
        prop_assert_eq!(after_first, after_second);
    }

    #[test]
    fn unconstrained_placement_is_maximal(case in case(0, 0)) {
        let (outcome, after) = run(&case);
        if outcome.placed.len() < case.count {
            for agent in &after {
                prop_assert!(!agent.free.fits(&case.resources), "{} could take one more", agent.hostname);
            }
        }
    }

    #[test]
    fn unconstrained_placement_spreads_evenly_over_roomy_agents(hosts in 1usize..8, count in 0usize..30) {
        let mut agents: Vec<AgentSlot> = (0..hosts)
            .map(|i| AgentSlot {
                agent_id: format!("a{i}"),
                hostname: format!("h{i}"),
                attributes: BTreeMap::new(),
                free: Resources { ports: vec![PortRange { begin: 1, end: 1000 }], ..Resources::scalar(100.0, 1e6, 0.0, 0) },
            })
            .collect();
        let request = PlacementRequest { app_id: "/even", resources: &Resources::scalar(1.0, 1.0, 0.0, 0), ports: &[0], constraints: &[], count };
        let outcome = place(&request, &mut agents, &[]);
        let mut per_agent = vec![0usize; hosts];
        for p in &outcome.placed {
            per_agent[p.agent_index] += 1;
        }
        let (min, max) = (per_agent.iter().min().copied().unwrap_or(0), per_agent.iter().max().copied().unwrap_or(0));
        prop_assert_eq!(outcome.placed.len(), count);
        prop_assert!(max - min <= 1, "{:?}", per_agent);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Without GROUP_BY agents are looked at lazily; with a GROUP_BY every agent satisfies the same
    /// way (one value), all are looked at first. Both must choose the same agents and ports.
    #[test]
    fn lazy_and_grouped_searches_agree(mut case in case(0, 2)) {
        for agent in &mut case.agents {
            agent.attributes.insert("pool".to_string(), "p".to_string());
        }
        let (lazy, lazy_after) = run(&case);
        case.constraints = vec![Constraint { field: "pool".into(), operator: ConstraintOperator::GroupBy, value: None }];
        let (grouped, grouped_after) = run(&case);
        prop_assert_eq!(lazy.placed, grouped.placed);
        prop_assert_eq!(lazy_after, grouped_after);
    }
}
