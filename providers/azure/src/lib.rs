//! The `azure` provider: a cluster's hosts are virtual machines in a resource group gantry makes,
//! made with the official management crates (`azure_mgmt_compute`, `azure_mgmt_network`,
//! `azure_mgmt_resources` on `azure_core`, credentials from `azure_identity`'s standard chain)
//! and reached over SSH.
//!
//! [`Provider::prepare`] makes the cluster's own resources ([`network`]): the resource group
//! (`gantry-<cluster>` unless the file names one), a network security group admitting SSH and
//! the API only from the file's CIDRs, and a virtual network whose one subnet spans `vnet_cidr`.
//! Each host is a VM `<host>` with a NIC `<host>-nic` (and a public IP `<host>-ip` with
//! `connect_via = "public"`), spread across `[azure] zones` by its index in the pool and tried in
//! the next zone when one has no capacity. Every resource carries the `gantry-cluster` tag (and
//! `gantry-expires-at` with a TTL) from its create call on.
//!
//! Names are deterministic, which is Azure's idempotency (a PUT creates or updates): the journal
//! ([`gantry_provision::cloud::Registry`]) records each create's intent before the call, and an
//! interrupted `up` finds by name and tag what it made and carries on. `down` deletes the VMs,
//! then [`Provider::teardown`] the network and the resource group, last.
//!
//! It must not depend on other providers; it only implements provision's `Provider` and
//! `Connector`.

pub mod arm;
pub mod credential;
pub mod error;
pub mod iam;
pub mod network;
pub mod settings;
pub mod sweep;
pub mod tags;
pub mod vms;

pub use arm::Arm;
pub use settings::AzureSettings;

use futures_util::future::BoxFuture;
use gantry_provision::access::{Connector, HostAccess};
use gantry_provision::cloud::{self, Backoff, CloudHosts, Registry};
use gantry_provision::cluster_file::{ClusterFile, ConnectVia, Role};
use gantry_provision::provider::{
    ClusterResource, ErrorKind, HostDescription, HostSpec, HostState, Provider, ProviderCapabilities, ProviderError,
    TransportKind,
};
use network::Network;
use serde_json::Value;
use settings::MASTER_POOL;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tags::Tags;

/// How long a created VM may take to run and to accept SSH connections.
pub const BOOT_TIMEOUT: Duration = cloud::BOOT_TIMEOUT;

/// Azure VMs over SSH. See the module docs.
#[derive(Debug)]
pub struct AzureProvider {
    cluster: String,
    settings: AzureSettings,
    state_dir: PathBuf,
    hosts: CloudHosts,
    registry: Registry,
    client: tokio::sync::OnceCell<Arm>,
    network: tokio::sync::Mutex<Option<Network>>,
}

impl AzureProvider {
    /// The provider of a validated `azure` cluster file, keeping its journal, SSH key and
    /// known_hosts in `state_dir`. `None` when the file has no `[azure]` section.
    pub fn new(file: &ClusterFile, state_dir: &Path) -> Option<Self> {
        let settings = AzureSettings::from_cluster_file(file)?;
        let hosts = CloudHosts::new("azure", file, state_dir, settings.connect_via, settings.api_port);
        Some(Self {
            cluster: file.name().to_string(),
            settings,
            state_dir: state_dir.to_path_buf(),
            hosts,
            registry: Registry::new("azure", state_dir),
            client: tokio::sync::OnceCell::new(),
            network: tokio::sync::Mutex::new(None),
        })
    }

    /// The settings it was made with.
    pub fn settings(&self) -> &AzureSettings {
        &self.settings
    }

    async fn arm(&self) -> Result<&Arm, ProviderError> {
        self.client
            .get_or_try_init(|| {
                Arm::connect(self.settings.subscription_id.as_deref(), self.settings.endpoint_url.as_deref())
            })
            .await
    }

    fn group(&self) -> &str {
        &self.settings.resource_group
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
                    .map_err(|e| error::other("create", "cluster", ErrorKind::Other, e))?;
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
        let maker = network::Maker {
            arm: self.arm().await?,
            cluster: &self.cluster,
            settings: &self.settings,
            tags: self.tags()?,
            registry: &self.registry,
        };
        let network = maker.ensure().await?;
        *cached = Some(network.clone());
        Ok(network)
    }

