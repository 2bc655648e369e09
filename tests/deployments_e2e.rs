//! End-to-end tests of versions and deployments with the real binary: a master and three agents
//! as processes, HTTP-serving tasks, the CLI for rollbacks, cancels and promotions.

mod support;

use gantry_api::{AppDefinition, Client, Deployment, DeploymentStatus, TaskState, UpgradeStrategy};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::{Cluster, repo_root, wait_for};

fn web_app(id: &str, instances: u32) -> AppDefinition {
    let mut app = gantry_api::workload::read_app_file(&repo_root().join("configs/apps/web.toml")).expect("web.toml");
    app.id = id.to_string();
    app.instances = instances;
    for check in &mut app.health_checks {
        check.grace_period = 2.0;
        check.interval = 0.5;
        check.timeout = 0.5;
        check.max_consecutive_failures = 2;
    }
    app
}

fn with_version(mut app: AppDefinition, version: &str) -> AppDefinition {
    app.env.insert("APP_RELEASE".to_string(), version.to_string());
    app
}

async fn deployment(client: &Client, id: &str) -> Deployment {
    client.get_deployment(id).await.expect("the deployment exists")
}

async fn wait_status(cluster: &Cluster, id: &str, status: DeploymentStatus, timeout: Duration) -> Deployment {
    let client = cluster.client.clone();
    let found = tokio::time::timeout(timeout, async {
        loop {
            if let Ok(d) = client.get_deployment(id).await
                && d.status == status
            {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    match found {
        Ok(d) => d,
        Err(_) => panic!(
            "deployment {id} did not become {status} within {timeout:?}: {:#?}\n{}",
            client.get_deployment(id).await.ok(),
            cluster.logs()
        ),
    }
}

fn deployment_of(app: &gantry_api::App) -> String {
    app.status.deployment.clone().expect("a change of an existing app starts a deployment")
}

/// Polls every port any task of `app` ever had and records the fewest answering in one round,
/// and the most active (staging or running) tasks the API reported.
struct Poller {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<(usize, usize, usize)>,
}

impl Poller {
    fn start(client: Client, app: &str) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let app = app.to_string();
        let handle = tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().expect("http client");
            let mut ports = BTreeSet::new();
            let (mut fewest, mut most_active, mut rounds) = (usize::MAX, 0, 0);
            while !flag.load(Ordering::SeqCst) {
                if let Ok(tasks) = client.list_tasks(Some(&app), true).await {
                    let active = tasks.iter().filter(|t| t.state.is_active()).count();
                    most_active = most_active.max(active);
                    ports.extend(tasks.iter().filter_map(|t| t.ports.first().copied()));
                }
                let mut serving = 0;
                for port in &ports {
                    let ok = http
                        .get(format!("http://127.0.0.1:{port}/"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    serving += usize::from(ok);
                }
                fewest = fewest.min(serving);
                rounds += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (fewest, most_active, rounds)
        });
        Poller { stop, handle }
    }

    async fn finish(self) -> (usize, usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.await.expect("poller")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_change_keeps_minimum_health_capacity_serving_and_rollback_restores() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client.clone();
    // Half may be down at once and nothing runs beyond 3.
    let mut v1 = with_version(web_app("roll", 3), "1");
    let half =
        UpgradeStrategy { minimum_health_capacity: 0.5, maximum_over_capacity: 0.0, ..UpgradeStrategy::default() };
    v1.upgrade_strategy = half;
    client.put_app(&v1).await.expect("deploy v1");
    cluster.wait_running("roll", 3, true).await;

    // Keeping all 3 ready (the default) with UNIQUE hostname on 3 hosts leaves no room to
    // start a new instance, and the deployment says why.
    let mut v2 = with_version(v1.clone(), "2");
    v2.upgrade_strategy = UpgradeStrategy::default();
    let stuck = client.put_app(&v2).await.expect("deploy v2");
    let stuck_id = deployment_of(&stuck);
    let reason = wait_for("the stuck deployment to say why", Duration::from_secs(20), || async {
        deployment(&client, &stuck_id).await.reason.filter(|r| r.contains("no agent satisfies UNIQUE hostname"))
    })
    .await;
    assert!(reason.contains("no agent satisfies UNIQUE hostname"), "{reason}");
    let (ok, stdout, stderr) = cluster.gantry(&["deployment", "show", &stuck_id]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("reason:     ") && stdout.contains("UNIQUE hostname"), "{stdout}");
    assert!(stdout.contains("step:       replace"), "{stdout}");

    // With half allowed down the change rolls, and a client polling the service always finds
    // at least 2 instances answering.
    let poller = Poller::start(client.clone(), "roll");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v3 = with_version(v1.clone(), "3");
    let app = client.put_app(&v3).await.expect("deploy v3");
    assert_eq!(app.version, 3);
    let rolling_id = deployment_of(&app);
    let superseded = deployment(&client, &stuck_id).await;
    assert_eq!(superseded.status, DeploymentStatus::Superseded);
    let done = wait_status(&cluster, &rolling_id, DeploymentStatus::Succeeded, Duration::from_secs(90)).await;
    let (fewest, most_active, rounds) = poller.finish().await;
    assert!(rounds > 5, "the poller ran ({rounds} rounds)");
    assert!(fewest >= 2, "at least ceil(0.5 × 3) = 2 instances served throughout; fewest seen: {fewest}");
    assert!(most_active <= 3, "at most 3 + floor(0.0 × 3) instances ran at once; saw {most_active}");
    assert_eq!((done.progress.new_ready, done.progress.old_active), (3, 0), "{done:#?}");
    let tasks = cluster.wait_running("roll", 3, true).await;
    assert!(tasks.iter().all(|t| t.app_version == 3), "{tasks:?}");

    // Versions are kept; the CLI lists them and deployments.
    let versions = client.app_versions("roll").await.expect("versions");
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 2, 3]);
    let (ok, stdout, stderr) = cluster.gantry(&["app", "versions", "roll"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    let (ok, stdout, stderr) = cluster.gantry(&["deployment", "list", "--app", "roll"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&rolling_id) && stdout.contains("succeeded") && stdout.contains("superseded"), "{stdout}");

    // Rollback to version 1 restores its definition as version 4, rolled out the same way.
    let (ok, stdout, stderr) = cluster.gantry(&["app", "rollback", "roll", "--to", "1"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("rolling back (version 4"), "{stdout}");
    let app = client.get_app("roll").await.expect("app");
    assert_eq!(app.version, 4);
    assert_eq!(app.definition.env.get("APP_RELEASE").map(String::as_str), Some("1"));
    wait_status(&cluster, &deployment_of(&app), DeploymentStatus::Succeeded, Duration::from_secs(90)).await;
    let tasks = cluster.wait_running("roll", 3, true).await;
    assert!(tasks.iter().all(|t| t.app_version == 4), "{tasks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_version_stops_says_why_and_rolls_back_on_the_deadline() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client.clone();
    let mut v1 = web_app("fragile", 2);
    v1.constraints.clear();
    v1.upgrade_strategy =
        UpgradeStrategy { progress_deadline: 12.0, auto_rollback: true, ..UpgradeStrategy::default() };
    client.put_app(&v1).await.expect("deploy v1");
    let before = cluster.wait_running("fragile", 2, true).await;

    // Version 2 never listens on its port: its tasks fail their health checks.
    let mut v2 = v1.clone();
    v2.cmd = Some("exec sleep 1000".to_string());
    let app = client.put_app(&v2).await.expect("deploy v2");
    let id = deployment_of(&app);
    let reason = wait_for("the deployment to say why it cannot progress", Duration::from_secs(30), || async {
        deployment(&client, &id).await.reason.filter(|r| r.contains("failed health checks: connection refused"))
    })
    .await;
    assert!(
        reason.contains("new task") && reason.contains("failed health checks: connection refused on port http"),
        "{reason}"
    );
    let stalled = deployment(&client, &id).await;
    assert_eq!(stalled.status, DeploymentStatus::Running);
    assert_eq!(stalled.progress.old_ready, 2, "the old version keeps serving: {stalled:#?}");

    // The deadline passes: the deployment fails and version 1 comes back as version 3.
    let failed = wait_status(&cluster, &id, DeploymentStatus::RolledBack, Duration::from_secs(60)).await;
    let why = failed.reason.clone().unwrap_or_default();
    assert!(why.contains("progress deadline of 12s") && why.contains("connection refused"), "{why}");
    let rollback_id = failed.rollback_id.clone().expect("a rollback deployment");
    let rollback = wait_status(&cluster, &rollback_id, DeploymentStatus::Succeeded, Duration::from_secs(60)).await;
    assert_eq!((rollback.from_version, rollback.to_version), (2, 3));
    let app = client.get_app("fragile").await.expect("app");
    assert_eq!((app.version, app.definition.cmd.clone()), (3, v1.cmd.clone()));
    let after = cluster.wait_running("fragile", 2, true).await;
    assert!(after.iter().all(|t| t.app_version == 3), "{after:?}");
    for task in before {
        let old = client.get_task(&task.id).await;
        assert!(old.is_err() || old.is_ok_and(|t| t.state.is_terminal() || t.state == TaskState::Killing));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_wait_for_promotion_survive_a_master_restart_and_cancel_reverts() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client.clone();
    let mut v1 = with_version(web_app("bird", 2), "1");
    v1.constraints.clear();
    v1.upgrade_strategy = UpgradeStrategy { canary: 1, ..UpgradeStrategy::default() };
    client.put_app(&v1).await.expect("deploy v1");
    cluster.wait_running("bird", 2, true).await;

    // One canary starts beside the two old instances, and the deployment pauses.
    let app = client.put_app(&with_version(v1.clone(), "2")).await.expect("deploy v2");
    let id = deployment_of(&app);
    let paused = wait_status(&cluster, &id, DeploymentStatus::Paused, Duration::from_secs(40)).await;
    assert_eq!((paused.progress.new_ready, paused.progress.old_ready), (1, 2), "{paused:#?}");
    assert!(paused.reason.as_deref().is_some_and(|r| r.contains("gantry deployment promote")), "{paused:#?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(deployment(&client, &id).await.status, DeploymentStatus::Paused, "it waits for promotion");

    // A master restart keeps the paused deployment, and the restarted master drives it on.
    cluster.kill_master();
    cluster.start_master();
    cluster.wait_agents_active(3).await;
    let after_restart = deployment(&client, &id).await;
    assert_eq!((after_restart.status, after_restart.progress.new_ready), (DeploymentStatus::Paused, 1));
    let (ok, stdout, stderr) = cluster.gantry(&["deployment", "promote", &id]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("promoted"), "{stdout}");
    wait_status(&cluster, &id, DeploymentStatus::Succeeded, Duration::from_secs(60)).await;
    let tasks = cluster.wait_running("bird", 2, true).await;
    assert!(tasks.iter().all(|t| t.app_version == 2), "{tasks:?}");

    // Version 3 pauses on its canary; cancelling it brings version 2 back (as version 4).
    let app = client.put_app(&with_version(v1.clone(), "3")).await.expect("deploy v3");
    let id = deployment_of(&app);
    wait_status(&cluster, &id, DeploymentStatus::Paused, Duration::from_secs(40)).await;
    let (ok, stdout, stderr) = cluster.gantry(&["deployment", "cancel", &id]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("returns to version 2"), "{stdout}");
    let cancelled = deployment(&client, &id).await;
    assert_eq!(cancelled.status, DeploymentStatus::Cancelled);
    let rollback_id = cancelled.rollback_id.expect("a rollback deployment");
    wait_status(&cluster, &rollback_id, DeploymentStatus::Succeeded, Duration::from_secs(60)).await;
    let app = client.get_app("bird").await.expect("app");
    assert_eq!(app.version, 4);
    assert_eq!(app.definition.env.get("APP_RELEASE").map(String::as_str), Some("2"));
    wait_for("only version 4 tasks", Duration::from_secs(30), || async {
        let tasks = client.list_tasks(Some("bird"), false).await.ok()?;
        let active: Vec<_> = tasks.iter().filter(|t| t.state.is_active()).collect();
        (active.len() == 2 && active.iter().all(|t| t.app_version == 4 && t.healthy == Some(true))).then_some(())
    })
    .await;
    let (ok, _, stderr) = cluster.gantry(&["deployment", "cancel", &id]);
    assert!(!ok && stderr.contains("cancelled, not running"), "{stderr}");
}
