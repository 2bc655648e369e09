//! End-to-end tests of the real binary: a master and three agents as processes, real tasks.

mod support;

use gantry_api::{AppDefinition, TaskState};
use std::time::Duration;
use support::{Cluster, gantry, repo_root, wait_for};

fn web_app(id: &str, instances: u32) -> AppDefinition {
    let mut app = gantry_api::workload::read_app_file(&repo_root().join("configs/apps/web.toml")).expect("web.toml");
    app.id = id.to_string();
    app.instances = instances;
    app
}

async fn http_ok(port: u16) -> bool {
    let url = format!("http://127.0.0.1:{port}/");
    reqwest::get(&url).await.is_ok_and(|r| r.status().is_success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_with_health_checks_survives_task_agent_and_master_failures() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client.clone();

    // Three HTTP-serving instances, one per host, all healthy and answering.
    client.put_app(&web_app("web", 3)).await.expect("deploy web");
    let tasks = cluster.wait_running("web", 3, true).await;
    let hosts: std::collections::BTreeSet<_> = tasks.iter().map(|t| t.host.clone()).collect();
    assert_eq!(hosts.len(), 3, "UNIQUE hostname spreads the instances: {tasks:?}");
    for task in &tasks {
        assert!(http_ok(task.ports[0]).await, "task {} serves HTTP on {}", task.id, task.ports[0]);
    }

    // Kill one task's process: the app replaces it.
    let victim = &tasks[0];
    let pid = cluster
        .task_processes()
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|e| String::from_utf8_lossy(&e).contains(&victim.id))
        })
        .expect("the victim's process");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).expect("kill task");
    wait_for("the killed task to be replaced", Duration::from_secs(30), || async {
        let tasks = client.list_tasks(Some("web"), false).await.ok()?;
        let healthy: Vec<_> =
            tasks.into_iter().filter(|t| t.state == TaskState::Running && t.healthy == Some(true)).collect();
        (healthy.len() == 3 && healthy.iter().all(|t| t.id != victim.id)).then_some(())
    })
    .await;
    let old = client.get_task(&victim.id).await.expect("the old task is still known");
    assert!(old.state.is_terminal(), "the killed task is terminal: {old:?}");

    // Kill an agent process: after the unreachable timeout its task runs elsewhere. UNIQUE
    // hostname on 3 hosts leaves no room for a replacement at 3 instances, so scale to 2 first.
    client.scale_app("web", 2).await.expect("scale to 2");
    let two = cluster.wait_running("web", 2, true).await;
    let doomed_host = two[0].host.clone();
    let doomed: usize = doomed_host.trim_start_matches("host-").parse().expect("host-N");
    cluster.kill_agent(doomed);
    let moved = wait_for("tasks of the killed agent to run elsewhere", Duration::from_secs(30), || async {
        let tasks = client.list_tasks(Some("web"), false).await.ok()?;
        let running: Vec<_> =
            tasks.into_iter().filter(|t| t.state == TaskState::Running && t.healthy == Some(true)).collect();
        (running.len() == 2 && running.iter().all(|t| t.host != doomed_host)).then_some(running)
    })
    .await;
    assert_eq!(moved.len(), 2, "{}", cluster.logs());

    // The agent comes back: the task it still runs was replaced, so it is killed there.
    cluster.agents[doomed] = Some(cluster.spawn_agent(doomed));
    cluster.wait_agents_active(3).await;
    let stale = two[0].id.clone();
    wait_for("the stale task to be killed on the returning agent", Duration::from_secs(30), || async {
        let task = client.get_task(&stale).await.ok()?;
        let alive = cluster.task_processes().into_iter().any(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|e| String::from_utf8_lossy(&e).contains(&stale))
        });
        (task.state.is_terminal() && !alive).then_some(())
    })
    .await;

    // Restart the master (SIGKILL): apps and tasks are all still there, agents reconnect.
    let before: Vec<String> = cluster.wait_running("web", 2, true).await.into_iter().map(|t| t.id).collect();
    cluster.kill_master();
    cluster.start_master();
    cluster.wait_agents_active(3).await;
    let app = client.get_app("web").await.expect("the app survived the master restart");
    assert_eq!(app.definition.instances, 2);
    let after = cluster.wait_running("web", 2, true).await;
    let mut after_ids: Vec<String> = after.into_iter().map(|t| t.id).collect();
    let mut before_ids = before;
    after_ids.sort();
    before_ids.sort();
    assert_eq!(before_ids, after_ids, "the same tasks run after the master restart");

    // Delete: no task process is left.
    client.delete_app("web").await.expect("delete");
    wait_for("no task processes after delete", Duration::from_secs(30), || async {
        cluster.task_processes().is_empty().then_some(())
    })
    .await;
    assert!(client.get_app("web").await.is_err(), "the app is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_and_down_leaves_no_processes_and_unplaceable_apps_say_why() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client.clone();
    let mut app = gantry_api::workload::read_app_file(&repo_root().join("configs/apps/hello.toml")).expect("hello");
    app.instances = 2;
    client.put_app(&app).await.expect("deploy hello");
    cluster.wait_running("hello", 2, false).await;
    client.scale_app("hello", 5).await.expect("scale up");
    cluster.wait_running("hello", 5, false).await;
    client.scale_app("hello", 1).await.expect("scale down");
    cluster.wait_running("hello", 1, false).await;
    wait_for("one task left running", Duration::from_secs(20), || async {
        (cluster.live_task_ids().len() == 1).then_some(())
    })
    .await;
    let stopped = wait_for("four tasks stopped by the scale-down", Duration::from_secs(20), || async {
        let all = client.list_tasks(Some("hello"), true).await.ok()?;
        let killed: Vec<_> = all.into_iter().filter(|t| t.state == TaskState::Killed).collect();
        (killed.len() == 4).then_some(killed)
    })
    .await;
    for task in stopped {
        let message = task.message.unwrap_or_default();
        assert!(message.starts_with("scaled down to 1 instances; "), "{message}");
        assert!(message.contains("SIGTERM"), "the task got SIGTERM, not the SIGKILL after the grace period: {message}");
    }

    // Four instances, UNIQUE hostname, three hosts: three run and the app says why.
    let mut unique = app.clone();
    unique.id = "unique".to_string();
    unique.instances = 4;
    unique.constraints = vec![vec!["hostname".to_string(), "UNIQUE".to_string()].try_into().expect("constraint")];
    client.put_app(&unique).await.expect("deploy unique");
    cluster.wait_running("unique", 3, false).await;
    let waiting = wait_for("the app to say why", Duration::from_secs(10), || async {
        client.get_app("unique").await.ok()?.status.waiting
    })
    .await;
    assert_eq!(waiting, "no agent satisfies UNIQUE hostname: 3 agents, 4 instances");

    // The CLI shows it too, as a table and as JSON.
    let (ok, stdout, stderr) = cluster.gantry(&["app", "show", "unique"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("waiting:    no agent satisfies UNIQUE hostname"), "{stdout}");
    let (ok, stdout, _) = cluster.gantry(&["app", "list", "--output", "json"]);
    assert!(ok);
    let apps: Vec<gantry_api::App> = serde_json::from_str(&stdout).expect("JSON list of apps");
    assert_eq!(apps.len(), 2);

    client.delete_app("hello").await.expect("delete hello");
    client.delete_app("unique").await.expect("delete unique");
    wait_for("no task processes after delete", Duration::from_secs(20), || async {
        cluster.task_processes().is_empty().then_some(())
    })
    .await;
}

/// A registry holding `team/web:1.4` (busybox serving `/www/index.html`), as the container
/// examples name it.
async fn container_registry() -> gantry_lab::registry::TestRegistry {
    use gantry_lab::registry::{RegistryOptions, TestImage, TestLayer, TestRegistry};
    let registry = TestRegistry::start(RegistryOptions::default()).expect("registry");
    let page = TestLayer::new().file("www/index.html", "web 1.4\n", 0o644);
    let image = TestImage::busybox().expect("busybox").layer(page);
    image.push(&registry, "team/web:1.4").await.expect("push");
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_app_deploys_and_runs() {
    let cluster = Cluster::start(3).await;
    let mut ids = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(repo_root().join("configs/apps"))
        .expect("configs/apps")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    assert!(entries.len() >= 3, "example apps exist");
    // Container examples name a registry on 127.0.0.1:5000: they are deployed from a real one
    // that this test starts, with the image they name built from busybox-static.
    let scratch = tempfile::tempdir().expect("temp dir");
    let mut registry = None;
    for path in entries {
        let text = std::fs::read_to_string(&path).expect("readable example");
        let path = if text.contains("[container]") {
            let missing = if nix::unistd::Uid::effective().is_root() {
                gantry_lab::registry::TestRegistry::missing()
            } else {
                Some("container examples need root (mounts, namespaces)".to_string())
            };
            if let Some(reason) = missing {
                support::skipped(&format!("{}: {reason}", path.display()));
                continue;
            }
            let registry = match &registry {
                Some(registry) => registry,
                None => registry.insert(container_registry().await),
            };
            let copy = scratch.path().join(path.file_name().expect("a file name"));
            std::fs::write(&copy, text.replace("127.0.0.1:5000", registry.address())).expect("write");
            copy
        } else {
            path
        };
        let (ok, stdout, stderr) = cluster.gantry(&["app", "deploy", path.to_str().expect("utf-8 path")]);
        assert!(ok, "deploy {}: {stderr}", path.display());
        assert!(stdout.contains("deployed"), "{stdout}");
        let app = gantry_api::workload::read_app_file(&path).expect("valid example");
        ids.push((app.id.clone(), app.instances as usize, !app.health_checks.is_empty()));
    }
    for (id, instances, healthy) in &ids {
        cluster.wait_running(id, *instances, *healthy).await;
    }

    // Logs of a task, through the master and the agent.
    let hello = cluster.wait_running("hello", 1, false).await;
    let logs = wait_for("hello's greeting in its log", Duration::from_secs(10), || async {
        let (ok, stdout, _) = cluster.gantry(&["task", "logs", &hello[0].id]);
        (ok && stdout.contains("hello from")).then_some(stdout)
    })
    .await;
    assert!(logs.contains(&hello[0].id), "{logs}");

    let (ok, stdout, _) = cluster.gantry(&["node", "list"]);
    assert!(ok);
    assert_eq!(stdout.lines().filter(|l| l.contains("ACTIVE")).count(), 3, "{stdout}");
    for (id, _, _) in &ids {
        let (ok, _, stderr) = cluster.gantry(&["app", "delete", id]);
        assert!(ok, "{stderr}");
    }
    wait_for("no task processes after deleting every app", Duration::from_secs(30), || async {
        cluster.task_processes().is_empty().then_some(())
    })
    .await;
}

#[test]
fn bad_workload_files_name_file_line_and_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        ("unknown.toml", "id = \"a\"\ncmd = \"true\"\ninstanses = 2\n", ":3:1:", "instanses"),
        ("type.toml", "id = \"a\"\ncmd = \"true\"\ninstances = \"two\"\n", ":3:13:", "invalid type"),
        ("nocmd.toml", "id = \"a\"\n", ":1:1:", "set `cmd`"),
        ("badid.json", "{\n  \"id\": \"Bad_Id\",\n  \"cmd\": \"true\"\n}\n", ":2:3:", "not a valid id"),
        ("cpus.toml", "id = \"a\"\ncmd = \"true\"\ncpus = 0\n", ":3:1:", "greater than 0"),
    ];
    for (name, text, position, hint) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        // No master is needed: the file is rejected before any request.
        let (ok, _, stderr) = gantry("http://127.0.0.1:9", &["app", "deploy", path.to_str().expect("utf-8")]);
        assert!(!ok, "{name} must be rejected");
        assert!(stderr.contains(&format!("{}{position}", path.display())), "{name}: {stderr}");
        assert!(stderr.contains(hint), "{name}: {stderr}");
    }
    let (ok, _, stderr) = gantry("http://127.0.0.1:9", &["app", "list"]);
    assert!(!ok);
    assert!(stderr.contains("cannot reach the master at http://127.0.0.1:9"), "{stderr}");
}
