use super::*;
use proptest::prelude::*;

fn write(key: &str, value: u64) -> RegisterOp {
    RegisterOp::Write { key: key.to_string(), value }
}

fn read(key: &str, value: Option<u64>) -> RegisterOp {
    RegisterOp::Read { key: key.to_string(), value }
}

fn delete(key: &str) -> RegisterOp {
    RegisterOp::Delete { key: key.to_string() }
}

/// An operation of `client` over `[invoke, complete]`.
fn op(client: u64, invoke: u64, complete: u64, op: RegisterOp) -> Operation<RegisterOp> {
    Operation { client, invoke, complete: Some(complete), op }
}

/// An operation of `client` invoked at `invoke` whose outcome is unknown.
fn unknown(client: u64, invoke: u64, op: RegisterOp) -> Operation<RegisterOp> {
    Operation { client, invoke, complete: None, op }
}

fn verdict(history: &[Operation<RegisterOp>]) -> Verdict<RegisterMap> {
    check(&RegisterMap::new(), history).expect("a well-formed history")
}

fn violation(history: &[Operation<RegisterOp>]) -> Violation<RegisterMap> {
    match verdict(history) {
        Verdict::Violation(violation) => *violation,
        Verdict::Linearizable => panic!("{history:#?} must not be linearizable"),
    }
}

fn assert_linearizable(history: &[Operation<RegisterOp>]) {
    if let Verdict::Violation(violation) = verdict(history) {
        panic!("{violation}");
    }
}

#[test]
fn a_sequential_history_is_linearizable() {
    assert_linearizable(&[
        op(1, 0, 1, read("x", None)),
        op(1, 2, 3, write("x", 1)),
        op(2, 4, 5, read("x", Some(1))),
        op(1, 6, 7, write("x", 2)),
        op(2, 8, 9, read("x", Some(2))),
        op(2, 10, 11, delete("x")),
        op(1, 12, 13, read("x", None)),
    ]);
    assert!(verdict(&[]).is_linearizable(), "the empty history");
}

#[test]
fn overlapping_operations_take_effect_in_whichever_order_explains_the_reads() {
    // Two writes overlap, and reads overlapping them both see either value, in an order some
    // linearization gives: 1 then 2.
    assert_linearizable(&[
        op(1, 0, 10, write("x", 1)),
        op(2, 1, 11, write("x", 2)),
        op(3, 2, 5, read("x", None)),
        op(4, 3, 6, read("x", Some(1))),
        op(3, 7, 12, read("x", Some(2))),
        op(4, 13, 14, read("x", Some(2))),
    ]);
    // The other way round: 2 then 1, both seen during the overlap, 1 stays.
    assert_linearizable(&[
        op(1, 0, 10, write("x", 1)),
        op(2, 1, 11, write("x", 2)),
        op(3, 2, 5, read("x", Some(2))),
        op(3, 6, 9, read("x", Some(1))),
        op(4, 12, 13, read("x", Some(1))),
    ]);
    // Ties are generous: completing at the time another op is invoked overlaps it.
    assert_linearizable(&[op(1, 0, 5, read("x", Some(1))), op(2, 5, 8, write("x", 1))]);
}

#[test]
fn a_read_that_misses_a_completed_write_is_a_violation() {
    let history = [op(1, 0, 10, write("x", 1)), op(2, 20, 30, read("x", None))];
    let violation = violation(&history);
    assert_eq!(violation.partition.as_deref(), Some("x"));
    assert_eq!(violation.stuck.index, 1, "the stale read: {violation}");
    assert_eq!(violation.linearized.iter().map(|o| o.index).collect::<Vec<_>>(), [0]);
    assert_eq!(violation.state, RegisterMap::new().step(&write("x", 1)).expect("a legal write"));
}

