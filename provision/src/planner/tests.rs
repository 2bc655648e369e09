use super::*;
use crate::cluster_file::ClusterFile;
use crate::journal::{HostRecord, Record, RecordDetail, RecordKind};
use proptest::prelude::*;
use std::path::Path;

type Observed = BTreeMap<String, ObservedHost>;

const RUNNING: ObservedHost = ObservedHost { running: true };

fn desired_hosts(masters: u32, pools: &[(&str, u32)], version: &str) -> Desired {
    let mut hosts = Vec::new();
    for i in 0..masters {
        hosts.push(DesiredHost {
            name: format!("master-{i}"),
            role: Role::Master,
            pool: "master".into(),
            resources: None,
            attributes: BTreeMap::new(),
            settings: HostSettings::from([("v".to_string(), version.to_string())]),
        });
    }
    for (pool, count) in pools {
        for i in 0..*count {
            hosts.push(DesiredHost {
                name: format!("{pool}-{i}"),
                role: Role::Agent,
                pool: (*pool).into(),
                resources: None,
                attributes: BTreeMap::new(),
                settings: HostSettings::from([("resources".to_string(), version.to_string())]),
            });
        }
    }
    Desired { cluster: "dev".into(), source: "dev.toml".into(), hosts }
}

/// Applies a plan the way `up` would, through the journal's own fold and a simulated provider.
fn apply(plan: &Plan, journal: &mut JournalState, observed: &mut Observed) {
    for action in &plan.actions {
        let detail = RecordDetail {
            role: Some(action.role()),
            pool: Some(action.pool().to_string()),
            settings: action.settings().cloned(),
            error: None,
        };
        for kind in [RecordKind::Intent, RecordKind::Done] {
            if kind == RecordKind::Done {
                match action.kind() {
                    ActionKind::Create => {
                        observed.insert(action.host_name().to_string(), RUNNING);
                    }
                    ActionKind::Destroy => {
                        observed.remove(action.host_name());
                    }
                    _ => {}
                }
            }
            let record = Record {
                seq: journal.last_seq + 1,
                at: String::new(),
                kind,
                action: action.kind(),
                host: action.host_name().to_string(),
                detail: detail.clone(),
            };
            journal.apply(&record);
        }
    }
}

fn kinds_for(plan: &Plan, host: &str) -> Vec<ActionKind> {
    plan.actions.iter().filter(|a| a.host_name() == host).map(Action::kind).collect()
}

fn bootstrapped(role: Role, pool: &str, settings: HostSettings) -> HostRecord {
    HostRecord { role, pool: pool.into(), phase: HostPhase::Bootstrapped, settings, pending: None }
}

#[test]
fn empty_cluster_creates_every_host_at_once_then_bootstraps_masters_first() {
    let desired = desired_hosts(1, &[("w", 2)], "a");
    let plan = plan(&desired, &JournalState::default(), &Observed::new());
    let steps: Vec<(ActionKind, &str)> = plan.actions.iter().map(|a| (a.kind(), a.host_name())).collect();
    assert_eq!(
        steps,
        vec![
            (ActionKind::Create, "master-0"),
            (ActionKind::Create, "w-0"),
            (ActionKind::Create, "w-1"),
            (ActionKind::Bootstrap, "master-0"),
            (ActionKind::Bootstrap, "w-0"),
            (ActionKind::Bootstrap, "w-1"),
        ]
    );
}

#[test]
fn scale_down_drains_then_destroys_highest_first() {
    let mut journal = JournalState::default();
    let mut observed = Observed::new();
    apply(&plan(&desired_hosts(1, &[("w", 5)], "a"), &journal, &observed), &mut journal, &mut observed);
    let plan = plan(&desired_hosts(1, &[("w", 3)], "a"), &journal, &observed);
    let steps: Vec<(ActionKind, &str)> = plan.actions.iter().map(|a| (a.kind(), a.host_name())).collect();
    assert_eq!(
        steps,
        vec![
            (ActionKind::Drain, "w-4"),
            (ActionKind::Drain, "w-3"),
            (ActionKind::Destroy, "w-4"),
            (ActionKind::Destroy, "w-3")
        ]
    );
    assert_eq!(
        plan.to_string().lines().nth(1),
        Some("- drain+destroy      w-4  (agent, pool w: no longer in the cluster file)")
    );
}

