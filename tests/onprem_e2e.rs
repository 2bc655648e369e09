//! End-to-end tests of the `onprem` provider: the real binary bootstraps test hosts (network
//! namespaces with their own sshd, tests/support/testhosts.rs) over real SSH. Needs root; each
//! test prints `SKIPPED: <reason>` and returns when this machine lacks a prerequisite.

mod support;

use gantry_api::{AgentState, Client, TaskState};
use gantry_lab::testhosts::{Host, Lab, Skip};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::{BIN, wait_for};

/// The service the cluster file deploys: its tasks are `sleep` processes with a marker argument.
const SERVICE: &str = "id = \"svc\"\ncmd = \"exec sleep 100042\"\ninstances = 4\ncpus = 0.1\nmem = 16\n";
const MARKER: &str = "sleep 100042";

fn lab(n: usize) -> Option<Lab> {
    match Lab::new(n) {
        Ok(lab) => Some(lab),
        Err(Skip(reason)) => {
            support::skipped(&reason.to_string());
            None
        }
    }
}

/// A cluster file for some of a lab's hosts, its state dir and the runs of the binary on it.
struct Env {
    dir: tempfile::TempDir,
    name: String,
}

impl Env {
    fn new(lab: &Lab) -> Env {
        let dir = tempfile::Builder::new().prefix("gantry-onprem-e2e-").tempdir().expect("temp dir");
        std::fs::write(dir.path().join("svc.toml"), SERVICE).expect("write the app file");
        Env { dir, name: format!("op-{}", lab.prefix()) }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("cluster.toml")
    }

    /// An admin client of the cluster's master at `url`, with what `up` keeps in the state dir.
    fn client(&self, url: &str) -> Client {
        support::state_dir_client(url, &self.state())
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state").join(&self.name)
    }

    /// Writes the cluster file: `[ssh]` with the lab's key and known_hosts, `extra` after it,
    /// then one `[[onprem.host]]` per (host, role, extra keys).
    fn write(&self, lab: &Lab, ssh_extra: &str, hosts: &[(&Host, &str, &str)]) {
        let mut text = format!(
            "version = 1\n[cluster]\nname = \"{}\"\nprovider = \"onprem\"\n\n[[workload]]\napp = \"svc.toml\"\n\n\
             [ssh]\nkey_file = \"{}\"\nknown_hosts_file = \"{}\"\nconnect_timeout = \"2s\"\n{ssh_extra}\n",
            self.name,
            lab.client_key().display(),
            lab.known_hosts_file().display()
        );
        for (host, role, extra) in hosts {
            text.push_str(&format!(
                "\n[[onprem.host]]\naddress = \"{}\"\nrole = \"{role}\"\nattributes = {{ rack = \"r{}\" }}\n{extra}\n",
                host.address(),
                host.index()
            ));
        }
        std::fs::write(self.file(), text).expect("write the cluster file");
    }

