//! `cloud`: `gantry up` and `gantry down` of one master and N-1 agents on a cloud provider's lab
//! (`gantry_lab::cloud`: the provider's API emulated on loopback, every instance a real test
//! host), with every cloud API call counted, and in the same run a baseline: the same instance
//! calls made directly with the official SDK, with the same concurrency bound.
//!
//! Calls are measured, for gantry and for the baseline alike, by a counting proxy in front of the
//! emulator ([`crate::cloud_proxy`]), so both sides are timed by the same clock at the same
//! place. From its record ([`Call`]s, each of a [`Kind`]) this module derives, per instance, a
//! *create span* (from the start of the create call that made it — `RunInstances`,
//! `instances.insert`, the VM's PUT — to the end of the last describe or operation poll naming
//! it, the one that saw it running; on GCE and Azure, whose answers the proxy reads, the first
//! describe that showed it running) and a *terminate span* (from its delete call to the last
//! describe or operation poll naming it, the one that saw it gone). The figures:
//! - create time: from the first create span's start to the last one's end (a window: both
//!   sides hold a create slot until the instance accepts SSH, so waves of creates follow each
//!   other the same way);
//! - terminate time: the length of the union of the terminate spans (not a window: gantry
//!   terminates the agents, then stops the master over SSH before terminating it, and that SSH
//!   work is not an API call);
//! - the API ratio (`ec2_ratio` on AWS, `api_ratio` elsewhere): gantry's create + terminate time
//!   over the baseline's (the goal: at most 1.2); and the ratio of instance calls (creates,
//!   describes, deletes, and operation polls naming an instance) made by each;
//! - how many creates were in flight at once: instances inside their create span, and create
//!   requests inside the proxy, at the busiest moment.
//!
//! The lab is started once; each of `--runs` runs does `up`, `down` and the baseline in it, and
//! every figure is the median over the runs (the ratio: the median of the runs' own ratios).
//!
//! Needs root and the provider's emulator (for AWS: moto, see `gantry_lab::cloud::aws`).

#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "aws")]
mod aws_baseline;
#[cfg(feature = "azure")]
mod azure;
#[cfg(feature = "azure")]
mod azure_baseline;
#[cfg(any(feature = "aws", feature = "gce", feature = "azure"))]
mod cluster;
#[cfg(feature = "gce")]
mod gce;
#[cfg(feature = "gce")]
mod gce_baseline;

use crate::cloud_proxy::{Call, Kind};
use crate::report::{Figure, Report, Target, number};
use crate::stats::Samples;
use anyhow::Context;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The clouds the scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    /// Amazon EC2, emulated by moto.
    Aws,
    /// Google Compute Engine, emulated by `gantry_lab::cloud::gce`.
    Gce,
    /// Azure Resource Manager, emulated by `gantry_lab::cloud::azure`.
    Azure,
}

/// Options of `cloud`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The provider whose lab to run on.
    #[arg(long, value_enum, default_value = "aws")]
    pub provider: Provider,
    /// Instances: 1 master and N-1 agents. A run of 20 takes about 30 s on 2 cores (release build).
    #[arg(long, default_value_t = 20)]
    pub instances: usize,
    /// The cluster file's `max_parallel_creates` (gantry's default: 10); the baseline uses the
    /// same bound.
    #[arg(long, default_value_t = 10)]
    pub max_parallel_creates: usize,
    /// Runs of up, down and the baseline in one lab; every figure is the median over them.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Skip the SDK baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Also write every call the proxy saw to this file, one JSON object a line (side, phase,
    /// action, kind, instances, status, start and end in ms).
    #[arg(long)]
    pub calls_file: Option<PathBuf>,
}

/// Runs the scenario.
pub fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    if args.instances < 2 {
        anyhow::bail!("--instances: a cluster needs at least 2 (1 master and 1 agent), not {}", args.instances);
    }
    if args.runs == 0 {
        anyhow::bail!("--runs must be at least 1");
    }
    if args.max_parallel_creates == 0 {
        anyhow::bail!("--max-parallel-creates must be at least 1");
    }
    match args.provider {
        #[cfg(feature = "aws")]
        Provider::Aws => aws::run(args, report),
        #[cfg(feature = "gce")]
        Provider::Gce => gce::run(args, report),
        #[cfg(feature = "azure")]
        Provider::Azure => azure::run(args, report),
        #[allow(unreachable_patterns)]
        other => {
            let _ = report;
            anyhow::bail!("this gantry-bench was built without its `{}` feature", other.name())
        }
    }
}

