//! Portability: the same workload files (configs/apps/*, configs/jobs/*), unchanged, deployed on
//! a local, an onprem, an aws, a gce and an azure cluster behave the same: every app's instances
//! run (and are healthy where they have health checks), `web`'s `hostname UNIQUE` and `zones`'s
//! `zone GROUP_BY` / `MAX_PER 2` constraints hold on the agents' zone attributes, and a job run
//! succeeds. Each cluster is 1 master + 3 agents in 3 zones, brought up and down by the real
//! binary: onprem on test hosts, the clouds on their labs (emulators whose instances are test
//! hosts).
//!
//! Needs root (test hosts) and moto; skips with a reason otherwise (and fails where every test
//! must run).
#![cfg(all(feature = "aws", feature = "gce", feature = "azure"))]

mod cloud_lab;
mod support;

use cloud_lab::{CloudLab, Kind};
use gantry_api::{RunStatus, TaskState};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use support::{BIN, wait_for};

/// The files deployed on every cluster, relative to the repository.
const APPS: [&str; 3] = ["configs/apps/web.toml", "configs/apps/zones.json", "configs/apps/tcp-echo.toml"];
const JOBS: [&str; 2] = ["configs/jobs/report.toml", "configs/jobs/nightly.toml"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One cluster under test: its file, state dir and the environment the binary needs.
struct Target {
    label: &'static str,
    name: String,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Target {
    fn new(label: &'static str, env: Vec<(String, String)>) -> Target {
        let dir = tempfile::Builder::new().prefix("gantry-portability-").tempdir().expect("temp dir");
        Target { label, name: format!("port{label}"), dir, env }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("cluster.toml")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state").join(&self.name)
    }

    fn run_ok(&self, args: &[&str]) -> String {
        let mut command = Command::new(BIN);
        command.args(args).env("GANTRY_STATE_DIR", self.dir.path().join("state")).env_remove("SSH_AUTH_SOCK");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let out = command.output().expect("run gantry");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "[{}] gantry {args:?} failed:\n{text}", self.label);
        text
    }

    /// `up`, deploy the files unchanged with the CLI, check the behaviour, `down`.
    fn check(&self, rt: &tokio::runtime::Runtime) {
        let file = self.file();
        let file = file.to_str().expect("utf-8 path");
        self.run_ok(&["up", file]);
        for app in APPS {
            self.run_ok(&["app", "deploy", &repo().join(app).to_string_lossy(), "--cluster", &self.name]);
        }
        for job in JOBS {
            self.run_ok(&["job", "deploy", &repo().join(job).to_string_lossy(), "--cluster", &self.name]);
        }
        let url = std::fs::read_to_string(self.state().join("master_url")).expect("master url");
        let client = support::state_dir_client(url.trim(), &self.state());
        rt.block_on(async {
            let agents = client.list_agents().await.expect("agents");
            let zone_of: BTreeMap<String, String> = agents
                .iter()
                .map(|a| (a.info.id.clone(), a.info.attributes.get("zone").cloned().unwrap_or_default()))
                .collect();
            assert_eq!(zone_of.values().collect::<BTreeSet<_>>().len(), 3, "[{}] 3 zones: {agents:?}", self.label);
            let running = |app: &'static str, n: usize, healthy: bool| {
                let client = &client;
                async move {
                    let tasks = client.list_tasks(Some(app), false).await.unwrap_or_default();
                    let up: Vec<_> = tasks
                        .into_iter()
                        .filter(|t| t.state == TaskState::Running && (!healthy || t.healthy == Some(true)))
                        .collect();
                    (up.len() == n).then_some(up)
                }
            };
            let web = wait_for("web: 3 healthy instances", Duration::from_secs(90), || running("web", 3, true)).await;
            let hosts: BTreeSet<&str> = web.iter().map(|t| t.host.as_str()).collect();
            assert_eq!(hosts.len(), 3, "[{}] hostname UNIQUE: {web:?}", self.label);
            let zones =
                wait_for("zones: 4 healthy instances", Duration::from_secs(90), || running("zones", 4, true)).await;
            let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
            for task in &zones {
                *per_zone.entry(zone_of.get(&task.agent_id).map_or("", String::as_str)).or_default() += 1;
            }
            assert!(per_zone.values().all(|n| *n <= 2), "[{}] MAX_PER 2 per zone: {per_zone:?}", self.label);
            assert_eq!(per_zone.len(), 3, "[{}] GROUP_BY zone spreads across the 3 zones: {per_zone:?}", self.label);
            wait_for("tcp-echo: 2 healthy instances", Duration::from_secs(90), || running("tcp-echo", 2, true)).await;
        });
        self.run_ok(&["job", "run", "report", "--cluster", &self.name]);
        rt.block_on(async {
            let run = wait_for("the report run to finish", Duration::from_secs(60), || async {
                let runs = client.list_job_runs("report").await.unwrap_or_default();
                runs.into_iter().find(|r| matches!(r.status, RunStatus::Success | RunStatus::Failed))
            })
            .await;
            assert_eq!(run.status, RunStatus::Success, "[{}] the job run succeeds: {run:?}", self.label);
        });
        self.run_ok(&["down", file]);
        println!("[{}] the workloads behaved the same", self.label);
    }
}

