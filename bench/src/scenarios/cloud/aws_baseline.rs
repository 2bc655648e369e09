//! The baseline of `cloud --provider aws`: the instance calls of `gantry up` and `gantry down`
//! made directly with the SDK, through the same counting proxy, on the same lab network.
//!
//! Not measured: a VPC on the lab network with one subnet per zone (the split gantry makes), a
//! security group, a key pair and the image lookup, made before and deleted after with a client
//! that bypasses the proxy. Measured: for every instance, at most `max_parallel_creates` at once,
//! `RunInstances` with gantry's parameters (type, subnet by the host's index, group, key, client
//! token, tags, root volume), `DescribeInstances` until it runs, then a TCP connection to its SSH
//! port (what gantry waits for before it frees a create slot); then for every instance, at most
//! `max_parallel_destroys` at once, `TerminateInstances` and `DescribeInstances` until it is
//! terminated. Polls follow gantry's schedule: at once, then after 100 ms doubling to 2 s.

use super::Side;
use crate::cloud_proxy::CountingProxy;
use anyhow::{Context, anyhow, bail};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{DisplayErrorContext, SdkError};
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, InstanceNetworkInterfaceSpecification, InstanceStateName, InstanceType,
    IpPermission, IpRange, ResourceType, Tag, TagSpecification, VolumeType,
};
use futures_util::StreamExt;
use gantry_lab::cloud::aws::AwsLab;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// The master's instance type in the bench's cluster file and the baseline.
pub const MASTER_TYPE: &str = "t3.small";
/// The agents' instance type.
pub const WORKER_TYPE: &str = "t3.micro";
/// How long an instance may take to run, accept SSH, or terminate.
const TIMEOUT: Duration = Duration::from_secs(120);

/// How much the baseline does.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The name of this run's security group and key pair, and the prefix of its client tokens
    /// (unique in the lab: moto keeps terminated instances and honours client tokens).
    pub name: String,
    /// Instances (the first named `master-0`, the others `workers-K`).
    pub instances: usize,
    /// Creates at once.
    pub max_parallel_creates: usize,
    /// Terminates at once.
    pub max_parallel_destroys: usize,
}

/// What the unmeasured setup made.
#[derive(Debug)]
struct Network {
    vpc: String,
    subnets: Vec<String>,
    group: String,
    /// The security group's and the key pair's name.
    name: String,
    image: String,
}

/// Runs the baseline; the calls it made through the proxy.
pub async fn run(lab: &AwsLab, proxy: &CountingProxy, work: &Path, settings: &Settings) -> anyhow::Result<Side> {
    let direct = lab.ec2_client(lab.region());
    let network = setup(lab, &direct, work, &settings.name).await?;
    let result = measured(lab, proxy, &network, settings).await;
    teardown(&direct, &network).await;
    result
}

