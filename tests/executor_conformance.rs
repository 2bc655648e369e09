//! The executor conformance suite: the same task scenarios — environment and ports, logs, exit
//! codes, kill with grace, a task that ignores SIGTERM, recovery across an agent restart, health
//! checks, the memory limit — run against both executors of a real agent (in-process, against
//! the fake master): the process executor (a command on the host) and the container executor (the
//! same command in a busybox image pulled from a real registry). Every scenario's command is the
//! same shell text in both, with busybox's applets, which the host has too (busybox-static).
//!
//! The container half needs root and docker-registry; the process half runs anywhere. Skipped
//! with the reason otherwise, failed where every test must run (`GANTRY_TESTS_REQUIRE_ALL=1`).

#[path = "support/fake_master.rs"]
mod fake_master;
#[path = "support/skip.rs"]
mod skip;

use fake_master::{FakeMaster, WorkDir, start, wait_for};
use gantry_agent::AgentHandle;
use gantry_api::TaskState;
use gantry_api::protocol::{AgentCommand, LaunchTask, StatusUpdate};
use gantry_lab::registry::{RegistryOptions, TestImage, TestRegistry};
use std::time::Duration;

/// Which executor a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Process,
    Container,
}

/// A running agent with, for containers, a registry holding the busybox image.
struct Harness {
    kind: Kind,
    master: FakeMaster,
    work_dir: WorkDir,
    agent: Option<AgentHandle>,
    image: Option<String>,
    _registry: Option<TestRegistry>,
}

impl Harness {
    /// `None` (after printing why) when `kind` cannot be tested here.
    async fn start(kind: Kind) -> Option<Harness> {
        if !std::path::Path::new("/bin/busybox").is_file() {
            skip::skipped("/bin/busybox is missing (Debian package busybox-static)");
            return None;
        }
        let (registry, image) = match kind {
            Kind::Process => (None, None),
            Kind::Container => {
                let missing = if nix::unistd::Uid::effective().is_root() {
                    TestRegistry::missing()
                } else {
                    Some("containers need root (mounts, namespaces)".to_string())
                };
                if let Some(reason) = missing {
                    skip::skipped(&reason);
                    return None;
                }
                let registry = TestRegistry::start(RegistryOptions::default()).expect("registry");
                TestImage::busybox().expect("busybox").push(&registry, "conformance/busybox:1").await.expect("push");
                let image = format!("{}/conformance/busybox:1", registry.address());
                (Some(registry), Some(image))
            }
        };
        let master = FakeMaster::start().await;
        let work_dir = WorkDir::new();
        let agent = start(&master, &work_dir).await;
        master.wait_registrations(1).await;
        Some(Harness { kind, master, work_dir, agent: Some(agent), image, _registry: registry })
    }

    /// Launches `cmd` (a shell command line) as task `task_id` with port `http` = `port` and
    /// `extra` launch fields.
    fn launch(&self, task_id: &str, cmd: &str, port: u16, extra: serde_json::Value) {
        let mut value = serde_json::json!({
            "task_id": task_id,
            "app_id": "conformance",
            "cmd": cmd,
            "env": {"GREETING": "hello"},
            "resources": {"cpus": 0.5, "mem": 0.0, "disk": 0.0, "gpus": 0, "ports": [{"begin": port, "end": port}]},
            "ports": [{"name": "http", "port": port}],
            "kill_grace_period_secs": 5.0,
        });
        if let Some(image) = &self.image {
            value["container"] = serde_json::json!({ "image": image });
        }
        if let (Some(object), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
            object.extend(extra.clone());
        }
        let launch: LaunchTask = serde_json::from_value(value).expect("a valid launch");
        self.master.send(AgentCommand::Launch(Box::new(launch)));
    }

