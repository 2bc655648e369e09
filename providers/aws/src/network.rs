//! The cluster's own resources: a VPC with one subnet per zone, an internet gateway and a route
//! table (for public addresses), a security group and the key pair instances authorise. Each is
//! found by its tags before it is made, made with its tags in the create call, and deleted in
//! dependency order by [`delete`], retrying while AWS still sees a dependency.

use crate::ec2::{self, Ec2};
use crate::settings::{AwsSettings, NetworkSpec, split_cidr};
use crate::tags::{self, Tags};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, ResourceType, UserIdGroupPair};
use gantry_provision::cloud::Registry;
use gantry_provision::provider::{ClusterResource, ErrorKind, ProviderError};
use std::time::Duration;

/// The ids of a cluster's network, as found or made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    /// The VPC.
    pub vpc_id: Option<String>,
    /// (zone, subnet id), in zone order.
    pub subnets: Vec<(String, String)>,
    /// The internet gateway.
    pub gateway_id: Option<String>,
    /// The route table with the default route.
    pub route_table_id: Option<String>,
    /// The security group.
    pub security_group_id: Option<String>,
    /// The key pair's name, when it exists.
    pub key_name: Option<String>,
}

/// The name of the cluster's key pair (and security group).
pub fn name(cluster: &str) -> String {
    format!("gantry-{cluster}")
}

fn call_error(action: &str, message: String) -> ProviderError {
    ProviderError::Call {
        provider: "aws".to_string(),
        operation: "prepare",
        host: "cluster".to_string(),
        kind: ErrorKind::Other,
        message: format!("{action}: {message}"),
    }
}

/// Finds the cluster's network by its tags (nothing is made).
pub async fn find(ec2: &Ec2, cluster: &str) -> Result<Network, ProviderError> {
    let c = &ec2.client;
    let mut network = Network::default();
    let by_cluster = || tags::filter(tags::CLUSTER, cluster);
    let vpcs = c
        .describe_vpcs()
        .filters(by_cluster())
        .send()
        .await
        .map_err(|e| ec2::error("prepare", "cluster", "ec2:DescribeVpcs", &e))?;
    network.vpc_id = vpcs.vpcs().first().and_then(|v| v.vpc_id()).map(str::to_string);
    let subnets = c
        .describe_subnets()
        .filters(by_cluster())
        .send()
        .await
        .map_err(|e| ec2::error("prepare", "cluster", "ec2:DescribeSubnets", &e))?;
    for subnet in subnets.subnets() {
        if let (Some(zone), Some(id)) = (subnet.availability_zone(), subnet.subnet_id()) {
            network.subnets.push((zone.to_string(), id.to_string()));
        }
    }
    network.subnets.sort();
    let gateways = c
        .describe_internet_gateways()
        .filters(by_cluster())
        .send()
        .await
        .map_err(|e| ec2::error("prepare", "cluster", "ec2:DescribeInternetGateways", &e))?;
    network.gateway_id = gateways.internet_gateways().first().and_then(|g| g.internet_gateway_id()).map(str::to_string);
    let tables = c
        .describe_route_tables()
        .filters(by_cluster())
        .send()
        .await
        .map_err(|e| ec2::error("prepare", "cluster", "ec2:DescribeRouteTables", &e))?;
    network.route_table_id = tables.route_tables().first().and_then(|t| t.route_table_id()).map(str::to_string);
    let groups = c
        .describe_security_groups()
        .filters(by_cluster())
        .send()
        .await
        .map_err(|e| ec2::error("prepare", "cluster", "ec2:DescribeSecurityGroups", &e))?;
    network.security_group_id = groups.security_groups().first().and_then(|g| g.group_id()).map(str::to_string);
    let keys = c
        .describe_key_pairs()
        .filters(by_cluster())
        .send()
        .await
        .map_err(|e| ec2::error("prepare", "cluster", "ec2:DescribeKeyPairs", &e))?;
    network.key_name = keys.key_pairs().first().and_then(|k| k.key_name()).map(str::to_string);
    Ok(network)
}