#[test]
fn changed_settings_reconfigure_and_say_what_changed() {
    let mut journal = JournalState::default();
    let mut observed = Observed::new();
    apply(&plan(&desired_hosts(1, &[("w", 1)], "a"), &journal, &observed), &mut journal, &mut observed);
    let plan = plan(&desired_hosts(1, &[("w", 1)], "b"), &journal, &observed);
    assert_eq!(kinds_for(&plan, "w-0"), vec![ActionKind::Reconfigure]);
    assert_eq!(plan.actions[1].reason(), &Reason::Changed(vec!["resources".into()]));
    assert!(plan.to_string().contains("~ reconfigure        w-0       (agent, pool w: resources changed)"), "{plan}");
}

#[test]
fn host_lost_at_the_provider_is_recreated() {
    let desired = desired_hosts(1, &[("w", 1)], "a");
    let mut journal = JournalState::default();
    journal.hosts.insert("w-0".into(), bootstrapped(Role::Agent, "w", desired.hosts[1].settings.clone()));
    journal.hosts.insert("master-0".into(), bootstrapped(Role::Master, "master", desired.hosts[0].settings.clone()));
    let observed = Observed::from([("master-0".to_string(), RUNNING)]);
    let plan = plan(&desired, &journal, &observed);
    assert_eq!(kinds_for(&plan, "w-0"), vec![ActionKind::Create, ActionKind::Bootstrap]);
    assert_eq!(plan.actions[0].reason(), &Reason::Missing);
    assert!(kinds_for(&plan, "master-0").is_empty());
}

#[test]
fn incomplete_intents_are_resumed() {
    let desired = desired_hosts(1, &[("w", 1)], "a");
    let mut journal = JournalState::default();
    let mut record = bootstrapped(Role::Master, "master", desired.hosts[0].settings.clone());
    record.pending = Some(ActionKind::Bootstrap);
    journal.hosts.insert("master-0".into(), record);
    let mut gone = bootstrapped(Role::Agent, "old", HostSettings::new());
    gone.pending = Some(ActionKind::Destroy);
    journal.hosts.insert("old-0".into(), gone);
    let observed = Observed::from([("master-0".to_string(), RUNNING), ("old-0".to_string(), RUNNING)]);
    let plan = plan(&desired, &journal, &observed);
    assert_eq!(plan.actions[0].kind(), ActionKind::Create, "w-0 is created first: {plan}");
    assert_eq!(
        plan.actions[1],
        Action::Bootstrap { host: desired.hosts[0].clone(), reason: Reason::Resume(ActionKind::Bootstrap) }
    );
    assert_eq!(kinds_for(&plan, "old-0"), vec![ActionKind::Drain, ActionKind::Destroy]);
    assert_eq!(plan.actions.last().map(Action::reason), Some(&Reason::Resume(ActionKind::Destroy)));
}

#[test]
fn unknown_hosts_are_adopted_destroyed_or_ignored() {
    let desired = desired_hosts(1, &[], "a");
    let observed = Observed::from([
        ("master-0".to_string(), RUNNING),
        ("stray-7".to_string(), RUNNING),
        ("bastion".to_string(), RUNNING),
    ]);
    let plan = plan(&desired, &JournalState::default(), &observed);
    assert_eq!(kinds_for(&plan, "master-0"), vec![ActionKind::Bootstrap]);
    assert_eq!(plan.actions[0].reason(), &Reason::Adopt);
    assert_eq!(kinds_for(&plan, "stray-7"), vec![ActionKind::Drain, ActionKind::Destroy]);
    assert_eq!(plan.ignored, vec!["bastion".to_string()]);
    assert!(plan.to_string().contains("? ignore bastion"), "{plan}");
}

#[test]
fn empty_plan_says_no_changes() {
    let plan = plan(&Desired::empty("dev", "configs/local.toml"), &JournalState::default(), &Observed::new());
    assert!(plan.is_empty());
    assert_eq!(plan.to_string(), "No changes: the cluster matches configs/local.toml.\n");
}

