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
