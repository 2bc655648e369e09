//! Checks of `[aws]`, the pools' machine keys and `[cluster] ttl`.

use super::At;
use crate::cluster_file::{ClusterFile, ClusterFileError, ProviderKind, parse_cidr};
use toml::Spanned;

/// The smallest and largest VPC (and subnet) AWS allows.
const VPC_PREFIX: std::ops::RangeInclusive<u8> = 16..=28;

pub(super) fn check(file: &ClusterFile, at: &At<'_>) -> Result<(), ClusterFileError> {
    let provider = file.provider();
    if !provider.is_cloud() {
        for (i, pool) in file.pools.iter().enumerate() {
            if let Some((key, span)) = pool.machine_key() {
                return Err(at.invalid(
                    span,
                    &format!("pool[{i}].{key}"),
                    format!("`{key}` chooses a cloud machine, but this cluster's provider is `{provider}`"),
                    "remove it, or use a cloud provider (provider = \"aws\")",
                ));
            }
        }
        if let Some(ttl) = &file.cluster.ttl {
            return Err(at.invalid(
                ttl.span(),
                "cluster.ttl",
                format!("a time to live applies to cloud resources, and provider `{provider}` creates none"),
                "remove `ttl`, or use a cloud provider",
            ));
        }
    }
    if let Some(ttl) = &file.cluster.ttl
        && ttl.get_ref().0.is_zero()
    {
        return Err(at.invalid(ttl.span(), "cluster.ttl", "must be longer than 0".to_string(), "e.g. ttl = \"4h\""));
    }
    let Some(section) = &file.aws else {
        if provider == ProviderKind::Aws {
            return Err(at.invalid(
                file.cluster.provider.span(),
                "aws",
                "provider `aws` needs an [aws] section".to_string(),
                "add [aws] with region, ssh_cidrs and api_cidrs (see configs/aws.toml)",
            ));
        }
        return Ok(());
    };
    if provider != ProviderKind::Aws {
        return Err(at.invalid(
            section.span(),
            "aws",
            format!("[aws] configures the aws provider, but this cluster's provider is `{provider}`"),
            "remove the [aws] section or set provider = \"aws\"",
        ));
    }
    let aws = section.get_ref();
    if let Some(bastion) = &file.ssh.bastion {
        return Err(at.invalid(
            bastion.span(),
            "ssh.bastion",
            "the aws provider does not reach instances through a bastion yet".to_string(),
            "remove [ssh.bastion] and use connect_via = \"public\", or run gantry on a machine inside the VPC with connect_via = \"private\"",
        ));
    }
    let region = aws.region.get_ref();
    if region.is_empty() || !region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err(at.invalid(
            aws.region.span(),
            "aws.region",
            format!("`{region}` is not a region name"),
            "a region such as \"eu-west-1\" or \"us-east-1\"",
        ));
    }
    if let Some(url) = &aws.endpoint_url
        && !(url.get_ref().starts_with("http://") || url.get_ref().starts_with("https://"))
    {
        return Err(at.invalid(
            url.span(),
            "aws.endpoint_url",
            format!("`{}` is not an http(s) URL", url.get_ref()),
            "e.g. endpoint_url = \"http://127.0.0.1:5000\"",
        ));
    }
    match (&aws.vpc_cidr, &aws.vpc_id) {
        (Some(cidr), Some(_)) => {
            return Err(at.invalid(
                cidr.span(),
                "aws.vpc_cidr",
                "vpc_cidr makes a new VPC, and vpc_id names an existing one".to_string(),
                "keep one of them",
            ));
        }
        (Some(cidr), None) => check_cidr(at, cidr, "aws.vpc_cidr", Some(VPC_PREFIX))?,
        (None, Some(id)) if aws.subnet_ids.is_empty() => {
            return Err(at.invalid(
                id.span(),
                "aws.vpc_id",
                "an existing VPC needs the subnets to use".to_string(),
                "add subnet_ids = [\"subnet-…\"]",
            ));
        }
        _ => {}
    }
    if aws.vpc_id.is_none()
        && let Some(subnet) = aws.subnet_ids.first()
    {
        return Err(at.invalid(
            subnet.span(),
            "aws.subnet_ids",
            "subnet_ids name subnets of an existing VPC, but no vpc_id is given".to_string(),
            "add vpc_id = \"vpc-…\", or remove subnet_ids to let gantry make the network",
        ));
    }
    for (key, cidrs) in [("aws.ssh_cidrs", &aws.ssh_cidrs), ("aws.api_cidrs", &aws.api_cidrs)] {
        if cidrs.get_ref().is_empty() {
            return Err(at.invalid(
                cidrs.span(),
                key,
                "must name at least one CIDR: there is no open default".to_string(),
                "the addresses this machine (and your users) come from, e.g. [\"203.0.113.7/32\"]",
            ));
        }
        for cidr in cidrs.get_ref() {
            if let Err(message) = parse_cidr(cidr) {
                return Err(at.invalid(cidrs.span(), key, message, "CIDRs such as \"203.0.113.0/24\""));
            }
        }
    }
    if *aws.max_parallel_creates.get_ref() == 0 {
        return Err(at.invalid(
            aws.max_parallel_creates.span(),
            "aws.max_parallel_creates",
            "must be at least 1".to_string(),
            "e.g. max_parallel_creates = 10",
        ));
    }
    for (i, pool) in file.pools.iter().enumerate() {
        if let Some(gb) = &pool.root_volume_gb
            && !(8..=16_384).contains(gb.get_ref())
        {
            return Err(at.invalid(
                gb.span(),
                &format!("pool[{i}].root_volume_gb"),
                format!("{} GiB is outside 8..=16384", gb.get_ref()),
                "e.g. root_volume_gb = 20",
            ));
        }
        if let Some(kind) = &pool.instance_type
            && !kind.get_ref().contains('.')
        {
            return Err(at.invalid(
                kind.span(),
                &format!("pool[{i}].instance_type"),
                format!("`{}` is not an instance type", kind.get_ref()),
                "e.g. instance_type = \"t3.medium\"",
            ));
        }
    }
    Ok(())
}

fn check_cidr(
    at: &At<'_>,
    cidr: &Spanned<String>,
    key: &str,
    prefix: Option<std::ops::RangeInclusive<u8>>,
) -> Result<(), ClusterFileError> {
    match parse_cidr(cidr.get_ref()) {
        Err(message) => Err(at.invalid(cidr.span(), key, message, "e.g. \"10.0.0.0/16\"")),
        Ok((_, len)) if prefix.as_ref().is_some_and(|p| !p.contains(&len)) => Err(at.invalid(
            cidr.span(),
            key,
            format!("a VPC's prefix length is /16 to /28, not /{len}"),
            "e.g. \"10.0.0.0/16\"",
        )),
        Ok(_) => Ok(()),
    }
}
