use super::*;
use gantry_provision::cluster_file::Role;

const FILE: &str = r#"version = 1
[cluster]
name = "rack"
provider = "onprem"
[ssh]
user = "ops"
key_file = "keys/id"
known_hosts_file = "known_hosts"
[onprem]
install_dir = "/srv/gantry"
api_port = 6060
[[onprem.host]]
address = "10.0.0.1"
role = "master"
[[onprem.host]]
address = "10.0.0.2"
port = 2222
user = "root"
sudo = true
[[onprem.host]]
address = "10.0.0.3"
name = "db-1"
key_file = "/abs/key"
"#;

fn spec(name: &str, role: Role) -> HostSpec {
    HostSpec {
        cluster: "rack".into(),
        name: name.into(),
        role,
        pool: "onprem".into(),
        resources: None,
        attributes: BTreeMap::new(),
    }
}

fn provider(state: &Path, text: &str) -> OnpremProvider {
    let file = ClusterFile::parse(Path::new("/etc/gantry/rack.toml"), text).expect("valid");
    OnpremProvider::new(&file, state, Secrets::default())
}

#[tokio::test]
async fn listed_hosts_are_adopted_recorded_and_forgotten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = provider(dir.path(), FILE);
    assert!(p.list_hosts().await.expect("list").is_empty(), "nothing is adopted before up");
    let err = p.describe_host("master-0").await.expect_err("not adopted");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = p.create_host(&spec("web-9", Role::Agent)).await.expect_err("not listed");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("[[onprem.host]]"), "{err}");

    for (name, role) in [("master-0", Role::Master), ("host-10-0-0-2", Role::Agent), ("db-1", Role::Agent)] {
        let host = p.create_host(&spec(name, role)).await.expect("adopt");
        assert_eq!(host.state, HostState::Running);
        p.create_host(&spec(name, role)).await.expect("adopting again is a no-op");
    }
    let names: Vec<String> = p.list_hosts().await.expect("list").into_iter().map(|h| h.name).collect();
    assert_eq!(names, ["db-1", "host-10-0-0-2", "master-0"]);
    assert_eq!(p.describe_host("db-1").await.expect("describe").address.as_deref(), Some("10.0.0.3"));

    let master = p.connect(&p.describe_host("master-0").await.expect("describe")).expect("connect");
    assert_eq!(master.master_url(), "https://10.0.0.1:6060");
    assert_eq!(master.layout.root, Path::new("/srv/gantry"));
    assert_eq!(master.transport.host(), "master-0");
    let entries = p.registry.read().expect("read");
    let agent = &entries["host-10-0-0-2"];
    assert_eq!((agent.user.as_str(), agent.port, agent.sudo), ("root", 2222, true));
    assert_eq!(agent.key_file.as_deref(), Some(Path::new("/etc/gantry/keys/id")));
    assert_eq!(entries["db-1"].key_file.as_deref(), Some(Path::new("/abs/key")));
    let settings = p.ssh.settings(agent);
    assert_eq!((settings.user.as_str(), settings.port), ("root", 2222));
    assert_eq!(settings.known_hosts, Path::new("/etc/gantry/known_hosts"));

    // A host removed from the file is still known (to be drained and cleaned), as recorded.
    let without_db = FILE.split("[[onprem.host]]\naddress = \"10.0.0.3\"").next().expect("prefix").to_string();
    let p = provider(dir.path(), &without_db);
    let db = p.describe_host("db-1").await.expect("recorded");
    let access = p.connect(&db).expect("reachable as recorded");
    assert_eq!(access.address, "10.0.0.3");
    p.destroy_host("db-1").await.expect("forget");
    p.destroy_host("db-1").await.expect("forgetting again is a no-op");
    assert_eq!(p.describe_host("db-1").await.expect_err("forgotten").kind(), ErrorKind::NotFound);
    assert_eq!(p.connect(&db).expect_err("unknown").kind(), ErrorKind::NotFound);
    assert_eq!(p.list_hosts().await.expect("list").len(), 2);
}

#[test]
fn a_transport_is_reused_while_its_entry_is_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = provider(dir.path(), FILE);
    let entry = p.listed["db-1"].clone();
    let first = p.transport(&entry);
    let again = p.transport(&entry);
    assert!(first.shares_session_with(&again), "an unchanged entry reuses the transport and its session");
    let moved = HostEntry { address: "10.0.0.33".into(), ..entry };
    let new = p.transport(&moved);
    assert!(!new.shares_session_with(&first), "a changed entry gets a new transport");
    assert_eq!(new.settings().address, "10.0.0.33");
    assert!(p.transport(&moved).shares_session_with(&new), "which is reused in turn");
}
