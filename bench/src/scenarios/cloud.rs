//! `cloud`: `gantry up` and `gantry down` of one master and N-1 agents on a cloud provider's lab
//! (`gantry_lab::cloud`: the provider's API emulated on loopback, every instance a real test
//! host), with every cloud API call counted, and in the same run a baseline: the same instance
//! calls made directly with the official SDK, with the same concurrency bound.
//!
//! Calls are measured, for gantry and for the baseline alike, by a counting proxy in front of the
//! emulator ([`crate::cloud_proxy`]), so both sides are timed by the same clock at the same
//! place. From its record ([`Call`]s) this module derives, per instance, a *create span* (from
//! the start of the `RunInstances` that launched it to the end of the last `DescribeInstances`
//! naming it, the one that saw it running) and a *terminate span* (from its `TerminateInstances`
//! to the last `DescribeInstances` naming it, the one that saw it terminated). The figures:
//! - create time: from the first create span's start to the last one's end (a window: both
//!   sides hold a create slot until the instance accepts SSH, so waves of creates follow each
//!   other the same way);
//! - terminate time: the length of the union of the terminate spans (not a window: gantry
//!   terminates the agents, then stops the master over SSH before terminating it, and that SSH
//!   work is not an EC2 call);
//! - the EC2 ratio: gantry's create + terminate time over the baseline's (the goal:
//!   at most 1.2); and the ratio of instance calls (`RunInstances`, `DescribeInstances`,
//!   `TerminateInstances`) made by each;
//! - how many creates were in flight at once: instances inside their create span, and
//!   `RunInstances` requests inside the proxy, at the busiest moment.
//!
//! Needs root and the provider's emulator (for AWS: moto, see `gantry_lab::cloud::aws`).

#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "aws")]
mod aws_baseline;

use crate::cloud_proxy::Call;
use crate::report::{Figure, Report, Target, number};
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
}

/// Options of `cloud`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The provider whose lab to run on.
    #[arg(long, value_enum, default_value = "aws")]
    pub provider: Provider,
    /// Instances: 1 master and N-1 agents. 20 take about 40 s on 2 cores (release build).
    #[arg(long, default_value_t = 20)]
    pub instances: usize,
    /// The cluster file's `[aws] max_parallel_creates` (gantry's default: 10); the baseline
    /// uses the same bound.
    #[arg(long, default_value_t = 10)]
    pub max_parallel_creates: usize,
    /// Skip the SDK baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Also write every call the proxy saw to this file, one JSON object a line (side, phase,
    /// action, instances, status, start and end in ms).
    #[arg(long)]
    pub calls_file: Option<PathBuf>,
}

/// Runs the scenario.
pub fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    if args.instances < 2 {
        anyhow::bail!("--instances: a cluster needs at least 2 (1 master and 1 agent), not {}", args.instances);
    }
    if args.max_parallel_creates == 0 {
        anyhow::bail!("--max-parallel-creates must be at least 1");
    }
    match args.provider {
        #[cfg(feature = "aws")]
        Provider::Aws => aws::run(args, report),
        #[cfg(not(feature = "aws"))]
        Provider::Aws => {
            let _ = report;
            anyhow::bail!("this gantry-bench was built without its `aws` feature")
        }
    }
}

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
    /// `RunInstances` + `DescribeInstances` + `TerminateInstances` calls.
    pub instance_calls: usize,
    /// Every call.
    pub calls: usize,
    /// Most instances inside their create span at once.
    pub creates_in_flight: usize,
    /// Most `RunInstances` requests inside the proxy at once.
    pub run_instances_in_flight: usize,
    /// Answers with a status of 400 or more.
    pub errors: usize,
}

impl Side {
    /// Its measures.
    pub fn measures(&self) -> Measures {
        let creates = spans(&self.create, "RunInstances", |c| &c.launched);
        let terminates = spans(&self.terminate, "TerminateInstances", |c| &c.instance_ids);
        let all = || self.create.iter().chain(&self.terminate);
        Measures {
            create: window(&creates),
            terminate: union(&terminates),
            terminate_window: window(&terminates),
            launched: creates.len(),
            terminated: terminates.len(),
            instance_calls: all()
                .filter(|c| matches!(c.action.as_str(), "RunInstances" | "DescribeInstances" | "TerminateInstances"))
                .count(),
            calls: all().count(),
            creates_in_flight: peak(creates.values().copied()),
            run_instances_in_flight: peak(
                self.create.iter().filter(|c| c.action == "RunInstances").map(|c| (c.start, c.end)),
            ),
            errors: all().filter(|c| c.status >= 400).count(),
        }
    }
}