    /// Waits for `task_id` to reach `state`; a timeout fails with its updates and logs.
    async fn reach(&self, task_id: &str, state: TaskState) -> StatusUpdate {
        for _ in 0..1000 {
            if let Some(update) = self.master.updates(task_id).into_iter().find(|u| u.state == state) {
                return update;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{:?}: {task_id} never reached {state}: {:?}\nexecutor.log:\n{}\nstderr:\n{}",
            self.kind,
            self.master.updates(task_id),
            self.read(task_id, "executor.log"),
            self.read(task_id, "stderr"),
        );
    }

    fn read(&self, task_id: &str, file: &str) -> String {
        std::fs::read_to_string(self.work_dir.sandbox(task_id).join(file)).unwrap_or_default()
    }

    async fn restart_agent(&mut self) {
        if let Some(agent) = self.agent.take() {
            agent.shutdown().await;
        }
        let registrations = self.master.registrations().len();
        self.agent = Some(start(&self.master, &self.work_dir).await);
        self.master.wait_registrations(registrations + 1).await;
    }

    async fn stop(mut self) {
        if let Some(agent) = self.agent.take() {
            agent.shutdown().await;
        }
    }
}

async fn env_ports_and_logs(kind: Kind) {
    let Some(h) = Harness::start(kind).await else { return };
    h.launch(
        "env.1",
        "echo \"$GREETING port=$PORT_HTTP id=$GANTRY_TASK_ID\"; echo to-stderr >&2",
        31601,
        serde_json::json!({}),
    );
    let end = h.reach("env.1", TaskState::Finished).await;
    assert_eq!(end.exit_code, Some(0));
    assert_eq!(h.read("env.1", "stdout"), "hello port=31601 id=env.1\n");
    assert_eq!(h.read("env.1", "stderr"), "to-stderr\n");
    h.stop().await;
}

async fn exit_codes(kind: Kind) {
    let Some(h) = Harness::start(kind).await else { return };
    h.launch("exit.1", "exit 3", 31602, serde_json::json!({}));
    let end = h.reach("exit.1", TaskState::Failed).await;
    assert_eq!((end.exit_code, end.message.as_deref()), (Some(3), Some("exited with code 3")));
    h.stop().await;
}

async fn kill_with_grace(kind: Kind) {
    let Some(h) = Harness::start(kind).await else { return };
    h.launch(
        "grace.1",
        "trap 'echo term; exit 0' TERM; echo up; while true; do sleep 0.05; done",
        31603,
        serde_json::json!({}),
    );
    h.reach("grace.1", TaskState::Running).await;
    wait_for("the task to start its loop", || (h.read("grace.1", "stdout") == "up\n").then_some(())).await;
    h.master.send(AgentCommand::Kill { task_id: "grace.1".into(), grace_period_secs: 30.0 });
    let end = h.reach("grace.1", TaskState::Killed).await;
    assert_eq!(h.read("grace.1", "stdout"), "up\nterm\n", "the task handled SIGTERM");
    assert_eq!(end.exit_code, Some(0), "it ended on its own within the grace: {end:?}");
    h.stop().await;
}

async fn sigterm_ignored_means_sigkill_after_the_grace(kind: Kind) {
    let Some(h) = Harness::start(kind).await else { return };
    h.launch("stubborn.1", "trap '' TERM; echo up; while true; do sleep 0.05; done", 31604, serde_json::json!({}));
    h.reach("stubborn.1", TaskState::Running).await;
    wait_for("the task to start its loop", || (h.read("stubborn.1", "stdout") == "up\n").then_some(())).await;
    h.master.send(AgentCommand::Kill { task_id: "stubborn.1".into(), grace_period_secs: 0.2 });
    let end = h.reach("stubborn.1", TaskState::Killed).await;
    let message = end.message.unwrap_or_default();
    // A process dies of SIGKILL; a container's init reports the task's death as 128 + 9.
    assert!(message.contains("SIGKILL") || message.contains("code 137"), "{message}");
    h.stop().await;
}

async fn recovery_across_an_agent_restart(kind: Kind) {
    let Some(mut h) = Harness::start(kind).await else { return };
    h.launch("kept.1", "echo up; while true; do sleep 0.05; done", 31605, serde_json::json!({}));
    h.reach("kept.1", TaskState::Running).await;
    let info = h.work_dir.executor_info("kept.1");
    h.restart_agent().await;
    let registration = h.master.registrations().pop().expect("a second registration");
    let kept = registration.tasks.iter().find(|t| t.task_id == "kept.1").expect("the task is reported");
    assert_eq!(kept.state, TaskState::Running);
    assert!(gantry_agent::process::is_alive(info.executor_pid, info.executor_start_time));
    h.master.send(AgentCommand::Kill { task_id: "kept.1".into(), grace_period_secs: 1.0 });
    h.reach("kept.1", TaskState::Killed).await;
    fake_master::wait_group_gone(info.task_pgid).await;
    h.stop().await;
}

async fn health_checks(kind: Kind) {
    let Some(h) = Harness::start(kind).await else { return };
    let check = serde_json::json!([{
        "kind": {"protocol": "HTTP", "port": 31606, "path": "/"},
        "grace_period_secs": 30.0, "interval_secs": 0.1, "timeout_secs": 1.0, "max_consecutive_failures": 3
    }]);
    h.launch(
        "healthy.1",
        "mkdir -p /tmp/www-$GANTRY_TASK_ID && echo ok > /tmp/www-$GANTRY_TASK_ID/index.html && exec /bin/busybox httpd -f -p $PORT_HTTP -h /tmp/www-$GANTRY_TASK_ID",
        31606,
        serde_json::json!({ "health_checks": check }),
    );
    h.reach("healthy.1", TaskState::Running).await;
    wait_for("a healthy report", || {
        h.master
            .updates("healthy.1")
            .iter()
            .any(|u| u.state == TaskState::Running && u.healthy == Some(true))
            .then_some(())
    })
    .await;
    h.master.send(AgentCommand::Kill { task_id: "healthy.1".into(), grace_period_secs: 1.0 });
    h.reach("healthy.1", TaskState::Killed).await;
    h.stop().await;
}

async fn command_health_check_runs_beside_the_task(kind: Kind) {
    let Some(h) = Harness::start(kind).await else { return };
    let check = serde_json::json!([{
        "kind": {"protocol": "COMMAND", "command": "test -f ready && test \"$GREETING\" = hello"},
        "grace_period_secs": 30.0, "interval_secs": 0.1, "timeout_secs": 2.0, "max_consecutive_failures": 3
    }]);
    h.launch(
        "ready.1",
        "touch ready; while true; do sleep 0.05; done",
        31608,
        serde_json::json!({ "health_checks": check }),
    );
    wait_for("a healthy report", || {
        h.master
            .updates("ready.1")
            .iter()
            .any(|u| u.state == TaskState::Running && u.healthy == Some(true))
            .then_some(())
    })
    .await;
    h.master.send(AgentCommand::Kill { task_id: "ready.1".into(), grace_period_secs: 1.0 });
    h.reach("ready.1", TaskState::Killed).await;
    h.stop().await;
}

async fn memory_limit(kind: Kind) {
    if !nix::unistd::Uid::effective().is_root() {
        return skip::skipped("memory limits need root (cgroups)");
    }
    let Some(h) = Harness::start(kind).await else { return };
    // busybox's tail keeps the whole newline-free line in memory.
    let resources = serde_json::json!({"cpus": 0.5, "mem": 32.0, "disk": 0.0, "gpus": 0, "ports": []});
    h.launch(
        "oom.1",
        "/bin/busybox head -c 200000000 /dev/zero | /bin/busybox tail > /dev/null",
        31607,
        serde_json::json!({ "resources": resources, "ports": [] }),
    );
    let end = h.reach("oom.1", TaskState::Failed).await;
    assert_eq!(end.message.as_deref(), Some("out of memory (limit 32 MiB)"), "{end:?}");
    h.stop().await;
}

macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod process {
            $(#[tokio::test] async fn $scenario() { super::$scenario(super::Kind::Process).await })*
        }
        mod container {
            $(#[tokio::test] async fn $scenario() { super::$scenario(super::Kind::Container).await })*
        }
    };
}

conformance!(
    env_ports_and_logs,
    exit_codes,
    kill_with_grace,
    sigterm_ignored_means_sigkill_after_the_grace,
    recovery_across_an_agent_restart,
    health_checks,
    command_health_check_runs_beside_the_task,
    memory_limit,
);
