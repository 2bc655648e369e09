//! End-to-end tests of provisioning with the real binary and the local provider: `gantry up`,
//! `status`, `plan`, scaling, `down`, an `up` killed mid-bootstrap, and the supervisor. Every test
//! works in its own temporary directory (state dir, cluster file copy with `api_port = 0` and a
//! port range of its own) and kills every process naming that directory when it ends.

mod support;

use gantry_api::{AgentState, Client, TaskState};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::{BIN, kill_all, processes_naming, repo_root, wait_for};

/// A cluster file copy and a state dir in one temporary directory.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::Builder::new().prefix("gantry-prov-e2e-").tempdir().expect("temp dir");
        let apps = dir.path().join("apps");
        std::fs::create_dir_all(&apps).expect("apps dir");
        std::fs::copy(repo_root().join("configs/apps/hello.toml"), apps.join("hello.toml")).expect("copy hello.toml");
        std::fs::create_dir_all(dir.path().join("jobs")).expect("jobs dir");
        std::fs::copy(repo_root().join("configs/jobs/nightly.toml"), dir.path().join("jobs/nightly.toml"))
            .expect("copy nightly.toml");
        let port_base = support::port_block(100);
        let text = std::fs::read_to_string(repo_root().join("configs/local.toml")).expect("configs/local.toml");
        let text = text
            .replace("api_port = 5050", "api_port = 0")
            .replace("port_base = 31000", &format!("port_base = {port_base}"))
            .replace("ports_per_agent = 500", "ports_per_agent = 20");
        assert!(text.contains("api_port = 0") && text.contains("ports_per_agent = 20"), "{text}");
        std::fs::write(dir.path().join("local.toml"), text).expect("write local.toml");
        Env { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self) -> PathBuf {
        self.path().join("local.toml")
    }

    fn state_root(&self) -> PathBuf {
        self.path().join("state")
    }

    /// The cluster's state dir.
    fn state(&self) -> PathBuf {
        self.state_root().join("local")
    }

    fn command(&self, verb: &str) -> Command {
        self.command_with(Path::new(BIN), verb)
    }

    fn command_with(&self, binary: &Path, verb: &str) -> Command {
        let mut command = Command::new(binary);
        command
            .arg(verb)
            .arg(self.file())
            .arg("--state-dir")
            .arg(self.state_root())
            .env_remove("GANTRY_MASTER")
            .env_remove("GANTRY_STATE_DIR");
        command
    }

    /// Runs `gantry <verb> local.toml`; panics with its output unless it succeeds.
    fn ok(&self, verb: &str) -> String {
        let output = self.command(verb).output().expect("run gantry");
        let (stdout, stderr) = texts(&output);
        assert!(output.status.success(), "gantry {verb} failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
        stdout
    }

    fn set_masters(&self, n: u32) {
        let text = std::fs::read_to_string(self.file()).expect("read");
        let at = text.find("\nmasters = ").expect("a masters line") + "\nmasters = ".len();
        let end = at + text[at..].find(' ').expect("a comment after the count");
        let text = format!("{}{n}{}", &text[..at], &text[end..]);
        assert!(text.contains(&format!("masters = {n} ")), "{text}");
        std::fs::write(self.file(), text).expect("write");
    }

    fn set_count(&self, from: u32, to: u32) {
        let text = std::fs::read_to_string(self.file()).expect("read");
        let text = text.replace(&format!("count = {from}"), &format!("count = {to}"));
        std::fs::write(self.file(), text).expect("write");
    }

    fn client(&self) -> Client {
        let url = std::fs::read_to_string(self.state().join("master_url")).expect("up records the master URL");
        support::state_dir_client(url.trim(), &self.state())
    }

    fn pid_files(&self) -> Vec<(String, String)> {
        let mut pids = Vec::new();
        for host in ["master-0", "workers-0", "workers-1", "workers-2"] {
            let role = if host == "master-0" { "master" } else { "agent" };
            for file in [format!("{role}.pid"), format!("{role}.daemon.pid")] {
                let path = self.state().join("hosts").join(host).join("run").join(&file);
                pids.push((format!("{host}/{file}"), std::fs::read_to_string(path).unwrap_or_default()));
            }
        }
        pids
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        kill_all(self.path());
    }
}

