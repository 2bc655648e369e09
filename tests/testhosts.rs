//! The multi-host test harness itself (`gantry_lab::testhosts`): real hosts as network
//! namespaces with their own sshd, and the faults it injects. Needs root; every test prints
//! `SKIPPED: <reason>` and returns when this machine lacks a prerequisite.

mod support;

use gantry_lab::testhosts::{Lab, Skip};
use std::process::Command;
use std::time::{Duration, Instant};

fn lab(n: usize) -> Option<Lab> {
    let started = Instant::now();
    match Lab::new(n) {
        Ok(lab) => {
            println!("lab {}: {n} hosts up in {:?}", lab.prefix(), started.elapsed());
            Some(lab)
        }
        Err(Skip(reason)) => {
            support::skipped(&reason.to_string());
            None
        }
    }
}

fn teardown(lab: Lab) {
    let (prefix, started) = (lab.prefix().to_string(), Instant::now());
    drop(lab);
    println!("lab {prefix}: teardown in {:?}", started.elapsed());
}

/// Whether `from` can open a TCP connection to `to`:22 (bash /dev/tcp, bounded by `timeout`).
fn can_connect(lab: &Lab, from: usize, to: usize) -> bool {
    let target = lab.host(to).address();
    let out = lab.host(from).run(&format!("timeout 3 bash -c 'exec 3<>/dev/tcp/{target}/22'"));
    // 255 is ssh's own failure: the probe did not even run.
    assert_ne!(
        out.status.code(),
        Some(255),
        "ssh to {} failed: {}",
        lab.host(from).name(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success()
}

#[test]
fn three_hosts_each_with_its_own_identity() {
    let Some(lab) = lab(3) else { return };
    let started = Instant::now();
    for host in lab.hosts() {
        assert_eq!(host.run_ok("hostname").trim(), host.name());
        assert_eq!(host.ssh_port(), 22);
        assert!(host.known_hosts_line().starts_with(&format!("{} ssh-ed25519 ", host.address())));
        let addrs = host.run_ok("ip -4 -o addr show dev eth0");
        assert!(addrs.contains(&format!("inet {}/24", host.address())), "{}: {addrs}", host.name());
        let routes = host.run_ok("ip route; ip -6 route");
        assert!(!routes.contains("default"), "{} has a default route: {routes}", host.name());
        // Its own PID space: sshd is PID 1, and only a handful of processes exist.
        let ps = host.run_ok("ps -e -o pid=,comm=");
        let pid1 = ps.lines().map(str::trim).find(|l| l.starts_with("1 ")).unwrap_or_default().to_string();
        assert_eq!(pid1, "1 sshd", "{}: {ps}", host.name());
        assert!(ps.lines().count() < 10, "{}: {ps}", host.name());
    }
    println!("3 x 5 SSH commands in {:?}", started.elapsed());
    let addresses: std::collections::BTreeSet<_> = lab.hosts().iter().map(|h| h.address()).collect();
    assert_eq!(addresses.len(), 3);

    // Filesystems: /opt and /etc are per host.
    let (h0, h1) = (lab.host(0), lab.host(1));
    h0.run_ok("echo hello > /opt/marker && useradd -M alice");
    assert_eq!(h0.run_ok("cat /opt/marker").trim(), "hello");
    assert!(h0.run_ok("getent passwd alice").contains("alice"));
    assert!(!h1.run("test -e /opt/marker").status.success(), "host-1 sees host-0's /opt");
    assert!(!h1.run("getent passwd alice").status.success(), "host-1 sees host-0's user");
    assert!(h0.dir().join("opt/marker").exists());
    teardown(lab);
}

#[test]
fn cut_off_host_times_out_until_restored() {
    let Some(lab) = lab(3) else { return };
    let (h0, h1) = (lab.host(0), lab.host(1));
    assert_eq!(h1.run_ok("hostname").trim(), "host-1");
    h1.cut_off();
    let started = Instant::now();
    let out = h1.run_timeout("hostname", 2);
    println!("ssh to a cut-off host failed after {:?}", started.elapsed());
    assert!(!out.status.success(), "a cut-off host answered");
    assert!(!h1.accepts(Duration::from_millis(500)));
    assert_eq!(h0.run_ok("hostname").trim(), "host-0");
    h1.restore();
    assert_eq!(h1.run_ok("hostname").trim(), "host-1");
    teardown(lab);
}

#[test]
fn partition_separates_two_hosts_only() {
    let Some(lab) = lab(3) else { return };
    assert!(can_connect(&lab, 0, 1));
    lab.partition(0, 1);
    assert!(!can_connect(&lab, 0, 1), "host-0 reaches host-1 across the partition");
    assert!(!can_connect(&lab, 1, 0), "host-1 reaches host-0 across the partition");
    assert!(can_connect(&lab, 0, 2));
    assert!(can_connect(&lab, 2, 1));
    // The root namespace (the test) still reaches both.
    assert_eq!(lab.host(1).run_ok("hostname").trim(), "host-1");
    lab.heal(0, 1);
    assert!(can_connect(&lab, 0, 1));
    assert!(can_connect(&lab, 1, 0));
    teardown(lab);
}

#[test]
fn stopped_host_comes_back_with_its_files() {
    let Some(lab) = lab(3) else { return };
    let h2 = lab.host(2);
    h2.run_ok("echo kept > /opt/before-stop && echo etc > /etc/gantry-lab-test");
    let started = Instant::now();
    h2.stop();
    println!("host stopped in {:?}", started.elapsed());
    assert!(!h2.accepts(Duration::from_millis(500)), "a stopped host accepts connections");
    assert!(!h2.run_timeout("true", 2).status.success(), "a stopped host answered");
    assert_eq!(lab.host(0).run_ok("hostname").trim(), "host-0");
    let started = Instant::now();
    h2.start();
    println!("host restarted in {:?}", started.elapsed());
    assert_eq!(h2.run_ok("hostname").trim(), "host-2");
    assert_eq!(h2.run_ok("cat /opt/before-stop").trim(), "kept");
    assert_eq!(h2.run_ok("cat /etc/gantry-lab-test").trim(), "etc");
    teardown(lab);
}

#[test]
fn drop_leaves_nothing_behind() {
    let Some(lab) = lab(2) else { return };
    let prefix = lab.prefix().to_string();
    let dir = lab.dir().to_path_buf();
    let cgroup = lab.cgroup().to_path_buf();
    lab.host(0).run_ok("echo x > /opt/x");
    lab.partition(0, 1);
    // Stale cleanup leaves a live lab alone.
    gantry_lab::testhosts::cleanup_stale();
    assert_eq!(lab.host(1).run_ok("hostname").trim(), "host-1");
    assert!(cgroup.exists());
    assert!(stdout("ip", &["netns", "list"]).contains(&prefix));
    teardown(lab);

    assert!(!stdout("ip", &["netns", "list"]).contains(&prefix), "a namespace remains");
    assert!(!stdout("ip", &["link", "show"]).contains(&prefix), "a link remains");
    let mounts = std::fs::read_to_string("/proc/mounts").expect("read /proc/mounts");
    assert!(!mounts.contains(&prefix), "a mount remains: {mounts}");
    assert!(!cgroup.exists(), "the cgroup remains");
    assert!(!dir.exists(), "the temp dir remains");
    assert!(!std::path::Path::new("/run/gantry-labs").join(&prefix).exists(), "the registry entry remains");
    let leftover: Vec<String> = procs_naming(&dir);
    assert!(leftover.is_empty(), "processes remain: {leftover:?}");
}

fn stdout(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("run a command");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Processes whose command line names `dir`.
fn procs_naming(dir: &std::path::Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect()
}

#[test]
fn leftovers_of_a_crashed_run_are_cleaned_up() {
    if std::env::var_os("GANTRY_LAB_CRASH").is_some() {
        // The crashing run: create a lab and die without dropping it.
        if let Some(lab) = lab(2) {
            println!("PREFIX {}", lab.prefix());
            use std::io::Write;
            let _ = std::io::stdout().flush();
            std::process::abort();
        }
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(exe)
        .args(["leftovers_of_a_crashed_run_are_cleaned_up", "--exact", "--nocapture", "--test-threads=1"])
        .env("GANTRY_LAB_CRASH", "1")
        .output()
        .expect("run the crashing test");
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(prefix) = text.lines().find_map(|l| l.split("PREFIX ").nth(1)).map(|p| p.trim().to_string()) else {
        match text.lines().find_map(|l| l.find("SKIPPED: ").map(|i| &l[i..])) {
            Some(skip) => println!("{skip}"),
            None => panic!("the crashing run printed no prefix: {text}{}", String::from_utf8_lossy(&out.stderr)),
        }
        return;
    };
    assert!(!out.status.success(), "the crashing run did not crash");
    // Another test's Lab::new (which runs cleanup_stale too) may already have removed it.
    let left = stdout("ip", &["netns", "list"]).contains(&prefix);
    let started = Instant::now();
    gantry_lab::testhosts::cleanup_stale();
    println!("stale lab {prefix} (left behind: {left}) removed in {:?}", started.elapsed());
    assert!(!stdout("ip", &["netns", "list"]).contains(&prefix), "a namespace remains");
    assert!(!stdout("ip", &["link", "show"]).contains(&prefix), "a link remains");
    assert!(!std::path::Path::new("/run/gantry-labs").join(&prefix).exists(), "the registry entry remains");
    let temp_dirs: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .expect("read the temp dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("gantry-lab-{prefix}")))
        .collect();
    assert!(temp_dirs.is_empty(), "temp dirs remain: {temp_dirs:?}");
    let cgroups = stdout("sh", &["-c", "ls /sys/fs/cgroup/unified /sys/fs/cgroup 2>/dev/null"]);
    assert!(!cgroups.contains(&format!("gantry-lab-{prefix}")), "the cgroup remains");
}
