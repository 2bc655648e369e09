//! Checks shared by the cloud providers: `[cluster] ttl`, which pool machine keys each provider
//! takes, that the file has exactly its provider's section, and the keys every cloud section
//! has (region, endpoint, who may reach SSH and the API, creates in flight).

use super::At;
use crate::cluster_file::{ClusterFile, ClusterFileError, ProviderKind, parse_cidr};
use toml::Spanned;

/// The machine keys each cloud provider takes, and the example of each in a hint.
const MACHINE_KEYS: [(ProviderKind, &[&str], &str); 3] = [
    (ProviderKind::Aws, &["instance_type", "image", "root_volume_gb", "spot"], "instance_type = \"t3.medium\""),
    (ProviderKind::Gce, &["machine_type", "image", "disk_gb", "spot"], "machine_type = \"e2-medium\""),
    (ProviderKind::Azure, &["vm_size", "image", "disk_gb", "spot"], "vm_size = \"Standard_B2s\""),
];

pub(super) fn check(file: &ClusterFile, at: &At<'_>) -> Result<(), ClusterFileError> {
    let provider = file.provider();
    if let Some(ttl) = &file.cluster.ttl {
        if !provider.is_cloud() {
            return Err(at.invalid(
                ttl.span(),
                "cluster.ttl",
                format!("a time to live applies to cloud resources, and provider `{provider}` creates none"),
                "remove `ttl`, or use a cloud provider",
            ));
        }
        if ttl.get_ref().0.is_zero() {
            return Err(at.invalid(
                ttl.span(),
                "cluster.ttl",
                "must be longer than 0".to_string(),
                "e.g. ttl = \"4h\"",
            ));
        }
    }
    for (i, pool) in file.pools.iter().enumerate() {
        for (key, span) in pool.machine_keys() {
            let Some((_, keys, example)) = MACHINE_KEYS.iter().find(|(p, _, _)| *p == provider) else {
                return Err(at.invalid(
                    span,
                    &format!("pool[{i}].{key}"),
                    format!("`{key}` chooses a cloud machine, but this cluster's provider is `{provider}`"),
                    "remove it, or use a cloud provider (provider = \"aws\", \"gce\" or \"azure\")",
                ));
            };
            if !keys.contains(&key) {
                let owner =
                    MACHINE_KEYS.iter().find(|(_, k, _)| k.contains(&key)).map_or("another", |(p, _, _)| p.as_str());
                return Err(at.invalid(
                    span,
                    &format!("pool[{i}].{key}"),
                    format!(
                        "`{key}` is a key of the {owner} provider; provider `{provider}` takes {}",
                        keys.join(", ")
                    ),
                    &format!("e.g. {example}"),
                ));
            }
        }
    }
    let sections: [(ProviderKind, Option<std::ops::Range<usize>>); 3] = [
        (ProviderKind::Aws, file.aws.as_ref().map(Spanned::span)),
        (ProviderKind::Gce, file.gce.as_ref().map(Spanned::span)),
        (ProviderKind::Azure, file.azure.as_ref().map(Spanned::span)),
    ];
    for (kind, span) in sections {
        let name = kind.as_str();
        match span {
            Some(span) if kind != provider => {
                return Err(at.invalid(
                    span,
                    name,
                    format!("[{name}] configures the {name} provider, but this cluster's provider is `{provider}`"),
                    &format!("remove the [{name}] section or set provider = \"{name}\""),
                ));
            }
            None if kind == provider => {
                return Err(at.invalid(
                    file.cluster.provider.span(),
                    name,
                    format!("provider `{name}` needs its [{name}] section"),
                    &format!("add [{name}] with its region, ssh_cidrs and api_cidrs (see configs/{name}.toml)"),
                ));
            }
            _ => {}
        }
    }
    if provider.is_cloud()
        && let Some(bastion) = &file.ssh.bastion
    {
        return Err(at.invalid(
            bastion.span(),
            "ssh.bastion",
            format!("the {provider} provider does not reach instances through a bastion yet"),
            "remove [ssh.bastion] and use connect_via = \"public\", or run gantry on a machine inside the network with connect_via = \"private\"",
        ));
    }
    Ok(())
}