fn texts(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

async fn active_agents(client: &Client) -> Vec<String> {
    let agents = client.list_agents().await.unwrap_or_default();
    let mut names: Vec<String> =
        agents.into_iter().filter(|a| a.state == AgentState::Active).map(|a| a.info.hostname).collect();
    names.sort();
    names
}

async fn running_hello(client: &Client) -> Option<String> {
    let tasks = client.list_tasks(Some("hello"), false).await.ok()?;
    let running: Vec<_> = tasks.into_iter().filter(|t| t.state == TaskState::Running).collect();
    (running.len() == 1).then(|| running[0].host.clone())
}

async fn assert_down(env: &Env, master_url: &str) {
    wait_for("no process naming the test dir", Duration::from_secs(10), || async {
        processes_naming(env.path()).is_empty().then_some(())
    })
    .await;
    assert!(!env.state().exists(), "down removes the cluster's state dir");
    let address = master_url.trim_start_matches("https://");
    assert!(std::net::TcpStream::connect(address).is_err(), "nothing listens on {address} any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_status_scale_and_down() {
    let env = Env::new();
    let up = env.ok("up");
    assert!(up.contains("4 to create"), "{up}");
    assert!(up.contains("[workers-2] wait-ready … done"), "{up}");
    let client = env.client();
    let url = client.base().to_string();
    assert!(up.contains(&format!("API: {url}")) && up.contains(&format!("export GANTRY_MASTER={url}")), "{up}");
    assert_eq!(active_agents(&client).await, ["workers-0", "workers-1", "workers-2"]);

    let status = env.ok("status");
    for host in ["workers-0", "workers-1", "workers-2"] {
        let line = status.lines().find(|l| l.starts_with(host)).unwrap_or_default();
        assert!(line.contains("bootstrapped") && line.contains("running") && line.contains("ACTIVE"), "{status}");
    }
    assert!(status.lines().any(|l| l.starts_with("master-0") && l.contains("serving")), "{status}");
    let mut json = env.command("status");
    let json: serde_json::Value =
        serde_json::from_slice(&json.args(["--output", "json"]).output().expect("status -o json").stdout)
            .expect("status prints JSON");
    assert_eq!(json["master_url"], url.as_str());
    assert_eq!(json["hosts"].as_array().map(Vec::len), Some(4), "{json}");
    wait_for("hello to run", Duration::from_secs(30), || running_hello(&client)).await;
    let job = client.get_job("nightly-backup").await.expect("the file's job is deployed");
    assert_eq!(job.definition.schedules.len(), 1);

    // Client commands find the cluster's master without --master: by name, or as the only one.
    for extra in [&["--cluster", "local"][..], &[][..]] {
        let output = Command::new(BIN)
            .args(["app", "list", "-o", "json"])
            .args(extra)
            .env_remove("GANTRY_MASTER")
            .env("GANTRY_STATE_DIR", env.state_root())
            .output()
            .expect("gantry app list");
        let (stdout, stderr) = texts(&output);
        assert!(output.status.success(), "app list {extra:?}: {stderr}");
        assert!(stdout.contains("\"hello\""), "app list {extra:?} reached the cluster: {stdout}");
    }

    assert!(env.ok("plan").contains("No changes"));
    let pids = env.pid_files();
    let again = env.ok("up");
    assert!(again.contains("No changes") && again.contains("Workload hello: unchanged"), "{again}");
    assert!(again.contains("Workload nightly-backup: unchanged"), "{again}");
    assert!(!again.contains("] "), "a second up runs no phase: {again}");
    assert_eq!(env.pid_files(), pids, "no daemon was restarted");

    // A host whose daemons died is bootstrapped again by the next up (and only that host).
    let run = env.state().join("hosts/workers-1/run");
    for file in ["agent.pid", "agent.daemon.pid"] {
        let pid: i32 = std::fs::read_to_string(run.join(file)).expect("pid file").trim().parse().expect("a pid");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).expect("kill");
    }
    wait_for("workers-1 to be unreachable", Duration::from_secs(30), || async {
        (!active_agents(&client).await.contains(&"workers-1".to_string())).then_some(())
    })
    .await;
    let heal = env.ok("up");
    assert!(heal.contains("workers-1  (agent, pool workers: UNREACHABLE at the master: bootstrap again)"), "{heal}");
    assert!(heal.contains("[workers-1] start … done") && !heal.contains("[workers-0]"), "{heal}");
    assert_eq!(active_agents(&client).await, ["workers-0", "workers-1", "workers-2"]);

    env.set_count(3, 4);
    let grow = env.ok("up");
    assert!(grow.contains("1 to create, 0 to change, 0 to destroy") && grow.contains("workers-3"), "{grow}");
    for host in ["master-0", "workers-0", "workers-1", "workers-2"] {
        assert!(!grow.contains(&format!("[{host}]")), "{host} is left alone: {grow}");
    }
    assert_eq!(active_agents(&client).await, ["workers-0", "workers-1", "workers-2", "workers-3"]);

    env.set_count(4, 2);
    let shrink = env.ok("up");
    assert!(shrink.contains("2 to destroy"), "{shrink}");
    assert!(shrink.contains("- drain+destroy"), "the plan says the hosts are drained: {shrink}");
    for host in ["workers-2", "workers-3"] {
        // The drain phase runs first: the master moves the host's tasks before anything stops.
        assert!(shrink.contains(&format!("[{host}] drain … done: drained")), "{shrink}");
        assert!(shrink.contains(&format!("[{host}] revoke-agent … done: revoked and forgotten")), "{shrink}");
        assert!(shrink.contains(&format!("[{host}] drain complete")), "{shrink}");
        assert!(shrink.contains(&format!("[{host}] destroy complete")), "{shrink}");
        assert!(!env.state().join("hosts").join(host).exists(), "{host} is removed");
    }
    // A removed agent is forgotten: the master no longer lists it at all.
    let mut listed: Vec<String> =
        client.list_agents().await.expect("agents").into_iter().map(|a| a.info.hostname).collect();
    listed.sort();
    assert_eq!(listed, ["workers-0", "workers-1"]);
    let host = wait_for("hello to run on a remaining host", Duration::from_secs(30), || running_hello(&client)).await;
    assert!(host == "workers-0" || host == "workers-1", "hello runs on {host}");

    // A new gantry build (here: the same binary with a byte appended) is rolled out to every host.
    let build = env.path().join("new-build/gantry");
    std::fs::create_dir_all(build.parent().expect("a parent")).expect("dir");
    let mut bytes = std::fs::read(BIN).expect("read the binary");
    bytes.push(0);
    std::fs::write(&build, bytes).expect("write the new build");
    std::fs::set_permissions(&build, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let master_pid = std::fs::read_to_string(env.state().join("hosts/master-0/run/master.daemon.pid")).expect("pid");
    let output = env.command_with(&build, "up").output().expect("run the new build");
    let (rollout, stderr) = texts(&output);
    assert!(output.status.success(), "{rollout}\n{stderr}");
    assert!(
        rollout.contains("0 to create, 3 to change, 0 to destroy") && rollout.contains("gantry changed"),
        "{rollout}"
    );
    assert!(rollout.contains("[workers-1] start … done: restarted with the new config"), "{rollout}");
    let new_pid = std::fs::read_to_string(env.state().join("hosts/master-0/run/master.daemon.pid")).expect("pid");
    assert_ne!(master_pid, new_pid, "the master runs the new build");
    assert_eq!(active_agents(&client).await, ["workers-0", "workers-1"]);
    wait_for("hello to run after the rollout", Duration::from_secs(30), || running_hello(&client)).await;

    let down = env.ok("down");
    assert!(down.contains("Deleted app hello."), "{down}");
    assert_down(&env, &url).await;
    let again = env.ok("down");
    assert!(again.contains("is down"), "down is idempotent: {again}");
}

/// Starts `up`, sends `signal` once an agent's bootstrap has begun, and returns its stderr.
/// `runtime.masters = 3`: `up` makes one Raft group of three masters (each with the cluster's
/// CA, tokens and secrets key), agents and clients know all three, and a SIGKILLed leader is
/// replaced without losing the cluster's state or restarting its task; `down` removes it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_three_masters_survives_the_leaders_death_and_down_removes_them() {
    let env = Env::new();
    env.set_masters(3);
    let up = env.ok("up");
    assert!(up.contains("[master-2] wait-ready … done"), "{up}");
    let client = env.client();
    let urls: Vec<String> = client.masters().all().to_vec();
    assert_eq!(urls.len(), 3, "the recorded master URL lists all three: {urls:?}");
    let keys: Vec<Vec<u8>> = (0..3)
        .map(|i| std::fs::read(env.state().join(format!("hosts/master-{i}/data/secrets.key"))).expect("a secrets key"))
        .collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "every master holds the same secrets key");
    assert_eq!(std::fs::read(env.state().join("secrets.key")).expect("the state dir keeps it"), keys[0]);

    let masters = client.list_masters().await.expect("masters");
    assert_eq!(masters.len(), 3, "{masters:?}");
    assert_eq!(masters.iter().filter(|m| m.role == "leader").count(), 1, "{masters:?}");
    assert_eq!(active_agents(&client).await, ["workers-0", "workers-1", "workers-2"]);
    let hello = wait_for("hello to run", Duration::from_secs(30), || async {
        let tasks = client.list_tasks(Some("hello"), false).await.ok()?;
        tasks.into_iter().find(|t| t.state == TaskState::Running).map(|t| t.id)
    })
    .await;
    let status = env.ok("status");
    for host in ["master-0", "master-1", "master-2"] {
        assert!(status.lines().any(|l| l.starts_with(host) && l.contains("serving")), "{status}");
    }
    let again = env.ok("up");
    assert!(again.contains("No changes") && !again.contains("] "), "a second up is a no-op: {again}");

    // SIGKILL the leader's daemon. Its supervisor starts it again at once, on its disk: the
    // group has a leader again (the restarted master itself when it is back within its lease,
    // since its vote is stored, or another one) and nothing committed is lost.
    let leader = masters.iter().find(|m| m.role == "leader").expect("a leader");
    let host = format!("master-{}", leader.id - 1);
    let pid_file = env.state().join(format!("hosts/{host}/run/master.daemon.pid"));
    let pid: i32 = std::fs::read_to_string(&pid_file).expect("pid file").trim().parse().expect("a pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).expect("kill");
    wait_for("the killed master's daemon to be started again", Duration::from_secs(20), || async {
        let now: i32 = std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()?;
        (now != pid).then_some(())
    })
    .await;
    wait_for("one leader of three masters", Duration::from_secs(20), || async {
        let masters = client.list_masters().await.ok()?;
        (masters.len() == 3 && masters.iter().filter(|m| m.role == "leader").count() == 1).then_some(())
    })
    .await;
    let mut scaled = client.get_app("hello").await.expect("hello survives the failover").definition;
    scaled.instances = 2;
    client.put_app(&scaled).await.expect("a write commits after the failover");
    wait_for("two hello tasks", Duration::from_secs(30), || async {
        let tasks = client.list_tasks(Some("hello"), false).await.ok()?;
        (tasks.iter().filter(|t| t.state == TaskState::Running).count() == 2).then_some(())
    })
    .await;
    let first = client.get_task(&hello).await.expect("the first task");
    assert_eq!(first.state, TaskState::Running, "the failover did not restart the running task: {first:?}");

    let down = env.ok("down");
    assert!(down.contains("is down"), "{down}");
    assert_down(&env, &urls[0]).await;
    for url in &urls[1..] {
        let address = url.trim_start_matches("https://");
        assert!(std::net::TcpStream::connect(address).is_err(), "nothing listens on {address} any more");
    }
}

/// `up` grows the masters 1 → 3 → 5 and shrinks them to 3 while the cluster serves: new
/// masters join the group as learners and become voters, removed ones leave it before their hosts
/// go, and the running task is never restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_grows_the_masters_from_one_to_five_and_shrinks_them_to_three_and_one() {
    let env = Env::new();
    env.ok("up");
    let hello = {
        let client = env.client();
        wait_for("hello to run", Duration::from_secs(30), || async {
            let tasks = client.list_tasks(Some("hello"), false).await.ok()?;
            tasks.into_iter().find(|t| t.state == TaskState::Running).map(|t| t.id)
        })
        .await
    };
    for (step, (n, voters)) in [(3, 3), (5, 5), (3, 3)].into_iter().enumerate() {
        env.set_masters(n);
        let up = env.ok("up");
        if step == 2 {
            for host in ["master-3", "master-4"] {
                assert!(up.contains(&format!("[{host}] leave-group … done")), "{up}");
            }
        }
        let client = env.client();
        assert_eq!(client.masters().all().len(), n as usize, "up records every master's URL");
        let masters = wait_for(&format!("{voters} voters"), Duration::from_secs(30), || async {
            let masters = client.list_masters().await.ok()?;
            let followers = masters.iter().filter(|m| m.role == "follower").count();
            let leaders = masters.iter().filter(|m| m.role == "leader").count();
            (masters.len() == voters && leaders == 1 && followers == voters - 1).then_some(masters)
        })
        .await;
        let ids: Vec<u64> = masters.iter().map(|m| m.id).collect();
        assert_eq!(ids, (1..=voters as u64).collect::<Vec<_>>(), "masters-0.. are numbers 1..: {masters:?}");
        let task = client.get_task(&hello).await.expect("the task");
        assert_eq!(task.state, TaskState::Running, "masters {n}: the task was never restarted: {task:?}");
        let again = env.ok("up");
        assert!(again.contains("No changes"), "masters {n}: a second up is a no-op: {again}");
    }

    // 3 → 1 while a master that goes leads (master-0's daemon is killed until another master
    // leads; its supervisor starts it again): the leader removes itself, and master-0 is left
    // leading a group of one.
    let client = env.client();
    for attempt in 0.. {
        let masters = wait_for("one leader of three", Duration::from_secs(30), || async {
            let masters = client.list_masters().await.ok()?;
            (masters.len() == 3 && masters.iter().filter(|m| m.role == "leader").count() == 1).then_some(masters)
        })
        .await;
        if masters.iter().any(|m| m.role == "leader" && m.id != 1) {
            break;
        }
        assert!(attempt < 10, "another master than master-0 leads after a few kills of master-0");
        let pid_file = env.state().join("hosts/master-0/run/master.daemon.pid");
        let pid: i32 = std::fs::read_to_string(&pid_file).expect("pid file").trim().parse().expect("a pid");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).expect("kill");
        wait_for("master-0's daemon to be started again", Duration::from_secs(20), || async {
            let now: i32 = std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()?;
            (now != pid).then_some(())
        })
        .await;
    }
    env.set_masters(1);
    let up = env.ok("up");
    for host in ["master-1", "master-2"] {
        assert!(up.contains(&format!("[{host}] leave-group … done")), "{up}");
    }
    let client = env.client();
    let masters = wait_for("master-0 alone leads", Duration::from_secs(30), || async {
        let masters = client.list_masters().await.ok()?;
        (masters.len() == 1 && masters[0].role == "leader").then_some(masters)
    })
    .await;
    assert_eq!(masters[0].id, 1, "{masters:?}");
    let task = client.get_task(&hello).await.expect("the task");
    assert_eq!(task.state, TaskState::Running, "masters 1: the task was never restarted: {task:?}");
    assert!(env.ok("up").contains("No changes"), "masters 1: a second up is a no-op");
    env.ok("down");
}

