//! End-to-end tests of jobs with the real binary: a master and one agent as processes, real
//! tasks. Retries (ON_FAILURE), NEVER, the active deadline, stopping a run, a cron schedule with
//! a seconds field, FORBID, and every example job file in `configs/jobs/`.

mod support;

use gantry_api::job::{JobDefinition, RunTrigger};
use gantry_api::{JobRun, RunStatus, TaskState};
use std::time::Duration;
use support::{Cluster, repo_root, wait_for};

fn job(id: &str, cmd: &str) -> JobDefinition {
    let text = format!("id = \"{id}\"\n[run]\ncmd = '''{cmd}'''\ncpus = 0.1\nmem = 16\n");
    gantry_api::workload::parse_job(&format!("{id}.toml"), &text, false).expect("valid job")
}

async fn wait_run_ended(cluster: &Cluster, job_id: &str, run_id: &str) -> JobRun {
    let what = format!("run {run_id} of {job_id} to end");
    wait_for(&what, Duration::from_secs(60), || async {
        let run = cluster.client.get_job_run(job_id, run_id).await.ok()?;
        run.status.is_terminal().then_some(run)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_retries_until_success_and_never_fails_once() {
    let cluster = Cluster::start(1).await;
    // Tasks run as nobody under a root agent: the counter lives where every user may write.
    let shared = cluster.path().join("shared");
    std::fs::create_dir(&shared).expect("shared dir");
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
    let counter = shared.join("attempts");
    let cmd = format!("n=$(cat {0} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {0}; [ $n -ge 3 ]", counter.display());
    let mut retried = job("flaky", &cmd);
    retried.run.restart_policy = gantry_api::job::RestartPolicy::OnFailure;
    cluster.client.put_job(&retried).await.expect("deploy flaky");
    let run = cluster.client.start_job_run("flaky").await.expect("start run");
    assert_eq!(run.status, RunStatus::Initial);
    let run = wait_run_ended(&cluster, "flaky", &run.id).await;
    assert_eq!(run.status, RunStatus::Success, "{run:?}\n{}", cluster.logs());
    let states: Vec<(TaskState, Option<i32>)> = run.attempts.iter().map(|a| (a.state, a.exit_code)).collect();
    assert_eq!(
        states,
        vec![(TaskState::Failed, Some(1)), (TaskState::Failed, Some(1)), (TaskState::Finished, Some(0))],
        "{run:?}"
    );
    assert!(run.started_at.is_some() && run.finished_at.is_some());

    cluster.client.put_job(&job("once", "exit 7")).await.expect("deploy once");
    let (ok, stdout, stderr) = cluster.gantry(&["job", "run", "once"]);
    assert!(ok, "{stderr}");
    let run_id = stdout.split_whitespace().nth(1).expect("`Run <id> of job once started.`").to_string();
    let run = wait_run_ended(&cluster, "once", &run_id).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    assert_eq!(run.attempts.len(), 1, "NEVER does not retry: {run:?}");
    assert_eq!(run.attempts[0].exit_code, Some(7));
    // Terminal runs never change: still one attempt on a later look.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = cluster.client.get_job_run("once", &run_id).await.expect("run");
    assert_eq!((again.status, again.attempts.len()), (RunStatus::Failed, 1));

    let (ok, stdout, stderr) = cluster.gantry(&["job", "runs", "once"]);
    assert!(ok && stdout.contains(&run_id) && stdout.contains("FAILED"), "{stdout}{stderr}");
    let (ok, stdout, _) = cluster.gantry(&["job", "list"]);
    assert!(ok && stdout.contains("flaky") && stdout.contains("once"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_and_stop_kill_the_task_and_fail_the_run() {
    let cluster = Cluster::start(1).await;
    let mut slow = job("slow", "sleep 600");
    slow.run.active_deadline = Some(2.0);
    slow.run.kill_grace_period = 1.0;
    slow.run.restart_policy = gantry_api::job::RestartPolicy::OnFailure;
    cluster.client.put_job(&slow).await.expect("deploy slow");
    let run = cluster.client.start_job_run("slow").await.expect("start");
    let run = wait_run_ended(&cluster, "slow", &run.id).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    assert!(run.message.as_deref().is_some_and(|m| m.contains("active deadline")), "{run:?}");
    assert_eq!(run.attempts.len(), 1, "no retry past the deadline: {run:?}");
    assert_eq!(run.attempts[0].state, TaskState::Killed, "{run:?}");
    let task_id = run.attempts[0].task_id.clone();
    wait_for("the killed task's process to exit", Duration::from_secs(20), || async {
        (!cluster.live_task_ids().contains(&task_id)).then_some(())
    })
    .await;

    cluster.client.put_job(&job("forever", "sleep 600")).await.expect("deploy forever");
    let run = cluster.client.start_job_run("forever").await.expect("start");
    wait_for("the run to be ACTIVE", Duration::from_secs(30), || async {
        let run = cluster.client.get_job_run("forever", &run.id).await.ok()?;
        (run.status == RunStatus::Active).then_some(())
    })
    .await;
    let (ok, _, stderr) = cluster.gantry(&["job", "stop-run", "forever", &run.id]);
    assert!(ok, "{stderr}");
    let stopped = wait_run_ended(&cluster, "forever", &run.id).await;
    assert_eq!(stopped.status, RunStatus::Failed);
    assert_eq!(stopped.message.as_deref(), Some("stopped on request"));
    let again = cluster.client.stop_job_run("forever", &run.id).await.expect_err("already ended");
    assert_eq!(again.status(), Some(409));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_schedule_fires_and_forbid_skips_while_a_run_is_active() {
    let cluster = Cluster::start(1).await;
    let text = r#"
id = "tick"
[run]
cmd = "sleep 5"
cpus = 0.1
mem = 16
[[schedules]]
id = "every-2s"
cron = "*/2 * * * * *"
concurrency_policy = "FORBID"
starting_deadline = 10
"#;
    let definition = gantry_api::workload::parse_job("tick.toml", text, false).expect("valid");
    cluster.client.put_job(&definition).await.expect("deploy tick");
    let job = cluster.client.get_job("tick").await.expect("job");
    assert!(job.status.next_run_at.is_some_and(|t| t % 2000 == 0), "{job:?}");
    let runs = wait_for("two scheduled runs, the first finished", Duration::from_secs(60), || async {
        let mut runs = cluster.client.list_job_runs("tick").await.ok()?;
        runs.sort_by_key(|r| r.created_at);
        (runs.len() >= 2 && runs[0].status == RunStatus::Success).then_some(runs)
    })
    .await;
    for run in &runs {
        let RunTrigger::Schedule { schedule_id, scheduled_at } = &run.trigger else { panic!("{run:?}") };
        assert_eq!(schedule_id, "every-2s");
        assert_eq!(scheduled_at % 2000, 0, "fires on the cron times: {run:?}");
        assert!(run.created_at >= *scheduled_at && run.created_at - scheduled_at <= 10_000, "{run:?}");
    }
    // FORBID: a run starts only after the previous one ended (times the schedule fired in
    // between were skipped), although the schedule fires more often than a run lasts.
    for pair in runs.windows(2) {
        let finished = pair[0].finished_at.expect("the earlier run ended before the next started");
        assert!(pair[1].created_at >= finished, "runs overlap: {pair:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_job_files_parse_and_deploy_and_the_api_refuses_what_it_must() {
    let cluster = Cluster::start(1).await;
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("configs/jobs"))
        .expect("configs/jobs")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml" || x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    for file in &files {
        let definition = gantry_api::workload::read_job_file(file).expect("example job is valid");
        let path = file.display().to_string();
        let (ok, stdout, stderr) = cluster.gantry(&["job", "deploy", &path]);
        assert!(ok, "{path}: {stderr}");
        assert!(stdout.contains(&definition.id), "{stdout}");
        let job = cluster.client.get_job(&definition.id).await.expect("deployed");
        assert_eq!(job.definition, definition);
    }
    let (ok, stdout, _) = cluster.gantry(&["job", "list"]);
    assert!(ok && stdout.contains("nightly-backup"), "{stdout}");
    let run = cluster.client.start_job_run("report").await.expect("start report");
    assert_eq!(wait_run_ended(&cluster, "report", &run.id).await.status, RunStatus::Success);

    // A run that fits no agent says why, and can still be stopped.
    let client = &cluster.client;
    let mut huge = job("huge", "true");
    huge.run.cpus = 64.0;
    client.put_job(&huge).await.expect("deploy huge");
    let run = client.start_job_run("huge").await.expect("start huge");
    let waiting = wait_for("the run to say why it waits", Duration::from_secs(30), || async {
        let run = client.get_job_run("huge", &run.id).await.ok()?;
        run.message.as_deref().is_some_and(|m| m.starts_with("waiting for resources")).then_some(run)
    })
    .await;
    assert_eq!(waiting.status, RunStatus::Initial, "{waiting:?}");
    client.stop_job_run("huge", &run.id).await.expect("stop huge");
    assert_eq!(wait_run_ended(&cluster, "huge", &run.id).await.message.as_deref(), Some("stopped on request"));

    // Errors as for apps: 404, 409 (ids shared with apps, active runs), 422 with the field.
    assert_eq!(client.start_job_run("nope").await.expect_err("no job").status(), Some(404));
    assert_eq!(client.get_job_run("report", "nope").await.expect_err("no run").status(), Some(404));
    assert_eq!(client.create_job(&job("report", "true")).await.expect_err("exists").status(), Some(409));
    let app: gantry_api::AppDefinition = serde_json::from_str(r#"{"id":"svc","cmd":"sleep 600"}"#).expect("app");
    client.put_app(&app).await.expect("deploy app");
    assert_eq!(client.put_job(&job("svc", "true")).await.expect_err("app id").status(), Some(409));
    let named_like_a_job: gantry_api::AppDefinition =
        serde_json::from_str(r#"{"id":"report","cmd":"sleep 600"}"#).expect("app");
    let err = client.put_app(&named_like_a_job).await.expect_err("job id");
    assert_eq!(err.status(), Some(409), "{err}");
    assert!(err.to_string().contains("share one namespace"), "{err}");
    let mut bad = job("bad", "true");
    bad.run.cpus = 0.0;
    let err = client.put_job(&bad).await.expect_err("invalid");
    let gantry_api::ClientError::Api { status, error } = err else { panic!("{err}") };
    assert_eq!((status, error.field.as_deref()), (422, Some("run.cpus")));
    client.put_job(&job("busy", "sleep 600")).await.expect("deploy busy");
    let busy = client.start_job_run("busy").await.expect("start busy");
    assert_eq!(client.delete_job("busy", false).await.expect_err("active run").status(), Some(409));
    client.delete_job("busy", true).await.expect("delete with stop");
    assert_eq!(client.get_job_run("busy", &busy.id).await.expect_err("gone").status(), Some(404));
    // The app's tasks were not touched by the jobs framework, nor job tasks by services.
    let svc = cluster.wait_running("svc", 1, false).await;
    assert!(svc.iter().all(|t| !t.id.contains('_')));
}
