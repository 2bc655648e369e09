//! The azure provider on the Azure lab, beyond the conformance suite: the network made once and
//! the resource group deleted last, zones tried in turn, an injected quota refusal, sweep of an
//! expired cluster and an orphan, unknown location/image/size, a stopped VM started, an
//! interrupted create resumed, and missing credentials.
//!
//! The lab tests need root; without it they print `SKIPPED: <reason>` and pass, or fail where
//! every test must run (GANTRY_TESTS_REQUIRE_ALL). The credentials test runs anywhere.

mod common;

use common::{cluster_file, half, lab, runtime, spec};
use gantry_lab::cloud::azure::{AllocationError, AzureLab, Fault};
use gantry_provider_azure::{Arm, AzureProvider, sweep};
use gantry_provision::access::Connector;
use gantry_provision::cloud::Registry;
use gantry_provision::cloud::sweep::Reason;
use gantry_provision::provider::{ErrorKind, HostState, Provider};
use gantry_provision::transport::Command;
use std::time::{Duration, Instant, SystemTime};

fn provider(lab: &AzureLab, dir: &std::path::Path, cluster: &str, cidr: &str, extra: &str) -> AzureProvider {
    AzureProvider::new(&cluster_file(dir, lab, cluster, cidr, extra), dir).expect("an [azure] section")
}

fn of_group<'a>(ids: &'a [String], group: &str) -> Vec<&'a String> {
    let marker = format!("/resourcegroups/{}", group.to_lowercase());
    ids.iter().filter(|id| id.to_lowercase().contains(&marker)).collect()
}

#[test]
fn the_network_is_made_once_and_the_resource_group_goes_last() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let Some(lab) = lab(labdir.path()) else { return };
    let dir = tempfile::tempdir().expect("state dir");
    let provider = provider(&lab, dir.path(), "net", &lab.cidr().to_string(), "");
    let rt = runtime();
    let before = rt.block_on(provider.cluster_resources()).expect("resources before");
    let kinds: Vec<&str> = before.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["resource-group", "network-security-group", "virtual-network", "subnet"]);
    assert!(before.iter().all(|r| r.id.is_none() && r.owned), "nothing exists yet: {before:?}");

    rt.block_on(provider.prepare()).expect("prepare");
    let made = rt.block_on(provider.cluster_resources()).expect("resources");
    assert!(made.iter().all(|r| r.id.is_some()), "everything exists: {made:?}");
    let ids = lab.resources();
    rt.block_on(provider.prepare()).expect("prepare again");
    assert_eq!(lab.resources(), ids, "a second prepare makes nothing");
    assert_eq!(rt.block_on(provider.cluster_resources()).expect("resources"), made);
    let journal = Registry::new("azure", dir.path()).read().expect("journal");
    assert!(journal.resources.values().all(Option::is_some), "every intent has its id: {journal:?}");

    // With a VM left, teardown refuses; once it is destroyed, everything goes, the group last.
    rt.block_on(provider.create_host(&spec("net", "workers-0"))).expect("create");
    let refused = rt.block_on(provider.teardown()).expect_err("a VM is left");
    assert_eq!(refused.kind(), ErrorKind::Conflict, "{refused}");
    rt.block_on(provider.destroy_host("workers-0")).expect("destroy");
    let group = lab.resources().into_iter().find(|id| id.to_lowercase().ends_with("/resourcegroups/gantry-net"));
    let group = group.expect("the group exists");
    let seen = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            // Every state of the group's resources while teardown runs, until the group is gone.
            let mut states = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                let now: Vec<String> = of_group(&lab.resources(), "gantry-net").into_iter().cloned().collect();
                let done = now.is_empty();
                states.push(now);
                if done {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            states
        });
        rt.block_on(provider.teardown()).expect("teardown");
        watcher.join().expect("watcher")
    });
    assert!(of_group(&lab.resources(), "gantry-net").is_empty(), "nothing left: {:?}", lab.resources());
    let last_nonempty = seen.iter().rev().find(|s| !s.is_empty()).expect("the group was seen");
    assert_eq!(last_nonempty, &vec![group], "the resource group goes last");
    rt.block_on(provider.teardown()).expect("teardown again is fine");
    let journal = Registry::new("azure", dir.path()).read().expect("journal");
    assert!(journal.resources.is_empty() && journal.tokens.is_empty(), "{journal:?}");
}

