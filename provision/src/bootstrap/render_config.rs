//! `render-config`: renders the daemon's settings (`templates/<role>.env`) and places them on the
//! host as `etc/<role>.env` (0600: an agent's holds the join token); unchanged content is not
//! rewritten. The master also gets the cluster's trust material in its data dir (the CA with its
//! key, the join token and the admin token, 0600), which its first start adopts.

use super::{BootstrapError, HostContext, Phase, PhaseOutcome, templates};
use crate::cluster_file::Role;
use crate::transport::{Upload, UploadSource};
use futures_util::future::BoxFuture;

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct RenderConfig;

/// The values every template of this host is rendered with.
pub(crate) fn context(host: &HostContext) -> Result<tera::Context, BootstrapError> {
    let layout = &host.access.layout;
    let mut c = tera::Context::new();
    c.insert("host", &host.name);
    c.insert("role", &host.role.to_string());
    c.insert("binary", &layout.binary().display().to_string());
    c.insert("env_file", &layout.env_file(host.role).display().to_string());
    c.insert("pid_file", &layout.pid_file(host.role).display().to_string());
    c.insert("log_file", &layout.log_file(host.role).display().to_string());
    match host.role {
        Role::Master => {
            c.insert("listen", &format!("{}:{}", host.access.address, host.access.api_port));
            c.insert("tls_san", &host.access.public_address.clone().unwrap_or_default());
            c.insert("data_dir", &layout.data_dir().display().to_string());
            c.insert("heartbeat_interval", &humantime::format_duration(host.runtime.heartbeat_interval).to_string());
            c.insert(
                "agent_unreachable_timeout",
                &humantime::format_duration(host.runtime.agent_unreachable_timeout).to_string(),
            );
            // With several masters: this one's number and its peers (`N=host:port`).
            let number = super::MasterMember::number_of(&host.name);
            let peers: Vec<String> = host
                .masters
                .iter()
                .filter(|m| Some(m.number) != number)
                .map(|m| format!("{}={}", m.number, m.address))
                .collect();
            let grouped = host.masters.len() > 1;
            c.insert(
                "node_id",
                &if grouped { number.map(|n| n.to_string()).unwrap_or_default() } else { String::new() },
            );
            c.insert("peers", &if grouped { peers.join(",") } else { String::new() });
        }
        Role::Agent => {
            let master_url = host.master_url.as_deref().ok_or_else(|| BootstrapError::Unsupported {
                host: host.name.clone(),
                message: "no master URL to register with (no master is bootstrapped)".to_string(),
            })?;
            c.insert("master_url", master_url);
            c.insert("work_dir", &layout.work_dir().display().to_string());
            c.insert("listen", &format!("{}:0", host.access.address));
            c.insert("hostname", &host.name);
            c.insert("resources", &agent_resources(host));
            c.insert("attributes", &agent_attributes(host));
            c.insert("join_token", &host.runtime.trust.as_ref().map(|t| t.join.to_string()).unwrap_or_default());
            c.insert("task_user", &host.runtime.task_user.clone().unwrap_or_default());
            let rt = &host.runtime;
            c.insert("task_pids", &rt.task_pids.map(|n| n.to_string()).unwrap_or_default());
            c.insert("image_cache_gib", &rt.image_cache_gib.map(|g| g.to_string()).unwrap_or_default());
            c.insert("insecure_registries", &rt.insecure_registries);
            c.insert("cgroup_favordynmods", &rt.cgroup_favordynmods);
        }
    }
    Ok(c)
}

/// The pool's resources plus the port range the provider assigned (`ports` setting), if the pool
/// does not name ports itself; empty = everything detected on the host.
fn agent_resources(host: &HostContext) -> String {
    let desired = host.desired.as_ref();
    let mut parts: Vec<String> = desired
        .and_then(|d| d.resources.as_deref())
        .map(|r| r.split(';').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    if let Some(ports) = desired.and_then(|d| d.settings.get("ports"))
        && !parts.iter().any(|p| p.starts_with("ports"))
    {
        parts.push(format!("ports={ports}"));
    }
    parts.join(";")
}

/// Provider facts, overridden by the pool's attributes, as `name=value;…`.
fn agent_attributes(host: &HostContext) -> String {
    let mut attributes = host.provider_attributes.clone();
    if let Some(desired) = &host.desired {
        attributes.extend(desired.attributes.clone());
    }
    attributes.remove("hostname");
    attributes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";")
}