    /// Runs `gantry <verb> <cluster file>` (`verb` may hold options: `status --output json`).
    fn run(&self, verb: &str) -> Output {
        let started = Instant::now();
        let out = Command::new(BIN)
            .args(verb.split_whitespace())
            .arg(self.file())
            .env("GANTRY_STATE_DIR", self.dir.path().join("state"))
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .expect("run gantry");
        println!(
            "gantry {verb}: {} in {:?}\n{}{}",
            out.status,
            started.elapsed(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs a client command (`gantry app list`, …): no cluster file; it finds the cluster in the
    /// state dir.
    fn run_client(&self, command: &str) -> Output {
        let out = Command::new(BIN)
            .args(command.split_whitespace())
            .env("GANTRY_STATE_DIR", self.dir.path().join("state"))
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("GANTRY_MASTER")
            .output()
            .expect("run gantry");
        println!(
            "gantry {command}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn run_ok(&self, verb: &str) -> String {
        let out = self.run(verb);
        assert!(out.status.success(), "gantry {verb} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn run_err(&self, verb: &str) -> String {
        let out = self.run(verb);
        assert!(!out.status.success(), "gantry {verb} should fail");
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }
}

/// What gantry may leave on a host: the names of its files outside the lab's own (overlay upper
/// dirs and bound dirs), its tmpfs /tmp and /run, and gantry processes.
fn footprint(host: &Host) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for sub in ["etc.upper", "usr.upper", "var.upper", "opt", "srv", "home", "root"] {
        collect(&host.dir().join(sub), &host.dir().join(sub), &mut names);
    }
    let remote = host.run_ok("find /tmp /run -xdev 2>/dev/null | grep -v '^/run/sshd' || true");
    names.extend(remote.lines().map(|l| format!("remote:{l}")));
    let processes = host.run_ok("ps -e -o args= | grep -v -e '^ps ' -e grep || true");
    names.extend(processes.lines().filter(|l| l.contains("gantry") || l.contains(MARKER)).map(|l| format!("ps:{l}")));
    names.retain(|n| !n.contains("/var/log/") && !n.ends_with("/.ssh") && !n.contains("/.cache"));
    names
}

fn collect(root: &Path, dir: &Path, names: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        names.insert(format!("{}:{}", root.display(), path.strip_prefix(root).unwrap_or(&path).display()));
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect(root, &path, names);
        }
    }
}

/// Task states of `svc` by agent hostname.
async fn tasks_by_host(client: &Client) -> BTreeMap<String, Vec<TaskState>> {
    let mut by_host: BTreeMap<String, Vec<TaskState>> = BTreeMap::new();
    for task in client.list_tasks(Some("svc"), false).await.unwrap_or_default() {
        by_host.entry(task.host.clone()).or_default().push(task.state);
    }
    by_host
}

fn running_on(by_host: &BTreeMap<String, Vec<TaskState>>, host: &str) -> usize {
    by_host.get(host).map_or(0, |states| states.iter().filter(|s| **s == TaskState::Running).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onprem_cluster_lifecycle_on_test_hosts() {
    let Some(lab) = lab(5) else { return };
    let env = Env::new(&lab);
    let (master, agents) = (lab.host(0), [lab.host(1), lab.host(2), lab.host(3)]);
    let before: Vec<BTreeSet<String>> = lab.hosts().iter().map(footprint).collect();
    let mut hosts = vec![(master, "master", "")];
    hosts.extend(agents.iter().map(|h| (*h, "agent", "")));
    env.write(&lab, "", &hosts);

    // Up: 1 master + 3 agents, the service deployed.
    let out = env.run_ok("up");
    assert!(out.contains("Workload svc: deployed"), "{out}");
    let url = format!("https://{}:5050", master.address());
    assert!(out.contains(&url), "{out}");
    let client = env.client(&url);
    let nodes = client.list_agents().await.expect("agents");
    let active: BTreeSet<String> =
        nodes.iter().filter(|a| a.state == AgentState::Active).map(|a| a.info.hostname.clone()).collect();
    let names: BTreeSet<String> =
        agents.iter().map(|h| format!("host-{}", h.address().to_string().replace('.', "-"))).collect();
    assert_eq!(active, names, "every agent registered under its name");
    for node in &nodes {
        assert_eq!(node.info.attributes.get("provider").map(String::as_str), Some("onprem"), "{node:?}");
        assert!(node.info.attributes.contains_key("rack"), "{node:?}");
    }
    let by_host = wait_for("4 running svc tasks", Duration::from_secs(60), || async {
        let by_host = tasks_by_host(&client).await;
        (by_host.keys().map(|h| running_on(&by_host, h)).sum::<usize>() == 4).then_some(by_host)
    })
    .await;
    assert!(master.run_ok("ls /opt/gantry/bin").contains("gantry"), "the binary is installed on the master");

    // A second up changes nothing.
    let out = env.run_ok("up");
    assert!(out.contains("No changes"), "{out}");
    assert!(!out.contains("upload-binary"), "{out}");

    // Cut off an agent that runs tasks: they are replaced on the others; restored, its stale
    // tasks are killed.
    let victim = *agents.iter().max_by_key(|h| running_on(&by_host, &host_name(h))).expect("an agent");
    let victim_name = host_name(victim);
    assert!(running_on(&by_host, &victim_name) > 0);
    assert!(victim.run_ok("ps -e -o args=").contains(MARKER), "the victim runs svc tasks");
    victim.cut_off();
    wait_for("svc tasks replaced away from the cut-off agent", Duration::from_secs(60), || async {
        let by_host = tasks_by_host(&client).await;
        let elsewhere: usize = by_host.keys().filter(|h| **h != victim_name).map(|h| running_on(&by_host, h)).sum();
        (elsewhere == 4).then_some(())
    })
    .await;
    victim.restore();
    wait_for("the restored agent ACTIVE with its stale tasks killed", Duration::from_secs(60), || async {
        let active = client
            .list_agents()
            .await
            .ok()?
            .iter()
            .any(|a| a.info.hostname == victim_name && a.state == AgentState::Active);
        let out = victim.run("ps -e -o args=");
        (active && out.status.success() && !String::from_utf8_lossy(&out.stdout).contains(MARKER)).then_some(())
    })
    .await;

    // Add a host: only it is bootstrapped.
    let added = lab.host(4);
    hosts.push((added, "agent", ""));
    env.write(&lab, "", &hosts);
    let out = env.run_ok("up");
    let bootstrapped: BTreeSet<&str> = out
        .lines()
        .filter(|l| l.contains("] upload-binary"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next())
        .collect();
    assert_eq!(bootstrapped, BTreeSet::from([host_name(added).as_str()]), "{out}");

    // Remove a host: drained, uninstalled, its filesystem as before gantry.
    let removed = agents[0];
    hosts.retain(|(h, _, _)| h.index() != removed.index());
    env.write(&lab, "", &hosts);
    let out = env.run_ok("up");
    assert!(out.contains(&format!("[{}] remove-files", host_name(removed))), "{out}");
    assert_eq!(footprint(removed), before[removed.index()], "{} is as it was before gantry", removed.name());
    wait_for("4 svc tasks running on the remaining agents", Duration::from_secs(60), || async {
        let by_host = tasks_by_host(&client).await;
        let on_removed = running_on(&by_host, &host_name(removed));
        let total: usize = by_host.keys().map(|h| running_on(&by_host, h)).sum();
        (on_removed == 0 && total == 4).then_some(())
    })
    .await;

    // Down: every host clean, the state dir gone.
    let out = env.run_ok("down");
    assert!(out.contains("is down"), "{out}");
    for host in lab.hosts() {
        assert_eq!(footprint(host), before[host.index()], "{} is as it was before gantry", host.name());
    }
    assert!(!env.state().exists(), "the state dir is removed");
}

fn host_name(host: &Host) -> String {
    format!("host-{}", host.address().to_string().replace('.', "-"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_problems_are_reported_per_host_with_the_cause() {
    let Some(lab) = lab(2) else { return };
    let env = Env::new(&lab);
    let (master, agent) = (lab.host(0), lab.host(1));

    // A key the hosts do not accept: the error names the user and the key tried.
    let wrong = env.dir.path().join("wrong_key");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&wrong)
        .status()
        .expect("ssh-keygen");
    assert!(ok.success());
    let key_line = format!("key_file = \"{}\"", wrong.display());
    env.write(&lab, "", &[(master, "master", &key_line)]);
    let err = env.run_err("up");
    assert!(err.contains("master-0"), "{err}");
    assert!(err.contains("root") && err.contains(&wrong.display().to_string()), "{err}");
    assert!(err.contains("rejected"), "{err}");

    // A closed port: refused.
    env.write(&lab, "", &[(master, "master", "port = 2")]);
    let err = env.run_err("up");
    assert!(err.contains("refused") && err.contains(&format!("{}:2", master.address())), "{err}");

    // An unreachable host: a connect timeout, not a hang. The master comes up; the agent is cut off.
    env.write(&lab, "", &[(master, "master", ""), (agent, "agent", "")]);
    agent.cut_off();
    let err = env.run_err("up");
    agent.restore();
    assert!(err.contains(&host_name(agent)), "{err}");
    assert!(err.contains("did not complete within 2s"), "{err}");

    // Once reachable, the next up finishes the job; down cleans both.
    let out = env.run_ok("up");
    assert!(out.contains(&format!("[{}] wait-ready", host_name(agent))), "{out}");
    env.run_ok("down");
    assert!(!master.run_ok("ls /opt").contains("gantry"), "nothing left on the master");
    assert!(!agent.run_ok("ls /opt").contains("gantry"), "nothing left on the agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bastion_reaches_hosts_the_provisioner_cannot() {
    let Some(lab) = lab(3) else { return };
    let env = Env::new(&lab);
    let (bastion, master, agent) = (lab.host(0), lab.host(1), lab.host(2));
    lab.hide_from_gateway(1);
    lab.hide_from_gateway(2);
    assert!(bastion.accepts(Duration::from_secs(1)), "the bastion is reachable");
    assert!(!master.accepts(Duration::from_secs(1)), "the master is reachable only through the bastion");
    assert!(!agent.accepts(Duration::from_secs(1)), "the agent is reachable only through the bastion");
    let bastion_section = format!("[ssh.bastion]\naddress = \"{}\"\n", bastion.address());
    env.write(&lab, &bastion_section, &[(master, "master", ""), (agent, "agent", "")]);

    let out = env.run_ok("up");
    assert!(out.contains(&format!("[{}] wait-ready … done: ACTIVE", host_name(agent))), "{out}");
    assert!(master.dir().join("opt/gantry/bin/gantry").is_file(), "installed on the master");
    let status = env.run_ok("status");
    assert!(status.contains("ACTIVE"), "status reaches the master's API through the bastion: {status}");
    assert!(env.run_ok("up").contains("No changes"));
    env.run_ok("down");
    for host in [master, agent] {
        assert!(!host.dir().join("opt/gantry").exists(), "{} is clean", host.name());
    }
    assert!(!bastion.dir().join("opt/gantry").exists(), "nothing is installed on the bastion");
}

/// `gantry status --output json`'s `live` column, by host.
fn live_by_host(env: &Env) -> BTreeMap<String, String> {
    let status: serde_json::Value = serde_json::from_str(&env.run_ok("status --output json")).expect("status JSON");
    status["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| {
            (h["host"].as_str().unwrap_or_default().to_string(), h["live"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

/// Three masters behind a bastion: `up` reaches each of them through a forward of its own (each
/// master's own health, its join), and with one master cut off, `status` still reaches the
/// others and, through them, the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_masters_behind_a_bastion_are_each_reached_through_it() {
    let Some(lab) = lab(5) else { return };
    let env = Env::new(&lab);
    let (bastion, masters, agent) = (lab.host(0), [lab.host(1), lab.host(2), lab.host(3)], lab.host(4));
    for i in 1..=4 {
        lab.hide_from_gateway(i);
    }
    assert!(!masters[1].accepts(Duration::from_secs(1)), "the masters are reachable only through the bastion");
    let extra = format!("[ssh.bastion]\naddress = \"{}\"\n\n[runtime]\nmasters = 3\n", bastion.address());
    let mut hosts: Vec<(&Host, &str, &str)> = masters.iter().map(|m| (*m, "master", "")).collect();
    hosts.push((agent, "agent", ""));
    env.write(&lab, &extra, &hosts);

    let out = env.run_ok("up");
    let masters_named: Vec<String> = (0..3).map(|i| format!("master-{i}")).collect();
    for (master, name) in masters.iter().zip(&masters_named) {
        let ready = format!("[{name}] wait-ready … done: https://{}:5050", master.address());
        assert!(out.contains(&ready), "{name}'s own health through its forward: {out}");
        assert!(master.dir().join("opt/gantry/bin/gantry").is_file(), "installed on {}", master.name());
    }
    let live = live_by_host(&env);
    for name in &masters_named {
        assert!(live[name].starts_with("serving https://"), "{name} is reached through the bastion: {live:?}");
    }
    assert!(live[&host_name(agent)].starts_with("ACTIVE"), "{live:?}");
    // Client commands find the masters through the bastion too, from the state dir alone.
    let listed = env.run_client("master list -o json");
    assert!(listed.status.success(), "gantry master list through the bastion failed");
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("master list as JSON");
    let rows = listed.as_array().expect("a list of masters");
    assert_eq!(rows.len(), 3, "{listed}");
    assert_eq!(rows.iter().filter(|m| m["role"] == "leader").count(), 1, "one leader: {listed}");

    // master-0 is cut off (from the bastion too): the others are still reached, and the agent
    // is found through them (once they have elected a leader, if master-0 led).
    masters[0].cut_off();
    let live = wait_for("status through masters 1 and 2", Duration::from_secs(60), || async {
        let live = live_by_host(&env);
        (live["master-0"] == "not answering"
            && masters_named[1..].iter().all(|name| live[name].starts_with("serving"))
            && live[&host_name(agent)].starts_with("ACTIVE"))
        .then_some(live)
    })
    .await;
    println!("with master-0 cut off: {live:?}");
    assert!(
        env.run_client("app list").status.success(),
        "a client command reaches masters 1 and 2 through the bastion"
    );
    masters[0].restore();
    wait_for("every master serving and the agent active again", Duration::from_secs(60), || async {
        let live = live_by_host(&env);
        (masters_named.iter().all(|name| live[name].starts_with("serving"))
            && live[&host_name(agent)].starts_with("ACTIVE"))
        .then_some(())
    })
    .await;
    assert!(env.run_ok("up").contains("No changes"));
    env.run_ok("down");
    for host in [masters[0], masters[1], masters[2], agent] {
        assert!(!host.dir().join("opt/gantry").exists(), "{} is clean", host.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_user_that_is_not_root_works_through_sudo() {
    let Some(lab) = lab(2) else { return };
    if !Path::new("/usr/bin/sudo").is_file() {
        support::skipped("sudo is not installed");
        return;
    }
    let env = Env::new(&lab);
    let (master, agent) = (lab.host(0), lab.host(1));
    // The lab's sshd takes the lab key for every user whose account is not locked (`-p *`);
    // `ops` may run anything as root.
    agent.run_ok(
        "useradd -m -s /bin/sh -p '*' ops && echo 'ops ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/ops && \
         chmod 440 /etc/sudoers.d/ops",
    );
    let before = footprint(agent);
    env.write(&lab, "", &[(master, "master", ""), (agent, "agent", "user = \"ops\"")]);
    let err = env.run_err("up");
    assert!(err.contains(&host_name(agent)), "without sudo, ops cannot install: {err}");
    assert!(err.contains("cannot write /opt") && err.contains("sudo = true"), "the error says to use sudo: {err}");

    env.write(&lab, "", &[(master, "master", ""), (agent, "agent", "user = \"ops\"\nsudo = true")]);
    let out = env.run_ok("up");
    assert!(out.contains(&format!("[{}] wait-ready … done: ACTIVE", host_name(agent))), "{out}");
    let owner =
        agent.run_ok("stat -c %U /opt/gantry/bin/gantry; ps -o user= -p $(cat /opt/gantry/run/agent.daemon.pid)");
    assert_eq!(owner.split_whitespace().collect::<Vec<_>>(), ["root", "root"], "installed and run as root");
    env.run_ok("down");
    assert_eq!(footprint(agent), before, "the agent is as it was");
}
