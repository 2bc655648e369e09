//! The cluster's own resources: a VPC network (custom mode) with one subnetwork in the region,
//! and three firewall rules on the network tag `gantry-<cluster>` (SSH and the API from the
//! file's CIDRs, everything from inside the subnetwork). With an existing network only the
//! rules are made. Each resource has a deterministic name, is looked up by it before it is
//! made, is made with a journaled request id, and is deleted in dependency order by [`delete`],
//! retrying while Compute still sees it in use.

use crate::compute::{self, Compute};
use crate::labels;
use crate::operations;
use crate::settings::{GceSettings, NetworkSpec};
use gantry_provision::cloud::{self, Backoff, Registry};
use gantry_provision::provider::{ClusterResource, ErrorKind, ProviderError};
use google_cloud_compute_v1::model::{self, Operation, firewall};
use std::future::Future;
use std::time::{Duration, SystemTime};

/// How long a delete waits for what still uses its resource (instances going away).
pub const DEPENDENCY_PATIENCE: Duration = Duration::from_secs(300);

/// The firewall rules, by suffix: `gantry-<cluster>-<rule>`.
pub const RULES: [&str; 3] = ["ssh", "api", "internal"];

/// The name of the cluster's network, subnetwork and network tag: `gantry-<cluster>`.
pub fn name(cluster: &str) -> String {
    format!("gantry-{cluster}")
}

/// The name of the cluster's firewall rule `rule` (one of [`RULES`]).
pub fn rule_name(cluster: &str, rule: &str) -> String {
    format!("gantry-{cluster}-{rule}")
}

/// The cluster's network as found or made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    /// The network's partial URL (`projects/p/global/networks/n`), when it exists.
    pub network: Option<String>,
    /// The subnetwork's partial URL, when it exists.
    pub subnetwork: Option<String>,
    /// The subnetwork's range.
    pub range: Option<String>,
    /// The firewall rules that exist (names).
    pub rules: Vec<String>,
}

fn prepare_error(kind: ErrorKind, message: String) -> ProviderError {
    ProviderError::Call {
        provider: "gce".to_string(),
        operation: "prepare",
        host: "cluster".to_string(),
        kind,
        message,
    }
}

/// `Some(found)`, or `None` on 404.
fn found<T>(
    result: Result<T, google_cloud_gax::error::Error>,
    operation: &'static str,
    permission: &str,
) -> Result<Option<T>, ProviderError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if compute::is_not_found(&e) => Ok(None),
        Err(e) => Err(compute::error(operation, "cluster", permission, &e)),
    }
}

/// The network and subnetwork the cluster uses: gantry's own names, or the file's.
fn names(cluster: &str, settings: &GceSettings) -> (String, String) {
    match &settings.network {
        NetworkSpec::Create { .. } => (name(cluster), name(cluster)),
        NetworkSpec::Existing { network, subnetwork } => {
            (compute::last_segment(network).to_string(), compute::last_segment(subnetwork).to_string())
        }
    }
}

/// Finds the cluster's network by its names (nothing is made).
pub async fn find(c: &Compute, cluster: &str, settings: &GceSettings) -> Result<Network, ProviderError> {
    let (network_name, subnetwork_name) = names(cluster, settings);
    let mut network = Network::default();
    let got = c.networks.get().set_project(&c.project).set_network(&network_name).send().await;
    if found(got, "prepare", "compute.networks.get")?.is_some() {
        network.network = Some(c.global("networks", &network_name));
    }
    let got =
        c.subnetworks.get().set_project(&c.project).set_region(&c.region).set_subnetwork(&subnetwork_name).send().await;
    if let Some(subnetwork) = found(got, "prepare", "compute.subnetworks.get")? {
        network.subnetwork = Some(c.subnetwork(&subnetwork_name));
        network.range = subnetwork.ip_cidr_range;
    }
    for rule in RULES {
        let rule = rule_name(cluster, rule);
        let got = c.firewalls.get().set_project(&c.project).set_firewall(&rule).send().await;
        if found(got, "prepare", "compute.firewalls.get")?.is_some() {
            network.rules.push(rule);
        }
    }
    Ok(network)
}

