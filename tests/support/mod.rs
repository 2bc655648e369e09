//! A real cluster for end-to-end tests: the `gantry` binary as a master process and N agent
//! processes on loopback, each agent with its own hostname, zone and port range. Everything
//! lives in one temporary directory; dropping the cluster kills every process whose command
//! line or environment names that directory (daemons, executors and tasks), so nothing leaks
//! even when a test fails.

#![allow(dead_code)]

pub mod procs;
pub mod skip;
pub mod testhosts;
pub mod writer;

use gantry_api::{Client, Task, TaskState};
pub use procs::{environ, processes_naming};
#[allow(unused_imports)]
pub use skip::skipped;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_gantry");

/// Masters and their agents, as child processes.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    /// Every master's URL, separated by commas (one URL with one master).
    pub master_url: String,
    /// Master 1's port.
    pub master_port: u16,
    /// Every master's port: master i + 1 at index i.
    pub master_ports: Vec<u16>,
    /// Where master i + 1 runs, at index i: this machine's loopback, or a test host (its
    /// network namespace and address).
    pub master_hosts: Vec<MasterHost>,
    /// First port of agent 0's range; agent i offers 100 ports from `port_base + 100 i`.
    pub port_base: u16,
    /// Master i + 1's process at index i.
    pub masters: Vec<Option<Child>>,
    pub agents: Vec<Option<Child>>,
    pub client: Client,
}

/// Where a master process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterHost {
    /// On this machine, listening on loopback.
    Loopback,
    /// In a test host's network namespace (`ip netns exec`), listening on its address.
    Netns { netns: String, address: String },
}

impl MasterHost {
    fn address(&self) -> &str {
        match self {
            Self::Loopback => "127.0.0.1",
            Self::Netns { address, .. } => address,
        }
    }
}

/// A block of `size` ports for agents' port ranges: below the kernel's ephemeral range (32768
/// and up, where outgoing connections take their local ports) and distinct for every call in
/// this test process, so clusters running side by side never offer the same port.
pub fn port_block(size: u16) -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const HIGH: u32 = 32_700;
    let slots = (HIGH - LOW) / u32::from(size);
    let first = std::process::id() % slots;
    let slot = (first + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) % slots;
    u16::try_from(LOW + slot * u32::from(size)).expect("below 32700")
}

/// Puts a cluster CA, a join token and an admin token into the master data dir `data_dir`, as
/// `gantry up` does, so the master adopts them; answers the admin's credentials and the join
/// token.
pub fn seed_trust(data_dir: &Path) -> (gantry_api::Credentials, String) {
    gantry_trust::tls::install_default_provider();
    let trust = gantry_provision::trust::ClusterTrust::load_or_create(data_dir, "e2e").expect("trust material");
    (trust.credentials(data_dir), trust.join.to_string())
}

/// An admin client of the master at `url` whose data dir was seeded by [`seed_trust`].
pub fn admin_client(url: &str, data_dir: &Path) -> Client {
    Client::with_credentials(url, &seed_trust(data_dir).0).expect("client")
}

/// A temp dir that other users may traverse (0755), as a host's install dir is: agents running
/// as root start tasks as `nobody`, which must reach its sandbox below it.
pub fn traversable_temp_dir(prefix: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod the temp dir");
    dir
}

