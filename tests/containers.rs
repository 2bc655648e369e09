//! Container tasks for real: the agent in-process against the fake master pulls images that the
//! test built from Debian's busybox-static and pushed to a real registry (Debian's
//! docker-registry on loopback), and the `gantry executor` binary runs them in their own
//! namespaces on an overlay of the layers. What the task sees is checked from inside (its pid,
//! host name, capabilities, root, volumes), what it leaves on the host from outside (no mount).
//!
//! Root only (mounts and namespaces) and the two packages: skipped with the reason otherwise,
//! failed where every test must run (`GANTRY_TESTS_REQUIRE_ALL=1`).

#[path = "support/fake_master.rs"]
mod fake_master;
#[path = "support/skip.rs"]
mod skip;

use fake_master::{FakeMaster, WorkDir, start, wait_for};
use gantry_api::TaskState;
use gantry_api::protocol::{AgentCommand, LaunchTask};
use gantry_lab::registry::{RegistryOptions, TestImage, TestRegistry};

/// Why containers cannot be tested here, if they cannot.
fn missing() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("containers need root (mounts, namespaces)".into());
    }
    TestRegistry::missing()
}

/// A container launch of `image` (on the registry at `registry`), from JSON so that protocol
/// fields added with defaults need no change here.
fn launch(task_id: &str, image: &str, extra: serde_json::Value) -> AgentCommand {
    let mut value = serde_json::json!({
        "task_id": task_id,
        "app_id": "web",
        "env": {"GREETING": "hello"},
        "resources": {"cpus": 0.5, "mem": 64.0, "disk": 0.0, "gpus": 0, "ports": [{"begin": 31555, "end": 31555}]},
        "ports": [{"name": "http", "port": 31555}],
        "kill_grace_period_secs": 1.0,
        "container": {"image": image},
    });
    if let (Some(object), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
        for (key, field) in extra {
            if key == "container" {
                if let (Some(container), Some(fields)) = (object["container"].as_object_mut(), field.as_object()) {
                    container.extend(fields.clone());
                }
            } else {
                object.insert(key.clone(), field.clone());
            }
        }
    }
    let launch: LaunchTask = serde_json::from_value(value).expect("a valid launch");
    AgentCommand::Launch(Box::new(launch))
}

