//! The files written for v1 and v2 against a fake cgroupfs in a temp dir: a fake
//! `/proc/self/mountinfo` names its directories as mount points, and plain files stand in for
//! control files (the kernel creates a new cgroup's files; here the test creates the optional
//! ones it wants seen). v2 with controllers cannot run for real on the machines the tests run
//! on (their v2 hierarchy has none), so this is its only test; v1 also runs for real in
//! `tests/limits.rs`.

use super::*;
use std::fs;

struct FakeFs {
    root: tempfile::TempDir,
}

impl FakeFs {
    /// Hierarchies mounted under a temp dir: `(mount name, fstype, options, own path)`.
    fn new(mounts: &[(&str, &str, &str, &str)]) -> (FakeFs, Hierarchies) {
        let root = tempfile::tempdir().expect("temp dir");
        let mut mountinfo = String::new();
        let mut proc_cgroup = String::new();
        for (i, (name, fstype, options, own)) in mounts.iter().enumerate() {
            let mount = root.path().join(name);
            fs::create_dir_all(mount.join(own.trim_start_matches('/'))).expect("own cgroup");
            mountinfo.push_str(&format!("{i} 1 0:{i} / {} rw - {fstype} cgroup rw,{options}\n", mount.display()));
            let controllers = if *fstype == "cgroup2" { "" } else { options };
            proc_cgroup.push_str(&format!("{i}:{controllers}:{own}\n"));
        }
        let hierarchies = Hierarchies::parse(&mountinfo, &proc_cgroup);
        (FakeFs { root }, hierarchies)
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.path().join(relative)
    }

    fn read(&self, relative: &str) -> String {
        fs::read_to_string(self.path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
    }

    fn touch(&self, relative: &str) {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().expect("a parent")).expect("dir");
        fs::write(path, "").expect("touch");
    }
}

const LIMITS: Limits = Limits {
    cpus: Some(0.5),
    mem_bytes: Some(32 << 20),
    pids: Some(16),
    disk_bytes: Some(1),
    denied_devices: Vec::new(),
};

fn files_of(applied: &[AppliedLimit], kind: LimitKind) -> Enforcement {
    applied.iter().find(|a| a.kind == kind).map(|a| a.enforcement.clone()).expect("the limit is listed")
}

#[test]
fn v1_beside_an_empty_v2_writes_one_directory_per_hierarchy() {
    let (fake, hierarchies) = FakeFs::new(&[
        ("cpu", "cgroup", "cpu", "/"),
        ("cpuacct", "cgroup", "cpuacct", "/"),
        ("memory", "cgroup", "memory", "/agent"),
        ("pids", "cgroup", "pids", "/"),
        ("freezer", "cgroup", "freezer", "/"),
        ("unified", "cgroup2", "", "/"),
    ]);
    fake.touch("unified/cgroup.controllers");
    fake.touch("memory/agent/gantry.t1/memory.memsw.limit_in_bytes");
    let (cgroup, applied) = TaskCgroup::create_in(&hierarchies, "t1", &LIMITS).expect("created");
    let dirs: Vec<PathBuf> =
        ["unified", "cpu", "cpuacct", "memory/agent", "pids"].iter().map(|d| fake.path(d).join("gantry.t1")).collect();
    assert_eq!(cgroup.dirs(), dirs, "no freezer: v2's cgroup.kill kills");
    assert_eq!(fake.read("cpu/gantry.t1/cpu.cfs_period_us"), "100000");
    assert_eq!(fake.read("cpu/gantry.t1/cpu.cfs_quota_us"), "50000");
    assert_eq!(fake.read("cpu/gantry.t1/cpu.shares"), "512");
    assert_eq!(fake.read("memory/agent/gantry.t1/memory.limit_in_bytes"), "33554432");
    assert_eq!(fake.read("memory/agent/gantry.t1/memory.memsw.limit_in_bytes"), "33554432");
    assert_eq!(fake.read("pids/gantry.t1/pids.max"), "16");
    assert_eq!(
        files_of(&applied, LimitKind::Cpus),
        Enforcement::CgroupV1 {
            files: vec!["cpu.cfs_period_us".into(), "cpu.cfs_quota_us".into(), "cpu.shares".into()]
        }
    );
    assert_eq!(
        files_of(&applied, LimitKind::Mem),
        Enforcement::CgroupV1 { files: vec!["memory.limit_in_bytes".into(), "memory.memsw.limit_in_bytes".into()] }
    );
    assert_eq!(files_of(&applied, LimitKind::Pids), Enforcement::CgroupV1 { files: vec!["pids.max".into()] });
    assert_eq!(applied.len(), 3, "disk is the executor's, not the cgroups'");
}

#[test]
fn v2_with_controllers_enables_them_and_writes_its_files() {
    let (fake, hierarchies) = FakeFs::new(&[("v2", "cgroup2", "", "/system.slice/agent")]);
    fs::write(fake.path("v2/cgroup.controllers"), "cpuset cpu io memory pids\n").expect("controllers");
    fake.touch("v2/system.slice/agent/gantry.t1/memory.swap.max");
    let (cgroup, applied) = TaskCgroup::create_in(&hierarchies, "t1", &LIMITS).expect("created");
    assert_eq!(cgroup.dirs(), [fake.path("v2/system.slice/agent/gantry.t1")]);
    assert_eq!(fake.read("v2/system.slice/agent/cgroup.subtree_control"), "+cpu +memory +pids");
    let task = "v2/system.slice/agent/gantry.t1";
    assert_eq!(fake.read(&format!("{task}/cpu.max")), "50000 100000");
    assert_eq!(fake.read(&format!("{task}/cpu.weight")), "50");
    assert_eq!(fake.read(&format!("{task}/memory.max")), "33554432");
    assert_eq!(fake.read(&format!("{task}/memory.swap.max")), "0");
    assert_eq!(fake.read(&format!("{task}/pids.max")), "16");
    assert!(applied.iter().all(|a| matches!(a.enforcement, Enforcement::CgroupV2 { .. })), "{applied:?}");
}

