//! `gantry image list|prune` against an in-process cluster (a real master and agent in this
//! process, on loopback): the master reads and prunes an agent's image cache through the agent,
//! an agent without containers and an agent that is down are named with what to do, and with
//! root and Debian's docker-registry an image pulled into the agent's store is listed and
//! pruned through the API and the CLI.

mod support;

use gantry_api::{Client, PortRange, Resources};
use gantry_lab::registry::{RegistryOptions, TestImage, TestRegistry};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{BIN, wait_for};

struct OneAgentCluster {
    dir: tempfile::TempDir,
    master: Option<gantry_master::MasterHandle>,
    agent: Option<gantry_agent::AgentHandle>,
    client: Client,
    url: String,
    images: gantry_agent::ImageSettings,
}

impl OneAgentCluster {
    /// A master and one agent whose image cache lives in `images_dir` (below the temp dir).
    async fn start(images_dir: &str) -> Self {
        let dir = support::traversable_temp_dir("gantry-images-");
        let config = gantry_master::MasterConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), dir.path().join("master"));
        let master = gantry_master::start(config).await.expect("master starts");
        let url = format!("https://{}", master.local_addr());
        let client = support::admin_client(&url, &dir.path().join("master"));
        let images = gantry_agent::ImageSettings {
            dir: Some(dir.path().join(images_dir)),
            ..gantry_agent::ImageSettings::default()
        };
        let mut cluster = Self { dir, master: Some(master), agent: None, client, url, images };
        cluster.start_agent().await;
        cluster
    }

    fn work_dir(&self) -> PathBuf {
        self.dir.path().join("agent")
    }

    async fn start_agent(&mut self) {
        let port_base = support::port_block(100);
        let config = gantry_agent::AgentConfig {
            master: self.url.clone(),
            work_dir: self.work_dir(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            hostname: Some("node-0".to_string()),
            resources: Some(Resources {
                cpus: 2.0,
                mem: 1024.0,
                disk: 1000.0,
                gpus: 0,
                ports: vec![PortRange { begin: port_base, end: port_base + 99 }],
            }),
            attributes: BTreeMap::new(),
            executor_path: BIN.into(),
            join_token: Some(support::seed_trust(&self.dir.path().join("master")).1),
            task_user: None,
            task_limits: Default::default(),
            images: self.images.clone(),
            gpus: Default::default(),
            cgroup_favordynmods: false,
        };
        let agent = gantry_agent::start(config).await.expect("agent starts");
        let id = agent.agent_id().to_string();
        // A restarted agent listens elsewhere: wait until the master knows where.
        let endpoint = format!("https://{}", agent.local_addr());
        self.agent = Some(agent);
        wait_for("the agent to be active at its address", Duration::from_secs(20), || async {
            let agents = self.client.list_agents().await.ok()?;
            let active = |a: &gantry_api::Agent| a.state == gantry_api::AgentState::Active;
            agents.iter().any(|a| a.info.id == id && a.info.endpoint == endpoint && active(a)).then_some(())
        })
        .await;
    }

    fn agent_id(&self) -> String {
        self.agent.as_ref().map(|a| a.agent_id().to_string()).expect("the agent runs")
    }

    async fn stop_agent(&mut self) {
        if let Some(agent) = self.agent.take() {
            agent.shutdown().await;
        }
    }

    async fn stop(&mut self) {
        self.stop_agent().await;
        if let Some(master) = self.master.take() {
            master.shutdown().await;
        }
    }

    /// Runs the CLI against this master as the admin; answers (success, stdout, stderr).
    async fn gantry(&self, args: &[&str]) -> (bool, String, String) {
        let data = self.dir.path().join("master");
        let token = std::fs::read_to_string(data.join("admin-token")).expect("admin token");
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("GANTRY_MASTER", &self.url)
            .env("GANTRY_TOKEN", token.trim())
            .env("GANTRY_CA_CERT", data.join("ca.pem"))
            .env("GANTRY_STATE_DIR", self.dir.path().join("no-state"));
        let output = tokio::task::spawn_blocking(move || command.output()).await.expect("join").expect("run gantry");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    }
}