/// Gives the master the cluster's key that seals secrets (every master must hold the same one,
/// or a new leader could not open the secrets the old one sealed): uploads it where the data dir
/// has none. A master holding another key keeps it: a cluster of one master made before `up`
/// kept the key adopts the master's (its secrets are sealed with it); with several masters that
/// is refused, since they would disagree. Answers whether anything was written.
async fn seal_key(
    host: &HostContext,
    trust: &crate::trust::ClusterTrust,
    data_dir: &std::path::Path,
) -> Result<bool, BootstrapError> {
    let path = data_dir.join(crate::trust::SEAL_KEY_FILE);
    let exists = crate::transport::Command::new(
        format!("test -e {}", super::quote(path.display().to_string())),
        std::time::Duration::from_secs(30),
    );
    if !host.access.transport.run(&exists).await?.success() {
        let upload = Upload { source: UploadSource::Bytes(trust.seal_key.clone()), dest: path, mode: 0o600 };
        return Ok(host.access.transport.upload(&upload).await?.changed);
    }
    let held = host.access.transport.read_file(&path).await?;
    if held == trust.seal_key {
        return Ok(false);
    }
    if host.masters.len() > 1 {
        return Err(BootstrapError::Unsupported {
            host: host.name.clone(),
            message: format!(
                "{} holds another key than the cluster's ({}): its secrets are sealed with it, and the other masters could not open them. If this master's key is the right one, copy it over the state dir's and run `up` again",
                path.display(),
                trust.seal_key_path.display()
            ),
        });
    }
    trust
        .adopt_seal_key(&held)
        .map_err(|e| BootstrapError::Unsupported { host: host.name.clone(), message: e.to_string() })?;
    Ok(false)
}

impl Phase for RenderConfig {
    fn name(&self) -> &'static str {
        "render-config"
    }

    fn run<'a>(&'a self, host: &'a mut HostContext) -> BoxFuture<'a, Result<PhaseOutcome, BootstrapError>> {
        Box::pin(async move {
            let name = match host.role {
                Role::Master => "master.env",
                Role::Agent => "agent.env",
            };
            let text = templates::render(name, &context(host)?)?;
            let dest = host.access.layout.env_file(host.role);
            let upload = Upload { source: UploadSource::Bytes(text.into_bytes()), dest, mode: 0o600 };
            let mut changed = host.access.transport.upload(&upload).await?.changed;
            if let (Role::Master, Some(trust)) = (host.role, host.runtime.trust.clone()) {
                let data_dir = host.access.layout.data_dir();
                let files = [
                    (gantry_trust::pki::CA_CERT_FILE, trust.ca.cert_pem().as_bytes().to_vec(), 0o644),
                    (gantry_trust::pki::CA_KEY_FILE, trust.ca.key_pem().into_bytes(), 0o600),
                    (gantry_trust::token::JOIN_TOKEN_FILE, format!("{}\n", trust.join).into_bytes(), 0o600),
                    (gantry_trust::token::ADMIN_TOKEN_FILE, format!("{}\n", trust.admin_token).into_bytes(), 0o600),
                ];
                for (file, bytes, mode) in files {
                    let upload = Upload { source: UploadSource::Bytes(bytes), dest: data_dir.join(file), mode };
                    changed |= host.access.transport.upload(&upload).await?.changed;
                }
                changed |= seal_key(host, &trust, &data_dir).await?;
            }
            Ok(if changed {
                PhaseOutcome::Done(upload.dest.display().to_string())
            } else {
                PhaseOutcome::Skipped("unchanged".to_string())
            })
        })
    }
}
