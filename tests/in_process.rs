//! The in-process cluster: a real master and N real agents in this test process, on loopback
//! (Mesos' `cluster.hpp`, Nomad's `testing.go`). Tasks are real processes started through the
//! `gantry` binary's executor. Faster than spawning daemons, and agents can be stopped and
//! restarted as if their process had died.

mod support;

use gantry_api::{AppDefinition, Client, PortRange, Resources, TaskState};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use support::{BIN, wait_for};

struct InProcessCluster {
    dir: tempfile::TempDir,
    master: Option<gantry_master::MasterHandle>,
    agents: Vec<Option<gantry_agent::AgentHandle>>,
    client: Client,
    url: String,
    port_base: u16,
}

fn agent_config(dir: &std::path::Path, url: &str, i: usize, port_base: u16) -> gantry_agent::AgentConfig {
    let begin = port_base + (i as u16) * 100;
    gantry_agent::AgentConfig {
        master: url.to_string(),
        work_dir: dir.join(format!("agent-{i}")),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        hostname: Some(format!("node-{i}")),
        resources: Some(Resources {
            cpus: 2.0,
            mem: 1024.0,
            disk: 1000.0,
            gpus: 0,
            ports: vec![PortRange { begin, end: begin + 99 }],
        }),
        attributes: BTreeMap::from([("zone".to_string(), format!("z{}", i % 2))]),
        executor_path: BIN.into(),
        join_token: Some(support::seed_trust(&dir.join("master")).1),
        task_user: None,
        task_limits: Default::default(),
        images: Default::default(),
        gpus: Default::default(),
        cgroup_favordynmods: false,
    }
}

impl InProcessCluster {
    async fn start(agents: usize) -> Self {
        let dir = support::traversable_temp_dir("gantry-inproc-");
        let mut config =
            gantry_master::MasterConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), dir.path().join("master"));
        config.heartbeat_interval = Duration::from_millis(200);
        config.agent_unreachable_timeout = Duration::from_millis(1000);
        let master = gantry_master::start(config).await.expect("master starts");
        let url = format!("https://{}", master.local_addr());
        let client = support::admin_client(&url, &dir.path().join("master"));
        let port_base = support::port_block(500);
        let mut handles = Vec::new();
        for i in 0..agents {
            handles.push(Some(
                gantry_agent::start(agent_config(dir.path(), &url, i, port_base)).await.expect("agent starts"),
            ));
        }
        let cluster = Self { dir, master: Some(master), agents: handles, client, url, port_base };
        cluster.wait_active(agents).await;
        cluster
    }

    async fn wait_active(&self, n: usize) {
        wait_for(&format!("{n} active agents"), Duration::from_secs(20), || async {
            let agents = self.client.list_agents().await.ok()?;
            (agents.iter().filter(|a| a.state == gantry_api::AgentState::Active).count() == n).then_some(())
        })
        .await;
    }

    async fn running(&self, app: &str, n: usize) -> Vec<gantry_api::Task> {
        wait_for(&format!("{n} running tasks of {app}"), Duration::from_secs(30), || async {
            let tasks = self.client.list_tasks(Some(app), false).await.ok()?;
            let running: Vec<_> = tasks.into_iter().filter(|t| t.state == TaskState::Running).collect();
            (running.len() == n).then_some(running)
        })
        .await
    }
}

impl Drop for InProcessCluster {
    fn drop(&mut self) {
        support::kill_all(self.dir.path());
    }
}

