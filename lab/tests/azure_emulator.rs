//! The Azure emulator against its spec and Azure's behaviour: every call the azure provider
//! makes is accepted when valid, a set of invalid requests is refused with Azure's status and
//! error shape, async operations progress, in-use deletes fail, faults inject; and (as root) a
//! running VM is a test host reachable over SSH with the key it was given.
#![cfg(feature = "azure")]

#[path = "../../tests/support/skip.rs"]
mod skip;

use gantry_lab::cloud::azure::{AllocationError, AzureLab, AzureLabError, AzureLabOptions, Fault, base64_encode};
use gantry_lab::testhosts::LabError;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const COMPUTE: &str = "2024-07-01";
const NETWORK: &str = "2024-03-01";
const RESOURCES: &str = "2021-04-01";

/// An answer: status, headers (names in lower case), JSON body (`Null` when empty).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn code(&self) -> &str {
        self.body.pointer("/error/code").and_then(Value::as_str).unwrap_or_default()
    }
}

/// A bare HTTP/1.1 client: the lab needs no SDK and no TLS.
struct Client {
    endpoint: String,
    token: Option<String>,
}

impl Client {
    fn new(lab: &AzureLab) -> Client {
        Client { endpoint: lab.endpoint_url().to_string(), token: Some("lab".into()) }
    }

    fn send(&self, method: &str, target: &str, body: Option<&Value>) -> Answer {
        let target = target.strip_prefix(&self.endpoint).unwrap_or(target);
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).expect("connect to the emulator");
        let payload = body.map(Value::to_string).unwrap_or_default();
        let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
        if let Some(token) = &self.token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if body.is_some() {
            request.push_str("Content-Type: application/json\r\n");
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{payload}", payload.len()));
        stream.write_all(request.as_bytes()).expect("send the request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read the answer");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
        let mut lines = head.lines();
        let status =
            lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).expect("a status");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
            .collect();
        let body = if body.trim().is_empty() { Value::Null } else { serde_json::from_str(body).expect("a JSON body") };
        Answer { status, headers, body }
    }

    fn get(&self, target: &str) -> Answer {
        self.send("GET", target, None)
    }

    fn put(&self, target: &str, body: Value) -> Answer {
        self.send("PUT", target, Some(&body))
    }

    fn post(&self, target: &str) -> Answer {
        self.send("POST", target, None)
    }

    fn delete(&self, target: &str) -> Answer {
        self.send("DELETE", target, None)
    }

    /// Polls the `Azure-AsyncOperation` of `answer` until it is not InProgress; its status.
    fn wait(&self, answer: &Answer) -> Value {
        let url = answer.header("azure-asyncoperation").expect("an Azure-AsyncOperation header").to_string();
        let deadline = Instant::now() + WAIT;
        loop {
            let status = self.get(&url);
            assert_eq!(status.status, 200, "{status:?}");
            if status.body["status"] != "InProgress" || Instant::now() > deadline {
                return status.body;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Paths under the lab's subscription.
struct Paths {
    sub: String,
}

impl Paths {
    fn group(&self, group: &str) -> String {
        format!("/subscriptions/{}/resourcegroups/{group}?api-version={RESOURCES}", self.sub)
    }

    fn network(&self, group: &str, kind: &str, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{group}/providers/Microsoft.Network/{kind}/{name}?api-version={NETWORK}",
            self.sub
        )
    }

    fn id(&self, group: &str, namespace: &str, kind: &str, name: &str) -> String {
        format!("/subscriptions/{}/resourceGroups/{group}/providers/{namespace}/{kind}/{name}", self.sub)
    }

    fn vm(&self, group: &str, name: &str, rest: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines/{name}{rest}?api-version={COMPUTE}",
            self.sub
        )
    }
}

fn emulator(delay_ms: u64) -> (tempfile::TempDir, AzureLab) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let options =
        AzureLabOptions { operation_delay: Duration::from_millis(delay_ms), test_hosts: false, subnet: Some(251) };
    let lab = AzureLab::start_with(dir.path(), options).expect("the emulator starts without root");
    (dir, lab)
}

