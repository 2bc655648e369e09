//! The provider's Compute calls against the GCE lab: the cluster's network is made once, found
//! again without duplicates and deleted in dependency order; an existing network is used and
//! left; sweep finds an expired cluster and an orphan; an injected quota error, an unknown
//! region, zone or image and missing credentials each give their documented message. These run
//! as any user on the emulator alone. The last tests boot instances as test hosts (root; they
//! print `SKIPPED: <reason>` without it): an interrupted create resumes with its journaled
//! request id, and a zone without capacity sends the instance to the next zone.

mod support;

use gantry_lab::cloud::gce::Fault;
use gantry_provider_gce::compute::Compute;
use gantry_provider_gce::sweep::{self, Reason};
use gantry_provider_gce::{GceProvider, operations};
use gantry_provision::cloud::Registry;
use gantry_provision::provider::{ErrorKind, Provider};
use google_cloud_compute_v1::model;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};
use support::{REGION, cluster_file, emulator, lab, parse, runtime, spec, text_of};

fn journal(dir: &Path) -> gantry_provision::cloud::Records {
    Registry::new("gce", dir).read().expect("the journal")
}

#[test]
fn the_network_is_made_once_and_torn_down() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let lab = emulator(labdir.path());
    let dir = tempfile::tempdir().expect("state dir");
    let file = cluster_file(dir.path(), &lab, "net", None, "");
    runtime().block_on(async {
        let provider = GceProvider::new(&file, dir.path()).expect("[gce]");
        let before = provider.cluster_resources().await.expect("resources");
        let kinds: Vec<&str> = before.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, ["network", "subnetwork", "firewall", "firewall", "firewall"]);
        assert!(before.iter().all(|r| r.id.is_none() && r.owned), "nothing exists yet: {before:?}");

        provider.prepare().await.expect("prepare");
        let made = provider.cluster_resources().await.expect("resources");
        assert!(made.iter().all(|r| r.id.is_some()), "everything exists: {made:?}");
        let in_lab = lab.resources();
        assert_eq!(in_lab.len(), 5, "{in_lab:?}");
        assert!(in_lab.iter().any(|p| p.ends_with("/global/networks/gantry-net")), "{in_lab:?}");
        assert!(in_lab.iter().any(|p| p.ends_with("/firewalls/gantry-net-internal")), "{in_lab:?}");

        // A second provider (a second `up`) finds everything by name and makes nothing new.
        let again = GceProvider::new(&file, dir.path()).expect("[gce]");
        again.prepare().await.expect("prepare again");
        assert_eq!(again.cluster_resources().await.expect("resources"), made);
        assert_eq!(lab.resources(), in_lab, "nothing was made twice");
        let records = journal(dir.path());
        assert_eq!(records.resources.get("network"), Some(&Some("gantry-net".to_string())), "{records:?}");
        assert!(records.tokens.contains_key("resource:firewall:ssh"), "request ids are journaled: {records:?}");

        provider.teardown().await.expect("teardown");
        assert_eq!(lab.resources(), Vec::<String>::new(), "teardown leaves nothing");
        let after = provider.cluster_resources().await.expect("resources");
        assert!(after.iter().all(|r| r.id.is_none()), "everything is deleted: {after:?}");
        provider.teardown().await.expect("a second teardown finds nothing to do");
    });
}

#[test]
fn an_existing_network_is_used_and_left_in_place() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let lab = emulator(labdir.path());
    let dir = tempfile::tempdir().expect("state dir");
    runtime().block_on(async {
        let c = Compute::connect(Some(lab.project()), REGION, Some(lab.endpoint_url())).await.expect("client");
        let op = c
            .networks
            .insert()
            .set_project(&c.project)
            .set_body(model::Network::new().set_name("shared").set_auto_create_subnetworks(false))
            .send()
            .await
            .expect("insert a network");
        operations::wait(&c, op, "prepare", "test", "compute.networks.create").await.expect("network made");
        let subnetwork = model::Subnetwork::new()
            .set_name("shared-eu")
            .set_network(c.global("networks", "shared"))
            .set_ip_cidr_range(lab.cidr().to_string())
            .set_region(REGION);
        let op = c
            .subnetworks
            .insert()
            .set_project(&c.project)
            .set_region(REGION)
            .set_body(subnetwork)
            .send()
            .await
            .expect("insert a subnetwork");
        operations::wait(&c, op, "prepare", "test", "compute.subnetworks.create").await.expect("subnetwork made");
        let existing = "network = \"shared\"\nsubnetwork = \"shared-eu\"";
        let file = cluster_file(dir.path(), &lab, "byo", Some(existing), "");
        let provider = GceProvider::new(&file, dir.path()).expect("[gce]");
        provider.prepare().await.expect("prepare");
        let resources = provider.cluster_resources().await.expect("resources");
        let kinds: Vec<(&str, bool, bool)> =
            resources.iter().map(|r| (r.kind.as_str(), r.owned, r.id.is_some())).collect();
        assert_eq!(
            kinds,
            [
                ("network", false, true),
                ("subnetwork", false, true),
                ("firewall", true, true),
                ("firewall", true, true),
                ("firewall", true, true)
            ]
        );
        assert!(lab.resources().iter().all(|p| !p.contains("networks/gantry-byo")), "no network of gantry's own");
        let rule = c.firewalls.get().set_project(&c.project).set_firewall("gantry-byo-ssh").send().await.expect("ssh");
        assert!(rule.network.unwrap_or_default().ends_with("networks/shared"), "the rule is on the given network");
        assert_eq!(rule.target_tags, ["gantry-byo"]);

        provider.teardown().await.expect("teardown");
        let left = lab.resources();
        assert_eq!(left.len(), 2, "only the network and subnetwork gantry did not make are left: {left:?}");
        assert!(left.iter().any(|p| p.ends_with("/subnetworks/shared-eu")), "{left:?}");
    });
}