fn sleeper(id: &str, instances: u32) -> AppDefinition {
    let text = format!("id = \"{id}\"\ncmd = \"exec sleep 100000\"\ninstances = {instances}\ncpus = 0.5\nmem = 64\n");
    gantry_api::workload::parse_app("inline.toml", &text, false).expect("valid app")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_restart_without_losing_tasks_and_resources_are_accounted() {
    let mut cluster = InProcessCluster::start(3).await;
    let client = cluster.client.clone();

    // Six half-cpu instances on three 2-cpu agents; the allocator spreads them.
    client.put_app(&sleeper("sleepy", 6)).await.expect("deploy");
    let tasks = cluster.running("sleepy", 6).await;
    let agents = client.list_agents().await.expect("agents");
    for agent in &agents {
        let here = tasks.iter().filter(|t| t.agent_id == agent.info.id).count();
        assert_eq!(here, 2, "instances spread evenly: {agents:?}");
        assert!(
            (agent.used.cpus - 1.0).abs() < 1e-9,
            "used cpus accounted on {}: {}",
            agent.info.hostname,
            agent.used.cpus
        );
        assert_eq!(agent.tasks, 2);
    }

    // Ask for more than fits: 2 cpus × 3 agents = 6 cpus, 0.5 each → at most 12 instances.
    client.scale_app("sleepy", 13).await.expect("scale");
    cluster.running("sleepy", 12).await;
    let waiting = wait_for("a reason for the 13th", Duration::from_secs(10), || async {
        client.get_app("sleepy").await.ok()?.status.waiting
    })
    .await;
    assert!(waiting.contains("insufficient resources"), "{waiting}");
    client.scale_app("sleepy", 6).await.expect("scale back");
    let before = cluster.running("sleepy", 6).await;

    // An agent stops (as if its process died) and starts again within the unreachable
    // timeout: its tasks are re-adopted, not replaced.
    let agent = cluster.agents[1].take().expect("agent 1");
    let id = agent.agent_id().to_string();
    agent.shutdown().await;
    let port_base = cluster.port_base;
    let restarted =
        gantry_agent::start(agent_config(cluster.dir.path(), &cluster.url, 1, port_base)).await.expect("restart");
    assert_eq!(restarted.agent_id(), id, "the agent id persists in its work dir");
    cluster.agents[1] = Some(restarted);
    cluster.wait_active(3).await;
    let after = cluster.running("sleepy", 6).await;
    let ids =
        |tasks: &[gantry_api::Task]| tasks.iter().map(|t| t.id.clone()).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(ids(&before), ids(&after), "no task was replaced");

    // The master restarts on its data dir: same apps and tasks.
    let master = cluster.master.take().expect("master");
    let addr = master.local_addr();
    master.shutdown().await;
    let mut config = gantry_master::MasterConfig::new(addr, cluster.dir.path().join("master"));
    config.heartbeat_interval = Duration::from_millis(200);
    config.agent_unreachable_timeout = Duration::from_millis(1000);
    cluster.master = Some(gantry_master::start(config).await.expect("master restarts on the same address"));
    cluster.wait_active(3).await;
    let again = cluster.running("sleepy", 6).await;
    assert_eq!(ids(&before), ids(&again), "nothing lost across the master restart");

    client.delete_app("sleepy").await.expect("delete");
    wait_for("all tasks gone", Duration::from_secs(20), || async {
        let tasks = client.list_tasks(Some("sleepy"), false).await.ok()?;
        tasks.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unhealthy_task_is_killed_and_replaced() {
    let cluster = InProcessCluster::start(2).await;
    let client = cluster.client.clone();
    // Healthy until the test creates `$GANTRY_SANDBOX/sick`.
    let text = "id = \"flaky\"\ncmd = \"exec sleep 100000\"\ncpus = 0.1\nmem = 16\n\n[[health_checks]]\nprotocol = \"COMMAND\"\ncommand = \"test ! -f sick\"\ngrace_period = 0\ninterval = 0.2\ntimeout = 1\nmax_consecutive_failures = 2\n";
    let app = gantry_api::workload::parse_app("flaky.toml", text, false).expect("valid");
    client.put_app(&app).await.expect("deploy");
    let first = wait_for("a healthy task", Duration::from_secs(20), || async {
        let tasks = client.list_tasks(Some("flaky"), false).await.ok()?;
        tasks.into_iter().find(|t| t.state == TaskState::Running && t.healthy == Some(true))
    })
    .await;
    let sandbox = cluster
        .dir
        .path()
        .read_dir()
        .expect("cluster dir")
        .flatten()
        .map(|agent_dir| agent_dir.path().join("tasks").join(&first.id))
        .find(|p| p.is_dir())
        .expect("the task's sandbox");
    std::fs::write(sandbox.join("sick"), b"").expect("make it sick");
    let replacement = wait_for("a healthy replacement", Duration::from_secs(30), || async {
        let tasks = client.list_tasks(Some("flaky"), false).await.ok()?;
        tasks.into_iter().find(|t| t.id != first.id && t.state == TaskState::Running && t.healthy == Some(true))
    })
    .await;
    let old = client.get_task(&first.id).await.expect("old task");
    assert_eq!(old.state, TaskState::Killed, "{old:?}");
    assert!(old.message.as_deref().unwrap_or_default().contains("health check"), "{old:?}");
    assert_ne!(replacement.id, first.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_renews_its_certificate_for_the_same_key_only() {
    let cluster = InProcessCluster::start(1).await;
    let agent = cluster.agents[0].as_ref().expect("agent 0");
    let work_dir = cluster.dir.path().join("agent-0");
    let tls = work_dir.join("tls");
    let read = |name: &str| std::fs::read_to_string(tls.join(name)).expect(name);
    let current = gantry_agent::join::Credentials {
        ca_pem: read("ca.pem"),
        cert_pem: read("agent.pem"),
        key_pem: read("agent-key.pem"),
    };
    let now = i64::try_from(gantry_api::now_millis() / 1000).expect("now");
    assert!(!gantry_agent::join::renewal_due(&current, now), "a new certificate is not due");
    assert!(gantry_agent::join::renewal_due(&current, now + 21 * 24 * 3600), "due with a third of its life left");

    let renewed = gantry_agent::join::renew(&work_dir, agent.agent_id(), &cluster.url, &current).await.expect("renew");
    assert_ne!(renewed.cert_pem, current.cert_pem);
    assert_eq!(read("agent.pem"), renewed.cert_pem, "the renewed certificate is stored");
    let der = gantry_trust::pki::pem_certs(&renewed.cert_pem).pop().expect("certificate");
    assert_eq!(
        gantry_trust::Identity::from_cert_der(&der).expect("identity"),
        gantry_trust::Identity::Agent(agent.agent_id().to_string())
    );

    // A CSR for another key under the same id is refused, even over the agent's own certificate:
    // a stolen certificate cannot be moved to a new key.
    let tls = gantry_trust::tls::client_config(&renewed.ca_pem, Some((&renewed.cert_pem, &renewed.key_pem)))
        .expect("client TLS");
    let http = reqwest::Client::builder().tls_backend_preconfigured(tls).build().expect("client");
    let (other_csr, _) = gantry_trust::pki::new_csr().expect("a CSR for another key");
    let response = http
        .post(format!("{}/internal/v1/agents/{}/renew", cluster.url, agent.agent_id()))
        .json(&gantry_api::security::RenewRequest { csr: other_csr })
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 403);
    cluster.client.list_agents().await.expect("the cluster still answers");
}

/// Follows the event stream from a moment when `app` is steady and counts its healthy RUNNING
/// tasks after every event; `finish` answers the fewest seen and how many events of `app` came.
struct HealthyCount {
    handle: tokio::task::JoinHandle<(usize, usize)>,
}

impl HealthyCount {
    async fn start(client: &Client, app: &str) -> Self {
        use futures_util::StreamExt;
        let response = client.request(reqwest::Method::GET, "/api/v1/events").send().await.expect("events");
        assert!(response.status().is_success());
        // Subscribed once the answer came: the snapshot below misses no later change.
        let mut tasks: BTreeMap<String, (TaskState, Option<bool>)> = client
            .list_tasks(Some(app), false)
            .await
            .expect("tasks")
            .into_iter()
            .map(|t| (t.id, (t.state, t.healthy)))
            .collect();
        let healthy = |tasks: &BTreeMap<String, (TaskState, Option<bool>)>| {
            tasks.values().filter(|(state, healthy)| *state == TaskState::Running && *healthy == Some(true)).count()
        };
        let app = app.to_string();
        let handle = tokio::spawn(async move {
            let (mut fewest, mut seen) = (healthy(&tasks), 0);
            let mut body = response.bytes_stream();
            let mut text = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find("\n\n") {
                    let block: String = text.drain(..end + 2).collect();
                    let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
                    let Ok(gantry_api::Event::TaskChanged { task_id, app_id, state, healthy: h, .. }) =
                        serde_json::from_str(data)
                    else {
                        continue;
                    };
                    if app_id == app {
                        tasks.insert(task_id, (state, h));
                        fewest = fewest.min(healthy(&tasks));
                        seen += 1;
                    }
                }
            }
            (fewest, seen)
        });
        Self { handle }
    }

    async fn finish(self, master: gantry_master::MasterHandle) -> (usize, usize) {
        // The stream ends when the master shuts down.
        master.shutdown().await;
        self.handle.await.expect("event reader")
    }
}

/// Runs the binary against the in-process master with the admin token and the CA.
fn gantry_cli(cluster: &InProcessCluster, args: &[&str]) -> (bool, String, String) {
    let data = cluster.dir.path().join("master");
    let token = std::fs::read_to_string(data.join("admin-token")).expect("admin token");
    let output = std::process::Command::new(BIN)
        .args(args)
        .env("GANTRY_MASTER", &cluster.url)
        .env("GANTRY_TOKEN", token.trim())
        .env("GANTRY_CA_CERT", data.join("ca.pem"))
        .env("GANTRY_STATE_DIR", cluster.dir.path().join("no-state"))
        .output()
        .expect("run gantry");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drained_agent_keeps_services_at_capacity_lets_jobs_finish_and_is_forgotten_once_removed() {
    let mut cluster = InProcessCluster::start(3).await;
    let client = cluster.client.clone();
    // One healthy instance per host; the default minimum health capacity keeps all 3 healthy.
    let text = "id = \"web\"\ncmd = \"exec sleep 100000\"\ninstances = 3\ncpus = 0.1\nmem = 16\n\
                constraints = [[\"hostname\", \"UNIQUE\"]]\n\n[[health_checks]]\nprotocol = \"COMMAND\"\n\
                command = \"true\"\ngrace_period = 0\ninterval = 0.2\ntimeout = 1\nmax_consecutive_failures = 3\n";
    let web = gantry_api::workload::parse_app("web.toml", text, false).expect("valid app");
    client.put_app(&web).await.expect("deploy");
    wait_for("3 healthy instances", Duration::from_secs(30), || async {
        let tasks = client.list_tasks(Some("web"), false).await.ok()?;
        (tasks.iter().filter(|t| t.state == TaskState::Running && t.healthy == Some(true)).count() == 3).then_some(())
    })
    .await;
    let job: gantry_api::JobDefinition =
        serde_json::from_value(serde_json::json!({"id": "report", "run": {"cmd": "sleep 8", "cpus": 0.1, "mem": 16}}))
            .expect("job");
    client.create_job(&job).await.expect("create job");
    let run = client.start_job_run("report").await.expect("run");
    let job_task = wait_for("the job's task to run", Duration::from_secs(20), || async {
        let tasks = client.list_tasks(Some("report"), false).await.ok()?;
        tasks.into_iter().find(|t| t.state == TaskState::Running)
    })
    .await;
    // A fourth host, where the drained host's instance can go (UNIQUE hostname).
    let port_base = cluster.port_base;
    cluster.agents.push(Some(
        gantry_agent::start(agent_config(cluster.dir.path(), &cluster.url, 3, port_base)).await.expect("agent 3"),
    ));
    cluster.wait_active(4).await;
    let drained = client.get_agent(&job_task.agent_id).await.expect("the job's agent");
    let on_drained = client.list_tasks(Some("web"), false).await.expect("tasks");
    let moved = on_drained.iter().find(|t| t.agent_id == drained.info.id).expect("a web instance on the job's host");

    // Drain by hostname with the CLI while the event stream is watched.
    let watch = HealthyCount::start(&client, "web").await;
    let (ok, stdout, stderr) =
        gantry_cli(&cluster, &["node", "drain", &drained.info.hostname, "--deadline", "2m", "-o", "json"]);
    assert!(ok, "{stderr}");
    let status: gantry_api::DrainStatus = serde_json::from_str(&stdout).expect("drain status JSON");
    assert_eq!(status.agent_id, drained.info.id);
    assert_eq!(status.tasks.len(), 2, "{status:?}");
    let (ok, stdout, _) = gantry_cli(&cluster, &["node", "list"]);
    assert!(ok && stdout.lines().any(|l| l.contains(&drained.info.hostname) && l.contains("DRAINING")), "{stdout}");

    let done = wait_for("the drain to finish", Duration::from_secs(60), || async {
        client.agent_drain(&drained.info.id).await.ok().filter(|s| s.done())
    })
    .await;
    assert!(!done.deadline_passed, "the drain finished before its deadline: {done:?}");
    let finished = client.get_job_run("report", &run.id).await.expect("run");
    assert_eq!(finished.status, gantry_api::RunStatus::Success, "the job ran to its end on the draining agent");
    let old = client.get_task(&moved.id).await.expect("the moved task");
    assert_eq!(old.state, TaskState::Killed, "{old:?}");
    assert!(old.message.as_deref().unwrap_or_default().contains("draining"), "{old:?}");
    let tasks = cluster.running("web", 3).await;
    assert!(tasks.iter().all(|t| t.agent_id != drained.info.id && t.healthy == Some(true)), "{tasks:?}");

    // Removed (stopped, then revoked and forgotten), the agent no longer shows.
    let index = cluster.agents.iter().position(|a| a.as_ref().is_some_and(|a| a.agent_id() == drained.info.id));
    let handle = index.and_then(|i| cluster.agents[i].take()).expect("the drained agent's handle");
    handle.shutdown().await;
    client.revoke_agent(&drained.info.id).await.expect("remove");
    let (ok, stdout, stderr) = gantry_cli(&cluster, &["node", "list"]);
    assert!(ok, "{stderr}");
    assert!(!stdout.contains(&drained.info.hostname), "{stdout}");
    assert_eq!(stdout.lines().count(), 4, "a header and 3 agents: {stdout}");

    let master = cluster.master.take().expect("master");
    let (fewest, events) = watch.finish(master).await;
    assert!(events >= 4, "the watch saw the drain's task changes ({events} events)");
    assert!(fewest >= 3, "healthy instances never dropped below 3 (minimum health capacity 1.0): fewest {fewest}");
}

/// A page served by `task` on its first port.
async fn page(task: &gantry_api::Task) -> Option<String> {
    let port = task.ports.first()?;
    let response = reqwest::get(format!("http://127.0.0.1:{port}/")).await.ok()?;
    response.text().await.ok()
}

/// A real registry on loopback for container tests, or `None` (skipped, with the reason) off
/// root or without Debian's docker-registry.
fn container_registry() -> Option<gantry_lab::registry::TestRegistry> {
    use gantry_lab::registry::{RegistryOptions, TestRegistry};
    let missing = if nix::unistd::Uid::effective().is_root() {
        TestRegistry::missing()
    } else {
        Some("containers need root (mounts, namespaces)".to_string())
    };
    if let Some(reason) = missing {
        support::skipped(&reason);
        return None;
    }
    Some(TestRegistry::start(RegistryOptions::default()).expect("registry"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_container_app_serves_scales_upgrades_and_keeps_its_containers_across_an_agent_restart() {
    use gantry_lab::registry::{TestImage, TestLayer};
    let Some(registry) = container_registry() else { return };
    for version in ["1.4", "1.5"] {
        let page = TestLayer::new().file("www/index.html", format!("web {version}\n"), 0o644);
        let image = TestImage::busybox().expect("busybox").layer(page);
        image.push(&registry, &format!("team/web:{version}")).await.expect("push");
    }
    let mut cluster = InProcessCluster::start(2).await;
    let client = cluster.client.clone();
    let text = std::fs::read_to_string(support::repo_root().join("configs/apps/web-container.toml")).expect("example");
    let text = text.replace("127.0.0.1:5000", registry.address());
    let mut app = gantry_api::workload::parse_app("web-container.toml", &text, false).expect("the example parses");
    for check in &mut app.health_checks {
        check.interval = 0.2;
    }
    client.put_app(&app).await.expect("deploy");
    let healthy = |n: usize| {
        let client = client.clone();
        async move {
            wait_for(&format!("{n} healthy instances"), Duration::from_secs(30), || async {
                let tasks = client.list_tasks(Some("web-container"), false).await.ok()?;
                let healthy: Vec<_> =
                    tasks.into_iter().filter(|t| t.state == TaskState::Running && t.healthy == Some(true)).collect();
                (healthy.len() == n).then_some(healthy)
            })
            .await
        }
    };
    for task in healthy(2).await {
        assert_eq!(page(&task).await.as_deref(), Some("web 1.4\n"), "{task:?}");
    }

    client.scale_app("web-container", 3).await.expect("scale");
    healthy(3).await;

    // A rolling upgrade to the new tag: every instance ends up serving it.
    app.instances = 3;
    app.container.as_mut().expect("a container").image = format!("{}/team/web:1.5", registry.address());
    client.put_app(&app).await.expect("upgrade");
    let upgraded = wait_for("every instance on 1.5", Duration::from_secs(60), || async {
        let tasks = client.list_tasks(Some("web-container"), false).await.ok()?;
        let running: Vec<_> = tasks.into_iter().filter(|t| t.state == TaskState::Running).collect();
        let mut pages = Vec::new();
        for task in &running {
            pages.push(page(task).await?);
        }
        (running.len() == 3 && pages.iter().all(|p| p == "web 1.5\n")).then_some(running)
    })
    .await;

    // A killed instance is replaced.
    let killed = client.kill_task(&upgraded[0].id).await.expect("kill");
    let replaced = wait_for("a replacement", Duration::from_secs(30), || async {
        let tasks = client.list_tasks(Some("web-container"), false).await.ok()?;
        let healthy: Vec<_> =
            tasks.into_iter().filter(|t| t.state == TaskState::Running && t.healthy == Some(true)).collect();
        (healthy.len() == 3 && healthy.iter().all(|t| t.id != killed.id)).then_some(healthy)
    })
    .await;

    // An agent restarts: its containers are re-adopted, not replaced.
    let agent = cluster.agents[0].take().expect("agent 0");
    agent.shutdown().await;
    cluster.agents[0] = Some(
        gantry_agent::start(agent_config(cluster.dir.path(), &cluster.url, 0, cluster.port_base))
            .await
            .expect("restart"),
    );
    cluster.wait_active(2).await;
    let after = healthy(3).await;
    let ids =
        |tasks: &[gantry_api::Task]| tasks.iter().map(|t| t.id.clone()).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(ids(&replaced), ids(&after), "no container was replaced");
    for task in &after {
        assert_eq!(page(task).await.as_deref(), Some("web 1.5\n"));
        let limits = client.get_task(&task.id).await.expect("task").limits;
        assert!(limits.iter().any(|l| l.starts_with("mem 64 MiB: cgroup")), "task show lists its limits: {limits:?}");
    }
    client.delete_app("web-container").await.expect("delete");
    wait_for("all instances gone", Duration::from_secs(30), || async {
        client.list_tasks(Some("web-container"), false).await.ok()?.is_empty().then_some(())
    })
    .await;
}

/// Waits until run `run` of job `job` is SUCCESS or FAILED.
async fn ended_run(client: &Client, job: &str, run: &str) -> gantry_api::JobRun {
    wait_for(&format!("run {run} of {job} to end"), Duration::from_secs(60), || async {
        let run = client.get_job_run(job, run).await.ok()?;
        run.status.is_terminal().then_some(run)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_container_job_reads_its_image_writes_its_volume_and_fails_with_its_exit_code_or_a_missing_tag() {
    use gantry_api::RunStatus;
    use gantry_lab::registry::{TestImage, TestLayer};
    let Some(registry) = container_registry() else { return };
    let input = TestLayer::new().dir("srv", 0o755).file("srv/input.txt", "batch input\n", 0o644);
    let image = TestImage::busybox().expect("busybox").layer(input);
    image.push(&registry, "team/batch:1").await.expect("push");
    let cluster = InProcessCluster::start(1).await;
    let client = cluster.client.clone();
    let results = cluster.dir.path().join("results");
    std::fs::create_dir(&results).expect("the volume's host directory");
    let job = |id: &str, tag: &str, cmd: &str| {
        let text = format!(
            "id = \"{id}\"\n\n[run]\ncmd = \"{cmd}\"\ncpus = 0.1\nmem = 32\n\n[run.container]\n\
             image = \"{}/team/batch:{tag}\"\n\n[[run.volumes]]\nhost_path = \"{}\"\n\
             container_path = \"/results\"\nmode = \"rw\"\n",
            registry.address(),
            results.display()
        );
        gantry_api::workload::parse_job(&format!("{id}.toml"), &text, false).expect("a valid job")
    };
    let jobs = [
        job("batch", "1", "sed s/input/output/ /srv/input.txt > /results/output.txt"),
        job("batch-fails", "1", "echo partial > /results/partial.txt; exit 3"),
        job("batch-missing", "9", "true"),
    ];
    let mut runs = Vec::new();
    for job in &jobs {
        client.create_job(job).await.expect("create the job");
        runs.push(client.start_job_run(&job.id).await.expect("start a run"));
    }

    // The run reads a file of its image and writes through its volume, then exits 0.
    let done = ended_run(&client, "batch", &runs[0].id).await;
    assert_eq!(done.status, RunStatus::Success, "{done:?}");
    let attempt = done.attempts.last().expect("an attempt");
    assert_eq!((attempt.state, attempt.exit_code), (TaskState::Finished, Some(0)), "{done:?}");
    let output = std::fs::read_to_string(results.join("output.txt")).expect("the run's output on the host");
    assert_eq!(output, "batch output\n");

    // A command exiting 3 inside the container fails the run with that exit code.
    let failed = ended_run(&client, "batch-fails", &runs[1].id).await;
    assert_eq!(failed.status, RunStatus::Failed, "{failed:?}");
    let attempt = failed.attempts.last().expect("an attempt");
    assert_eq!((attempt.state, attempt.exit_code), (TaskState::Failed, Some(3)), "{failed:?}");
    let partial = std::fs::read_to_string(results.join("partial.txt")).expect("written before the exit");
    assert_eq!(partial, "partial\n");

    // A tag the registry does not have fails the run, and its attempt says which.
    let unpulled = ended_run(&client, "batch-missing", &runs[2].id).await;
    assert_eq!(unpulled.status, RunStatus::Failed, "{unpulled:?}");
    let attempt = unpulled.attempts.last().expect("an attempt");
    assert_eq!((attempt.state, attempt.exit_code), (TaskState::Failed, None), "{unpulled:?}");
    let message = attempt.message.as_deref().unwrap_or_default();
    assert!(message.contains("not found") && message.contains("has no tag 9"), "{unpulled:?}");
}

/// `gantry snapshot …` with the master and credentials of the env.
fn snapshot_cli(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let mut command = std::process::Command::new(BIN);
    command.arg("snapshot").args(args).env_remove("GANTRY_CLUSTER");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run gantry snapshot")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_restored_into_a_new_master_gives_back_apps_jobs_secrets_and_tokens() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut cluster = InProcessCluster::start(0).await;
    let client = cluster.client.clone();
    client.put_app(&sleeper("kept", 0)).await.expect("app");
    let job = gantry_api::workload::parse_job("inline.toml", "id = \"nightly\"\n[run]\ncmd = \"true\"\n", false)
        .expect("job");
    client.create_job(&job).await.expect("job");
    client.put_secret("db/password", "hunter2").await.expect("secret");
    let ops = client
        .create_token(&gantry_api::security::CreateToken {
            name: "ops".into(),
            policies: vec!["admin".into()],
            ttl_secs: None,
        })
        .await
        .expect("token");
    let deployer = client
        .create_token(&gantry_api::security::CreateToken {
            name: "ci".into(),
            policies: vec!["deployer".into()],
            ttl_secs: None,
        })
        .await
        .expect("token");
    let master_dir = cluster.dir.path().join("master");
    let env = |token: &str| {
        vec![
            ("GANTRY_MASTER", cluster.url.clone()),
            ("GANTRY_CA_CERT", master_dir.join("ca.pem").display().to_string()),
            ("GANTRY_TOKEN", token.to_string()),
        ]
    };

    // Only an admin may take one.
    let file = cluster.dir.path().join("backup.snap");
    let refused = snapshot_cli(&["save", &file.display().to_string()], &env(&deployer.token));
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not an admin"), "{refused:?}");
    assert!(!file.exists());
    let saved = snapshot_cli(&["save", &file.display().to_string()], &env(&ops.token));
    assert!(saved.status.success(), "{saved:?}");
    let said = String::from_utf8_lossy(&saved.stdout);
    assert!(said.contains("1 apps, 1 jobs") && said.contains("1 secrets"), "{said}");
    assert_eq!(std::fs::metadata(&file).expect("file").permissions().mode() & 0o777, 0o600);
    assert!(!std::fs::read_to_string(&file).expect("read").contains("hunter2"), "secrets stay sealed");
    cluster.master.take().expect("master").shutdown().await;

    // A new data dir with the cluster's trust files and no state.
    let restored = cluster.dir.path().join("restored");
    std::fs::create_dir_all(&restored).expect("mkdir");
    let restore = |dir: &std::path::Path| {
        snapshot_cli(&["restore", &file.display().to_string(), "--data-dir", &dir.display().to_string()], &[])
    };
    let no_ca = restore(&restored);
    assert!(!no_ca.status.success());
    assert!(String::from_utf8_lossy(&no_ca.stderr).contains("copy the cluster's CA there first"), "{no_ca:?}");
    let other = cluster.dir.path().join("other");
    gantry_provision::trust::ClusterTrust::load_or_create(&other, "another").expect("another cluster's trust");
    let foreign = restore(&other);
    assert!(String::from_utf8_lossy(&foreign.stderr).contains("of another cluster"), "{foreign:?}");
    for name in ["ca.pem", "ca-key.pem", "secrets.key"] {
        std::fs::copy(master_dir.join(name), restored.join(name)).expect("copy the trust files");
    }
    let done = restore(&restored);
    assert!(done.status.success(), "{done:?}");
    assert!(String::from_utf8_lossy(&done.stdout).contains("gantry master --data-dir"), "{done:?}");
    let again = restore(&restored);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a master's state"), "{again:?}");

    // The new master serves the same apps, jobs, secrets and tokens.
    let master =
        gantry_master::start(gantry_master::MasterConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), restored.clone()))
            .await
            .expect("the restored master starts");
    let url = format!("https://{}", master.local_addr());
    let as_ops = Client::with_credentials(
        &url,
        &gantry_api::Credentials {
            token: Some(ops.token.clone()),
            ca_pem: Some(std::fs::read_to_string(restored.join("ca.pem")).expect("ca")),
            identity: None,
            token_source: None,
        },
    )
    .expect("client");
    assert_eq!(as_ops.whoami().await.expect("the old token works").policies, vec!["admin".to_string()]);
    let apps: Vec<String> = as_ops.list_apps().await.expect("apps").into_iter().map(|a| a.definition.id).collect();
    assert_eq!(apps, vec!["kept".to_string()]);
    let jobs: Vec<String> = as_ops.list_jobs().await.expect("jobs").into_iter().map(|j| j.definition.id).collect();
    assert_eq!(jobs, vec!["nightly".to_string()]);
    let secrets: Vec<String> = as_ops.list_secrets().await.expect("secrets").into_iter().map(|s| s.name).collect();
    assert_eq!(secrets, vec!["db/password".to_string()]);
    let tokens: Vec<String> = as_ops.list_tokens().await.expect("tokens").into_iter().map(|t| t.name).collect();
    assert!(tokens.contains(&"ops".to_string()) && tokens.contains(&"ci".to_string()), "{tokens:?}");
    master.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_alone_leads_its_group_and_says_so() {
    let cluster = InProcessCluster::start(0).await;
    let address = cluster.url.trim_start_matches("https://").to_string();
    let health = cluster.client.health().await.expect("health");
    assert_eq!(health.status, "ok");
    assert_eq!(health.role.as_deref(), Some("leader"));
    assert!(health.term.is_some_and(|t| t >= 1), "{health:?}");
    assert_eq!(health.leader.as_deref(), Some(address.as_str()));
    let masters = cluster.client.list_masters().await.expect("masters");
    assert_eq!(masters.len(), 1, "{masters:?}");
    assert_eq!((masters[0].id, masters[0].address.as_str(), masters[0].role.as_str()), (1, address.as_str(), "leader"));
    assert_eq!(masters[0].lag, Some(0));
    assert!(masters[0].last_applied.is_some_and(|i| i >= 1), "{masters:?}");

    // The same through the command line.
    let master_dir = cluster.dir.path().join("master");
    let listed = std::process::Command::new(BIN)
        .args(["master", "list", "-o", "json"])
        .env_remove("GANTRY_CLUSTER")
        .env("GANTRY_MASTER", &cluster.url)
        .env("GANTRY_CA_CERT", master_dir.join("ca.pem"))
        .env("GANTRY_TOKEN", std::fs::read_to_string(master_dir.join("admin-token")).expect("admin token").trim())
        .output()
        .expect("gantry master list");
    assert!(listed.status.success(), "{listed:?}");
    let parsed: Vec<gantry_api::client::MasterInfo> = serde_json::from_slice(&listed.stdout).expect("json");
    let brief = |m: &gantry_api::client::MasterInfo| (m.id, m.address.clone(), m.role.clone());
    assert_eq!(parsed.iter().map(brief).collect::<Vec<_>>(), masters.iter().map(brief).collect::<Vec<_>>());
}
