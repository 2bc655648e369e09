//! The `aws` provider: a cluster's hosts are EC2 instances in a VPC gantry makes (or one the file
//! names), made with the official SDK (`aws-sdk-ec2`) and reached over SSH.
//!
//! [`Provider::prepare`] makes the cluster's own resources ([`network`]): a VPC with one subnet
//! per zone, an internet gateway and route, a security group admitting SSH and the API only from
//! the file's CIDRs (and everything between the cluster's instances), and a key pair whose private
//! half stays in the state dir. Instances are launched one RunInstances call per host, up to
//! `[aws] max_parallel_creates` at once, spread across the zones by their index in the pool, and
//! tried in the next zone on `InsufficientInstanceCapacity`. Every resource carries the
//! `gantry:cluster` tag (and `gantry:expires-at` with a TTL) from its create call on.
//!
//! Nothing leaks across a crash: the provider's journal ([`registry`]) records each create's
//! intent and idempotency token before the call, and resources are also found by tag, so an
//! interrupted `up` resumes without duplicates. `down` terminates the instances, then
//! [`Provider::teardown`] deletes the network in dependency order.
//!
//! It must not depend on other providers; it only implements provision's `Provider` and
//! `Connector`.

pub mod ec2;
pub mod iam;
mod instances;
pub mod network;
pub mod settings;
pub mod sweep;
pub mod tags;

