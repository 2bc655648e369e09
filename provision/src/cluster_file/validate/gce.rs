//! Checks of `[gce]` and the gce pools' machine keys (the shared cloud checks are in `cloud`).

use super::{At, cloud};
use crate::cluster_file::{ClusterFile, ClusterFileError, ImageRef};

/// The prefix lengths a GCE subnetwork may have (IPv4).
const SUBNET_PREFIX: std::ops::RangeInclusive<u8> = 8..=29;

pub(super) fn check(file: &ClusterFile, at: &At<'_>) -> Result<(), ClusterFileError> {
    let Some(section) = &file.gce else { return Ok(()) };
    let gce = section.get_ref();
    cloud::check_common(
        at,
        &cloud::Common {
            section: "gce",
            region: ("region", &gce.region),
            region_example: "\"europe-west1\" or \"us-central1\"",
            endpoint_url: gce.endpoint_url.as_ref(),
            ssh_cidrs: &gce.ssh_cidrs,
            api_cidrs: &gce.api_cidrs,
            max_parallel_creates: &gce.max_parallel_creates,
        },
    )?;
    if let Some(project) = &gce.project
        && !valid_project(project.get_ref())
    {
        return Err(at.invalid(
            project.span(),
            "gce.project",
            format!("`{}` is not a project id", project.get_ref()),
            "a project id: 6 to 30 lowercase letters, digits and hyphens, starting with a letter (e.g. \"my-project\")",
        ));
    }
    for zone in &gce.zones {
        if !zone.get_ref().starts_with(&format!("{}-", gce.region.get_ref())) {
            return Err(at.invalid(
                zone.span(),
                "gce.zones",
                format!("zone `{}` is not in region `{}`", zone.get_ref(), gce.region.get_ref()),
                &format!("zones of the region, e.g. \"{}-b\"", gce.region.get_ref()),
            ));
        }
    }
    match (&gce.network_cidr, &gce.network, &gce.subnetwork) {
        (Some(cidr), Some(_), _) => {
            return Err(at.invalid(
                cidr.span(),
                "gce.network_cidr",
                "network_cidr makes a new network, and network names an existing one".to_string(),
                "keep one of them",
            ));
        }
        (Some(cidr), None, _) => cloud::check_cidr(at, cidr, "gce.network_cidr", SUBNET_PREFIX)?,
        (None, Some(network), None) => {
            return Err(at.invalid(
                network.span(),
                "gce.network",
                "an existing network needs the subnetwork to use".to_string(),
                "add subnetwork = \"…\" (a subnetwork of the network in the region)",
            ));
        }
        (None, None, Some(subnetwork)) => {
            return Err(at.invalid(
                subnetwork.span(),
                "gce.subnetwork",
                "subnetwork names a subnetwork of an existing network, but no network is given".to_string(),
                "add network = \"…\", or remove subnetwork to let gantry make the network",
            ));
        }
        _ => {}
    }
    for (key, value) in &gce.labels {
        if !valid_label(key, true) || !valid_label(value, false) || key.starts_with("gantry-") {
            return Err(at.invalid(
                section.span(),
                "gce.labels",
                format!("label `{key} = \"{value}\"` is not allowed"),
                "keys: a lowercase letter, then lowercase letters, digits, `-` or `_` (at most 63, not `gantry-…`); values: the same characters, may be empty",
            ));
        }
    }
    for (i, pool) in file.pools.iter().enumerate() {
        if let Some(gb) = &pool.disk_gb {
            cloud::check_disk(at, gb, &format!("pool[{i}].disk_gb"), 10..=65_536)?;
        }
        if let Some(image) = &pool.image
            && !matches!(image.get_ref(), ImageRef::Id(path) if path.contains("/images/"))
        {
            return Err(at.invalid(
                image.span(),
                &format!("pool[{i}].image"),
                format!("`{}` is not a Compute Engine image", image.get_ref()),
                "an image path or URL, e.g. \"projects/debian-cloud/global/images/family/debian-12\"",
            ));
        }
        if let Some(kind) = &pool.machine_type
            && !valid_label(kind.get_ref(), true)
        {
            return Err(at.invalid(
                kind.span(),
                &format!("pool[{i}].machine_type"),
                format!("`{}` is not a machine type", kind.get_ref()),
                "e.g. machine_type = \"e2-medium\"",
            ));
        }
    }
    Ok(())
}

/// A project id: 6 to 30 of `a-z`, `0-9`, `-`, starting with a letter, not ending with `-`.
fn valid_project(id: &str) -> bool {
    (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A GCE label key (`key`: starts with a letter, not empty) or value: at most 63 of `a-z`,
/// `0-9`, `-`, `_`.
fn valid_label(text: &str, key: bool) -> bool {
    text.len() <= 63
        && (!key || text.starts_with(|c: char| c.is_ascii_lowercase()))
        && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}
