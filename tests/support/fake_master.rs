//! A recording fake master for tests that run the agent in-process: it speaks the master ↔
//! agent protocol over HTTP/1.1 with TLS on loopback (one request per connection; the command
//! stream is a body that ends when the connection closes), with a CA of its own that the agent
//! joins with a join token, as a real master's. Also the agent's work dir for such tests and
//! the agent's config. Included by path (`#[path = "support/fake_master.rs"] mod fake_master;`)
//! from `tests/agent.rs` and `tests/limits.rs`.

#![allow(dead_code)]

use gantry_agent::{AgentConfig, AgentHandle};
use gantry_api::Resources;
use gantry_api::TaskState;
use gantry_api::protocol::{AgentCommand, PREFIX, RegisterAgent, Registered, StatusUpdate};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub const HEARTBEAT_MS: u64 = 200;

/// What the fake master saw, and what it will send.
#[derive(Default)]
pub struct Recorded {
    pub registrations: Vec<RegisterAgent>,
    /// Every status update posted, including refused ones, in arrival order.
    pub updates: Vec<StatusUpdate>,
    /// Uuids answered 2xx.
    pub acked: Vec<String>,
    /// Answer 500 to this many status posts.
    pub refuse_status: usize,
    pub commands: VecDeque<AgentCommand>,
    /// Bumped by every registration; a command stream serves only while its generation is current.
    pub generation: u64,
    pub heartbeats: usize,
    /// Answer heartbeats with 404, as a master that lost the agent.
    pub forget_agent: bool,
    /// Send nothing on command streams, not even pings.
    pub silent: bool,
}

type Stream = tokio_rustls::server::TlsStream<TcpStream>;

pub struct FakeMaster {
    pub url: String,
    pub ca: Arc<gantry_trust::Ca>,
    pub join_token: String,
    /// The fake master's own certificate, to call the agent's file endpoint as a master.
    pub identity: gantry_trust::IssuedCert,
    pub recorded: Arc<Mutex<Recorded>>,
    pub wake: Arc<Notify>,
    pub server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeMaster {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeMaster {
    pub async fn start() -> FakeMaster {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake master");
        let url = format!("https://{}", listener.local_addr().expect("address"));
        let ca = Arc::new(gantry_trust::Ca::generate("fake").expect("a CA"));
        let identity = ca
            .issue(
                &gantry_trust::Identity::Master("fake".into()),
                &[],
                &["127.0.0.1".parse().expect("ip")],
                gantry_trust::pki::LEAF_LIFETIME,
            )
            .expect("the master's certificate");
        let join_token = gantry_trust::JoinToken::generate(&ca.hash()).to_string();
        let mut tls = gantry_trust::tls::server_config(ca.cert_pem(), &identity.cert_pem, &identity.key_pem, true)
            .expect("server TLS");
        // This fake speaks HTTP/1.1 by hand: it must not offer HTTP/2.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let wake = Arc::new(Notify::new());
        let (r, w, c) = (Arc::clone(&recorded), Arc::clone(&wake), Arc::clone(&ca));
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (r, w, c, acceptor) = (Arc::clone(&r), Arc::clone(&w), Arc::clone(&c), acceptor.clone());
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve(stream, r, w, c).await;
                    }
                });
            }
        });
        FakeMaster { url, ca, join_token, identity, recorded, wake, server }
    }

    /// A GET of `path` on `agent`'s file endpoint, as a master (mutual TLS, the agent's name).
    pub async fn get_from_agent(&self, agent: &AgentHandle, path: &str) -> reqwest::Response {
        let tls = gantry_trust::tls::client_config(
            self.ca.cert_pem(),
            Some((&self.identity.cert_pem, &self.identity.key_pem)),
        )
        .expect("client TLS");
        let name = gantry_trust::pki::agent_dns_name(agent.agent_id());
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .resolve(&name, agent.local_addr())
            .build()
            .expect("client");
        http.get(format!("https://{name}:{}{path}", agent.local_addr().port())).send().await.expect("get")
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().expect("fake master lock")
    }

    pub fn send(&self, command: AgentCommand) {
        self.lock().commands.push_back(command);
        self.wake.notify_waiters();
    }

    pub fn registrations(&self) -> Vec<RegisterAgent> {
        self.lock().registrations.clone()
    }

    /// Acknowledged updates of one task, in order.
    pub fn updates(&self, task_id: &str) -> Vec<StatusUpdate> {
        let recorded = self.lock();
        let mut seen = std::collections::BTreeSet::new();
        recorded
            .updates
            .iter()
            .filter(|u| u.task_id == task_id && recorded.acked.contains(&u.uuid) && seen.insert(u.uuid.clone()))
            .cloned()
            .collect()
    }

    pub fn states(&self, task_id: &str) -> Vec<TaskState> {
        self.updates(task_id).iter().map(|u| u.state).collect()
    }

    pub async fn wait_state(&self, task_id: &str, state: TaskState) -> StatusUpdate {
        wait_for(&format!("{task_id} reaches {state}"), || self.updates(task_id).into_iter().find(|u| u.state == state))
            .await
    }

    pub async fn wait_registrations(&self, n: usize) -> RegisterAgent {
        wait_for(&format!("{n} registrations"), || self.registrations().get(n - 1).cloned()).await
    }
}

