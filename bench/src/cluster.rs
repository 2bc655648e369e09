//! A local cluster of the real `gantry` binary: one master (or a group of them) and N agents as child processes on
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
    /// Base URL of every master, separated by commas (one URL with one master).
    pub master_url: String,
    /// A client of the master, with the admin token, trusting the cluster CA.
    pub client: Client,
    /// The admin's credentials (token and CA), for other clients of the master.
    pub credentials: Credentials,
    /// The cluster CA and tokens, as put into the master's data dir.
    pub trust: ClusterTrust,
    /// The master process (master 1 with several).
    pub master: ChildGuard,
    /// Masters 2 and up, with several.
    pub others: Vec<ChildGuard>,
    /// Every master's port: master i + 1 at index i.
    pub master_ports: Vec<u16>,
    /// Agent processes, by index.
    pub agents: Vec<ChildGuard>,
    /// The master's data dir (outside `dir` when `MasterOptions::data_parent` is set).
    pub data_dir: PathBuf,
    port_base: u16,
    options: MasterOptions,
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
    /// How many masters (one Raft group); 0 means 1.
    pub masters: usize,
}

impl LocalCluster {
    /// Starts the masters (no agents yet) and waits until one leads and answers.
    pub async fn start_master(bin: &Path, options: &MasterOptions) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("gantry-bench-").tempdir()?;
        let count = options.masters.max(1);
        let master_ports = (0..count).map(|_| free_port()).collect::<Result<Vec<u16>, _>>()?;
        let master_url =
            master_ports.iter().map(|port| format!("https://127.0.0.1:{port}")).collect::<Vec<_>>().join(",");
        let data_dir = match &options.data_parent {
            Some(parent) => parent.join(format!("gantry-bench-master-{}-{}", std::process::id(), master_ports[0])),
            None => dir.path().join("master"),
        };
        let trust = ClusterTrust::load_or_create(&data_dir, "bench")
            .with_context(|| format!("cannot put the cluster's trust material into {}", data_dir.display()))?;
        if count > 1 {
            // Every master holds the cluster's CA, tokens and secrets key, as `gantry up` gives them.
            gantry_trust::sealed::SealKey::load_or_create(&data_dir.join("secrets.key"))?;
            for number in 2..=count {
                let other = numbered(&data_dir, number);
                std::fs::create_dir_all(&other)?;
                for file in ["ca.pem", "ca-key.pem", "join-token", "admin-token", "secrets.key"] {
                    std::fs::copy(data_dir.join(file), other.join(file))?;
                }
            }
        }
        let credentials = trust.credentials(&data_dir);
        let client = Client::with_credentials(&master_url, &credentials)?;
        // Agents' port ranges below the ephemeral range, distinct per bench process.
        let port_base = 20_000 + (std::process::id() % 8) as u16 * 1500;
        let spawn = |number: usize| master_process(bin, dir.path(), &data_dir, &master_ports, number, options);
        let master = spawn(1)?;
        let others = (2..=count).map(spawn).collect::<anyhow::Result<Vec<_>>>()?;
        let cluster = Self {
            bin: bin.to_path_buf(),
            master_url,
            client,
            credentials,
            trust,
            master,
            others,
            master_ports,
            agents: Vec::new(),
            data_dir,
            port_base,
            options: options.clone(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while cluster.client.health().await.is_err() || cluster.leader().await.is_none() {
            if Instant::now() > deadline {
                bail!("no master led within 20 s; see {}", cluster.dir.path().join("master.log").display());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(cluster)
    }

    /// The data dir of master `number` (1 is [`LocalCluster::data_dir`]).
    pub fn master_dir(&self, number: usize) -> PathBuf {
        numbered(&self.data_dir, number)
    }

    /// The master whose `/health` says it leads and is ready, if exactly one does.
    pub async fn leader(&self) -> Option<usize> {
        let mut leaders = Vec::new();
        for (i, port) in self.master_ports.iter().enumerate() {
            let Ok(client) = Client::with_credentials(&format!("https://127.0.0.1:{port}"), &self.credentials) else {
                continue;
            };
            if let Ok(health) = client.health().await
                && health.status == "ok"
                && health.role.as_deref().is_none_or(|role| role == "leader")
            {
                leaders.push(i + 1);
            }
        }
        (leaders.len() == 1).then(|| leaders[0])
    }

    fn master_guard(&mut self, number: usize) -> &mut ChildGuard {
        if number == 1 { &mut self.master } else { &mut self.others[number - 2] }
    }

    /// SIGKILLs master `number` (1, 2, ...).
    pub fn kill_master(&mut self, number: usize) {
        self.master_guard(number).kill();
    }

    /// Starts master `number` again, on its port and data dir.
    pub fn restart_master(&mut self, number: usize) -> anyhow::Result<()> {
        let child =
            master_process(&self.bin, self.dir.path(), &self.data_dir, &self.master_ports, number, &self.options)?;
        *self.master_guard(number) = child;
        Ok(())
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
        for master in &mut self.others {
            master.kill();
        }
        for agent in &mut self.agents {
            agent.kill();
        }
        kill_all_naming(self.dir.path());
        if !self.data_dir.starts_with(self.dir.path()) {
            for number in 1..=self.master_ports.len() {
                let _ = std::fs::remove_dir_all(numbered(&self.data_dir, number));
            }
        }
    }
}

/// The data dir of master `number`: `first` for master 1, `first-N` for the others.
fn numbered(first: &Path, number: usize) -> PathBuf {
    if number == 1 { first.to_path_buf() } else { PathBuf::from(format!("{}-{number}", first.display())) }
}

/// Starts master `number` of the masters on `ports` (its peers with several).
fn master_process(
    bin: &Path,
    dir: &Path,
    first_data_dir: &Path,
    ports: &[u16],
    number: usize,
    options: &MasterOptions,
) -> anyhow::Result<ChildGuard> {
    let log = if ports.len() > 1 { format!("master-{number}.log") } else { "master.log".to_string() };
    let mut command = Command::new(bin);
    command
        .args(["master", "--listen", &format!("127.0.0.1:{}", ports[number - 1])])
        .arg("--data-dir")
        .arg(numbered(first_data_dir, number))
        // Names the cluster's dir even when the data dir is elsewhere, for cleanup.
        .env("GANTRY_BENCH_DIR", dir)
        .env("GANTRY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log_file(dir, &log)?);
    if ports.len() > 1 {
        command.args(["--node-id", &number.to_string()]);
        for (i, port) in ports.iter().enumerate().filter(|(i, _)| i + 1 != number) {
            command.args(["--peer", &format!("{}=127.0.0.1:{port}", i + 1)]);
        }
    }
    if let Some(interval) = &options.heartbeat_interval {
        command.args(["--heartbeat-interval", interval]);
    }
    if let Some(timeout) = &options.agent_unreachable_timeout {
        command.args(["--agent-unreachable-timeout", timeout]);
    }
    Ok(ChildGuard::new(command.spawn().context("cannot start a master")?))
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    Ok(std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name))?)
}