#[test]
fn a_lost_write_is_a_violation() {
    // Write 2 completed after write 1; a later read sees 1 again.
    let history = [
        op(1, 0, 10, write("x", 1)),
        op(2, 20, 30, write("x", 2)),
        op(3, 35, 38, read("x", Some(2))),
        op(3, 40, 50, read("x", Some(1))),
    ];
    let violation = violation(&history);
    assert_eq!(violation.stuck.index, 3, "{violation}");
    // Without the read of 2 it is lost all the same.
    let violation = self::violation(&[history[0].clone(), history[1].clone(), history[3].clone()]);
    assert_eq!(violation.stuck.operation.op, read("x", Some(1)), "{violation}");
}

#[test]
fn values_do_not_flip_back_between_concurrent_reads() {
    // Both writes overlap both reads, but once a reader saw 2 after 1, a later read cannot see
    // 1 again while 2 was never rewritten.
    let history = [
        op(1, 0, 100, write("x", 1)),
        op(2, 0, 100, write("x", 2)),
        op(3, 10, 20, read("x", Some(1))),
        op(3, 30, 40, read("x", Some(2))),
        op(4, 50, 60, read("x", Some(1))),
    ];
    assert!(!verdict(&history).is_linearizable());
}

#[test]
fn a_write_of_unknown_outcome_may_take_effect_late_or_never() {
    // It shows up long after it was invoked, and stays.
    assert_linearizable(&[
        unknown(1, 0, write("x", 1)),
        op(2, 10, 20, read("x", None)),
        op(2, 30, 40, read("x", Some(1))),
        op(3, 50, 60, read("x", Some(1))),
    ]);
    // It never shows up.
    assert_linearizable(&[
        unknown(1, 0, write("x", 1)),
        op(2, 10, 20, read("x", None)),
        op(2, 1000, 1010, read("x", None)),
    ]);
    // It takes effect after a later completed write, overwriting it.
    assert_linearizable(&[
        unknown(1, 0, write("x", 1)),
        op(2, 10, 20, write("x", 2)),
        op(2, 30, 40, read("x", Some(2))),
        op(3, 50, 60, read("x", Some(1))),
    ]);
}

#[test]
fn a_write_of_unknown_outcome_takes_effect_once_and_not_before_it_is_invoked() {
    let violation = violation(&[op(2, 0, 10, read("x", Some(1))), unknown(1, 20, write("x", 1))]);
    assert_eq!(violation.stuck.index, 0, "{violation}");
    // Seen, overwritten by a completed write, then seen again: that would be twice.
    assert!(
        !verdict(&[
            unknown(1, 0, write("x", 1)),
            op(2, 10, 20, read("x", Some(1))),
            op(2, 30, 40, write("x", 2)),
            op(2, 50, 60, read("x", Some(1))),
        ])
        .is_linearizable()
    );
}

#[test]
fn a_read_of_a_value_never_written_is_a_violation() {
    let history = [op(1, 0, 10, write("x", 1)), op(2, 5, 15, read("x", Some(7)))];
    let violation = violation(&history);
    assert_eq!(violation.stuck.index, 1, "{violation}");
    let message = violation.to_string();
    assert!(message.contains("the history of `x` is not linearizable"), "{message}");
    assert!(message.contains("#1 client 2 [5, 15] Read { key: \"x\", value: Some(7) }"), "{message}");
}

#[test]
fn a_deleted_key_reads_absent_until_written_again() {
    assert_linearizable(&[
        op(1, 0, 1, write("x", 1)),
        op(1, 2, 3, delete("x")),
        op(2, 4, 5, read("x", None)),
        op(1, 6, 7, write("x", 2)),
        op(2, 8, 9, read("x", Some(2))),
    ]);
    let violation = violation(&[op(1, 0, 1, write("x", 1)), op(1, 2, 3, delete("x")), op(2, 4, 5, read("x", Some(1)))]);
    assert_eq!(violation.stuck.index, 2, "{violation}");
}