/// The zones to use: the file's, else every available zone of the region (sorted).
pub async fn zones(ec2: &Ec2, settings: &AwsSettings) -> Result<Vec<String>, ProviderError> {
    if !settings.zones.is_empty() {
        return Ok(settings.zones.clone());
    }
    let out = ec2
        .client
        .describe_availability_zones()
        .filters(Filter::builder().name("state").values("available").build())
        .send()
        .await
        .map_err(|e| ec2::error("prepare", "cluster", "ec2:DescribeAvailabilityZones", &e))?;
    let mut zones: Vec<String> =
        out.availability_zones().iter().filter_map(|z| z.zone_name()).map(str::to_string).collect();
    zones.sort();
    if zones.is_empty() {
        return Err(call_error(
            "ec2:DescribeAvailabilityZones",
            format!("region {} has no available zone", ec2.region),
        ));
    }
    Ok(zones)
}

/// Checks that the region exists (an unknown region otherwise fails as an unreachable endpoint).
pub async fn check_region(settings: &AwsSettings) -> Result<(), ProviderError> {
    // DescribeRegions answers in any region; ask one that always exists.
    let global = Ec2::connect("us-east-1", settings.endpoint_url.as_deref()).await?;
    let out = global
        .client
        .describe_regions()
        .all_regions(true)
        .send()
        .await
        .map_err(|e| ec2::error("prepare", "cluster", "ec2:DescribeRegions", &e))?;
    let known: Vec<&str> = out.regions().iter().filter_map(|r| r.region_name()).collect();
    if known.contains(&settings.region.as_str()) {
        return Ok(());
    }
    Err(ProviderError::Call {
        provider: "aws".to_string(),
        operation: "prepare",
        host: "cluster".to_string(),
        kind: ErrorKind::NotFound,
        message: format!(
            "unknown region `{}` (hint: set [aws] region to one of {})",
            settings.region,
            known.join(", ")
        ),
    })
}

/// What makes a cluster's network: the settings, the tags and the journal.
#[derive(Debug)]
pub struct Maker<'a> {
    /// The client.
    pub ec2: &'a Ec2,
    /// The cluster.
    pub cluster: &'a str,
    /// Its settings.
    pub settings: &'a AwsSettings,
    /// The tags every resource gets.
    pub tags: Tags,
    /// The journal of intents.
    pub registry: &'a Registry,
    /// The public key instances authorise (OpenSSH format).
    pub public_key: &'a str,
}