/// A group with a VNet (10.77.X.0/24 and a subnet on it), an NSG, a public IP and a NIC.
fn network(client: &Client, p: &Paths, group: &str, cidr: &str) -> String {
    assert_eq!(
        client.put(&p.group(group), json!({"location": "westeurope", "tags": {"gantry-cluster": group}})).status,
        201
    );
    let vnet = client.put(
        &p.network(group, "virtualNetworks", "net"),
        json!({"location": "westeurope", "properties": {"addressSpace": {"addressPrefixes": [cidr]},
            "subnets": [{"name": "hosts", "properties": {"addressPrefix": cidr}}]}}),
    );
    assert_eq!(vnet.status, 201, "{vnet:?}");
    assert_eq!(client.wait(&vnet)["status"], "Succeeded");
    let nsg = client.put(
        &p.network(group, "networkSecurityGroups", "nsg"),
        json!({"location": "westeurope", "properties": {"securityRules": [{"name": "ssh", "properties": {
            "protocol": "Tcp", "access": "Allow", "direction": "Inbound", "priority": 100,
            "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": "22"}}]}}),
    );
    assert_eq!(nsg.status, 201, "{nsg:?}");
    let pip = client.put(
        &p.network(group, "publicIPAddresses", "pip"),
        json!({"location": "westeurope", "sku": {"name": "Standard"}, "properties": {"publicIPAllocationMethod": "Static"}}),
    );
    assert_eq!(pip.status, 201, "{pip:?}");
    assert!(pip.body["properties"]["ipAddress"].as_str().is_some_and(|a| a.starts_with("203.0.113.")), "{pip:?}");
    let nic = client.put(
        &p.network(group, "networkInterfaces", "nic"),
        json!({"location": "westeurope", "properties": {
            "networkSecurityGroup": {"id": p.id(group, "Microsoft.Network", "networkSecurityGroups", "nsg")},
            "ipConfigurations": [{"name": "primary", "properties": {
                "subnet": {"id": format!("{}/subnets/hosts", p.id(group, "Microsoft.Network", "virtualNetworks", "net"))},
                "publicIPAddress": {"id": p.id(group, "Microsoft.Network", "publicIPAddresses", "pip")}}}]}}),
    );
    assert_eq!(nic.status, 201, "{nic:?}");
    assert_eq!(client.wait(&nic)["status"], "Succeeded");
    p.id(group, "Microsoft.Network", "networkInterfaces", "nic")
}

fn vm_body(nic: &str, key: &str, custom_data: Option<&str>) -> Value {
    let mut os = json!({"computerName": "vm1", "adminUsername": "gantry", "linuxConfiguration": {
        "disablePasswordAuthentication": true,
        "ssh": {"publicKeys": [{"path": "/home/gantry/.ssh/authorized_keys", "keyData": key}]}}});
    if let Some(script) = custom_data {
        os["customData"] = json!(base64_encode(script.as_bytes()));
    }
    json!({"location": "westeurope", "zones": ["1"], "properties": {
        "hardwareProfile": {"vmSize": "Standard_B2s"},
        "storageProfile": {"imageReference": {"publisher": "Debian", "offer": "debian-12", "sku": "12-gen2", "version": "latest"},
            "osDisk": {"createOption": "FromImage", "diskSizeGB": 30, "deleteOption": "Delete"}},
        "osProfile": os,
        "networkProfile": {"networkInterfaces": [{"id": nic, "properties": {"primary": true, "deleteOption": "Delete"}}]},
        "priority": "Spot", "evictionPolicy": "Deallocate"}})
}

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGantryLabTestKeyOnlyForShapeChecksAAAAAAAAAA test";

fn power_state(client: &Client, p: &Paths, group: &str, name: &str) -> String {
    let view = client.get(&p.vm(group, name, "/instanceView"));
    assert_eq!(view.status, 200, "{view:?}");
    view.body["statuses"]
        .as_array()
        .and_then(|s| {
            s.iter().find_map(|s| s["code"].as_str().and_then(|c| c.strip_prefix("PowerState/")).map(String::from))
        })
        .unwrap_or_default()
}

