//! The Compute Engine emulator against its spec and its semantics, over plain HTTP as the
//! official SDK speaks to it: every call gantry makes is accepted when valid; invalid requests
//! are refused with Compute's status and error shape; names conflict, in-use deletes fail,
//! faults and operations behave as Compute's. These run as any user (the emulator without
//! test hosts); the last test, which boots an instance as a test host, needs root and prints
//! `SKIPPED: <reason>` without it.
#![cfg(feature = "gce")]

#[path = "../../tests/support/skip.rs"]
mod skip;

use gantry_lab::cloud::gce::{Fault, GceLab, GceLabError, GceLabOptions, spec};
use gantry_lab::testhosts::LabError;
use reqwest::Method;
use serde_json::{Value, json};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PROJECT: &str = "gantry-lab";
const ZONE: &str = "europe-west1-b";
const WAIT: Duration = Duration::from_secs(30);

/// The emulator alone (no test hosts, any user), with a short operation delay.
fn emulator(dir: &Path) -> GceLab {
    let options =
        GceLabOptions { test_hosts: false, operation_delay: Duration::from_millis(100), ..GceLabOptions::default() };
    GceLab::start_with(dir, options).expect("the GCE emulator starts")
}

/// A client of the emulator: method, path under `/compute/v1/projects/gantry-lab/`, body.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(lab: &GceLab) -> Api {
        // ring, as every gantry link; rustls marks it deprecated for its lack of post-quantum
        // key exchange, which plain HTTP does not use anyway.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        Api { http: reqwest::Client::new(), base: format!("{}/compute/v1/projects/{PROJECT}/", lab.endpoint_url()) }
    }

    /// The status and JSON body of `method` on `path` (relative to the project; with its query).
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = if path.starts_with('/') {
            format!("{}{path}", self.base.split("/compute/").next().unwrap_or_default())
        } else {
            format!("{}{path}", self.base)
        };
        let sent = body.as_ref().map(Value::to_string).unwrap_or_default();
        let mut request =
            self.http.request(method.clone(), &url).query(&[("$alt", "json"), ("$apiVersion", "2026-09-01")]);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the emulator answers");
        let status = response.status().as_u16();
        let url = response.url().clone();
        let text = response.text().await.expect("a body");
        let answer = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status == 200 {
            let query: Vec<(String, String)> =
                url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            let call = spec()
                .check(method.as_str(), url.path(), &query, sent.as_bytes())
                .expect("an accepted request is valid");
            let checked = spec().check_response(&call.id, &answer);
            assert!(
                checked.is_ok(),
                "{} {path}: the answer is not a {} response: {checked:?}\n{answer:#}",
                method,
                call.id
            );
        }
        (status, answer)
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.call(method.clone(), path, body).await;
        assert_eq!(status, 200, "{method} {path}: {answer:#}");
        answer
    }

    async fn get(&self, path: &str) -> Value {
        self.ok(Method::GET, path, None).await
    }

    /// Refused: the status and `errors[0].reason`, after checking Compute's error shape.
    async fn refused(&self, method: Method, path: &str, body: Option<Value>) -> (u16, String) {
        let (status, answer) = self.call(method.clone(), path, body).await;
        assert_ne!(status, 200, "{method} {path} was accepted: {answer:#}");
        let error = &answer["error"];
        assert_eq!(error["code"], status, "{answer:#}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer:#}");
        assert_eq!(error["errors"][0]["domain"], "global", "{answer:#}");
        assert_eq!(error["errors"][0]["message"], error["message"], "{answer:#}");
        (status, error["errors"][0]["reason"].as_str().unwrap_or_default().to_string())
    }

    /// Waits for the operation `op` (as an insert answered it) with its scope's `wait`.
    async fn wait(&self, op: &Value) -> Value {
        let link = op["selfLink"].as_str().expect("an operation has a selfLink");
        let path = link.split(&format!("projects/{PROJECT}/")).nth(1).expect("the project's operation");
        let deadline = Instant::now() + WAIT;
        loop {
            let done = self.ok(Method::POST, &format!("{path}/wait"), None).await;
            if done["status"] == "DONE" {
                return done;
            }
            assert!(Instant::now() < deadline, "operation {path} never finished: {done:#}");
        }
    }

    async fn done(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let op = self.ok(method, path, body).await;
        let done = self.wait(&op).await;
        assert!(done.get("error").is_none(), "{path}: {done:#}");
        done
    }

    /// A custom-mode network with one subnetwork in europe-west1 on `cidr`.
    async fn network(&self, name: &str, cidr: &str) {
        self.done(Method::POST, "global/networks", Some(json!({"name": name, "autoCreateSubnetworks": false}))).await;
        let subnet =
            json!({"name": format!("{name}-sub"), "network": format!("global/networks/{name}"), "ipCidrRange": cidr});
        self.done(Method::POST, "regions/europe-west1/subnetworks", Some(subnet)).await;
    }
}

