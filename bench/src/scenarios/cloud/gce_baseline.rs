//! The baseline of `cloud --provider gce`: the instance calls of `gantry up` and `gantry down`
//! made directly with the official crate (`google-cloud-compute-v1`, anonymous credentials),
//! through the same counting proxy, on the same lab network.
//!
//! Not measured: a VPC network with one subnetwork on the lab network and a firewall rule for
//! SSH, made before and deleted after with clients that bypass the proxy. Measured: for every
//! instance, at most `max_parallel_creates` at once, `instances.insert` with gantry's shape
//! (machine type, boot disk from the default image, the subnetwork, the SSH key as `ssh-keys`
//! metadata, a labels, a request id; zones in turn by the host's index), its zone operation
//! polled until DONE, `instances.get` until it runs with an address, then a TCP connection to
//! its SSH port (what gantry waits for before it frees a create slot); then for every instance,
//! at most `max_parallel_destroys` at once, `instances.delete` and its operation polled until
//! DONE. Polls follow gantry's schedule ([`Backoff`]: 50 ms doubling to 2 s).

use super::Side;
use crate::cloud_proxy::CountingProxy;
use anyhow::{Context, anyhow, bail};
use futures_util::StreamExt;
use gantry_lab::cloud::gce::GceLab;
use gantry_provision::cloud::{Backoff, ensure_ssh_key, wait_for_port};
use gantry_provision::cluster_file::gce_defaults;
use google_cloud_compute_v1::client::{
    Firewalls, GlobalOperations, Instances, Networks, RegionOperations, Regions, Subnetworks, ZoneOperations,
};
use google_cloud_compute_v1::model::{
    AttachedDisk, AttachedDiskInitializeParams, Firewall, Instance, Metadata, Network, NetworkInterface, Operation,
    Subnetwork, firewall, instance, metadata, operation,
};
use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::time::Duration;

/// The machine type of every instance in the bench's cluster file and the baseline (the lab's
/// smallest).
pub const MACHINE_TYPE: &str = "e2-small";
/// The region of the bench's cluster file and the baseline.
pub const REGION: &str = "europe-west1";
/// How long an instance may take to run, accept SSH, or be deleted.
const TIMEOUT: Duration = Duration::from_secs(120);

/// How much the baseline does.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The name of this run's network, subnetwork and firewall rule, and the prefix of its
    /// instances (unique in the lab).
    pub name: String,
    /// Instances (`<name>-master-0`, then `<name>-workers-K`).
    pub instances: usize,
    /// Creates at once.
    pub max_parallel_creates: usize,
    /// Deletes at once.
    pub max_parallel_destroys: usize,
}

/// The clients of one endpoint (the proxy, or the emulator itself for the setup).
struct Compute {
    project: String,
    instances: Instances,
    zone_operations: ZoneOperations,
    region_operations: RegionOperations,
    global_operations: GlobalOperations,
}

macro_rules! client {
    ($client:ty, $endpoint:expr) => {
        <$client>::builder()
            .with_endpoint($endpoint)
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
            .build()
            .await
            .with_context(|| format!("cannot make the {} client", stringify!($client)))?
    };
}

impl Compute {
    async fn connect(endpoint: &str, project: &str) -> anyhow::Result<Compute> {
        Ok(Compute {
            project: project.to_string(),
            instances: client!(Instances, endpoint),
            zone_operations: client!(ZoneOperations, endpoint),
            region_operations: client!(RegionOperations, endpoint),
            global_operations: client!(GlobalOperations, endpoint),
        })
    }
}

/// What the unmeasured setup made.
#[derive(Debug, Default)]
struct Setup {
    network: bool,
    subnetwork: bool,
    firewall: bool,
    zones: Vec<String>,
    public_key: String,
}

/// Runs the baseline; the calls it made through the proxy.
pub async fn run(lab: &GceLab, proxy: &CountingProxy, work: &Path, settings: &Settings) -> anyhow::Result<Side> {
    gantry_trust::tls::install_default_provider();
    let direct = lab.endpoint_url();
    let mut setup = Setup::default();
    let made = make(lab, direct, work, &settings.name, &mut setup).await;
    let result = match made {
        Ok(()) => measured(lab, proxy, &setup, settings).await,
        Err(e) => Err(e),
    };
    teardown(lab, direct, &settings.name, &setup).await;
    result
}