impl Maker<'_> {
    fn intent(&self, resource: &str) -> Result<(), ProviderError> {
        self.registry
            .update(|r| {
                r.resources.entry(resource.to_string()).or_insert(None);
            })
            .map_err(|e| call_error("journal", e))
    }

    fn made(&self, resource: &str, id: &str) -> Result<(), ProviderError> {
        self.registry
            .update(|r| {
                r.resources.insert(resource.to_string(), Some(id.to_string()));
            })
            .map_err(|e| call_error("journal", e))
    }

    /// Finds or makes every resource; returns their ids.
    pub async fn ensure(&self) -> Result<Network, ProviderError> {
        let c = &self.ec2.client;
        let mut network = find(self.ec2, self.cluster).await?;
        let zones = zones(self.ec2, self.settings).await?;
        let tags = |role: &str| self.tags.clone().with(tags::ROLE, role).with("Name", &name(self.cluster));
        let vpc_id = match &self.settings.network {
            NetworkSpec::Existing { vpc_id, subnet_ids } => {
                let out = c
                    .describe_subnets()
                    .set_subnet_ids(Some(subnet_ids.clone()))
                    .send()
                    .await
                    .map_err(|e| ec2::error("prepare", "cluster", "ec2:DescribeSubnets", &e))?;
                network.subnets = out
                    .subnets()
                    .iter()
                    .filter_map(|s| Some((s.availability_zone()?.to_string(), s.subnet_id()?.to_string())))
                    .collect();
                network.subnets.sort();
                vpc_id.clone()
            }
            NetworkSpec::Create { cidr } => {
                let vpc_id = match network.vpc_id.clone() {
                    Some(id) => id,
                    None => {
                        self.intent("vpc")?;
                        let out = c
                            .create_vpc()
                            .cidr_block(cidr)
                            .tag_specifications(tags("vpc").spec(ResourceType::Vpc))
                            .send()
                            .await
                            .map_err(|e| ec2::error("prepare", "cluster", "ec2:CreateVpc", &e))?;
                        let id = out.vpc().and_then(|v| v.vpc_id()).unwrap_or_default().to_string();
                        self.made("vpc", &id)?;
                        id
                    }
                };
                let cidrs = split_cidr(cidr, zones.len()).ok_or_else(|| {
                    call_error(
                        "ec2:CreateSubnet",
                        format!(
                            "{cidr} is too small for {} subnets of at least /28; widen [aws] vpc_cidr",
                            zones.len()
                        ),
                    )
                })?;
                for (zone, cidr) in zones.iter().zip(cidrs) {
                    if network.subnets.iter().any(|(z, _)| z == zone) {
                        continue;
                    }
                    let role = format!("subnet:{zone}");
                    self.intent(&role)?;
                    let out = c
                        .create_subnet()
                        .vpc_id(&vpc_id)
                        .cidr_block(cidr)
                        .availability_zone(zone)
                        .tag_specifications(tags(&role).spec(ResourceType::Subnet))
                        .send()
                        .await
                        .map_err(|e| ec2::error("prepare", "cluster", "ec2:CreateSubnet", &e))?;
                    let id = out.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_string();
                    self.made(&role, &id)?;
                    network.subnets.push((zone.clone(), id));
                }
                network.subnets.sort();
                if network.gateway_id.is_none() {
                    self.intent("internet-gateway")?;
                    let out = c
                        .create_internet_gateway()
                        .tag_specifications(tags("internet-gateway").spec(ResourceType::InternetGateway))
                        .send()
                        .await
                        .map_err(|e| ec2::error("prepare", "cluster", "ec2:CreateInternetGateway", &e))?;
                    let id =
                        out.internet_gateway().and_then(|g| g.internet_gateway_id()).unwrap_or_default().to_string();
                    self.made("internet-gateway", &id)?;
                    network.gateway_id = Some(id);
                }
                let gateway = network.gateway_id.clone().unwrap_or_default();
                let attached = c
                    .describe_internet_gateways()
                    .internet_gateway_ids(&gateway)
                    .send()
                    .await
                    .map_err(|e| ec2::error("prepare", "cluster", "ec2:DescribeInternetGateways", &e))?
                    .internet_gateways()
                    .iter()
                    .any(|g| g.attachments().iter().any(|a| a.vpc_id() == Some(vpc_id.as_str())));
                if !attached {
                    c.attach_internet_gateway()
                        .internet_gateway_id(&gateway)
                        .vpc_id(&vpc_id)
                        .send()
                        .await
                        .map_err(|e| ec2::error("prepare", "cluster", "ec2:AttachInternetGateway", &e))?;
                }
                if network.route_table_id.is_none() {
                    self.intent("route-table")?;
                    let out = c
                        .create_route_table()
                        .vpc_id(&vpc_id)
                        .tag_specifications(tags("route-table").spec(ResourceType::RouteTable))
                        .send()
                        .await
                        .map_err(|e| ec2::error("prepare", "cluster", "ec2:CreateRouteTable", &e))?;
                    let id = out.route_table().and_then(|t| t.route_table_id()).unwrap_or_default().to_string();
                    self.made("route-table", &id)?;
                    network.route_table_id = Some(id);
                }
                let table_id = network.route_table_id.clone().unwrap_or_default();
                let table = c
                    .describe_route_tables()
                    .route_table_ids(&table_id)
                    .send()
                    .await
                    .map_err(|e| ec2::error("prepare", "cluster", "ec2:DescribeRouteTables", &e))?;
                let table = table.route_tables().first();
                let has_default =
                    table.is_some_and(|t| t.routes().iter().any(|r| r.destination_cidr_block() == Some("0.0.0.0/0")));
                if !has_default {
                    c.create_route()
                        .route_table_id(&table_id)
                        .destination_cidr_block("0.0.0.0/0")
                        .gateway_id(&gateway)
                        .send()
                        .await
                        .map_err(|e| ec2::error("prepare", "cluster", "ec2:CreateRoute", &e))?;
                }
                for (_, subnet) in &network.subnets {
                    let associated =
                        table.is_some_and(|t| t.associations().iter().any(|a| a.subnet_id() == Some(subnet.as_str())));
                    if !associated {
                        c.associate_route_table()
                            .route_table_id(&table_id)
                            .subnet_id(subnet)
                            .send()
                            .await
                            .map_err(|e| ec2::error("prepare", "cluster", "ec2:AssociateRouteTable", &e))?;
                    }
                }
                vpc_id
            }
        };
        network.vpc_id = Some(vpc_id.clone());
        if network.security_group_id.is_none() {
            self.intent("security-group")?;
            let out = c
                .create_security_group()
                .group_name(name(self.cluster))
                .description(format!("gantry cluster {}", self.cluster))
                .vpc_id(&vpc_id)
                .tag_specifications(tags("security-group").spec(ResourceType::SecurityGroup))
                .send()
                .await
                .map_err(|e| ec2::error("prepare", "cluster", "ec2:CreateSecurityGroup", &e))?;
            let id = out.group_id().unwrap_or_default().to_string();
            self.made("security-group", &id)?;
            self.authorize(&id).await?;
            network.security_group_id = Some(id);
        }
        if network.key_name.is_none() {
            self.intent("key-pair")?;
            let key_name = name(self.cluster);
            match c
                .import_key_pair()
                .key_name(&key_name)
                .public_key_material(aws_smithy_types::Blob::new(self.public_key.as_bytes()))
                .tag_specifications(tags("key-pair").spec(ResourceType::KeyPair))
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if ec2::code(&e) == Some("InvalidKeyPair.Duplicate") => {
                    return Err(ProviderError::Call {
                        provider: "aws".to_string(),
                        operation: "prepare",
                        host: "cluster".to_string(),
                        kind: ErrorKind::Conflict,
                        message: format!(
                            "a key pair named {key_name} exists but is not tagged for this cluster (hint: delete it, \
                             or `gantry sweep aws` if it is left from an older cluster of this name)"
                        ),
                    });
                }
                Err(e) => return Err(ec2::error("prepare", "cluster", "ec2:ImportKeyPair", &e)),
            }
            self.made("key-pair", &key_name)?;
            network.key_name = Some(key_name);
        }
        Ok(network)
    }

    /// SSH and the API from the file's CIDRs; everything between the cluster's own instances.
    async fn authorize(&self, group: &str) -> Result<(), ProviderError> {
        let rule = |port: u16, cidrs: &[String]| {
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(i32::from(port))
                .to_port(i32::from(port))
                .set_ip_ranges(Some(cidrs.iter().map(|c| IpRange::builder().cidr_ip(c).build()).collect()))
                .build()
        };
        let internal = IpPermission::builder()
            .ip_protocol("-1")
            .user_id_group_pairs(UserIdGroupPair::builder().group_id(group).build())
            .build();
        let result = self
            .ec2
            .client
            .authorize_security_group_ingress()
            .group_id(group)
            .ip_permissions(rule(22, &self.settings.ssh_cidrs))
            .ip_permissions(rule(self.settings.api_port, &self.settings.api_cidrs))
            .ip_permissions(internal)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if ec2::code(&e) == Some("InvalidPermission.Duplicate") => Ok(()),
            Err(e) => Err(ec2::error("prepare", "cluster", "ec2:AuthorizeSecurityGroupIngress", &e)),
        }
    }
}