/// Waits for `task_id` to reach `state`; on a timeout, fails with its updates and its sandbox's
/// logs, which say why.
async fn reach(
    master: &FakeMaster,
    work_dir: &WorkDir,
    task_id: &str,
    state: TaskState,
) -> gantry_api::protocol::StatusUpdate {
    for _ in 0..1000 {
        if let Some(update) = master.updates(task_id).into_iter().find(|u| u.state == state) {
            return update;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let sandbox = work_dir.sandbox(task_id);
    let read = |name: &str| std::fs::read_to_string(sandbox.join(name)).unwrap_or_default();
    panic!(
        "{task_id} never reached {state}: updates {:?}\nexecutor.log:\n{}\nstderr:\n{}\nstdout:\n{}",
        master.updates(task_id),
        read("executor.log"),
        read("stderr"),
        read("stdout")
    );
}

/// Host mounts whose mount point lies under `dir`.
fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.display().to_string();
    mountinfo
        .lines()
        .filter(|l| l.split_whitespace().nth(4).is_some_and(|m| m.starts_with(&dir)))
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn a_container_task_sees_its_image_its_volume_and_nothing_of_the_host() {
    if let Some(reason) = missing() {
        return skip::skipped(&reason);
    }
    let registry = TestRegistry::start(RegistryOptions::default()).expect("registry");
    let image = format!("{}/team/web:1.4", registry.address());
    TestImage::busybox().expect("busybox image").push(&registry, "team/web:1.4").await.expect("push");
    let volume = tempfile::tempdir().expect("volume");
    std::fs::write(volume.path().join("hello"), "from the host\n").expect("write");

    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let agent = start(&master, &work_dir).await;
    master.wait_registrations(1).await;
    let script = [
        // `$$` is a literal `$` in a container command (`$NAME` is the task's variable).
        "echo pid=$$$$",
        "echo host=$(cat /proc/sys/kernel/hostname)",
        "grep CapEff /proc/self/status",
        "echo port=$PORT_HTTP greeting=$GREETING sandbox=$GANTRY_SANDBOX",
        "cat /data/hello",
        "(echo x > /data/new) 2>/dev/null && echo volume=rw || echo volume=ro",
        "test -e /work && echo hostfs=yes || echo hostfs=no",
        "echo init=$(cat /proc/1/comm)",
        "echo written > /mnt/sandbox/out.txt",
    ]
    .join("; ");
    let volumes = serde_json::json!([{"host_path": volume.path(), "container_path": "/data"}]);
    master.send(launch(
        "web.1",
        &image,
        serde_json::json!({"container": {"cmd": ["/bin/sh", "-c", script]}, "volumes": volumes}),
    ));
    let end = reach(&master, &work_dir, "web.1", TaskState::Finished).await;
    assert_eq!(end.exit_code, Some(0), "{end:?}");
    let sandbox = work_dir.sandbox("web.1");
    let stdout = std::fs::read_to_string(sandbox.join("stdout")).expect("stdout");
    let stderr = std::fs::read_to_string(sandbox.join("stderr")).unwrap_or_default();
    for expected in [
        "pid=2\n",
        "host=test-host\n",
        "CapEff:\t00000000a80425fb\n",
        "port=31555 greeting=hello sandbox=/mnt/sandbox\n",
        "from the host\n",
        "volume=ro\n",
        "hostfs=no\n",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in stdout:\n{stdout}\nstderr:\n{stderr}");
    }
    assert!(stdout.contains("init=gantry"), "a minimal init is pid 1, not the task: {stdout}");
    assert_eq!(std::fs::read_to_string(sandbox.join("out.txt")).expect("written through"), "written\n");
    assert!(!volume.path().join("new").exists());
    assert_eq!(mounts_under(work_dir.path()), Vec::<String>::new(), "nothing stays mounted on the host");
    agent.shutdown().await;
}

#[tokio::test]
async fn a_container_runs_as_the_image_user_is_killed_with_grace_and_outlives_an_agent_restart() {
    if let Some(reason) = missing() {
        return skip::skipped(&reason);
    }
    let registry = TestRegistry::start(RegistryOptions::default()).expect("registry");
    let image = format!("{}/team/sleeper:1", registry.address());
    let built = TestImage::busybox().expect("busybox").user("nobody").cmd(&[
        "/bin/sh",
        "-c",
        "trap 'echo term; exit 7' TERM; id -u > /mnt/sandbox/uid; while true; do sleep 0.05; done",
    ]);
    built.push(&registry, "team/sleeper:1").await.expect("push");

    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let agent = start(&master, &work_dir).await;
    master.wait_registrations(1).await;
    // The check holds only inside the container: its own host name, its image's user.
    let check = serde_json::json!([{
        "kind": {"protocol": "COMMAND", "command": "test \"$(cat /proc/sys/kernel/hostname)\" = test-host && test \"$(id -u)\" = 65534 && test -x /bin/busybox"},
        "grace_period_secs": 30.0, "interval_secs": 0.1, "timeout_secs": 2.0, "max_consecutive_failures": 3
    }]);
    master.send(launch("sleeper.1", &image, serde_json::json!({ "health_checks": check })));
    reach(&master, &work_dir, "sleeper.1", TaskState::Running).await;
    wait_for("a healthy report from the check inside the container", || {
        master.updates("sleeper.1").iter().any(|u| u.healthy == Some(true)).then_some(())
    })
    .await;
    let sandbox = work_dir.sandbox("sleeper.1");
    let uid = wait_for("the task's uid", || std::fs::read_to_string(sandbox.join("uid")).ok()).await;
    assert_eq!(uid.trim(), "65534", "the image's user");
    let info = work_dir.executor_info("sleeper.1");

    agent.shutdown().await;
    assert!(
        gantry_agent::process::is_alive(info.executor_pid, info.executor_start_time),
        "the task outlives its agent"
    );
    let agent = start(&master, &work_dir).await;
    master.wait_registrations(2).await;
    assert_eq!(master.registrations()[1].tasks.first().map(|t| t.state), Some(TaskState::Running));

    master.send(AgentCommand::Kill { task_id: "sleeper.1".into(), grace_period_secs: 5.0 });
    let end = reach(&master, &work_dir, "sleeper.1", TaskState::Killed).await;
    let stdout = std::fs::read_to_string(sandbox.join("stdout")).unwrap_or_default();
    assert!(stdout.contains("term"), "the task saw SIGTERM through its init: {stdout}");
    assert_eq!(end.exit_code, Some(7), "{end:?}");
    fake_master::wait_group_gone(info.task_pgid).await;
    assert_eq!(mounts_under(work_dir.path()), Vec::<String>::new());
    agent.shutdown().await;
}

#[tokio::test]
async fn images_and_commands_that_cannot_run_fail_the_launch_with_the_reason() {
    if let Some(reason) = missing() {
        return skip::skipped(&reason);
    }
    let registry = TestRegistry::start(RegistryOptions::default()).expect("registry");
    TestImage::busybox().expect("busybox").push(&registry, "team/web:1.4").await.expect("push");
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let agent = start(&master, &work_dir).await;
    master.wait_registrations(1).await;

    let cases = [
        ("absent.1", format!("{}/team/absent:1", registry.address()), serde_json::json!({}), "not found"),
        (
            "nocmd.1",
            format!("{}/team/web:1.4", registry.address()),
            serde_json::json!({"container": {"cmd": ["/usr/bin/nginx"]}}),
            "has no `/usr/bin/nginx`",
        ),
        ("down.1", "127.0.0.1:9/team/web:1".to_string(), serde_json::json!({}), "unreachable"),
    ];
    for (task_id, image, extra, _) in &cases {
        master.send(launch(task_id, image, extra.clone()));
    }
    for (task_id, _, _, reason) in &cases {
        let end = reach(&master, &work_dir, task_id, TaskState::Failed).await;
        let message = end.message.unwrap_or_default();
        assert!(message.contains(reason), "{task_id}: {message:?} lacks {reason:?}");
    }
    agent.shutdown().await;
}
