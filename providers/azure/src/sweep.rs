//! `gantry sweep azure`: finds the subscription's resource groups that carry gantry's cluster
//! tag and deletes those of clusters that expired (`gantry-expires-at` in the past) or that have
//! no state on this machine (orphans of a lost state dir), or lists them (a dry run).

use crate::arm::{self, Arm};
use crate::error;
use crate::{network, tags, vms};
use futures_util::StreamExt;
use gantry_provision::cloud::sweep::verdict;
pub use gantry_provision::cloud::sweep::{Found, Reason};
use gantry_provision::provider::ProviderError;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// The resource groups whose `gantry-cluster` tag is `cluster` (any cluster when `None`).
pub async fn groups(arm: &Arm, cluster: Option<&str>) -> Result<Vec<Value>, ProviderError> {
    let filter = match cluster {
        Some(c) => format!("tagName eq '{}' and tagValue eq '{}'", tags::CLUSTER, c.replace('\'', "''")),
        None => format!("tagName eq '{}'", tags::CLUSTER),
    };
    let mut pages = arm.resources.resource_groups_client().list(&arm.subscription).filter(filter).into_stream();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| error::sdk("list", "*", "Microsoft.Resources/subscriptions/resourceGroups/read", &e))?;
        found.extend(page.value.iter().map(|g| serde_json::to_value(g).unwrap_or(Value::Null)));
    }
    Ok(found)
}

fn name(resource: &Value) -> &str {
    resource.get("name").and_then(Value::as_str).unwrap_or_default()
}

/// Lists every cluster with a tagged resource group in the subscription, with its VMs; `known`
/// says whether a cluster has state on this machine.
pub async fn find(arm: &Arm, now: SystemTime, known: &dyn Fn(&str) -> bool) -> Result<Vec<Found>, ProviderError> {
    let mut clusters: BTreeMap<String, Found> = BTreeMap::new();
    for group in groups(arm, None).await? {
        let Some(cluster) = tags::value(group.get("tags"), tags::CLUSTER) else { continue };
        let found = clusters.entry(cluster.to_string()).or_insert_with(|| Found {
            cluster: cluster.to_string(),
            expires_at: None,
            resources: Vec::new(),
            reason: None,
        });
        if let Some(at) = tags::value(group.get("tags"), tags::EXPIRES_AT)
            && found.expires_at.as_deref().is_none_or(|e| at < e)
        {
            found.expires_at = Some(at.to_string());
        }
        found.resources.push(("resource-group".to_string(), arm::id(&group).unwrap_or_default().to_string()));
        for vm in vms::list(arm, name(&group), cluster).await? {
            found.resources.push(("virtual-machine".to_string(), arm::id(&vm).unwrap_or_default().to_string()));
        }
    }
    let mut found: Vec<Found> = clusters.into_values().collect();
    for cluster in &mut found {
        cluster.reason = verdict(cluster.expires_at.as_deref(), now, known(&cluster.cluster));
    }
    Ok(found)
}

/// Deletes everything of `cluster`: in each of its resource groups the VMs (waited for), then
/// the network and the group.
pub async fn delete(arm: &Arm, cluster: &str) -> Result<(), ProviderError> {
    for group in groups(arm, Some(cluster)).await? {
        let group = name(&group);
        for vm in vms::list(arm, group, cluster).await? {
            vms::delete(arm, group, name(&vm)).await?;
        }
        vms::delete_leftovers(arm, group, cluster).await?;
        network::delete(arm, cluster, group).await?;
    }
    Ok(())
}
