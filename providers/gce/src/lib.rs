//! The `gce` provider: a cluster's hosts are Compute Engine instances in a VPC network gantry
//! makes (or one the file names), made with the official crate (`google-cloud-compute-v1`) and
//! reached over SSH.
//!
//! [`Provider::prepare`] makes the cluster's own resources ([`network`]): a custom-mode VPC
//! network with one subnetwork in the region, and firewall rules admitting SSH and the API only
//! from the file's CIDRs (and everything from inside the subnetwork) to instances with the
//! network tag `gantry-<cluster>`. The cluster's SSH key stays in the state dir; its public half
//! is each instance's `ssh-keys` metadata. Instances are inserted one call per host, up to
//! `[gce] max_parallel_creates` at once, spread across the zones by their index in the pool, and
//! tried in the next zone on `ZONE_RESOURCE_POOL_EXHAUSTED`. Instances and their disks carry the
//! `gantry-cluster` label (and `gantry-expires-at` with a TTL) from their insert on; network
//! resources take no labels and have deterministic names instead.
//!
//! Nothing leaks across a crash: the provider's journal (`gce.json`) records each insert's intent
//! and request id before the call (Compute answers a repeated request id with the operation it
//! already started), and resources are found by label or name, so an interrupted `up` resumes
//! without duplicates. `down` deletes the instances, then [`Provider::teardown`] deletes the
//! firewall rules, the subnetwork and the network, in that order.
//!
//! It must not depend on other providers; it only implements provision's `Provider` and
//! `Connector`.

pub mod compute;
pub mod iam;
pub mod instances;
pub mod labels;
pub mod network;
pub mod operations;
pub mod settings;
pub mod sweep;

pub use compute::Compute;
pub use settings::GceSettings;

use futures_util::future::BoxFuture;
use gantry_provision::access::{Connector, HostAccess};
use gantry_provision::cloud::{self, Backoff, CloudHosts, Registry};
use gantry_provision::cluster_file::{ClusterFile, ConnectVia, Role};
use gantry_provision::provider::{
    ClusterResource, ErrorKind, HostDescription, HostSpec, Provider, ProviderCapabilities, ProviderError, TransportKind,
};
use google_cloud_compute_v1::model::Instance;
use google_cloud_compute_v1::model::instance::Status;
use instances::Blueprint;
use labels::Labels;
use network::Network;
use settings::{MASTER_POOL, NetworkSpec};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long an inserted instance may take to run and to accept SSH connections.
pub const BOOT_TIMEOUT: Duration = cloud::BOOT_TIMEOUT;

/// The longest name Compute Engine takes for an instance.
const MAX_NAME: usize = 63;

/// What `prepare` found or made: the network and the cluster's public key.
#[derive(Debug, Clone)]
struct Prepared {
    network: Network,
    public_key: String,
}

/// Compute Engine instances over SSH. See the module docs.
#[derive(Debug)]
pub struct GceProvider {
    cluster: String,
    settings: GceSettings,
    state_dir: PathBuf,
    ssh_port: u16,
    hosts: CloudHosts,
    registry: Registry,
    client: tokio::sync::OnceCell<Compute>,
    zones: tokio::sync::OnceCell<Vec<String>>,
    prepared: tokio::sync::Mutex<Option<Prepared>>,
    images: tokio::sync::Mutex<BTreeSet<String>>,
}

impl GceProvider {
    /// The provider of a validated `gce` cluster file, keeping its journal, SSH key and
    /// known_hosts in `state_dir`. `None` when the file has no `[gce]` section.
    pub fn new(file: &ClusterFile, state_dir: &Path) -> Option<Self> {
        let settings = GceSettings::from_cluster_file(file)?;
        let hosts = CloudHosts::new("gce", file, state_dir, settings.connect_via, settings.api_port);
        Some(Self {
            cluster: file.name().to_string(),
            settings,
            state_dir: state_dir.to_path_buf(),
            ssh_port: file.ssh.port,
            hosts,
            registry: Registry::new("gce", state_dir),
            client: tokio::sync::OnceCell::new(),
            zones: tokio::sync::OnceCell::new(),
            prepared: tokio::sync::Mutex::new(None),
            images: tokio::sync::Mutex::new(BTreeSet::new()),
        })
    }

    /// The settings it was made with.
    pub fn settings(&self) -> &GceSettings {
        &self.settings
    }

    async fn compute(&self) -> Result<&Compute, ProviderError> {
        self.client
            .get_or_try_init(|| {
                Compute::connect(
                    self.settings.project.as_deref(),
                    &self.settings.region,
                    self.settings.endpoint_url.as_deref(),
                )
            })
            .await
    }

    fn error(&self, operation: &'static str, host: &str, kind: ErrorKind, message: String) -> ProviderError {
        ProviderError::Call { provider: "gce".to_string(), operation, host: host.to_string(), kind, message }
    }