pub use settings::AwsSettings;

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, InstanceMarketOptionsRequest, InstanceNetworkInterfaceSpecification,
    InstanceStateName, InstanceType, MarketType, ResourceType, VolumeType,
};
use ec2::Ec2;
use futures_util::future::BoxFuture;
use gantry_provision::access::{Connector, HostAccess};
use gantry_provision::cloud::Registry;
use gantry_provision::cloud::{self, Backoff, CloudHosts};
use gantry_provision::cluster_file::{ClusterFile, ConnectVia, Role};
use gantry_provision::provider::{
    ClusterResource, ErrorKind, HostDescription, HostSpec, Provider, ProviderCapabilities, ProviderError, TransportKind,
};
use network::Network;
use settings::{MASTER_POOL, NetworkSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tags::Tags;

/// How long a launched instance may take to be `running` and to accept SSH connections.
pub const BOOT_TIMEOUT: Duration = cloud::BOOT_TIMEOUT;

/// EC2 instances over SSH. See the module docs.
#[derive(Debug)]
pub struct AwsProvider {
    cluster: String,
    settings: AwsSettings,
    state_dir: PathBuf,
    hosts: CloudHosts,
    registry: Registry,
    client: tokio::sync::OnceCell<Ec2>,
    network: tokio::sync::Mutex<Option<Network>>,
    images: tokio::sync::Mutex<BTreeMap<String, String>>,
}

impl AwsProvider {
    /// The provider of a validated `aws` cluster file, keeping its journal, SSH key and
    /// known_hosts in `state_dir`. `None` when the file has no `[aws]` section.
    pub fn new(file: &ClusterFile, state_dir: &Path) -> Option<Self> {
        let settings = AwsSettings::from_cluster_file(file)?;
        let hosts = CloudHosts::new("aws", file, state_dir, settings.connect_via, settings.api_port);
        Some(Self {
            cluster: file.name().to_string(),
            settings,
            state_dir: state_dir.to_path_buf(),
            hosts,
            registry: Registry::new("aws", state_dir),
            client: tokio::sync::OnceCell::new(),
            network: tokio::sync::Mutex::new(None),
            images: tokio::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// The settings it was made with.
    pub fn settings(&self) -> &AwsSettings {
        &self.settings
    }

    async fn ec2(&self) -> Result<&Ec2, ProviderError> {
        self.client.get_or_try_init(|| Ec2::connect(&self.settings.region, self.settings.endpoint_url.as_deref())).await
    }

    fn error(&self, operation: &'static str, host: &str, kind: ErrorKind, message: String) -> ProviderError {
        ProviderError::Call { provider: "aws".to_string(), operation, host: host.to_string(), kind, message }
    }

    /// The tags of every resource: the user's, the cluster, the expiry.
    fn tags(&self) -> Result<Tags, ProviderError> {
        let expires_at = match self.settings.ttl {
            None => None,
            Some(ttl) => {
                let created = self
                    .registry
                    .update(|r| {
                        r.created_at
                            .get_or_insert_with(|| humantime::format_rfc3339_seconds(SystemTime::now()).to_string())
                            .clone()
                    })
                    .map_err(|e| self.error("create", "cluster", ErrorKind::Other, e))?;
                Some(humantime::format_rfc3339_seconds(cloud::expires_at(&created, ttl)).to_string())
            }
        };
        Ok(Tags::new(&self.cluster, &self.settings.tags, expires_at.as_deref()))
    }

    /// The network, made if needed (serialised: parallel creates wait for one maker).
    async fn ensure_network(&self) -> Result<Network, ProviderError> {
        let mut cached = self.network.lock().await;
        if let Some(network) = cached.as_ref() {
            return Ok(network.clone());
        }
        let ec2 = self.ec2().await?;
        network::check_region(&self.settings).await?;
        let comment = format!("gantry-{}", self.cluster);
        let public_key = cloud::ensure_ssh_key(&cloud::key_file(&self.state_dir), &comment)
            .map_err(|e| self.error("prepare", "cluster", ErrorKind::Other, e))?;
        let maker = network::Maker {
            ec2,
            cluster: &self.cluster,
            settings: &self.settings,
            tags: self.tags()?,
            registry: &self.registry,
            public_key: &public_key,
        };
        let network = maker.ensure().await?;
        *cached = Some(network.clone());
        Ok(network)
    }

    async fn image(&self, host: &str, pool: &str) -> Result<String, ProviderError> {
        let image = self.settings.machine(pool).image;
        let key = image.to_string();
        let mut cache = self.images.lock().await;
        if let Some(id) = cache.get(&key) {
            return Ok(id.clone());
        }
        let id = instances::resolve_image(self.ec2().await?, host, &image).await?;
        cache.insert(key, id.clone());
        Ok(id)
    }

    async fn create(&self, spec: &HostSpec) -> Result<HostDescription, ProviderError> {
        let ec2 = self.ec2().await?;
        let existing = instances::find(ec2, &self.cluster, Some(&spec.name)).await?;
        if let Some(instance) = existing.first() {
            let id = instance.instance_id().unwrap_or_default().to_string();
            if matches!(
                instance.state().and_then(|s| s.name()),
                Some(InstanceStateName::Stopped | InstanceStateName::Stopping)
            ) {
                ec2.client
                    .start_instances()
                    .instance_ids(&id)
                    .send()
                    .await
                    .map_err(|e| ec2::error("create", &spec.name, "ec2:StartInstances", &e))?;
            }
            return self.wait_booted(&spec.name, &id).await;
        }
        let network = self.ensure_network().await?;
        let pool = if spec.role == Role::Master { MASTER_POOL } else { spec.pool.as_str() };
        let machine = self.settings.machine(pool);
        let image = self.image(&spec.name, pool).await?;
        let token = self
            .registry
            .update(|r| {
                r.tokens
                    .entry(spec.name.clone())
                    .or_insert_with(|| cloud::request_token(&self.cluster, &spec.name))
                    .clone()
            })
            .map_err(|e| self.error("create", &spec.name, ErrorKind::Other, e))?;
        if network.subnets.is_empty() {
            return Err(self.error(
                "create",
                &spec.name,
                ErrorKind::NotFound,
                "the cluster's network has no subnet".to_string(),
            ));
        }
        let first = cloud::host_index(&spec.name) % network.subnets.len();
        let order = (0..network.subnets.len()).map(|i| (first + i) % network.subnets.len());
        let tags = self
            .tags()?
            .with(tags::HOST, &spec.name)
            .with(tags::POOL, &spec.pool)
            .with("Name", &format!("{}-{}", self.cluster, spec.name));
        let mut last_error = None;
        for zone_index in order {
            let (zone, subnet) = &network.subnets[zone_index];
            let mut interface = InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .subnet_id(subnet)
                .set_groups(network.security_group_id.clone().map(|g| vec![g]))
                .delete_on_termination(true);
            if self.settings.connect_via == ConnectVia::Public {
                interface = interface.associate_public_ip_address(true);
            }
            let mut request = ec2
                .client
                .run_instances()
                .image_id(&image)
                .instance_type(InstanceType::from(machine.instance_type.as_str()))
                .min_count(1)
                .max_count(1)
                .client_token(format!("{token}-{zone_index}"))
                .set_key_name(network.key_name.clone())
                .network_interfaces(interface.build())
                .block_device_mappings(
                    BlockDeviceMapping::builder()
                        .device_name("/dev/xvda")
                        .ebs(
                            EbsBlockDevice::builder()
                                .volume_size(machine.root_volume_gb as i32)
                                .volume_type(VolumeType::Gp3)
                                .delete_on_termination(true)
                                .build(),
                        )
                        .build(),
                )
                .tag_specifications(tags.spec(ResourceType::Instance))
                .tag_specifications(tags.spec(ResourceType::Volume));
            if machine.spot {
                request = request.instance_market_options(
                    InstanceMarketOptionsRequest::builder().market_type(MarketType::Spot).build(),
                );
            }
            match request.send().await {
                Ok(out) => {
                    let id = out.instances().first().and_then(|i| i.instance_id()).unwrap_or_default().to_string();
                    tracing::debug!(host = %spec.name, %id, %zone, "Instance launched.");
                    return self.wait_booted(&spec.name, &id).await;
                }
                Err(e) if ec2::code(&e) == Some("InsufficientInstanceCapacity") => {
                    tracing::info!(host = %spec.name, %zone, "No capacity in this zone; trying the next.");
                    last_error = Some(ec2::error("create", &spec.name, "ec2:RunInstances", &e));
                }
                Err(e) => return Err(ec2::error("create", &spec.name, "ec2:RunInstances", &e)),
            }
        }
        Err(last_error.unwrap_or_else(|| self.error("create", &spec.name, ErrorKind::Quota, "no zone".to_string())))
    }

    /// Waits until instance `id` runs and its SSH port accepts connections; describes it.
    async fn wait_booted(&self, host: &str, id: &str) -> Result<HostDescription, ProviderError> {
        let ec2 = self.ec2().await?;
        let started = tokio::time::Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let description = loop {
            match ec2.client.describe_instances().instance_ids(id).send().await {
                Ok(out) => {
                    let instance = out.reservations().iter().flat_map(|r| r.instances()).next();
                    if let Some(instance) = instance {
                        match instance.state().and_then(|s| s.name()) {
                            Some(InstanceStateName::Running) => {
                                if let Some(d) = self.describe(instance, &ec2.region)
                                    && d.address.is_some()
                                {
                                    break d;
                                }
                            }
                            Some(InstanceStateName::Pending) => {}
                            Some(state) => {
                                return Err(self.error(
                                    "create",
                                    host,
                                    ErrorKind::Other,
                                    format!("instance {id} is {} instead of running", state.as_str()),
                                ));
                            }
                            None => {}
                        }
                    }
                }
                // Eventual consistency: a new instance may not be visible yet.
                Err(e) if ec2::code(&e) == Some("InvalidInstanceID.NotFound") => {}
                Err(e) => return Err(ec2::error("create", host, "ec2:DescribeInstances", &e)),
            }
            if started.elapsed() > BOOT_TIMEOUT {
                return Err(self.error(
                    "create",
                    host,
                    ErrorKind::Transient,
                    format!("instance {id} is not running after {BOOT_TIMEOUT:?}"),
                ));
            }
            backoff.wait().await;
        };
        let address = description.address.clone().unwrap_or_default();
        let target = format!("{address}:{}", self.hosts.ssh_port());
        let left = BOOT_TIMEOUT.saturating_sub(started.elapsed());
        cloud::wait_for_port(&target, left)
            .await
            .map_err(|e| self.error("create", host, ErrorKind::Transient, format!("no SSH: {e}")))?;
        Ok(description)
    }

    async fn destroy(&self, name: &str) -> Result<(), ProviderError> {
        let ec2 = self.ec2().await?;
        let found = instances::find(ec2, &self.cluster, Some(name)).await?;
        let ids: Vec<String> = found.iter().filter_map(|i| i.instance_id()).map(str::to_string).collect();
        let addresses: Vec<String> = found
            .iter()
            .filter_map(|i| instances::describe(i, &ec2.region, self.settings.connect_via)?.address)
            .collect();
        instances::terminate_and_wait(ec2, name, &ids, BOOT_TIMEOUT).await?;
        self.registry
            .update(|r| {
                r.tokens.remove(name);
            })
            .map_err(|e| self.error("destroy", name, ErrorKind::Other, e))?;
        self.hosts.forget(name, &addresses);
        Ok(())
    }

    /// `instance` as the engine sees it, remembering its private address.
    fn describe(&self, instance: &aws_sdk_ec2::types::Instance, region: &str) -> Option<HostDescription> {
        let description = instances::describe(instance, region, self.settings.connect_via)?;
        if let Some(private) = instance.private_ip_address() {
            self.hosts.remember_private(&description.name, private);
        }
        Some(description)
    }
}

impl Provider for AwsProvider {
    fn name(&self) -> &str {
        "aws"
    }

    fn capabilities(&self) -> ProviderCapabilities {
        ProviderCapabilities {
            create: true,
            destroy: true,
            start_stopped: true,
            max_parallel_creates: Some(self.settings.max_parallel_creates),
            transport: TransportKind::Ssh,
            cluster_resources: true,
        }
    }

    fn create_host<'a>(&'a self, spec: &'a HostSpec) -> BoxFuture<'a, Result<HostDescription, ProviderError>> {
        Box::pin(self.create(spec))
    }

    fn describe_host<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<HostDescription, ProviderError>> {
        Box::pin(async move {
            let ec2 = self.ec2().await?;
            let found = instances::find(ec2, &self.cluster, Some(name)).await?;
            found
                .iter()
                .find_map(|i| self.describe(i, &ec2.region))
                .ok_or_else(|| self.error("describe", name, ErrorKind::NotFound, "no such instance".to_string()))
        })
    }

    fn list_hosts(&self) -> BoxFuture<'_, Result<Vec<HostDescription>, ProviderError>> {
        Box::pin(async move {
            let ec2 = self.ec2().await?;
            let found = instances::find(ec2, &self.cluster, None).await?;
            Ok(found.iter().filter_map(|i| self.describe(i, &ec2.region)).collect())
        })
    }

    fn destroy_host<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(self.destroy(name))
    }

    fn prepare(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async move { self.ensure_network().await.map(|_| ()) })
    }

    fn teardown(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async move {
            let ec2 = self.ec2().await?;
            let left = instances::find(ec2, &self.cluster, None).await?;
            if !left.is_empty() {
                return Err(self.error(
                    "destroy",
                    "cluster",
                    ErrorKind::Conflict,
                    format!("{} instances of the cluster still exist; destroy them first", left.len()),
                ));
            }
            let owned = matches!(self.settings.network, NetworkSpec::Create { .. });
            network::delete(ec2, &self.cluster, owned).await?;
            *self.network.lock().await = None;
            self.registry.forget_cluster().map_err(|e| self.error("destroy", "cluster", ErrorKind::Other, e))?;
            Ok(())
        })
    }

    fn cluster_resources(&self) -> BoxFuture<'_, Result<Vec<ClusterResource>, ProviderError>> {
        Box::pin(async move { network::resources(self.ec2().await?, &self.cluster, &self.settings).await })
    }
}

impl Connector for AwsProvider {
    fn connect(&self, host: &HostDescription) -> Result<HostAccess, ProviderError> {
        self.hosts.connect(host)
    }
}