#[test]
fn keys_are_checked_apart_and_the_violation_names_its_key() {
    let history = [
        op(1, 0, 10, write("a", 1)),
        op(2, 0, 10, write("b", 1)),
        op(1, 20, 30, read("a", Some(1))),
        op(2, 20, 30, read("b", None)),
        op(3, 40, 50, read("a", Some(1))),
    ];
    let violation = violation(&history);
    assert_eq!(violation.partition.as_deref(), Some("b"));
    assert_eq!((violation.stuck.index, violation.stuck.operation.client), (3, 2));
    assert!(violation.linearized.iter().all(|o| o.operation.op.key() == "b"), "{violation}");
}

#[test]
fn a_history_that_completes_before_it_begins_is_refused() {
    let error = check(&RegisterMap::new(), &[op(1, 0, 1, write("x", 1)), op(1, 10, 5, read("x", Some(1)))])
        .expect_err("an impossible history");
    assert_eq!(error, HistoryError::CompletesBeforeInvoked { index: 1, invoke: 10, complete: 5 });
}

/// One planned operation of a simulated client: it waits `gap`, then its call lasts `length`;
/// it takes effect at `at` thousandths into that (for a write of unknown outcome, into three
/// times that), unless it is `unknown` and not `applied`.
#[derive(Debug, Clone)]
struct Plan {
    gap: u64,
    length: u64,
    kind: u8,
    key: usize,
    at: u64,
    unknown: bool,
    applied: bool,
}

/// The history of clients carrying out `plans`, each operation executed atomically on a real
/// map at a point within its interval, as a linearizable system does.
fn simulate(plans: &[Vec<Plan>], keys: &[&str]) -> Vec<Operation<RegisterOp>> {
    let mut history = Vec::new();
    // (point, index in history) of every operation that takes effect.
    let mut effects = Vec::new();
    let mut next_value = 1;
    for (client, plans) in plans.iter().enumerate() {
        let mut now = 0;
        for plan in plans {
            let key = keys[plan.key % keys.len()];
            let invoke = now + plan.gap;
            let complete = invoke + plan.length;
            let op = match plan.kind % 10 {
                0..=3 => read(key, None),
                4 => delete(key),
                _ => {
                    next_value += 1;
                    write(key, next_value)
                }
            };
            let unknown = plan.unknown && !matches!(op, RegisterOp::Read { .. });
            let point = invoke + plan.at * plan.length * if unknown { 3 } else { 1 } / 1000;
            if !unknown || plan.applied {
                effects.push((point, history.len()));
            }
            let client = u64::try_from(client).expect("few clients");
            history.push(Operation { client, invoke, complete: (!unknown).then_some(complete), op });
            now = complete;
        }
    }
    effects.sort_unstable();
    let mut map: BTreeMap<String, u64> = BTreeMap::new();
    for (_, index) in effects {
        match &mut history[index].op {
            RegisterOp::Write { key, value } => {
                map.insert(key.clone(), *value);
            }
            RegisterOp::Read { key, value } => *value = map.get(key.as_str()).copied(),
            RegisterOp::Delete { key } => {
                map.remove(key.as_str());
            }
        }
    }
    history
}

fn plan() -> impl Strategy<Value = Plan> {
    (0..20u64, 1..40u64, any::<u8>(), 0..3usize, 0..=1000u64, prop::bool::weighted(0.1), any::<bool>()).prop_map(
        |(gap, length, kind, key, at, unknown, applied)| Plan { gap, length, kind, key, at, unknown, applied },
    )
}

