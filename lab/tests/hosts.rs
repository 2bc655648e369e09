//! Hosts added to and removed from a running lab, and scripts run inside a host. Needs root;
//! every test prints `SKIPPED: <reason>` and returns when this machine lacks a prerequisite.

#[path = "../../tests/support/skip.rs"]
mod skip;

use gantry_lab::testhosts::{Lab, LabError, Skip};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn empty_lab() -> Option<Lab> {
    match Lab::new(0) {
        Ok(lab) => Some(lab),
        Err(Skip(reason)) => {
            skip::skipped(&reason);
            None
        }
    }
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
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("read the public key");
    (key, public.trim().to_string())
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

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn netns_list() -> String {
    String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output().expect("ip netns").stdout).into_owned()
}

/// Waits until `path` exists and is not empty, for at most 10 seconds; its content.
fn wait_for_file(path: &Path) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
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

#[test]
fn hosts_come_and_go_at_addresses_the_caller_picks() {
    let Some(mut lab) = empty_lab() else { return };
    assert!(lab.hosts().is_empty());
    let cidr = lab.cidr();
    let [a, b, x, _] = cidr.network.octets();
    assert_eq!((a, b, cidr.prefix_len), (10, 77, 24));
    assert_eq!(cidr.to_string(), format!("10.77.{x}.0/24"));
    assert!(cidr.contains(lab.gateway()));
    let keys = tempfile::tempdir().expect("temp dir");
    let (key, public) = key_pair(keys.path(), "instance-key");
    let (stranger, _) = key_pair(keys.path(), "stranger-key");
    let web_address = Ipv4Addr::new(10, 77, x, 4);
    let db_address = Ipv4Addr::new(10, 77, x, 200);

    let web = lab.add_host("web", web_address, &public).expect("add web");
    let db = lab.add_host("db", db_address, "").expect("add db");
    assert_eq!((web.name(), web.address()), ("web", web_address));
    assert_eq!(lab.hosts().len(), 2);
    assert_eq!(lab.host_named("db").map(|h| h.address()), Some(db_address));
    assert_eq!(lab.host_at(web_address).map(|h| h.name().to_string()), Some("web".into()));
    // The given key and the lab's own key log in; another key does not.
    let out = ssh(&key, web_address, "hostname; id -u");
    assert!(out.status.success(), "ssh with the authorised key: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout(&out), "web\n0");
    assert_eq!(web.run_ok("hostname").trim(), "web");
    assert!(!ssh(&stranger, web_address, "true").status.success(), "a key nobody authorised logged in");
    assert!(!ssh(&key, db_address, "true").status.success(), "db authorised web's key");
    assert_eq!(db.run_ok("hostname").trim(), "db");
    // The hosts reach each other, and the known_hosts file names both.
    assert_eq!(web.run_ok(&format!("timeout 3 bash -c 'exec 3<>/dev/tcp/{db_address}/22' && echo ok")).trim(), "ok");
    let known = std::fs::read_to_string(lab.known_hosts_file()).expect("known_hosts");
    assert!(known.contains(web.known_hosts_line()) && known.contains(db.known_hosts_line()), "{known}");

    // Refusals leave nothing behind.
    let namespaces = netns_list();
    assert!(matches!(lab.add_host("web", Ipv4Addr::new(10, 77, x, 9), ""), Err(LabError::NameTaken(_))));
    assert!(matches!(lab.add_host("web2", web_address, ""), Err(LabError::AddressTaken { .. })));
    assert!(matches!(lab.add_host("web2", lab.gateway(), ""), Err(LabError::OutsideLab { .. })));
    assert!(matches!(lab.add_host("web2", Ipv4Addr::new(10, 77, x, 255), ""), Err(LabError::OutsideLab { .. })));
    let elsewhere = Ipv4Addr::new(10, 78, x, 4);
    assert!(matches!(lab.add_host("web2", elsewhere, ""), Err(LabError::OutsideLab { .. })));
    assert!(matches!(lab.add_host("web 2", Ipv4Addr::new(10, 77, x, 9), ""), Err(LabError::BadName(_))));
    assert_eq!(netns_list(), namespaces);
    assert_eq!(lab.hosts().len(), 2);

    lab.remove_host("web").expect("remove web");
    assert!(lab.host_named("web").is_none());
    assert!(!web.accepts(Duration::from_millis(500)), "a removed host accepts connections");
    assert!(!netns_list().contains(web.netns()), "the removed host's namespace remains");
    assert!(!web.dir().exists(), "the removed host's files remain");
    assert!(!lab.cgroup().join("web").exists(), "the removed host's cgroup remains");
    assert!(!std::fs::read_to_string(lab.known_hosts_file()).expect("known_hosts").contains(web.known_hosts_line()));
    assert_eq!(db.run_ok("hostname").trim(), "db");
    assert!(matches!(lab.remove_host("web"), Err(LabError::NoSuchHost(_))));

    // The address and the name are free again.
    let again = lab.add_host("web", web_address, &public).expect("add web again");
    assert_eq!(stdout(&ssh(&key, web_address, "hostname")), "web");
    assert_ne!(again.netns(), web.netns(), "a new host gets a new namespace");
    assert!(again.run_ok("ls /root").trim().is_empty(), "the new host sees the old one's files");
}

#[test]
fn a_detached_script_runs_as_root_inside_the_host_until_the_host_stops() {
    let Some(mut lab) = empty_lab() else { return };
    let [_, _, x, _] = lab.cidr().network.octets();
    let host = lab.add_host("worker", Ipv4Addr::new(10, 77, x, 7), "").expect("add a host");
    let script = b"#!/bin/sh\necho \"$(id -u) $(hostname) $HOME\" > /root/ran\necho started\necho $$ > /root/pid\nexec sleep 1000\n";
    let started = Instant::now();
    let log = host.run_detached("user-data", script).expect("run the script");
    assert!(started.elapsed() < Duration::from_secs(5), "run_detached waited for the script");
    let ran = wait_for_file(&host.dir().join("root/ran")).expect("the script ran");
    assert_eq!(ran.trim(), "0 worker /root");
    assert_eq!(wait_for_file(&log).expect("the script's output").trim(), "started");
    assert_eq!(host.run_ok("cat /run/gantry-lab/scripts/user-data.log").trim(), "started");
    let pid = wait_for_file(&host.dir().join("root/pid")).expect("the script's pid");
    let pid = pid.trim();
    // It runs in the host's PID namespace, in a session of its own.
    assert_eq!(host.run_ok(&format!("ps -o args= -p {pid}")).trim(), "sleep 1000");
    assert_eq!(host.run_ok(&format!("ps -o sid= -p {pid}")).trim(), pid);

    // A script without a `#!` line runs under /bin/sh.
    host.run_detached("plain", b"echo plain > /root/plain\n").expect("run the plain script");
    assert_eq!(wait_for_file(&host.dir().join("root/plain")).expect("the plain script ran").trim(), "plain");
    assert!(matches!(host.run_detached("../escape", b"true"), Err(LabError::BadName(_))));

    // Stopping the host kills the script with it.
    host.stop();
    assert!(!host.is_running());
    assert!(matches!(host.run_detached("late", b"true"), Err(LabError::NotRunning(_))));
    host.start();
    assert!(host.is_running());
    let processes = host.run_ok("ps -e -o args=");
    assert!(!processes.contains("sleep 1000"), "the script survived the host's stop: {processes}");
}

#[test]
fn a_process_started_in_the_lab_dies_with_it() {
    let Some(lab) = empty_lab() else { return };
    let mut child = lab.command("sleeper", "sleep").expect("a lab command").arg("100079").spawn().expect("spawn");
    assert!(matches!(lab.command("no good", "sleep"), Err(LabError::BadName(_))));
    let procs = lab.cgroup().join("_sleeper/cgroup.procs");
    let listed = wait_for_file(&procs).expect("the process joined the lab's cgroup");
    assert_eq!(listed.trim(), child.id().to_string(), "the lab's cgroup holds the process itself");
    drop(lab);
    let status = child.wait().expect("wait for the process");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the process outlived its lab: {status}");
}