#[test]
fn every_call_of_the_provider_is_served_and_operations_progress() {
    let (_dir, lab) = emulator(150);
    let client = Client::new(&lab);
    let p = Paths { sub: lab.subscription_id().to_string() };
    assert_eq!(client.send("HEAD", &p.group("rg"), None).status, 404);
    let nic = network(&client, &p, "rg", "10.77.251.0/24");
    assert_eq!(client.send("HEAD", &p.group("rg"), None).status, 204);
    let got = client.get(&p.network("rg", "networkInterfaces", "nic"));
    assert_eq!(got.body["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"], "10.77.251.4");
    let listed = client.get(&format!("/subscriptions/{}/resourcegroups?api-version={RESOURCES}&%24filter=tagName%20eq%20'gantry-cluster'%20and%20tagValue%20eq%20'rg'", p.sub));
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(1), "{listed:?}");
    // The spec's own versions are served too.
    assert_eq!(client.get(&p.network("rg", "virtualNetworks", "net").replace(NETWORK, "2024-05-01")).status, 200);

    let created = client.put(&p.vm("rg", "vm1", ""), vm_body(&nic, KEY, None));
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["properties"]["provisioningState"], "Creating");
    assert!(created.header("retry-after").is_some());
    let status_url = created.header("azure-asyncoperation").expect("an async operation").to_string();
    assert!(
        status_url.starts_with(lab.endpoint_url())
            && status_url.contains("/providers/Microsoft.Compute/locations/westeurope/operations/")
    );
    assert_eq!(client.get(&status_url).body["status"], "InProgress");
    // The compute SDK polls by re-sending its PUT: that joins the running operation.
    let again = client.put(&p.vm("rg", "vm1", ""), vm_body(&nic, KEY, None));
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.header("azure-asyncoperation"), Some(status_url.as_str()));
    assert_eq!(client.wait(&created)["status"], "Succeeded");
    let vm = client.get(&p.vm("rg", "vm1", "").replace("?", "?$expand=instanceView&"));
    assert_eq!(vm.body["properties"]["provisioningState"], "Succeeded", "{vm:?}");
    assert!(vm.body["properties"]["osProfile"].get("customData").is_none());
    assert_eq!(power_state(&client, &p, "rg", "vm1"), "running");
    for (action, state) in [("/powerOff", "stopped"), ("/deallocate", "deallocated"), ("/start", "running")] {
        let answer = client.post(&p.vm("rg", "vm1", action));
        assert_eq!(answer.status, 202, "{action}: {answer:?}");
        assert_eq!(client.wait(&answer)["status"], "Succeeded");
        assert_eq!(power_state(&client, &p, "rg", "vm1"), state);
    }
    let all = client
        .get(&format!("/subscriptions/{}/providers/Microsoft.Compute/virtualMachines?api-version={COMPUTE}", p.sub));
    assert_eq!(all.body["value"].as_array().map(Vec::len), Some(1));
    assert_eq!(client.get(&format!("/subscriptions/{}/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces?api-version={NETWORK}", p.sub)).body["value"][0]["properties"]["virtualMachine"]["id"], p.id("rg", "Microsoft.Compute", "virtualMachines", "vm1"));

    let deleted = client.send("DELETE", &p.vm("rg", "vm1", "").replace("?", "?forceDeletion=true&"), None);
    assert_eq!(deleted.status, 202, "{deleted:?}");
    let location = deleted.header("location").expect("a Location").to_string();
    assert_eq!(client.get(&location).status, 202);
    assert_eq!(client.wait(&deleted)["status"], "Succeeded");
    assert_eq!(client.get(&location).status, 204);
    assert_eq!(client.get(&p.vm("rg", "vm1", "")).code(), "ResourceNotFound");
    // The NIC and the OS disk had deleteOption Delete.
    assert!(
        !lab.resources().iter().any(|id| id.contains("networkInterfaces") || id.contains("disks")),
        "{:?}",
        lab.resources()
    );

    let gone = client.delete(&p.group("rg"));
    assert_eq!(gone.status, 202);
    let location = gone.header("location").expect("a Location").to_string();
    let deadline = Instant::now() + WAIT;
    while client.get(&location).status == 202 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(client.get(&location).status, 200);
    assert_eq!(lab.resources(), Vec::<String>::new());
    assert_eq!(client.get(&p.network("rg", "virtualNetworks", "net")).code(), "ResourceGroupNotFound");
}

