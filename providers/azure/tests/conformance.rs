//! The provider conformance suite (`gantry_provision::provider::conformance`) against the azure
//! provider on the cloud lab (`gantry_lab::cloud::azure`): the official management crates
//! against the Azure emulator, every running VM a real test host with sshd at its private
//! address, so create waits for a booted machine exactly as on Azure.
//!
//! Needs root; without it the test prints `SKIPPED: <reason>` and passes, or fails where every
//! test must run (GANTRY_TESTS_REQUIRE_ALL).

mod common;

use common::{cluster_file, half, lab, runtime, spec};
use gantry_provider_azure::AzureProvider;
use gantry_provision::provider::conformance::{self, Scenario, Subject};
use std::time::Duration;

#[test]
fn the_azure_provider_conforms_on_the_lab() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let Some(lab) = lab(labdir.path()) else { return };
    let root = tempfile::tempdir().expect("state root");
    let zones = "zones = [\"1\", \"2\", \"3\"]";
    let (a, b) = (root.path().join("conf-a"), root.path().join("conf-b"));
    let ours = AzureProvider::new(&cluster_file(&a, &lab, "conf-a", &half(&lab, 0), zones), &a).expect("[azure]");
    // The second cluster has its own resource group and virtual network, on the other half of
    // the lab network (two networks with one range would hand out the same addresses).
    let theirs = AzureProvider::new(&cluster_file(&b, &lab, "conf-b", &half(&lab, 1), ""), &b).expect("[azure]");
    runtime().block_on(async {
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
    assert!(gone.is_some(), "every test host went with its VM: {:?}", lab.instances());
    assert!(lab.resources().is_empty(), "down leaves nothing in the emulator: {:?}", lab.resources());
}
