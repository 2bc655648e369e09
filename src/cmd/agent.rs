//! `gantry agent`: runs an agent until SIGINT or SIGTERM. Its tasks keep running when it stops.

use anyhow::Context;
use gantry_api::Resources;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Arguments of `gantry agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The master's URL, or every master's, separated by commas: the agent talks to the
    /// leader, follows the followers' redirects, and moves on when a master is down.
    #[arg(long, env = "GANTRY_MASTER", default_value = "https://127.0.0.1:5050")]
    pub master: String,
    /// The cluster's join token (the master's DATA/join-token); needed until the agent holds a
    /// valid certificate in WORK_DIR/tls. Prefer the environment variable: arguments are
    /// visible to every user of the host.
    #[arg(long, env = "GANTRY_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// The user tasks run as when their app or job names none [default: nobody when the agent
    /// runs as root, else the agent's own user].
    #[arg(long, env = "GANTRY_TASK_USER")]
    pub task_user: Option<String>,
    /// Work dir: agent id, task sandboxes. Keep it across restarts so tasks are re-adopted.
    #[arg(long)]
    pub work_dir: PathBuf,
    /// Address of the agent's own endpoint (task logs); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Hostname reported to the master (default: this host's name).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Resources offered, e.g. `cpus=2;mem=2048;disk=10000;ports=[31000-31999]`.
    /// Any resource left out is detected from the host.
    #[arg(long, value_parser = parse_resources)]
    pub resources: Option<Resources>,
    /// Attributes for placement constraints, e.g. `zone=a;rack=r1`.
    #[arg(long, value_parser = parse_attributes, default_value = "")]
    pub attributes: BTreeMap<String, String>,
    /// Where container images are cached (default: WORK_DIR/images).
    #[arg(long)]
    pub image_dir: Option<PathBuf>,
    /// The image cache's size in GiB: above it, least recently used images that no task uses
    /// are removed.
    #[arg(long, default_value_t = 20.0)]
    pub image_cache_gib: f64,
    /// A registry (`host[:port]`) spoken to over plain HTTP; repeat for several. Loopback
    /// registries always are.
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// A PEM file of CA certificates (one or several) that registries' HTTPS certificates may
    /// be issued by, besides the system's trusted roots: for registries behind a private CA;
    /// repeat for several files.
    #[arg(long = "registry-ca", value_name = "FILE", value_parser = parse_registry_ca)]
    pub registry_ca_certs: Vec<PathBuf>,
    /// The most processes (and threads) one task may have (its cgroup's pids limit); 0: none.
    #[arg(long, default_value_t = 4096)]
    pub task_pids: u64,
    /// Remount this host's cgroup2 hierarchy with `favordynmods` (Linux 6.0+): tasks join their
    /// cgroups without waiting for an RCU grace period (up to 10-15 ms per launch on a busy host), at the price
    /// of slightly slower forks and exits host-wide. A host-wide setting, hence not the default.
    #[arg(long)]
    pub cgroup_favordynmods: bool,
}

/// A `--registry-ca` file: readable and holding a PEM certificate (the image store checks each
/// certificate when it opens).
fn parse_registry_ca(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    let pem = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {text}: {e}"))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!(
            "{text} holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the registry CA's \
             certificate in PEM; convert a DER file with `openssl x509 -inform der -in FILE -out FILE.pem`"
        ));
    }
    Ok(path)
}

fn parse_resources(text: &str) -> Result<Resources, String> {
    Resources::parse(text).map_err(|e| e.to_string())
}

/// Parses `name=value;name=value`.
pub fn parse_attributes(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut attributes = BTreeMap::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').ok_or_else(|| format!("attribute `{part}` is not `name=value`"))?;
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() || name == "hostname" {
            return Err(format!("bad attribute name `{name}` (`hostname` is reserved: use --hostname)"));
        }
        if attributes.insert(name.to_string(), value.to_string()).is_some() {
            return Err(format!("attribute `{name}` is given twice"));
        }
    }
    Ok(attributes)
}

/// Runs the agent.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let executor_path = std::env::current_exe().context("cannot find the gantry binary to use as task executor")?;
    let config = gantry_agent::AgentConfig {
        master: args.master,
        work_dir: args.work_dir.clone(),
        listen: args.listen,
        hostname: args.hostname,
        resources: args.resources,
        attributes: args.attributes,
        executor_path,
        join_token: args.join_token,
        task_user: args.task_user,
        task_limits: gantry_agent::cgroup::limits::LimitSettings {
            pids_per_task: (args.task_pids > 0).then_some(args.task_pids),
            ..Default::default()
        },
        images: gantry_agent::ImageSettings {
            dir: args.image_dir,
            max_bytes: (args.image_cache_gib.max(0.0) * (1u64 << 30) as f64) as u64,
            insecure_registries: args.insecure_registries,
            registry_ca_certs: args.registry_ca_certs,
        },
        gpus: Default::default(),
        cgroup_favordynmods: args.cgroup_favordynmods,
    };
    gantry_agent::run(config).await.with_context(|| format!("agent with work dir {}", args.work_dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_parse_and_reject_bad_input() {
        let parsed = parse_attributes("zone=a; rack=r1").expect("valid");
        assert_eq!(parsed.get("zone").map(String::as_str), Some("a"));
        assert_eq!(parsed.get("rack").map(String::as_str), Some("r1"));
        assert!(parse_attributes("zone").is_err());
        assert!(parse_attributes("zone=a;zone=b").is_err());
        assert!(parse_attributes("hostname=x").is_err());
        assert!(parse_attributes("").expect("empty is fine").is_empty());
    }

    #[test]
    fn registry_ca_files_must_be_readable_pem_certificates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let err = parse_registry_ca(&missing.display().to_string()).expect_err("missing file");
        assert!(err.contains("cannot read"), "{err}");
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").expect("write");
        let err = parse_registry_ca(&key.display().to_string()).expect_err("no certificate");
        assert!(err.contains("holds no PEM certificate"), "{err}");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").expect("write");
        assert_eq!(parse_registry_ca(&ca.display().to_string()).expect("a PEM certificate"), ca);
    }
}
