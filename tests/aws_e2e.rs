//! End to end on the cloud lab (`gantry_lab::cloud::aws`): the real binary runs `up`, `status`,
//! `down` and `sweep` on the aws provider through the official SDK against moto, whose instances
//! become real test hosts (network namespaces with sshd) at their private addresses. Every phase
//! runs as it would in an AWS account: the network is made, instances launched and waited for,
//! SSH bootstrap, agents registered with their zone, workloads deployed; `up` killed with SIGKILL
//! while it creates instances and again while it bootstraps resumes without a duplicate instance;
//! `down` leaves nothing of the cluster in EC2.
//!
//! Needs root and moto (scripts/test installs both); skips with a reason otherwise (and fails
//! where every test must run).
#![cfg(feature = "aws")]

mod support;

use gantry_lab::cloud::aws::{AwsLab, AwsLabError};
use gantry_provider_aws::ec2::Ec2;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{BIN, wait_for};

const SERVICE: &str = "id = \"svc\"\ncmd = \"exec sleep 100043\"\ninstances = 3\ncpus = 0.1\nmem = 16\n";

fn lab(dir: &std::path::Path) -> Option<AwsLab> {
    match AwsLab::start(dir) {
        Ok(lab) => Some(lab),
        Err(AwsLabError::Lab(gantry_lab::testhosts::LabError::Unsupported(skip))) => {
            support::skipped(&skip.0);
            None
        }
        Err(e @ AwsLabError::MotoMissing(_)) => {
            support::skipped(&e.to_string());
            None
        }
        Err(e) => panic!("cannot start the AWS lab: {e}"),
    }
}

/// A lab cluster file, its state dir and the runs of the binary on it.
struct Env {
    dir: tempfile::TempDir,
    name: String,
    env: Vec<(String, String)>,
    cidr: String,
}

impl Env {
    fn new(lab: &AwsLab, name: &str) -> Env {
        let dir = tempfile::Builder::new().prefix("gantry-aws-e2e-").tempdir().expect("temp dir");
        std::fs::write(dir.path().join("svc.toml"), SERVICE).expect("write the app file");
        Env { dir, name: name.to_string(), env: lab.env(), cidr: lab.cidr().to_string() }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("cluster.toml")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state").join(&self.name)
    }

