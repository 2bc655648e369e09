//! Cgroup v1 dirs made inside a host (as a gantry agent's executor makes its tasks' cgroups under
//! its own cgroup of each hierarchy) go with the host: when it stops, when it is removed, when
//! the lab drops, and when a crashed lab is cleaned up. Needs root and a cgroup v1 `pids`
//! hierarchy; every test prints `SKIPPED: <reason>` and returns when this machine lacks one.

#[path = "../../tests/support/skip.rs"]
mod skip;

use gantry_lab::testhosts::{Host, Lab, Skip};
use std::path::{Path, PathBuf};
use std::process::Command;

fn lab(n: usize) -> Option<Lab> {
    match Lab::new(n) {
        Ok(lab) => Some(lab),
        Err(Skip(reason)) => {
            skip::skipped(&reason);
            None
        }
    }
}

/// Inside `host`, makes `gantry.<task>` under the host's own cgroup of the v1 `pids` hierarchy
/// and moves a shell into it (as an executor places a task); the dir's path, which is the same
/// on this machine (a host mounts the hierarchies where this machine has them). None (the test
/// skipped) when no v1 `pids` hierarchy is mounted.
fn make_task_cgroup(host: &Host, task: &str) -> Option<PathBuf> {
    let script = format!(
        "mount=$(grep ' - cgroup ' /proc/self/mountinfo | awk '$NF ~ /(^|,)pids(,|$)/ {{print $5; exit}}')\n\
         [ -n \"$mount\" ] || exit 0\n\
         own=$(sed -n 's/^[0-9]*:pids:\\(.*\\)$/\\1/p' /proc/self/cgroup)\n\
         d=\"$mount${{own%/}}/gantry.{task}\"\n\
         mkdir \"$d\" && sh -c 'echo $$ > \"$0/cgroup.procs\"' \"$d\" && echo \"$d\""
    );
    let out = host.run_ok(&script);
    let dir = out.trim();
    if dir.is_empty() {
        skip::skipped("no cgroup v1 pids hierarchy is mounted here");
        return None;
    }
    Some(PathBuf::from(dir))
}

/// The lab's v1 cgroup of the hierarchy holding `dir`, with `host`'s cgroup below it.
fn host_cgroup_v1(lab: &Lab, host: &str, dir: &Path) -> PathBuf {
    let found = lab.cgroups_v1().iter().map(|d| d.join(host)).find(|d| dir.starts_with(d));
    found.unwrap_or_else(|| panic!("{} is not under {host}'s v1 cgroups {:?}", dir.display(), lab.cgroups_v1()))
}

#[test]
fn task_cgroups_made_in_a_host_go_when_it_stops_is_removed_or_the_lab_drops() {
    let Some(mut lab) = lab(2) else { return };
    let host = lab.host(0).clone();
    let Some(task) = make_task_cgroup(&host, "t1") else { return };
    assert!(task.is_dir(), "{} was not made", task.display());
    // Without a v1 cgroup of the host, the dir would be under this machine's own cgroup, where
    // nothing removes it.
    let own = host_cgroup_v1(&lab, "host-0", &task);
    assert_eq!(task.parent(), Some(own.as_path()), "the task cgroup is not in the host's own v1 cgroup");
    host.stop();
    assert!(!task.exists(), "{} remains after the host stopped", task.display());

    host.start();
    let again = make_task_cgroup(&host, "t2").expect("the pids hierarchy is still mounted");
    assert!(again.is_dir());
    let other = make_task_cgroup(lab.host(1), "t3").expect("the pids hierarchy is still mounted");
    assert_eq!(host_cgroup_v1(&lab, "host-1", &other), other.parent().expect("a parent").to_path_buf());
    lab.remove_host("host-1").expect("remove host-1");
    assert!(!other.exists(), "{} remains after its host was removed", other.display());
    assert!(again.is_dir(), "removing host-1 removed host-0's cgroup");

    let labs: Vec<PathBuf> = lab.cgroups_v1().to_vec();
    assert!(!labs.is_empty());
    drop(lab);
    assert!(!again.exists(), "{} remains after the lab dropped", again.display());
    let left: Vec<&PathBuf> = labs.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "the lab's v1 cgroups remain: {left:?}");
}

#[test]
fn task_cgroups_of_a_crashed_lab_are_cleaned_up() {
    if std::env::var_os("GANTRY_LAB_V1_CRASH").is_some() {
        // The crashing run: make a task cgroup in a host and die without dropping the lab.
        if let Some(lab) = lab(1)
            && let Some(task) = make_task_cgroup(lab.host(0), "t1")
        {
            println!("PREFIX {}", lab.prefix());
            println!("TASK {}", task.display());
            for dir in lab.cgroups_v1() {
                println!("LAB {}", dir.display());
            }
            use std::io::Write;
            let _ = std::io::stdout().flush();
            std::process::abort();
        }
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(exe)
        .args(["task_cgroups_of_a_crashed_lab_are_cleaned_up", "--exact", "--nocapture", "--test-threads=1"])
        .env("GANTRY_LAB_V1_CRASH", "1")
        .output()
        .expect("run the crashing test");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Vec<String> {
        // With --nocapture the first line printed follows libtest's `test <name> ... `.
        text.lines().filter_map(|l| l.split(&format!("{name} ")).nth(1)).map(|v| v.trim().to_string()).collect()
    };
    let Some(task) = field("TASK").pop().map(PathBuf::from) else {
        match text.lines().find_map(|l| l.find("SKIPPED: ").map(|i| &l[i..])) {
            Some(skip) => println!("{skip}"),
            None => panic!("the crashing run printed no task cgroup: {text}{}", String::from_utf8_lossy(&out.stderr)),
        }
        return;
    };
    assert!(!out.status.success(), "the crashing run did not crash");
    let prefix = field("PREFIX").pop().expect("the crashing run printed its prefix");
    let labs: Vec<PathBuf> = field("LAB").into_iter().map(PathBuf::from).collect();
    assert!(labs.iter().any(|d| task.starts_with(d)), "{} is not under the lab's v1 cgroups {labs:?}", task.display());
    // Another test's Lab::new (which runs cleanup_stale too) may already have removed it.
    gantry_lab::testhosts::cleanup_stale();
    assert!(!task.exists(), "{} of crashed lab {prefix} remains", task.display());
    let left: Vec<&PathBuf> = labs.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "the crashed lab's v1 cgroups remain: {left:?}");
    let record = Path::new("/run/gantry-labs").join(format!("{prefix}.v1"));
    assert!(!record.exists(), "{} remains", record.display());
}