/// The resources a cluster has (found by tag) or would get, for `plan` and `status`.
pub async fn resources(
    ec2: &Ec2,
    cluster: &str,
    settings: &AwsSettings,
) -> Result<Vec<ClusterResource>, ProviderError> {
    let found = find(ec2, cluster).await?;
    let owned = matches!(settings.network, NetworkSpec::Create { .. });
    let mut list = Vec::new();
    let mut push = |kind: &str, name: String, id: Option<String>, owned: bool| {
        list.push(ClusterResource { kind: kind.to_string(), name, id, owned });
    };
    match &settings.network {
        NetworkSpec::Create { cidr } => push("vpc", cidr.clone(), found.vpc_id.clone(), true),
        NetworkSpec::Existing { vpc_id, .. } => push("vpc", vpc_id.clone(), Some(vpc_id.clone()), false),
    }
    if owned {
        let zones = zones(ec2, settings).await?;
        for zone in zones {
            let id = found.subnets.iter().find(|(z, _)| *z == zone).map(|(_, id)| id.clone());
            push("subnet", zone, id, true);
        }
        push("internet-gateway", name(cluster), found.gateway_id.clone(), true);
        push("route-table", "0.0.0.0/0 → internet-gateway".to_string(), found.route_table_id.clone(), true);
    }
    push("security-group", name(cluster), found.security_group_id.clone(), true);
    push("key-pair", name(cluster), found.key_name.clone(), true);
    Ok(list)
}