/// An instance body as gantry's provider writes it.
fn instance(name: &str, network: &str, extra_metadata: &[(&str, &str)]) -> Value {
    let mut items =
        vec![json!({"key": "ssh-keys", "value": "gantry:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3bn gantry"})];
    items.extend(extra_metadata.iter().map(|(k, v)| json!({"key": k, "value": v})));
    json!({
        "name": name,
        "machineType": format!("zones/{ZONE}/machineTypes/e2-small"),
        "labels": {"gantry-cluster": "c1", "gantry-role": "agent"},
        "disks": [{"boot": true, "autoDelete": true, "initializeParams": {
            "sourceImage": "projects/debian-cloud/global/images/family/debian-12", "diskSizeGb": "20"}}],
        "networkInterfaces": [{
            "network": format!("projects/{PROJECT}/global/networks/{network}"),
            "subnetwork": format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/regions/europe-west1/subnetworks/{network}-sub"),
            "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}],
        }],
        "metadata": {"items": items},
        "scheduling": {"provisioningModel": "SPOT", "instanceTerminationAction": "DELETE"},
        "tags": {"items": ["gantry"]},
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_gantry_makes_is_accepted_and_behaves_as_compute() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let lab = emulator(dir.path());
    let api = Api::new(&lab);
    let env: std::collections::BTreeMap<String, String> = lab.env().into_iter().collect();
    assert_eq!(env["GANTRY_GCE_ENDPOINT_URL"], lab.endpoint_url());
    assert_eq!((env["GANTRY_GCE_CREDENTIALS"].as_str(), env["GOOGLE_CLOUD_PROJECT"].as_str()), ("anonymous", PROJECT));
    assert_eq!(env["GANTRY_LAB_CIDR"], lab.cidr().to_string());

    let region = api.get("regions/europe-west1").await;
    assert_eq!(region["zones"].as_array().map(Vec::len), Some(3), "{region:#}");
    let zones = api.get("zones?filter=name%20%3D%20%22us-central1-f%22").await;
    assert_eq!(zones["items"][0]["name"], "us-central1-f", "{zones:#}");
    assert_eq!(api.get(&format!("zones/{ZONE}")).await["status"], "UP");
    assert_eq!(api.get(&format!("zones/{ZONE}/machineTypes/e2-standard-4")).await["guestCpus"], 4);
    let image = api.ok(Method::GET, "/compute/v1/projects/debian-cloud/global/images/family/debian-12", None).await;
    assert_eq!(image["name"], "debian-12-bookworm-v20261106");
    let ubuntu = "/compute/v1/projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64";
    assert_eq!(api.get(ubuntu).await["family"], "ubuntu-2404-lts-amd64");
    let by_name = "/compute/v1/projects/debian-cloud/global/images/debian-12-bookworm-v20261106";
    assert_eq!(api.get(by_name).await["status"], "READY");

    let cidr = lab.cidr().to_string();
    api.network("net", &cidr).await;
    assert_eq!(api.get("global/networks/net").await["subnetworks"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        api.get("regions/europe-west1/subnetworks/net-sub").await["gatewayAddress"],
        cidr.replace(".0/24", ".1")
    );
    let firewall = json!({"name": "net-ssh", "network": "global/networks/net", "sourceRanges": ["0.0.0.0/0"],
        "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}], "targetTags": ["gantry"]});
    api.done(Method::POST, "global/firewalls", Some(firewall)).await;
    assert_eq!(api.get("global/firewalls/net-ssh").await["priority"], 1000);
    for list in ["global/networks", "global/firewalls", "regions/europe-west1/subnetworks"] {
        assert_eq!(api.get(list).await["items"].as_array().map(Vec::len), Some(1), "{list}");
    }

    let insert = api.ok(Method::POST, &format!("zones/{ZONE}/instances"), Some(instance("web-0", "net", &[]))).await;
    assert_eq!((insert["kind"].as_str(), insert["status"].as_str()), (Some("compute#operation"), Some("PENDING")));
    assert!(insert["id"].is_string() && insert["targetId"].is_string(), "uint64 ids are strings: {insert:#}");
    assert_eq!(api.get(&format!("zones/{ZONE}/instances/web-0")).await["status"], "PROVISIONING");
    let done = api.wait(&insert).await;
    assert_eq!((done["progress"].as_i64(), done.get("error")), (Some(100), None), "{done:#}");
    let web = api.get(&format!("zones/{ZONE}/instances/web-0")).await;
    assert_eq!(web["status"], "RUNNING", "{web:#}");
    let nic = &web["networkInterfaces"][0];
    let address: Ipv4Addr = nic["networkIP"].as_str().and_then(|a| a.parse().ok()).expect("a private address");
    assert_eq!(address, Ipv4Addr::from(u32::from(lab.cidr().network) + 2), "the first two addresses are reserved");
    assert!(nic["accessConfigs"][0]["natIP"].as_str().is_some_and(|ip| ip.starts_with("203.0.113.")), "{nic:#}");
    assert_eq!(
        (web["disks"][0]["diskSizeGb"].as_str(), web["scheduling"]["provisioningModel"].as_str()),
        (Some("20"), Some("SPOT"))
    );
    assert!(web["machineType"].as_str().is_some_and(|m| m.ends_with("/zones/europe-west1-b/machineTypes/e2-small")));

    for (i, name) in ["db-0", "db-1"].iter().enumerate() {
        let mut body = instance(name, "net", &[]);
        body["labels"] = json!({"gantry-cluster": "c1", "gantry-role": "master"});
        body["networkInterfaces"][0]["networkIP"] = json!(cidr.replace(".0/24", &format!(".{}", 20 + i)));
        api.done(Method::POST, &format!("zones/{ZONE}/instances"), Some(body)).await;
    }
    let filter = |f: &str| {
        format!("zones/{ZONE}/instances?filter={}", f.replace(' ', "%20").replace('"', "%22").replace('=', "%3D"))
    };
    let names = |list: &Value| -> Vec<String> {
        list["items"].as_array().into_iter().flatten().filter_map(|i| i["name"].as_str().map(String::from)).collect()
    };
    assert_eq!(names(&api.get(&filter(r#"labels.gantry-role = "master""#)).await), ["db-0", "db-1"]);
    assert_eq!(names(&api.get(&filter(r#"(labels.gantry-cluster = "c1") (name = "web-0")"#)).await), ["web-0"]);
    assert_eq!(
        names(&api.get(&filter(r#"labels.gantry-cluster:* AND labels.gantry-role = "agent""#)).await),
        ["web-0"]
    );
    assert_eq!(names(&api.get(&filter(r#"labels.other:*"#)).await), Vec::<String>::new());
    let first = api.get(&format!("zones/{ZONE}/instances?maxResults=2")).await;
    let token = first["nextPageToken"].as_str().expect("a second page");
    let second = api.get(&format!("zones/{ZONE}/instances?maxResults=2&pageToken={token}")).await;
    assert_eq!((names(&first), names(&second)), (vec!["db-0".to_string(), "db-1".into()], vec!["web-0".to_string()]));
    assert!(second.get("nextPageToken").is_none());
    let aggregated = api.get("aggregated/instances?filter=name%20%3D%20%22web-0%22").await;
    assert_eq!(aggregated["items"][format!("zones/{ZONE}")]["instances"][0]["name"], "web-0", "{aggregated:#}");
    assert_eq!(aggregated["items"]["zones/us-central1-a"]["warning"]["code"], "NO_RESULTS_ON_PAGE");

    let stop = api.ok(Method::POST, &format!("zones/{ZONE}/instances/web-0/stop"), None).await;
    let web_path = format!("zones/{ZONE}/instances/web-0");
    let seen = statuses(&api, &web_path, &stop).await;
    assert!(seen.ends_with(&["TERMINATED".to_string()]) && seen.contains(&"STOPPING".to_string()), "{seen:?}");
    let start = api.ok(Method::POST, &format!("zones/{ZONE}/instances/web-0/start"), Some(json!({}))).await;
    let seen = statuses(&api, &web_path, &start).await;
    assert!(seen.ends_with(&["RUNNING".to_string()]) && seen.contains(&"STAGING".to_string()), "{seen:?}");

    let (status, reason) = api.refused(Method::DELETE, "regions/europe-west1/subnetworks/net-sub", None).await;
    assert_eq!((status, reason.as_str()), (400, "resourceInUseByAnotherResource"));
    let network_delete = api.ok(Method::DELETE, "global/networks/net", None).await;
    let failed = api.wait(&network_delete).await;
    assert_eq!(failed["error"]["errors"][0]["code"], "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE", "{failed:#}");
    assert_eq!(failed["httpErrorStatusCode"], 400);

    for name in ["web-0", "db-0", "db-1"] {
        api.done(Method::DELETE, &format!("zones/{ZONE}/instances/{name}"), None).await;
    }
    let (status, reason) = api.refused(Method::GET, &web_path, None).await;
    assert_eq!((status, reason.as_str()), (404, "notFound"));
    api.done(Method::DELETE, "global/firewalls/net-ssh", None).await;
    api.done(Method::DELETE, "regions/europe-west1/subnetworks/net-sub", None).await;
    api.done(Method::DELETE, "global/networks/net", None).await;
    assert_eq!(lab.resources(), Vec::<String>::new(), "everything made was deleted");
}

/// The statuses an instance shows while `op` runs, polled (repeats collapsed), until it is done.
async fn statuses(api: &Api, path: &str, op: &Value) -> Vec<String> {
    let op_path = op["selfLink"]
        .as_str()
        .and_then(|l| l.split(&format!("projects/{PROJECT}/")).nth(1))
        .expect("a link")
        .to_string();
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let status = api.get(path).await["status"].as_str().unwrap_or_default().to_string();
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        if api.get(&op_path).await["status"] == "DONE" {
            let last = api.get(path).await["status"].as_str().unwrap_or_default().to_string();
            if seen.last() != Some(&last) {
                seen.push(last);
            }
            return seen;
        }
        assert!(Instant::now() < deadline, "{op_path} never finished");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_go_pending_running_done_and_request_ids_replay() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let options =
        GceLabOptions { test_hosts: false, operation_delay: Duration::from_millis(400), ..GceLabOptions::default() };
    let lab = GceLab::start_with(dir.path(), options).expect("the GCE emulator starts");
    let api = Api::new(&lab);
    let request = "global/networks?requestId=5b1c2f0e-8a4d-4c1b-9e0f-1a2b3c4d5e6f";
    let body = json!({"name": "net", "autoCreateSubnetworks": false});
    let op = api.ok(Method::POST, request, Some(body.clone())).await;
    let path = op["selfLink"]
        .as_str()
        .and_then(|l| l.split(&format!("projects/{PROJECT}/")).nth(1))
        .expect("a link")
        .to_string();
    let mut seen = vec![op["status"].as_str().unwrap_or_default().to_string()];
    let deadline = Instant::now() + WAIT;
    while seen.last().map(String::as_str) != Some("DONE") {
        let status = api.get(&path).await["status"].as_str().unwrap_or_default().to_string();
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        assert!(Instant::now() < deadline, "{path} never finished: {seen:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, ["PENDING", "RUNNING", "DONE"]);
    let again = api.ok(Method::POST, request, Some(body.clone())).await;
    assert_eq!(
        (again["name"].clone(), again["status"].clone()),
        (op["name"].clone(), json!("DONE")),
        "the same request id answers the same operation"
    );
    let (status, reason) = api.refused(Method::POST, "global/networks", Some(body)).await;
    assert_eq!((status, reason.as_str()), (409, "alreadyExists"));
    let (status, reason) =
        api.refused(Method::POST, "global/networks?requestId=not-a-uuid", Some(json!({"name": "other"}))).await;
    assert_eq!((status, reason.as_str()), (400, "invalid"));
    let (status, _) = api.refused(Method::GET, "global/operations/operation-0-0", None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn injected_faults_fail_instance_inserts_in_their_operation() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let lab = emulator(dir.path());
    let api = Api::new(&lab);
    api.network("net", &lab.cidr().to_string()).await;
    lab.inject(Fault::QuotaExceeded { zone: None, count: 1 });
    let faults = format!("{}/_lab/faults", lab.endpoint_url());
    let posted = api
        .http
        .post(&faults)
        .body(json!({"kind": "zoneResourcePoolExhausted", "zone": "europe-west1-c", "count": 1}).to_string())
        .send()
        .await
        .expect("the fault endpoint answers");
    assert_eq!(posted.status().as_u16(), 204);

    let op = api.ok(Method::POST, &format!("zones/{ZONE}/instances"), Some(instance("a", "net", &[]))).await;
    let failed = api.wait(&op).await;
    assert_eq!(failed["error"]["errors"][0]["code"], "QUOTA_EXCEEDED", "{failed:#}");
    assert_eq!(failed["httpErrorStatusCode"], 403);
    let (status, _) = api.refused(Method::GET, &format!("zones/{ZONE}/instances/a"), None).await;
    assert_eq!(status, 404, "a failed insert leaves no instance");

    let mut body = instance("b", "net", &[]);
    body["machineType"] = json!("zones/europe-west1-c/machineTypes/e2-small");
    let op = api.ok(Method::POST, "zones/europe-west1-c/instances", Some(body.clone())).await;
    let failed = api.wait(&op).await;
    assert_eq!(failed["error"]["errors"][0]["code"], "ZONE_RESOURCE_POOL_EXHAUSTED", "{failed:#}");
    assert_eq!(failed["httpErrorStatusCode"], 503);
    let retried = api.done(Method::POST, "zones/europe-west1-c/instances", Some(body)).await;
    assert_eq!(retried["operationType"], "insert", "the faults were used up");
    let left: Value = api.http.get(&faults).send().await.expect("faults").json().await.expect("JSON");
    assert_eq!(left, json!([]));
}

/// What is wrong, the request (method, path, body), and the status and reason it gets.
type Case = (&'static str, Method, String, Option<Value>, u16, &'static str);

#[tokio::test(flavor = "multi_thread")]
async fn invalid_requests_are_refused_as_compute_refuses_them() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let lab = emulator(dir.path());
    let api = Api::new(&lab);
    api.network("net", &lab.cidr().to_string()).await;
    let instances = format!("zones/{ZONE}/instances");
    let with = |change: &dyn Fn(&mut Value)| {
        let mut body = instance("bad", "net", &[]);
        change(&mut body);
        Some(body)
    };
    let cases: Vec<Case> = vec![
        ("unknown field", Method::POST, instances.clone(), with(&|b| b["colour"] = json!("red")), 400, "invalid"),
        (
            "unknown nested field",
            Method::POST,
            instances.clone(),
            with(&|b| b["scheduling"]["colour"] = json!(1)),
            400,
            "invalid",
        ),
        (
            "missing required name",
            Method::POST,
            instances.clone(),
            with(&|b| drop(b.as_object_mut().map(|o| o.remove("name")))),
            400,
            "required",
        ),
        ("wrong type", Method::POST, instances.clone(), with(&|b| b["name"] = json!(7)), 400, "invalid"),
        (
            "int64 not a number",
            Method::POST,
            instances.clone(),
            with(&|b| b["disks"][0]["initializeParams"]["diskSizeGb"] = json!("big")),
            400,
            "invalid",
        ),
        (
            "unknown enum value",
            Method::POST,
            instances.clone(),
            with(&|b| b["scheduling"]["provisioningModel"] = json!("CHEAP")),
            400,
            "invalid",
        ),
        ("invalid name", Method::POST, instances.clone(), with(&|b| b["name"] = json!("Bad_Name")), 400, "invalid"),
        (
            "upper-case label key",
            Method::POST,
            instances.clone(),
            with(&|b| b["labels"] = json!({"Role": "x"})),
            400,
            "invalid",
        ),
        (
            "label value too long",
            Method::POST,
            instances.clone(),
            with(&|b| b["labels"] = json!({"role": "x".repeat(64)})),
            400,
            "invalid",
        ),
        (
            "unknown machine type",
            Method::POST,
            instances.clone(),
            with(&|b| b["machineType"] = json!(format!("zones/{ZONE}/machineTypes/m9-huge"))),
            400,
            "invalid",
        ),
        (
            "unknown image",
            Method::POST,
            instances.clone(),
            with(&|b| {
                b["disks"][0]["initializeParams"]["sourceImage"] =
                    json!("projects/debian-cloud/global/images/family/debian-99")
            }),
            400,
            "invalid",
        ),
        (
            "address outside the subnetwork",
            Method::POST,
            instances.clone(),
            with(&|b| b["networkInterfaces"][0]["networkIP"] = json!("192.168.0.5")),
            400,
            "invalid",
        ),
        (
            "reserved address",
            Method::POST,
            instances.clone(),
            with(&|b| {
                let gateway = Ipv4Addr::from(u32::from(lab.cidr().network) + 1);
                b["networkInterfaces"][0]["networkIP"] = json!(gateway.to_string())
            }),
            400,
            "invalid",
        ),
        ("unknown zone", Method::POST, "zones/mars-north1-a/instances".into(), with(&|_| {}), 400, "invalid"),
        ("path parameter off its pattern", Method::GET, "zones/Europe_West/instances".into(), None, 400, "invalid"),
        ("unknown query parameter", Method::GET, format!("{instances}?colour=red"), None, 400, "badRequest"),
        (
            "query parameter of the wrong type",
            Method::GET,
            format!("{instances}?maxResults=lots"),
            None,
            400,
            "badRequest",
        ),
        ("too large a page", Method::GET, format!("{instances}?maxResults=501"), None, 400, "invalid"),
        ("bad page token", Method::GET, format!("{instances}?pageToken=xyz"), None, 400, "invalid"),
        ("malformed filter", Method::GET, format!("{instances}?filter=name%20%3D"), None, 400, "invalid"),
        ("unknown path", Method::GET, "global/teapots".into(), None, 404, "notFound"),
        ("wrong method", Method::PUT, instances.clone(), Some(json!({})), 404, "notFound"),
        (
            "body on a method without one",
            Method::POST,
            format!("{instances}/x/stop"),
            Some(json!({"force": true})),
            400,
            "badRequest",
        ),
        ("unknown region", Method::GET, "regions/mars-north1".into(), None, 404, "notFound"),
        ("unknown instance", Method::GET, format!("{instances}/nobody"), None, 404, "notFound"),
        (
            "firewall without rules",
            Method::POST,
            "global/firewalls".into(),
            Some(json!({"name": "fw", "network": "global/networks/net"})),
            400,
            "invalid",
        ),
        (
            "subnetwork of a missing network",
            Method::POST,
            "regions/europe-west1/subnetworks".into(),
            Some(json!({"name": "s", "network": "global/networks/none", "ipCidrRange": "10.9.0.0/24"})),
            400,
            "invalid",
        ),
        (
            "overlapping subnetwork",
            Method::POST,
            "regions/europe-west1/subnetworks".into(),
            Some(json!({"name": "s", "network": "global/networks/net", "ipCidrRange": lab.cidr().to_string()})),
            400,
            "invalid",
        ),
        (
            "subnetwork without a range",
            Method::POST,
            "regions/europe-west1/subnetworks".into(),
            Some(json!({"name": "s", "network": "global/networks/net"})),
            400,
            "required",
        ),
    ];
    for (what, method, path, body, status, reason) in cases {
        let got = api.refused(method, &path, body).await;
        assert_eq!(got, (status, reason.to_string()), "{what}");
    }
    let (status, raw) = api.call(Method::POST, &instances, None).await;
    assert_eq!(
        (status, raw["error"]["errors"][0]["reason"].as_str()),
        (400, Some("required")),
        "an insert without a body"
    );
    assert_eq!(lab.resources().len(), 2, "nothing refused was made: {:?}", lab.resources());
}

/// A fresh ed25519 key pair in `dir`: the private key's path and the public key line.
fn key_pair(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    (key.clone(), std::fs::read_to_string(key.with_extension("pub")).expect("read the public key").trim().to_string())
}

fn ssh(key: &Path, address: Ipv4Addr, command: &str) -> std::process::Output {
    Command::new("ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(key)
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=3"])
        .arg(format!("root@{address}"))
        .arg(command)
        .output()
        .expect("run ssh")
}

/// Waits until `path` exists and is not empty, for at most `WAIT`; its content.
fn wait_for_file(path: &Path) -> Option<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.trim().is_empty()
        {
            return Some(text);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_instance_is_a_test_host_reachable_with_its_ssh_key() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let options = GceLabOptions { operation_delay: Duration::from_millis(100), ..GceLabOptions::default() };
    let lab = match GceLab::start_with(dir.path(), options) {
        Ok(lab) => lab,
        Err(GceLabError::Lab(LabError::Unsupported(skip))) => return skip::skipped(&skip.0),
        Err(e) => panic!("the GCE lab did not start: {e}"),
    };
    let api = Api::new(&lab);
    let (key, public) = key_pair(dir.path(), "user-key");
    api.network("net", &lab.cidr().to_string()).await;
    let mut body =
        instance("web-0", "net", &[("startup-script", "#!/bin/sh\necho started-as-$(id -un) > /root/started\n")]);
    body["metadata"]["items"][0]["value"] = json!(format!("gantry:{public}\nother:ssh-rsa AAAAB3NzaC1yc2E other"));
    api.done(Method::POST, &format!("zones/{ZONE}/instances"), Some(body)).await;
    let web = api.get(&format!("zones/{ZONE}/instances/web-0")).await;
    let address: Ipv4Addr =
        web["networkInterfaces"][0]["networkIP"].as_str().and_then(|a| a.parse().ok()).expect("an address");

    let host = tokio::task::block_in_place(|| lab.wait_for_instance("web-0", true, WAIT)).expect("web-0 gets a host");
    assert_eq!((host.host.address(), host.zone.as_str(), host.host.name()), (address, ZONE, "web-0"));
    let out = ssh(&key, address, "hostname");
    assert!(out.status.success(), "ssh with the instance's key: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "web-0");
    let log = host.startup_log.clone().expect("the startup script ran");
    assert!(wait_for_file(&log).is_some() || log.exists(), "the startup script's log {}", log.display());
    let started = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + WAIT;
        loop {
            let out = ssh(&key, address, "cat /root/started");
            if out.status.success() || Instant::now() >= deadline {
                return String::from_utf8_lossy(&out.stdout).trim().to_string();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    assert_eq!(started, "started-as-root");

    api.done(Method::POST, &format!("zones/{ZONE}/instances/web-0/stop"), None).await;
    assert!(
        tokio::task::block_in_place(|| lab.wait_for_instance("web-0", false, WAIT)).is_some(),
        "stopping stops the host"
    );
    api.done(Method::POST, &format!("zones/{ZONE}/instances/web-0/start"), None).await;
    assert!(
        tokio::task::block_in_place(|| lab.wait_for_instance("web-0", true, WAIT)).is_some(),
        "starting starts the host"
    );
    api.done(Method::DELETE, &format!("zones/{ZONE}/instances/web-0"), None).await;
    assert!(tokio::task::block_in_place(|| lab.wait_for_removal("web-0", WAIT)), "deleting removes the host");
    assert!(!ssh(&key, address, "true").status.success(), "nothing answers at {address} any more");
}
