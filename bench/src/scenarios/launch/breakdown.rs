//! Where a launch's time goes, read from the task's sandbox after it reached RUNNING: the files
//! the agent and the executor write on the way (see the agent's `sandbox` module) are marks on
//! the wall clock, by modification time, between the bench's submit and its receipt of the
//! RUNNING event.
//!
//! New files get the kernel's coarse timestamp (one jiffy: 4 ms at HZ=250), so a single stage is
//! only good to a tick, and a file can seem up to a tick older than the bench's (fine) submit: a
//! stage may come out slightly negative. The figures are means, which such rounding does not
//! bias between two files; the first stage reads about half a tick short and the last as much
//! long. The note adds p50 and p99.
//!
//! A mark that is missing (no cgroups on this host: no `cgroup` file) or out of order by more
//! than [`SLACK`] is left out for that run, and its stage merges into the next one under the
//! merged name.

use super::runs::Launched;
use crate::report::{Figure, Report};
use crate::stats::Samples;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The marks, in the order they happen: short name, sandbox file (none: the bench's own
/// instants), and what the stage that ends at it covers.
const MARKS: &[(&str, Option<&str>, &str)] = &[
    ("submit", None, ""),
    (
        "task",
        Some("task.json"),
        "the master stores the run, offers, stores and sends the launch; the agent makes the sandbox",
    ),
    ("launch", Some("launch.json"), "the agent: env, limits, a container's image (pull or cache) and plan"),
    (
        "spawned",
        Some("spawned.json"),
        "the agent hands the sandbox to its standby `gantry executor` (forks and execs one when none waits)",
    ),
    (
        "cgroup",
        Some("cgroup"),
        "the executor reads launch.json, creates the task's cgroups with their limits (and, without a standby, starts: exec, loader, main)",
    ),
    ("limits", Some("limits.json"), "the executor opens each cgroup.procs and writes limits.json"),
    (
        "executor",
        Some("executor.json"),
        "opens stdout and stderr; fork, join the cgroups, a container's namespaces/overlay/pivot_root, exec the task",
    ),
    (
        "state",
        Some("state.json"),
        "executor.json renamed, the executor's line on its stdout pipe wakes the agent, which queues RUNNING and writes state.json",
    ),
    ("running", None, "the status update to the master, stored, and the event stream to the bench"),
];

/// How far a mark may seem to precede the one before it (or follow the RUNNING event): two
/// coarse clock ticks.
const SLACK: Duration = Duration::from_millis(8);

/// Stage durations of many runs.
#[derive(Debug, Default)]
pub struct Breakdown {
    /// `(from, to)` mark indices → milliseconds.
    stages: Vec<((usize, usize), Vec<f64>)>,
    runs: usize,
    without_sandbox: usize,
}

impl Breakdown {
    /// Adds a run's stages, read from its sandbox now.
    pub fn add(&mut self, launched: &Launched) {
        self.runs += 1;
        let Some(sandbox) = &launched.sandbox else {
            self.without_sandbox += 1;
            return;
        };
        for (stage, duration) in stages(sandbox, launched.submitted_at, launched.running_at) {
            match self.stages.iter_mut().find(|(s, _)| *s == stage) {
                Some((_, durations)) => durations.push(duration),
                None => self.stages.push((stage, vec![duration])),
            }
        }
    }

    /// Adds `<prefix>.stage_<from>_to_<to>_mean_ms` for each stage, and a note with every
    /// stage's p50, mean and p99 and what it covers.
    pub fn report(&self, prefix: &str, report: &mut Report) {
        let mut stages: Vec<_> = self.stages.iter().collect();
        stages.sort_by_key(|(stage, _)| *stage);
        let mut note = format!(
            "{prefix}: where the time goes, from sandbox file times ({} of {} runs; ms p50/mean/p99 [runs]):",
            self.runs - self.without_sandbox,
            self.runs
        );
        for ((from, to), durations) in stages {
            let (from_name, to_name) = (MARKS[*from].0, MARKS[*to].0);
            let samples = Samples::from_ms(durations.clone());
            let mean = durations.iter().sum::<f64>() / durations.len() as f64;
            report.add(Figure::new(format!("{prefix}.stage_{from_name}_to_{to_name}_mean_ms"), mean, "ms"));
            let _ = write!(
                note,
                " {from_name}→{to_name} {:.2}/{mean:.2}/{:.2} [{}] ({});",
                samples.median(),
                samples.percentile(99.0),
                samples.len(),
                MARKS[*to].2
            );
        }
        report.note(note);
    }
}

/// The stages of one run: `(from, to)` mark indices and the milliseconds between them.
fn stages(sandbox: &Path, submitted_at: SystemTime, running_at: SystemTime) -> Vec<((usize, usize), f64)> {
    let mut result = Vec::new();
    let mut last = (0, submitted_at);
    for (index, (_, file, _)) in MARKS.iter().enumerate().skip(1) {
        let at = match file {
            None => Some(running_at),
            Some(file) => std::fs::metadata(sandbox.join(file)).and_then(|m| m.modified()).ok(),
        };
        let Some(at) = at.filter(|at| *at + SLACK >= last.1 && *at <= running_at + SLACK) else { continue };
        result.push(((last.0, index), signed_ms(last.1, at)));
        last = (index, at);
    }
    result
}

/// `to - from` in milliseconds, negative when `to` is earlier.
fn signed_ms(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(later) => later.as_secs_f64() * 1000.0,
        Err(earlier) => -earlier.duration().as_secs_f64() * 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, file: &str, at: SystemTime) {
        let path = dir.join(file);
        std::fs::write(&path, b"{}").expect("write");
        std::fs::File::options().write(true).open(&path).expect("open").set_modified(at).expect("set mtime");
    }

    #[test]
    fn stages_run_between_the_marks_present_and_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t0 = SystemTime::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // Stamped by a coarse clock: seemingly before the submit.
        touch(dir.path(), "task.json", t0 - Duration::from_millis(2));
        touch(dir.path(), "launch.json", ms(4));
        touch(dir.path(), "spawned.json", ms(6));
        // No cgroup file: spawned → limits is one stage.
        touch(dir.path(), "limits.json", ms(9));
        touch(dir.path(), "executor.json", ms(10));
        // Written after the event arrived: left out.
        touch(dir.path(), "state.json", ms(30));
        let got = stages(dir.path(), t0, ms(12));
        let got: Vec<(&str, &str, i64)> =
            got.iter().map(|((f, t), d)| (MARKS[*f].0, MARKS[*t].0, d.round() as i64)).collect();
        assert_eq!(
            got,
            vec![
                ("submit", "task", -2),
                ("task", "launch", 6),
                ("launch", "spawned", 2),
                ("spawned", "limits", 3),
                ("limits", "executor", 1),
                ("executor", "running", 2),
            ]
        );
    }
}