#[test]
fn an_expired_cluster_and_an_orphan_are_swept_and_a_live_one_is_kept() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let lab = emulator(labdir.path());
    let root = tempfile::tempdir().expect("state root");
    let (live_dir, old_dir, orphan_dir) =
        (root.path().join("live"), root.path().join("old"), root.path().join("orphan"));
    let live = cluster_file(&live_dir, &lab, "live", None, "ttl = \"4h\"");
    let expired = cluster_file(&old_dir, &lab, "expired", None, "ttl = \"1h\"");
    let orphan = cluster_file(&orphan_dir, &lab, "orphan", None, "");
    // The expired cluster was created two hours ago (its journal says so).
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    std::fs::write(
        old_dir.join(Registry::file("gce")),
        format!("{{\"created_at\": \"{}\"}}", humantime::format_rfc3339_seconds(two_hours_ago)),
    )
    .expect("backdate");
    runtime().block_on(async {
        for (file, dir) in [(&live, &live_dir), (&expired, &old_dir), (&orphan, &orphan_dir)] {
            GceProvider::new(file, dir).expect("[gce]").prepare().await.expect("prepare");
        }
        let c = Compute::connect(Some(lab.project()), REGION, Some(lab.endpoint_url())).await.expect("client");
        let known = |cluster: &str| cluster == "live" || cluster == "expired";
        let found = sweep::find(&c, SystemTime::now(), &known).await.expect("find");
        let verdicts: Vec<(&str, Option<Reason>)> = found.iter().map(|f| (f.cluster.as_str(), f.reason)).collect();
        assert_eq!(
            verdicts,
            [("expired", Some(Reason::Expired)), ("live", None), ("orphan", Some(Reason::Orphaned))],
            "{found:?}"
        );
        let expired_found = &found[0];
        assert_eq!(expired_found.resources.len(), 5, "{expired_found:?}");
        assert!(expired_found.expires_at.as_deref().is_some_and(|at| at.ends_with('Z')), "{expired_found:?}");
        for cluster in ["expired", "orphan"] {
            sweep::delete(&c, cluster).await.expect("sweep");
        }
        let found = sweep::find(&c, SystemTime::now(), &known).await.expect("find");
        let left: Vec<&str> = found.iter().map(|f| f.cluster.as_str()).collect();
        assert_eq!(left, ["live"], "{found:?}");
        assert!(lab.resources().iter().all(|p| p.contains("gantry-live")), "{:?}", lab.resources());
    });
}

#[test]
fn an_injected_quota_error_reaches_the_user_as_quota() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let lab = emulator(labdir.path());
    let dir = tempfile::tempdir().expect("state dir");
    let file = cluster_file(dir.path(), &lab, "quota", None, "");
    runtime().block_on(async {
        let provider = GceProvider::new(&file, dir.path()).expect("[gce]");
        provider.prepare().await.expect("prepare");
        lab.inject(Fault::QuotaExceeded { zone: None, count: 1 });
        let error = provider.create_host(&spec("quota", "workers-0")).await.expect_err("over quota");
        assert_eq!(error.kind(), ErrorKind::Quota, "{error}");
        assert!(!error.is_retryable());
        let text = error.to_string();
        assert!(text.contains("QUOTA_EXCEEDED") && text.contains("CPUS-per-project-region"), "which quota: {text}");
        assert!(text.contains("IAM & Admin → Quotas") && text.contains("smaller machine_type"), "what to do: {text}");
        assert!(provider.list_hosts().await.expect("list").is_empty(), "nothing was made");
        provider.teardown().await.expect("teardown");
        assert_eq!(lab.resources(), Vec::<String>::new());
    });
}

