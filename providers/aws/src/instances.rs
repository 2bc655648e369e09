//! The cluster's instances: found by tag, launched with an idempotency token and every tag in the
//! call, terminated and waited for.

use crate::ec2::{self, Ec2};
use crate::tags;
use aws_sdk_ec2::types::{Instance, InstanceStateName};
use gantry_provision::cloud::Backoff;
use gantry_provision::cluster_file::{ConnectVia, ImageRef};
use gantry_provision::provider::{ErrorKind, HostDescription, HostState, ProviderError};
use std::collections::BTreeMap;
use std::time::Duration;

/// The instances of `cluster` (every one, or those of `host`) that are not terminated.
pub async fn find(ec2: &Ec2, cluster: &str, host: Option<&str>) -> Result<Vec<Instance>, ProviderError> {
    let mut request = ec2.client.describe_instances().filters(tags::filter(tags::CLUSTER, cluster)).filters(
        aws_sdk_ec2::types::Filter::builder()
            .name("instance-state-name")
            .values("pending")
            .values("running")
            .values("stopping")
            .values("stopped")
            .build(),
    );
    if let Some(host) = host {
        request = request.filters(tags::filter(tags::HOST, host));
    }
    let mut pages = request.into_paginator().send();
    let mut instances = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| ec2::error("list", host.unwrap_or("*"), "ec2:DescribeInstances", &e))?;
        for reservation in page.reservations() {
            instances.extend(reservation.instances().iter().cloned());
        }
    }
    Ok(instances)
}

/// An instance as the engine sees it.
pub fn describe(instance: &Instance, region: &str, via: ConnectVia) -> Option<HostDescription> {
    let name = tags::value(instance.tags(), tags::HOST)?.to_string();
    let state = match instance.state().and_then(|s| s.name()) {
        Some(InstanceStateName::Running) => HostState::Running,
        Some(InstanceStateName::Pending) => HostState::Pending,
        _ => HostState::Stopped,
    };
    let address = match via {
        ConnectVia::Private => instance.private_ip_address(),
        ConnectVia::Public => instance.public_ip_address(),
    };
    let mut attributes =
        BTreeMap::from([("provider".to_string(), "aws".to_string()), ("region".to_string(), region.to_string())]);
    if let Some(zone) = instance.placement().and_then(|p| p.availability_zone()) {
        attributes.insert("zone".to_string(), zone.to_string());
    }
    if let Some(kind) = instance.instance_type() {
        attributes.insert("machine_type".to_string(), kind.as_str().to_string());
    }
    Some(HostDescription { name, state, address: address.map(str::to_string), attributes })
}

/// The AMI id of `image`: an id is checked to exist (EC2 emulators accept unknown ids at launch;
/// AWS refuses them later and less clearly); a search takes the newest match.
pub async fn resolve_image(ec2: &Ec2, host: &str, image: &ImageRef) -> Result<String, ProviderError> {
    let not_found = |message: String| ProviderError::Call {
        provider: "aws".to_string(),
        operation: "create",
        host: host.to_string(),
        kind: ErrorKind::NotFound,
        message,
    };
    match image {
        ImageRef::Marketplace { .. } => {
            Err(not_found(format!("{image} is an Azure marketplace image, not an AMI (validation refuses it)")))
        }
        ImageRef::Id(id) => {
            let out = match ec2.client.describe_images().image_ids(id).send().await {
                Ok(out) => out,
                Err(e) if matches!(ec2::code(&e), Some(code) if code.starts_with("InvalidAMIID")) => {
                    return Err(not_found(format!(
                        "image {id} does not exist in {} (hint: AMI ids differ per region; check the pool's `image`, \
                         or name it by owner and name pattern)",
                        ec2.region
                    )));
                }
                Err(e) => return Err(ec2::error("create", host, "ec2:DescribeImages", &e)),
            };
            if out.images().is_empty() {
                return Err(not_found(format!("image {id} does not exist in {}", ec2.region)));
            }
            Ok(id.clone())
        }
        ImageRef::Search { owner, name } => {
            let out = ec2
                .client
                .describe_images()
                .owners(owner)
                .filters(aws_sdk_ec2::types::Filter::builder().name("name").values(name).build())
                .send()
                .await
                .map_err(|e| ec2::error("create", host, "ec2:DescribeImages", &e))?;
            let newest = out
                .images()
                .iter()
                .filter_map(|i| {
                    Some((i.creation_date().unwrap_or_default(), i.name().unwrap_or_default(), i.image_id()?))
                })
                .max();
            newest.map(|(_, _, id)| id.to_string()).ok_or_else(|| {
                not_found(format!(
                    "no image named `{name}` owned by {owner} in {} (hint: check the pool's `image`)",
                    ec2.region
                ))
            })
        }
    }
}

/// Terminates `ids` (already terminated ones are fine).
pub async fn terminate(ec2: &Ec2, host: &str, ids: &[String]) -> Result<(), ProviderError> {
    if ids.is_empty() {
        return Ok(());
    }
    match ec2.client.terminate_instances().set_instance_ids(Some(ids.to_vec())).send().await {
        Ok(_) => Ok(()),
        Err(e) if ec2::code(&e) == Some("InvalidInstanceID.NotFound") => Ok(()),
        Err(e) => Err(ec2::error("destroy", host, "ec2:TerminateInstances", &e)),
    }
}

/// Terminates `ids` and waits (up to `timeout`) until EC2 reports every one terminated.
pub async fn terminate_and_wait(ec2: &Ec2, host: &str, ids: &[String], timeout: Duration) -> Result<(), ProviderError> {
    terminate(ec2, host, ids).await?;
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    while !all_terminated(ec2, host, ids).await? {
        if started.elapsed() > timeout {
            return Err(ProviderError::Call {
                provider: "aws".to_string(),
                operation: "destroy",
                host: host.to_string(),
                kind: ErrorKind::Transient,
                message: format!("{ids:?} not terminated after {timeout:?}"),
            });
        }
        backoff.wait().await;
    }
    Ok(())
}

/// Whether every one of `ids` is terminated (or unknown).
pub async fn all_terminated(ec2: &Ec2, host: &str, ids: &[String]) -> Result<bool, ProviderError> {
    if ids.is_empty() {
        return Ok(true);
    }
    let out = match ec2.client.describe_instances().set_instance_ids(Some(ids.to_vec())).send().await {
        Ok(out) => out,
        Err(e) if ec2::code(&e) == Some("InvalidInstanceID.NotFound") => return Ok(true),
        Err(e) => return Err(ec2::error("destroy", host, "ec2:DescribeInstances", &e)),
    };
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .all(|i| matches!(i.state().and_then(|s| s.name()), Some(InstanceStateName::Terminated))))
}
