//! The provider conformance suite (`gantry_provision::provider::conformance`) against the gce
//! provider on the cloud lab (`gantry_lab::cloud::gce`): the official crate against the GCE
//! emulator, every running instance a real test host with sshd at its private address, so
//! create waits for a booted machine exactly as on Compute Engine.
//!
//! Needs root; without it the test prints `SKIPPED: <reason>` and passes, or fails where every
//! test must run (GANTRY_TESTS_REQUIRE_ALL).

mod support;

use gantry_provider_gce::GceProvider;
use gantry_provision::provider::Provider;
use gantry_provision::provider::conformance::{self, Scenario, Subject};
use std::time::Duration;
use support::{cluster_file, lab, runtime, spec};

#[test]
fn the_gce_provider_conforms_on_the_lab() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let Some(lab) = lab(labdir.path()) else { return };
    let root = tempfile::tempdir().expect("state root");
    let dir = root.path().join("conf-a");
    let ours = GceProvider::new(&cluster_file(&dir, &lab, "conf-a", None, "ttl = \"1h\""), &dir).expect("[gce]");
    runtime().block_on(async {
        // The second cluster uses the first one's network and subnetwork (two subnetworks of the
        // lab's one range would hand out the same private addresses): its instances sit beside
        // the first cluster's, and only the labels tell them apart.
        ours.prepare().await.expect("prepare the first cluster's network");
        let existing = "network = \"gantry-conf-a\"\nsubnetwork = \"gantry-conf-a\"";
        let dir = root.path().join("conf-b");
        let theirs = GceProvider::new(&cluster_file(&dir, &lab, "conf-b", Some(existing), ""), &dir).expect("[gce]");

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
    assert!(gone.is_some(), "every test host went with its instance: {:?}", lab.instances());
    assert_eq!(lab.resources(), Vec::<String>::new(), "down leaves nothing in the emulator");
}