#[test]
fn invalid_requests_are_refused_as_azure_refuses_them() {
    let (_dir, lab) = emulator(50);
    let client = Client::new(&lab);
    let p = Paths { sub: lab.subscription_id().to_string() };
    let nic = network(&client, &p, "rg", "10.77.251.0/24");
    let vm = p.vm("rg", "vm1", "");
    let cases: Vec<(&str, Answer, u16, &str)> = vec![
        ("no token", Client { endpoint: lab.endpoint_url().into(), token: None }.get(&vm), 401, "AuthenticationFailed"),
        ("unknown field", client.put(&vm, { let mut b = vm_body(&nic, KEY, None); b["properties"]["hardwareProfile"]["cores"] = json!(2); b }), 400, "InvalidRequestContent"),
        ("wrong type", client.put(&vm, { let mut b = vm_body(&nic, KEY, None); b["properties"]["storageProfile"]["osDisk"]["diskSizeGB"] = json!("big"); b }), 400, "InvalidRequestContent"),
        ("wrong type (network)", client.put(&p.network("rg", "publicIPAddresses", "p2"), json!({"location": "westeurope", "properties": {"idleTimeoutInMinutes": "four"}})), 400, "InvalidRequestFormat"),
        ("missing osProfile", client.put(&vm, { let mut b = vm_body(&nic, KEY, None); b["properties"].as_object_mut().map(|o| o.remove("osProfile")); b }), 400, "InvalidParameter"),
        ("missing location", client.put(&p.group("rg2"), json!({"tags": {}})), 400, "LocationRequired"),
        ("unknown query parameter", client.get(&vm.replace("?", "?verbose=1&")), 400, "InvalidQueryParameter"),
        ("wrong api-version (compute)", client.get(&vm.replace(COMPUTE, "2019-01-01")), 400, "NoRegisteredProviderFound"),
        ("wrong api-version (groups)", client.get(&p.group("rg").replace(RESOURCES, "2019-01-01")), 400, "InvalidApiVersionParameter"),
        ("missing api-version", client.get(vm.split('?').next().unwrap_or_default()), 400, "MissingApiVersionParameter"),
        ("unknown resource type", client.get(&p.vm("rg", "vm1", "").replace("virtualMachines", "virtualMachineZ")), 404, "InvalidResourceType"),
        ("unknown method", client.send("PATCH", &p.network("rg", "networkInterfaces", "nic").replace("networkInterfaces/nic", "networkInterfaces"), Some(&json!({}))), 405, "MethodNotAllowed"),
        ("malformed id", client.put(&p.network("rg", "networkInterfaces", "n2"), json!({"location": "westeurope", "properties": {"ipConfigurations": [{"name": "a", "properties": {"subnet": {"id": "hosts"}}}]}})), 400, "LinkedInvalidPropertyId"),
        ("missing group", client.get(&p.vm("nope", "vm1", "")), 404, "ResourceGroupNotFound"),
        ("missing vm", client.get(&vm), 404, "ResourceNotFound"),
        ("bad subscription", client.get(&vm.replace(&p.sub, "my-subscription")), 400, "InvalidSubscriptionId"),
        ("unknown image", client.put(&vm, { let mut b = vm_body(&nic, KEY, None); b["properties"]["storageProfile"]["imageReference"]["sku"] = json!("11"); b }), 404, "PlatformImageNotFound"),
        ("unknown size", client.put(&vm, { let mut b = vm_body(&nic, KEY, None); b["properties"]["hardwareProfile"]["vmSize"] = json!("Standard_M416ms_v2"); b }), 400, "InvalidParameter"),
        ("ssh key path", client.put(&vm, { let mut b = vm_body(&nic, KEY, None); b["properties"]["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"][0]["path"] = json!("/root/.ssh/authorized_keys"); b }), 400, "InvalidParameter"),
        ("custom data not base64", client.put(&vm, { let mut b = vm_body(&nic, KEY, None); b["properties"]["osProfile"]["customData"] = json!("#!/bin/sh"); b }), 400, "InvalidParameter"),
        ("subnet outside the vnet", client.put(&format!("/subscriptions/{}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/net/subnets/x?api-version={NETWORK}", p.sub), json!({"properties": {"addressPrefix": "10.1.0.0/24"}})), 400, "NetcfgInvalidSubnet"),
        ("standard public IP dynamic", client.put(&p.network("rg", "publicIPAddresses", "p3"), json!({"location": "westeurope", "sku": {"name": "Standard"}, "properties": {"publicIPAllocationMethod": "Dynamic"}})), 400, "StandardSkuPublicIPAddressesCannotHaveDynamicAllocation"),
        ("unknown location", client.put(&p.network("rg", "publicIPAddresses", "p4"), json!({"location": "mars"})), 400, "LocationNotAvailableForResourceType"),
    ];
    for (what, answer, status, code) in cases {
        assert_eq!((answer.status, answer.code()), (status, code), "{what}: {answer:?}");
        assert!(
            answer.body.pointer("/error/message").and_then(Value::as_str).is_some_and(|m| !m.is_empty()),
            "{what}: {answer:?}"
        );
    }
    // A PUT that changes an immutable property.
    let created = client.put(&vm, vm_body(&nic, KEY, None));
    assert_eq!(client.wait(&created)["status"], "Succeeded");
    let mut moved = vm_body(&nic, KEY, None);
    moved["zones"] = json!(["2"]);
    let answer = client.put(&vm, moved);
    assert_eq!((answer.status, answer.code()), (409, "PropertyChangeNotAllowed"), "{answer:?}");
    let mut resized = vm_body(&nic, KEY, None);
    resized["properties"]["hardwareProfile"]["vmSize"] = json!("Standard_D4s_v5");
    let answer = client.put(&vm, resized);
    assert_eq!(
        (answer.status, answer.body["properties"]["provisioningState"].as_str()),
        (200, Some("Updating")),
        "{answer:?}"
    );
}