impl Provider {
    /// Its name, as on the command line and in cluster files.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Gce => "gce",
            Provider::Azure => "azure",
        }
    }
}

/// How a cloud's figures and notes name its API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Api {
    /// In notes: `EC2`, `Compute Engine`, `Resource Manager`.
    pub name: &'static str,
    /// In figure names: `ec2` (`ec2_ratio`, `ec2_calls_up`) or `api`.
    pub key: &'static str,
    /// The figure of create requests in flight: `run_instances_in_flight` on EC2.
    pub creates_in_flight: &'static str,
}

/// EC2's figures keep the names they had before the other clouds.
pub const EC2: Api = Api { name: "EC2", key: "ec2", creates_in_flight: "run_instances_in_flight" };

/// What one side (gantry or the baseline) did to the cloud.
#[derive(Debug, Clone, Default)]
pub struct Side {
    /// The calls while it created the instances (for gantry: all of `up`).
    pub create: Vec<Call>,
    /// The calls while it terminated them (for gantry: all of `down`).
    pub terminate: Vec<Call>,
}

/// The measures of one [`Side`].
#[derive(Debug, Clone, PartialEq)]
pub struct Measures {
    /// First create span's start to last create span's end.
    pub create: Duration,
    /// Length of the union of the terminate spans.
    pub terminate: Duration,
    /// First terminate span's start to last one's end.
    pub terminate_window: Duration,
    /// Instances launched (create spans).
    pub launched: usize,
    /// Instances terminated (terminate spans).
    pub terminated: usize,
    /// Create, describe and delete calls, and operation polls naming an instance.
    pub instance_calls: usize,
    /// Every call.
    pub calls: usize,
    /// Most instances inside their create span at once.
    pub creates_in_flight: usize,
    /// Most create requests (`RunInstances`, `instances.insert`, a VM's PUT) inside the proxy at
    /// once.
    pub create_requests_in_flight: usize,
    /// Answers with a status of 400 or more.
    pub errors: usize,
}

impl Side {
    /// Its measures.
    pub fn measures(&self) -> Measures {
        let creates = spans(&self.create, Kind::Create);
        let terminates = spans(&self.terminate, Kind::Delete);
        let all = || self.create.iter().chain(&self.terminate);
        Measures {
            create: window(&creates),
            terminate: union(&terminates),
            terminate_window: window(&terminates),
            launched: creates.len(),
            terminated: terminates.len(),
            instance_calls: all()
                .filter(|c| match c.kind {
                    Kind::Create | Kind::Describe | Kind::Delete => true,
                    Kind::Poll => !c.instances.is_empty(),
                    Kind::Other => false,
                })
                .count(),
            calls: all().count(),
            creates_in_flight: peak(creates.values().copied()),
            create_requests_in_flight: peak(
                self.create.iter().filter(|c| c.kind == Kind::Create).map(|c| (c.start, c.end)),
            ),
            errors: all().filter(|c| c.status >= 400).count(),
        }
    }
}

/// Per instance, from the start of the successful `opening` call (create or delete) that names
/// it to the end of the last describe or operation poll naming it after that; a create span
/// ends instead at the first describe whose answer showed it running, where the answers say so
/// (GCE, Azure: gantry describes its hosts again after the bootstrap, which is not waiting).
fn spans(calls: &[Call], opening: Kind) -> BTreeMap<String, (Duration, Duration)> {
    let mut spans: BTreeMap<String, (Duration, Duration)> = BTreeMap::new();
    for call in calls.iter().filter(|c| c.kind == opening && c.status < 400) {
        for id in &call.instances {
            let span = spans.entry(id.clone()).or_insert((call.start, call.end));
            span.0 = span.0.min(call.start);
        }
    }
    // Where the answers say when an instance ran: the end of the first that did.
    let mut ready: BTreeMap<String, Duration> = BTreeMap::new();
    if opening == Kind::Create {
        for call in calls.iter().filter(|c| c.kind == Kind::Describe) {
            for id in &call.ready {
                if spans.get(id).is_some_and(|span| call.start >= span.0) {
                    let end = ready.entry(id.clone()).or_insert(call.end);
                    *end = (*end).min(call.end);
                }
            }
        }
    }
    for call in calls.iter().filter(|c| matches!(c.kind, Kind::Describe | Kind::Poll)) {
        for id in call.instances.iter().filter(|id| !ready.contains_key(*id)) {
            if let Some(span) = spans.get_mut(id)
                && call.start >= span.0
            {
                span.1 = span.1.max(call.end);
            }
        }
    }
    for (id, end) in ready {
        if let Some(span) = spans.get_mut(&id) {
            span.1 = span.1.max(end);
        }
    }
    spans
}

