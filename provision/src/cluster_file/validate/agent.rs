//! Checks of the `[runtime]` keys that become `gantry agent` flags: the image cache's size and the
//! registries spoken to over plain HTTP. (`task_pids` and `cgroup_favordynmods` take every value
//! their types allow.)

use super::At;
use crate::cluster_file::{ClusterFile, ClusterFileError};

pub(super) fn check(file: &ClusterFile, at: &At<'_>) -> Result<(), ClusterFileError> {
    let rt = &file.runtime;
    if let Some(gib) = &rt.image_cache_gib {
        let value = *gib.get_ref();
        if !(value.is_finite() && value > 0.0) {
            return Err(at.invalid(
                gib.span(),
                "runtime.image_cache_gib",
                format!("{value} is not a size: the image cache needs a finite number of GiB above 0"),
                "e.g. image_cache_gib = 20 (the agent's default), or 0.5 for 512 MiB",
            ));
        }
    }
    for (i, registry) in rt.insecure_registries.iter().enumerate() {
        if let Err(message) = check_registry(registry.get_ref()) {
            return Err(at.invalid(
                registry.span(),
                &format!("runtime.insecure_registries[{i}]"),
                message,
                "name a registry as images do, host[:port] with no scheme or path, e.g. \"registry.lab:5000\"",
            ));
        }
    }
    Ok(())
}

/// A registry as an image reference names it: a host name, an IPv4 address or a bracketed IPv6
/// address, then an optional `:port`.
fn check_registry(registry: &str) -> Result<(), String> {
    if let Some((scheme, _)) = registry.split_once("://") {
        return Err(format!("`{registry}` has a scheme ({scheme}://); plain HTTP is what this list says"));
    }
    if registry.contains('/') {
        return Err(format!("`{registry}` has a path; a registry is a host and port only"));
    }
    let (host, port) = match registry.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, rest)) => match rest.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("`{registry}`: only `:port` may follow `]`")),
            },
            None => return Err(format!("`{registry}` has an unclosed `[`")),
        },
        None => match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        },
    };
    let v6 = registry.starts_with('[');
    let host_ok = !host.is_empty()
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || (v6 && c == ':'))
        && !host.starts_with(['-', '.'])
        && !host.ends_with('-');
    if !host_ok {
        return Err(format!("`{host}` is not a host name or address"));
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(format!("`{port}` is not a port number (1-65535)"));
    }
    Ok(())
}