    /// The VM of `host` when it is this cluster's; a VM of that name of another cluster is a
    /// conflict.
    async fn own_vm(&self, operation: &'static str, host: &str) -> Result<Option<Value>, ProviderError> {
        let Some(vm) = vms::get(self.arm().await?, self.group(), host).await? else { return Ok(None) };
        match tags::value(vm.get("tags"), tags::CLUSTER) {
            Some(owner) if owner == self.cluster => Ok(Some(vm)),
            owner => Err(error::other(
                operation,
                host,
                ErrorKind::Conflict,
                format!(
                    "VM {host} in resource group {} belongs to {} (hint: give this cluster its own [azure] \
                     resource_group)",
                    self.group(),
                    owner.map_or_else(|| "no gantry cluster".to_string(), |o| format!("cluster {o}"))
                ),
            )),
        }
    }

    async fn create(&self, spec: &HostSpec) -> Result<HostDescription, ProviderError> {
        let arm = self.arm().await?;
        let host = spec.name.as_str();
        if let Some(vm) = self.own_vm("create", host).await? {
            match (arm::provisioning_state(&vm), vms::power_state(&vm)) {
                (Some("Failed" | "Deleting"), _) => {
                    tracing::info!(%host, "The VM failed or is going; deleting it to make it again.");
                    vms::delete(arm, self.group(), host).await?;
                }
                (_, Some("stopped" | "stopping" | "deallocated" | "deallocating")) => {
                    tracing::info!(%host, "Starting the stopped VM.");
                    let call =
                        arm.compute.virtual_machines_client().start(self.group(), host, &arm.subscription).send();
                    arm.delete(call).await.map_err(|f| {
                        error::provider_error("create", host, "Microsoft.Compute/virtualMachines/start/action", &f)
                    })?;
                    return self.wait_booted(host).await;
                }
                _ => return self.wait_booted(host).await,
            }
        }
        let network = self.ensure_network().await?;
        let pool = if spec.role == Role::Master { MASTER_POOL } else { spec.pool.as_str() };
        let machine = self.settings.machine(pool);
        let comment = format!("gantry-{}", self.cluster);
        let public_key = cloud::ensure_ssh_key(&cloud::key_file(&self.state_dir), &comment)
            .map_err(|e| error::other("create", host, ErrorKind::Other, e))?;
        self.registry
            .update(|r| {
                r.tokens.entry(host.to_string()).or_insert_with(|| host.to_string());
            })
            .map_err(|e| error::other("create", host, ErrorKind::Other, e))?;
        let tags = self.tags()?.with(tags::HOST, host).with(tags::POOL, &spec.pool);
        let location = self.settings.location.as_str();
        let public_ip = match self.settings.connect_via {
            ConnectVia::Public => Some(vms::ensure_ip(arm, &network.group, host, location, &tags).await?),
            ConnectVia::Private => None,
        };
        let nic = vms::nic_body(location, &tags, &network.subnet_id, &network.security_group_id, public_ip.as_deref());
        let zones = self.settings.zones_for(cloud::host_index(host));
        let mut last = None;
        for (i, zone) in zones.iter().enumerate() {
            let nic_id = vms::ensure_nic(arm, &network.group, host, nic.clone()).await?;
            let request = vms::VmRequest {
                host,
                location,
                zone: zone.as_deref(),
                machine: &machine,
                admin_user: &self.settings.admin_user,
                public_key: &public_key,
                nic_id: &nic_id,
                tags: &tags,
            };
            let action = "Microsoft.Compute/virtualMachines/write";
            match vms::create(arm, &network.group, host, vms::vm_body(&request)).await {
                Ok(()) => return self.wait_booted(host).await,
                Err(Ok(failure)) if failure.is_zonal() && i + 1 < zones.len() => {
                    tracing::info!(%host, zone = ?zone, code = %failure.code, "No capacity in this zone; trying the next.");
                    vms::delete(arm, &network.group, host).await?;
                    last = Some(error::provider_error("create", host, action, &failure));
                }
                Err(Ok(failure)) => return Err(error::provider_error("create", host, action, &failure)),
                Err(Err(e)) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| error::other("create", host, ErrorKind::Quota, "no zone to try".to_string())))
    }

