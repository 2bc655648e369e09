//! The agent in-process against a recording fake master: registration with a persistent id,
//! launching, killing, exit codes, recovery across agent restarts, health checks, status update
//! retries and the file endpoint. Tasks run for real through the `gantry executor` binary.
//!
//! The fake master and the work dir are in `support/fake_master.rs`, shared with
//! `tests/limits.rs`.

#[path = "support/fake_master.rs"]
mod fake_master;
#[path = "support/skip.rs"]
mod skip;

use fake_master::{FakeMaster, WorkDir, config, group_members, start, wait_for, wait_group_gone};
use gantry_api::protocol::{
    AgentCommand, FileChunk, LaunchTask, NamedPort, StatusUpdate, TaskHealthCheck, TaskHealthCheckKind,
};
use gantry_api::{Resources, TaskState};
use std::collections::BTreeMap;
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn launch(task_id: &str, cmd: &str) -> LaunchTask {
    let port = free_port();
    LaunchTask {
        task_id: task_id.to_string(),
        app_id: "test".to_string(),
        cmd: Some(cmd.to_string()),
        args: None,
        env: BTreeMap::from([("GREETING".to_string(), "hello".to_string())]),
        resources: Resources { cpus: 0.1, mem: 32.0, ports: Resources::from_ports(&[port]), ..Resources::default() },
        ports: vec![NamedPort { name: "http".to_string(), port }],
        health_checks: Vec::new(),
        kill_grace_period_secs: 5.0,
        secrets: BTreeMap::new(),
        secret_files: BTreeMap::new(),
        secret_values: Default::default(),
        user: None,
        container: None,
        volumes: Vec::new(),
    }
}

fn kill(task_id: &str, grace_period_secs: f64) -> AgentCommand {
    AgentCommand::Kill { task_id: task_id.to_string(), grace_period_secs }
}