/// The zones to use: the file's (checked to be zones of the region), else every zone of the
/// region that is UP, sorted. An unknown region or zone is [`ErrorKind::NotFound`] with where to
/// look.
pub async fn zones(c: &Compute, settings: &GceSettings) -> Result<Vec<String>, ProviderError> {
    let region = match c.regions.get().set_project(&c.project).set_region(&c.region).send().await {
        Ok(region) => region,
        Err(e) if compute::is_not_found(&e) => {
            return Err(prepare_error(
                ErrorKind::NotFound,
                format!(
                    "unknown region `{}` in project {} (hint: `gcloud compute regions list` shows the regions; set \
                     [gce] region to one of them)",
                    c.region, c.project
                ),
            ));
        }
        Err(e) => return Err(compute::error("prepare", "cluster", "compute.regions.get", &e)),
    };
    let of_region: Vec<String> = region.zones.iter().map(|z| compute::last_segment(z).to_string()).collect();
    if !settings.zones.is_empty() {
        if let Some(bad) = settings.zones.iter().find(|z| !of_region.contains(z)) {
            return Err(prepare_error(
                ErrorKind::NotFound,
                format!(
                    "unknown zone `{bad}` in region {} (hint: `gcloud compute zones list --filter=region:{}` shows \
                     its zones: {})",
                    c.region,
                    c.region,
                    of_region.join(", ")
                ),
            ));
        }
        return Ok(settings.zones.clone());
    }
    let listed = c
        .zones
        .list()
        .set_project(&c.project)
        .send()
        .await
        .map_err(|e| compute::error("prepare", "cluster", "compute.zones.list", &e))?;
    let mut up: Vec<String> = listed
        .items
        .iter()
        .filter(|z| z.status == Some(model::zone::Status::Up))
        .filter_map(|z| z.name.clone())
        .filter(|z| of_region.contains(z))
        .collect();
    up.sort();
    if up.is_empty() {
        return Err(prepare_error(ErrorKind::Quota, format!("region {} has no zone that is up", c.region)));
    }
    Ok(up)
}

/// What makes a cluster's network: the settings, the journal and the facts recorded in the
/// resources' descriptions.
#[derive(Debug)]
pub struct Maker<'a> {
    /// The clients.
    pub c: &'a Compute,
    /// The cluster.
    pub cluster: &'a str,
    /// Its settings.
    pub settings: &'a GceSettings,
    /// The journal of intents and request ids.
    pub registry: &'a Registry,
    /// When the cluster expires, recorded in each description.
    pub expires_at: Option<SystemTime>,
    /// The port SSH is reached at.
    pub ssh_port: u16,
}

impl Maker<'_> {
    fn journal(&self, change: impl FnOnce(&mut cloud::Records)) -> Result<(), ProviderError> {
        self.registry.update(change).map_err(|e| prepare_error(ErrorKind::Other, format!("journal: {e}")))
    }

    /// Journals the intent to make `resource` and its request id, sends the insert `send` makes
    /// with that id and waits for it; something of that name made meanwhile is fine.
    async fn insert<F, Fut>(&self, resource: &str, name: &str, permission: &str, send: F) -> Result<(), ProviderError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<Operation, google_cloud_gax::error::Error>>,
    {
        let key = format!("resource:{resource}");
        let mut token = String::new();
        self.journal(|r| {
            token = r.tokens.entry(key.clone()).or_insert_with(|| cloud::request_token(self.cluster, &key)).clone();
            r.resources.entry(resource.to_string()).or_insert(None);
        })?;
        let op = match send(labels::request_id(&token, resource)).await {
            Ok(op) => op,
            Err(e) if compute::reason(&e) == Some("alreadyExists") || e.http_status_code() == Some(409) => {
                return self.journal(|r| {
                    r.resources.insert(resource.to_string(), Some(name.to_string()));
                });
            }
            Err(e) => return Err(compute::error("prepare", "cluster", permission, &e)),
        };
        match operations::finish(self.c, op, "prepare", "cluster").await? {
            None => {}
            Some(f) if f.kind() == ErrorKind::Conflict => {}
            Some(f) => return Err(f.error("prepare", "cluster", permission)),
        }
        tracing::debug!(cluster = %self.cluster, %resource, %name, "Network resource made.");
        self.journal(|r| {
            r.resources.insert(resource.to_string(), Some(name.to_string()));
        })
    }

    /// Finds or makes every resource; returns them.
    pub async fn ensure(&self) -> Result<Network, ProviderError> {
        let c = self.c;
        let mut network = find(c, self.cluster, self.settings).await?;
        let (network_name, subnetwork_name) = names(self.cluster, self.settings);
        let description = labels::description(self.cluster, self.expires_at);
        match &self.settings.network {
            NetworkSpec::Create { cidr } => {
                if network.network.is_none() {
                    let body = model::Network::new()
                        .set_name(&network_name)
                        .set_auto_create_subnetworks(false)
                        .set_description(&description);
                    self.insert("network", &network_name, "compute.networks.create", |id| {
                        c.networks.insert().set_project(&c.project).set_request_id(id).set_body(body).send()
                    })
                    .await?;
                    network.network = Some(c.global("networks", &network_name));
                }
                if network.subnetwork.is_none() {
                    let body = model::Subnetwork::new()
                        .set_name(&subnetwork_name)
                        .set_network(c.global("networks", &network_name))
                        .set_ip_cidr_range(cidr)
                        .set_region(&c.region)
                        .set_description(&description);
                    self.insert("subnetwork", &subnetwork_name, "compute.subnetworks.create", |id| {
                        c.subnetworks
                            .insert()
                            .set_project(&c.project)
                            .set_region(&c.region)
                            .set_request_id(id)
                            .set_body(body)
                            .send()
                    })
                    .await?;
                    network.subnetwork = Some(c.subnetwork(&subnetwork_name));
                    network.range = Some(cidr.clone());
                }
            }
            NetworkSpec::Existing { network: given, subnetwork } => {
                if network.network.is_none() || network.subnetwork.is_none() {
                    return Err(prepare_error(
                        ErrorKind::NotFound,
                        format!(
                            "the existing network `{given}` with subnetwork `{subnetwork}` in region {} is not in \
                             project {} (hint: `gcloud compute networks subnets list --regions {}` lists them; fix \
                             [gce] network and subnetwork, or remove both to let gantry make one)",
                            c.region, c.project, c.region
                        ),
                    ));
                }
            }
        }
        let range = network.range.clone().unwrap_or_default();
        let tag = name(self.cluster);
        let network_url = c.global("networks", &network_name);
        for rule in RULES {
            let rule_name = rule_name(self.cluster, rule);
            if network.rules.contains(&rule_name) {
                continue;
            }
            let (allowed, sources) = match rule {
                "ssh" => (
                    firewall::Allowed::new().set_ip_protocol("tcp").set_ports([self.ssh_port.to_string()]),
                    self.settings.ssh_cidrs.clone(),
                ),
                "api" => (
                    firewall::Allowed::new().set_ip_protocol("tcp").set_ports([self.settings.api_port.to_string()]),
                    self.settings.api_cidrs.clone(),
                ),
                _ => (firewall::Allowed::new().set_ip_protocol("all"), vec![range.clone()]),
            };
            let body = model::Firewall::new()
                .set_name(&rule_name)
                .set_network(&network_url)
                .set_direction(firewall::Direction::Ingress)
                .set_allowed([allowed])
                .set_source_ranges(sources)
                .set_target_tags([tag.clone()])
                .set_description(&description);
            self.insert(&format!("firewall:{rule}"), &rule_name, "compute.firewalls.create", |id| {
                c.firewalls.insert().set_project(&c.project).set_request_id(id).set_body(body).send()
            })
            .await?;
            network.rules.push(rule_name);
        }
        Ok(network)
    }
}