/// How long [`delete`] keeps retrying a resource AWS still sees a dependency of.
pub const DEPENDENCY_PATIENCE: Duration = Duration::from_secs(120);

/// Deletes the cluster's network in dependency order: security group, key pair, route table,
/// gateway, subnets, VPC (the latter four only when gantry made them, `owned`). What is already
/// gone is fine; `DependencyViolation` is retried (AWS releases a terminated instance's network
/// interface some seconds after it reports it terminated).
pub async fn delete(ec2: &Ec2, cluster: &str, owned: bool) -> Result<(), ProviderError> {
    let network = find(ec2, cluster).await?;
    let c = &ec2.client;
    if let Some(group) = &network.security_group_id {
        retry_dependency("ec2:DeleteSecurityGroup", || async {
            c.delete_security_group().group_id(group).send().await.map(|_| ())
        })
        .await?;
    }
    if let Some(key) = &network.key_name {
        c.delete_key_pair()
            .key_name(key)
            .send()
            .await
            .map_err(|e| ec2::error("destroy", "cluster", "ec2:DeleteKeyPair", &e))?;
    }
    if !owned {
        return Ok(());
    }
    if let Some(table) = &network.route_table_id {
        let out = c
            .describe_route_tables()
            .route_table_ids(table)
            .send()
            .await
            .map_err(|e| ec2::error("destroy", "cluster", "ec2:DescribeRouteTables", &e))?;
        for association in out.route_tables().iter().flat_map(|t| t.associations()) {
            if association.main() == Some(true) {
                continue;
            }
            if let Some(id) = association.route_table_association_id() {
                c.disassociate_route_table()
                    .association_id(id)
                    .send()
                    .await
                    .map_err(|e| ec2::error("destroy", "cluster", "ec2:DisassociateRouteTable", &e))?;
            }
        }
        retry_dependency("ec2:DeleteRouteTable", || async {
            c.delete_route_table().route_table_id(table).send().await.map(|_| ())
        })
        .await?;
    }
    if let Some(gateway) = &network.gateway_id {
        if let Some(vpc) = &network.vpc_id {
            match c.detach_internet_gateway().internet_gateway_id(gateway).vpc_id(vpc).send().await {
                Ok(_) => {}
                Err(e)
                    if matches!(ec2::code(&e), Some("Gateway.NotAttached" | "InvalidInternetGatewayID.NotFound")) => {}
                Err(e) => return Err(ec2::error("destroy", "cluster", "ec2:DetachInternetGateway", &e)),
            }
        }
        retry_dependency("ec2:DeleteInternetGateway", || async {
            c.delete_internet_gateway().internet_gateway_id(gateway).send().await.map(|_| ())
        })
        .await?;
    }
    for (_, subnet) in &network.subnets {
        retry_dependency("ec2:DeleteSubnet", || async { c.delete_subnet().subnet_id(subnet).send().await.map(|_| ()) })
            .await?;
    }
    if let Some(vpc) = &network.vpc_id {
        retry_dependency("ec2:DeleteVpc", || async { c.delete_vpc().vpc_id(vpc).send().await.map(|_| ()) }).await?;
    }
    Ok(())
}

/// Runs a delete (`action`, e.g. `ec2:DeleteVpc`) until it succeeds, its resource is gone
/// (`*.NotFound`), or a dependency outlives [`DEPENDENCY_PATIENCE`]; throttling is retried too.
async fn retry_dependency<F, Fut, E, R>(action: &'static str, mut call: F) -> Result<(), ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let started = tokio::time::Instant::now();
    let mut backoff = gantry_provision::cloud::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let e = match call().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let code = ec2::code(&e);
        if code.is_some_and(|c| c.ends_with(".NotFound")) {
            return Ok(());
        }
        let error = ec2::error("destroy", "cluster", action, &e);
        let again = matches!(code, Some("DependencyViolation" | "RequestLimitExceeded")) || error.is_retryable();
        if !again || started.elapsed() > DEPENDENCY_PATIENCE {
            return Err(error);
        }
        backoff.wait().await;
    }
}