async fn measured(lab: &GceLab, proxy: &CountingProxy, setup: &Setup, settings: &Settings) -> anyhow::Result<Side> {
    let compute = Compute::connect(proxy.url(), lab.project()).await?;
    proxy.take();
    let hosts: Vec<(String, usize)> = (0..settings.instances)
        .map(|i| if i == 0 { ("master-0".to_string(), 0) } else { (format!("workers-{}", i - 1), i - 1) })
        .map(|(host, index)| (format!("{}-{host}", settings.name), index))
        .collect();
    let created: Vec<anyhow::Result<(String, String)>> =
        futures_util::stream::iter(&hosts)
            .map(|(name, index)| {
                let zone = &setup.zones[index % setup.zones.len()];
                let compute = &compute;
                async move {
                    create(compute, setup, &settings.name, name, zone).await.map(|()| (name.clone(), zone.clone()))
                }
            })
            .buffer_unordered(settings.max_parallel_creates.max(1))
            .collect()
            .await;
    let create_calls = proxy.take();
    let mut made = Vec::new();
    let mut failures = Vec::new();
    for result in created {
        match result {
            Ok(instance) => made.push(instance),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    let deleted: Vec<anyhow::Result<()>> = futures_util::stream::iter(&made)
        .map(|(name, zone)| delete(&compute, name, zone))
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

/// Inserts instance `name` in `zone` like gantry does and waits until it runs and accepts SSH.
async fn create(c: &Compute, setup: &Setup, run: &str, name: &str, zone: &str) -> anyhow::Result<()> {
    let region_path = format!("projects/{}/regions/{REGION}", c.project);
    let disk = AttachedDisk::new().set_boot(true).set_auto_delete(true).set_initialize_params(
        AttachedDiskInitializeParams::new()
            .set_source_image(gce_defaults::IMAGE)
            .set_disk_size_gb(i64::from(gce_defaults::DISK_GB)),
    );
    let body = Instance::new()
        .set_name(name)
        .set_machine_type(format!("zones/{zone}/machineTypes/{MACHINE_TYPE}"))
        .set_disks([disk])
        .set_network_interfaces([NetworkInterface::new().set_subnetwork(format!("{region_path}/subnetworks/{run}"))])
        .set_metadata(
            Metadata::new().set_items([metadata::Items::new()
                .set_key("ssh-keys")
                .set_value(format!("root:{}", setup.public_key))]),
        )
        .set_labels([("gantry-bench", "baseline")]);
    let op = c
        .instances
        .insert()
        .set_project(&c.project)
        .set_zone(zone)
        .set_request_id(request_id(name))
        .set_body(body)
        .send()
        .await
        .map_err(|e| anyhow!("{name}: instances.insert: {e}"))?;
    finish(c, op, name).await?;
    let address = poll(name, "running with an address", || async move {
        let instance = match c.instances.get().set_project(&c.project).set_zone(zone).set_instance(name).send().await {
            Ok(instance) => instance,
            Err(e) if e.http_status_code() == Some(404) => return Ok(None),
            Err(e) => return Err(anyhow!("{name}: instances.get: {e}")),
        };
        let running = instance.status == Some(instance::Status::Running);
        Ok(running.then(|| instance.network_interfaces.first().and_then(|n| n.network_ip.clone())).flatten())
    })
    .await?;
    wait_for_port(&format!("{address}:22"), TIMEOUT).await.map_err(|e| anyhow!("{name}: {e}"))
}

/// Deletes instance `name` and waits for its operation.
async fn delete(c: &Compute, name: &str, zone: &str) -> anyhow::Result<()> {
    let op = c
        .instances
        .delete()
        .set_project(&c.project)
        .set_zone(zone)
        .set_request_id(request_id(&format!("{name}-delete")))
        .set_instance(name)
        .send()
        .await
        .map_err(|e| anyhow!("{name}: instances.delete: {e}"))?;
    finish(c, op, name).await
}

/// Polls operation `op` (of a zone, a region or global) until it is DONE, as gantry does; its
/// error, if it failed.
async fn finish(c: &Compute, op: Operation, name: &str) -> anyhow::Result<()> {
    let last = |link: &Option<String>| link.as_deref().and_then(|l| l.rsplit('/').next()).map(str::to_string);
    let (zone, region) = (last(&op.zone), last(&op.region));
    let op_name = op.name.clone().unwrap_or_default();
    let done = if op.status == Some(operation::Status::Done) {
        op
    } else {
        let (zone, region, op_name) = (&zone, &region, &op_name);
        poll(name, "done", || async move {
            let project = &c.project;
            let op = match (zone, region) {
                (Some(zone), _) => {
                    c.zone_operations.get().set_project(project).set_zone(zone).set_operation(op_name).send().await
                }
                (None, Some(region)) => {
                    let get = c.region_operations.get().set_project(project).set_region(region);
                    get.set_operation(op_name).send().await
                }
                (None, None) => c.global_operations.get().set_project(project).set_operation(op_name).send().await,
            }
            .map_err(|e| anyhow!("{name}: operation {op_name}: {e}"))?;
            Ok((op.status == Some(operation::Status::Done)).then_some(op))
        })
        .await?
    };
    match done.error.as_ref().and_then(|e| e.errors.first()) {
        None => Ok(()),
        Some(error) => bail!(
            "{name}: operation {op_name} failed: {}: {}",
            error.code.as_deref().unwrap_or("?"),
            error.message.as_deref().unwrap_or("")
        ),
    }
}

/// Calls `check` at once and then on gantry's schedule until it answers something, for at most
/// [`TIMEOUT`].
async fn poll<T, F, Fut>(what: &str, until: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        if let Some(found) = check().await? {
            return Ok(found);
        }
        if started.elapsed() > TIMEOUT {
            bail!("{what} is not {until} after {TIMEOUT:?}");
        }
        backoff.wait().await;
    }
}

/// A fresh request id (a version 4 UUID) for `seed`.
fn request_id(seed: &str) -> String {
    let state = RandomState::new();
    let (a, b) = (state.hash_one((seed, 1u8)), state.hash_one((seed, 2u8)));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

/// The network, subnetwork, firewall rule, zones and SSH key of the baseline (not measured).
async fn make(lab: &GceLab, endpoint: &str, work: &Path, name: &str, setup: &mut Setup) -> anyhow::Result<()> {
    let project = lab.project();
    let direct = Compute::connect(endpoint, project).await?;
    let network_path = format!("projects/{project}/global/networks/{name}");
    let regions = client!(Regions, endpoint);
    let region = regions.get().set_project(project).set_region(REGION).send().await.context("regions.get")?;
    setup.zones = region.zones.iter().filter_map(|z| z.rsplit('/').next()).map(str::to_string).collect();
    setup.zones.sort();
    if setup.zones.is_empty() {
        bail!("the lab's region {REGION} has no zones");
    }
    let networks = client!(Networks, endpoint);
    let network = Network::new().set_name(name).set_auto_create_subnetworks(false);
    let op = networks.insert().set_project(project).set_body(network).send().await.context("networks.insert")?;
    setup.network = true;
    finish(&direct, op, name).await?;
    let subnetworks = client!(Subnetworks, endpoint);
    let subnetwork =
        Subnetwork::new().set_name(name).set_network(&network_path).set_ip_cidr_range(lab.cidr().to_string());
    let op = subnetworks
        .insert()
        .set_project(project)
        .set_region(REGION)
        .set_body(subnetwork)
        .send()
        .await
        .context("subnetworks.insert")?;
    setup.subnetwork = true;
    finish(&direct, op, name).await?;
    let firewalls = client!(Firewalls, endpoint);
    let rule = Firewall::new()
        .set_name(name)
        .set_network(&network_path)
        .set_source_ranges([lab.cidr().to_string()])
        .set_allowed([firewall::Allowed::new().set_ip_protocol("tcp").set_ports(["22"])]);
    let op = firewalls.insert().set_project(project).set_body(rule).send().await.context("firewalls.insert")?;
    setup.firewall = true;
    finish(&direct, op, name).await?;
    setup.public_key = ensure_ssh_key(&work.join("baseline_key"), "gantry-bench-baseline").map_err(|e| anyhow!(e))?;
    Ok(())
}

/// Deletes what [`make`] made (best effort: the lab goes with everything anyway).
async fn teardown(lab: &GceLab, endpoint: &str, name: &str, setup: &Setup) {
    if let Err(e) = unmake(lab, endpoint, name, setup).await {
        eprintln!("  .. the baseline's network was not deleted: {e:#}");
    }
}

async fn unmake(lab: &GceLab, endpoint: &str, name: &str, setup: &Setup) -> anyhow::Result<()> {
    let project = lab.project();
    let direct = Compute::connect(endpoint, project).await?;
    if setup.firewall {
        let op = client!(Firewalls, endpoint).delete().set_project(project).set_firewall(name).send().await?;
        finish(&direct, op, name).await?;
    }
    if setup.subnetwork {
        let subnetworks = client!(Subnetworks, endpoint);
        let op = subnetworks.delete().set_project(project).set_region(REGION).set_subnetwork(name).send().await?;
        finish(&direct, op, name).await?;
    }
    if setup.network {
        let op = client!(Networks, endpoint).delete().set_project(project).set_network(name).send().await?;
        finish(&direct, op, name).await?;
    }
    Ok(())
}
