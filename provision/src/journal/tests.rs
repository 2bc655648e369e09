use super::*;
use crate::cluster_file::Role;
use crate::planner::{DesiredHost, HostSettings, Reason};

fn host(name: &str) -> DesiredHost {
    let settings = HostSettings::from([("resources".to_string(), "cpus=1".to_string())]);
    DesiredHost {
        name: name.to_string(),
        role: Role::Agent,
        pool: "w".to_string(),
        resources: Some("cpus=1".to_string()),
        attributes: std::collections::BTreeMap::new(),
        settings,
    }
}

fn create(name: &str) -> Action {
    Action::CreateHost { host: host(name), reason: Reason::New }
}

fn bootstrap(name: &str) -> Action {
    Action::Bootstrap { host: host(name), reason: Reason::New }
}

#[test]
fn appends_are_replayed_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().join("clusters/dev");
    {
        let mut journal = Journal::open(&state_dir).expect("open");
        journal.record(RecordKind::Intent, &create("w-0"), None).expect("intent");
        journal.record(RecordKind::Done, &create("w-0"), None).expect("done");
        journal.record(RecordKind::Intent, &bootstrap("w-0"), None).expect("intent");
        journal.record(RecordKind::Done, &bootstrap("w-0"), None).expect("done");
        journal.record(RecordKind::Intent, &create("w-1"), None).expect("intent");
    }
    let journal = Journal::open(&state_dir).expect("reopen");
    let state = journal.state();
    assert_eq!(state.last_seq, 5);
    let w0 = &state.hosts["w-0"];
    assert_eq!((w0.phase, w0.pending, w0.role), (HostPhase::Bootstrapped, None, Role::Agent));
    assert_eq!(w0.settings["resources"], "cpus=1");
    assert_eq!(state.incomplete(), vec![("w-1", ActionKind::Create)]);
}

#[test]
fn failed_and_destroyed_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut journal = Journal::open(dir.path()).expect("open");
    journal.record(RecordKind::Intent, &create("w-0"), None).expect("intent");
    let failed = journal.record(RecordKind::Failed, &create("w-0"), Some("quota")).expect("failed");
    assert_eq!(failed.detail.error.as_deref(), Some("quota"));
    assert!(journal.state().incomplete().is_empty());
    assert_eq!(journal.state().hosts["w-0"].phase, HostPhase::Requested);
    let destroy = Action::Destroy {
        host: crate::planner::HostRef { name: "w-0".into(), role: Role::Agent, pool: "w".into() },
        reason: Reason::Removed,
    };
    journal.record(RecordKind::Intent, &destroy, None).expect("intent");
    journal.record(RecordKind::Done, &destroy, None).expect("done");
    assert!(journal.state().hosts.is_empty());
    let reopened = Journal::open(dir.path()).expect("reopen");
    assert_eq!(reopened.state(), journal.state());
}

#[test]
fn torn_last_line_is_dropped_and_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut journal = Journal::open(dir.path()).expect("open");
        journal.record(RecordKind::Intent, &create("w-0"), None).expect("intent");
        journal.record(RecordKind::Done, &create("w-0"), None).expect("done");
        journal.record(RecordKind::Intent, &bootstrap("w-0"), None).expect("intent");
    }
    let path = dir.path().join(JOURNAL_FILE);
    let full = std::fs::read(&path).expect("read");
    let second_end = full.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(1).expect("two lines").0 + 1;
    let torn = second_end + (full.len() - second_end) / 2;
    std::fs::write(&path, &full[..torn]).expect("simulate a crash mid-write");

    let mut journal = Journal::open(dir.path()).expect("a torn line is not an error");
    assert_eq!(journal.state().last_seq, 2);
    assert_eq!(journal.state().hosts["w-0"].phase, HostPhase::Created);
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), second_end as u64, "torn bytes cut off");
    let record = journal.record(RecordKind::Intent, &bootstrap("w-0"), None).expect("append after repair");
    assert_eq!(record.seq, 3);
    let reopened = Journal::open(dir.path()).expect("reopen");
    assert_eq!(reopened.state().incomplete(), vec![("w-0", ActionKind::Bootstrap)]);
}

#[test]
fn a_damaged_complete_line_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut journal = Journal::open(dir.path()).expect("open");
        journal.record(RecordKind::Intent, &create("w-0"), None).expect("intent");
    }
    let path = dir.path().join(JOURNAL_FILE);
    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str("{not json}\n");
    std::fs::write(&path, text).expect("write");
    let err = Journal::open(dir.path()).expect_err("corrupt");
    assert!(matches!(err, JournalError::Corrupt { line: 2, .. }), "{err}");
}

#[test]
fn every_append_is_fsynced_and_creation_syncs_file_and_dirs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut journal = Journal::open(&dir.path().join("new")).expect("open");
    assert_eq!(journal.syncs(), 3, "parent dir, journal file, state dir");
    journal.record(RecordKind::Intent, &create("w-0"), None).expect("intent");
    journal.record(RecordKind::Done, &create("w-0"), None).expect("done");
    assert_eq!(journal.syncs(), 5);
    let reopened = Journal::open(&dir.path().join("new")).expect("reopen");
    assert_eq!(reopened.syncs(), 0, "an existing, clean journal needs no sync to open");
}

#[test]
fn lock_is_exclusive_and_names_the_holder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let held = ClusterLock::acquire(dir.path()).expect("first");
    let err = ClusterLock::acquire(dir.path()).expect_err("second");
    match &err {
        JournalError::Locked { pid, .. } => assert_eq!(*pid, Some(std::process::id())),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains(&format!("locked by pid {}", std::process::id())), "{err}");
    drop(held);
    ClusterLock::acquire(dir.path()).expect("free again after release");
}

#[test]
fn state_dir_precedence() {
    let home = Path::new("/home/u");
    let env = OsStr::new("/srv/gantry");
    let flag = Path::new("/tmp/state");
    assert_eq!(resolve_state_dir("dev", Some(flag), Some(env), Some(home)).expect("flag"), flag.join("dev"));
    assert_eq!(resolve_state_dir("dev", None, Some(env), Some(home)).expect("env"), Path::new("/srv/gantry/dev"));
    assert_eq!(resolve_state_dir("dev", None, None, Some(home)).expect("home"), home.join(".gantry/clusters/dev"));
    assert!(matches!(resolve_state_dir("dev", None, None, None), Err(JournalError::NoHome)));
}
