//! `cloud --provider aws`: the AWS lab (`gantry_lab::cloud::aws`: moto on loopback, a test host
//! for every running instance), `gantry up` and `gantry down` of a lab cluster file through the
//! counting proxy, then the SDK baseline ([`super::aws_baseline`]) through the same proxy.
//!
//! The lab's own watcher polls moto directly, so its calls are not counted.

use super::{Args, Run, Side, add_figures, aws_baseline};
use crate::cloud_proxy::CountingProxy;
use crate::report::{Report, progress};
use anyhow::{Context, bail};
use gantry_lab::cloud::aws::{AwsLab, AwsLabError};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the lab may take to remove the hosts of terminated instances.
const HOSTS_GONE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the scenario on the AWS lab.
pub fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let n = args.instances;
    let bin = crate::binary::gantry()?;
    // The proxy is served by this runtime's workers while the main thread waits for `gantry`.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let work = tempfile::Builder::new().prefix("gantry-bench-cloud-").tempdir()?;
    progress("starting the AWS lab (moto and its watcher)");
    let lab = AwsLab::start(&work.path().join("lab")).map_err(|e| match e {
        AwsLabError::Lab(e) => anyhow::anyhow!("cloud --provider aws needs the lab's test hosts: {e}"),
        e => anyhow::anyhow!("cloud --provider aws cannot start the AWS lab: {e}"),
    })?;
    let proxy = runtime.block_on(CountingProxy::start(lab.endpoint_url()))?;
    report.note(format!(
        "`gantry up` and `gantry down` of 1 master + {} agents on the AWS lab (moto {} on loopback, every instance a \
         test host) with the {} binary ({} MiB), [aws] max_parallel_creates = {}; EC2 calls counted by a proxy in \
         front of moto; {} runs in one lab, medians reported",
        n - 1,
        gantry_lab::cloud::aws::MOTO_VERSION,
        profile(&bin),
        std::fs::metadata(&bin).map(|m| m.len() >> 20).unwrap_or(0),
        args.max_parallel_creates,
        args.runs
    ));
    let prefix = format!("cloud.aws.instances_{n}");
    let mut runs = Vec::new();
    for index in 1..=args.runs {
        let dir = work.path().join(format!("run-{index}"));
        std::fs::create_dir_all(&dir)?;
        let cluster = Cluster::new(&bin, &lab, &proxy, &dir, n, args.max_parallel_creates)?;
        progress(&format!("run {index}: gantry up of {n} instances"));
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
        if lab.wait_for(HOSTS_GONE_TIMEOUT, |hosts| hosts.is_empty().then_some(())).is_none() {
            bail!("the lab still has hosts {HOSTS_GONE_TIMEOUT:?} after `gantry down`: {:?}", lab.instances());
        }
        let baseline = if args.no_baseline {
            None
        } else {
            progress(&format!("run {index}: the same instance calls with the SDK"));
            let settings = aws_baseline::Settings {
                name: format!("bench-{}-{index}", lab.prefix()),
                instances: n,
                max_parallel_creates: args.max_parallel_creates,
                max_parallel_destroys: SSH_PARALLELISM,
            };
            let baseline = runtime.block_on(aws_baseline::run(&lab, &proxy, &dir, &settings))?;
            if lab.wait_for(HOSTS_GONE_TIMEOUT, |hosts| hosts.is_empty().then_some(())).is_none() {
                bail!("the lab still has hosts {HOSTS_GONE_TIMEOUT:?} after the baseline: {:?}", lab.instances());
            }
            Some(baseline)
        };
        runs.push(Run { up, down, gantry, baseline });
    }
    add_figures(report, &prefix, &runs);
    if let Some(path) = &args.calls_file {
        super::write_calls(path, &runs)?;
        report.note(format!("every EC2 call: {}", path.display()));
    }
    report.note(
        "create_s: first RunInstances sent to the last DescribeInstances that saw the last instance running \
         (both sides hold a create slot until the instance accepts SSH, as gantry's create does); terminate_s: \
         time during which some instance was between its TerminateInstances and the DescribeInstances that saw \
         it terminated (gantry stops services over SSH between terminates); ec2_ratio: the median over the runs of \
         gantry's (create_s + terminate_s) / the same run's baseline's (the ratio on the ec2_s line compares the \
         medians instead); the baseline polls on gantry's schedule (100 ms doubling to 2 s)",
    );
    Ok(())
}

/// gantry's default `[ssh] parallelism`: how many hosts its destroy stages work on at once.
const SSH_PARALLELISM: usize = 50;

/// `release` or `debug`: the profile directory the binary was built into.
fn profile(bin: &Path) -> String {
    bin.parent().and_then(Path::file_name).map_or_else(|| "?".to_string(), |n| n.to_string_lossy().into_owned())
}

/// A lab cluster file and the state dir of its runs.
struct Cluster {
    bin: PathBuf,
    file: PathBuf,
    state: PathBuf,
    env: Vec<(String, String)>,
}

impl Cluster {
    fn new(
        bin: &Path,
        lab: &AwsLab,
        proxy: &CountingProxy,
        work: &Path,
        n: usize,
        max_parallel_creates: usize,
    ) -> anyhow::Result<Self> {
        let file = work.join("cluster.toml");
        let image = "{ owner = \"amazon\", name = \"al2023-ami-2023.*-x86_64\" }";
        let text = format!(
            "version = 1\n[cluster]\nname = \"bench-{prefix}\"\nprovider = \"aws\"\n\n\
             [ssh]\nuser = \"root\"\nconnect_timeout = \"3s\"\n\n\
             [aws]\nregion = \"{region}\"\nvpc_cidr = \"{cidr}\"\nconnect_via = \"private\"\n\
             ssh_cidrs = [\"{cidr}\"]\napi_cidrs = [\"{cidr}\"]\nmax_parallel_creates = {max_parallel_creates}\n\n\
             [[pool]]\nname = \"masters\"\nrole = \"master\"\ncount = 1\ninstance_type = \"{master_type}\"\n\
             image = {image}\n\n\
             [[pool]]\nname = \"workers\"\ncount = {workers}\ninstance_type = \"{worker_type}\"\nimage = {image}\n",
            prefix = lab.prefix(),
            region = lab.region(),
            cidr = lab.cidr(),
            master_type = aws_baseline::MASTER_TYPE,
            worker_type = aws_baseline::WORKER_TYPE,
            workers = n - 1,
        );
        std::fs::write(&file, text)?;
        let mut env = lab.env();
        for (key, value) in &mut env {
            if key == "AWS_ENDPOINT_URL" {
                *value = proxy.url().to_string();
            }
        }
        env.push(("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()));
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
