//! The end-to-end scenarios every cloud provider passes on its lab, through the real binary:
//! `plan`, `up` of 3 masters (one Raft group) + 3 agents spread across zones with the service
//! deployed, clients finding the leader among the masters' private addresses, a no-op
//! second `up`, a scale-up with `up` SIGKILLed while it creates the new instance and again while
//! it bootstraps it (no duplicate instance), a drain-first scale-down during which the service
//! keeps its instances running, `down` leaving nothing in the cloud; and `sweep` keeping a known
//! cluster and deleting an orphan.

use super::{CloudLab, Kind, runtime};
use crate::support::{self, BIN, wait_for};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The masters of the lifecycle's cluster.
const MASTERS: [&str; 3] = ["master-0", "master-1", "master-2"];

const SERVICE: &str = "id = \"svc\"\ncmd = \"exec sleep 100043\"\ninstances = 3\ncpus = 0.1\nmem = 16\n";

/// A lab cluster file, its state dir and the runs of the binary on it.
pub struct Env<'a> {
    pub lab: &'a CloudLab,
    pub dir: tempfile::TempDir,
    pub name: String,
    /// `runtime.masters`, all in the `masters` pool.
    pub masters: u32,
}

impl<'a> Env<'a> {
    pub fn new(lab: &'a CloudLab, name: &str) -> Env<'a> {
        let dir = tempfile::Builder::new().prefix("gantry-cloud-e2e-").tempdir().expect("temp dir");
        std::fs::write(dir.path().join("svc.toml"), SERVICE).expect("write the app file");
        Env { lab, dir, name: name.to_string(), masters: 1 }
    }

    pub fn file(&self) -> PathBuf {
        self.dir.path().join("cluster.toml")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state").join(&self.name)
    }

    /// Writes the cluster file with `workers` agents (and `workloads`: `[[workload]]` tables).
    pub fn write_with(&self, workers: u32, workloads: &str) {
        let machine = self.lab.machine();
        let text = format!(
            "version = 1\n[cluster]\nname = \"{name}\"\nprovider = \"{provider}\"\nttl = \"4h\"\n\n\
             [runtime]\nmasters = {masters}\nheartbeat_interval = \"500ms\"\nagent_unreachable_timeout = \"3s\"\n\n\
             {sections}\n\
             [[pool]]\nname = \"masters\"\nrole = \"master\"\ncount = {masters}\n{machine}\n\
             [[pool]]\nname = \"workers\"\ncount = {workers}\n{machine}\n{workloads}",
            name = self.name,
            masters = self.masters,
            provider = self.lab.kind.name(),
            sections = self.lab.sections(&self.lab.user_tags("owner", "cloud-e2e")),
        );
        std::fs::write(self.file(), text).expect("write the cluster file");
    }

    pub fn write(&self, workers: u32) {
        self.write_with(workers, "[[workload]]\napp = \"svc.toml\"\n");
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command.args(args).env("GANTRY_STATE_DIR", self.dir.path().join("state")).env_remove("SSH_AUTH_SOCK");
        for (key, value) in self.lab.env() {
            command.env(key, value);
        }
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let started = Instant::now();
        let out = self.command(args).output().expect("run gantry");
        println!(
            "gantry {args:?}: {} in {:?}\n{}{}",
            out.status,
            started.elapsed(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "gantry {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `gantry up`, waits until `until` holds for the journal's text, then SIGKILLs it.
    pub fn kill_up_when(&self, what: &str, until: impl Fn(&str) -> bool) {
        let file = self.file();
        let mut child = self
            .command(&["up", file.to_str().expect("utf-8 path")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gantry up");
        let journal = self.state().join("journal.jsonl");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let text = std::fs::read_to_string(&journal).unwrap_or_default();
            if until(&text) {
                break;
            }
            assert!(child.try_wait().expect("poll up").is_none(), "`up` ended before {what}");
            assert!(Instant::now() < deadline, "`up` never reached {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().expect("SIGKILL up");
        let _ = child.wait();
        println!("killed `up` {what}");
    }

    /// A client of the cluster's master (as `up` left its URL and credentials).
    pub fn client(&self) -> gantry_api::Client {
        let url = std::fs::read_to_string(self.state().join("master_url")).expect("master url");
        support::state_dir_client(url.trim(), &self.state())
    }
}

/// plan, up, no-op up, scale up through two SIGKILLs, drain-first scale down, down.
pub fn lifecycle(kind: Kind) {
    let Some(lab) = CloudLab::start(kind) else { return };
    let rt = runtime();
    let cluster = format!("{}e2e", kind.name());
    let mut env = Env::new(&lab, &cluster);
    env.masters = 3;
    let file = env.file();
    let file = file.to_str().expect("utf-8 path");

    // plan lists the cluster's resources and the hosts, and makes nothing.
    env.write(3);
    let plan = env.run_ok(&["plan", file]);
    for resource in lab.plan_resources().iter().chain(&["master-0", "workers-2"]) {
        assert!(plan.contains(resource), "the plan names {resource}:\n{plan}");
    }
    assert!(lab.hosts(&rt, &cluster).is_empty(), "plan launched nothing");

    // up: 3 masters + 3 agents, registered with their zones, the service deployed.
    env.run_ok(&["up", file]);
    let first = lab.hosts(&rt, &cluster);
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        [MASTERS.as_slice(), &["workers-0", "workers-1", "workers-2"]].concat()
    );
    assert!(first.values().all(|n| *n == 1), "{first:?}");
    let client = env.client();
    rt.block_on(async {
        // One group of three at their private addresses, one leading; the client follows it.
        let urls = client.masters().all().to_vec();
        assert_eq!(urls.len(), 3, "up records every master's URL: {urls:?}");
        let private = format!("https://{}", lab.cidr().trim_end_matches("0/24"));
        assert!(urls.iter().all(|u| u.starts_with(&private)), "the masters' private addresses: {urls:?}");
        let masters = client.list_masters().await.expect("masters");
        assert_eq!(masters.len(), 3, "{masters:?}");
        assert_eq!(masters.iter().filter(|m| m.role == "leader").count(), 1, "{masters:?}");
        let agents = client.list_agents().await.expect("agents");
        assert_eq!(agents.len(), 3, "{agents:?}");
        let zones: std::collections::BTreeSet<&str> =
            agents.iter().filter_map(|a| a.info.attributes.get("zone").map(String::as_str)).collect();
        assert_eq!(zones.len(), 3, "workers spread across the zones: {agents:?}");
        for agent in &agents {
            let attribute = |key: &str| agent.info.attributes.get(key).map(String::as_str);
            assert_eq!(attribute("provider"), Some(kind.name()), "{agent:?}");
            assert_eq!(attribute("region"), Some(lab.region()), "{agent:?}");
            assert_eq!(attribute("machine_type"), Some(lab.machine_type()), "{agent:?}");
        }
        wait_for("the service's 3 instances", Duration::from_secs(60), || async {
            let tasks = client.list_tasks(Some("svc"), false).await.unwrap_or_default();
            (tasks.iter().filter(|t| t.state == gantry_api::TaskState::Running).count() == 3).then_some(())
        })
        .await;
    });
    let status = env.run_ok(&["status", file]);
    assert!(status.contains(lab.plan_resources()[0]) && status.contains("workers-2"), "{status}");
    for master in MASTERS {
        assert!(status.lines().any(|l| l.starts_with(master) && l.contains("serving")), "{status}");
    }

    // A second up changes nothing and launches nothing.
    let again = env.run_ok(&["up", file]);
    assert!(again.contains("No changes"), "{again}");
    assert_eq!(lab.hosts(&rt, &cluster), first);

    // Scale 3 → 4, with `up` killed while it creates the instance and again while it bootstraps
    // it: the next run finishes with exactly one instance for the new host.
    env.write(4);
    env.kill_up_when("during instance creation", |journal| {
        journal.lines().any(|l| l.contains("\"workers-3\"") && l.contains("\"intent\"") && l.contains("\"create\""))
    });
    env.kill_up_when("during bootstrap", |journal| {
        journal.lines().any(|l| l.contains("\"workers-3\"") && l.contains("\"intent\"") && l.contains("\"bootstrap\""))
    });
    env.run_ok(&["up", file]);
    let scaled = lab.hosts(&rt, &cluster);
    assert_eq!(scaled.get("workers-3"), Some(&1), "no duplicate instance: {scaled:?}");
    assert_eq!(scaled.len(), 7);
    rt.block_on(async {
        wait_for("workers-3 to join", Duration::from_secs(30), || async {
            let agents = client.list_agents().await.unwrap_or_default();
            agents.iter().any(|a| a.info.hostname == "workers-3").then_some(())
        })
        .await;
    });

    // Scale 4 → 2: two instances are drained, deleted and forgotten, and the service never
    // runs fewer than its 3 instances (minimum_health_capacity 1.0) meanwhile: replacements
    // start elsewhere before the drained tasks stop. A watcher samples the tasks throughout.
    env.write(2);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        let url = std::fs::read_to_string(env.state().join("master_url")).expect("master url");
        let state = env.state();
        std::thread::spawn(move || {
            let client = support::state_dir_client(url.trim(), &state);
            let rt = runtime();
            let (mut samples, mut fewest) = (0usize, usize::MAX);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(tasks) = rt.block_on(client.list_tasks(Some("svc"), false)) {
                    let running = tasks.iter().filter(|t| t.state == gantry_api::TaskState::Running).count();
                    fewest = fewest.min(running);
                    samples += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (samples, fewest)
        })
    };
    env.run_ok(&["up", file]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (samples, fewest) = watcher.join().expect("the watcher");
    assert!(samples > 10, "the watcher sampled the drain ({samples} samples)");
    assert_eq!(fewest, 3, "the service kept its 3 running instances through the drain");
    let shrunk = lab.hosts(&rt, &cluster);
    assert_eq!(
        shrunk.keys().collect::<Vec<_>>(),
        [MASTERS.as_slice(), &["workers-0", "workers-1"]].concat(),
        "{shrunk:?}"
    );

    // down: nothing of the cluster is left in the cloud, and the lab removed the hosts.
    env.run_ok(&["down", file]);
    assert_eq!(lab.leftovers(&rt, &cluster), Vec::<String>::new());
    assert!(lab.hosts_gone(Duration::from_secs(10)), "every test host went with its instance");
}

/// A known cluster is kept by `sweep`; once its state dir is lost it is an orphan, listed by a
/// dry run and deleted with `--yes`.
pub fn sweep_orphan(kind: Kind) {
    let Some(lab) = CloudLab::start(kind) else { return };
    let rt = runtime();
    let cluster = format!("orphan{}", kind.name());
    let env = Env::new(&lab, &cluster);
    env.write(1);
    let file = env.file();
    env.run_ok(&["up", file.to_str().expect("utf-8 path")]);
    assert_eq!(lab.hosts(&rt, &cluster).len(), 2);
    let sweep = lab.sweep_args();
    let sweep: Vec<&str> = sweep.iter().map(String::as_str).collect();
    let with_yes: Vec<&str> = sweep.iter().copied().chain(["--yes"]).collect();

    // While its state dir exists, a dry run and a real sweep keep it.
    let dry = env.run_ok(&sweep);
    assert!(dry.contains(&cluster) && dry.contains("kept"), "{dry}");
    env.run_ok(&with_yes);
    assert_eq!(lab.hosts(&rt, &cluster).len(), 2, "a known, unexpired cluster is kept");

    // The state dir is lost: the cluster is an orphan; the dry run lists it, --yes deletes it.
    std::fs::remove_dir_all(env.state()).expect("lose the state");
    let dry = env.run_ok(&sweep);
    assert!(dry.contains("orphaned") && dry.contains("--yes"), "{dry}");
    assert_eq!(lab.hosts(&rt, &cluster).len(), 2, "a dry run deletes nothing");
    env.run_ok(&with_yes);
    assert_eq!(lab.leftovers(&rt, &cluster), Vec::<String>::new());
}