/// From the earliest start to the latest end.
fn window(spans: &BTreeMap<String, (Duration, Duration)>) -> Duration {
    let start = spans.values().map(|s| s.0).min();
    let end = spans.values().map(|s| s.1).max();
    match (start, end) {
        (Some(start), Some(end)) => end.saturating_sub(start),
        _ => Duration::ZERO,
    }
}

/// The time covered by at least one span.
fn union(spans: &BTreeMap<String, (Duration, Duration)>) -> Duration {
    let mut sorted: Vec<(Duration, Duration)> = spans.values().copied().collect();
    sorted.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(Duration, Duration)> = None;
    for (start, end) in sorted {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e.saturating_sub(s);
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    total + current.map_or(Duration::ZERO, |(s, e)| e.saturating_sub(s))
}

/// The most intervals that overlap at one moment.
fn peak(intervals: impl Iterator<Item = (Duration, Duration)>) -> usize {
    let mut edges: Vec<(Duration, i32)> = intervals.flat_map(|(start, end)| [(start, 1), (end, -1)]).collect();
    // At the same instant an end comes before a start: touching intervals do not overlap.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most.max(0) as usize
}

/// Writes the calls of `runs` to `path`, one JSON object a line.
pub fn write_calls(path: &Path, runs: &[Run]) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (index, run) in runs.iter().enumerate() {
        for (name, side) in
            std::iter::once(("gantry", &run.gantry)).chain(run.baseline.as_ref().map(|b| ("baseline", b)))
        {
            for (phase, calls) in [("create", &side.create), ("terminate", &side.terminate)] {
                for call in calls {
                    let line = serde_json::json!({
                        "run": index + 1, "side": name, "phase": phase, "action": call.action, "kind": call.kind,
                        "instances": call.instances, "status": call.status,
                        "start_ms": ms(call.start), "end_ms": ms(call.end),
                    });
                    writeln!(out, "{line}")?;
                }
            }
        }
    }
    out.flush().with_context(|| format!("cannot write {}", path.display()))
}

