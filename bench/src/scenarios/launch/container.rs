//! `launch --container`: container tasks from a real registry on loopback (Debian's
//! `docker-registry`, started by the lab with images it builds from Debian's busybox-static).
//!
//! 1. First pull: one run of a job whose image is busybox plus a layer of `--pull-bytes` random
//!    bytes, on agents with empty caches. Besides submit → RUNNING, the pull is timed on the
//!    agent: it starts when the agent wrote `task.json`; the download (with digest check) ends
//!    at the modification time of the large layer's blob in the agent's store (polled while it
//!    exists), its fsync when the blob appears there, the unpack when the image's record is
//!    written. The baseline is `curl` fetching the same blobs from the same registry in the same
//!    run (to /dev/null, sequentially on one connection, the median of 3).
//! 2. Cached: warm-up runs of the busybox image (not counted) until every agent has it or runs
//!    keep landing on agents that have it; a later run on an agent without it is left out. Then
//!    `--tasks` runs of a job from it alternate with as many runs of the same command as a
//!    process task, the baseline.

use super::Args;
use super::breakdown::Breakdown;
use super::pull::{BlobWatch, PullMarks, curl_median, hex};
use super::runs::Launcher;
use crate::cluster::LocalCluster;
use crate::report::{Figure, Report, Target, progress};
use crate::stats::Samples;
use anyhow::{Context, bail};
use gantry_lab::registry::{PushedImage, RegistryOptions, TestImage, TestRegistry};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

const AGENTS: usize = 3;
const PULL_JOB: &str = "bench-pull";
const CONTAINER_JOB: &str = "bench-container";
const PROCESS_JOB: &str = "bench-process";
/// Warm-up ends when every agent has the image, or this many runs in a row landed on agents
/// that had it (the allocator may keep placing one-off runs on the same agents)...
const WARM_STREAK: usize = 5;
/// ... or after this many runs.
const MAX_WARM_UP: usize = 30;

/// Runs `launch --container`.
pub fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("launch --container needs root: the agents mount overlays and make namespaces; run it as root");
    }
    if let Some(reason) = TestRegistry::missing() {
        bail!("launch --container needs a registry: {reason}");
    }
    let bin = crate::binary::gantry()?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        let registry = TestRegistry::start(RegistryOptions::default())?;
        progress(&format!("building and pushing busybox and busybox + {} random bytes", args.pull_bytes));
        TestImage::busybox()?.push(&registry, "team/busybox:1").await.context("pushing the busybox image")?;
        let large = TestImage::busybox_with_random(args.pull_bytes)?
            .push(&registry, "team/large:1")
            .await
            .context("pushing the large image")?;
        let curl = curl_median(&registry, "team/large", &large, 3);
        let cluster = LocalCluster::start(&bin, AGENTS).await?;
        report.note(format!(
            "gantry binary {} ({} build), master + {AGENTS} agents; {}",
            bin.display(),
            profile(&bin),
            super::work_dir_note(cluster.dir.path())
        ));
        for (id, image) in [(PULL_JOB, "team/large:1"), (CONTAINER_JOB, "team/busybox:1")] {
            create_job(&cluster, id, &args.cmd, Some(format!("{}/{image}", registry.address()))).await?;
        }
        create_job(&cluster, PROCESS_JOB, &args.cmd, None).await?;
        let mut launcher = Launcher::new(&cluster, AGENTS).await?;
        first_pull(&mut launcher, &cluster, &large, curl, report).await?;
        cached(&mut launcher, args, report).await?;
        launcher.wait_all_ended().await;
        Ok(())
    })
}

/// A one-off job running `/bin/sh -c cmd`, in a container from `image` when given.
async fn create_job(cluster: &LocalCluster, id: &str, cmd: &str, image: Option<String>) -> anyhow::Result<()> {
    let mut run = serde_json::json!({ "cpus": 0.1, "mem": 32 });
    match image {
        Some(image) => run["container"] = serde_json::json!({ "image": image, "cmd": ["/bin/sh", "-c", cmd] }),
        None => run["cmd"] = cmd.into(),
    }
    let definition = serde_json::from_value(serde_json::json!({ "id": id, "run": run }))?;
    cluster.client.create_job(&definition).await.with_context(|| format!("creating job {id}"))?;
    Ok(())
}