#[test]
fn resources_in_use_cannot_be_deleted_and_a_nic_serves_one_vm() {
    let (_dir, lab) = emulator(50);
    let client = Client::new(&lab);
    let p = Paths { sub: lab.subscription_id().to_string() };
    let nic = network(&client, &p, "rg", "10.77.251.0/24");
    let subnet = format!(
        "/subscriptions/{}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/net/subnets/hosts?api-version={NETWORK}",
        p.sub
    );
    let refused = [
        (client.delete(&subnet), "InUseSubnetCannotBeDeleted"),
        (client.delete(&p.network("rg", "virtualNetworks", "net")), "InUseSubnetCannotBeDeleted"),
        (client.delete(&p.network("rg", "networkSecurityGroups", "nsg")), "InUseNetworkSecurityGroupCannotBeDeleted"),
        (client.delete(&p.network("rg", "publicIPAddresses", "pip")), "PublicIPAddressCannotBeDeleted"),
    ];
    for (answer, code) in refused {
        assert_eq!((answer.status, answer.code()), (400, code), "{answer:?}");
    }
    let created = client.put(&p.vm("rg", "vm1", ""), vm_body(&nic, KEY, None));
    assert_eq!(created.status, 201);
    let nic_delete = client.delete(&p.network("rg", "networkInterfaces", "nic"));
    assert_eq!((nic_delete.status, nic_delete.code()), (400, "NicInUse"), "{nic_delete:?}");
    let second = client.put(&p.vm("rg", "vm2", ""), vm_body(&nic, KEY, None));
    assert_eq!((second.status, second.code()), (409, "NicInUse"), "{second:?}");
    // Deleting the VM (NIC deleteOption Delete) frees everything, in order.
    let deleted = client.delete(&p.vm("rg", "vm1", ""));
    assert_eq!(client.wait(&deleted)["status"], "Succeeded");
    for (kind, name) in [("publicIPAddresses", "pip"), ("networkSecurityGroups", "nsg"), ("virtualNetworks", "net")] {
        let answer = client.delete(&p.network("rg", kind, name));
        assert_eq!(answer.status, 202, "{kind}: {answer:?}");
        assert_eq!(client.wait(&answer)["status"], "Succeeded");
    }
    assert_eq!(lab.resources(), vec![format!("/subscriptions/{}/resourceGroups/rg", p.sub)]);
}

#[test]
fn injected_quota_and_allocation_failures_are_azures() {
    let (_dir, lab) = emulator(50);
    let client = Client::new(&lab);
    let p = Paths { sub: lab.subscription_id().to_string() };
    let nic = network(&client, &p, "rg", "10.77.251.0/24");
    lab.inject(Fault::CoreQuota { count: 1 });
    let refused = client.put(&p.vm("rg", "vm1", ""), vm_body(&nic, KEY, None));
    assert_eq!((refused.status, refused.code()), (409, "OperationNotAllowed"), "{refused:?}");
    assert!(refused.body["error"]["message"].as_str().is_some_and(|m| m.contains("quota")));
    let fault = json!({"kind": "allocation", "error": "ZonalAllocationFailed", "count": 1});
    assert_eq!(client.send("POST", "/_lab/faults", Some(&fault)).status, 204);
    let created = client.put(&p.vm("rg", "vm1", ""), vm_body(&nic, KEY, None));
    assert_eq!(created.status, 201, "{created:?}");
    let status = client.wait(&created);
    assert_eq!(
        (status["status"].as_str(), status["error"]["code"].as_str()),
        (Some("Failed"), Some("ZonalAllocationFailed")),
        "{status}"
    );
    assert_eq!(client.get(&p.vm("rg", "vm1", "")).body["properties"]["provisioningState"], "Failed");
    lab.inject(Fault::Allocation { error: AllocationError::SkuNotAvailable, count: 1 });
    let deleted = client.delete(&p.vm("rg", "vm1", ""));
    assert_eq!(client.wait(&deleted)["status"], "Succeeded");
    // The NIC went with the VM (deleteOption Delete): a new network for the retry.
    let nic = network(&client, &p, "rg2", "10.77.251.0/24");
    let retried = client.put(&p.vm("rg2", "vm1", ""), vm_body(&nic, KEY, None));
    assert_eq!(retried.status, 201, "{retried:?}");
    assert_eq!(client.wait(&retried)["error"]["code"], "SkuNotAvailable");
    let bad = client.send("POST", "/_lab/faults", Some(&json!({"kind": "meteor"})));
    assert_eq!(bad.status, 400);
}