/// `DescribeInstances 41, RunInstances 20, …`, most frequent first.
pub fn by_action(calls: &[Call]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for call in calls {
        *counts.entry(call.action.as_str()).or_default() += 1;
    }
    let mut counts: Vec<(&str, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    counts.iter().map(|(action, n)| format!("{action} {n}")).collect::<Vec<_>>().join(", ")
}

/// `describe 41, create 20, poll 12, …`: the calls of each [`Kind`], most frequent first.
pub fn by_kind(calls: &[Call]) -> String {
    let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
    for call in calls {
        *counts.entry(call.kind).or_default() += 1;
    }
    let mut counts: Vec<(Kind, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    counts.iter().map(|(kind, n)| format!("{} {n}", kind.name())).collect::<Vec<_>>().join(", ")
}

/// One run: `gantry up` and `gantry down`, then the baseline.
#[derive(Debug, Clone)]
pub struct Run {
    /// Wall time of `gantry up`.
    pub up: Duration,
    /// Wall time of `gantry down`.
    pub down: Duration,
    /// What gantry did to the cloud.
    pub gantry: Side,
    /// What the SDK baseline did, when measured.
    pub baseline: Option<Side>,
}

/// The median of `values` (nearest rank; 0 without values).
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let median = Samples::from_ms(values.collect()).median();
    if median.is_nan() { 0.0 } else { median }
}

/// Records the figures of `runs` in `report`, named after `api`: each the median over the runs,
/// and the ratio the median of the runs' ratios (gantry's against the baseline of the same run).
pub fn add_figures(report: &mut Report, prefix: &str, api: Api, runs: &[Run]) {
    let key = api.key;
    let ours: Vec<Measures> = runs.iter().map(|r| r.gantry.measures()).collect();
    let theirs: Vec<Measures> = runs.iter().filter_map(|r| r.baseline.as_ref().map(Side::measures)).collect();
    let secs = |d: Duration| d.as_secs_f64();
    let ec2 = |m: &Measures| secs(m.create) + secs(m.terminate);
    let mut add = |name: &str, unit: &str, value: &dyn Fn(&Measures) -> f64| {
        let figure = Figure::new(format!("{prefix}.{name}"), median(ours.iter().map(value)), unit);
        report.add(if theirs.is_empty() { figure } else { figure.baseline(median(theirs.iter().map(value))) });
    };
    add("create_s", "s", &|m| secs(m.create));
    add("terminate_s", "s", &|m| secs(m.terminate));
    add(&format!("{key}_s"), "s", &ec2);
    add("instance_calls", "calls", &|m| m.instance_calls as f64);
    add("creates_in_flight", "instances", &|m| m.creates_in_flight as f64);
    add(api.creates_in_flight, "requests", &|m| m.create_requests_in_flight as f64);
    let ratios: Vec<f64> =
        ours.iter().zip(&theirs).filter(|(_, t)| ec2(t) > 0.0).map(|(o, t)| ec2(o) / ec2(t)).collect();
    if !ratios.is_empty() {
        let ratio = median(ratios.iter().copied());
        report.add(Figure::new(format!("{prefix}.{key}_ratio"), ratio, "x").target(Target::at_most(1.2)));
    }
    let plain = |name: &str, value: f64, unit: &str| Figure::new(format!("{prefix}.{name}"), value, unit);
    report.add(plain("up_s", median(runs.iter().map(|r| secs(r.up))), "s"));
    report.add(plain("down_s", median(runs.iter().map(|r| secs(r.down))), "s"));
    report.add(plain(&format!("{key}_calls_up"), median(runs.iter().map(|r| r.gantry.create.len() as f64)), "calls"));
    report.add(plain(
        &format!("{key}_calls_down"),
        median(runs.iter().map(|r| r.gantry.terminate.len() as f64)),
        "calls",
    ));
    let list = |values: &mut dyn Iterator<Item = f64>| values.map(number).collect::<Vec<_>>().join(", ");
    report.note(format!(
        "per run: up {} s; down {} s; create {} s (baseline {}); terminate {} s (baseline {}); {key}_ratio {}",
        list(&mut runs.iter().map(|r| secs(r.up))),
        list(&mut runs.iter().map(|r| secs(r.down))),
        list(&mut ours.iter().map(|m| secs(m.create))),
        list(&mut theirs.iter().map(|m| secs(m.create))),
        list(&mut ours.iter().map(|m| secs(m.terminate))),
        list(&mut theirs.iter().map(|m| secs(m.terminate))),
        list(&mut ratios.iter().copied()),
    ));
    if let (Some(first), Some(m)) = (runs.first(), ours.first()) {
        let name = api.name;
        report.note(format!("gantry's {name} calls during up (run 1): {}", by_action(&first.gantry.create)));
        report.note(format!("gantry's {name} calls during down (run 1): {}", by_action(&first.gantry.terminate)));
        report.note(format!(
            "gantry's {name} calls by kind (run 1): up {}; down {}",
            by_kind(&first.gantry.create),
            by_kind(&first.gantry.terminate)
        ));
        report.note(format!(
            "gantry (run 1): {} instances launched, {} terminated; terminate spans from first to last: {} s; {} \
             error answers",
            m.launched,
            m.terminated,
            number(secs(m.terminate_window)),
            m.errors
        ));
    }
    if let (Some(baseline), Some(m)) = (runs.first().and_then(|r| r.baseline.as_ref()), theirs.first()) {
        let all = [baseline.create.as_slice(), baseline.terminate.as_slice()].concat();
        report.note(format!(
            "baseline's {} calls (run 1): {} (by kind: {}); {} launched, {} terminated; terminate spans from first to \
             last: {} s; {} error answers",
            api.name,
            by_action(&all),
            by_kind(&all),
            m.launched,
            m.terminated,
            number(secs(m.terminate_window)),
            m.errors
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// An EC2 call naming `ids` whose answer launched `launched`.
    fn call(action: &str, ids: &[&str], launched: &[&str], start: u64, end: u64) -> Call {
        let kind = crate::cloud_proxy::ec2::kind(action);
        let named = if kind == Kind::Create { launched } else { ids };
        Call {
            action: action.to_string(),
            kind,
            instances: named.iter().map(|s| s.to_string()).collect(),
            ready: Vec::new(),
            status: 200,
            start: ms(start),
            end: ms(end),
        }
    }

    #[test]
    fn spans_run_from_the_opening_call_to_the_last_describe() {
        let calls = vec![
            call("DescribeInstances", &[], &[], 0, 5),
            call("RunInstances", &[], &["i-1"], 10, 40),
            call("RunInstances", &[], &["i-2"], 20, 50),
            call("DescribeInstances", &["i-1"], &[], 45, 55),
            call("DescribeInstances", &["i-1"], &[], 150, 160),
            call("DescribeInstances", &["i-2"], &[], 60, 70),
        ];
        let spans = spans(&calls, Kind::Create);
        assert_eq!(spans["i-1"], (ms(10), ms(160)));
        assert_eq!(spans["i-2"], (ms(20), ms(70)));
        assert_eq!(window(&spans), ms(150));
        assert_eq!(peak(spans.values().copied()), 2);
    }

    /// A call of `kind` naming `instances`, as the proxy records GCE and Azure calls.
    fn rest(action: &str, kind: Kind, instances: &[&str], start: u64, end: u64) -> Call {
        let instances = instances.iter().map(|s| s.to_string()).collect();
        Call {
            action: action.to_string(),
            kind,
            instances,
            ready: Vec::new(),
            status: 200,
            start: ms(start),
            end: ms(end),
        }
    }

    #[test]
    fn operation_polls_naming_an_instance_end_its_spans_and_count_as_instance_calls() {
        let side = Side {
            create: vec![
                rest("networks.insert", Kind::Other, &[], 0, 1),
                rest("globalOperations.get", Kind::Poll, &[], 1, 2),
                rest("instances.insert", Kind::Create, &["m-0"], 10, 20),
                rest("instances.insert", Kind::Create, &["w-0"], 12, 22),
                rest("zoneOperations.get", Kind::Poll, &["m-0"], 30, 40),
                rest("zoneOperations.get", Kind::Poll, &["w-0"], 31, 35),
                rest("instances.get", Kind::Describe, &["w-0"], 50, 60),
            ],
            terminate: vec![
                rest("instances.delete", Kind::Delete, &["m-0"], 100, 110),
                rest("zoneOperations.get", Kind::Poll, &["m-0"], 120, 130),
                rest("instances.get", Kind::Describe, &["m-0"], 90, 95),
            ],
        };
        let m = side.measures();
        assert_eq!((m.launched, m.terminated), (2, 1));
        assert_eq!((m.create, m.terminate), (ms(50), ms(30)));
        assert_eq!((m.instance_calls, m.calls), (8, 10));
        assert_eq!((m.creates_in_flight, m.create_requests_in_flight), (2, 2));
        assert_eq!(by_kind(&side.create), "poll 3, create 2, describe 1, other 1");
        let run = Run { up: ms(1), down: ms(1), gantry: side.clone(), baseline: Some(side) };
        let mut report = Report::quiet("cloud");
        add_figures(
            &mut report,
            "g",
            Api { name: "Compute Engine", key: "api", creates_in_flight: "c_in_flight" },
            &[run],
        );
        assert_eq!(report.figure("g.api_ratio").map(|f| f.value), Some(1.0));
        assert_eq!(report.figure("g.c_in_flight").map(|f| f.value), Some(2.0));
        assert!(report.figure("g.ec2_ratio").is_none());
    }

    #[test]
    fn a_create_span_ends_at_the_first_answer_that_showed_the_instance_running() {
        let mut looked = rest("virtualMachines.get", Kind::Describe, &["vm-1"], 30, 32);
        looked.ready = vec!["vm-1".to_string()];
        let mut again = rest("virtualMachines.get", Kind::Describe, &["vm-1"], 900, 905);
        again.ready = vec!["vm-1".to_string()];
        let mut listed = rest("virtualMachines.list", Kind::Describe, &[], 40, 44);
        listed.ready = vec!["vm-1".to_string(), "vm-2".to_string()];
        let calls = vec![
            rest("virtualMachines.get", Kind::Describe, &["vm-1"], 0, 2),
            rest("virtualMachines.createOrUpdate", Kind::Create, &["vm-1"], 10, 12),
            rest("virtualMachines.createOrUpdate", Kind::Create, &["vm-2"], 11, 13),
            rest("virtualMachines.createOrUpdate", Kind::Create, &["vm-3"], 11, 13),
            rest("Microsoft.Compute/operations.get", Kind::Poll, &["vm-1"], 20, 22),
            rest("Microsoft.Compute/operations.get", Kind::Poll, &["vm-3"], 20, 70),
            looked,
            listed,
            again,
            rest("virtualMachines.get", Kind::Describe, &["vm-2"], 950, 960),
        ];
        let spans = spans(&calls, Kind::Create);
        assert_eq!(spans["vm-1"], (ms(10), ms(32)));
        assert_eq!(spans["vm-2"], (ms(11), ms(44)));
        assert_eq!(spans["vm-3"], (ms(11), ms(70)), "without a running answer: the last call naming it");
    }

    #[test]
    fn the_union_leaves_out_gaps() {
        let spans: BTreeMap<String, (Duration, Duration)> = [
            ("a".to_string(), (ms(0), ms(10))),
            ("b".to_string(), (ms(5), ms(20))),
            ("c".to_string(), (ms(100), ms(130))),
        ]
        .into();
        assert_eq!(union(&spans), ms(50));
        assert_eq!(window(&spans), ms(130));
        assert_eq!(union(&BTreeMap::new()), Duration::ZERO);
    }

    #[test]
    fn touching_intervals_do_not_overlap() {
        assert_eq!(peak([(ms(0), ms(10)), (ms(10), ms(20))].into_iter()), 1);
        assert_eq!(peak([(ms(0), ms(10)), (ms(5), ms(20)), (ms(6), ms(7))].into_iter()), 3);
        assert_eq!(peak(std::iter::empty()), 0);
    }

    #[test]
    fn measures_count_instance_calls_and_errors() {
        let mut failed = call("RunInstances", &[], &[], 0, 1);
        failed.status = 400;
        let side = Side {
            create: vec![
                call("CreateVpc", &[], &[], 0, 1),
                failed,
                call("RunInstances", &[], &["i-1"], 2, 3),
                call("DescribeInstances", &["i-1"], &[], 4, 5),
            ],
            terminate: vec![
                call("TerminateInstances", &["i-1"], &[], 10, 11),
                call("DescribeInstances", &["i-1"], &[], 12, 14),
                call("DeleteVpc", &[], &[], 20, 21),
            ],
        };
        let m = side.measures();
        assert_eq!((m.launched, m.terminated, m.calls, m.instance_calls, m.errors), (1, 1, 7, 5, 1));
        assert_eq!((m.create, m.terminate), (ms(3), ms(4)));
        assert_eq!(by_action(&side.create), "RunInstances 2, CreateVpc 1, DescribeInstances 1");
    }

    #[test]
    fn figures_are_medians_and_the_ratio_compares_each_run_with_its_own_baseline() {
        let side = |create_ms: u64, terminate_ms: u64| Side {
            create: vec![
                call("RunInstances", &[], &["i-1"], 0, 1),
                call("DescribeInstances", &["i-1"], &[], 2, create_ms),
            ],
            terminate: vec![
                call("TerminateInstances", &["i-1"], &[], 1000, 1001),
                call("DescribeInstances", &["i-1"], &[], 1002, 1000 + terminate_ms),
            ],
        };
        let run = |gantry: Side, baseline: Side| Run { up: ms(10), down: ms(5), gantry, baseline: Some(baseline) };
        let runs = [
            run(side(100, 100), side(100, 100)),
            run(side(300, 100), side(100, 100)),
            run(side(500, 500), side(900, 100)),
        ];
        let mut report = Report::quiet("cloud");
        add_figures(&mut report, "c", EC2, &runs);
        let create = report.figure("c.create_s").expect("create_s");
        assert_eq!((create.value, create.baseline), (0.3, Some(0.1)));
        assert_eq!(report.figure("c.ec2_ratio").map(|f| f.value), Some(1.0));
        assert_eq!(report.figure("c.instance_calls").and_then(|f| f.ratio), Some(1.0));
        assert_eq!(report.figure("c.up_s").map(|f| f.value), Some(0.01));
    }
}