async fn serve(mut stream: Stream, recorded: Arc<Mutex<Recorded>>, wake: Arc<Notify>, ca: Arc<gantry_trust::Ca>) {
    let Some((method, path, body)) = read_request(&mut stream).await else { return };
    let agent_path = path.strip_prefix(PREFIX).unwrap_or("").to_string();
    let (status, answer) = match (method.as_str(), agent_path.as_str()) {
        _ if path == "/internal/v1/ca" => (200, ca.cert_pem().to_string()),
        _ if path == "/internal/v1/join" => {
            let join: gantry_api::security::JoinRequest = serde_json::from_slice(&body).expect("a JoinRequest body");
            let identity = gantry_trust::Identity::Agent(join.agent_id.clone());
            let certificate =
                ca.sign_csr(&join.csr, &identity, gantry_trust::pki::LEAF_LIFETIME).expect("the CSR is signed");
            let answer = gantry_api::security::JoinResponse { certificate, ca: ca.cert_pem().to_string() };
            (200, serde_json::to_string(&answer).expect("json"))
        }
        ("POST", "/register") => {
            let register: RegisterAgent = serde_json::from_slice(&body).expect("a RegisterAgent body");
            let agent_id = register.info.id.clone();
            let mut r = recorded.lock().expect("lock");
            r.registrations.push(register);
            r.generation += 1;
            let answer = Registered { agent_id, heartbeat_interval_ms: HEARTBEAT_MS };
            (200, serde_json::to_string(&answer).expect("json"))
        }
        ("GET", p) if p.ends_with("/commands") => return stream_commands(stream, recorded, wake).await,
        ("POST", p) if p.ends_with("/heartbeat") => {
            let mut r = recorded.lock().expect("lock");
            r.heartbeats += 1;
            if r.forget_agent { (404, r#"{"message":"unknown agent"}"#.to_string()) } else { (200, "{}".to_string()) }
        }
        ("POST", p) if p.ends_with("/status") => {
            let update: StatusUpdate = serde_json::from_slice(&body).expect("a StatusUpdate body");
            let mut r = recorded.lock().expect("lock");
            let uuid = update.uuid.clone();
            r.updates.push(update);
            if r.refuse_status > 0 {
                r.refuse_status -= 1;
                (500, r#"{"message":"try again"}"#.to_string())
            } else {
                r.acked.push(uuid);
                (200, "{}".to_string())
            }
        }
        _ => (404, r#"{"message":"not found"}"#.to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(answer.as_bytes()).await;
}

async fn stream_commands(mut stream: Stream, recorded: Arc<Mutex<Recorded>>, wake: Arc<Notify>) {
    let generation = recorded.lock().expect("lock").generation;
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    loop {
        let woken = wake.notified();
        let lines: Option<Vec<String>> = {
            let mut r = recorded.lock().expect("lock");
            if r.generation != generation {
                return;
            }
            (!r.silent).then(|| {
                let mut lines: Vec<String> =
                    r.commands.drain(..).map(|c| serde_json::to_string(&c).expect("json")).collect();
                lines.push(serde_json::to_string(&AgentCommand::Ping).expect("json"));
                lines
            })
        };
        let Some(lines) = lines else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        for line in lines {
            if stream.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                return;
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(HEARTBEAT_MS), woken).await;
    }
}

/// Reads one request: method, path (without query) and body.
async fn read_request(stream: &mut Stream) -> Option<(String, String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut request_line = head.lines().next()?.split_whitespace();
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.split('?').next()?.to_string();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((method, path, body))
}

/// A work dir whose tasks and executors are all killed when it is dropped, even if a test fails.
pub struct WorkDir {
    pub dir: tempfile::TempDir,
}

impl WorkDir {
    pub fn new() -> WorkDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new().prefix("gantry-agent-test-").tempdir().expect("temp dir");
        // Traversable, as a host's work dir is: an agent running as root starts tasks as nobody.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        WorkDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn sandbox(&self, task_id: &str) -> PathBuf {
        self.path().join("tasks").join(task_id)
    }

    pub fn executor_info(&self, task_id: &str) -> gantry_agent::sandbox::ExecutorInfo {
        let path = self.sandbox(task_id).join("executor.json");
        gantry_agent::sandbox::read_json(&path).expect("readable executor.json").expect("executor.json exists")
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.path().join("tasks")) else { return };
        for entry in entries.flatten() {
            let path = entry.path().join("executor.json");
            if let Ok(Some(info)) = gantry_agent::sandbox::read_json::<gantry_agent::sandbox::ExecutorInfo>(&path) {
                use nix::sys::signal::Signal::SIGKILL;
                let _ = gantry_agent::process::signal_group(info.task_pgid, SIGKILL);
                if gantry_agent::process::is_alive(info.executor_pid, info.executor_start_time) {
                    let _ = gantry_agent::process::signal_pid(info.executor_pid, SIGKILL);
                }
            }
            // A killed executor leaves its task's cgroups behind.
            if let Some(cgroup) = gantry_agent::cgroup::TaskCgroup::from_sandbox(&entry.path()) {
                let _ = cgroup.kill_and_remove(Duration::from_secs(2));
            }
        }
    }
}

pub fn config(master: &FakeMaster, work_dir: &WorkDir) -> AgentConfig {
    AgentConfig {
        master: master.url.clone(),
        work_dir: work_dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("address"),
        hostname: Some("test-host".to_string()),
        resources: Some(Resources::parse("cpus=2;mem=1024").expect("resources")),
        attributes: BTreeMap::from([("zone".to_string(), "a".to_string())]),
        executor_path: PathBuf::from(env!("CARGO_BIN_EXE_gantry")),
        join_token: Some(master.join_token.clone()),
        task_user: None,
        task_limits: Default::default(),
        images: Default::default(),
        gpus: Default::default(),
        cgroup_favordynmods: false,
    }
}

pub async fn start(master: &FakeMaster, work_dir: &WorkDir) -> AgentHandle {
    gantry_agent::start(config(master, work_dir)).await.expect("the agent starts")
}

/// Polls `condition` every 20 ms for up to 20 s.
pub async fn wait_for<T>(what: &str, mut condition: impl FnMut() -> Option<T>) -> T {
    for _ in 0..1000 {
        if let Some(value) = condition() {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Live (non-zombie) processes in process group `pgid`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| gantry_agent::process::stat(*pid).is_some_and(|s| s.pgrp == pgid && s.state != 'Z'))
        .collect()
}

pub async fn wait_group_gone(pgid: i32) {
    wait_for(&format!("process group {pgid} to be empty"), || group_members(pgid).is_empty().then_some(())).await;
}