/// Runs a delete until its resource is gone (404 included), retrying while Compute still sees
/// it in use or not ready, for at most [`DEPENDENCY_PATIENCE`].
async fn delete_retrying<F, Fut>(c: &Compute, permission: &str, mut send: F) -> Result<(), ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Operation, google_cloud_gax::error::Error>>,
{
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let error = match send().await {
            Ok(op) => match operations::finish(c, op, "destroy", "cluster").await? {
                None => return Ok(()),
                Some(f) if f.kind() == ErrorKind::NotFound => return Ok(()),
                Some(f) => {
                    let transient = f.kind() == ErrorKind::Transient;
                    (f.error("destroy", "cluster", permission), transient)
                }
            },
            Err(e) if compute::is_not_found(&e) => return Ok(()),
            Err(e) => {
                let error = compute::error("destroy", "cluster", permission, &e);
                let transient = error.is_retryable();
                (error, transient)
            }
        };
        let (error, transient) = error;
        if !transient || started.elapsed() > DEPENDENCY_PATIENCE {
            return Err(error);
        }
        backoff.wait().await;
    }
}

/// Deletes the cluster's firewall rules, then (when gantry made them: `owned`) its subnetwork
/// and network. What is already gone is fine.
pub async fn delete(c: &Compute, cluster: &str, owned: bool) -> Result<(), ProviderError> {
    for rule in RULES {
        let rule = rule_name(cluster, rule);
        delete_retrying(c, "compute.firewalls.delete", || {
            c.firewalls.delete().set_project(&c.project).set_firewall(&rule).send()
        })
        .await?;
    }
    if !owned {
        return Ok(());
    }
    let name = name(cluster);
    delete_retrying(c, "compute.subnetworks.delete", || {
        c.subnetworks.delete().set_project(&c.project).set_region(&c.region).set_subnetwork(&name).send()
    })
    .await?;
    delete_retrying(c, "compute.networks.delete", || {
        c.networks.delete().set_project(&c.project).set_network(&name).send()
    })
    .await
}

/// The cluster's resources as they are now (`id: None` for those that do not exist).
pub async fn resources(
    c: &Compute,
    cluster: &str,
    settings: &GceSettings,
) -> Result<Vec<ClusterResource>, ProviderError> {
    let network = find(c, cluster, settings).await?;
    let owned = matches!(settings.network, NetworkSpec::Create { .. });
    let (network_name, subnetwork_name) = names(cluster, settings);
    let mut list = vec![
        ClusterResource { kind: "network".to_string(), name: network_name, id: network.network.clone(), owned },
        ClusterResource {
            kind: "subnetwork".to_string(),
            name: subnetwork_name,
            id: network.subnetwork.clone(),
            owned,
        },
    ];
    for rule in RULES {
        let rule = rule_name(cluster, rule);
        let id = network.rules.contains(&rule).then(|| c.global("firewalls", &rule));
        list.push(ClusterResource { kind: "firewall".to_string(), name: rule, id, owned: true });
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_per_cluster() {
        assert_eq!(name("prod"), "gantry-prod");
        assert_eq!(RULES.map(|r| rule_name("prod", r)), ["gantry-prod-ssh", "gantry-prod-api", "gantry-prod-internal"]);
    }
}