fn local() -> Target {
    let target = Target::new("local", Vec::new());
    let port_base = support::port_block(1500);
    let text = format!(
        "version = 1\n[cluster]\nname = \"{name}\"\nprovider = \"local\"\n\n\
         [runtime]\nheartbeat_interval = \"500ms\"\n\n\
         [[pool]]\nname = \"workers\"\ncount = 3\nresources = \"cpus=2;mem=2048;disk=10000\"\n\
         attributes = {{ zone = \"z{{index}}\" }}\n\n\
         [local]\nport_base = {port_base}\nports_per_agent = 500\napi_port = 0\n",
        name = target.name
    );
    std::fs::write(target.file(), text).expect("write the cluster file");
    target
}

fn onprem(lab: &gantry_lab::testhosts::Lab) -> Target {
    let target = Target::new("onprem", Vec::new());
    let mut text = format!(
        "version = 1\n[cluster]\nname = \"{name}\"\nprovider = \"onprem\"\n\n\
         [runtime]\nheartbeat_interval = \"500ms\"\n\n\
         [ssh]\nkey_file = \"{key}\"\nknown_hosts_file = \"{known}\"\nconnect_timeout = \"3s\"\n",
        name = target.name,
        key = lab.client_key().display(),
        known = lab.known_hosts_file().display()
    );
    for (i, host) in lab.hosts().iter().enumerate() {
        let (role, zone) = if i == 0 { ("master", String::new()) } else { ("agent", format!("z{i}")) };
        text.push_str(&format!("\n[[onprem.host]]\naddress = \"{}\"\nrole = \"{role}\"\n", host.address()));
        if !zone.is_empty() {
            text.push_str(&format!("attributes = {{ zone = \"{zone}\" }}\n"));
        }
    }
    std::fs::write(target.file(), text).expect("write the cluster file");
    target
}

fn cloud(lab: &CloudLab) -> Target {
    let label = lab.kind.name();
    let target = Target::new(label, lab.env());
    let machine = lab.machine();
    let text = format!(
        "version = 1\n[cluster]\nname = \"{name}\"\nprovider = \"{label}\"\nttl = \"1h\"\n\n\
         [runtime]\nheartbeat_interval = \"500ms\"\n\n{sections}\n\
         [[pool]]\nname = \"masters\"\nrole = \"master\"\ncount = 1\n{machine}\n\
         [[pool]]\nname = \"workers\"\ncount = 3\n{machine}",
        name = target.name,
        sections = lab.sections(""),
    );
    std::fs::write(target.file(), text).expect("write the cluster file");
    target
}

fn onprem_lab() -> Option<gantry_lab::testhosts::Lab> {
    match gantry_lab::testhosts::Lab::new(4) {
        Ok(lab) => Some(lab),
        Err(skip) => {
            support::skipped(&skip.0);
            None
        }
    }
}

#[test]
fn the_same_workload_files_behave_the_same_on_every_provider() {
    let rt = cloud_lab::runtime();
    local().check(&rt);
    let Some(hosts) = onprem_lab() else { return };
    onprem(&hosts).check(&rt);
    drop(hosts);
    for kind in [Kind::Aws, Kind::Gce, Kind::Azure] {
        let Some(lab) = CloudLab::start(kind) else { return };
        cloud(&lab).check(&rt);
        assert_eq!(lab.leftovers(&rt, &format!("port{}", kind.name())), Vec::<String>::new(), "down left nothing");
    }
}