#[test]
fn a_zone_without_capacity_is_skipped_and_a_quota_refusal_says_how_to_raise_it() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let Some(lab) = lab(labdir.path()) else { return };
    let dir = tempfile::tempdir().expect("state dir");
    let provider = provider(&lab, dir.path(), "zones", &lab.cidr().to_string(), "zones = [\"1\", \"2\", \"3\"]");
    let rt = runtime();
    lab.inject(Fault::Allocation { error: AllocationError::ZonalAllocationFailed, count: 1 });
    let host = rt.block_on(provider.create_host(&spec("zones", "workers-0"))).expect("created in the next zone");
    assert_eq!(host.attributes.get("zone").map(String::as_str), Some("2"), "workers-0 starts in zone 1: {host:?}");
    assert_eq!(host.state, HostState::Running);
    assert_eq!(host.attributes.get("region").map(String::as_str), Some("westeurope"));
    assert_eq!(host.attributes.get("machine_type").map(String::as_str), Some("Standard_B1s"));

    lab.inject(Fault::CoreQuota { count: 1 });
    let error = rt.block_on(provider.create_host(&spec("zones", "workers-1"))).expect_err("over quota");
    assert_eq!(error.kind(), ErrorKind::Quota, "{error}");
    let text = error.to_string();
    assert!(text.contains("OperationNotAllowed") && text.contains("Cores quota"), "Azure's words: {text}");
    assert!(text.contains("Usage + quotas") && text.contains("smaller vm_size"), "what to do: {text}");
    let created = rt.block_on(provider.create_host(&spec("zones", "workers-1"))).expect("once the quota allows");
    assert_eq!(created.attributes.get("zone").map(String::as_str), Some("2"), "workers-1 starts in zone 2");
    assert_eq!(rt.block_on(provider.list_hosts()).expect("list").len(), 2);

    for name in ["workers-0", "workers-1"] {
        rt.block_on(provider.destroy_host(name)).expect("destroy");
    }
    rt.block_on(provider.teardown()).expect("teardown");
    assert!(of_group(&lab.resources(), "gantry-zones").is_empty(), "{:?}", lab.resources());
}

#[test]
fn a_stopped_vm_is_started_and_an_interrupted_create_resumes_by_name() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let Some(lab) = lab(labdir.path()) else { return };
    let dir = tempfile::tempdir().expect("state dir");
    let provider = provider(&lab, dir.path(), "resume", &lab.cidr().to_string(), "");
    let rt = runtime();
    rt.block_on(provider.prepare()).expect("prepare");

    // Dropped once the VM's PUT is in: the journal holds the intent, the VM exists unanswered.
    let vm = "/providers/microsoft.compute/virtualmachines/workers-0";
    rt.block_on(async {
        let workers_0 = spec("resume", "workers-0");
        let create = provider.create_host(&workers_0);
        let watch = async {
            while !lab.resources().iter().any(|id| id.to_lowercase().ends_with(vm)) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            result = create => panic!("the create ended before it was interrupted: {result:?}"),
            () = watch => {}
        }
    });
    let journal = Registry::new("azure", dir.path()).read().expect("journal");
    assert_eq!(journal.tokens.get("workers-0").map(String::as_str), Some("workers-0"), "intent before the call");
    let again = AzureProvider::new(&cluster_file(dir.path(), &lab, "resume", &lab.cidr().to_string(), ""), dir.path())
        .expect("[azure]");
    let host = rt.block_on(again.create_host(&spec("resume", "workers-0"))).expect("resumed");
    assert_eq!(host.state, HostState::Running);
    let vms: Vec<String> =
        lab.resources().into_iter().filter(|id| id.to_lowercase().contains("/virtualmachines/")).collect();
    assert_eq!(vms.len(), 1, "no duplicate: {vms:?}");

    // gantry logs in as the admin user with the cluster's key, and runs commands through sudo.
    let access = again.connect(&host).expect("connect");
    let script = Command::new("echo \"$SUDO_USER $(id -un)\"", Duration::from_secs(30));
    let out = rt.block_on(access.transport.run(&script)).expect("run over SSH");
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "gantry root", "logged in as gantry, root through sudo");

    // Deallocated behind gantry's back, then created again: started, same address.
    rt.block_on(async {
        let arm = Arm::connect(Some(lab.subscription_id()), Some(lab.endpoint_url())).await.expect("client");
        let call =
            arm.compute.virtual_machines_client().deallocate("gantry-resume", "workers-0", &arm.subscription).send();
        arm.delete(call).await.expect("deallocated");
    });
    assert!(lab.wait_for_vm("workers-0", false, Duration::from_secs(60)).is_some(), "the host stopped");
    let stopped = rt.block_on(again.describe_host("workers-0")).expect("describe");
    assert_eq!(stopped.state, HostState::Stopped);
    let started = rt.block_on(again.create_host(&spec("resume", "workers-0"))).expect("started");
    assert_eq!((started.state, started.address.clone()), (HostState::Running, host.address.clone()));
    assert!(lab.wait_for_vm("workers-0", true, Duration::from_secs(60)).is_some(), "the host runs again");

    rt.block_on(again.destroy_host("workers-0")).expect("destroy");
    rt.block_on(again.destroy_host("workers-0")).expect("destroy again is fine");
    rt.block_on(again.teardown()).expect("teardown");
    assert!(lab.resources().is_empty(), "{:?}", lab.resources());
}

