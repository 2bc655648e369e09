//! The baseline of `cloud --provider azure`: the VM calls of `gantry up` and `gantry down` made
//! directly with the official management crates (`azure_mgmt_compute`, `azure_mgmt_network`,
//! a fixed bearer token), through the same counting proxy, on the same lab network.
//!
//! Not measured: a resource group with a virtual network on the lab network and a network
//! security group allowing SSH, made before and deleted after (the group, with everything in
//! it) with clients that bypass the proxy. Measured: for every VM, at most
//! `max_parallel_creates` at once, what gantry's create does: the VM's NIC (PUT, its operation
//! followed), the VM (PUT with gantry's shape: size, marketplace image, OS disk, admin user and
//! SSH key, the NIC, zones in turn by the host's index; its `Azure-AsyncOperation` followed),
//! the VM's GET with its instance view until it runs, the NIC's GET for its address, then a TCP
//! connection to its SSH port; then for every VM, at most `max_parallel_destroys` at once, its
//! DELETE (followed) and its NIC's. Polls follow gantry's schedule ([`Backoff`]: operations 50 ms
//! doubling to 5 s, the boot 100 ms doubling to 5 s).

use super::Side;
use crate::cloud_proxy::CountingProxy;
use anyhow::{Context, anyhow, bail};
use azure_core::auth::{AccessToken, TokenCredential};
use azure_core::headers::{AUTHORIZATION, AZURE_ASYNCOPERATION, LOCATION as LOCATION_HEADER};
use azure_core::{HttpClient, Method, Request, Response, StatusCode, Url};
use azure_mgmt_compute::package_2024_07_01 as compute;
use azure_mgmt_network::package_2024_03 as network;
use azure_mgmt_resources::package_resources_2021_04 as resources;
use futures_util::StreamExt;
use gantry_lab::cloud::azure::AzureLab;
use gantry_provision::cloud::{Backoff, ensure_ssh_key, wait_for_port};
use gantry_provision::cluster_file::azure_defaults;
use serde_json::{Value, json};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The size of every VM in the bench's cluster file and the baseline (the lab's smallest).
pub const VM_SIZE: &str = "Standard_B1s";
/// The location of the bench's cluster file and the baseline.
pub const LOCATION: &str = "westeurope";
/// The zones of the bench's cluster file and the baseline.
pub const ZONES: [&str; 3] = ["1", "2", "3"];
/// The VMs' admin user (Azure refuses root).
pub const ADMIN_USER: &str = "gantry";
/// How long a VM may take to run, accept SSH, or be deleted.
const TIMEOUT: Duration = Duration::from_secs(120);

/// How much the baseline does.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The name of this run's resource group, network and security group (unique in the lab).
    pub name: String,
    /// VMs (`master-0`, then `workers-K`).
    pub instances: usize,
    /// Creates at once.
    pub max_parallel_creates: usize,
    /// Deletes at once.
    pub max_parallel_destroys: usize,
}

/// The clients of one endpoint (the proxy, or the emulator itself for the setup).
struct Arm {
    subscription: String,
    compute: compute::Client,
    network: network::Client,
    resources: resources::Client,
    http: Arc<dyn HttpClient>,
}

impl Arm {
    fn connect(endpoint: &str, subscription: &str) -> anyhow::Result<Arm> {
        let url = Url::parse(endpoint).with_context(|| format!("endpoint {endpoint}"))?;
        let credential: Arc<dyn TokenCredential> = Arc::new(LabToken);
        Ok(Arm {
            subscription: subscription.to_string(),
            compute: compute::Client::builder(credential.clone()).endpoint(url.clone()).build()?,
            network: network::Client::builder(credential.clone()).endpoint(url.clone()).build()?,
            resources: resources::Client::builder(credential).endpoint(url).build()?,
            http: azure_core::new_http_client(),
        })
    }