fn interrupt_up(env: &Env, signal: nix::sys::signal::Signal) -> String {
    interrupt(env, "up", "inspect", signal)
}

/// Starts `gantry <verb>`, sends `signal` once an agent's `phase` has finished, and returns its
/// stderr.
fn interrupt(env: &Env, verb: &str, phase: &'static str, signal: nix::sys::signal::Signal) -> String {
    let mut child = env.command(verb).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn gantry");
    let stdout = child.stdout.take().expect("stdout");
    let (started, bootstrap_started) = std::sync::mpsc::channel();
    // Keeps reading to the end, so `up` never writes into a closed pipe.
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("[workers-") && line.contains(phase) {
                let _ = started.send(());
            }
        }
    });
    bootstrap_started.recv_timeout(Duration::from_secs(60)).expect("the phase runs on an agent");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
    nix::sys::signal::kill(pid, signal).expect("signal gantry");
    let output = child.wait_with_output().expect("reap gantry");
    reader.join().expect("the reader ends with gantry");
    assert!(!output.status.success(), "an interrupted {verb} does not succeed");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_up_interrupted_with_ctrl_c_is_resumed() {
    let env = Env::new();
    let stderr = interrupt_up(&env, nix::sys::signal::Signal::SIGINT);
    assert!(stderr.contains("interrupted: the journal records what was under way"), "{stderr}");
    let plan = env.ok("plan");
    assert!(plan.contains("resuming an interrupted bootstrap"), "{plan}");
    env.ok("up");
    let client = env.client();
    let url = client.base().to_string();
    assert_eq!(active_agents(&client).await, ["workers-0", "workers-1", "workers-2"]);
    env.ok("down");
    assert_down(&env, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_up_killed_mid_bootstrap_is_resumed() {
    let env = Env::new();
    interrupt_up(&env, nix::sys::signal::Signal::SIGKILL);
    let journal = std::fs::read_to_string(env.state().join("journal.jsonl")).expect("journal");
    assert!(!journal.contains(r#""kind":"done","action":"bootstrap","host":"workers"#), "killed too late:\n{journal}");

    let plan = env.ok("plan");
    assert!(plan.contains("resuming an interrupted bootstrap"), "{plan}");
    let resumed = env.ok("up");
    assert!(resumed.contains("Cluster `local` is up"), "{resumed}");
    let client = env.client();
    let url = client.base().to_string();
    assert_eq!(active_agents(&client).await, ["workers-0", "workers-1", "workers-2"]);
    assert!(env.ok("plan").contains("No changes"));
    env.ok("down");
    assert_down(&env, &url).await;
}

#[test]
fn a_bad_cluster_file_is_refused_with_its_position() {
    let env = Env::new();
    let text = std::fs::read_to_string(env.file()).expect("read");
    std::fs::write(env.file(), text.replace("count = 3", "count = \"three\"")).expect("write");
    let line = text.lines().position(|l| l.starts_with("count = 3")).expect("a count line") + 1;
    for verb in ["plan", "up"] {
        let output = env.command(verb).output().expect("run gantry");
        let (_, stderr) = texts(&output);
        assert!(!output.status.success(), "{verb} accepted a bad file");
        let position = format!("local.toml:{line}:9");
        assert!(stderr.contains(&position), "{verb}: expected {position} in: {stderr}");
    }
    assert!(!env.state().exists(), "nothing was created");
}

fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(") ").next().is_some_and(|rest| !rest.is_empty() && !rest.starts_with(['Z', 'X']))
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok().filter(|pid| alive(*pid))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervisor_restarts_its_daemon_and_stops_with_it() {
    let env = Env::new();
    let run = env.path().join("run");
    let pid_file = run.join("sleeper.pid");
    let daemon_pid_file = run.join("sleeper.daemon.pid");
    let env_file = env.path().join("sleeper.env");
    // The daemon's environment names the test dir, so kill_all finds it if the test fails.
    std::fs::write(&env_file, format!("MARK={}\nSECONDS_TO_SLEEP=1000\n", env.path().display())).expect("env file");
    let status = Command::new(BIN)
        .args(["supervise", "--detach", "--pid-file"])
        .arg(&pid_file)
        .arg("--log-file")
        .arg(env.path().join("sleeper.log"))
        .arg("--env-file")
        .arg(&env_file)
        .args(["--", "/bin/sleep", "${SECONDS_TO_SLEEP}"])
        .status()
        .expect("run supervise");
    assert!(status.success());
    let supervisor = read_pid(&pid_file).expect("the supervisor runs and wrote its pid");
    let first = wait_for("the daemon", Duration::from_secs(10), || async { read_pid(&daemon_pid_file) }).await;
    let cmdline = std::fs::read(format!("/proc/{first}/cmdline")).expect("cmdline");
    assert_eq!(String::from_utf8_lossy(&cmdline), "/bin/sleep\x001000\x00", "${{VAR}} is expanded from the env file");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), nix::sys::signal::Signal::SIGKILL).expect("kill");
    let second = wait_for("a restarted daemon", Duration::from_secs(20), || async {
        read_pid(&daemon_pid_file).filter(|pid| *pid != first)
    })
    .await;
    assert!(alive(supervisor));

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(supervisor), nix::sys::signal::Signal::SIGTERM).expect("term");
    wait_for("supervisor and daemon to exit", Duration::from_secs(20), || async {
        (!alive(supervisor) && !alive(second)).then_some(())
    })
    .await;
    assert!(!pid_file.exists() && !daemon_pid_file.exists(), "the pid files are removed");
    let log = std::fs::read_to_string(env.path().join("sleeper.log")).expect("log");
    assert!(log.contains("restarting"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_killed_midway_is_resumed_and_leaks_nothing() {
    let env = Env::new();
    env.ok("up");
    let url = env.client().base().to_string();
    interrupt(&env, "down", "stop … done", nix::sys::signal::Signal::SIGKILL);
    assert!(env.state().join("journal.jsonl").exists(), "the killed down left its journal");
    let down = env.ok("down");
    assert!(down.contains("is down"), "{down}");
    assert_down(&env, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_whose_reader_went_away_still_finishes() {
    let env = Env::new();
    env.ok("up");
    let url = env.client().base().to_string();
    // Like `gantry down … | head -1`: the reader closes the pipe after the first line.
    let mut child = env.command("down").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn down");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    std::io::BufReader::new(stdout).read_line(&mut first).expect("read the first line");
    let status = child.wait().expect("wait for down");
    assert!(status.success(), "down stops for nobody reading its output: {status} (first line: {first})");
    assert_down(&env, &url).await;
}