    fn write(&self, workers: u32) {
        let text = format!(
            "version = 1\n[cluster]\nname = \"{name}\"\nprovider = \"aws\"\nttl = \"4h\"\n\n\
             [runtime]\nheartbeat_interval = \"500ms\"\nagent_unreachable_timeout = \"3s\"\n\n\
             [ssh]\nuser = \"root\"\nconnect_timeout = \"3s\"\n\n\
             [aws]\nregion = \"eu-west-1\"\nvpc_cidr = \"{cidr}\"\nconnect_via = \"private\"\n\
             ssh_cidrs = [\"{cidr}\"]\napi_cidrs = [\"{cidr}\"]\ntags = {{ owner = \"aws-e2e\" }}\n\n\
             [[pool]]\nname = \"masters\"\nrole = \"master\"\ncount = 1\ninstance_type = \"t3.small\"\n\
             image = {{ owner = \"amazon\", name = \"al2023-ami-2023.*-x86_64\" }}\n\n\
             [[pool]]\nname = \"workers\"\ncount = {workers}\ninstance_type = \"t3.micro\"\n\
             image = {{ owner = \"amazon\", name = \"al2023-ami-2023.*-x86_64\" }}\n\n\
             [[workload]]\napp = \"svc.toml\"\n",
            name = self.name,
            cidr = self.cidr,
        );
        std::fs::write(self.file(), text).expect("write the cluster file");
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command.args(args).env("GANTRY_STATE_DIR", self.dir.path().join("state")).env_remove("SSH_AUTH_SOCK");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command.env("AWS_EC2_METADATA_DISABLED", "true");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
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

    fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "gantry {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `gantry up`, waits until `until` holds for the journal's text, then SIGKILLs it.
    fn kill_up_when(&self, what: &str, until: impl Fn(&str) -> bool) {
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
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}

/// The cluster's instances that are not terminated, by host name → instance ids.
fn instances(rt: &tokio::runtime::Runtime, lab: &AwsLab, cluster: &str) -> BTreeMap<String, Vec<String>> {
    let client = lab.ec2_client("eu-west-1");
    rt.block_on(async {
        let out = client
            .describe_instances()
            .filters(gantry_provider_aws::tags::filter(gantry_provider_aws::tags::CLUSTER, cluster))
            .send()
            .await
            .expect("describe instances");
        let mut hosts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for instance in out.reservations().iter().flat_map(|r| r.instances()) {
            let state = instance.state().and_then(|s| s.name()).map(|s| s.as_str().to_string()).unwrap_or_default();
            if state == "terminated" || state == "shutting-down" {
                continue;
            }
            let host = gantry_provider_aws::tags::value(instance.tags(), gantry_provider_aws::tags::HOST)
                .unwrap_or("?")
                .to_string();
            hosts.entry(host).or_default().push(instance.instance_id().unwrap_or_default().to_string());
        }
        hosts
    })
}

/// Every resource of `cluster` EC2 still has (instances, VPC, subnets, …), as the sweep sees them.
fn leftovers(rt: &tokio::runtime::Runtime, lab: &AwsLab, cluster: &str) -> Vec<(String, String)> {
    let ec2 = Ec2 { client: lab.ec2_client("eu-west-1"), region: "eu-west-1".to_string() };
    rt.block_on(async {
        let found = gantry_provider_aws::sweep::find(&ec2, std::time::SystemTime::now(), &|_| true)
            .await
            .expect("list the region");
        found.into_iter().filter(|f| f.cluster == cluster).flat_map(|f| f.resources).collect()
    })
}

#[test]
fn up_scale_kill_resume_and_down_on_the_lab() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let Some(lab) = lab(labdir.path()) else { return };
    let rt = runtime();
    let env = Env::new(&lab, "awse2e");
    let file = env.file();
    let file = file.to_str().expect("utf-8 path");

    // plan lists the network and the hosts, and makes nothing.
    env.write(3);
    let plan = env.run_ok(&["plan", file]);
    for resource in
        ["vpc", "subnet", "internet-gateway", "route-table", "security-group", "key-pair", "master-0", "workers-2"]
    {
        assert!(plan.contains(resource), "the plan names {resource}:\n{plan}");
    }
    assert!(instances(&rt, &lab, "awse2e").is_empty(), "plan launched nothing");

    // up: 1 master + 3 agents, registered with their zones, the service deployed.
    env.run_ok(&["up", file]);
    let first = instances(&rt, &lab, "awse2e");
    assert_eq!(first.keys().collect::<Vec<_>>(), ["master-0", "workers-0", "workers-1", "workers-2"]);
    assert!(first.values().all(|ids| ids.len() == 1), "{first:?}");
    let url = std::fs::read_to_string(env.state().join("master_url")).expect("master url").trim().to_string();
    let client = support::state_dir_client(&url, &env.state());
    rt.block_on(async {
        let agents = client.list_agents().await.expect("agents");
        assert_eq!(agents.len(), 3, "{agents:?}");
        let zones: std::collections::BTreeSet<&str> =
            agents.iter().filter_map(|a| a.info.attributes.get("zone").map(String::as_str)).collect();
        assert_eq!(zones.len(), 3, "workers spread across the zones: {agents:?}");
        for agent in &agents {
            assert_eq!(agent.info.attributes.get("provider").map(String::as_str), Some("aws"), "{agent:?}");
            assert_eq!(agent.info.attributes.get("region").map(String::as_str), Some("eu-west-1"), "{agent:?}");
            assert_eq!(agent.info.attributes.get("machine_type").map(String::as_str), Some("t3.micro"), "{agent:?}");
        }
        wait_for("the service's 3 instances", Duration::from_secs(60), || async {
            let tasks = client.list_tasks(Some("svc"), false).await.unwrap_or_default();
            (tasks.iter().filter(|t| t.state == gantry_api::TaskState::Running).count() == 3).then_some(())
        })
        .await;
    });
    let status = env.run_ok(&["status", file]);
    assert!(status.contains("security-group") && status.contains("workers-2"), "{status}");

    // A second up changes nothing and launches nothing.
    let again = env.run_ok(&["up", file]);
    assert!(again.contains("No changes"), "{again}");
    assert_eq!(instances(&rt, &lab, "awse2e"), first);

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
    let scaled = instances(&rt, &lab, "awse2e");
    assert_eq!(scaled.get("workers-3").map(Vec::len), Some(1), "no duplicate instance: {scaled:?}");
    assert_eq!(scaled.len(), 5);
    rt.block_on(async {
        wait_for("workers-3 to join", Duration::from_secs(30), || async {
            let agents = client.list_agents().await.unwrap_or_default();
            agents.iter().any(|a| a.info.hostname == "workers-3").then_some(())
        })
        .await;
    });

    // Scale 4 → 2: two instances are drained, terminated and forgotten, and the service never
    // runs fewer than its 3 instances (minimum_health_capacity 1.0) meanwhile: replacements
    // start elsewhere before the drained tasks stop. A watcher samples the tasks throughout.
    env.write(2);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (stop, url, state) = (stop.clone(), url.clone(), env.state());
        std::thread::spawn(move || {
            let client = support::state_dir_client(&url, &state);
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
    let shrunk = instances(&rt, &lab, "awse2e");
    assert_eq!(shrunk.keys().collect::<Vec<_>>(), ["master-0", "workers-0", "workers-1"], "{shrunk:?}");

    // down: nothing of the cluster is left in EC2, and the lab removed the hosts.
    env.run_ok(&["down", file]);
    assert_eq!(leftovers(&rt, &lab, "awse2e"), Vec::<(String, String)>::new());
    let gone = lab.wait_for(Duration::from_secs(10), |hosts| hosts.is_empty().then_some(()));
    assert!(gone.is_some(), "every test host went with its instance");
}

#[test]
fn sweep_removes_an_orphaned_cluster_and_keeps_a_known_one() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let Some(lab) = lab(labdir.path()) else { return };
    let rt = runtime();
    let env = Env::new(&lab, "orphan");
    env.write(1);
    let file = env.file();
    env.run_ok(&["up", file.to_str().expect("utf-8 path")]);
    assert_eq!(instances(&rt, &lab, "orphan").len(), 2);

    // While its state dir exists, a dry run and a real sweep keep it.
    let dry = env.run_ok(&["sweep", "aws", "--region", "eu-west-1"]);
    assert!(dry.contains("orphan") && dry.contains("kept"), "{dry}");
    env.run_ok(&["sweep", "aws", "--region", "eu-west-1", "--yes"]);
    assert_eq!(instances(&rt, &lab, "orphan").len(), 2, "a known, unexpired cluster is kept");

    // The state dir is lost: the cluster is an orphan; the dry run lists it, --yes deletes it.
    std::fs::remove_dir_all(env.state()).expect("lose the state");
    let dry = env.run_ok(&["sweep", "aws", "--region", "eu-west-1"]);
    assert!(dry.contains("orphaned") && dry.contains("--yes"), "{dry}");
    assert_eq!(instances(&rt, &lab, "orphan").len(), 2, "a dry run deletes nothing");
    env.run_ok(&["sweep", "aws", "--region", "eu-west-1", "--yes"]);
    assert_eq!(leftovers(&rt, &lab, "orphan"), Vec::<(String, String)>::new());
}
