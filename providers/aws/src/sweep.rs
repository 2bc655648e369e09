//! `gantry sweep aws`: finds the resources of a region that carry gantry's cluster tag and
//! deletes those of clusters that expired (`gantry:expires-at` in the past) or that have no state
//! on this machine (orphans of a lost state dir), or lists them (a dry run).

use crate::ec2::{self, Ec2};
use crate::{instances, network, tags};
use gantry_provision::cloud::sweep::verdict;
pub use gantry_provision::cloud::sweep::{Found, Reason};
use gantry_provision::provider::ProviderError;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Lists every cluster with tagged resources in the region; `known` says whether a cluster has
/// state on this machine.
pub async fn find(ec2: &Ec2, now: SystemTime, known: &dyn Fn(&str) -> bool) -> Result<Vec<Found>, ProviderError> {
    let mut clusters: BTreeMap<String, Found> = BTreeMap::new();
    let mut add = |cluster: Option<&str>, expires: Option<&str>, kind: &str, id: Option<&str>| {
        let (Some(cluster), Some(id)) = (cluster, id) else { return };
        let found = clusters.entry(cluster.to_string()).or_insert_with(|| Found {
            cluster: cluster.to_string(),
            expires_at: None,
            resources: Vec::new(),
            reason: None,
        });
        if let Some(at) = expires
            && found.expires_at.as_deref().is_none_or(|e| at < e)
        {
            found.expires_at = Some(at.to_string());
        }
        found.resources.push((kind.to_string(), id.to_string()));
    };
    let c = &ec2.client;
    let mut pages = c.describe_instances().filters(tags::has(tags::CLUSTER)).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| ec2::error("list", "*", "ec2:DescribeInstances", &e))?;
        for i in page.reservations().iter().flat_map(|r| r.instances()) {
            if matches!(i.state().and_then(|s| s.name()), Some(aws_sdk_ec2::types::InstanceStateName::Terminated)) {
                continue;
            }
            add(
                tags::value(i.tags(), tags::CLUSTER),
                tags::value(i.tags(), tags::EXPIRES_AT),
                "instance",
                i.instance_id(),
            );
        }
    }
    let vpcs = c
        .describe_vpcs()
        .filters(tags::has(tags::CLUSTER))
        .send()
        .await
        .map_err(|e| ec2::error("list", "*", "ec2:DescribeVpcs", &e))?;
    for v in vpcs.vpcs() {
        add(tags::value(v.tags(), tags::CLUSTER), tags::value(v.tags(), tags::EXPIRES_AT), "vpc", v.vpc_id());
    }
    let subnets = c
        .describe_subnets()
        .filters(tags::has(tags::CLUSTER))
        .send()
        .await
        .map_err(|e| ec2::error("list", "*", "ec2:DescribeSubnets", &e))?;
    for s in subnets.subnets() {
        add(tags::value(s.tags(), tags::CLUSTER), tags::value(s.tags(), tags::EXPIRES_AT), "subnet", s.subnet_id());
    }
    let gateways = c
        .describe_internet_gateways()
        .filters(tags::has(tags::CLUSTER))
        .send()
        .await
        .map_err(|e| ec2::error("list", "*", "ec2:DescribeInternetGateways", &e))?;
    for g in gateways.internet_gateways() {
        add(
            tags::value(g.tags(), tags::CLUSTER),
            tags::value(g.tags(), tags::EXPIRES_AT),
            "internet-gateway",
            g.internet_gateway_id(),
        );
    }
    let tables = c
        .describe_route_tables()
        .filters(tags::has(tags::CLUSTER))
        .send()
        .await
        .map_err(|e| ec2::error("list", "*", "ec2:DescribeRouteTables", &e))?;
    for t in tables.route_tables() {
        add(
            tags::value(t.tags(), tags::CLUSTER),
            tags::value(t.tags(), tags::EXPIRES_AT),
            "route-table",
            t.route_table_id(),
        );
    }
    let groups = c
        .describe_security_groups()
        .filters(tags::has(tags::CLUSTER))
        .send()
        .await
        .map_err(|e| ec2::error("list", "*", "ec2:DescribeSecurityGroups", &e))?;
    for g in groups.security_groups() {
        add(
            tags::value(g.tags(), tags::CLUSTER),
            tags::value(g.tags(), tags::EXPIRES_AT),
            "security-group",
            g.group_id(),
        );
    }
    let keys = c
        .describe_key_pairs()
        .filters(tags::has(tags::CLUSTER))
        .send()
        .await
        .map_err(|e| ec2::error("list", "*", "ec2:DescribeKeyPairs", &e))?;
    for k in keys.key_pairs() {
        add(tags::value(k.tags(), tags::CLUSTER), tags::value(k.tags(), tags::EXPIRES_AT), "key-pair", k.key_name());
    }
    let mut found: Vec<Found> = clusters.into_values().collect();
    for cluster in &mut found {
        cluster.reason = verdict(cluster.expires_at.as_deref(), now, known(&cluster.cluster));
    }
    Ok(found)
}

/// Deletes everything of `cluster`: its instances (waited for), then its network.
pub async fn delete(ec2: &Ec2, cluster: &str) -> Result<(), ProviderError> {
    let found = instances::find(ec2, cluster, None).await?;
    let ids: Vec<String> = found.iter().filter_map(|i| i.instance_id()).map(str::to_string).collect();
    instances::terminate_and_wait(ec2, cluster, &ids, crate::BOOT_TIMEOUT).await?;
    network::delete(ec2, cluster, true).await
}