// --- root only: VMs are test hosts --------------------------------------------------------

fn start_with_hosts(dir: &Path) -> Option<AzureLab> {
    let options = AzureLabOptions { operation_delay: Duration::from_millis(100), ..AzureLabOptions::default() };
    match AzureLab::start_with(dir, options) {
        Ok(lab) => Some(lab),
        Err(AzureLabError::Lab(LabError::Unsupported(skip))) => {
            skip::skipped(&skip.0);
            None
        }
        Err(e) => panic!("the Azure lab did not start: {e}"),
    }
}

fn ssh(key: &Path, address: std::net::Ipv4Addr, command: &str) -> std::process::Output {
    ssh_as("root", key, address, command)
}

fn ssh_as(user: &str, key: &Path, address: std::net::Ipv4Addr, command: &str) -> std::process::Output {
    Command::new("ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(key)
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=3"])
        .arg(format!("{user}@{address}"))
        .arg(command)
        .output()
        .expect("run ssh")
}

#[test]
fn a_running_vm_is_a_test_host_reachable_with_its_key() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let Some(lab) = start_with_hosts(dir.path()) else { return };
    let client = Client::new(&lab);
    let p = Paths { sub: lab.subscription_id().to_string() };
    let key = dir.path().join("id");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "vm1", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("the public key");
    let nic = network(&client, &p, "rg", &lab.cidr().to_string());
    let script = "#!/bin/sh\necho custom-data-ran > /root/custom-data\n";
    let created = client.put(&p.vm("rg", "vm1", ""), vm_body(&nic, public.trim(), Some(script)));
    assert_eq!(created.status, 201, "{created:?}");
    // The operation ends once the host is up.
    assert_eq!(client.wait(&created)["status"], "Succeeded");
    let vm = lab.wait_for_vm("vm1", true, WAIT).expect("vm1 gets a running host");
    let address = vm.host.address();
    assert_eq!(address.octets()[3], 4, "the first address Azure hands out");
    let out = ssh(&key, address, "hostname");
    assert!(out.status.success(), "ssh with the VM's key: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "vm1");
    // The admin user exists with the VM's key and passwordless sudo, as Azure's agent makes it.
    let out = ssh_as("gantry", &key, address, "id -un && sudo -n id -un");
    assert!(out.status.success(), "ssh as the admin user: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>(), ["gantry", "root"]);
    let log = vm.custom_data_log.clone().expect("the custom data ran");
    let deadline = Instant::now() + WAIT;
    let ran = loop {
        let out = ssh(&key, address, "cat /root/custom-data 2>/dev/null");
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("custom-data-ran") {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(ran, "custom data did not run; log {}", log.display());
    let off = client.post(&p.vm("rg", "vm1", "/powerOff"));
    assert_eq!(client.wait(&off)["status"], "Succeeded");
    assert!(lab.wait_for_vm("vm1", false, WAIT).is_some(), "powerOff stops the host");
    let on = client.post(&p.vm("rg", "vm1", "/start"));
    assert_eq!(client.wait(&on)["status"], "Succeeded");
    assert!(lab.wait_for_vm("vm1", true, WAIT).is_some(), "start boots the host again");
    assert!(ssh(&key, address, "true").status.success());
    let deleted = client.delete(&p.vm("rg", "vm1", ""));
    assert_eq!(client.wait(&deleted)["status"], "Succeeded");
    assert!(lab.wait_for_removal("vm1", WAIT), "deleting the VM removes its host");
}
