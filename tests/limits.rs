//! Every task's resource limits, for real: the agent in-process against the fake master, tasks
//! run by the `gantry executor` binary in the cgroups this host has (cgroup v1 controllers on
//! the test machines; v2 with controllers is covered by the unit tests of
//! `gantry_agent::cgroup` against a fake cgroupfs). A task over its memory limit is OOM-killed
//! and reported, a CPU-bound task is held to its quota, a fork bomb stops at the pids limit, a
//! task writing past its disk limit is killed.
//!
//! The cgroup tests need root; off root they are skipped with the reason (and fail where every
//! test must run, `GANTRY_TESTS_REQUIRE_ALL=1`). The disk test needs no cgroup and runs anywhere.

#[path = "support/fake_master.rs"]
mod fake_master;
#[path = "support/skip.rs"]
mod skip;

use fake_master::{FakeMaster, WorkDir, config, wait_for, wait_group_gone};
use gantry_agent::cgroup::TaskCgroup;
use gantry_agent::cgroup::hierarchy::Hierarchies;
use gantry_agent::cgroup::limits::{Enforcement, LIMITS_FILE, LimitKind, LimitSettings, LimitsRecord};
use gantry_agent::{AgentConfig, AgentHandle};
use gantry_api::protocol::{AgentCommand, LaunchTask};
use gantry_api::{Resources, TaskState};
use std::time::{Duration, Instant};

/// A launch of `cmd` with `resources`; built from JSON so that fields added to the protocol
/// with defaults need no change here.
fn launch(task_id: &str, cmd: &str, resources: Resources) -> AgentCommand {
    let launch: LaunchTask = serde_json::from_value(serde_json::json!({
        "task_id": task_id,
        "app_id": "limits",
        "cmd": cmd,
        "resources": resources,
        "kill_grace_period_secs": 1.0,
    }))
    .expect("a valid launch");
    AgentCommand::Launch(Box::new(launch))
}

fn kill(task_id: &str) -> AgentCommand {
    AgentCommand::Kill { task_id: task_id.to_string(), grace_period_secs: 1.0 }
}

/// Whether this host can put limits through `controllers`: root, and a hierarchy with each;
/// otherwise the test is skipped with the reason.
fn can_limit(controllers: &[&str]) -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        skip::skipped("cgroup limits need root");
        return false;
    }
    let hierarchies = Hierarchies::detect();
    if let Some(missing) = controllers.iter().find(|c| hierarchies.provider(c).is_none()) {
        skip::skipped(&format!("no cgroup hierarchy here has the `{missing}` controller"));
        return false;
    }
    true
}

/// Starts an agent with `settings` and waits for its registration.
async fn agent(master: &FakeMaster, work_dir: &WorkDir, settings: LimitSettings) -> AgentHandle {
    let config = AgentConfig { task_limits: settings, ..config(master, work_dir) };
    let agent = gantry_agent::start(config).await.expect("the agent starts");
    master.wait_registrations(1).await;
    agent
}

/// What the executor recorded about the task's limits.
fn record(work_dir: &WorkDir, task_id: &str) -> LimitsRecord {
    let path = work_dir.sandbox(task_id).join(LIMITS_FILE);
    gantry_agent::sandbox::read_json(&path).expect("a readable limits.json").expect("limits.json exists")
}

fn enforcement(record: &LimitsRecord, kind: LimitKind) -> Enforcement {
    let limit = record.limits.iter().find(|l| l.kind == kind);
    limit.map(|l| l.enforcement.clone()).unwrap_or_else(|| panic!("{kind} is not in {record:?}"))
}

