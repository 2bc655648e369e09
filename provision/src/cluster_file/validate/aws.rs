//! Checks of `[aws]` and the aws pools' machine keys (the shared cloud checks are in `cloud`).

use super::{At, cloud};
use crate::cluster_file::{ClusterFile, ClusterFileError, ImageRef};

/// The smallest and largest VPC (and subnet) AWS allows.
const VPC_PREFIX: std::ops::RangeInclusive<u8> = 16..=28;

pub(super) fn check(file: &ClusterFile, at: &At<'_>) -> Result<(), ClusterFileError> {
    let Some(section) = &file.aws else { return Ok(()) };
    let aws = section.get_ref();
    cloud::check_common(
        at,
        &cloud::Common {
            section: "aws",
            region: ("region", &aws.region),
            region_example: "\"eu-west-1\" or \"us-east-1\"",
            endpoint_url: aws.endpoint_url.as_ref(),
            ssh_cidrs: &aws.ssh_cidrs,
            api_cidrs: &aws.api_cidrs,
            max_parallel_creates: &aws.max_parallel_creates,
        },
    )?;
    match (&aws.vpc_cidr, &aws.vpc_id) {
        (Some(cidr), Some(_)) => {
            return Err(at.invalid(
                cidr.span(),
                "aws.vpc_cidr",
                "vpc_cidr makes a new VPC, and vpc_id names an existing one".to_string(),
                "keep one of them",
            ));
        }
        (Some(cidr), None) => cloud::check_cidr(at, cidr, "aws.vpc_cidr", VPC_PREFIX)?,
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
        if let Some(image) = &pool.image
            && matches!(image.get_ref(), ImageRef::Marketplace { .. })
        {
            return Err(at.invalid(
                image.span(),
                &format!("pool[{i}].image"),
                "a marketplace image (publisher, offer, sku) is an Azure image".to_string(),
                "an AMI id, or { owner = \"136693071363\", name = \"debian-12-amd64-*\" }",
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