    /// Sends a PUT or DELETE (`call`) and follows its operation to the end, as gantry does; a
    /// DELETE of something gone is done.
    async fn wait<R: Into<Response>>(
        &self,
        what: &str,
        call: impl Future<Output = azure_core::Result<R>>,
    ) -> anyhow::Result<()> {
        let response: Response = match call.await {
            Ok(response) => response.into(),
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) => return Err(anyhow!("{what}: {e}")),
        };
        let headers = response.headers();
        let (url, by_status) =
            match (headers.get_optional_string(&AZURE_ASYNCOPERATION), headers.get_optional_string(&LOCATION_HEADER)) {
                (Some(url), _) => (url, true),
                (None, Some(url)) if response.status() == StatusCode::Accepted => (url, false),
                _ => return Ok(()),
            };
        let url = Url::parse(&url).with_context(|| format!("{what}: operation URL {url}"))?;
        let started = tokio::time::Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            backoff.wait().await;
            let mut request = Request::new(url.clone(), Method::Get);
            request.insert_header(AUTHORIZATION, format!("Bearer {}", gantry_lab::cloud::azure::LAB_CREDENTIALS));
            let answer = self.http.execute_request(&request).await.map_err(|e| anyhow!("{what}: poll: {e}"))?;
            let status = answer.status();
            let body = answer.into_body().collect().await?;
            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("{what}: poll answered {status}: {json}");
            }
            let done = match (by_status, json.get("status").and_then(Value::as_str)) {
                (false, _) => status != StatusCode::Accepted,
                (true, Some("Succeeded")) => true,
                (true, Some("Failed" | "Canceled")) => bail!("{what}: operation failed: {json}"),
                (true, _) => false,
            };
            if done {
                return Ok(());
            }
            if started.elapsed() > TIMEOUT {
                bail!("{what}: operation still runs after {TIMEOUT:?}");
            }
        }
    }

    fn id(&self, group: &str, kind: &str, name: &str) -> String {
        format!("/subscriptions/{}/resourceGroups/{group}/providers/{kind}/{name}", self.subscription)
    }
}

/// Runs the baseline; the calls it made through the proxy.
pub async fn run(lab: &AzureLab, proxy: &CountingProxy, work: &Path, settings: &Settings) -> anyhow::Result<Side> {
    gantry_trust::tls::install_default_provider();
    let direct = Arm::connect(lab.endpoint_url(), lab.subscription_id())?;
    let group = &settings.name;
    let made = setup(lab, &direct, group).await;
    let result = match made {
        Ok(()) => {
            let key = ensure_ssh_key(&work.join("baseline_key"), "gantry-bench-baseline").map_err(|e| anyhow!(e))?;
            let arm = Arm::connect(proxy.url(), lab.subscription_id())?;
            measured(&arm, proxy, group, &key, settings).await
        }
        Err(e) => Err(e),
    };
    let call = direct.resources.resource_groups_client().delete(group.as_str(), &direct.subscription).send();
    if let Err(e) = direct.wait(&format!("resource group {group}"), call).await {
        eprintln!("  .. the baseline's resource group was not deleted: {e:#}");
    }
    result
}