#[test]
fn an_unknown_region_zone_or_image_says_where_to_look() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let lab = emulator(labdir.path());
    let dir = tempfile::tempdir().expect("state dir");
    cluster_file(dir.path(), &lab, "bad", None, "");
    let text = text_of(dir.path(), "bad");
    runtime().block_on(async {
        let nowhere = parse(dir.path(), "bad", &text.replace("region = \"europe-west1\"", "region = \"europe-west9\""));
        let error = GceProvider::new(&nowhere, dir.path()).expect("[gce]").prepare().await.expect_err("no region");
        assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
        assert!(error.to_string().contains("unknown region `europe-west9`"), "{error}");
        assert!(error.to_string().contains("gcloud compute regions list"), "{error}");

        let zone = text.replace("region = \"europe-west1\"", "region = \"europe-west1\"\nzones = [\"europe-west1-z\"]");
        let error = GceProvider::new(&parse(dir.path(), "bad", &zone), dir.path())
            .expect("[gce]")
            .prepare()
            .await
            .expect_err("no zone");
        assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
        assert!(error.to_string().contains("unknown zone `europe-west1-z`"), "{error}");
        assert!(error.to_string().contains("europe-west1-b"), "the region's zones are listed: {error}");

        let image = format!("{text}image = \"projects/debian-cloud/global/images/family/debian-99\"\n");
        let provider = GceProvider::new(&parse(dir.path(), "bad", &image), dir.path()).expect("[gce]");
        let error = provider.create_host(&spec("bad", "workers-0")).await.expect_err("no such image");
        assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
        assert!(error.to_string().contains("family/debian-99 does not exist"), "{error}");
        assert!(error.to_string().contains("gcloud compute images list"), "{error}");
        assert!(provider.list_hosts().await.expect("list").is_empty(), "nothing was launched");
        provider.teardown().await.expect("teardown");
        assert_eq!(lab.resources(), Vec::<String>::new());
    });
}

/// Without Application Default Credentials the message says how to log in. Runs the client in a
/// child process with an empty environment (credentials are process-wide); the metadata server
/// ADC falls back to is pointed at a closed loopback port.
#[test]
fn missing_credentials_say_how_to_log_in() {
    if let Some(case) = std::env::var_os("GANTRY_GCE_CREDENTIALS_CHILD") {
        gantry_trust::tls::install_default_provider();
        let text = "version = 1\n[cluster]\nname = \"creds\"\nprovider = \"gce\"\n[gce]\nproject = \"gantry-lab\"\n\
                    region = \"europe-west1\"\nendpoint_url = \"http://127.0.0.1:9\"\nconnect_via = \"private\"\n\
                    ssh_cidrs = [\"10.0.0.0/8\"]\napi_cidrs = [\"10.0.0.0/8\"]\n";
        let dir = tempfile::tempdir().expect("state dir");
        let file = parse(dir.path(), "creds", text);
        let provider = GceProvider::new(&file, dir.path()).expect("[gce]");
        let error = runtime().block_on(provider.prepare()).expect_err("no credentials");
        println!("CASE {case:?} KIND {:?} MESSAGE: {error}", error.kind());
        return;
    }
    let home = tempfile::tempdir().expect("temp home");
    for case in ["metadata-server", "missing-key-file"] {
        let mut child = Command::new(std::env::current_exe().expect("test binary"));
        child
            .args(["--exact", "missing_credentials_say_how_to_log_in", "--nocapture"])
            .env_clear()
            .env("GANTRY_GCE_CREDENTIALS_CHILD", case)
            .env("HOME", home.path())
            .env("GCE_METADATA_HOST", "127.0.0.1:9");
        if case == "missing-key-file" {
            child.env("GOOGLE_APPLICATION_CREDENTIALS", home.path().join("no-such-key.json"));
        }
        let output = child.output().expect("run the child");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("KIND Auth"), "{case}: {stdout}");
        assert!(stdout.contains("gcloud auth application-default login"), "{case}: {stdout}");
        assert!(stdout.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{case}: {stdout}");
    }
}