/// An admin client of the master at `url` of a cluster brought up by `gantry up`, with the CA
/// and the admin token `up` keeps in the cluster's state dir.
pub fn state_dir_client(url: &str, state_dir: &Path) -> Client {
    let token = std::fs::read_to_string(state_dir.join("admin-token")).expect("up keeps the admin token");
    let ca = std::fs::read_to_string(state_dir.join("ca.pem")).expect("up keeps the CA");
    let credentials =
        gantry_api::Credentials { token: Some(token.trim().to_string()), ca_pem: Some(ca), ..Default::default() };
    Client::with_credentials(url, &credentials).expect("client")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Cluster {
    /// Runs the binary with `args` against this cluster with the admin token and the CA, as a
    /// user would with GANTRY_MASTER, GANTRY_TOKEN and GANTRY_CA_CERT; returns (success, stdout,
    /// stderr).
    pub fn gantry(&self, args: &[&str]) -> (bool, String, String) {
        let data = self.path().join("master");
        let token = std::fs::read_to_string(data.join("admin-token")).expect("admin token");
        let output = Command::new(BIN)
            .args(args)
            .env("GANTRY_MASTER", &self.master_url)
            .env("GANTRY_TOKEN", token.trim())
            .env("GANTRY_CA_CERT", data.join("ca.pem"))
            .env("GANTRY_STATE_DIR", self.path().join("no-state"))
            .output()
            .expect("run gantry");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    }

    /// Starts a master and `agents` agents and waits until every agent is registered.
    pub async fn start(agents: usize) -> Cluster {
        Self::start_with_masters(1, agents).await
    }

    /// Starts `masters` masters (one Raft group; master 1 creates it) and `agents` agents, and
    /// waits until every agent is registered. Masters 2 and up get master 1's CA, join token,
    /// admin token and secrets key in their data dirs, as `gantry up` gives them.
    pub async fn start_with_masters(masters: usize, agents: usize) -> Cluster {
        Self::start_on(vec![MasterHost::Loopback; masters], agents).await
    }

    /// As [`Cluster::start_with_masters`], with master i + 1 on `hosts[i]`.
    pub async fn start_on(hosts: Vec<MasterHost>, agents: usize) -> Cluster {
        let masters = hosts.len();
        let dir = traversable_temp_dir("gantry-e2e-");
        let master_ports: Vec<u16> = (0..masters).map(|_| free_port()).collect();
        let master_url = master_ports
            .iter()
            .zip(&hosts)
            .map(|(port, host)| format!("https://{}:{port}", host.address()))
            .collect::<Vec<_>>()
            .join(",");
        let first = dir.path().join("master");
        let client = admin_client(&master_url, &first);
        gantry_trust::sealed::SealKey::load_or_create(&first.join("secrets.key")).expect("secrets key");
        for i in 2..=masters {
            let data = dir.path().join(format!("master-{i}"));
            std::fs::create_dir_all(&data).expect("data dir");
            for file in ["ca.pem", "ca-key.pem", "join-token", "admin-token", "secrets.key"] {
                std::fs::copy(first.join(file), data.join(file)).expect("copy the trust material");
            }
        }
        let port_base = port_block(600);
        let mut cluster = Cluster {
            dir,
            master_url,
            master_port: master_ports[0],
            master_ports,
            master_hosts: hosts,
            port_base,
            masters: (0..masters).map(|_| None).collect(),
            agents: Vec::new(),
            client,
        };
        cluster.start_master();
        for i in 0..agents {
            let child = cluster.spawn_agent(i);
            cluster.agents.push(Some(child));
        }
        cluster.wait_agents_active(agents).await;
        cluster
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts one more master process, number `masters.len() + 1`, on a free port, with the
    /// group's trust material copied from master 1 as [`Cluster::start_with_masters`] gives it,
    /// and every other master as a `--peer`: it waits to be contacted by the leader and never
    /// makes a group of its own (nor is it a member before `gantry master add`). Its URL is
    /// added to `master_url`. Returns its number. For a cluster started with two masters or
    /// more: a master alone has no network to reach another.
    pub fn add_master(&mut self) -> usize {
        let number = self.masters.len() + 1;
        let first = self.master_dir(1);
        let data = self.master_dir(number);
        std::fs::create_dir_all(&data).expect("data dir");
        for file in ["ca.pem", "ca-key.pem", "join-token", "admin-token", "secrets.key"] {
            std::fs::copy(first.join(file), data.join(file)).expect("copy the trust material");
        }
        let port = free_port();
        self.master_ports.push(port);
        self.master_hosts.push(MasterHost::Loopback);
        self.masters.push(None);
        self.master_url.push_str(&format!(",https://127.0.0.1:{port}"));
        self.start_master_number(number);
        number
    }

    /// Starts every master that is not running.
    pub fn start_master(&mut self) {
        for i in 1..=self.masters.len() {
            if self.masters[i - 1].is_none() {
                self.start_master_number(i);
            }
        }
    }

    /// The data dir of master `number` (1 is `master`, as with one master).
    pub fn master_dir(&self, number: usize) -> PathBuf {
        if number == 1 { self.path().join("master") } else { self.path().join(format!("master-{number}")) }
    }

    /// Starts master `number` (1, 2, ...) on its port and data dir.
    pub fn start_master_number(&mut self, number: usize) {
        let many = self.masters.len() > 1;
        let log = self.log_file(if many { format!("master-{number}.log") } else { "master.log".to_string() }.as_str());
        let host = &self.master_hosts[number - 1];
        let mut command = match host {
            MasterHost::Loopback => Command::new(BIN),
            MasterHost::Netns { netns, .. } => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns, BIN]);
                command
            }
        };
        command
            .args(["master", "--listen", &format!("{}:{}", host.address(), self.master_ports[number - 1])])
            .arg("--data-dir")
            .arg(self.master_dir(number))
            // With several masters an agent may need a failover (about a second) and a
            // reconnection before it is heard again.
            .args(["--heartbeat-interval", "200ms", "--agent-unreachable-timeout", if many { "5s" } else { "1500ms" }])
            .env("GANTRY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        if many {
            command.args(["--node-id", &number.to_string()]);
            for (i, port) in self.master_ports.iter().enumerate() {
                if i + 1 != number {
                    command.args(["--peer", &format!("{}={}:{port}", i + 1, self.master_hosts[i].address())]);
                }
            }
        }
        self.masters[number - 1] = Some(command.spawn().expect("spawn master"));
    }

    pub fn spawn_agent(&self, i: usize) -> Child {
        let base = usize::from(self.port_base) + i * 100;
        let log = self.log_file(&format!("agent-{i}.log"));
        Command::new(BIN)
            .args(["agent", "--master", &self.master_url])
            .arg("--work-dir")
            .arg(self.path().join(format!("agent-{i}")))
            .args(["--hostname", &format!("host-{i}")])
            .args(["--resources", &format!("cpus=4;mem=4096;disk=10000;ports=[{}-{}]", base, base + 99)])
            .args(["--attributes", &format!("zone=z{}", i % 2)])
            .env("GANTRY_JOIN_TOKEN", seed_trust(&self.path().join("master")).1)
            .env("GANTRY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn agent")
    }

    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new().create(true).append(true).open(self.path().join(name)).expect("log file")
    }

    /// SIGKILLs agent `i` (its tasks keep running, as on a crashed host agent).
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut child) = self.agents[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart_agent(&mut self, i: usize) {
        self.kill_agent(i);
        self.agents[i] = Some(self.spawn_agent(i));
    }

    /// A client of master `number` alone, with the admin's credentials: it follows a redirect
    /// only as far as the master named.
    pub fn client_of(&self, number: usize) -> Client {
        let address = self.master_hosts[number - 1].address();
        admin_client(&format!("https://{address}:{}", self.master_ports[number - 1]), &self.master_dir(1))
    }

    /// The master whose `/health` says it leads and is ready, if exactly one running master
    /// other than `paused` does (a paused master would not answer).
    pub async fn leader(&self, paused: Option<usize>) -> Option<usize> {
        let mut leaders = Vec::new();
        for number in 1..=self.masters.len() {
            if self.masters[number - 1].is_none() || paused == Some(number) {
                continue;
            }
            if let Ok(health) = self.client_of(number).health().await
                && health.status == "ok"
                && health.role.as_deref() == Some("leader")
            {
                leaders.push(number);
            }
        }
        (leaders.len() == 1).then(|| leaders[0])
    }

    /// [`wait_for`], failing with the cluster's logs.
    pub async fn wait_logged<T, F, Fut>(&self, what: &str, timeout: Duration, check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        poll(what, timeout, check, || format!("; logs:\n{}", self.logs())).await
    }

    /// SIGKILLs every master.
    pub fn kill_master(&mut self) {
        for number in 1..=self.masters.len() {
            self.kill_master_number(number);
        }
    }

    /// SIGKILLs master `number` (1, 2, ...).
    pub fn kill_master_number(&mut self, number: usize) {
        if let Some(mut child) = self.masters[number - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn wait_agents_active(&self, n: usize) {
        wait_for(&format!("{n} active agents"), Duration::from_secs(20), || async {
            let agents = self.client.list_agents().await.ok()?;
            let active = agents.iter().filter(|a| a.state == gantry_api::AgentState::Active).count();
            (active == n).then_some(())
        })
        .await;
    }

    /// Waits until `app` has `n` running tasks (healthy too, if `healthy`), and returns them.
    pub async fn wait_running(&self, app: &str, n: usize, healthy: bool) -> Vec<Task> {
        wait_for(&format!("{n} running tasks of {app}"), Duration::from_secs(30), || async {
            let tasks = self.client.list_tasks(Some(app), false).await.ok()?;
            let running: Vec<Task> = tasks
                .into_iter()
                .filter(|t| t.state == TaskState::Running && (!healthy || t.healthy == Some(true)))
                .collect();
            (running.len() == n).then_some(running)
        })
        .await
    }

    /// Pids of every process (other than this test) whose command line or environment names
    /// the cluster's directory.
    pub fn processes(&self) -> Vec<i32> {
        processes_naming(self.path())
    }

    /// Pids of task processes only (they carry `GANTRY_TASK_ID` in their environment).
    pub fn task_processes(&self) -> Vec<i32> {
        self.processes().into_iter().filter(|pid| environ(*pid).contains("GANTRY_TASK_ID=")).collect()
    }

    /// Ids of the tasks that have at least one live process (from `GANTRY_TASK_ID`).
    pub fn live_task_ids(&self) -> std::collections::BTreeSet<String> {
        self.task_processes()
            .into_iter()
            .filter_map(|pid| environ(pid).lines().find_map(|l| l.strip_prefix("GANTRY_TASK_ID=").map(str::to_string)))
            .collect()
    }

    /// The master's and agents' logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.path())
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        for name in names {
            let text = std::fs::read_to_string(&name).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("--- {} (last 40 lines)\n", name.display()));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_master();
        for i in 0..self.agents.len() {
            self.kill_agent(i);
        }
        kill_all(self.path());
    }
}

/// SIGKILLs every process naming `dir`, repeatedly until none is left (or 5 s pass).
pub fn kill_all(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = processes_naming(dir);
        if pids.is_empty() || Instant::now() > deadline {
            remove_task_cgroups(dir);
            return;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes the cgroups of every task sandbox below `dir` (a `tasks/<id>/cgroup` file names
/// one): executors killed with the cluster cannot remove their own.
fn remove_task_cgroups(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let in_tasks = path.parent().and_then(Path::file_name).is_some_and(|name| name == "tasks");
        match gantry_agent::cgroup::TaskCgroup::from_sandbox(&path) {
            Some(cgroup) if in_tasks => {
                let _ = cgroup.kill_and_remove(Duration::from_secs(2));
            }
            _ => remove_task_cgroups(&path),
        }
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll(what, timeout, check, String::new).await
}

/// The loop of [`wait_for`]: on timeout, the panic message ends with `detail()`.
async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F, detail: impl Fn() -> String) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}{}", detail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the binary with `args` against the master at `master_url`, without credentials, and
/// returns (success, stdout, stderr).
pub fn gantry(master_url: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .env("GANTRY_MASTER", master_url)
        .env("GANTRY_STATE_DIR", "/nonexistent/gantry-test-state")
        .env_remove("GANTRY_TOKEN")
        .env_remove("GANTRY_CA_CERT")
        .output()
        .expect("run gantry");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// The repository's root, for example files.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