#[test]
fn desired_hosts_from_the_example_cluster_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/local.toml");
    let file = ClusterFile::load(&path).expect("valid");
    let desired = Desired::from_cluster_file(&file);
    let names: Vec<&str> = desired.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, vec!["master-0", "workers-0", "workers-1", "workers-2"]);
    assert_eq!(desired.hosts[2].settings["attributes"], "zone=z1");
    assert_eq!(desired.hosts[2].attributes["zone"], "z1");
    assert_eq!(desired.hosts[2].resources.as_deref(), Some("cpus=2;mem=2048;disk=10000"));
    assert_eq!(desired.hosts[0].resources, None);
    assert_eq!(desired.hosts[2].settings["ports"], "[31500-31999]");
    assert_eq!(desired.hosts[0].settings["api_port"], "5050");
    let plan = plan(&desired, &JournalState::default(), &Observed::new());
    let text = plan.to_string();
    assert!(text.starts_with("Plan for cluster `local` ("), "{text}");
    assert!(text.contains("4 to create, 0 to change, 0 to destroy."), "{text}");
    assert!(text.contains("+ create+bootstrap   workers-2  (agent, pool workers: new)"), "{text}");
}

#[test]
fn host_names_of_this_cluster() {
    assert_eq!(parse_host_name("workers-12"), Some(("workers", 12)));
    assert_eq!(parse_host_name("gpu-a-0"), Some(("gpu-a", 0)));
    assert_eq!(parse_host_name("bastion"), None);
    assert_eq!(parse_host_name("w-+1"), None);
    assert_eq!(parse_host_name("W-1"), None);
}

const POOLS: [&str; 2] = ["a", "b"];

fn universe() -> Vec<(String, Role, &'static str)> {
    let mut names: Vec<_> = (0..5).map(|i| (format!("master-{i}"), Role::Master, "master")).collect();
    for pool in POOLS {
        names.extend((0..5).map(|i| (format!("{pool}-{i}"), Role::Agent, pool)));
    }
    names
}

fn arb_desired() -> impl Strategy<Value = Desired> {
    (prop_oneof![Just(0u32), Just(1), Just(3)], 0u32..5, 0u32..5, prop_oneof![Just("a"), Just("b")])
        .prop_map(|(masters, a, b, v)| desired_hosts(masters, &[("a", a), ("b", b)], v))
}

fn arb_phase() -> impl Strategy<Value = HostPhase> {
    prop_oneof![
        Just(HostPhase::Requested),
        Just(HostPhase::Created),
        Just(HostPhase::Bootstrapped),
        Just(HostPhase::Drained)
    ]
}

fn arb_pending() -> impl Strategy<Value = Option<ActionKind>> {
    prop_oneof![
        3 => Just(None),
        1 => prop_oneof![
            Just(ActionKind::Create),
            Just(ActionKind::Bootstrap),
            Just(ActionKind::Reconfigure),
            Just(ActionKind::Drain),
            Just(ActionKind::Destroy)
        ]
        .prop_map(Some)
    ]
}

/// A journal and an observed world over the name universe, plus hosts named otherwise.
fn arb_world() -> impl Strategy<Value = (JournalState, Observed)> {
    let n = universe().len();
    (
        proptest::collection::vec((any::<bool>(), arb_phase(), arb_pending(), prop_oneof![Just("a"), Just("b")]), n),
        proptest::collection::vec(prop_oneof![Just(None), Just(Some(true)), Just(Some(false))], n),
        any::<bool>(),
    )
        .prop_map(|(records, seen, stray)| {
            let mut journal = JournalState::default();
            let mut observed = Observed::new();
            for ((name, role, pool), ((known, phase, pending, v), seen)) in
                universe().into_iter().zip(records.into_iter().zip(seen))
            {
                if known {
                    let key = if role == Role::Master { "v" } else { "resources" };
                    let settings = HostSettings::from([(key.to_string(), v.to_string())]);
                    journal
                        .hosts
                        .insert(name.clone(), HostRecord { role, pool: pool.into(), phase, settings, pending });
                }
                if let Some(running) = seen {
                    observed.insert(name, ObservedHost { running });
                }
            }
            if stray {
                observed.insert("bastion".into(), RUNNING);
            }
            (journal, observed)
        })
}

