//! `launch`: submit → running latency of short tasks on a local cluster (master + 3 agents,
//! see [`crate::cluster`]). Each task is a run of a one-off job (`POST /api/v1/jobs/{id}/runs`),
//! submitted one after another; its latency runs from sending the request to receiving the
//! task's RUNNING event on the master's event stream. The baseline is a raw fork+exec of the
//! same command in the same run (`Command::spawn`, which returns once `exec` succeeded).
//!
//! Where the time goes is read from each task's sandbox ([`breakdown`]): the files the agent and
//! the executor write on the way to RUNNING, by their modification times.
//!
//! `--container` runs the tasks from an image instead ([`container`]): the first pull of a large
//! image from a loopback registry, then launches with the image cached.

mod breakdown;
mod container;
mod pull;
mod runs;

use crate::cluster::LocalCluster;
use crate::report::{Figure, Report, Target, progress};
use crate::stats::Samples;
use breakdown::Breakdown;
use runs::Launcher;
use std::time::Instant;

/// Options of `launch`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Tasks to launch.
    #[arg(long, default_value_t = 500)]
    pub tasks: usize,
    /// The task's shell command.
    #[arg(long, default_value = "sleep 0.5")]
    pub cmd: String,
    /// Run the tasks in containers (root, Debian's docker-registry): the first pull of a large
    /// image, then `--tasks` launches from a cached busybox image.
    #[arg(long)]
    pub container: bool,
    /// With `--container`: bytes of random data in the large image's top layer.
    #[arg(long, default_value_t = 50_000_000)]
    pub pull_bytes: usize,
}

const JOB: &str = "bench-launch";

/// Runs the scenario.
pub fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    if args.container {
        return container::run(args, report);
    }
    let bin = crate::binary::gantry()?;
    let baseline = fork_exec(&args.cmd, args.tasks)?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        let cluster = LocalCluster::start(&bin, 3).await?;
        report.note(format!(
            "{} runs of a job `{}`, one after another, on master + 3 agents; gantry binary {} ({} build); {}; {}",
            args.tasks,
            args.cmd,
            bin.display(),
            container::profile(&bin),
            favordynmods(),
            work_dir_note(cluster.dir.path())
        ));
        let definition = serde_json::from_value(
            serde_json::json!({ "id": JOB, "run": { "cmd": args.cmd, "cpus": 0.1, "mem": 32 } }),
        )?;
        cluster.client.create_job(&definition).await?;
        let mut launcher = Launcher::new(&cluster, 3).await?;
        let mut latencies = Vec::with_capacity(args.tasks);
        let mut staged = Vec::with_capacity(args.tasks);
        let mut on_agent = Vec::with_capacity(args.tasks);
        let mut stages = Breakdown::default();
        progress(&format!("{} launches", args.tasks));
        for _ in 0..args.tasks {
            let launched = launcher.launch(JOB).await?;
            latencies.push(launched.latency);
            if let Some(staging) = launched.staged {
                staged.push(staging);
                on_agent.push(launched.latency - staging);
            }
            stages.add(&launched);
        }
        let samples = Samples::from_durations(&latencies);
        report.add(
            Figure::new("launch.p50_ms", samples.median(), "ms")
                .target(Target::at_most(10.0))
                .baseline(baseline.median()),
        );
        report.add(
            Figure::new("launch.p99_ms", samples.percentile(99.0), "ms")
                .target(Target::at_most(50.0))
                .baseline(baseline.percentile(99.0)),
        );
        report.add(Figure::new("launch.max_ms", samples.max(), "ms"));
        // Where the time goes: submit → STAGING is the master (run stored, allocator woken,
        // offers, launch stored); STAGING → RUNNING is the agent, its executor and the status update.
        let staged = Samples::from_durations(&staged);
        report.add(Figure::new("launch.submit_to_staging_p50_ms", staged.median(), "ms"));
        let on_agent = Samples::from_durations(&on_agent);
        report.add(Figure::new("launch.staging_to_running_p50_ms", on_agent.median(), "ms"));
        stages.report("launch", report);
        launcher.wait_all_ended().await;
        Ok(())
    })
}

/// Spawn latencies of `n` raw `/bin/sh -c cmd` processes (reaped afterwards).
fn fork_exec(cmd: &str, n: usize) -> anyhow::Result<Samples> {
    let mut children = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let child = std::process::Command::new("/bin/sh").args(["-c", cmd]).spawn()?;
        times.push(started.elapsed());
        children.push(crate::process::ChildGuard::new(child));
    }
    for mut child in children {
        if let Some(mut inner) = child.0.take() {
            let _ = inner.wait();
        }
    }
    Ok(Samples::from_durations(&times))
}

/// Where the cluster's data and sandboxes are, on which file system. Each launch creates a dozen
/// files and each ended task's sandbox is removed: on ext4, creating a file next to many files
/// deleted in the last half minute scans past them (`recently_deleted`), so a run slows as it
/// goes, and a directory such as a busy /tmp starts slow. Comparing builds is fairest with
/// `TMPDIR` on a tmpfs (no such scan; fsync free), absolute figures with it on the hosts' disk.
pub fn work_dir_note(dir: &std::path::Path) -> String {
    let kind = match file_system_magic(dir) {
        Some(0xEF53) => "ext4",
        Some(0x0102_1994) => "tmpfs",
        Some(0x5846_5342) => "xfs",
        Some(0x9123_683E) => "btrfs",
        Some(0x794C_7630) => "overlayfs",
        Some(_) => "another file system",
        None => "an unknown file system",
    };
    format!("work dirs under {} ({kind}; TMPDIR moves them)", dir.display())
}

fn file_system_magic(dir: &std::path::Path) -> Option<i64> {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs writes into the zeroed struct we own; `path` is a valid C string.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statfs(path.as_ptr(), &mut stat) } == 0).then_some(stat.f_type as i64)
}

/// Whether this host's cgroup2 mount has `favordynmods`, which decides whether a task's joining
/// its cgroups waits for an RCU grace period (see `gantry agent --cgroup-favordynmods`).
pub fn favordynmods() -> &'static str {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    match mountinfo.lines().find(|l| l.contains(" - cgroup2 ")) {
        None => "no cgroup2 mount",
        Some(line) if line.split_whitespace().last().is_some_and(|o| o.split(',').any(|o| o == "favordynmods")) => {
            "cgroup2 mounted with favordynmods (joining a cgroup does not wait for an RCU grace period)"
        }
        Some(_) => {
            "cgroup2 mounted without favordynmods (each task's joining its cgroups waits for an RCU grace period)"
        }
    }
}