async fn measured(
    arm: &Arm,
    proxy: &CountingProxy,
    group: &str,
    key: &str,
    settings: &Settings,
) -> anyhow::Result<Side> {
    proxy.take();
    let hosts: Vec<(String, usize)> = (0..settings.instances)
        .map(|i| if i == 0 { ("master-0".to_string(), 0) } else { (format!("workers-{}", i - 1), i - 1) })
        .collect();
    let created: Vec<anyhow::Result<String>> = futures_util::stream::iter(&hosts)
        .map(|(name, index)| async move {
            create(arm, group, key, name, ZONES[index % ZONES.len()]).await.map(|()| name.clone())
        })
        .buffer_unordered(settings.max_parallel_creates.max(1))
        .collect()
        .await;
    let create_calls = proxy.take();
    let mut made = Vec::new();
    let mut failures = Vec::new();
    for result in created {
        match result {
            Ok(name) => made.push(name),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    let deleted: Vec<anyhow::Result<()>> = futures_util::stream::iter(&made)
        .map(|name| delete(arm, group, name))
        .buffer_unordered(settings.max_parallel_destroys.max(1))
        .collect()
        .await;
    let side = Side { create: create_calls, terminate: proxy.take() };
    failures.extend(deleted.into_iter().filter_map(Result::err).map(|e| format!("{e:#}")));
    if !failures.is_empty() {
        bail!("the SDK baseline failed: {}", failures.join("; "));
    }
    Ok(side)
}

/// Makes VM `name` like gantry does (its NIC, then the VM) and waits until it runs and accepts
/// SSH.
async fn create(arm: &Arm, group: &str, key: &str, name: &str, zone: &str) -> anyhow::Result<()> {
    let sub = &arm.subscription;
    let nic_name = format!("{name}-nic");
    let nic = model::<network::models::NetworkInterface>(json!({
        "location": LOCATION,
        "tags": { "gantry-bench": "baseline" },
        "properties": {
            "ipConfigurations": [{ "name": "primary", "properties": {
                "subnet": { "id": format!("{}/subnets/{group}", arm.id(group, "Microsoft.Network/virtualNetworks", group)) },
                "privateIPAllocationMethod": "Dynamic", "primary": true } }],
            "networkSecurityGroup": { "id": arm.id(group, "Microsoft.Network/networkSecurityGroups", group) },
        },
    }))?;
    let put = arm.network.network_interfaces_client().create_or_update(group, &nic_name, nic, sub).send();
    arm.wait(&format!("{name}: NIC"), put).await?;
    let (publisher, offer, sku, version) = azure_defaults::IMAGE;
    let vm = model::<compute::models::VirtualMachine>(json!({
        "location": LOCATION,
        "zones": [zone],
        "tags": { "gantry-bench": "baseline" },
        "properties": {
            "hardwareProfile": { "vmSize": VM_SIZE },
            "storageProfile": {
                "imageReference": { "publisher": publisher, "offer": offer, "sku": sku, "version": version },
                "osDisk": { "name": format!("{name}-osdisk"), "createOption": "FromImage",
                    "diskSizeGB": azure_defaults::DISK_GB, "deleteOption": "Delete",
                    "managedDisk": { "storageAccountType": "StandardSSD_LRS" } },
            },
            "osProfile": {
                "computerName": name,
                "adminUsername": ADMIN_USER,
                "linuxConfiguration": { "disablePasswordAuthentication": true, "ssh": { "publicKeys": [{
                    "path": format!("/home/{ADMIN_USER}/.ssh/authorized_keys"), "keyData": key }] } },
            },
            "networkProfile": { "networkInterfaces": [{
                "id": arm.id(group, "Microsoft.Network/networkInterfaces", &nic_name),
                "properties": { "primary": true, "deleteOption": "Delete" } }] },
        },
    }))?;
    let put = arm.compute.virtual_machines_client().create_or_update(group, name, vm, sub).send();
    arm.wait(&format!("{name}: VM"), put).await?;
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let address = loop {
        let get = arm.compute.virtual_machines_client().get(group, name, sub).expand("instanceView").send();
        let vm = json_of(get).await.map_err(|e| anyhow!("{name}: VM get: {e}"))?;
        if power_state(&vm) == Some("running") {
            let get = arm.network.network_interfaces_client().get(group, &nic_name, sub).send();
            let nic = json_of(get).await.map_err(|e| anyhow!("{name}: NIC get: {e}"))?;
            if let Some(address) =
                nic.pointer("/properties/ipConfigurations/0/properties/privateIPAddress").and_then(Value::as_str)
            {
                break address.to_string();
            }
        }
        if started.elapsed() > TIMEOUT {
            bail!("{name} is not running after {TIMEOUT:?}");
        }
        backoff.wait().await;
    };
    wait_for_port(&format!("{address}:22"), TIMEOUT).await.map_err(|e| anyhow!("{name}: {e}"))
}

/// Deletes VM `name` (its OS disk goes with it), then its NIC if it is left.
async fn delete(arm: &Arm, group: &str, name: &str) -> anyhow::Result<()> {
    let sub = &arm.subscription;
    arm.wait(&format!("{name}: VM delete"), arm.compute.virtual_machines_client().delete(group, name, sub).send())
        .await?;
    let nic = arm.network.network_interfaces_client().delete(group, format!("{name}-nic"), sub).send();
    arm.wait(&format!("{name}: NIC delete"), nic).await
}

/// The resource group, its network and security group (not measured).
async fn setup(lab: &AzureLab, arm: &Arm, group: &str) -> anyhow::Result<()> {
    let sub = &arm.subscription;
    let tags = json!({ "gantry-bench": "baseline" });
    let rg = model::<resources::models::ResourceGroup>(json!({ "location": LOCATION, "tags": tags }))?;
    arm.wait("resource group", arm.resources.resource_groups_client().create_or_update(group, rg, sub).send()).await?;
    let nsg = model::<network::models::NetworkSecurityGroup>(json!({
        "location": LOCATION,
        "tags": tags,
        "properties": { "securityRules": [{ "name": "ssh", "properties": {
            "protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "22",
            "sourceAddressPrefix": lab.cidr().to_string(), "destinationAddressPrefix": "*",
            "access": "Allow", "priority": 100, "direction": "Inbound" } }] },
    }))?;
    let put = arm.network.network_security_groups_client().create_or_update(group, group, nsg, sub).send();
    arm.wait("security group", put).await?;
    let vnet = model::<network::models::VirtualNetwork>(json!({
        "location": LOCATION,
        "tags": tags,
        "properties": {
            "addressSpace": { "addressPrefixes": [lab.cidr().to_string()] },
            "subnets": [{ "name": group, "properties": { "addressPrefix": lab.cidr().to_string(),
                "networkSecurityGroup": { "id": arm.id(group, "Microsoft.Network/networkSecurityGroups", group) } } }],
        },
    }))?;
    let put = arm.network.virtual_networks_client().create_or_update(group, group, vnet, sub).send();
    arm.wait("virtual network", put).await
}

/// A request body as the SDK's model.
fn model<T: serde::de::DeserializeOwned>(body: Value) -> anyhow::Result<T> {
    serde_json::from_value(body).context("a request body does not fit the SDK's model")
}

/// The JSON of a GET's answer.
async fn json_of<R: Into<Response>>(call: impl Future<Output = azure_core::Result<R>>) -> anyhow::Result<Value> {
    let response: Response = call.await?.into();
    let body = response.into_body().collect().await?;
    Ok(serde_json::from_slice(&body)?)
}

fn not_found(e: &azure_core::Error) -> bool {
    e.as_http_error().is_some_and(|h| h.status() == StatusCode::NotFound)
}

/// A VM's power state from its instance view (`running`, `stopped`, …).
fn power_state(vm: &Value) -> Option<&str> {
    vm.pointer("/properties/instanceView/statuses")?
        .as_array()?
        .iter()
        .find_map(|s| s.get("code")?.as_str()?.strip_prefix("PowerState/"))
}

/// A fixed bearer token: the lab accepts any.
#[derive(Debug, Clone, Copy)]
struct LabToken;

impl TokenCredential for LabToken {
    fn get_token<'a, 'b, 'c, 'f>(
        &'a self,
        _scopes: &'b [&'c str],
    ) -> Pin<Box<dyn Future<Output = azure_core::Result<AccessToken>> + Send + 'f>>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        Self: 'f,
    {
        Box::pin(async {
            let expires = azure_core::date::parse_rfc3339("2999-01-01T00:00:00Z")?;
            Ok(AccessToken::new(gantry_lab::cloud::azure::LAB_CREDENTIALS, expires))
        })
    }

    fn clear_cache<'a, 'f>(&'a self) -> Pin<Box<dyn Future<Output = azure_core::Result<()>> + Send + 'f>>
    where
        'a: 'f,
        Self: 'f,
    {
        Box::pin(async { Ok(()) })
    }
}
