//! Checks of `[azure]` and the azure pools' machine keys (the shared cloud checks are in `cloud`).

use super::{At, cloud};
use crate::cluster_file::{ClusterFile, ClusterFileError};

/// The prefix lengths an Azure virtual network may have here (one subnet spans it).
const VNET_PREFIX: std::ops::RangeInclusive<u8> = 8..=29;

pub(super) fn check(file: &ClusterFile, at: &At<'_>) -> Result<(), ClusterFileError> {
    let Some(section) = &file.azure else { return Ok(()) };
    let azure = section.get_ref();
    cloud::check_common(
        at,
        &cloud::Common {
            section: "azure",
            region: ("location", &azure.location),
            region_example: "\"westeurope\" or \"eastus\"",
            endpoint_url: azure.endpoint_url.as_ref(),
            ssh_cidrs: &azure.ssh_cidrs,
            api_cidrs: &azure.api_cidrs,
            max_parallel_creates: &azure.max_parallel_creates,
        },
    )?;
    if file.ssh.user == "root" {
        return Err(at.invalid(
            section.span(),
            "ssh.user",
            "Azure refuses `root` as a VM's admin user, and gantry logs in as [ssh] user".to_string(),
            "set [ssh] user = \"gantry\" and sudo = true (the admin user Azure creates has passwordless sudo)",
        ));
    }
    if let Some(id) = &azure.subscription_id
        && !is_guid(id.get_ref())
    {
        return Err(at.invalid(
            id.span(),
            "azure.subscription_id",
            format!("`{}` is not a subscription id", id.get_ref()),
            "a GUID such as \"00000000-0000-0000-0000-000000000000\" (`az account show --query id`)",
        ));
    }
    if let Some(group) = &azure.resource_group {
        let name = group.get_ref();
        let ok = (1..=90).contains(&name.len())
            && !name.ends_with('.')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'));
        if !ok {
            return Err(at.invalid(
                group.span(),
                "azure.resource_group",
                format!("`{name}` is not a resource group name"),
                "1 to 90 letters, digits, `-`, `_`, `.`, `(` or `)`, not ending with `.`",
            ));
        }
    }
    for zone in &azure.zones {
        if !matches!(zone.get_ref().as_str(), "1" | "2" | "3") {
            return Err(at.invalid(
                zone.span(),
                "azure.zones",
                format!("`{}` is not an availability zone", zone.get_ref()),
                "zones are \"1\", \"2\" and \"3\"",
            ));
        }
    }
    if let Some(cidr) = &azure.vnet_cidr {
        cloud::check_cidr(at, cidr, "azure.vnet_cidr", VNET_PREFIX)?;
    }
    for (i, pool) in file.pools.iter().enumerate() {
        if let Some(gb) = &pool.disk_gb {
            cloud::check_disk(at, gb, &format!("pool[{i}].disk_gb"), 30..=4_095)?;
        }
        if let Some(image) = &pool.image
            && image.get_ref().marketplace().is_none()
        {
            return Err(at.invalid(
                image.span(),
                &format!("pool[{i}].image"),
                format!("`{}` is not an Azure marketplace image", image.get_ref()),
                "{ publisher = \"Debian\", offer = \"debian-12\", sku = \"12\", version = \"latest\" }, or \"Debian:debian-12:12:latest\"",
            ));
        }
        if let Some(size) = &pool.vm_size
            && !(size.get_ref().starts_with("Standard_") || size.get_ref().starts_with("Basic_"))
        {
            return Err(at.invalid(
                size.span(),
                &format!("pool[{i}].vm_size"),
                format!("`{}` is not a VM size", size.get_ref()),
                "e.g. vm_size = \"Standard_B2s\"",
            ));
        }
    }
    Ok(())
}

/// A GUID: 8-4-4-4-12 hexadecimal digits.
fn is_guid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && parts.iter().zip([8, 4, 4, 4, 12]).all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}
