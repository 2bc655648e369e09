//! `up`: wall time of `gantry up <cluster file>` until it returns (master ready, every agent
//! registered, workloads deployed) and of `gantry down`, median of several runs.
//!
//! Each run uses a fresh state dir (`GANTRY_STATE_DIR`) and a copy of the cluster file
//! (default `configs/local.toml`) with `api_port = 0`, agents' ports in a block below the
//! ephemeral range, and workload paths made absolute, so it never meets a user's cluster.

use crate::process::kill_all_naming;
use crate::report::{Figure, Report, Target, progress};
use crate::stats::Samples;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Options of `up`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Runs of up + down (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// The cluster file (default: the workspace's `configs/local.toml`).
    #[arg(long)]
    pub cluster_file: Option<PathBuf>,
}

/// Runs the scenario.
pub fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let bin = crate::binary::gantry()?;
    let source =
        args.cluster_file.clone().unwrap_or_else(|| crate::binary::workspace_root().join("configs/local.toml"));
    report.note(format!("{} runs of `gantry up` and `gantry down` of a copy of {}", args.runs, source.display()));
    let mut ups = Vec::new();
    let mut downs = Vec::new();
    for run in 0..args.runs.max(1) {
        progress(&format!("run {}", run + 1));
        let mut cluster = UpCluster::new(&bin, &source)?;
        ups.push(cluster.gantry("up")?);
        downs.push(cluster.gantry("down")?);
        cluster.down = true;
        let left = crate::process::processes_naming(cluster.state.path());
        if !left.is_empty() {
            report.note(format!("run {}: processes left after `down`: {left:?}", run + 1));
        }
    }
    let ups = Samples::from_durations(&ups);
    let downs = Samples::from_durations(&downs);
    report.add(Figure::new("up.up_s", ups.median() / 1000.0, "s").target(Target::at_most(1.0)));
    report.add(Figure::new("up.down_s", downs.median() / 1000.0, "s").target(Target::at_most(0.5)));
    report.add(Figure::new("up.up_max_s", ups.max() / 1000.0, "s"));
    report.add(Figure::new("up.down_max_s", downs.max() / 1000.0, "s"));
    Ok(())
}

/// A cluster file copy and a state dir; dropping it runs `gantry down` unless done, then kills
/// whatever still names the state dir.
struct UpCluster {
    bin: PathBuf,
    state: tempfile::TempDir,
    file: PathBuf,
    down: bool,
}

impl UpCluster {
    fn new(bin: &Path, source: &Path) -> anyhow::Result<Self> {
        let state = tempfile::Builder::new().prefix("gantry-bench-up-").tempdir()?;
        let text = std::fs::read_to_string(source).with_context(|| format!("cannot read {}", source.display()))?;
        let mut table: toml::Table = toml::from_str(&text)?;
        let base_dir = source.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let local = table.entry("local").or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let Some(local) = local.as_table_mut() {
            local.insert("api_port".into(), toml::Value::Integer(0));
            local.insert("port_base".into(), toml::Value::Integer(20_000 + i64::from(std::process::id() % 8) * 1500));
            local.insert("ports_per_agent".into(), toml::Value::Integer(100));
        }
        if let Some(workloads) = table.get_mut("workload").and_then(toml::Value::as_array_mut) {
            for workload in workloads.iter_mut().filter_map(toml::Value::as_table_mut) {
                for key in ["app", "job"] {
                    if let Some(path) = workload.get(key).and_then(toml::Value::as_str) {
                        let absolute = base_dir.join(path).canonicalize()?;
                        workload.insert(key.into(), toml::Value::String(absolute.display().to_string()));
                    }
                }
            }
        }
        let file = state.path().join("cluster.toml");
        std::fs::write(&file, toml::to_string(&table)?)?;
        Ok(Self { bin: bin.to_path_buf(), state, file, down: false })
    }

    /// Runs `gantry <verb> <file>` and returns its wall time.
    fn gantry(&self, verb: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let output = Command::new(&self.bin)
            .arg(verb)
            .arg(&self.file)
            .env("GANTRY_STATE_DIR", self.state.path().join("state"))
            .output()
            .with_context(|| format!("cannot run gantry {verb}"))?;
        let elapsed = started.elapsed();
        if !output.status.success() {
            bail!(
                "gantry {verb} failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(elapsed)
    }
}

impl Drop for UpCluster {
    fn drop(&mut self) {
        if !self.down {
            let _ = self.gantry("down");
        }
        kill_all_naming(self.state.path());
    }
}