async fn wait_removed(cgroups: &[std::path::PathBuf]) {
    wait_for("the task's cgroups to be removed", || cgroups.iter().all(|d| !d.exists()).then_some(())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_over_its_memory_limit_is_oom_killed_and_reported() {
    if !can_limit(&["memory"]) {
        return;
    }
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let agent = agent(&master, &work_dir, LimitSettings::default()).await;
    // bytes * n fills every page: ~100 MiB of memory actually used.
    let hog = r#"exec python3 -c "import time; data = b'x' * (100 << 20); time.sleep(1000)""#;
    master.send(launch("hog.1", hog, Resources::scalar(0.0, 32.0, 0.0, 0)));
    let failed = master.wait_state("hog.1", TaskState::Failed).await;
    assert_eq!(failed.message.as_deref(), Some("out of memory (limit 32 MiB)"), "{failed:?}");
    let record = record(&work_dir, "hog.1");
    assert!(!matches!(enforcement(&record, LimitKind::Mem), Enforcement::NotEnforced { .. }), "{record:?}");
    wait_removed(&record.cgroups).await;
    agent.shutdown().await;
}

/// Measures the task's CPU share over windows of 2 s (the measured interval is the only wait).
/// Every window must stay at most 20 % above the quota; one at least (of up to 10) must reach
/// 80 % of it — not every one, as a busy test machine may leave the task less than its quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_bound_task_is_held_to_its_quota() {
    if !can_limit(&["cpu"]) {
        return;
    }
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let agent = agent(&master, &work_dir, LimitSettings::default()).await;
    master.send(launch("spin.1", "while :; do :; done", Resources::scalar(0.5, 0.0, 0.0, 0)));
    master.wait_state("spin.1", TaskState::Running).await;
    let record = record(&work_dir, "spin.1");
    assert!(!matches!(enforcement(&record, LimitKind::Cpus), Enforcement::NotEnforced { .. }), "{record:?}");
    let cgroup = TaskCgroup::from_sandbox(&work_dir.sandbox("spin.1")).expect("the task's cgroups are recorded");
    let usage = || cgroup.cpu_usage().expect("the task's cgroup accounts its CPU time");
    let mut shares = Vec::new();
    for _ in 0..10 {
        let (used, start) = (usage(), Instant::now());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let share = (usage() - used).as_secs_f64() / start.elapsed().as_secs_f64();
        shares.push(share);
        if (0.4..=0.6).contains(&share) {
            break;
        }
    }
    assert!(shares.iter().all(|&s| s <= 0.6), "the task used more than its 0.5 cpus: {shares:?}");
    assert!(shares.iter().any(|&s| s >= 0.4), "the task never got near its 0.5 cpus: {shares:?}");
    master.send(kill("spin.1"));
    master.wait_state("spin.1", TaskState::Killed).await;
    wait_removed(&record.cgroups).await;
    agent.shutdown().await;
}

/// Every process tries to fork; children and grandchildren too (at most ~320 processes without
/// a limit, so a broken limit cannot take the machine down).
const FORK_BOMB: &str = r#"exec python3 -c '
import os, time
failed = 0
for _ in range(40):
    try:
        pid = os.fork()
    except OSError:
        failed += 1
        continue
    if pid == 0:
        for _ in range(3):
            try:
                os.fork()
            except OSError:
                pass
        time.sleep(1000)
        os._exit(0)
open("forks_failed", "w").write(str(failed))
time.sleep(1000)
'"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_stops_at_the_pids_limit_and_can_still_be_killed() {
    if !can_limit(&["pids"]) {
        return;
    }
    const LIMIT: u64 = 16;
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let settings = LimitSettings { pids_per_task: Some(LIMIT), ..LimitSettings::default() };
    let agent = agent(&master, &work_dir, settings).await;
    master.send(launch("bomb.1", FORK_BOMB, Resources::default()));
    master.wait_state("bomb.1", TaskState::Running).await;
    let sandbox = work_dir.sandbox("bomb.1");
    let record = record(&work_dir, "bomb.1");
    assert!(!matches!(enforcement(&record, LimitKind::Pids), Enforcement::NotEnforced { .. }), "{record:?}");
    let cgroup = TaskCgroup::from_sandbox(&sandbox).expect("the task's cgroups are recorded");
    let current = || cgroup.read("pids.current").and_then(|t| t.trim().parse::<u64>().ok()).unwrap_or(0);
    let mut peak = 0;
    let failed: u64 = wait_for("the bomb to be done forking", || {
        peak = peak.max(current());
        std::fs::read_to_string(sandbox.join("forks_failed")).ok().and_then(|t| t.trim().parse().ok())
    })
    .await;
    peak = peak.max(current());
    assert!(peak > 1 && peak <= LIMIT, "pids.current peaked at {peak} with a limit of {LIMIT}");
    assert!(failed > 0, "the bomb's forks never failed");
    let events = cgroup.read("pids.events").unwrap_or_default();
    let refused: u64 = events.lines().find_map(|l| l.strip_prefix("max ")?.trim().parse().ok()).unwrap_or(0);
    assert!(refused > 0, "the kernel counted no refused fork: {events:?}");

    let info = work_dir.executor_info("bomb.1");
    master.send(kill("bomb.1"));
    master.wait_state("bomb.1", TaskState::Killed).await;
    wait_removed(&record.cgroups).await;
    wait_group_gone(info.task_pgid).await;
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_writing_past_its_disk_limit_is_killed() {
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let settings = LimitSettings { disk_check_interval: Duration::from_millis(100), ..LimitSettings::default() };
    let agent = agent(&master, &work_dir, settings).await;
    let fill = "dd if=/dev/zero of=big bs=1M count=30 2>/dev/null; exec sleep 1000";
    master.send(launch("fill.1", fill, Resources::scalar(0.0, 0.0, 10.0, 0)));
    let failed = master.wait_state("fill.1", TaskState::Failed).await;
    let message = failed.message.unwrap_or_default();
    assert!(message.starts_with("disk usage ") && message.ends_with(" exceeds its limit of 10 MiB"), "{message}");
    let record = record(&work_dir, "fill.1");
    assert_eq!(enforcement(&record, LimitKind::Disk), Enforcement::DiskWatch { interval_ms: 100 });
    agent.shutdown().await;
}

/// Without cgroup v2 (whose `cgroup.kill` this host uses), a task's processes are killed through
/// the v1 freezer: also one that left the task's process group.
#[test]
fn without_cgroup_v2_the_freezer_kills_every_process() {
    if !can_limit(&["freezer"]) {
        return;
    }
    use std::io::Write;
    let mut hierarchies = Hierarchies::detect();
    hierarchies.v2 = None;
    let task_id = format!("freezer-probe-{}", std::process::id());
    let (cgroup, _) = TaskCgroup::create_in(&hierarchies, &task_id, &Default::default()).expect("a v1 cgroup");
    assert!(cgroup.dirs().iter().any(|d| d.join("freezer.state").exists()), "{:?}", cgroup.dirs());
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "read go; setsid sleep 1000 & exec sleep 1000"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("a shell");
    for dir in cgroup.dirs() {
        std::fs::write(dir.join("cgroup.procs"), child.id().to_string()).expect("the shell joins");
    }
    child.stdin.take().expect("stdin").write_all(b"go\n").expect("go");
    let members = |cgroup: &TaskCgroup| cgroup.pids().len();
    for _ in 0..1000 {
        if members(&cgroup) >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(members(&cgroup), 2, "the shell's sleep and the daemon's");
    assert!(cgroup.kill_and_remove(Duration::from_secs(10)), "the cgroup is emptied and removed");
    let status = child.wait().expect("the shell is reaped");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "{status:?}");
}

/// Builds the fake NVML of `runtime/agent/tests/fake_nvml` reporting two GPUs, or `None`
/// (skipped) without gcc.
fn fake_nvml_with_two_gpus(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime/agent/tests/fake_nvml/fake_nvml.c");
    let library = dir.join("libnvidia-ml.so.1");
    let output = match std::process::Command::new("gcc")
        .args(["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-DFAKE_NVML_DEFAULT_GPUS=\"2\"", "-o"])
        .arg(&library)
        .arg(&source)
        .output()
    {
        Ok(output) => output,
        Err(error) => {
            skip::skipped(&format!("cannot run gcc to build the fake NVML ({error}); install gcc"));
            return None;
        }
    };
    assert!(output.status.success(), "gcc failed: {}", String::from_utf8_lossy(&output.stderr));
    Some(library)
}

/// A task holding one of the agent's two (fake) GPUs gets its uuid in the env and can open its
/// device node but not the other GPU's; a task without GPUs can open neither. The nodes are real
/// character devices (major 195, NVIDIA's) with no driver behind them: an allowed open fails
/// with "No such device or address", a denied one with "Operation not permitted" from the
/// devices cgroup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_opens_only_the_gpus_it_was_given() {
    if !can_limit(&["devices"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(library) = fake_nvml_with_two_gpus(dir.path()) else { return };
    let dev_root = dir.path().join("dev");
    std::fs::create_dir(&dev_root).expect("dev dir");
    for dir in [dir.path(), dev_root.as_path()] {
        // The tasks run as `nobody`: they must reach the nodes.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    }
    for minor in 0..2 {
        let node = dev_root.join(format!("nvidia{minor}"));
        let device = nix::sys::stat::makedev(195, minor);
        nix::sys::stat::mknod(
            &node,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            device,
        )
        .expect("mknod");
    }

    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let gpus = gantry_agent::gpu::GpuSettings { nvml_library: Some(library), dev_root: dev_root.clone() };
    let agent = gantry_agent::start(AgentConfig { gpus, ..config(&master, &work_dir) }).await.expect("agent");
    let registration = master.wait_registrations(1).await;
    assert_eq!(registration.info.resources.gpus, 2, "the agent offers the fake's GPUs");

    let probe = format!(
        "echo \"visible=$NVIDIA_VISIBLE_DEVICES\"; for n in 0 1; do (: < {}/nvidia$n) 2>&1 | sed \"s/.*: /nvidia$n: /\"; done",
        dev_root.display()
    );
    master.send(launch("gpu.1", &probe, Resources::scalar(0.1, 32.0, 0.0, 1)));
    master.send(launch("nogpu.1", &probe, Resources::scalar(0.1, 32.0, 0.0, 0)));
    for task in ["gpu.1", "nogpu.1"] {
        let end = master.wait_state(task, TaskState::Finished).await;
        assert_eq!(end.exit_code, Some(0), "{task}: {end:?}");
    }
    let stdout = |task: &str| std::fs::read_to_string(work_dir.sandbox(task).join("stdout")).unwrap_or_default();
    assert_eq!(
        stdout("gpu.1"),
        "visible=GPU-fa4e0000-0000-4000-8000-000000000000\n\
         nvidia0: No such device or address\nnvidia1: Operation not permitted\n",
        "the task reaches its GPU (no driver answers) and is refused the other"
    );
    assert_eq!(
        stdout("nogpu.1"),
        "visible=void\nnvidia0: Operation not permitted\nnvidia1: Operation not permitted\n",
        "a task without GPUs reaches none"
    );
    let record = record(&work_dir, "gpu.1");
    assert_eq!(enforcement(&record, LimitKind::Devices), Enforcement::CgroupV1 { files: vec!["devices.deny".into()] });
    let running = master.updates("gpu.1").into_iter().find(|u| u.state == TaskState::Running).expect("RUNNING");
    assert!(
        running.limits.iter().any(|l| l == "devices deny c 195:1 rwm: cgroup v1 (devices.deny)"),
        "task show lists the denial: {:?}",
        running.limits
    );
    agent.shutdown().await;
}

/// `gantry agent --cgroup-favordynmods` remounts the host's cgroup2 hierarchy with the option and
/// keeps its other options and flags; a second call finds it on. The test puts the mount back
/// as it found it.
#[test]
fn favordynmods_is_set_on_the_cgroup2_mount_keeping_its_other_options() {
    use gantry_agent::cgroup::dynmods::{Dynmods, favor_dynmods};
    if !nix::unistd::Uid::effective().is_root() {
        skip::skipped("remounting cgroup2 needs root");
        return;
    }
    let cgroup2 = || {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        mountinfo.lines().find(|l| l.contains(" - cgroup2 ")).map(|l| {
            let (left, right) = l.split_once(" - ").expect("a mountinfo line");
            let left: Vec<String> = left.split_whitespace().map(str::to_string).collect();
            let right: Vec<String> = right.split_whitespace().map(str::to_string).collect();
            (left[4].clone(), left[5].clone(), right[2].clone())
        })
    };
    let Some((target, flags, options)) = cgroup2() else {
        skip::skipped("no cgroup2 hierarchy is mounted");
        return;
    };
    let was_on = options.split(',').any(|o| o == "favordynmods");
    let done = favor_dynmods().expect("favordynmods is set");
    let (_, flags_after, options_after) = cgroup2().expect("still mounted");
    if !was_on {
        // Put it back first, whatever the assertions say.
        // mount(8) given "none" sets exactly these: the mount's flags and the hierarchy's options.
        let original: Vec<&str> = flags.split(',').chain(options.split(',').filter(|o| *o != "rw")).collect();
        let status = std::process::Command::new("mount")
            .args(["-t", "cgroup2", "-o", &format!("remount,{}", original.join(",")), "none", &target])
            .status()
            .expect("run mount");
        assert!(status.success(), "putting {target} back");
        assert_eq!(cgroup2().map(|(_, _, o)| o), Some(options.clone()), "the mount is as it was");
    }
    assert_eq!(flags_after, flags, "the mount's flags are kept");
    assert_eq!(options_after, if was_on { options.clone() } else { format!("{options},favordynmods") });
    let expected = if was_on { Dynmods::AlreadyOn(target.clone().into()) } else { Dynmods::TurnedOn(target.into()) };
    assert_eq!(done, expected);
}
