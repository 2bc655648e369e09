//! The provider conformance suite (`gantry_provision::provider::conformance`) and the
//! transport-reuse check against the aws provider, on the cloud lab (`gantry_lab::cloud::aws`):
//! the official SDK against moto, every running instance a real test host with sshd at its
//! private address, so create waits for a booted machine exactly as on AWS.
//!
//! Needs root and moto (`scripts/test` installs both); without them each test prints
//! `SKIPPED: <reason>` and passes, or fails where every test must run (GANTRY_TESTS_REQUIRE_ALL).

#[path = "../../../tests/support/skip.rs"]
mod skip;

use gantry_lab::cloud::aws::{ACCESS_KEY_ID, AwsLab, AwsLabError, AwsLabOptions, SECRET_ACCESS_KEY};
use gantry_lab::testhosts::LabError;
use gantry_provider_aws::AwsProvider;
use gantry_provision::access::Connector;
use gantry_provision::cluster_file::{ClusterFile, Role};
use gantry_provision::provider::conformance::{self, Scenario, Subject};
use gantry_provision::provider::{HostDescription, HostSpec, Provider};
use gantry_provision::transport::Command;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const REGION: &str = "eu-west-1";
const IMAGE: &str = "{ owner = \"amazon\", name = \"al2023-ami-2023.*-x86_64\" }";

fn lab(dir: &Path) -> Option<AwsLab> {
    fake_credentials();
    let options = AwsLabOptions { regions: vec![REGION.to_string()], ..AwsLabOptions::default() };
    match AwsLab::start_with(dir, options) {
        Ok(lab) => Some(lab),
        Err(AwsLabError::Lab(LabError::Unsupported(skip))) => {
            skip::skipped(&skip.0);
            None
        }
        Err(e @ AwsLabError::MotoMissing(_)) => {
            skip::skipped(&e.to_string());
            None
        }
        Err(e) => panic!("cannot start the AWS lab: {e}"),
    }
}

/// The lab's fake credentials, for the provider's standard credential chain (the environment).
fn fake_credentials() {
    // Set once, before any test of this binary starts a lab or a provider; every writer writes
    // the same values.
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: every test calls this first and `Once` makes the others wait until it is done;
        // no thread of this binary reads these variables while they are written.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY);
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        }
    });
}

