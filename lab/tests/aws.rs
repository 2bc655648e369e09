//! The AWS lab end to end: moto's EC2 driven with the official SDK, and the test hosts that
//! follow its instances. Needs root and moto (`scripts/test` installs it); every test prints
//! `SKIPPED: <reason>` and returns when this machine lacks one.
#![cfg(feature = "aws")]

#[path = "../../tests/support/skip.rs"]
mod skip;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use gantry_lab::cloud::aws::{AwsLab, AwsLabError, InstanceHost};
use gantry_lab::testhosts::LabError;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

fn start(dir: &Path) -> Option<AwsLab> {
    match AwsLab::start(dir) {
        Ok(lab) => Some(lab),
        Err(AwsLabError::Lab(LabError::Unsupported(skip))) => {
            skip::skipped(&skip.0);
            None
        }
        Err(e @ AwsLabError::MotoMissing(_)) => {
            skip::skipped(&e.to_string());
            None
        }
        Err(e) => panic!("the AWS lab did not start: {e}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
}

/// A fresh ed25519 key pair in `dir`: the private key's path and the public key line.
fn key_pair(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    (key.clone(), std::fs::read_to_string(key.with_extension("pub")).expect("read the public key"))
}

/// `command` on `address` as root with the private key `key`, not checking host keys.
fn ssh(key: &Path, address: Ipv4Addr, command: &str) -> Output {
    Command::new("ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(key)
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=3"])
        .arg(format!("root@{address}"))
        .arg(command)
        .output()
        .expect("run ssh")
}

fn ssh_ok(key: &Path, address: Ipv4Addr, command: &str) -> String {
    let out = ssh(key, address, command);
    assert!(out.status.success(), "ssh root@{address} `{command}`: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn accepts(address: Ipv4Addr) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from((address, 22)), Duration::from_millis(500)).is_ok()
}

/// Waits until `path` exists and is not empty, for at most `WAIT`; its content.
fn wait_for_file(path: &Path) -> Option<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.is_empty()
        {
            return Some(text);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A VPC and a subnet of `cidr` in the region's first zone; the subnet's id.
async fn network(ec2: &Client, cidr: &str) -> String {
    let zones = ec2.describe_availability_zones().send().await.expect("DescribeAvailabilityZones");
    let zone = zones.availability_zones()[0].zone_name().expect("a zone name").to_string();
    let vpc = ec2.create_vpc().cidr_block(cidr).send().await.expect("CreateVpc");
    let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).expect("a VPC id");
    let subnet =
        ec2.create_subnet().vpc_id(vpc_id).cidr_block(cidr).availability_zone(zone).send().await.expect("CreateSubnet");
    subnet.subnet().and_then(|s| s.subnet_id()).expect("a subnet id").to_string()
}

/// Runs one instance in `subnet` with key pair `key` and `user_data`; its id and private address.
async fn run_instance(ec2: &Client, subnet: &str, name: &str, key: &str, user_data: &str) -> (String, Ipv4Addr) {
    let out = ec2
        .run_instances()
        .image_id("ami-0123456789abcdef0")
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .subnet_id(subnet)
        .key_name(key)
        .user_data(aws_smithy_types::base64::encode(user_data))
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(Tag::builder().key("Name").value(name).build())
                .build(),
        )
        .send()
        .await
        .expect("RunInstances");
    let instance = &out.instances()[0];
    let address = instance.private_ip_address().expect("a private address").parse().expect("an IPv4 address");
    (instance.instance_id().expect("an instance id").to_string(), address)
}

#[test]
fn instances_are_test_hosts_that_follow_their_life_cycle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(lab) = start(&dir.path().join("lab")) else { return };
    let env: std::collections::BTreeMap<String, String> = lab.env().into_iter().collect();
    assert_eq!(env["AWS_ENDPOINT_URL"], lab.endpoint_url());
    assert!(env["AWS_ENDPOINT_URL"].starts_with("http://127.0.0.1:"));
    assert_eq!(env["GANTRY_LAB_CIDR"], lab.cidr().to_string());
    assert!(env["GANTRY_LAB_CIDR"].starts_with("10.77.") && env["GANTRY_LAB_CIDR"].ends_with(".0/24"));
    assert_eq!(env["AWS_REGION"], lab.region());
    assert!(!env["AWS_ACCESS_KEY_ID"].is_empty() && !env["AWS_SECRET_ACCESS_KEY"].is_empty());
    let written = std::fs::read_to_string(lab.dir().join("env")).expect("the env file");
    assert!(written.contains(&format!("GANTRY_LAB_CIDR={}\n", lab.cidr())), "{written}");

    let (key, public) = key_pair(dir.path(), "lab-key");
    let (stranger, _) = key_pair(dir.path(), "stranger");
    let ec2 = lab.ec2_client(lab.region());
    let rt = runtime();
    let user_data = "#!/bin/sh\necho \"$(hostname) $(id -u)\" >> /root/user-data-ran\n";
    let (outside_id, inside_id, address) = rt.block_on(async {
        ec2.import_key_pair()
            .key_name("lab-key")
            .public_key_material(Blob::new(public.as_bytes()))
            .send()
            .await
            .expect("ImportKeyPair");
        // An instance outside the lab network first: it must never get a host.
        let elsewhere = network(&ec2, "10.0.1.0/24").await;
        let (outside_id, _) = run_instance(&ec2, &elsewhere, "outside", "lab-key", "").await;
        let subnet = network(&ec2, &lab.cidr().to_string()).await;
        let (inside_id, address) = run_instance(&ec2, &subnet, "web-0", "lab-key", user_data).await;
        (outside_id, inside_id, address)
    });
    assert!(lab.cidr().contains(address), "{address} outside {}", lab.cidr());

    let started = Instant::now();
    let web = lab.wait_for_instance(&inside_id, true, WAIT).expect("the instance gets a host");
    println!("instance {inside_id} reachable as a test host after {:?}", started.elapsed());
    assert_eq!(web.host.name(), "web-0");
    assert_eq!(web.host.address(), address);
    assert_eq!(web.region, lab.region());
    assert_eq!(ssh_ok(&key, address, "hostname"), "web-0");
    assert!(!ssh(&stranger, address, "true").status.success(), "a key of no key pair logged in");
    let ran = wait_for_file(&web.host.dir().join("root/user-data-ran")).expect("the user data ran");
    assert_eq!(ran, "web-0 0\n");
    assert_eq!(ssh_ok(&key, address, "cat /root/user-data-ran"), "web-0 0");
    assert!(web.user_data_log.as_ref().is_some_and(|log| log.exists()));
    let known = std::fs::read_to_string(lab.known_hosts_file()).expect("known_hosts");
    assert!(known.contains(web.host.known_hosts_line()), "{known}");

    // Two more polls after the one that made the host: the outside instance is still hostless.
    let mut polls = 0;
    lab.wait_for(WAIT, |_| {
        polls += 1;
        (polls > 2).then_some(())
    });
    assert!(lab.instance(&outside_id).is_none(), "an instance outside the lab network got a host");
    assert_eq!(lab.instances().len(), 1);

    rt.block_on(ec2.stop_instances().instance_ids(&inside_id).send()).expect("StopInstances");
    let stopped: InstanceHost = lab.wait_for_instance(&inside_id, false, WAIT).expect("the host stops");
    assert!(!stopped.host.is_running());
    assert!(!accepts(address), "a stopped instance's host accepts connections");
    rt.block_on(ec2.start_instances().instance_ids(&inside_id).send()).expect("StartInstances");
    lab.wait_for_instance(&inside_id, true, WAIT).expect("the host starts again");
    assert_eq!(ssh_ok(&key, address, "hostname"), "web-0");
    // Its files persist, and user data runs on the first boot only.
    assert_eq!(ssh_ok(&key, address, "cat /root/user-data-ran"), "web-0 0");

    rt.block_on(ec2.terminate_instances().instance_ids(&inside_id).send()).expect("TerminateInstances");
    assert!(lab.wait_for_removal(&inside_id, WAIT), "the terminated instance's host remains");
    assert!(!accepts(address), "a terminated instance's host accepts connections");
    assert!(!ssh(&key, address, "true").status.success(), "a terminated instance's host answers ssh");
    let namespaces = Command::new("ip").args(["netns", "list"]).output().expect("ip netns").stdout;
    assert!(!String::from_utf8_lossy(&namespaces).contains(web.host.netns()), "its namespace remains");

    let (endpoint, prefix) = (lab.endpoint_url().trim_start_matches("http://").to_string(), lab.prefix().to_string());
    drop(lab);
    let moto: SocketAddr = endpoint.parse().expect("moto's address");
    assert!(TcpStream::connect_timeout(&moto, Duration::from_millis(500)).is_err(), "moto outlived its lab");
    let links = Command::new("ip").args(["-o", "link", "show"]).output().expect("ip link").stdout;
    assert!(!String::from_utf8_lossy(&links).contains(&prefix), "a link of the lab remains");
}

/// A `gantry-lab` process, sent SIGTERM and reaped when dropped (also when a test fails).
struct LabProcess(std::process::Child);

impl LabProcess {
    /// Sends SIGTERM and waits for the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's, not yet reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        self.0.wait().expect("wait for gantry-lab")
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

#[test]
fn the_binary_prints_the_environment_then_ready_and_cleans_up_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let child = Command::new(env!("CARGO_BIN_EXE_gantry-lab"))
        .args(["cloud", "aws", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("a log file"))
        .spawn()
        .expect("start gantry-lab");
    let mut child = LabProcess(child);
    let stdout = child.0.stdout.take().expect("its stdout");
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("a line");
        if line == "ready" {
            break;
        }
        lines.push(line);
    }
    if lines.is_empty() {
        let status = child.0.wait().expect("wait for gantry-lab");
        let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
        match stderr.lines().find(|l| l.contains("cannot run here") || l.contains("moto's server is not installed")) {
            Some(reason) => skip::skipped(reason.trim()),
            None => panic!("gantry-lab printed no environment ({status}): {stderr}"),
        }
        return;
    }
    let env: std::collections::BTreeMap<&str, &str> =
        lines.iter().map(|l| l.split_once('=').expect("KEY=VALUE")).collect();
    let keys: Vec<&str> = env.keys().copied().collect();
    assert_eq!(
        keys,
        ["AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_SECRET_ACCESS_KEY", "GANTRY_LAB_CIDR"]
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("env")).expect("the env file"),
        lines.iter().map(|l| format!("{l}\n")).collect::<String>()
    );
    let gateway = env["GANTRY_LAB_CIDR"].replace(".0/24", ".1");
    let addresses = || {
        String::from_utf8_lossy(&Command::new("ip").args(["-4", "-o", "addr"]).output().expect("ip").stdout)
            .into_owned()
    };
    assert!(addresses().contains(&format!("inet {gateway}/24")), "no lab bridge at {gateway}");
    // moto answers the SDK at the printed endpoint.
    assert_eq!(env["AWS_ACCESS_KEY_ID"], gantry_lab::cloud::aws::ACCESS_KEY_ID);
    let ec2 = gantry_lab::cloud::aws::ec2_client(env["AWS_ENDPOINT_URL"], env["AWS_REGION"]);
    let zones = runtime().block_on(ec2.describe_availability_zones().send()).expect("DescribeAvailabilityZones");
    assert!(!zones.availability_zones().is_empty());

    let status = child.terminate();
    assert!(status.success(), "gantry-lab exited with {status}");
    assert!(!addresses().contains(&format!("inet {gateway}/24")), "the lab bridge remains");
    let moto: SocketAddr = env["AWS_ENDPOINT_URL"].trim_start_matches("http://").parse().expect("moto's address");
    assert!(TcpStream::connect_timeout(&moto, Duration::from_millis(500)).is_err(), "moto outlived the lab");
}
