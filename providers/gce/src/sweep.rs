//! `gantry sweep gce`: finds the resources of a project's region that carry gantry's cluster
//! label (instances) or description (networks, subnetworks, firewall rules) and deletes those of
//! clusters that expired (`gantry-expires-at` in the past) or that have no state on this machine
//! (orphans of a lost state dir), or lists them (a dry run).

use crate::compute::{self, Compute};
use crate::{instances, labels, network};
use gantry_provision::cloud::sweep::verdict;
pub use gantry_provision::cloud::sweep::{Found, Reason};
use gantry_provision::provider::ProviderError;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Every cluster with labelled (or described) resources in the region, with its verdict; `known`
/// says whether a cluster has state on this machine. Networks and firewall rules are read from
/// the first page of their lists (500 of each).
pub async fn find(c: &Compute, now: SystemTime, known: &dyn Fn(&str) -> bool) -> Result<Vec<Found>, ProviderError> {
    let mut clusters: BTreeMap<String, Found> = BTreeMap::new();
    let mut add = |cluster: &str, expires: Option<&str>, kind: &str, id: &str| {
        let found = clusters.entry(cluster.to_string()).or_insert_with(|| Found {
            cluster: cluster.to_string(),
            expires_at: None,
            resources: Vec::new(),
            reason: None,
        });
        if let Some(at) = expires.and_then(labels::expiry_rfc3339)
            && found.expires_at.as_deref().is_none_or(|e| at.as_str() < e)
        {
            found.expires_at = Some(at);
        }
        found.resources.push((kind.to_string(), id.to_string()));
    };
    for i in instances::find_by(c, &labels::has(labels::CLUSTER), "*").await? {
        if let (Some(cluster), Some(name)) = (i.labels.get(labels::CLUSTER), i.name.as_deref()) {
            add(cluster, i.labels.get(labels::EXPIRES_AT).map(String::as_str), "instance", name);
        }
    }
    let networks = c
        .networks
        .list()
        .set_project(&c.project)
        .send()
        .await
        .map_err(|e| compute::error("list", "*", "compute.networks.list", &e))?;
    for n in &networks.items {
        if let (Some((cluster, expires)), Some(name)) =
            (n.description.as_deref().and_then(labels::from_description), n.name.as_deref())
        {
            add(&cluster, expires.as_deref(), "network", name);
        }
    }
    let subnetworks = c
        .subnetworks
        .list()
        .set_project(&c.project)
        .set_region(&c.region)
        .send()
        .await
        .map_err(|e| compute::error("list", "*", "compute.subnetworks.list", &e))?;
    for s in &subnetworks.items {
        if let (Some((cluster, expires)), Some(name)) =
            (s.description.as_deref().and_then(labels::from_description), s.name.as_deref())
        {
            add(&cluster, expires.as_deref(), "subnetwork", name);
        }
    }
    let firewalls = c
        .firewalls
        .list()
        .set_project(&c.project)
        .send()
        .await
        .map_err(|e| compute::error("list", "*", "compute.firewalls.list", &e))?;
    for f in &firewalls.items {
        if let (Some((cluster, expires)), Some(name)) =
            (f.description.as_deref().and_then(labels::from_description), f.name.as_deref())
        {
            add(&cluster, expires.as_deref(), "firewall", name);
        }
    }
    let mut found: Vec<Found> = clusters.into_values().collect();
    for cluster in &mut found {
        cluster.reason = verdict(cluster.expires_at.as_deref(), now, known(&cluster.cluster));
    }
    Ok(found)
}

/// Deletes everything of `cluster` in the region: its instances (waited for), its firewall
/// rules, and its network and subnetwork when their descriptions say gantry made them for it.
pub async fn delete(c: &Compute, cluster: &str) -> Result<(), ProviderError> {
    let found = instances::find(c, cluster, None).await?;
    instances::delete(c, cluster, &found).await?;
    let name = network::name(cluster);
    let owned = match c.networks.get().set_project(&c.project).set_network(&name).send().await {
        Ok(n) => n.description.as_deref().and_then(labels::from_description).is_some_and(|(c, _)| c == cluster),
        Err(e) if compute::is_not_found(&e) => true,
        Err(e) => return Err(compute::error("destroy", cluster, "compute.networks.get", &e)),
    };
    network::delete(c, cluster, owned).await
}