    /// When the cluster expires (its first create plus the TTL), if it has a TTL.
    fn expires_at(&self) -> Result<Option<SystemTime>, ProviderError> {
        let Some(ttl) = self.settings.ttl else { return Ok(None) };
        let created = self
            .registry
            .update(|r| {
                r.created_at
                    .get_or_insert_with(|| humantime::format_rfc3339_seconds(SystemTime::now()).to_string())
                    .clone()
            })
            .map_err(|e| self.error("create", "cluster", ErrorKind::Other, e))?;
        Ok(Some(cloud::expires_at(&created, ttl)))
    }

    /// The zones hosts are spread across (checked against the region once).
    async fn zones(&self) -> Result<&Vec<String>, ProviderError> {
        let c = self.compute().await?;
        self.zones.get_or_try_init(|| network::zones(c, &self.settings)).await
    }

    /// The network and key, made if needed (serialised: parallel creates wait for one maker).
    async fn ensure_network(&self) -> Result<Prepared, ProviderError> {
        let mut cached = self.prepared.lock().await;
        if let Some(prepared) = cached.as_ref() {
            return Ok(prepared.clone());
        }
        let c = self.compute().await?;
        self.zones().await?;
        let comment = network::name(&self.cluster);
        let public_key = cloud::ensure_ssh_key(&cloud::key_file(&self.state_dir), &comment)
            .map_err(|e| self.error("prepare", "cluster", ErrorKind::Other, e))?;
        let maker = network::Maker {
            c,
            cluster: &self.cluster,
            settings: &self.settings,
            registry: &self.registry,
            expires_at: self.expires_at()?,
            ssh_port: self.ssh_port,
        };
        let prepared = Prepared { network: maker.ensure().await?, public_key: public_key.trim().to_string() };
        *cached = Some(prepared.clone());
        Ok(prepared)
    }

    async fn check_image(&self, host: &str, image: &str) -> Result<(), ProviderError> {
        let mut checked = self.images.lock().await;
        if checked.contains(image) {
            return Ok(());
        }
        instances::check_image(self.compute().await?, host, image).await?;
        checked.insert(image.to_string());
        Ok(())
    }

    async fn create(&self, spec: &HostSpec) -> Result<HostDescription, ProviderError> {
        let c = self.compute().await?;
        let existing = instances::find(c, &self.cluster, Some(&spec.name)).await?;
        if let Some(instance) = existing.first() {
            if instances::is_stopped(instance) {
                instances::start(c, &spec.name, instance).await?;
            }
            let zone = instances::zone(instance).unwrap_or_default().to_string();
            return self.wait_booted(&spec.name, &zone, instance.name.as_deref().unwrap_or_default()).await;
        }
        let name = instances::name(&self.cluster, &spec.name);
        if name.len() > MAX_NAME {
            return Err(self.error(
                "create",
                &spec.name,
                ErrorKind::Other,
                format!("instance name `{name}` is longer than {MAX_NAME} characters (hint: shorten the cluster or pool name)"),
            ));
        }
        let prepared = self.ensure_network().await?;
        let pool = if spec.role == Role::Master { MASTER_POOL } else { spec.pool.as_str() };
        let machine = self.settings.machine(pool);
        self.check_image(&spec.name, &machine.image).await?;
        let Some(subnetwork) = prepared.network.subnetwork.clone() else {
            return Err(self.error("create", &spec.name, ErrorKind::NotFound, "the cluster has no subnetwork".into()));
        };
        let token = self
            .registry
            .update(|r| {
                r.tokens
                    .entry(spec.name.clone())
                    .or_insert_with(|| cloud::request_token(&self.cluster, &spec.name))
                    .clone()
            })
            .map_err(|e| self.error("create", &spec.name, ErrorKind::Other, e))?;
        let labels = Labels::new(&self.cluster, &self.settings.labels, self.expires_at()?)
            .with(labels::HOST, &spec.name)
            .with(labels::POOL, &spec.pool);
        let tag = network::name(&self.cluster);
        let blueprint = Blueprint {
            name: &name,
            machine_type: &machine.machine_type,
            image: &machine.image,
            disk_gb: machine.disk_gb,
            spot: machine.spot,
            subnetwork: &subnetwork,
            public: self.settings.connect_via == ConnectVia::Public,
            tag: &tag,
            ssh_keys: format!("{}:{}", self.settings.ssh_user, prepared.public_key),
            labels: &labels,
        };
        let mut last_error = None;
        for zone in settings::zone_order(&spec.name, self.zones().await?) {
            let sent = c
                .instances
                .insert()
                .set_project(&c.project)
                .set_zone(&zone)
                .set_request_id(labels::request_id(&token, &zone))
                .set_body(blueprint.instance(&zone))
                .send()
                .await;
            let op = match sent {
                Ok(op) => op,
                Err(e) if e.http_status_code() == Some(409) => {
                    // Made by an earlier run whose answer was lost: it is ours if it has our labels.
                    return self.wait_booted(&spec.name, &zone, &name).await;
                }
                Err(e) => return Err(compute::error("create", &spec.name, "compute.instances.create", &e)),
            };
            match operations::finish(c, op, "create", &spec.name).await? {
                None => {
                    tracing::debug!(host = %spec.name, %zone, "Instance inserted.");
                    return self.wait_booted(&spec.name, &zone, &name).await;
                }
                Some(failure) if failure.is_capacity() => {
                    tracing::info!(host = %spec.name, %zone, "No capacity in this zone; trying the next.");
                    last_error = Some(failure.error("create", &spec.name, "compute.instances.create"));
                }
                Some(failure) => return Err(failure.error("create", &spec.name, "compute.instances.create")),
            }
        }
        Err(last_error.unwrap_or_else(|| self.error("create", &spec.name, ErrorKind::Quota, "no zone".to_string())))
    }