/// A create killed after its insert was journaled and sent resumes with the same request id and
/// instance name: one instance, not two.
#[test]
fn an_interrupted_create_resumes_without_a_duplicate() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let Some(lab) = lab(labdir.path()) else { return };
    let dir = tempfile::tempdir().expect("state dir");
    let file = cluster_file(dir.path(), &lab, "resume", None, "");
    let rt = runtime();
    rt.block_on(async {
        let provider = GceProvider::new(&file, dir.path()).expect("[gce]");
        provider.prepare().await.expect("prepare");
        let spec = spec("resume", "workers-0");
        {
            let create = provider.create_host(&spec);
            tokio::pin!(create);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            // Drive the create until the emulator has the instance, then drop it unanswered.
            loop {
                tokio::select! {
                    result = &mut create => panic!("the create finished before it could be interrupted: {result:?}"),
                    () = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
                if lab.resources().iter().any(|p| p.ends_with("/instances/resume-workers-0")) {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "the insert never reached the emulator");
            }
        }
        let token = journal(dir.path()).tokens.get("workers-0").cloned().expect("the token was journaled first");
        let host = provider.create_host(&spec).await.expect("the resumed create");
        assert_eq!(host.name, "workers-0");
        assert_eq!(journal(dir.path()).tokens.get("workers-0"), Some(&token), "the same token");
        let instances: Vec<String> = lab.resources().into_iter().filter(|p| p.contains("/instances/")).collect();
        assert_eq!(instances.len(), 1, "one instance: {instances:?}");
        provider.destroy_host("workers-0").await.expect("destroy");
        provider.teardown().await.expect("teardown");
    });
    assert_eq!(lab.resources(), Vec::<String>::new(), "nothing is left");
}

/// A zone out of capacity sends the instance to the next zone of the region.
#[test]
fn a_zone_without_capacity_falls_over_to_the_next() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let Some(lab) = lab(labdir.path()) else { return };
    let dir = tempfile::tempdir().expect("state dir");
    let file = cluster_file(dir.path(), &lab, "spill", None, "");
    runtime().block_on(async {
        let provider = GceProvider::new(&file, dir.path()).expect("[gce]");
        provider.prepare().await.expect("prepare");
        lab.inject(Fault::ZoneResourcePoolExhausted { zone: "europe-west1-b".to_string(), count: None });
        // workers-0 goes first to the first zone (b), which has no room.
        let host = provider.create_host(&spec("spill", "workers-0")).await.expect("created in another zone");
        assert_eq!(host.attributes.get("zone").map(String::as_str), Some("europe-west1-c"), "{host:?}");
        assert_eq!(host.attributes.get("machine_type").map(String::as_str), Some("e2-small"));
        lab.clear_faults();
        provider.destroy_host("workers-0").await.expect("destroy");
        provider.teardown().await.expect("teardown");
    });
    assert_eq!(lab.resources(), Vec::<String>::new(), "nothing is left");
}

/// A stopped instance is started by a create of its host; sweep finds the instance of a cluster
/// no state dir knows and deletes it with the cluster's network.
#[test]
fn a_stopped_instance_is_started_and_an_orphan_instance_is_swept() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let Some(lab) = lab(labdir.path()) else { return };
    let dir = tempfile::tempdir().expect("state dir");
    let file = cluster_file(dir.path(), &lab, "nap", None, "");
    runtime().block_on(async {
        let provider = GceProvider::new(&file, dir.path()).expect("[gce]");
        provider.prepare().await.expect("prepare");
        let host = provider.create_host(&spec("nap", "workers-1")).await.expect("create");
        let zone = host.attributes.get("zone").cloned().expect("a zone");
        let c = Compute::connect(Some(lab.project()), REGION, Some(lab.endpoint_url())).await.expect("client");
        let op = c
            .instances
            .stop()
            .set_project(&c.project)
            .set_zone(&zone)
            .set_instance("nap-workers-1")
            .send()
            .await
            .expect("stop");
        operations::wait(&c, op, "destroy", "workers-1", "compute.instances.stop").await.expect("stopped");
        let stopped = provider.describe_host("workers-1").await.expect("describe");
        assert_eq!(stopped.state, gantry_provision::provider::HostState::Stopped);
        let again = provider.create_host(&spec("nap", "workers-1")).await.expect("create starts it");
        assert_eq!(again.state, gantry_provision::provider::HostState::Running);
        assert_eq!(again.address, host.address, "the same instance");

        let found = sweep::find(&c, SystemTime::now(), &|_| false).await.expect("find");
        let nap = found.iter().find(|f| f.cluster == "nap").expect("the cluster is found");
        assert_eq!(nap.reason, Some(Reason::Orphaned));
        assert!(nap.resources.contains(&("instance".to_string(), "nap-workers-1".to_string())), "{nap:?}");
        sweep::delete(&c, "nap").await.expect("sweep");
    });
    assert_eq!(lab.resources(), Vec::<String>::new(), "sweep leaves nothing");
}