/// The keys every cloud section has, for [`check_common`].
pub(super) struct Common<'a> {
    /// `aws`, `gce` or `azure`: the section's name, prefixed to keys.
    pub section: &'static str,
    /// The region (`location` on azure) and its key.
    pub region: (&'static str, &'a Spanned<String>),
    /// An example region for the hint.
    pub region_example: &'static str,
    pub endpoint_url: Option<&'a Spanned<String>>,
    pub ssh_cidrs: &'a Spanned<Vec<String>>,
    pub api_cidrs: &'a Spanned<Vec<String>>,
    pub max_parallel_creates: &'a Spanned<u32>,
}

pub(super) fn check_common(at: &At<'_>, c: &Common<'_>) -> Result<(), ClusterFileError> {
    let (region_key, region) = c.region;
    let name = region.get_ref();
    if name.is_empty() || !name.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-') {
        return Err(at.invalid(
            region.span(),
            &format!("{}.{region_key}", c.section),
            format!("`{name}` is not a {region_key} name"),
            &format!("a {region_key} such as {}", c.region_example),
        ));
    }
    if let Some(url) = c.endpoint_url
        && !(url.get_ref().starts_with("http://") || url.get_ref().starts_with("https://"))
    {
        return Err(at.invalid(
            url.span(),
            &format!("{}.endpoint_url", c.section),
            format!("`{}` is not an http(s) URL", url.get_ref()),
            "e.g. endpoint_url = \"http://127.0.0.1:5000\"",
        ));
    }
    for (key, cidrs) in [("ssh_cidrs", c.ssh_cidrs), ("api_cidrs", c.api_cidrs)] {
        let key = format!("{}.{key}", c.section);
        if cidrs.get_ref().is_empty() {
            return Err(at.invalid(
                cidrs.span(),
                &key,
                "must name at least one CIDR: there is no open default".to_string(),
                "the addresses this machine (and your users) come from, e.g. [\"203.0.113.7/32\"]",
            ));
        }
        for cidr in cidrs.get_ref() {
            if let Err(message) = parse_cidr(cidr) {
                return Err(at.invalid(cidrs.span(), &key, message, "CIDRs such as \"203.0.113.0/24\""));
            }
        }
    }
    if *c.max_parallel_creates.get_ref() == 0 {
        return Err(at.invalid(
            c.max_parallel_creates.span(),
            &format!("{}.max_parallel_creates", c.section),
            "must be at least 1".to_string(),
            "e.g. max_parallel_creates = 10",
        ));
    }
    Ok(())
}

/// Checks a CIDR value, and its prefix length against `prefix` (what the cloud allows).
pub(super) fn check_cidr(
    at: &At<'_>,
    cidr: &Spanned<String>,
    key: &str,
    prefix: std::ops::RangeInclusive<u8>,
) -> Result<(), ClusterFileError> {
    match parse_cidr(cidr.get_ref()) {
        Err(message) => Err(at.invalid(cidr.span(), key, message, "e.g. \"10.0.0.0/16\"")),
        Ok((_, len)) if !prefix.contains(&len) => Err(at.invalid(
            cidr.span(),
            key,
            format!("the prefix length must be /{} to /{}, not /{len}", prefix.start(), prefix.end()),
            &format!("e.g. \"10.0.0.0/{}\"", prefix.start().max(&16)),
        )),
        Ok(_) => Ok(()),
    }
}

/// Checks a pool's disk size against what the cloud allows.
pub(super) fn check_disk(
    at: &At<'_>,
    gb: &Spanned<u32>,
    key: &str,
    allowed: std::ops::RangeInclusive<u32>,
) -> Result<(), ClusterFileError> {
    if allowed.contains(gb.get_ref()) {
        return Ok(());
    }
    Err(at.invalid(
        gb.span(),
        key,
        format!("{} GB is outside {}..={}", gb.get_ref(), allowed.start(), allowed.end()),
        &format!("e.g. {} = {}", key.rsplit('.').next().unwrap_or(key), allowed.start().max(&20)),
    ))
}