#[test]
fn v1_alone_kills_through_the_freezer_and_missing_controllers_are_not_enforced() {
    let (fake, hierarchies) = FakeFs::new(&[("freezer", "cgroup", "freezer", "/"), ("pids", "cgroup", "pids", "/")]);
    let (cgroup, applied) = TaskCgroup::create_in(&hierarchies, "t1", &Limits::default()).expect("created");
    assert_eq!(cgroup.dirs(), [fake.path("freezer/gantry.t1")]);
    assert!(applied.is_empty());
    let (_, applied) = TaskCgroup::create_in(&hierarchies, "t2", &LIMITS).expect("created");
    assert_eq!(files_of(&applied, LimitKind::Pids), Enforcement::CgroupV1 { files: vec!["pids.max".into()] });
    assert!(
        matches!(files_of(&applied, LimitKind::Mem), Enforcement::NotEnforced { reason } if reason.contains("`memory`"))
    );
}

#[test]
fn denied_devices_go_to_the_v1_devices_hierarchy_and_are_not_enforced_on_v2_alone() {
    let rules = vec!["c 195:0 rwm".to_string(), "c 195:2 rwm".to_string()];
    let limits = Limits::default().deny_devices(rules);
    let (fake, hierarchies) = FakeFs::new(&[("devices", "cgroup", "devices", "/"), ("unified", "cgroup2", "", "/")]);
    fake.touch("unified/cgroup.controllers");
    let (cgroup, applied) = TaskCgroup::create_in(&hierarchies, "t1", &limits).expect("created");
    assert_eq!(cgroup.dirs(), [fake.path("unified/gantry.t1"), fake.path("devices/gantry.t1")]);
    // One rule per write; the fake file keeps the last.
    assert_eq!(fake.read("devices/gantry.t1/devices.deny"), "c 195:2 rwm");
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].to_string(), "devices deny c 195:0 rwm, c 195:2 rwm: cgroup v1 (devices.deny)");
    // Without GPUs to deny, the devices hierarchy is not touched.
    let (cgroup, _) = TaskCgroup::create_in(&hierarchies, "t2", &Limits::default()).expect("created");
    assert_eq!(cgroup.dirs(), [fake.path("unified/gantry.t2")]);

    let (_fake, hierarchies) = FakeFs::new(&[("v2", "cgroup2", "", "/")]);
    let (_, applied) = TaskCgroup::create_in(&hierarchies, "t1", &limits).expect("created");
    assert!(
        matches!(&files_of(&applied, LimitKind::Devices), Enforcement::NotEnforced { reason } if reason.contains("BPF")),
        "{applied:?}"
    );
}

#[test]
fn no_hierarchy_is_an_error_with_the_reason() {
    let error = TaskCgroup::create_in(&Hierarchies::default(), "t1", &LIMITS).expect_err("nothing mounted");
    assert!(error.contains("no cgroup hierarchy"), "{error}");
}

#[test]
fn recorded_cgroups_are_found_again_and_relative_paths_are_refused() {
    let sandbox = tempfile::tempdir().expect("temp dir");
    assert_eq!(TaskCgroup::from_sandbox(sandbox.path()), None);
    let cgroup = TaskCgroup {
        dirs: vec![PathBuf::from("/sys/fs/cgroup/unified/gantry.t1"), PathBuf::from("/sys/fs/cgroup/pids/gantry.t1")],
    };
    cgroup.record(sandbox.path()).expect("record");
    assert_eq!(TaskCgroup::from_sandbox(sandbox.path()), Some(cgroup));
    fs::write(sandbox.path().join(CGROUP_FILE), "/sys/fs/cgroup/unified/gantry.t1").expect("the old format");
    assert_eq!(TaskCgroup::from_sandbox(sandbox.path()).map(|c| c.dirs.len()), Some(1));
    fs::write(sandbox.path().join(CGROUP_FILE), "/abs\nrelative/path").expect("write");
    assert_eq!(TaskCgroup::from_sandbox(sandbox.path()), None);
}

#[test]
fn usage_and_oom_kills_are_read_from_either_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cgroup = TaskCgroup { dirs: vec![dir.path().to_path_buf()] };
    assert_eq!((cgroup.oom_kills(), cgroup.cpu_usage()), (0, None));
    fs::write(dir.path().join("memory.events"), "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n").expect("v2 events");
    fs::write(dir.path().join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").expect("v2 cpu.stat");
    assert_eq!((cgroup.oom_kills(), cgroup.cpu_usage()), (1, Some(Duration::from_micros(1500))));
    fs::write(dir.path().join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").expect("v1");
    fs::write(dir.path().join("cpuacct.usage"), "2000000\n").expect("v1 cpuacct");
    assert_eq!((cgroup.oom_kills(), cgroup.cpu_usage()), (3, Some(Duration::from_millis(2))));
}

#[test]
fn removing_cgroups_that_do_not_exist_succeeds() {
    let cgroup = TaskCgroup { dirs: vec![PathBuf::from("/nonexistent/gantry.none")] };
    assert!(cgroup.kill_and_remove(Duration::from_millis(10)));
    assert!(cgroup.pids().is_empty());
}
