//! Semantic checks of a parsed cluster file: the values serde accepts but a cluster cannot have.
//! The first fault found is returned, pointing at the offending value.

mod agent;
mod aws;
mod azure;
mod cloud;
mod gce;
mod onprem;

use super::error::{ClusterFileError, hint_for, span_pos};
use super::{ClusterFile, Role, SCHEMA_VERSION};
use std::collections::HashMap;
use std::ops::Range;
use toml::Spanned;

/// Longest host name: a DNS label.
const MAX_LABEL: usize = 63;

/// Checks everything the types cannot say; `text` is the file's text, for positions.
pub(super) fn validate(file: &ClusterFile, text: &str) -> Result<(), ClusterFileError> {
    let at = At { path: file.source.display().to_string(), text };
    let version = *file.version.get_ref();
    if version != SCHEMA_VERSION {
        return Err(at.invalid(
            file.version.span(),
            "version",
            format!("schema version {version} is not supported; this gantry reads version {SCHEMA_VERSION}"),
            "write `version = 1`, or use a newer gantry for newer files",
        ));
    }
    check_label(&at, &file.cluster.name, "cluster.name")?;
    let provider = *file.cluster.provider.get_ref();
    if let Some(local) = &file.local
        && provider != super::ProviderKind::Local
    {
        return Err(at.invalid(
            local.span(),
            "local",
            format!("[local] configures the local provider, but this cluster's provider is `{provider}`"),
            "remove the [local] section or set provider = \"local\"",
        ));
    }
    if let Some(section) = &file.onprem
        && provider != super::ProviderKind::Onprem
    {
        return Err(at.invalid(
            section.span(),
            "onprem",
            format!("[onprem] lists existing hosts, but this cluster's provider is `{provider}`"),
            "remove the [onprem] section or set provider = \"onprem\"",
        ));
    }
    check_runtime(file, &at)?;
    check_pools(file, &at)?;
    onprem::check(file, &at)?;
    cloud::check(file, &at)?;
    aws::check(file, &at)?;
    gce::check(file, &at)?;
    azure::check(file, &at)?;
    check_local(file, &at)?;
    check_ssh(file, &at)?;
    check_workloads(file, &at)
}

fn check_runtime(file: &ClusterFile, at: &At<'_>) -> Result<(), ClusterFileError> {
    let rt = &file.runtime;
    match *rt.masters.get_ref() {
        1 | 3 | 5 => {}
        0 => {
            return Err(at.invalid(
                rt.masters.span(),
                "runtime.masters",
                "a cluster needs at least one master".to_string(),
                hint_for("masters"),
            ));
        }
        n => {
            return Err(at.invalid(
                rt.masters.span(),
                "runtime.masters",
                format!("{n} masters cannot be run: a quorum of 1, 3 or 5 masters survives 0, 1 or 2 failures"),
                hint_for("masters"),
            ));
        }
    }
    if rt.heartbeat_interval.get_ref().0.is_zero() {
        return Err(at.invalid(
            rt.heartbeat_interval.span(),
            "runtime.heartbeat_interval",
            "must be longer than 0".to_string(),
            hint_for("heartbeat_interval"),
        ));
    }
    if rt.agent_unreachable_timeout.get_ref() <= rt.heartbeat_interval.get_ref() {
        return Err(at.invalid(
            rt.agent_unreachable_timeout.span(),
            "runtime.agent_unreachable_timeout",
            format!(
                "{} is not longer than heartbeat_interval ({})",
                rt.agent_unreachable_timeout.get_ref(),
                rt.heartbeat_interval.get_ref()
            ),
            "make it several heartbeat intervals, e.g. heartbeat_interval = \"1s\", agent_unreachable_timeout = \"3s\"",
        ));
    }
    if let Some(user) = &rt.task_user
        && let Err(error) = gantry_api::security::validate_user("runtime.task_user", user.get_ref())
    {
        return Err(at.invalid(
            user.span(),
            "runtime.task_user",
            error.message,
            "a user name of the hosts, e.g. task_user = \"nobody\"",
        ));
    }
    agent::check(file, at)
}

fn check_pools(file: &ClusterFile, at: &At<'_>) -> Result<(), ClusterFileError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut master_hosts = 0u64;
    let mut first_master_pool = None;
    for (i, pool) in file.pools.iter().enumerate() {
        let name = pool.name.get_ref().as_str();
        check_label(at, &pool.name, &format!("pool[{i}].name"))?;
        if name == "master" {
            return Err(at.invalid(
                pool.name.span(),
                &format!("pool[{i}].name"),
                "`master` is reserved: master hosts are named master-0, master-1, …".to_string(),
                "choose another name, e.g. \"masters\"",
            ));
        }
        if let Some(first) = seen.insert(name, i) {
            return Err(at.invalid(
                pool.name.span(),
                &format!("pool[{i}].name"),
                format!("duplicate pool name `{name}` (also pool[{first}])"),
                "give every [[pool]] a unique name",
            ));
        }
        let count = *pool.count.get_ref();
        let longest = format!("{name}-{}", count.saturating_sub(1));
        if longest.len() > MAX_LABEL {
            return Err(at.invalid(
                pool.name.span(),
                &format!("pool[{i}].name"),
                format!("host name `{longest}` is longer than {MAX_LABEL} characters"),
                "use a shorter pool name",
            ));
        }
        if let Some(resources) = &pool.resources
            && let Err(e) = gantry_api::Resources::parse(resources.get_ref())
        {
            return Err(at.invalid(
                resources.span(),
                &format!("pool[{i}].resources"),
                e.to_string(),
                hint_for("resources"),
            ));
        }
        if *pool.role.get_ref() == Role::Master {
            master_hosts += u64::from(count);
            first_master_pool.get_or_insert(i);
        }
    }
    let masters = u64::from(file.masters());
    if let Some(i) = first_master_pool
        && master_hosts != masters
    {
        return Err(at.invalid(
            file.pools[i].role.span(),
            &format!("pool[{i}].role"),
            format!("master pools hold {master_hosts} hosts but runtime.masters is {masters}"),
            "the master count is set by [runtime] masters; make the counts of role = \"master\" pools add up to it",
        ));
    }
    Ok(())
}