#[test]
fn sweep_deletes_an_expired_cluster_and_an_orphan_and_keeps_a_live_one() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let Some(lab) = lab(labdir.path()) else { return };
    let root = tempfile::tempdir().expect("state root");
    let rt = runtime();
    let (old, lost, live) = (root.path().join("old"), root.path().join("lost"), root.path().join("live"));
    let old = provider(&lab, &old, "old", &half(&lab, 0), "");
    let lost = provider(&lab, &lost, "lost", &half(&lab, 1), "");
    let live = provider(&lab, &live, "live", &half(&lab, 1), "");
    rt.block_on(old.create_host(&spec("old", "workers-0"))).expect("a VM of the old cluster");
    rt.block_on(lost.prepare()).expect("the lost cluster's network");
    rt.block_on(live.prepare()).expect("the live cluster's network");
    let arm = rt.block_on(Arm::connect(Some(lab.subscription_id()), Some(lab.endpoint_url()))).expect("client");
    // Two hours on, the old cluster (ttl 1h) expired; every TTL is an hour, so "live" and "lost"
    // are judged now; only "live" is known here.
    let later = SystemTime::now() + Duration::from_secs(2 * 3600);
    let expired = rt.block_on(sweep::find(&arm, later, &|c| c != "old")).expect("find");
    let old_found = expired.iter().find(|f| f.cluster == "old").expect("old is found");
    assert_eq!(old_found.reason, Some(Reason::Expired));
    assert!(old_found.resources.iter().any(|(kind, _)| kind == "virtual-machine"), "{old_found:?}");
    let now = rt.block_on(sweep::find(&arm, SystemTime::now(), &|c| c == "live")).expect("find");
    let reason = |c: &str| now.iter().find(|f| f.cluster == c).map(|f| f.reason);
    assert_eq!(reason("lost"), Some(Some(Reason::Orphaned)));
    assert_eq!(reason("live"), Some(None), "a live, known cluster is kept");

    rt.block_on(sweep::delete(&arm, "old")).expect("sweep the expired cluster");
    rt.block_on(sweep::delete(&arm, "lost")).expect("sweep the orphan");
    let left = rt.block_on(sweep::find(&arm, SystemTime::now(), &|_| true)).expect("find");
    let clusters: Vec<&str> = left.iter().map(|f| f.cluster.as_str()).collect();
    assert_eq!(clusters, ["live"]);
    assert!(lab.wait_for(Duration::from_secs(30), |hosts| hosts.is_empty().then_some(())).is_some());
    rt.block_on(live.teardown()).expect("teardown");
    assert!(lab.resources().is_empty(), "{:?}", lab.resources());
}