/// A lab cluster file for `cluster` in `dir`: its VPC on the lab network, or (`network`) the
/// `vpc_id`/`subnet_ids` lines of an existing one.
fn cluster_file(dir: &Path, lab: &AwsLab, cluster: &str, network: Option<&str>) -> ClusterFile {
    let cidr = lab.cidr();
    let network = network.map_or_else(|| format!("vpc_cidr = \"{cidr}\""), str::to_string);
    let text = format!(
        "version = 1\n[cluster]\nname = \"{cluster}\"\nprovider = \"aws\"\nttl = \"1h\"\n\n\
         [ssh]\nuser = \"root\"\nconnect_timeout = \"3s\"\n\n\
         [aws]\nregion = \"{REGION}\"\nendpoint_url = \"{endpoint}\"\n{network}\nconnect_via = \"private\"\n\
         ssh_cidrs = [\"{cidr}\"]\napi_cidrs = [\"{cidr}\"]\n\n\
         [[pool]]\nname = \"masters\"\nrole = \"master\"\ncount = 1\ninstance_type = \"t3.small\"\nimage = {IMAGE}\n\n\
         [[pool]]\nname = \"workers\"\ncount = 3\ninstance_type = \"t3.micro\"\nimage = {IMAGE}\n",
        endpoint = lab.endpoint_url(),
    );
    std::fs::create_dir_all(dir).expect("state dir");
    let path = dir.join(format!("{cluster}.toml"));
    std::fs::write(&path, &text).expect("write the cluster file");
    ClusterFile::parse(&path, &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn spec(cluster: &str, name: &str) -> HostSpec {
    let (role, pool) = if name.starts_with("master") { (Role::Master, "masters") } else { (Role::Agent, "workers") };
    HostSpec {
        cluster: cluster.into(),
        name: name.into(),
        role,
        pool: pool.into(),
        resources: None,
        attributes: BTreeMap::new(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}

#[test]
fn the_aws_provider_conforms_on_the_lab() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let Some(lab) = lab(labdir.path()) else { return };
    let root = tempfile::tempdir().expect("state root");
    let ours =
        AwsProvider::new(&cluster_file(&root.path().join("conf-a"), &lab, "conf-a", None), &root.path().join("conf-a"))
            .expect("an [aws] section");
    runtime().block_on(async {
        // The second cluster shares the first one's VPC and subnets (two VPCs on the one lab
        // network would hand out the same private addresses): its instances sit beside the
        // first cluster's, and only the tags tell them apart.
        ours.prepare().await.expect("prepare the first cluster's network");
        let resources = ours.cluster_resources().await.expect("the first cluster's resources");
        let id = |kind: &str| -> Vec<String> {
            resources.iter().filter(|r| r.kind == kind).filter_map(|r| r.id.clone()).collect()
        };
        let (vpc, subnets) = (id("vpc"), id("subnet"));
        assert_eq!(vpc.len(), 1, "{resources:?}");
        let existing = format!("vpc_id = \"{}\"\nsubnet_ids = {subnets:?}", vpc[0]);
        let dir = root.path().join("conf-b");
        let theirs = AwsProvider::new(&cluster_file(&dir, &lab, "conf-b", Some(&existing)), &dir).expect("[aws]");

        let subject = Subject {
            provider: &ours,
            hosts: vec![spec("conf-a", "master-0"), spec("conf-a", "workers-0")],
            interrupted: [spec("conf-a", "workers-1"), spec("conf-a", "workers-2")],
            other: &theirs,
            other_hosts: vec![spec("conf-b", "workers-0"), spec("conf-b", "workers-7")],
        };
        match conformance::run(&subject).await {
            Ok(report) => {
                println!("{report}");
                assert_eq!(report.passed, Scenario::ALL);
            }
            Err(e) => panic!("{e}"),
        }
    });
    let gone = lab.wait_for(Duration::from_secs(30), |hosts| hosts.is_empty().then_some(()));
    assert!(gone.is_some(), "every test host went with its instance: {:?}", lab.instances());
}

/// The established TCP connections to sshd on the test host at `address`, counted inside its
/// network namespace.
fn ssh_sessions(lab: &AwsLab, address: &str) -> usize {
    let instance = lab
        .instances()
        .into_iter()
        .find(|i| i.host.address().to_string() == address)
        .unwrap_or_else(|| panic!("no test host at {address}: {:?}", lab.instances()));
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", instance.host.netns(), "ss", "-Htn", "state", "established", "sport", "=", ":22"])
        .output()
        .expect("run ss in the host's namespace");
    assert!(out.status.success(), "ss: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count()
}

async fn hostname(provider: &AwsProvider, host: &HostDescription) -> String {
    let access = provider.connect(host).expect("connect");
    let out = access.transport.run(&Command::new("hostname", Duration::from_secs(30))).await.expect("run over SSH");
    assert!(out.success(), "hostname: {out:?}");
    out.stdout.trim().to_string()
}

#[test]
fn each_host_keeps_one_transport_and_one_ssh_session() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let Some(lab) = lab(labdir.path()) else { return };
    let state = tempfile::tempdir().expect("state dir");
    let file = cluster_file(state.path(), &lab, "reuse", None);
    let provider = AwsProvider::new(&file, state.path()).expect("an [aws] section");
    let rt = runtime();
    let host = rt.block_on(async {
        provider.prepare().await.expect("prepare");
        provider.create_host(&spec("reuse", "workers-0")).await.expect("create")
    });
    let address = host.address.clone().expect("an address");
    let rt_host = || rt.block_on(hostname(&provider, &host));
    let first = rt_host();
    let second = rt_host();
    assert_eq!(first, second);
    assert_eq!(ssh_sessions(&lab, &address), 1, "two connects of one host share one SSH session");

    // A second provider (another `gantry` run) has transports of its own: its session is a
    // second one, which the count sees.
    let again = AwsProvider::new(&file, state.path()).expect("an [aws] section");
    assert_eq!(rt.block_on(hostname(&again, &host)), first);
    assert_eq!(ssh_sessions(&lab, &address), 2, "another provider's transport opens its own session");

    rt.block_on(async {
        provider.destroy_host("workers-0").await.expect("destroy");
        provider.teardown().await.expect("teardown");
    });
}
