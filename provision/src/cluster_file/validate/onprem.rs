//! Checks of an `onprem` cluster: its hosts come from `[[onprem.host]]` (never `[[pool]]`), the
//! master count matches, names and addresses are unique, and every value is usable.

use super::{At, check_label};
use crate::cluster_file::error::hint_for;
use crate::cluster_file::{ClusterFile, ClusterFileError, ProviderKind, Role};
use std::collections::HashMap;
use toml::Spanned;

/// Checks `[onprem]`, `[[onprem.host]]` and `[ssh.bastion]` (the last for every provider).
pub(super) fn check(file: &ClusterFile, at: &At<'_>) -> Result<(), ClusterFileError> {
    if let Some(bastion) = &file.ssh.bastion
        && bastion.get_ref().address.trim().is_empty()
    {
        return Err(at.invalid(
            bastion.span(),
            "ssh.bastion.address",
            "must not be empty".to_string(),
            "the bastion's IP address or DNS name, e.g. address = \"bastion.example.com\"",
        ));
    }
    if file.provider() != ProviderKind::Onprem {
        return Ok(());
    }
    if let Some(pool) = file.pools.first() {
        return Err(at.invalid(
            pool.name.span(),
            "pool[0].name",
            "an onprem cluster lists its existing hosts one by one; [[pool]] is for providers that create hosts"
                .to_string(),
            "replace the [[pool]] with [[onprem.host]] entries, e.g. address = \"10.0.0.7\"",
        ));
    }
    let Some(section) = &file.onprem else {
        return Err(at.invalid(
            file.cluster.provider.span(),
            "cluster.provider",
            "provider \"onprem\" needs its hosts: there is no [[onprem.host]]".to_string(),
            "add [[onprem.host]] entries with `address` (and `role = \"master\"` on one of them)",
        ));
    };
    let onprem = section.get_ref();
    let dir = onprem.install_dir.get_ref();
    if !dir.starts_with('/') || dir.trim_end_matches('/').is_empty() || dir.contains(char::is_whitespace) {
        return Err(at.invalid(
            onprem.install_dir.span(),
            "onprem.install_dir",
            format!("`{dir}` must be an absolute directory other than `/`, without spaces"),
            "e.g. install_dir = \"/opt/gantry\"",
        ));
    }
    let masters = onprem.hosts.iter().filter(|h| *h.get_ref().role.get_ref() == Role::Master).count();
    if masters as u64 != u64::from(file.masters()) {
        let span = onprem.hosts.first().map_or_else(|| section.span(), Spanned::span);
        return Err(at.invalid(
            span,
            "onprem.host",
            format!("{masters} hosts have role = \"master\" but runtime.masters is {}", file.masters()),
            "mark exactly runtime.masters hosts with role = \"master\"",
        ));
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut targets: HashMap<(String, u16), usize> = HashMap::new();
    let mut master_index = 0;
    for (i, entry) in onprem.hosts.iter().enumerate() {
        let host = entry.get_ref();
        let address = host.address.get_ref();
        if address.trim().is_empty() || address.contains(char::is_whitespace) {
            return Err(at.invalid(
                host.address.span(),
                &format!("onprem.host[{i}].address"),
                format!("`{address}` is not an address"),
                "an IP address or DNS name, e.g. address = \"10.0.0.7\"",
            ));
        }
        if let Some(name) = &host.name {
            if *host.role.get_ref() == Role::Master {
                return Err(at.invalid(
                    name.span(),
                    &format!("onprem.host[{i}].name"),
                    "masters are always named master-0, master-1, …".to_string(),
                    "remove `name` from the master's entry",
                ));
            }
            check_label(at, name, &format!("onprem.host[{i}].name"))?;
        }
        let name = host.cluster_name(master_index);
        if *host.role.get_ref() == Role::Master {
            master_index += 1;
        }
        if let Some(first) = names.insert(name.clone(), i) {
            let span = host.name.as_ref().map_or_else(|| host.address.span(), Spanned::span);
            return Err(at.invalid(
                span,
                &format!("onprem.host[{i}]"),
                format!("host name `{name}` is taken by onprem.host[{first}]"),
                "give one of them a distinct `name = \"…\"`",
            ));
        }
        let port = host.port.unwrap_or(file.ssh.port);
        if let Some(first) = targets.insert((address.clone(), port), i) {
            return Err(at.invalid(
                host.address.span(),
                &format!("onprem.host[{i}].address"),
                format!("{address}:{port} is already onprem.host[{first}]"),
                "list every host once",
            ));
        }
        if let Some(resources) = &host.resources
            && let Err(e) = gantry_api::Resources::parse(resources.get_ref())
        {
            return Err(at.invalid(
                resources.span(),
                &format!("onprem.host[{i}].resources"),
                e.to_string(),
                hint_for("resources"),
            ));
        }
    }
    Ok(())
}