    /// Waits until instance `name` in `zone` runs and its SSH port accepts connections;
    /// describes it.
    async fn wait_booted(&self, host: &str, zone: &str, name: &str) -> Result<HostDescription, ProviderError> {
        let c = self.compute().await?;
        let started = tokio::time::Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let description = loop {
            match c.instances.get().set_project(&c.project).set_zone(zone).set_instance(name).send().await {
                Ok(instance) => {
                    if instance.labels.get(labels::CLUSTER) != Some(&self.cluster) {
                        return Err(self.error(
                            "create",
                            host,
                            ErrorKind::Conflict,
                            format!("instance {name} in {zone} exists but is not of cluster {}", self.cluster),
                        ));
                    }
                    match instance.status {
                        Some(Status::Running) => {
                            if let Some(d) = self.describe(&instance)
                                && d.address.is_some()
                            {
                                break d;
                            }
                        }
                        Some(Status::Provisioning | Status::Staging) | None => {}
                        Some(ref other) => {
                            return Err(self.error(
                                "create",
                                host,
                                ErrorKind::Other,
                                format!("instance {name} is {other} instead of RUNNING"),
                            ));
                        }
                    }
                }
                // Eventual consistency: a new instance may not be visible yet.
                Err(e) if compute::is_not_found(&e) => {}
                Err(e) => return Err(compute::error("create", host, "compute.instances.get", &e)),
            }
            if started.elapsed() > BOOT_TIMEOUT {
                return Err(self.error(
                    "create",
                    host,
                    ErrorKind::Transient,
                    format!("instance {name} is not running after {BOOT_TIMEOUT:?}"),
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
        let c = self.compute().await?;
        let found = instances::find(c, &self.cluster, Some(name)).await?;
        let mut addresses: Vec<String> = Vec::new();
        for instance in &found {
            addresses.extend(instances::private_address(instance).map(str::to_string));
            if let Some(d) = instances::describe(instance, &c.region, ConnectVia::Public) {
                addresses.extend(d.address);
            }
        }
        instances::delete(c, name, &found).await?;
        self.registry
            .update(|r| {
                r.tokens.remove(name);
            })
            .map_err(|e| self.error("destroy", name, ErrorKind::Other, e))?;
        self.hosts.forget(name, &addresses);
        Ok(())
    }

    /// `instance` as the engine sees it, remembering its private address.
    fn describe(&self, instance: &Instance) -> Option<HostDescription> {
        let description = instances::describe(instance, &self.settings.region, self.settings.connect_via)?;
        if let Some(private) = instances::private_address(instance) {
            self.hosts.remember_private(&description.name, private);
        }
        Some(description)
    }
}

impl Provider for GceProvider {
    fn name(&self) -> &str {
        "gce"
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
            let found = instances::find(self.compute().await?, &self.cluster, Some(name)).await?;
            found
                .iter()
                .find_map(|i| self.describe(i))
                .ok_or_else(|| self.error("describe", name, ErrorKind::NotFound, "no such instance".to_string()))
        })
    }

    fn list_hosts(&self) -> BoxFuture<'_, Result<Vec<HostDescription>, ProviderError>> {
        Box::pin(async move {
            let found = instances::find(self.compute().await?, &self.cluster, None).await?;
            Ok(found.iter().filter_map(|i| self.describe(i)).collect())
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
            let c = self.compute().await?;
            let left = instances::find(c, &self.cluster, None).await?;
            if !left.is_empty() {
                return Err(self.error(
                    "destroy",
                    "cluster",
                    ErrorKind::Conflict,
                    format!("{} instances of the cluster still exist; destroy them first", left.len()),
                ));
            }
            let owned = matches!(self.settings.network, NetworkSpec::Create { .. });
            network::delete(c, &self.cluster, owned).await?;
            *self.prepared.lock().await = None;
            self.registry.forget_cluster().map_err(|e| self.error("destroy", "cluster", ErrorKind::Other, e))?;
            Ok(())
        })
    }

    fn cluster_resources(&self) -> BoxFuture<'_, Result<Vec<ClusterResource>, ProviderError>> {
        Box::pin(async move { network::resources(self.compute().await?, &self.cluster, &self.settings).await })
    }
}

impl Connector for GceProvider {
    fn connect(&self, host: &HostDescription) -> Result<HostAccess, ProviderError> {
        self.hosts.connect(host)
    }
}