fn read_stdout(work_dir: &WorkDir, task_id: &str) -> String {
    std::fs::read_to_string(work_dir.sandbox(task_id).join("stdout")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_with_a_persistent_id_and_heartbeats() {
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let agent = start(&master, &work_dir).await;
    let first = master.wait_registrations(1).await;
    assert_eq!(first.info.id, agent.agent_id());
    assert_eq!(first.info.hostname, "test-host");
    assert_eq!(first.info.attributes.get("zone").map(String::as_str), Some("a"));
    assert_eq!(first.info.resources.cpus, 2.0);
    assert!(first.info.resources.disk > 0.0, "disk is detected");
    assert_eq!(first.info.resources.port_count(), 1001, "the default port range is offered");
    assert_eq!(first.info.endpoint, format!("https://{}", agent.local_addr()));
    wait_for("a heartbeat", || (master.lock().heartbeats > 0).then_some(())).await;
    let health: serde_json::Value = master.get_from_agent(&agent, "/health").await.json().await.expect("json");
    assert_eq!(health["status"], "ok");
    let id = agent.agent_id().to_string();
    agent.shutdown().await;

    let again = start(&master, &work_dir).await;
    assert_eq!(again.agent_id(), id, "the id is kept in the work dir");
    let second = master.wait_registrations(2).await;
    assert_eq!(second.info.id, id);
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_gets_its_environment_and_finishes() {
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let agent = start(&master, &work_dir).await;
    master.wait_registrations(1).await;
    let task = launch("env.1", "env; echo oops >&2");
    let port = task.ports[0].port;
    master.send(AgentCommand::Launch(Box::new(task.clone())));
    master.send(AgentCommand::Launch(Box::new(task)));
    let finished = master.wait_state("env.1", TaskState::Finished).await;
    assert_eq!(finished.exit_code, Some(0));
    assert_eq!(master.states("env.1"), vec![TaskState::Running, TaskState::Finished], "a repeated launch is ignored");
    let stdout = read_stdout(&work_dir, "env.1");
    for expected in [
        format!("PORT0={port}"),
        format!("PORT={port}"),
        format!("PORT_HTTP={port}"),
        "GANTRY_TASK_ID=env.1".to_string(),
        "GANTRY_APP_ID=test".to_string(),
        "HOST=test-host".to_string(),
        "GREETING=hello".to_string(),
        format!("GANTRY_SANDBOX={}", std::fs::canonicalize(work_dir.sandbox("env.1")).expect("sandbox").display()),
    ] {
        assert!(stdout.lines().any(|l| l == expected), "stdout has {expected}: {stdout}");
    }

    let base = "/files";
    let chunk: FileChunk =
        master.get_from_agent(&agent, &format!("{base}/env.1/stderr")).await.json().await.expect("json");
    assert_eq!(chunk.data, "oops\n");
    assert_eq!(chunk.next_offset, 5);
    assert!(chunk.eof, "the task ended and the whole file was read");
    let tail: FileChunk =
        master.get_from_agent(&agent, &format!("{base}/env.1/stderr?offset=-2")).await.json().await.expect("json");
    assert_eq!((tail.offset, tail.data.as_str()), (3, "s\n"));
    let unknown = master.get_from_agent(&agent, &format!("{base}/nope/stdout")).await;
    assert_eq!(unknown.status(), 404);
    let body: gantry_api::ApiError = unknown.json().await.expect("an ApiError body");
    assert!(body.message.contains("nope"));
    assert_eq!(master.get_from_agent(&agent, &format!("{base}/env.1/task.json")).await.status(), 400);
    assert_eq!(master.get_from_agent(&agent, &format!("{base}/env.1/..%2Fagent_id")).await.status(), 400);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_report_their_exit_code_or_reason() {
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let agent = start(&master, &work_dir).await;
    master.wait_registrations(1).await;
    master.send(AgentCommand::Launch(Box::new(launch("fail.1", "exit 3"))));
    let mut bad_args = launch("fail.2", "");
    bad_args.cmd = None;
    bad_args.args = Some(vec!["/nonexistent/program".to_string()]);
    master.send(AgentCommand::Launch(Box::new(bad_args)));
    let failed = master.wait_state("fail.1", TaskState::Failed).await;
    assert_eq!(failed.exit_code, Some(3));
    assert_eq!(failed.message.as_deref(), Some("exited with code 3"));
    let not_started = master.wait_state("fail.2", TaskState::Failed).await;
    assert!(not_started.message.as_deref().is_some_and(|m| m.contains("cannot start the task")), "{not_started:?}");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_left_the_task_group_is_killed_with_the_task() {
    let none = gantry_agent::cgroup::limits::Limits::default();
    match gantry_agent::cgroup::TaskCgroup::create(&format!("probe-{}", std::process::id()), &none) {
        Ok((probe, _)) => assert!(probe.kill_and_remove(Duration::from_secs(1)), "the probe cgroup is removed"),
        Err(reason) => {
            skip::skipped(&format!(
                "tasks that leave their process group are only reachable through cgroup v2: {reason}"
            ));
            return;
        }
    }
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let agent = start(&master, &work_dir).await;
    master.wait_registrations(1).await;
    // `setsid` puts the daemon in a new session and process group, out of reach of killpg.
    master.send(AgentCommand::Launch(Box::new(launch(
        "escape.1",
        "setsid sh -c 'echo $$ > escaped.pid; exec sleep 1000' & exec sleep 1000",
    ))));
    master.wait_state("escape.1", TaskState::Running).await;
    let pid_file = work_dir.sandbox("escape.1").join("escaped.pid");
    let escaped: i32 =
        wait_for("the daemon to start", || std::fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse().ok()))
            .await;
    let info = work_dir.executor_info("escape.1");
    let escaped_pgid = std::fs::read_to_string(format!("/proc/{escaped}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit(") ").next().and_then(|rest| rest.split_whitespace().nth(2)?.parse::<i32>().ok()));
    assert_ne!(escaped_pgid, Some(info.task_pgid), "the daemon left the task's process group");
    master.send(kill("escape.1", 1.0));
    master.wait_state("escape.1", TaskState::Killed).await;
    wait_for("the escaped daemon to be gone", || {
        let stat = std::fs::read_to_string(format!("/proc/{escaped}/stat")).unwrap_or_default();
        let gone = stat.is_empty() || stat.rsplit(") ").next().is_some_and(|rest| rest.starts_with('Z'));
        gone.then_some(())
    })
    .await;
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_delivers_sigterm_to_the_task_before_the_grace_period_ends() {
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let agent = start(&master, &work_dir).await;
    master.wait_registrations(1).await;
    // The task's own TERM handler must run: its signal mask is not the executor's.
    let mut polite = launch("polite.1", "trap 'echo got-term > term; exit 0' TERM; sleep 1000 & wait");
    polite.kill_grace_period_secs = 60.0;
    master.send(AgentCommand::Launch(Box::new(polite)));
    master.wait_state("polite.1", TaskState::Running).await;
    let info = work_dir.executor_info("polite.1");
    wait_for("the task's sleep to start", || (group_members(info.task_pgid).len() >= 2).then_some(())).await;
    master.send(kill("polite.1", 60.0));
    master.wait_state("polite.1", TaskState::Killed).await;
    let marker = std::fs::read_to_string(work_dir.sandbox("polite.1").join("term")).expect("the TERM handler ran");
    assert_eq!(marker.trim(), "got-term");
    wait_group_gone(info.task_pgid).await;
    agent.shutdown().await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_leave_no_process_behind() {
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let agent = start(&master, &work_dir).await;
    master.wait_registrations(1).await;
    master.send(AgentCommand::Launch(Box::new(launch("sleep.1", "sleep 1000 & sleep 1000; wait"))));
    let mut stubborn = launch("stubborn.1", "trap '' TERM; sleep 1000");
    stubborn.kill_grace_period_secs = 60.0;
    master.send(AgentCommand::Launch(Box::new(stubborn)));
    master.wait_state("sleep.1", TaskState::Running).await;
    master.wait_state("stubborn.1", TaskState::Running).await;
    let sleeper = work_dir.executor_info("sleep.1");
    let stubborn = work_dir.executor_info("stubborn.1");
    wait_for("both sleeps started", || (group_members(sleeper.task_pgid).len() >= 3).then_some(())).await;

    master.send(kill("sleep.1", 5.0));
    // The kill's grace period wins over the launch's.
    master.send(kill("stubborn.1", 0.5));
    let killed = master.wait_state("sleep.1", TaskState::Killed).await;
    assert!(killed.message.as_deref().is_some_and(|m| m.contains("SIGTERM")), "{killed:?}");
    wait_group_gone(sleeper.task_pgid).await;
    let stubborn_killed = master.wait_state("stubborn.1", TaskState::Killed).await;
    assert!(stubborn_killed.message.as_deref().is_some_and(|m| m.contains("SIGKILL")), "{stubborn_killed:?}");
    wait_group_gone(stubborn.task_pgid).await;
    assert_eq!(master.states("sleep.1"), vec![TaskState::Running, TaskState::Killing, TaskState::Killed]);

    // A kill right behind its launch waits for the task to start, then kills it.
    master.send(AgentCommand::Launch(Box::new(launch("quick.1", "sleep 1000"))));
    master.send(kill("quick.1", 1.0));
    let quick = master.wait_state("quick.1", TaskState::Killed).await;
    assert!(quick.message.as_deref().is_some_and(|m| m.contains("killed on request")), "{quick:?}");
    wait_group_gone(work_dir.executor_info("quick.1").task_pgid).await;

    master.send(kill("never.launched", 1.0));
    let unknown = master.wait_state("never.launched", TaskState::Killed).await;
    assert!(unknown.message.as_deref().is_some_and(|m| m.contains("unknown")));
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_survive_an_agent_restart_and_are_readopted() {
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let agent = start(&master, &work_dir).await;
    master.wait_registrations(1).await;
    master.send(AgentCommand::Launch(Box::new(launch("long.1", "sleep 1000"))));
    master.send(AgentCommand::Launch(Box::new(launch("short.1", "sleep 1; exit 4"))));
    master.wait_state("long.1", TaskState::Running).await;
    master.wait_state("short.1", TaskState::Running).await;
    let long = work_dir.executor_info("long.1");
    agent.shutdown().await;

    assert!(gantry_agent::process::is_alive(long.task_pid, long.task_start_time), "the task outlives the agent");
    let exit_file = work_dir.sandbox("short.1").join("exit.json");
    wait_for("short.1 to exit while the agent is down", || exit_file.exists().then_some(())).await;

    let agent = start(&master, &work_dir).await;
    let registration = master.wait_registrations(2).await;
    let report = |id: &str| registration.tasks.iter().find(|t| t.task_id == id).cloned();
    assert_eq!(report("long.1").map(|t| t.state), Some(TaskState::Running), "{registration:?}");
    assert_eq!(report("short.1").map(|t| (t.state, t.exit_code)), Some((TaskState::Failed, Some(4))));
    let short = master.wait_state("short.1", TaskState::Failed).await;
    assert_eq!(short.message.as_deref(), Some("exited with code 4"));

    master.send(kill("long.1", 1.0));
    master.wait_state("long.1", TaskState::Killed).await;
    wait_group_gone(long.task_pgid).await;
    agent.shutdown().await;

    // Acknowledged terminal tasks are not reported again.
    let _agent = start(&master, &work_dir).await;
    let third = master.wait_registrations(3).await;
    assert!(third.tasks.is_empty(), "{third:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_report_health_and_kill_unhealthy_tasks() {
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let agent = start(&master, &work_dir).await;
    master.wait_registrations(1).await;

    let mut web = launch("web.1", "exec python3 -m http.server $PORT0 --bind 127.0.0.1");
    let port = web.ports[0].port;
    web.health_checks = vec![TaskHealthCheck {
        kind: TaskHealthCheckKind::Http { port, path: "/".to_string() },
        grace_period_secs: 30.0,
        interval_secs: 0.2,
        timeout_secs: 2.0,
        max_consecutive_failures: 3,
    }];
    master.send(AgentCommand::Launch(Box::new(web)));
    let mut sick = launch("sick.1", "sleep 1000");
    sick.health_checks = vec![TaskHealthCheck {
        kind: TaskHealthCheckKind::Command { command: "test -f ready".to_string() },
        grace_period_secs: 0.0,
        interval_secs: 0.1,
        timeout_secs: 1.0,
        max_consecutive_failures: 3,
    }];
    master.send(AgentCommand::Launch(Box::new(sick)));

    wait_for("web.1 healthy", || master.updates("web.1").into_iter().find(|u| u.healthy == Some(true))).await;
    let killed = master.wait_state("sick.1", TaskState::Killed).await;
    assert_eq!(
        killed.message.as_deref().map(|m| m.split(" (").next().unwrap_or_default().to_string()),
        Some("failed 3 consecutive COMMAND health checks: exited with code 1".to_string()),
        "{killed:?}"
    );
    assert!(master.updates("sick.1").iter().any(|u| u.state == TaskState::Running && u.healthy == Some(false)));

    let web = work_dir.executor_info("web.1");
    master.send(kill("web.1", 2.0));
    master.wait_state("web.1", TaskState::Killed).await;
    wait_group_gone(web.task_pgid).await;
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_updates_are_retried_with_the_same_uuid() {
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let agent = start(&master, &work_dir).await;
    master.wait_registrations(1).await;
    master.lock().refuse_status = 1;
    master.send(AgentCommand::Launch(Box::new(launch("retry.1", "true"))));
    master.wait_state("retry.1", TaskState::Finished).await;
    let posted: Vec<StatusUpdate> = master.lock().updates.iter().filter(|u| u.task_id == "retry.1").cloned().collect();
    assert_eq!(posted.len(), 3, "RUNNING refused once, then RUNNING and FINISHED: {posted:?}");
    assert_eq!(posted[0], posted[1], "the retry is the same update");
    assert_eq!(posted[2].state, TaskState::Finished);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_executor_fails_its_task_and_kills_its_group() {
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let agent = start(&master, &work_dir).await;
    master.wait_registrations(1).await;
    master.send(AgentCommand::Launch(Box::new(launch("orphan.1", "sleep 1000"))));
    master.wait_state("orphan.1", TaskState::Running).await;
    let info = work_dir.executor_info("orphan.1");
    gantry_agent::process::signal_pid(info.executor_pid, nix::sys::signal::Signal::SIGKILL).expect("kill the executor");
    let failed = master.wait_state("orphan.1", TaskState::Failed).await;
    assert!(failed.message.as_deref().is_some_and(|m| m.contains("executor died")), "{failed:?}");
    wait_group_gone(info.task_pgid).await;
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_registers_again_when_forgotten_or_when_the_stream_goes_silent() {
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let agent = start(&master, &work_dir).await;
    master.wait_registrations(1).await;
    master.send(AgentCommand::Launch(Box::new(launch("steady.1", "sleep 1000"))));
    master.wait_state("steady.1", TaskState::Running).await;

    master.lock().forget_agent = true;
    let again = master.wait_registrations(2).await;
    master.lock().forget_agent = false;
    assert_eq!(
        again.tasks.iter().map(|t| (t.task_id.as_str(), t.state)).collect::<Vec<_>>(),
        [("steady.1", TaskState::Running)]
    );

    let before = master.registrations().len();
    master.lock().silent = true;
    master.wait_registrations(before + 1).await;
    master.lock().silent = false;

    // Commands still arrive on the new stream.
    let info = work_dir.executor_info("steady.1");
    master.send(kill("steady.1", 1.0));
    master.wait_state("steady.1", TaskState::Killed).await;
    wait_group_gone(info.task_pgid).await;
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_token_of_another_cluster_is_refused_before_anything_is_sent() {
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let other = gantry_trust::Ca::generate("other").expect("another CA");
    let mut config = config(&master, &work_dir);
    config.join_token = Some(gantry_trust::JoinToken::generate(&other.hash()).to_string());
    let err = gantry_agent::start(config).await.expect_err("the master's CA is not the token's");
    let message = err.to_string();
    assert!(message.contains("join token pins"), "{message}");
    assert!(master.registrations().is_empty(), "nothing was registered");
    assert!(!work_dir.path().join("tls").join("agent.pem").exists(), "no certificate was issued");

    let mut config = self::config(&master, &work_dir);
    config.join_token = Some("gj1.not-a-token".to_string());
    let err = gantry_agent::start(config).await.expect_err("a malformed token");
    assert!(err.to_string().contains("malformed"), "{err}");
}

/// A wrapper around the gantry binary that appends how it was started (`--sandbox` or
/// `--standby`) to `invocations`, then execs it (same pid); with `standby_dies`, a standby
/// exits at once instead, as one killed while it waited would.
fn recording_executor(dir: &std::path::Path, standby_dies: bool) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let log = dir.join("invocations");
    let script = dir.join("executor.sh");
    let die = if standby_dies { "[ \"$2\" = --standby ] && exit 0\n" } else { "" };
    let text =
        format!("#!/bin/sh\necho \"$2\" >> '{}'\n{die}exec '{}' \"$@\"\n", log.display(), env!("CARGO_BIN_EXE_gantry"));
    std::fs::write(&script, text).expect("write the wrapper");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (script, log)
}

fn invocations(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_takes_the_executor_started_ahead_of_time() {
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let scripts = tempfile::tempdir().expect("tempdir");
    let (script, log) = recording_executor(scripts.path(), false);
    let mut config = config(&master, &work_dir);
    config.executor_path = script;
    let agent = gantry_agent::start(config).await.expect("the agent starts");
    master.wait_registrations(1).await;

    master.send(AgentCommand::Launch(Box::new(launch("first.1", "sleep 30"))));
    master.wait_state("first.1", TaskState::Running).await;
    // The first launch starts its executor; once its task runs, a standby is started.
    wait_for("a standby executor", || (invocations(&log) == ["--sandbox", "--standby"]).then_some(())).await;

    master.send(AgentCommand::Launch(Box::new(launch("second.1", "echo second"))));
    assert_eq!(master.wait_state("second.1", TaskState::Finished).await.exit_code, Some(0));
    assert_eq!(read_stdout(&work_dir, "second.1"), "second\n");
    let after = wait_for("the next standby", || {
        let seen = invocations(&log);
        (seen.len() >= 3).then_some(seen)
    })
    .await;
    assert_eq!(after, ["--sandbox", "--standby", "--standby"], "the second launch used the standby: no new --sandbox");
    let spawned: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(work_dir.sandbox("second.1").join("spawned.json")).expect("read"),
    )
    .expect("spawned.json");
    let executor: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(work_dir.sandbox("second.1").join("executor.json")).expect("read"),
    )
    .expect("executor.json");
    assert_eq!(spawned["pid"], executor["executor_pid"], "spawned.json names the standby that ran the task");

    master.send(AgentCommand::Kill { task_id: "first.1".into(), grace_period_secs: 0.0 });
    master.wait_state("first.1", TaskState::Killed).await;
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_standby_executor_is_replaced_by_a_fresh_one() {
    let master = FakeMaster::start().await;
    let work_dir = WorkDir::new();
    let scripts = tempfile::tempdir().expect("tempdir");
    let (script, log) = recording_executor(scripts.path(), true);
    let mut config = config(&master, &work_dir);
    config.executor_path = script;
    let agent = gantry_agent::start(config).await.expect("the agent starts");
    master.wait_registrations(1).await;

    master.send(AgentCommand::Launch(Box::new(launch("one.1", "true"))));
    master.wait_state("one.1", TaskState::Finished).await;
    wait_for("a standby executor", || invocations(&log).contains(&"--standby".to_string()).then_some(())).await;
    master.send(AgentCommand::Launch(Box::new(launch("two.1", "echo two"))));
    assert_eq!(master.wait_state("two.1", TaskState::Finished).await.exit_code, Some(0));
    assert_eq!(read_stdout(&work_dir, "two.1"), "two\n");
    let seen = invocations(&log);
    assert_eq!(seen.iter().filter(|s| *s == "--sandbox").count(), 2, "the dead standby was replaced: {seen:?}");
    agent.shutdown().await;
}
