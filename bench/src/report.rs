//! What a scenario prints: first the machine (cores, memory, load), then one line per figure,
//! `name value unit`, with the target and, where one was measured in the same run, the
//! baseline and the ratio. With `--json` the same report is printed as one JSON object at the end.
//!
//! Progress and explanations go to stderr so that stdout holds only results.

use serde::Serialize;
use std::fmt::Write as _;

/// The machine a report was measured on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Machine {
    /// Logical cores available to this process.
    pub cores: usize,
    /// Total memory in bytes (`MemTotal` of `/proc/meminfo`), 0 if unknown.
    pub memory_bytes: u64,
    /// 1, 5 and 15 minute load averages when the run started (other work on the machine).
    pub load: [f64; 3],
}

impl Machine {
    /// The machine this process runs on.
    pub fn detect() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024);
        let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let mut load = [0.0; 3];
        for (slot, field) in load.iter_mut().zip(loadavg.split_whitespace()) {
            *slot = field.parse().unwrap_or(0.0);
        }
        Self { cores, memory_bytes, load }
    }

    /// `machine cores=2 memory=23.4GiB load=1.39,1.38,1.65`
    pub fn line(&self) -> String {
        format!(
            "machine cores={} memory={:.1}GiB load={:.2},{:.2},{:.2}",
            self.cores,
            self.memory_bytes as f64 / (1u64 << 30) as f64,
            self.load[0],
            self.load[1],
            self.load[2]
        )
    }
}

/// Which side of a target a figure must stay on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Bound {
    /// The figure must be at most the target (latencies, sizes).
    #[serde(rename = "<=")]
    AtMost,
    /// The figure must be at least the target (throughputs).
    #[serde(rename = ">=")]
    AtLeast,
}

/// A target from the benchmark issue.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Target {
    /// Which side.
    pub bound: Bound,
    /// The value, in the figure's unit.
    pub value: f64,
}

impl Target {
    /// The figure must be at most `value`.
    pub fn at_most(value: f64) -> Self {
        Self { bound: Bound::AtMost, value }
    }

    /// The figure must be at least `value`.
    pub fn at_least(value: f64) -> Self {
        Self { bound: Bound::AtLeast, value }
    }

    /// Whether `value` meets the target.
    pub fn met_by(&self, value: f64) -> bool {
        match self.bound {
            Bound::AtMost => value <= self.value,
            Bound::AtLeast => value >= self.value,
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// Stable name, `<scenario>.<what>`, so results compare over time.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit (`ms`, `placements/s`, `MiB`, ...).
    pub unit: String,
    /// The target, if it sets one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Whether the target is met (absent without a target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
    /// The same quantity for a baseline measured in the same run (e.g. raw fork+exec).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// `value / baseline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
}

impl Figure {
    /// A figure without target or baseline.
    pub fn new(name: impl Into<String>, value: f64, unit: impl Into<String>) -> Self {
        Self { name: name.into(), value, unit: unit.into(), target: None, met: None, baseline: None, ratio: None }
    }

    /// With the target.
    pub fn target(mut self, target: Target) -> Self {
        self.met = Some(target.met_by(self.value));
        self.target = Some(target);
        self
    }

    /// With a baseline measured in the same run.
    pub fn baseline(mut self, baseline: f64) -> Self {
        self.baseline = Some(baseline);
        self.ratio = (baseline != 0.0).then(|| self.value / baseline);
        self
    }

    /// `name value unit [target<=50 met|MISSED] [baseline=… ratio=…]`
    pub fn line(&self) -> String {
        let mut line = format!("{} {} {}", self.name, number(self.value), self.unit);
        if let Some(target) = &self.target {
            let bound = match target.bound {
                Bound::AtMost => "<=",
                Bound::AtLeast => ">=",
            };
            let verdict = if self.met == Some(true) { "met" } else { "MISSED" };
            let _ = write!(line, " target{bound}{} {verdict}", number(target.value));
        }
        if let Some(baseline) = self.baseline {
            let _ = write!(line, " baseline={}", number(baseline));
            if let Some(ratio) = self.ratio {
                let _ = write!(line, " ratio={ratio:.2}");
            }
        }
        line
    }
}

/// A number with as many decimals as its size deserves: 123456, 12.3, 1.234, 0.0123.
pub fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1000.0 || value == value.trunc() {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 0.1 {
        format!("{value:.3}")
    } else {
        format!("{value:.4}")
    }
}

/// The output of one scenario run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// Where it ran.
    pub machine: Machine,
    /// Every figure, in the order measured.
    pub figures: Vec<Figure>,
    /// Remarks on how figures were measured (scale, settings).
    pub notes: Vec<String>,
    #[serde(skip)]
    json: bool,
}

impl Report {
    /// Starts a report; in text mode prints the machine line at once.
    pub fn start(scenario: &str, json: bool) -> Self {
        let machine = Machine::detect();
        if !json {
            println!("{}", machine.line());
        }
        Self { scenario: scenario.to_string(), machine, figures: Vec::new(), notes: Vec::new(), json }
    }

    /// A report that prints nothing (tests).
    pub fn quiet(scenario: &str) -> Self {
        Self {
            scenario: scenario.to_string(),
            machine: Machine::detect(),
            figures: Vec::new(),
            notes: Vec::new(),
            json: true,
        }
    }

    /// Records a figure; in text mode prints its line at once.
    pub fn add(&mut self, figure: Figure) {
        if !self.json {
            println!("{}", figure.line());
        }
        self.figures.push(figure);
    }

    /// Records a remark on how the figures were measured; in text mode prints it as `# …`.
    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        if !self.json {
            println!("# {note}");
        }
        self.notes.push(note);
    }

    /// The figure named `name`, if recorded.
    pub fn figure(&self, name: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.name == name)
    }

    /// In JSON mode prints the whole report.
    pub fn finish(&self) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(self)?);
        }
        Ok(())
    }
}

/// Progress for the person waiting, on stderr.
pub fn progress(message: &str) {
    eprintln!("  .. {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_line_names_its_target_verdict_and_baseline() {
        let figure = Figure::new("launch.p50", 12.5, "ms").target(Target::at_most(10.0)).baseline(2.5);
        assert_eq!(figure.line(), "launch.p50 12.5 ms target<=10 MISSED baseline=2.500 ratio=5.00");
        let figure = Figure::new("placement.rate", 250_000.4, "placements/s").target(Target::at_least(100_000.0));
        assert_eq!(figure.line(), "placement.rate 250000 placements/s target>=100000 met");
        assert_eq!(Figure::new("up.wall", 0.01234, "s").line(), "up.wall 0.0123 s");
    }

    #[test]
    fn json_carries_the_same_fields() {
        let mut report = Report::quiet("x");
        report.add(Figure::new("x.a", 3.0, "ms").target(Target::at_most(5.0)).baseline(1.5));
        let json = serde_json::to_value(&report).expect("serializable");
        let figure = &json["figures"][0];
        assert_eq!(figure["name"], "x.a");
        assert_eq!(figure["target"]["bound"], "<=");
        assert_eq!(figure["met"], true);
        assert_eq!(figure["ratio"], 2.0);
        assert!(json["machine"]["cores"].as_u64().is_some_and(|c| c >= 1));
        assert!(json.get("json").is_none());
    }

    #[test]
    fn targets_compare_on_their_side() {
        assert!(Target::at_most(5.0).met_by(5.0));
        assert!(!Target::at_most(5.0).met_by(5.1));
        assert!(Target::at_least(5.0).met_by(6.0));
        assert!(!Target::at_least(5.0).met_by(4.0));
    }
}