    /// Waits until VM `host` runs, has its address and accepts SSH connections; describes it.
    async fn wait_booted(&self, host: &str) -> Result<HostDescription, ProviderError> {
        let arm = self.arm().await?;
        let started = tokio::time::Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let description = loop {
            if let Some(vm) = vms::get(arm, self.group(), host).await? {
                if arm::provisioning_state(&vm) == Some("Failed") {
                    return Err(error::other(
                        "create",
                        host,
                        ErrorKind::Other,
                        format!("VM {host} failed to provision: {}", statuses(&vm)),
                    ));
                }
                if vms::state(&vm) == HostState::Running {
                    let addresses = vms::addresses(arm, self.group(), host).await?;
                    if let Some(d) = self.describe(&vm, &addresses)
                        && d.address.is_some()
                    {
                        break d;
                    }
                }
            }
            if started.elapsed() > BOOT_TIMEOUT {
                return Err(error::other(
                    "create",
                    host,
                    ErrorKind::Transient,
                    format!("VM {host} is not running after {BOOT_TIMEOUT:?}"),
                ));
            }
            backoff.wait().await;
        };
        let address = description.address.clone().unwrap_or_default();
        let target = format!("{address}:{}", self.hosts.ssh_port());
        let left = BOOT_TIMEOUT.saturating_sub(started.elapsed());
        cloud::wait_for_port(&target, left)
            .await
            .map_err(|e| error::other("create", host, ErrorKind::Transient, format!("no SSH: {e}")))?;
        Ok(description)
    }

    async fn destroy(&self, host: &str) -> Result<(), ProviderError> {
        let arm = self.arm().await?;
        self.own_vm("destroy", host).await?;
        let addresses = vms::addresses(arm, self.group(), host).await?;
        vms::delete(arm, self.group(), host).await?;
        self.registry
            .update(|r| {
                r.tokens.remove(host);
            })
            .map_err(|e| error::other("destroy", host, ErrorKind::Other, e))?;
        let known: Vec<String> = [addresses.private, addresses.public].into_iter().flatten().collect();
        self.hosts.forget(host, &known);
        Ok(())
    }

    /// `vm` as the engine sees it, remembering its private address.
    fn describe(&self, vm: &Value, addresses: &vms::Addresses) -> Option<HostDescription> {
        let description = vms::describe(vm, addresses, self.settings.connect_via)?;
        if let Some(private) = &addresses.private {
            self.hosts.remember_private(&description.name, private);
        }
        Some(description)
    }
}

/// The instance view's status messages of a VM (what Azure says went wrong).
fn statuses(vm: &Value) -> String {
    let list = vm.pointer("/properties/instanceView/statuses").and_then(Value::as_array);
    let parts: Vec<String> = list
        .into_iter()
        .flatten()
        .map(|s| {
            let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            [text("code"), text("message")].into_iter().filter(|t| !t.is_empty()).collect::<Vec<_>>().join(": ")
        })
        .collect();
    if parts.is_empty() { "no detail".to_string() } else { parts.join("; ") }
}

impl Provider for AzureProvider {
    fn name(&self) -> &str {
        "azure"
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
            let not_found = || error::other("describe", name, ErrorKind::NotFound, "no such VM".to_string());
            let vm = self.own_vm("describe", name).await?.ok_or_else(not_found)?;
            let addresses = vms::addresses(self.arm().await?, self.group(), name).await?;
            self.describe(&vm, &addresses).ok_or_else(not_found)
        })
    }

    fn list_hosts(&self) -> BoxFuture<'_, Result<Vec<HostDescription>, ProviderError>> {
        Box::pin(async move {
            let arm = self.arm().await?;
            let found = vms::list(arm, self.group(), &self.cluster).await?;
            if found.is_empty() {
                return Ok(Vec::new());
            }
            let addresses = vms::all_addresses(arm, self.group()).await?;
            Ok(found
                .iter()
                .filter_map(|vm| {
                    let host = tags::value(vm.get("tags"), tags::HOST)?;
                    self.describe(vm, &addresses.get(host).cloned().unwrap_or_default())
                })
                .collect())
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
            let arm = self.arm().await?;
            let left = vms::list(arm, self.group(), &self.cluster).await?;
            if !left.is_empty() {
                return Err(error::other(
                    "destroy",
                    "cluster",
                    ErrorKind::Conflict,
                    format!("{} VMs of the cluster still exist; destroy them first", left.len()),
                ));
            }
            let mut cached = self.network.lock().await;
            vms::delete_leftovers(arm, self.group(), &self.cluster).await?;
            network::delete(arm, &self.cluster, self.group()).await?;
            *cached = None;
            self.registry.forget_cluster().map_err(|e| error::other("destroy", "cluster", ErrorKind::Other, e))?;
            Ok(())
        })
    }

    fn cluster_resources(&self) -> BoxFuture<'_, Result<Vec<ClusterResource>, ProviderError>> {
        Box::pin(async move { network::resources(self.arm().await?, &self.cluster, self.group()).await })
    }
}

impl Connector for AzureProvider {
    fn connect(&self, host: &HostDescription) -> Result<HostAccess, ProviderError> {
        self.hosts.connect(host)
    }
}