async fn measured(lab: &AwsLab, proxy: &CountingProxy, network: &Network, settings: &Settings) -> anyhow::Result<Side> {
    let client = gantry_lab::cloud::aws::ec2_client(proxy.url(), lab.region());
    proxy.take();
    let names: Vec<String> = (0..settings.instances)
        .map(|i| if i == 0 { "master-0".to_string() } else { format!("workers-{}", i - 1) })
        .collect();
    let launched: Vec<anyhow::Result<String>> = futures_util::stream::iter(&names)
        .map(|name| create(&client, network, &settings.name, name))
        .buffer_unordered(settings.max_parallel_creates.max(1))
        .collect()
        .await;
    let create_calls = proxy.take();
    let mut ids = Vec::new();
    let mut failures = Vec::new();
    for result in launched {
        match result {
            Ok(id) => ids.push(id),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    let terminated: Vec<anyhow::Result<()>> = futures_util::stream::iter(&ids)
        .map(|id| terminate(&client, id))
        .buffer_unordered(settings.max_parallel_destroys.max(1))
        .collect()
        .await;
    let side = Side { create: create_calls, terminate: proxy.take() };
    failures.extend(terminated.into_iter().filter_map(Result::err).map(|e| format!("{e:#}")));
    if !failures.is_empty() {
        bail!("the SDK baseline failed: {}", failures.join("; "));
    }
    Ok(side)
}

/// Launches host `name` like gantry does and waits until it runs and accepts SSH; its id.
async fn create(client: &Client, network: &Network, run: &str, name: &str) -> anyhow::Result<String> {
    let index: usize = name.rsplit('-').next().and_then(|i| i.parse().ok()).unwrap_or(0);
    let subnet = &network.subnets[index % network.subnets.len()];
    let kind = if name.starts_with("master") { MASTER_TYPE } else { WORKER_TYPE };
    let tags = |resource: ResourceType| {
        TagSpecification::builder()
            .resource_type(resource)
            .tags(Tag::builder().key("Name").value(format!("baseline-{name}")).build())
            .tags(Tag::builder().key("gantry-bench").value("baseline").build())
            .build()
    };
    let out = client
        .run_instances()
        .image_id(&network.image)
        .instance_type(InstanceType::from(kind))
        .min_count(1)
        .max_count(1)
        .client_token(format!("{run}-{name}-{}", std::process::id()))
        .key_name(&network.name)
        .network_interfaces(
            InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .subnet_id(subnet)
                .groups(&network.group)
                .delete_on_termination(true)
                .build(),
        )
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/xvda")
                .ebs(
                    EbsBlockDevice::builder()
                        .volume_size(gantry_provision::cluster_file::aws_defaults::ROOT_VOLUME_GB as i32)
                        .volume_type(VolumeType::Gp3)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        .tag_specifications(tags(ResourceType::Instance))
        .tag_specifications(tags(ResourceType::Volume))
        .send()
        .await
        .map_err(|e| anyhow!("{name}: RunInstances: {}", DisplayErrorContext(&e)))?;
    let id = out.instances().first().and_then(|i| i.instance_id()).context("RunInstances named no instance")?;
    let address = poll(name, "running", || async move {
        let out = match client.describe_instances().instance_ids(id).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().and_then(|s| s.meta().code()) == Some("InvalidInstanceID.NotFound") => {
                return Ok(None);
            }
            Err(e) => return Err(anyhow!("{name}: DescribeInstances: {}", DisplayErrorContext(&e))),
        };
        let instance = out.reservations().iter().flat_map(|r| r.instances()).next();
        Ok(instance
            .filter(|i| i.state().and_then(|s| s.name()) == Some(&InstanceStateName::Running))
            .and_then(|i| i.private_ip_address())
            .map(str::to_string))
    })
    .await?;
    let target = &format!("{address}:22");
    poll(name, "accepting SSH connections", || async move {
        let connect = tokio::net::TcpStream::connect(target);
        Ok(matches!(tokio::time::timeout(Duration::from_secs(2), connect).await, Ok(Ok(_))).then_some(()))
    })
    .await?;
    Ok(id.to_string())
}

/// Terminates `id` and waits until it is terminated.
async fn terminate(client: &Client, id: &str) -> anyhow::Result<()> {
    client
        .terminate_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(|e| anyhow!("{id}: TerminateInstances: {}", DisplayErrorContext(&e)))?;
    poll(id, "terminated", || async move {
        let out = client.describe_instances().instance_ids(id).send().await.map_err(sdk("DescribeInstances"))?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .all(|i| i.state().and_then(|s| s.name()) == Some(&InstanceStateName::Terminated))
            .then_some(()))
    })
    .await
}

/// Calls `check` at once and then after 100 ms doubling to 2 s (gantry's schedule) until it
/// answers something, for at most [`TIMEOUT`].
async fn poll<T, F, Fut>(what: &str, until: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        if let Some(found) = check().await? {
            return Ok(found);
        }
        if started.elapsed() > TIMEOUT {
            bail!("{what} is not {until} after {TIMEOUT:?}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// The VPC, subnets, group, key pair and image of the baseline (not measured).
async fn setup(lab: &AwsLab, ec2: &Client, work: &Path, name: &str) -> anyhow::Result<Network> {
    let zones = ec2.describe_availability_zones().send().await.map_err(sdk("DescribeAvailabilityZones"))?;
    let mut zones: Vec<String> =
        zones.availability_zones().iter().filter_map(|z| z.zone_name()).map(str::to_string).collect();
    zones.sort();
    let cidr = lab.cidr();
    let vpc = ec2.create_vpc().cidr_block(cidr.to_string()).send().await.map_err(sdk("CreateVpc"))?;
    let vpc = vpc.vpc().and_then(|v| v.vpc_id()).context("CreateVpc named no VPC")?.to_string();
    let mut network =
        Network { vpc, subnets: Vec::new(), group: String::new(), name: name.to_string(), image: String::new() };
    // The caller's teardown only follows a finished setup: a failure from here on deletes what
    // was made itself.
    match fill(lab, ec2, work, &zones, &mut network).await {
        Ok(()) => Ok(network),
        Err(e) => {
            teardown(ec2, &network).await;
            Err(e)
        }
    }
}

async fn fill(lab: &AwsLab, ec2: &Client, work: &Path, zones: &[String], network: &mut Network) -> anyhow::Result<()> {
    let cidr = lab.cidr();
    let bits = zones.len().max(1).next_power_of_two().trailing_zeros() as u8;
    let length = cidr.prefix_len + bits;
    if length > 28 {
        bail!("the lab network {cidr} is too small for {} subnets", zones.len());
    }
    for (i, zone) in zones.iter().enumerate() {
        let base = Ipv4Addr::from(u32::from(cidr.network) + (i as u32) * (1u32 << (32 - u32::from(length))));
        let out = ec2
            .create_subnet()
            .vpc_id(&network.vpc)
            .cidr_block(format!("{base}/{length}"))
            .availability_zone(zone)
            .send()
            .await
            .map_err(sdk("CreateSubnet"))?;
        network.subnets.push(out.subnet().and_then(|s| s.subnet_id()).context("CreateSubnet named no subnet")?.into());
    }
    let out = ec2
        .create_security_group()
        .group_name(&network.name)
        .description("gantry-bench cloud baseline")
        .vpc_id(&network.vpc)
        .send()
        .await
        .map_err(sdk("CreateSecurityGroup"))?;
    network.group = out.group_id().context("CreateSecurityGroup named no group")?.to_string();
    ec2.authorize_security_group_ingress()
        .group_id(&network.group)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(IpRange::builder().cidr_ip(cidr.to_string()).build())
                .build(),
        )
        .send()
        .await
        .map_err(sdk("AuthorizeSecurityGroupIngress"))?;
    let key = work.join("baseline_key");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "gantry-bench-baseline", "-f"])
        .arg(&key)
        .status()
        .context("cannot run ssh-keygen")?;
    if !made.success() {
        bail!("ssh-keygen failed making {}", key.display());
    }
    let public = std::fs::read(key.with_extension("pub"))?;
    ec2.import_key_pair()
        .key_name(&network.name)
        .public_key_material(Blob::new(public))
        .send()
        .await
        .map_err(sdk("ImportKeyPair"))?;
    let images = ec2
        .describe_images()
        .owners("amazon")
        .filters(Filter::builder().name("name").values("al2023-ami-2023.*-x86_64").build())
        .send()
        .await
        .map_err(sdk("DescribeImages"))?;
    network.image = images
        .images()
        .iter()
        .filter_map(|i| Some((i.creation_date().unwrap_or_default(), i.image_id()?)))
        .max()
        .map(|(_, id)| id.to_string())
        .context("moto has no al2023 image")?;
    Ok(())
}

/// Turns an SDK error of `what` into one that names the call and the error's sources.
fn sdk<E, R>(what: &'static str) -> impl FnOnce(SdkError<E, R>) -> anyhow::Error
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |e| anyhow!("{what}: {}", DisplayErrorContext(&e))
}

/// Deletes what [`setup`] made (best effort: the lab goes with everything anyway).
async fn teardown(ec2: &Client, network: &Network) {
    let _ = ec2.delete_key_pair().key_name(&network.name).send().await;
    if !network.group.is_empty() {
        let _ = ec2.delete_security_group().group_id(&network.group).send().await;
    }
    for subnet in &network.subnets {
        let _ = ec2.delete_subnet().subnet_id(subnet).send().await;
    }
    let _ = ec2.delete_vpc().vpc_id(&network.vpc).send().await;
}