proptest! {
    #[test]
    fn plans_converge_and_keep_their_invariants(desired in arb_desired(), (journal, observed) in arb_world()) {
        let first = plan(&desired, &journal, &observed);
        let known: BTreeSet<&str> = journal.hosts.keys().chain(observed.keys()).map(String::as_str).collect();
        let wanted: BTreeSet<&str> = desired.hosts.iter().map(|h| h.name.as_str()).collect();
        let mut created = BTreeSet::new();
        let mut destroyed = BTreeSet::new();
        let mut drained = BTreeSet::new();
        let mut agents_up_seen = false;
        let mut agent_destroys_left =
            first.actions.iter().filter(|a| a.kind() == ActionKind::Destroy && a.role() == Role::Agent).count();
        for action in &first.actions {
            let name = action.host_name();
            prop_assert!(!destroyed.contains(name), "{name} acted on after its destroy");
            match action.kind() {
                ActionKind::Create => {
                    prop_assert!(created.insert(name), "{name} created twice");
                    prop_assert!(wanted.contains(name));
                }
                ActionKind::Drain => {
                    prop_assert!(drained.insert(name));
                    prop_assert_eq!(action.role(), Role::Agent);
                }
                ActionKind::Destroy => {
                    prop_assert!(known.contains(name), "{name} destroyed but never known");
                    prop_assert!(!wanted.contains(name), "{name} is desired");
                    destroyed.insert(name);
                    if action.role() == Role::Agent {
                        agent_destroys_left -= 1;
                    } else {
                        prop_assert_eq!(agent_destroys_left, 0, "a master destroyed while agent destroys remain");
                    }
                }
                ActionKind::Bootstrap | ActionKind::Reconfigure => prop_assert!(wanted.contains(name)),
            }
            // Creates come first, all at once; then masters are bootstrapped before any agent.
            let up = matches!(action.kind(), ActionKind::Bootstrap | ActionKind::Reconfigure);
            prop_assert!(!(action.kind() == ActionKind::Create && (agents_up_seen || !drained.is_empty())), "a create after a bootstrap or drain");
            if up && action.role() == Role::Agent {
                agents_up_seen = true;
            }
            prop_assert!(!(up && action.role() == Role::Master && agents_up_seen), "a master after an agent");
        }
        for name in &drained {
            prop_assert!(destroyed.contains(name), "{name} drained but not destroyed");
        }

        let (mut journal, mut observed) = (journal, observed);
        apply(&first, &mut journal, &mut observed);
        let second = plan(&desired, &journal, &observed);
        prop_assert!(second.is_empty(), "not converged:\n{first}\nthen\n{second}");
        let managed: BTreeSet<&str> = observed.keys().map(String::as_str).filter(|n| parse_host_name(n).is_some()).collect();
        prop_assert_eq!(&managed, &wanted);
        let recorded: BTreeSet<&str> = journal.hosts.keys().map(String::as_str).collect();
        prop_assert_eq!(&recorded, &wanted);
        prop_assert!(journal.hosts.values().all(|h| h.phase == HostPhase::Bootstrapped && h.pending.is_none()));
    }
}

#[test]
fn down_says_the_cluster_is_taken_down() {
    let desired = desired_hosts(1, &[("w", 1)], "1");
    let (mut journal, mut observed) = (JournalState::default(), Observed::new());
    apply(&plan(&desired, &journal, &observed), &mut journal, &mut observed);
    let down = plan(&Desired::empty("dev", "dev.toml"), &journal, &observed);
    assert_eq!(kinds_for(&down, "w-0"), vec![ActionKind::Drain, ActionKind::Destroy]);
    assert!(down.actions.iter().all(|a| a.reason() == &Reason::Teardown), "{down}");
    assert!(down.to_string().contains("the cluster is taken down"), "{down}");
    let scaled = plan(&desired_hosts(1, &[], "1"), &journal, &observed);
    assert_eq!(scaled.actions[0].reason(), &Reason::Removed, "scaling down is not a teardown");
}

#[test]
fn unhealthy_hosts_are_bootstrapped_again() {
    let desired = desired_hosts(1, &[("w", 2)], "1");
    let (mut journal, mut observed) = (JournalState::default(), Observed::new());
    apply(&plan(&desired, &journal, &observed), &mut journal, &mut observed);
    let mut healed = plan(&desired, &journal, &observed);
    let unhealthy = BTreeMap::from([
        ("w-1".to_string(), "UNREACHABLE at the master".to_string()),
        ("gone-0".to_string(), "not desired: ignored".to_string()),
    ]);
    heal(&mut healed, &desired, &unhealthy);
    assert_eq!(healed.actions.len(), 1, "{healed}");
    assert_eq!(kinds_for(&healed, "w-1"), vec![ActionKind::Bootstrap]);
    assert!(
        healed.to_string().contains("w-1  (agent, pool w: UNREACHABLE at the master: bootstrap again)"),
        "{healed}"
    );
}