proptest! {
    #[test]
    fn histories_of_atomic_executions_are_linearizable(
        plans in prop::collection::vec(prop::collection::vec(plan(), 0..25), 1..6),
    ) {
        let history = simulate(&plans, &["a", "b", "c"]);
        let verdict = check(&RegisterMap::new(), &history).expect("a well-formed history");
        if let Verdict::Violation(violation) = &verdict {
            prop_assert!(false, "{}", violation);
        }
    }

    #[test]
    fn a_sequential_history_with_one_read_changed_is_a_violation(
        plans in prop::collection::vec(plan(), 1..40),
        which in any::<prop::sample::Index>(),
        seen in prop::option::of(0..5u64),
    ) {
        // Strictly one after the other: no ties either.
        let plans: Vec<Plan> = plans.into_iter().map(|p| Plan { gap: p.gap + 1, unknown: false, ..p }).collect();
        let mut history = simulate(&[plans], &["a", "b"]);
        let reads: Vec<usize> =
            (0..history.len()).filter(|i| matches!(history[*i].op, RegisterOp::Read { .. })).collect();
        prop_assume!(!reads.is_empty());
        let changed = reads[which.index(reads.len())];
        if let RegisterOp::Read { value, .. } = &mut history[changed].op {
            let wrong = if *value == seen { value.map_or(Some(0), |_| None) } else { seen };
            *value = wrong;
        }
        match check(&RegisterMap::new(), &history).expect("a well-formed history") {
            Verdict::Violation(violation) => prop_assert_eq!(violation.stuck.index, changed),
            Verdict::Linearizable => prop_assert!(false, "a changed read went unnoticed: {:?}", history[changed]),
        }
    }
}

/// Whether some order of `left` (indexes into `history`) after `state` respects real time and
/// the model, trying every order; operations of unknown outcome may be left out.
fn brute_force(history: &[Operation<RegisterOp>], left: &[usize], state: &RegisterMap) -> bool {
    if left.iter().all(|&i| history[i].complete.is_none()) {
        return true;
    }
    left.iter().any(|&i| {
        let first = left.iter().all(|&j| history[j].complete.is_none_or(|complete| complete >= history[i].invoke));
        let rest: Vec<usize> = left.iter().copied().filter(|&j| j != i).collect();
        first && state.step(&history[i].op).is_some_and(|next| brute_force(history, &rest, &next))
    })
}

fn small_operation() -> impl Strategy<Value = Operation<RegisterOp>> {
    (0..3u64, 0..20u64, 0..20u64, 0..3u8, 0..2usize, 0..4u64, prop::bool::weighted(0.2)).prop_map(
        |(client, invoke, length, kind, key, value, unknown)| {
            let key = ["a", "b"][key];
            let op = match kind {
                0 => read(key, (value > 0).then_some(value)),
                1 => write(key, value.max(1)),
                _ => delete(key),
            };
            let unknown = unknown && kind != 0;
            Operation { client, invoke, complete: (!unknown).then_some(invoke + length), op }
        },
    )
}

proptest! {
    #[test]
    fn the_search_agrees_with_trying_every_order(history in prop::collection::vec(small_operation(), 0..7)) {
        let all: Vec<usize> = (0..history.len()).collect();
        let expected = brute_force(&history, &all, &RegisterMap::new());
        let verdict = check(&RegisterMap::new(), &history).expect("a well-formed history");
        prop_assert_eq!(verdict.is_linearizable(), expected, "{:#?}", history);
    }
}

#[test]
fn thousands_of_concurrent_operations_are_checked() {
    // A fixed pseudo-random plan (xorshift): 4 clients, 1000 operations each, 5 keys, some
    // writes of unknown outcome.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let plans: Vec<Vec<Plan>> = (0..4)
        .map(|_| {
            (0..1000)
                .map(|_| Plan {
                    gap: next() % 10,
                    length: 1 + next() % 50,
                    kind: (next() % 256) as u8,
                    key: (next() % 5) as usize,
                    at: next() % 1001,
                    unknown: next() % 100 < 2,
                    applied: next() % 2 == 0,
                })
                .collect()
        })
        .collect();
    let history = simulate(&plans, &["k-0", "k-1", "k-2", "k-3", "k-4"]);
    assert_eq!(history.len(), 4000);
    assert_linearizable(&history);
}