/// Part 1: one run of the large image on cold caches.
async fn first_pull(
    launcher: &mut Launcher<'_>,
    cluster: &LocalCluster,
    large: &PushedImage,
    curl: Option<(u64, f64)>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let layer = large.layer_digests.last().context("the large image has no layer")?;
    let blobs: Vec<PathBuf> = (0..AGENTS)
        .map(|i| cluster.dir.path().join(format!("agent-{i}")).join("images/blobs/sha256").join(hex(layer)))
        .collect();
    progress("first pull");
    let watch = BlobWatch::start(blobs);
    let launched = launcher.launch(PULL_JOB).await?;
    let blob = watch.finish();
    let bytes: u64 = large.layer_sizes.iter().map(|s| *s as u64).sum::<u64>() + large.manifest_size as u64;
    report.note(format!(
        "first pull: {:.1} MB in {} layers (busybox + random) on an empty cache; MB = 10^6 bytes",
        bytes as f64 / 1e6,
        large.layer_digests.len()
    ));
    report.add(Figure::new("launch.container_first_pull_submit_to_running_ms", ms(launched.latency), "ms"));
    let curl_rate = curl.map(|(b, s)| b as f64 / 1e6 / s);
    let marks = PullMarks::read(launcher.work_dir(&launched.agent_id)?, &launched, large, blob);
    let rate = |span: Option<Duration>| span.map(|d| bytes as f64 / 1e6 / d.as_secs_f64());
    let with_curl = |figure: Figure| match curl_rate {
        Some(curl) => figure.baseline(curl),
        None => figure,
    };
    if let Some(download) = rate(marks.download()) {
        report.add(with_curl(Figure::new("launch.container_pull_download_mb_per_s", download, "MB/s")));
    }
    if let Some(sync) = marks.span(marks.downloaded, marks.appeared) {
        report.add(Figure::new("launch.container_pull_blob_sync_ms", ms(sync), "ms"));
    }
    if let Some(unpack) = marks.span(marks.appeared, marks.recorded) {
        report.add(Figure::new("launch.container_pull_unpack_ms", ms(unpack), "ms"));
    }
    if let Some(pull) = rate(marks.span(marks.started, marks.recorded)) {
        report.add(with_curl(Figure::new("launch.container_pull_mb_per_s", pull, "MB/s")));
    }
    if curl_rate.is_none() {
        report.note("no curl baseline (curl missing or failing; see stderr)");
    }
    report.note(
        "pull spans on the agent: download = task.json written → the layer blob's last write (manifest, config and \
         both layers, digests checked); blob_sync = its fsync and rename; unpack = until the image record; \
         pull_mb_per_s = task.json → image record",
    );
    Ok(())
}

/// Part 2: warm every agent, then alternate container and process runs.
async fn cached(launcher: &mut Launcher<'_>, args: &Args, report: &mut Report) -> anyhow::Result<()> {
    progress("warming the agents' caches");
    let mut warm = HashSet::new();
    let (mut warm_ups, mut streak) = (0, 0);
    while warm.len() < AGENTS && streak < WARM_STREAK && warm_ups < MAX_WARM_UP {
        streak = if warm.insert(launcher.launch(CONTAINER_JOB).await?.agent_id) { 0 } else { streak + 1 };
        warm_ups += 1;
    }
    progress(&format!("{} container launches alternating with {} process launches", args.tasks, args.tasks));
    let (mut containers, mut processes, mut stages) = (Vec::new(), Vec::new(), Breakdown::default());
    let warmed = warm.len();
    let mut cold = 0;
    for _ in 0..args.tasks {
        let launched = launcher.launch(CONTAINER_JOB).await?;
        if warm.insert(launched.agent_id.clone()) {
            cold += 1;
        } else {
            stages.add(&launched);
            containers.push(launched.latency);
        }
        processes.push(launcher.launch(PROCESS_JOB).await?.latency);
    }
    report.note(format!(
        "cached: {} runs of a busybox container `/bin/sh -c {}` after {warm_ups} warm-up runs (the image \
         cached on {warmed} of {AGENTS} agents; {cold} runs placed on an agent without it left out), \
         alternating with as many process runs of the same command (the baseline)",
        containers.len(),
        args.cmd
    ));
    let (containers, processes) = (Samples::from_durations(&containers), Samples::from_durations(&processes));
    report.add(
        Figure::new("launch.container_cached_p50_ms", containers.median(), "ms")
            .target(Target::at_most(150.0))
            .baseline(processes.median()),
    );
    report.add(
        Figure::new("launch.container_cached_p99_ms", containers.percentile(99.0), "ms")
            .baseline(processes.percentile(99.0)),
    );
    report.add(Figure::new("launch.container_cached_max_ms", containers.max(), "ms"));
    stages.report("launch.container", report);
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `debug` or `release`: the profile dir the binary was built into.
pub fn profile(bin: &Path) -> String {
    bin.parent().and_then(Path::file_name).map_or_else(|| "unknown".into(), |n| n.to_string_lossy().into_owned())
}