#[test]
fn an_unknown_location_image_or_size_says_how_to_list_them() {
    let labdir = tempfile::tempdir().expect("lab dir");
    let Some(lab) = lab(labdir.path()) else { return };
    let root = tempfile::tempdir().expect("state root");
    let rt = runtime();
    let cidr = lab.cidr().to_string();
    cluster_file(&root.path().join("mars"), &lab, "mars", &cidr, "");
    let nowhere = root.path().join("mars").join("mars.toml");
    let text = std::fs::read_to_string(&nowhere)
        .expect("read")
        .replace("location = \"westeurope\"", "location = \"marsnorth\"");
    let file = gantry_provision::cluster_file::ClusterFile::parse(&nowhere, &text).expect("valid");
    let mars = AzureProvider::new(&file, &root.path().join("mars")).expect("[azure]");
    let error = rt.block_on(mars.prepare()).expect_err("no such location");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    assert!(error.to_string().contains("az account list-locations"), "{error}");

    let dir = root.path().join("odd");
    cluster_file(&dir, &lab, "odd", &cidr, "");
    let path = dir.join("odd.toml");
    let text = std::fs::read_to_string(&path).expect("read");
    let with_image = text.replacen("offer = \"debian-12\"", "offer = \"no-such-offer\"", 2);
    let file = gantry_provision::cluster_file::ClusterFile::parse(&path, &with_image).expect("valid");
    let odd = AzureProvider::new(&file, &dir).expect("[azure]");
    let error = rt.block_on(odd.create_host(&spec("odd", "workers-0"))).expect_err("no such image");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    assert!(error.to_string().contains("az vm image list --publisher"), "{error}");

    let with_size = text.replace("Standard_B1s", "Standard_Z99");
    let file = gantry_provision::cluster_file::ClusterFile::parse(&path, &with_size).expect("valid");
    let odd = AzureProvider::new(&file, &dir).expect("[azure]");
    let error = rt.block_on(odd.create_host(&spec("odd", "workers-0"))).expect_err("no such size");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    assert!(error.to_string().contains("az vm list-sizes"), "{error}");
    assert!(rt.block_on(odd.list_hosts()).expect("list").is_empty(), "no VM was made");
    rt.block_on(odd.teardown()).expect("teardown");
    assert!(lab.resources().is_empty(), "{:?}", lab.resources());
}

/// With no credentials, the message says how to log in. Runs the credential lookup in a child
/// process with an empty environment (credentials are process-wide); one kind of the chain at a
/// time (`AZURE_CREDENTIAL_KIND`), so nothing dials the instance metadata service.
#[test]
fn missing_credentials_say_how_to_log_in() {
    if std::env::var_os("GANTRY_AZURE_CREDENTIALS_CHILD").is_some() {
        let result = runtime().block_on(Arm::connect(None, Some("http://127.0.0.1:9")));
        let error = result.expect_err("no credentials");
        assert_eq!(error.kind(), ErrorKind::Auth);
        println!("MESSAGE: {error}");
        return;
    }
    for kind in ["environment", "azurecli"] {
        let home = tempfile::tempdir().expect("temp home");
        let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "missing_credentials_say_how_to_log_in", "--nocapture"])
            .env_clear()
            .env("GANTRY_AZURE_CREDENTIALS_CHILD", "1")
            .env("HOME", home.path())
            .env("PATH", home.path())
            .env("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")
            .env("AZURE_CREDENTIAL_KIND", kind)
            .output()
            .expect("run the child");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{kind}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("no Azure credentials"), "{kind}: {stdout}");
        assert!(stdout.contains("az login") && stdout.contains("AZURE_CLIENT_ID"), "{kind}: how to log in: {stdout}");
    }
    // Without a subscription anywhere, the message names both places.
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "missing_credentials_say_how_to_log_in", "--nocapture"])
        .env_clear()
        .env("GANTRY_AZURE_CREDENTIALS_CHILD", "1")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("subscription_id") && stdout.contains("AZURE_SUBSCRIPTION_ID"), "{stdout}");
}
