//! The provider conformance suite (`gantry_provision::provider::conformance`) against the local
//! provider: hosts are directories, so it runs anywhere, with no root and no network.

use gantry_provider_local::LocalProvider;
use gantry_provision::cluster_file::{LocalSection, Role};
use gantry_provision::provider::conformance::{self, Scenario, Subject};
use gantry_provision::provider::{ErrorKind, HostSpec, Provider};
use std::collections::BTreeMap;
use std::path::Path;

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

/// The provider of `cluster` with its hosts under `state_dir`; the master's API port is picked
/// free, so parallel tests never collide on it.
fn provider(cluster: &str, state_dir: &Path) -> LocalProvider {
    LocalProvider::new(cluster, state_dir, LocalSection { api_port: 0, ..LocalSection::default() })
}

async fn conforms(ours: &LocalProvider, theirs: &LocalProvider, other_hosts: &[&str]) {
    let subject = Subject {
        provider: ours,
        hosts: vec![spec("conf-a", "master-0"), spec("conf-a", "workers-0")],
        interrupted: [spec("conf-a", "workers-1"), spec("conf-a", "workers-2")],
        other: theirs,
        other_hosts: other_hosts.iter().map(|name| spec("conf-b", name)).collect(),
    };
    match conformance::run(&subject).await {
        Ok(report) => {
            println!("{report}");
            assert_eq!(report.passed, Scenario::ALL);
        }
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn the_local_provider_conforms() {
    // As the binary lays them out: one state dir per cluster under a common root, so both
    // clusters can have a host named workers-0.
    let root = tempfile::tempdir().expect("temp dir");
    let ours = provider("conf-a", &root.path().join("conf-a"));
    let theirs = provider("conf-b", &root.path().join("conf-b"));
    conforms(&ours, &theirs, &["workers-0", "workers-7"]).await;
    assert!(!ours.host_dir("workers-0").exists() && !theirs.host_dir("workers-0").exists());
}

#[tokio::test]
async fn two_clusters_in_one_state_dir_keep_to_their_own_hosts() {
    // `host.json` names the cluster, so two clusters given one directory still list, describe
    // and destroy only their own hosts.
    let dir = tempfile::tempdir().expect("temp dir");
    let (ours, theirs) = (provider("conf-a", dir.path()), provider("conf-b", dir.path()));
    conforms(&ours, &theirs, &["workers-6", "workers-7"]).await;

    // A name can be one cluster's only: the other's create is a conflict, not a takeover, and
    // its destroy leaves the host alone.
    let host = ours.create_host(&spec("conf-a", "workers-0")).await.expect("create");
    let err = theirs.create_host(&spec("conf-b", "workers-0")).await.expect_err("the name is conf-a's");
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("is host workers-0 of cluster conf-a"), "{err}");
    theirs.destroy_host("workers-0").await.expect("not its host: nothing to destroy");
    assert_eq!(ours.describe_host("workers-0").await.expect("still there"), host);
    assert_eq!(theirs.describe_host("workers-0").await.expect_err("not its host").kind(), ErrorKind::NotFound);
    ours.destroy_host("workers-0").await.expect("destroy");
    assert!(!ours.host_dir("workers-0").exists());
}
