//! The provider conformance suite (`gantry_provision::provider::conformance`) against the onprem
//! provider: "create" adopts a host the cluster file lists and "destroy" forgets it, neither
//! touching the host. The listed addresses are loopback addresses where this test listens, so
//! the test also sees that the provider never connected to one.

use gantry_provider_onprem::{OnpremProvider, Secrets};
use gantry_provision::cluster_file::{ClusterFile, Role};
use gantry_provision::provider::HostSpec;
use gantry_provision::provider::conformance::{self, Scenario, Subject};
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::Path;

fn spec(cluster: &str, name: &str) -> HostSpec {
    let role = if name.starts_with("master") { Role::Master } else { Role::Agent };
    HostSpec {
        cluster: cluster.into(),
        name: name.into(),
        role,
        pool: "onprem".into(),
        resources: None,
        attributes: BTreeMap::new(),
    }
}

/// A listener standing in for a host's sshd: it only ever sees whether someone connected.
struct FakeSshd {
    address: String,
    listener: TcpListener,
}

impl FakeSshd {
    fn new(address: &str) -> FakeSshd {
        let listener = TcpListener::bind((address, 0)).expect("listen on a loopback address");
        listener.set_nonblocking(true).expect("non-blocking");
        FakeSshd { address: address.to_string(), listener }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().expect("address").port()
    }

    /// Whether a connection is waiting (a connect on loopback is queued before it returns).
    fn was_dialled(&self) -> bool {
        match self.listener.accept() {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) => panic!("accept on {}: {e}", self.address),
        }
    }
}

/// The provider of an onprem cluster file named `cluster` listing `hosts` (name, where its
/// "sshd" listens), its state in `state_dir`.
fn provider(cluster: &str, hosts: &[(&str, FakeSshd)], state_dir: &Path) -> OnpremProvider {
    let mut text =
        format!("version = 1\n[cluster]\nname = \"{cluster}\"\nprovider = \"onprem\"\n[ssh]\nuser = \"root\"\n");
    for (name, sshd) in hosts {
        let (role, name) = match name.strip_prefix("master") {
            Some(_) => ("master", String::new()),
            None => ("agent", format!("name = \"{name}\"\n")),
        };
        text.push_str(&format!(
            "[[onprem.host]]\naddress = \"{}\"\nport = {}\nrole = \"{role}\"\n{name}",
            sshd.address,
            sshd.port()
        ));
    }
    let path = state_dir.join(format!("{cluster}.toml"));
    std::fs::create_dir_all(state_dir).expect("state dir");
    std::fs::write(&path, &text).expect("write the cluster file");
    let file = ClusterFile::load(&path).unwrap_or_else(|e| panic!("{e}\n{text}"));
    OnpremProvider::new(&file, state_dir, Secrets::default())
}

#[tokio::test]
async fn the_onprem_provider_conforms_and_never_dials_a_host() {
    let root = tempfile::tempdir().expect("temp dir");
    let ours: Vec<(&str, FakeSshd)> = ["master-0", "workers-0", "workers-1", "workers-2"]
        .into_iter()
        .enumerate()
        .map(|(i, name)| (name, FakeSshd::new(&format!("127.0.0.{}", i + 1))))
        .collect();
    let theirs: Vec<(&str, FakeSshd)> = ["master-0", "workers-0", "workers-7"]
        .into_iter()
        .enumerate()
        .map(|(i, name)| (name, FakeSshd::new(&format!("127.0.1.{}", i + 1))))
        .collect();
    // As the binary lays them out: one state dir per cluster under a common root.
    let a = provider("conf-a", &ours, &root.path().join("conf-a"));
    let b = provider("conf-b", &theirs, &root.path().join("conf-b"));
    let subject = Subject {
        provider: &a,
        hosts: vec![spec("conf-a", "master-0"), spec("conf-a", "workers-0")],
        interrupted: [spec("conf-a", "workers-1"), spec("conf-a", "workers-2")],
        other: &b,
        other_hosts: vec![spec("conf-b", "workers-0"), spec("conf-b", "workers-7")],
    };
    match conformance::run(&subject).await {
        Ok(report) => {
            println!("{report}");
            assert_eq!(report.passed, Scenario::ALL);
        }
        Err(e) => panic!("{e}"),
    }
    for (name, sshd) in ours.iter().chain(&theirs) {
        assert!(!sshd.was_dialled(), "adopting or forgetting {name} connected to {}", sshd.address);
    }
    let control = FakeSshd::new("127.0.2.1");
    let _dial = std::net::TcpStream::connect((control.address.as_str(), control.port())).expect("connect");
    assert!(control.was_dialled(), "a connection is seen, so the check above can fail");
}