impl Drop for OneAgentCluster {
    fn drop(&mut self) {
        support::kill_all(self.dir.path());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_without_containers_and_an_agent_that_is_down_are_named_with_what_to_do() {
    // A cache directory with ':' cannot hold overlayfs layers, so containers cannot run there,
    // root or not (without root, that is the reason given instead).
    let mut cluster = OneAgentCluster::start("bad:images").await;
    let id = cluster.agent_id();

    let error = cluster.client.agent_images(&id).await.expect_err("no image cache");
    assert_eq!(error.status(), Some(409), "{error}");
    let message = error.to_string();
    assert!(message.contains(&format!("containers cannot run on agent `{id}` (node-0): ")), "{message}");
    let error = cluster.client.prune_agent_images(&id, true).await.expect_err("nothing to prune");
    assert_eq!(error.status(), Some(409), "{error}");

    let unknown = cluster.client.agent_images("no-such-agent").await.expect_err("unknown agent");
    assert_eq!(unknown.status(), Some(404), "{unknown}");

    // Every agent: one without containers is a note, not a failure.
    let (ok, stdout, stderr) = cluster.gantry(&["image", "list"]).await;
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("containers cannot run on agent"), "{stderr}");
    assert!(stdout.contains("No images are cached"), "{stdout}");
    // Named with --agent, it is the command's error.
    let (ok, _, stderr) = cluster.gantry(&["image", "prune", "--agent", "node-0"]).await;
    assert!(!ok, "an agent without containers fails a prune naming it");
    assert!(stderr.contains(&format!("cannot prune the image cache of agent {id} (node-0)")), "{stderr}");

    cluster.stop_agent().await;
    let down = cluster.client.agent_images(&id).await.expect_err("the agent is down");
    assert_eq!(down.status(), Some(502), "{down}");
    let message = down.to_string();
    assert!(message.contains(&format!("cannot reach agent `{id}` (node-0) at https://127.0.0.1:")), "{message}");
    assert!(message.contains("gantry agent"), "says what to check: {message}");
    let (ok, _, stderr) = cluster.gantry(&["image", "list"]).await;
    assert!(!ok, "an agent that is down fails the listing");
    assert!(stderr.contains("could not read the image cache of 1 of 1 agents (node-0)"), "{stderr}");
    cluster.stop().await;
}

/// A registry with the busybox image pushed as `team/web:1`, or `None` after reporting why the
/// test cannot run (root for the image store, docker-registry, busybox-static).
async fn registry_with_busybox() -> Option<(TestRegistry, String)> {
    if !nix::unistd::geteuid().is_root() {
        support::skipped("the agent's image store needs root (mounts, namespaces)");
        return None;
    }
    if let Some(reason) = TestRegistry::missing() {
        support::skipped(&reason);
        return None;
    }
    let image = match TestImage::busybox() {
        Ok(image) => image,
        Err(error) => {
            support::skipped(&error.to_string());
            return None;
        }
    };
    let registry = TestRegistry::start(RegistryOptions::default()).expect("start docker-registry");
    let pushed = image.push(&registry, "team/web:1").await.expect("push busybox");
    let reference = format!("{}/team/web:1", registry.address());
    assert!(pushed.manifest_digest.starts_with("sha256:"));
    Some((registry, reference))
}

/// Pulls `reference` into the image store at the agent's cache directory, through the agent's
/// own container executor (the agent is stopped: one store per directory at a time).
async fn pull_into(work_dir: &Path, images: &gantry_agent::ImageSettings, reference: &str) -> String {
    let executors = gantry_agent::executors(Path::new(BIN), work_dir, images);
    let container = executors.iter().find_map(|e| e.as_container()).expect("a container executor");
    let store = container.store().expect("containers can run here (root, overlayfs)");
    let image = store.pull(reference, Default::default(), None).await.expect("pull busybox");
    image.manifest_digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_image_pulled_by_the_agent_is_listed_and_pruned_through_the_master() {
    let Some((_registry, reference)) = registry_with_busybox().await else { return };
    let mut cluster = OneAgentCluster::start("agent/images").await;
    let id = cluster.agent_id();

    let empty = cluster.client.agent_images(&id).await.expect("list the empty cache");
    assert_eq!((empty.agent_id.as_str(), empty.hostname.as_str()), (id.as_str(), "node-0"));
    assert!(empty.cache.images.is_empty(), "{empty:?}");
    assert_eq!((empty.cache.total_bytes, empty.cache.max_bytes), (0, gantry_image_default_max()));

    cluster.stop_agent().await;
    let digest = pull_into(&cluster.work_dir(), &cluster.images, &reference).await;
    cluster.start_agent().await;

    let listed = cluster.client.agent_images(&id).await.expect("list");
    let [image] = listed.cache.images.as_slice() else { panic!("one image cached: {listed:?}") };
    assert_eq!(image.manifest_digest, digest);
    assert_eq!(image.references, vec![reference.clone()]);
    assert!(image.size_bytes > 0 && !image.in_use, "{image:?}");
    assert!(listed.cache.total_bytes > 0, "{listed:?}");

    let (ok, stdout, stderr) = cluster.gantry(&["image", "list", "--agent", &id]).await;
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains(&reference) && stdout.contains(image.short_digest()), "{stdout}");
    assert!(stdout.contains("node-0 (") && stdout.contains("1 image, 0 in use"), "{stdout}");

    // Under its size, a plain prune keeps it; --all removes every image not in use.
    let kept = cluster.client.prune_agent_images(&id, false).await.expect("prune to the limit");
    assert!(kept.report.removed.is_empty(), "{kept:?}");
    let (ok, stdout, stderr) = cluster.gantry(&["image", "prune", "--all", "--output", "json"]).await;
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    let pruned: Vec<gantry_api::image::AgentImagesPruned> = serde_json::from_str(&stdout).expect("prune JSON");
    let [pruned] = pruned.as_slice() else { panic!("one agent pruned: {stdout}") };
    assert_eq!(pruned.report.removed.iter().map(|i| i.manifest_digest.as_str()).collect::<Vec<_>>(), [digest.as_str()]);
    assert!(pruned.report.freed_bytes > 0 && pruned.report.failures.is_empty(), "{pruned:?}");
    assert_eq!(pruned.report.remaining_bytes, 0);

    let after = cluster.client.agent_images(&id).await.expect("list after the prune");
    assert!(after.cache.images.is_empty() && after.cache.total_bytes == 0, "{after:?}");
    cluster.stop().await;
}

/// The agent's default cache limit (the test does not set one).
fn gantry_image_default_max() -> u64 {
    gantry_agent::ImageSettings::default().max_bytes
}
