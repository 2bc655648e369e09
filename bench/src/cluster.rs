//! A local cluster of the real `gantry` binary: one master and N agents as child processes on
//! loopback, with the resources and default timings of `configs/local.toml` (heartbeat 1 s,
//! unreachable after 3 s). These are the processes `gantry up configs/local.toml` starts; the
//! bench starts them itself so that it knows their pids (to measure and to SIGKILL them) and
//! never touches a user's cluster. Everything lives in one temp dir; dropping the cluster kills
//! every process that names it (daemons, executors, tasks of a killed agent).
//!
//! Security is on, as with `up`: the bench puts a cluster CA, a join token and an admin token
//! into the master's data dir before the master starts (it adopts them), talks to it over TLS
//! with the admin token, and hands agents the join token.

use crate::process::{ChildGuard, free_port, kill_all_naming};
use anyhow::{Context, bail};
use gantry_api::{AgentState, Client, Credentials};
use gantry_provision::trust::ClusterTrust;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A master and its agents.
#[derive(Debug)]
pub struct LocalCluster {
    /// Holds the data and work dirs and the logs.
    pub dir: tempfile::TempDir,
    /// The `gantry` binary.
    pub bin: PathBuf,
    /// Base URL of the master.
    pub master_url: String,
    /// A client of the master, with the admin token, trusting the cluster CA.
    pub client: Client,
    /// The admin's credentials (token and CA), for other clients of the master.
    pub credentials: Credentials,
    /// The cluster CA and tokens, as put into the master's data dir.
    pub trust: ClusterTrust,
    /// The master process.
    pub master: ChildGuard,
    /// Agent processes, by index.
    pub agents: Vec<ChildGuard>,
    /// The master's data dir (outside `dir` when `MasterOptions::data_parent` is set).
    pub data_dir: PathBuf,
    port_base: u16,
}

/// Options of the master process beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct MasterOptions {
    /// `--heartbeat-interval`, if not the default.
    pub heartbeat_interval: Option<String>,
    /// `--agent-unreachable-timeout`, if not the default.
    pub agent_unreachable_timeout: Option<String>,
    /// Where the data dir goes instead of the cluster's temp dir (e.g. tmpfs).
    pub data_parent: Option<PathBuf>,
}

impl LocalCluster {
    /// Starts a master (no agents yet) and waits until it answers.
    pub async fn start_master(bin: &Path, options: &MasterOptions) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("gantry-bench-").tempdir()?;
        let port = free_port()?;
        let master_url = format!("https://127.0.0.1:{port}");
        let data_dir = match &options.data_parent {
            Some(parent) => parent.join(format!("gantry-bench-master-{}-{port}", std::process::id())),
            None => dir.path().join("master"),
        };
        let trust = ClusterTrust::load_or_create(&data_dir, "bench")
            .with_context(|| format!("cannot put the cluster's trust material into {}", data_dir.display()))?;
        let credentials = trust.credentials(&data_dir);
        let mut command = Command::new(bin);
        command
            .args(["master", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&data_dir)
            // Names the cluster's dir even when the data dir is elsewhere, for cleanup.
            .env("GANTRY_BENCH_DIR", dir.path())
            .env("GANTRY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log_file(dir.path(), "master.log")?);
        if let Some(interval) = &options.heartbeat_interval {
            command.args(["--heartbeat-interval", interval]);
        }
        if let Some(timeout) = &options.agent_unreachable_timeout {
            command.args(["--agent-unreachable-timeout", timeout]);
        }
        let master = ChildGuard::new(command.spawn().context("cannot start the master")?);
        let client = Client::with_credentials(&master_url, &credentials)?;
        // Agents' port ranges below the ephemeral range, distinct per bench process.
        let port_base = 20_000 + (std::process::id() % 8) as u16 * 1500;
        let cluster = Self {
            dir,
            bin: bin.to_path_buf(),
            master_url,
            client,
            credentials,
            trust,
            master,
            agents: Vec::new(),
            data_dir,
            port_base,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while cluster.client.health().await.is_err() {
            if Instant::now() > deadline {
                bail!("the master did not answer within 20 s; see {}", cluster.dir.path().join("master.log").display());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(cluster)
    }

    /// Starts a master and `agents` agents and waits until every agent is active.
    pub async fn start(bin: &Path, agents: usize) -> anyhow::Result<Self> {
        let mut cluster = Self::start_master(bin, &MasterOptions::default()).await?;
        for _ in 0..agents {
            cluster.add_agent()?;
        }
        cluster.wait_agents_active(agents).await?;
        Ok(cluster)
    }

    /// Starts agent `host-<i>` (i = the next index): 2 cpus, 2048 MiB, 500 ports, zone `z<i>`.
    pub fn add_agent(&mut self) -> anyhow::Result<()> {
        let i = self.agents.len();
        let base = usize::from(self.port_base) + i * 500;
        let child = Command::new(&self.bin)
            .args(["agent", "--master", &self.master_url])
            .arg("--work-dir")
            .arg(self.dir.path().join(format!("agent-{i}")))
            .args(["--hostname", &format!("host-{i}")])
            .args(["--resources", &format!("cpus=2;mem=2048;disk=10000;ports=[{}-{}]", base, base + 499)])
            .args(["--attributes", &format!("zone=z{i}")])
            .env("GANTRY_JOIN_TOKEN", self.trust.join.to_string())
            .env("GANTRY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log_file(self.dir.path(), &format!("agent-{i}.log"))?)
            .spawn()
            .context("cannot start an agent")?;
        self.agents.push(ChildGuard::new(child));
        Ok(())
    }

    /// Waits until `n` agents are ACTIVE.
    pub async fn wait_agents_active(&self, n: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(agents) = self.client.list_agents().await
                && agents.iter().filter(|a| a.state == AgentState::Active).count() >= n
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("fewer than {n} agents became active within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The agent id of `host-<i>`.
    pub async fn agent_id(&self, i: usize) -> anyhow::Result<String> {
        let hostname = format!("host-{i}");
        self.client
            .list_agents()
            .await?
            .into_iter()
            .find(|a| a.info.hostname == hostname)
            .map(|a| a.info.id)
            .with_context(|| format!("no agent {hostname}"))
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.master.kill();
        for agent in &mut self.agents {
            agent.kill();
        }
        kill_all_naming(self.dir.path());
        if !self.data_dir.starts_with(self.dir.path()) {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    Ok(std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name))?)
}