fn check_local(file: &ClusterFile, at: &At<'_>) -> Result<(), ClusterFileError> {
    let Some(local) = &file.local else { return Ok(()) };
    let l = local.get_ref();
    let agents: u64 =
        file.pools.iter().filter(|p| *p.role.get_ref() == Role::Agent).map(|p| u64::from(*p.count.get_ref())).sum();
    let last = u64::from(l.port_base) + agents * u64::from(l.ports_per_agent);
    if l.ports_per_agent == 0 || last > u64::from(u16::MAX) + 1 {
        return Err(at.invalid(
            local.span(),
            "local.ports_per_agent",
            format!(
                "{agents} agents × {} ports from port {} do not fit in 1..=65535 (and each agent needs at least one)",
                l.ports_per_agent, l.port_base
            ),
            "lower port_base or ports_per_agent",
        ));
    }
    Ok(())
}

fn check_ssh(file: &ClusterFile, at: &At<'_>) -> Result<(), ClusterFileError> {
    let ssh = &file.ssh;
    if ssh.connect_timeout.get_ref().0.is_zero() {
        return Err(at.invalid(
            ssh.connect_timeout.span(),
            "ssh.connect_timeout",
            "must be longer than 0".to_string(),
            hint_for("connect_timeout"),
        ));
    }
    if *ssh.parallelism.get_ref() == 0 {
        return Err(at.invalid(
            ssh.parallelism.span(),
            "ssh.parallelism",
            "must be at least 1".to_string(),
            hint_for("parallelism"),
        ));
    }
    Ok(())
}

fn check_workloads(file: &ClusterFile, at: &At<'_>) -> Result<(), ClusterFileError> {
    for (i, workload) in file.workloads.iter().enumerate() {
        let w = workload.get_ref();
        match (&w.app, &w.job) {
            (Some(_), Some(job)) => {
                return Err(at.invalid(
                    job.span(),
                    &format!("workload[{i}].job"),
                    "a [[workload]] names one file: `app` or `job`, not both".to_string(),
                    "split it into two [[workload]] entries",
                ));
            }
            (None, Some(job)) => {
                let path = file.base_dir().join(job.get_ref());
                if let Err(source) = gantry_api::workload::read_job_file(&path) {
                    let (line, column) = span_pos(at.text, &job.span());
                    return Err(ClusterFileError::Workload {
                        path: at.path.clone(),
                        line,
                        column,
                        key: format!("workload[{i}].job"),
                        source: Box::new(source),
                        hint: "job paths are relative to the cluster file; fix the file it names".to_string(),
                    });
                }
            }
            (Some(app), None) => {
                let path = file.base_dir().join(app.get_ref());
                if let Err(source) = gantry_api::workload::read_app_file(&path) {
                    let (line, column) = span_pos(at.text, &app.span());
                    return Err(ClusterFileError::Workload {
                        path: at.path.clone(),
                        line,
                        column,
                        key: format!("workload[{i}].app"),
                        source: Box::new(source),
                        hint: "app paths are relative to the cluster file; fix the file it names".to_string(),
                    });
                }
            }
            (None, None) => {
                return Err(at.invalid(
                    workload.span(),
                    &format!("workload[{i}]"),
                    "a [[workload]] needs `app = \"…\"` or `job = \"…\"`".to_string(),
                    hint_for("app"),
                ));
            }
        }
    }
    Ok(())
}

pub(super) fn check_label(at: &At<'_>, value: &Spanned<String>, key: &str) -> Result<(), ClusterFileError> {
    let name = value.get_ref();
    let problem = if name.is_empty() {
        Some("must not be empty".to_string())
    } else if name.len() > MAX_LABEL {
        Some(format!("`{name}` is longer than {MAX_LABEL} characters"))
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some(format!("`{name}` must start with a lowercase letter"))
    } else if name.ends_with('-') {
        Some(format!("`{name}` must not end with `-`"))
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
            .map(|c| format!("`{name}` contains `{c}`"))
    };
    match problem {
        Some(message) => Err(at.invalid(value.span(), key, message, hint_for("name"))),
        None => Ok(()),
    }
}

/// Where errors point: the file's name and text.
pub(super) struct At<'a> {
    path: String,
    text: &'a str,
}

impl At<'_> {
    pub(super) fn invalid(&self, span: Range<usize>, key: &str, message: String, hint: &str) -> ClusterFileError {
        let (line, column) = span_pos(self.text, &span);
        ClusterFileError::Invalid {
            path: self.path.clone(),
            line,
            column,
            key: key.to_string(),
            message,
            hint: hint.to_string(),
        }
    }
}
