//! What every cloud of the `cloud` scenario shares: a lab cluster file that the `gantry` binary
//! brings up and down, and the runs themselves (up, down, the lab emptied, the baseline, the lab
//! emptied again), the same on every cloud.

use super::{Args, Run, Side};
use crate::cloud_proxy::CountingProxy;
use crate::report::progress;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a lab may take to remove the hosts of deleted instances.
pub const HOSTS_GONE_TIMEOUT: Duration = Duration::from_secs(60);

/// gantry's default `[ssh] parallelism`: how many hosts its destroy stages work on at once.
pub const SSH_PARALLELISM: usize = 50;

/// What the runs need of a cloud's lab.
pub trait CloudBench {
    /// The cluster file (its text) of run `index` of `args.instances` instances, pointed at the
    /// proxy, and the environment `gantry` runs with.
    fn cluster(&self, index: usize) -> anyhow::Result<(String, Vec<(String, String)>)>;
    /// Waits up to `timeout` until the lab has no host left; what is left otherwise.
    fn leftovers(&self, timeout: Duration) -> Option<String>;
    /// The SDK baseline of run `index`, in `dir`; the calls it made through the proxy.
    fn baseline(&self, index: usize, dir: &Path) -> anyhow::Result<Side>;
}

/// Runs `args.runs` times `gantry up`, `gantry down` and (unless `--no-baseline`) the baseline.
pub fn runs(
    args: &Args,
    bin: &Path,
    work: &Path,
    proxy: &CountingProxy,
    cloud: &impl CloudBench,
) -> anyhow::Result<Vec<Run>> {
    let n = args.instances;
    let mut runs = Vec::new();
    for index in 1..=args.runs {
        let dir = work.join(format!("run-{index}"));
        std::fs::create_dir_all(&dir)?;
        let (text, env) = cloud.cluster(index)?;
        let cluster = Cluster::new(bin, &dir, &text, env)?;
        progress(&format!("run {index}: gantry up of {n} instances"));
        proxy.take();
        let up = match cluster.run("up") {
            Ok(up) => up,
            Err(e) => {
                let _ = cluster.run("down");
                return Err(e);
            }
        };
        let up_calls = proxy.take();
        progress(&format!("run {index}: gantry down"));
        let down = cluster.run("down")?;
        let gantry = Side { create: up_calls, terminate: proxy.take() };
        if let Some(left) = cloud.leftovers(HOSTS_GONE_TIMEOUT) {
            bail!("the lab still has hosts {HOSTS_GONE_TIMEOUT:?} after `gantry down`: {left}");
        }
        let baseline = if args.no_baseline {
            None
        } else {
            progress(&format!("run {index}: the same instance calls with the SDK"));
            let baseline = cloud.baseline(index, &dir)?;
            if let Some(left) = cloud.leftovers(HOSTS_GONE_TIMEOUT) {
                bail!("the lab still has hosts {HOSTS_GONE_TIMEOUT:?} after the baseline: {left}");
            }
            Some(baseline)
        };
        runs.push(Run { up, down, gantry, baseline });
    }
    Ok(runs)
}

/// `release` or `debug`: the profile directory the binary was built into.
fn profile(bin: &Path) -> String {
    bin.parent().and_then(Path::file_name).map_or_else(|| "?".to_string(), |n| n.to_string_lossy().into_owned())
}

/// The binary's profile and size, for the scenario's first note.
pub fn binary_note(bin: &Path) -> String {
    format!("the {} binary ({} MiB)", profile(bin), std::fs::metadata(bin).map(|m| m.len() >> 20).unwrap_or(0))
}

/// A lab cluster file and the state dir of its runs.
struct Cluster {
    bin: PathBuf,
    file: PathBuf,
    state: PathBuf,
    env: Vec<(String, String)>,
}

impl Cluster {
    fn new(bin: &Path, work: &Path, text: &str, env: Vec<(String, String)>) -> anyhow::Result<Self> {
        let file = work.join("cluster.toml");
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
        Ok(Self { bin: bin.to_path_buf(), file, state: work.join("state"), env })
    }

    /// Runs `gantry VERB cluster.toml`; its wall time.
    fn run(&self, verb: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let out = Command::new(&self.bin)
            .arg(verb)
            .arg(&self.file)
            .env("GANTRY_STATE_DIR", &self.state)
            .env_remove("SSH_AUTH_SOCK")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        let elapsed = started.elapsed();
        if !out.status.success() {
            bail!(
                "gantry {verb} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(elapsed)
    }
}