/// Per instance, from the start of the `opening` call that names it (`ids` of the call) to the
/// end of the last `DescribeInstances` naming it after that.
fn spans(calls: &[Call], opening: &str, ids: impl Fn(&Call) -> &Vec<String>) -> BTreeMap<String, (Duration, Duration)> {
    let mut spans: BTreeMap<String, (Duration, Duration)> = BTreeMap::new();
    for call in calls.iter().filter(|c| c.action == opening && c.status < 400) {
        for id in ids(call) {
            let span = spans.entry(id.clone()).or_insert((call.start, call.end));
            span.0 = span.0.min(call.start);
        }
    }
    for call in calls.iter().filter(|c| c.action == "DescribeInstances") {
        for id in &call.instance_ids {
            if let Some(span) = spans.get_mut(id)
                && call.start >= span.0
            {
                span.1 = span.1.max(call.end);
            }
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

/// Writes the calls of `sides` (named) to `path`, one JSON object a line.
pub fn write_calls(path: &Path, sides: &[(&str, &Side)]) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (name, side) in sides {
        for (phase, calls) in [("create", &side.create), ("terminate", &side.terminate)] {
            for call in calls {
                let line = serde_json::json!({
                    "side": name, "phase": phase, "action": call.action, "instance_ids": call.instance_ids,
                    "launched": call.launched, "status": call.status, "start_ms": ms(call.start), "end_ms": ms(call.end),
                });
                writeln!(out, "{line}")?;
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

/// Records the figures of gantry's side (and the baseline's, when measured) in `report`.
pub fn add_figures(report: &mut Report, prefix: &str, gantry: &Side, baseline: Option<&Side>) {
    let ours = gantry.measures();
    let theirs = baseline.map(Side::measures);
    let figure = |name: &str, value: f64, unit: &str, base: Option<f64>| {
        let figure = Figure::new(format!("{prefix}.{name}"), value, unit);
        match base {
            Some(base) => figure.baseline(base),
            None => figure,
        }
    };
    let secs = |d: Duration| d.as_secs_f64();
    let ec2 = |m: &Measures| secs(m.create) + secs(m.terminate);
    report.add(figure("create_s", secs(ours.create), "s", theirs.as_ref().map(|t| secs(t.create))));
    report.add(figure("terminate_s", secs(ours.terminate), "s", theirs.as_ref().map(|t| secs(t.terminate))));
    report.add(figure("ec2_s", ec2(&ours), "s", theirs.as_ref().map(ec2)));
    if let Some(theirs) = &theirs
        && ec2(theirs) > 0.0
    {
        report.add(
            Figure::new(format!("{prefix}.ec2_ratio"), ec2(&ours) / ec2(theirs), "x").target(Target::at_most(1.2)),
        );
    }
    report.add(figure(
        "instance_calls",
        ours.instance_calls as f64,
        "calls",
        theirs.as_ref().map(|t| t.instance_calls as f64),
    ));
    report.add(figure("ec2_calls_up", gantry.create.len() as f64, "calls", None));
    report.add(figure("ec2_calls_down", gantry.terminate.len() as f64, "calls", None));
    report.add(figure(
        "creates_in_flight",
        ours.creates_in_flight as f64,
        "instances",
        theirs.as_ref().map(|t| t.creates_in_flight as f64),
    ));
    report.add(figure(
        "run_instances_in_flight",
        ours.run_instances_in_flight as f64,
        "requests",
        theirs.as_ref().map(|t| t.run_instances_in_flight as f64),
    ));
    report.note(format!("gantry's EC2 calls during up: {}", by_action(&gantry.create)));
    report.note(format!("gantry's EC2 calls during down: {}", by_action(&gantry.terminate)));
    report.note(format!(
        "gantry: {} instances launched, {} terminated; terminate spans from first to last: {} s; {} error answers",
        ours.launched,
        ours.terminated,
        number(secs(ours.terminate_window)),
        ours.errors
    ));
    if let (Some(baseline), Some(theirs)) = (baseline, &theirs) {
        report.note(format!(
            "baseline's EC2 calls: {}; {} launched, {} terminated; terminate spans from first to last: {} s; {} error answers",
            by_action(&[baseline.create.as_slice(), baseline.terminate.as_slice()].concat()),
            theirs.launched,
            theirs.terminated,
            number(secs(theirs.terminate_window)),
            theirs.errors
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn call(action: &str, ids: &[&str], launched: &[&str], start: u64, end: u64) -> Call {
        Call {
            action: action.to_string(),
            instance_ids: ids.iter().map(|s| s.to_string()).collect(),
            launched: launched.iter().map(|s| s.to_string()).collect(),
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
        let spans = spans(&calls, "RunInstances", |c| &c.launched);
        assert_eq!(spans["i-1"], (ms(10), ms(160)));
        assert_eq!(spans["i-2"], (ms(20), ms(70)));
        assert_eq!(window(&spans), ms(150));
        assert_eq!(peak(spans.values().copied()), 2);
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
}
