//! What `plan`, `up`, `status` and `down` share: a cluster file opened with its state dir and its
//! provider, the plan towards it, and where the master's API is.

use crate::output::Format;
use anyhow::Context;
use gantry_api::AgentState;
use gantry_api::masters::Route;
use gantry_provider_local::LocalProvider;
use gantry_provider_onprem::{ApiForwards, OnpremProvider, Secrets};
use gantry_provision::access::Connector;
use gantry_provision::bootstrap::RuntimeSettings;
use gantry_provision::cluster_api::{ClusterApi, HttpClusterApi};
use gantry_provision::cluster_file::{ClusterFile, ProviderKind, Role};
use gantry_provision::engine::{Engine, EngineOptions, Progress};
use gantry_provision::journal::{self, HostPhase, Journal, JournalState};
use gantry_provision::planner::{self, Desired, Plan};
use gantry_provision::provider::{self, Provider, TransportKind};
use gantry_provision::transport::Passphrase;
use gantry_provision::trust::ClusterTrust;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The provider a cluster file names; each is also the [`Connector`] of its hosts.
#[derive(Debug)]
pub enum Hosts {
    /// Directories and processes on this machine.
    Local(LocalProvider),
    /// Existing hosts over SSH.
    Onprem(Box<OnpremProvider>),
    /// EC2 instances over SSH.
    #[cfg(feature = "aws")]
    Aws(Box<gantry_provider_aws::AwsProvider>),
    /// Compute Engine instances over SSH.
    #[cfg(feature = "gce")]
    Gce(Box<gantry_provider_gce::GceProvider>),
    /// Azure virtual machines over SSH.
    #[cfg(feature = "azure")]
    Azure(Box<gantry_provider_azure::AzureProvider>),
}

impl Hosts {
    /// The provider.
    pub fn provider(&self) -> &dyn Provider {
        match self {
            Self::Local(p) => p,
            Self::Onprem(p) => p.as_ref(),
            #[cfg(feature = "aws")]
            Self::Aws(p) => p.as_ref(),
            #[cfg(feature = "gce")]
            Self::Gce(p) => p.as_ref(),
            #[cfg(feature = "azure")]
            Self::Azure(p) => p.as_ref(),
        }
    }

    /// How its hosts are reached.
    pub fn connector(&self) -> &dyn Connector {
        match self {
            Self::Local(p) => p,
            Self::Onprem(p) => p.as_ref(),
            #[cfg(feature = "aws")]
            Self::Aws(p) => p.as_ref(),
            #[cfg(feature = "gce")]
            Self::Gce(p) => p.as_ref(),
            #[cfg(feature = "azure")]
            Self::Azure(p) => p.as_ref(),
        }
    }
}

/// Arguments of `plan`, `up`, `status` and `down`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// The cluster file (e.g. configs/local.toml).
    pub file: PathBuf,
    /// Root of the clusters' state dirs; the cluster's is `<root>/<name>` [default: ~/.gantry/clusters]
    #[arg(long, env = "GANTRY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Ask for the passphrase of encrypted SSH keys at the terminal (else GANTRY_SSH_PASSPHRASE).
    #[arg(long)]
    pub ask_passphrase: bool,
    /// Ask for the sudo password of `sudo = true` hosts at the terminal (else GANTRY_SUDO_PASSWORD).
    #[arg(long, short = 'K')]
    pub ask_sudo_password: bool,
}

impl ClusterArgs {
    /// The secrets the flags ask for, read from the terminal without echo.
    fn secrets(&self) -> anyhow::Result<Secrets> {
        let ask = |prompt: &str| -> anyhow::Result<Passphrase> {
            let text = rpassword::prompt_password(prompt).context("cannot read from the terminal")?;
            Ok(Passphrase(text))
        };
        Ok(Secrets {
            passphrase: self.ask_passphrase.then(|| ask("SSH key passphrase: ")).transpose()?,
            sudo_password: self.ask_sudo_password.then(|| ask("sudo password: ")).transpose()?,
        })
    }
}

/// A cluster file with its state dir and provider.
#[derive(Debug)]
pub struct ClusterSession {
    /// The parsed file.
    pub file: ClusterFile,
    /// `<root>/<cluster>`.
    pub state_dir: PathBuf,
    /// The provider named by the file.
    pub hosts: Hosts,
    /// How this machine reaches the masters' APIs (its forwards live as long as the session).
    pub route: ApiRoute,
    /// The cluster's CA and tokens, once loaded.
    trust: OnceLock<Arc<ClusterTrust>>,
}

/// How this machine reaches the masters' APIs: at their URLs, or — behind a bastion — at local
/// ports forwarded through the bastion, one per master, opened the first time a master is
/// called. The master URLs themselves (what agents use, what `up` prints, what clients list and
/// are redirected to) never change; only requests go to the forwards.
#[derive(Debug, Clone, Default)]
pub struct ApiRoute {
    forwards: Option<Arc<ApiForwards>>,
}

/// The file in a cluster's state dir that names its cluster file (an absolute path), kept by
/// `up` where the masters are reached through a bastion, so that client commands open the same
/// forwards ([`ApiRoute::of_state_dir`]).
pub const CLUSTER_FILE_FILE: &str = "cluster_file";

impl ApiRoute {
    /// Whether requests go through forwards (the masters are behind a bastion).
    pub fn is_forwarded(&self) -> bool {
        self.forwards.is_some()
    }

    /// The route of client commands to the cluster whose state dir is `state_dir`: through the
    /// bastion of the cluster file `up` recorded there ([`CLUSTER_FILE_FILE`]), else straight to
    /// the masters' URLs. Opens nothing yet: each master's forward opens on its first request.
    pub fn of_state_dir(state_dir: &Path) -> anyhow::Result<Self> {
        let recorded = state_dir.join(CLUSTER_FILE_FILE);
        let Some(text) = crate::discover::read_if_present(&recorded)? else { return Ok(Self::default()) };
        let path = PathBuf::from(text.trim());
        let file = ClusterFile::load(&path).with_context(|| {
            format!(
                "cannot load the cluster file that `gantry up` recorded in {} to reach the masters through its bastion (hint: run `gantry up` with the file where it is now, or pass --master with URLs this machine reaches)",
                recorded.display()
            )
        })?;
        if file.provider() != ProviderKind::Onprem {
            return Ok(Self::default());
        }
        let forwards = OnpremProvider::new(&file, state_dir, Secrets::default()).api_forwards().map(Arc::new);
        Ok(Self { forwards })
    }

    /// Records in `state_dir` where the cluster file is (`file`) when this route goes through
    /// forwards, for [`ApiRoute::of_state_dir`]; removes an old record otherwise.
    pub fn record(&self, state_dir: &Path, file: &Path) -> anyhow::Result<()> {
        let recorded = state_dir.join(CLUSTER_FILE_FILE);
        if !self.is_forwarded() {
            return match std::fs::remove_file(&recorded) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("cannot remove {}", recorded.display()))
                }
                _ => Ok(()),
            };
        }
        let absolute = std::fs::canonicalize(file).with_context(|| format!("cannot resolve {}", file.display()))?;
        std::fs::write(&recorded, format!("{}\n", absolute.display()))
            .with_context(|| format!("cannot record the cluster file in {}", recorded.display()))
    }

    /// The route for clients, if requests go elsewhere than to the masters' URLs. A forward that
    /// cannot be opened is logged, and the request goes to the master's own URL (and fails to
    /// connect, so a client moves on to another master).
    pub fn route(&self) -> Option<Route> {
        let forwards = self.forwards.clone()?;
        Some(Route::new(move |base| {
            tokio::task::block_in_place(|| forwards.reach(base)).unwrap_or_else(|e| {
                tracing::warn!(master = %base, error = %e, "Cannot reach a master through the bastion.");
                base.to_string()
            })
        }))
    }
}

impl ClusterSession {
    /// Loads and validates the file and picks its provider. Behind a bastion it also logs in to
    /// the bastion to forward the master's API (and fails when the bastion cannot be reached).
    pub fn open(args: &ClusterArgs) -> anyhow::Result<Self> {
        let file = ClusterFile::load(&args.file)?;
        let state_dir = journal::state_dir(file.name(), args.state_dir.as_deref())?;
        let (hosts, forwards) = match file.provider() {
            ProviderKind::Local => (Hosts::Local(LocalProvider::new(file.name(), &state_dir, file.local())), None),
            ProviderKind::Onprem => {
                let provider = OnpremProvider::new(&file, &state_dir, args.secrets()?);
                let forwards = provider.api_forwards().map(Arc::new);
                // Behind a bastion, reach one master at once: a bastion that cannot be reached
                // fails here, with its cause, instead of as masters that do not answer.
                if let (Some(forwards), Some(url)) = (&forwards, provider.adopted_master_urls()?.first()) {
                    tokio::task::block_in_place(|| forwards.reach(url))?;
                }
                (Hosts::Onprem(Box::new(provider)), forwards)
            }
            #[cfg(feature = "aws")]
            ProviderKind::Aws => {
                let provider = gantry_provider_aws::AwsProvider::new(&file, &state_dir)
                    .context("an aws cluster file needs an [aws] section")?;
                (Hosts::Aws(Box::new(provider)), None)
            }
            #[cfg(feature = "gce")]
            ProviderKind::Gce => {
                let provider = gantry_provider_gce::GceProvider::new(&file, &state_dir)
                    .context("a gce cluster file needs a [gce] section")?;
                (Hosts::Gce(Box::new(provider)), None)
            }
            #[cfg(feature = "azure")]
            ProviderKind::Azure => {
                let provider = gantry_provider_azure::AzureProvider::new(&file, &state_dir)
                    .context("an azure cluster file needs an [azure] section")?;
                (Hosts::Azure(Box::new(provider)), None)
            }
            #[allow(unreachable_patterns, reason = "reachable only in builds without a cloud feature")]
            other => anyhow::bail!(
                "provider `{other}` is not available in this build (hint: build gantry with its cargo feature, e.g. `--features {other}`)"
            ),
        };
        Ok(Self { file, state_dir, hosts, route: ApiRoute { forwards }, trust: OnceLock::new() })
    }

    /// The cluster API as this machine reaches it.
    pub fn api(&self) -> HttpClusterApi {
        let api = HttpClusterApi::new(self.credentials());
        match self.route.route() {
            Some(route) => api.routed(route),
            None => api,
        }
    }

    /// The cluster's CA and tokens in the state dir, made on first use (by `up`).
    pub fn trust(&self) -> anyhow::Result<Arc<ClusterTrust>> {
        if let Some(trust) = self.trust.get() {
            return Ok(trust.clone());
        }
        let trust =
            Arc::new(ClusterTrust::load_or_create(&self.state_dir, self.file.name()).with_context(|| {
                format!("cannot prepare the cluster's CA and tokens in {}", self.state_dir.display())
            })?);
        Ok(self.trust.get_or_init(|| trust).clone())
    }

    /// The admin's credentials, when `up` made them (none before the first `up`).
    pub fn credentials(&self) -> gantry_api::Credentials {
        if !self.state_dir.join(gantry_trust::pki::CA_CERT_FILE).exists() {
            return gantry_api::Credentials::default();
        }
        self.trust().map(|t| t.credentials(&self.state_dir)).unwrap_or_default()
    }

    /// A client of the master at `url` (as this machine reaches it) with the admin's credentials.
    pub fn client(&self, url: &str) -> anyhow::Result<gantry_api::Client> {
        let client = gantry_api::Client::with_credentials(url, &self.credentials())?;
        Ok(match self.route.route() {
            Some(route) => client.routed(route),
            None => client,
        })
    }

    /// The hosts the file asks for, with the identity of this gantry binary as a setting: a new
    /// build reconfigures every host (its binary is replaced and its daemon restarted).
    pub fn desired(&self) -> anyhow::Result<Desired> {
        let exe = std::env::current_exe().context("cannot find this gantry binary")?;
        let meta = std::fs::metadata(&exe).with_context(|| format!("cannot read {}", exe.display()))?;
        let built = meta.modified().map(|t| humantime::format_rfc3339_seconds(t).to_string()).unwrap_or_default();
        let identity = format!("{} ({} bytes, {built})", env!("CARGO_PKG_VERSION"), meta.len());
        Ok(Desired::from_cluster_file(&self.file).with_setting("gantry", &identity))
    }

    /// The journal's state without creating anything (empty when there is no journal yet).
    pub fn read_journal(&self) -> anyhow::Result<JournalState> {
        Ok(Journal::read_state(&self.state_dir)?)
    }

    /// The plan from `desired` to reality, including bootstraps of hosts the live cluster reports
    /// unhealthy (daemons that died).
    pub async fn plan(&self, desired: &Desired, journal: &JournalState) -> anyhow::Result<Plan> {
        let hosts = self.hosts.provider().list_hosts().await.context("cannot list the cluster's hosts")?;
        let mut plan = planner::plan(desired, journal, &provider::observed(&hosts));
        if !desired.hosts.is_empty() {
            planner::heal(&mut plan, desired, &self.unhealthy(journal).await);
        }
        Ok(plan)
    }

    /// Bootstrapped hosts the live cluster reports not serving: host → why.
    async fn unhealthy(&self, journal: &JournalState) -> BTreeMap<String, String> {
        let mut unhealthy = BTreeMap::new();
        let Some(url) = self.master_url().await else { return unhealthy };
        let api = self.api();
        let settled = journal.hosts.iter().filter(|(_, r)| r.phase == HostPhase::Bootstrapped && r.pending.is_none());
        for (name, record) in settled {
            let why = match record.role {
                // Each master is asked about itself (a follower's health is its own).
                Role::Master => match self.own_url(name).await {
                    Some(own) => match api.health(&own).await {
                        Ok(()) => continue,
                        Err(_) => "the master's API does not answer".to_string(),
                    },
                    None => continue,
                },
                Role::Agent => match api.agent(&url, name).await {
                    Ok(Some(view)) if view.state == AgentState::Active => continue,
                    Ok(Some(view)) => format!("{} at the master", view.state),
                    Ok(None) => "not registered at the master".to_string(),
                    Err(_) => continue,
                },
            };
            unhealthy.insert(name.clone(), why);
        }
        unhealthy
    }

    /// An engine for this cluster, reporting to `progress`.
    pub fn engine<'a>(&'a self, progress: &'a dyn Progress) -> anyhow::Result<Engine<'a>> {
        let binary = std::env::current_exe().context("cannot find this gantry binary to install it")?;
        let trust = self.trust()?;
        // Hosts reached over SSH are bootstrapped `[ssh] parallelism` at a time; local hosts are
        // directories on this machine, so only the engine's own bound applies.
        let parallelism = match self.hosts.provider().capabilities().transport {
            TransportKind::Ssh => *self.file.ssh.parallelism.get_ref() as usize,
            TransportKind::Local => EngineOptions::default().parallelism,
        };
        Ok(Engine {
            cluster: self.file.name().to_string(),
            provider: self.hosts.provider(),
            connector: self.hosts.connector(),
            api: Arc::new(self.api()),
            progress,
            runtime: self.runtime_settings(trust),
            binary,
            options: EngineOptions { parallelism, ..EngineOptions::default() },
        })
    }

    /// The daemons' settings: the file's, with the cluster's trust material. On `local`, whose
    /// hosts are directories of the user running `up`, tasks run as that user unless the file
    /// names `task_user`.
    fn runtime_settings(&self, trust: Arc<ClusterTrust>) -> RuntimeSettings {
        let mut settings = RuntimeSettings { trust: Some(trust), ..RuntimeSettings::from_cluster_file(&self.file) };
        if settings.task_user.is_none() && self.file.provider() == ProviderKind::Local {
            settings.task_user =
                nix::unistd::User::from_uid(nix::unistd::Uid::effective()).ok().flatten().map(|u| u.name);
        }
        settings
    }

    /// The URLs of the masters the journal records and the provider still has, comma-separated,
    /// as this machine reaches them; `None` without a master.
    pub async fn master_url(&self) -> Option<String> {
        let journal = self.read_journal().ok()?;
        let mut urls = Vec::new();
        for (name, _) in journal.hosts.iter().filter(|(_, record)| record.role == Role::Master) {
            if let Some(url) = self.own_url(name).await {
                urls.push(url);
            }
        }
        (!urls.is_empty()).then(|| urls.join(","))
    }

    /// The URL of master host `name`'s own API, as this machine reaches it.
    pub async fn own_url(&self, name: &str) -> Option<String> {
        let host = self.hosts.provider().describe_host(name).await.ok()?;
        self.hosts.connector().connect(&host).ok().map(|a| a.public_master_url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_commands_route_through_a_bastion_only_where_up_recorded_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state_dir = dir.path();
        assert!(!ApiRoute::of_state_dir(state_dir).expect("nothing recorded").is_forwarded());

        // A cluster reached directly: a record left from before is removed.
        let recorded = state_dir.join(CLUSTER_FILE_FILE);
        std::fs::write(&recorded, "/nowhere/cluster.toml\n").expect("write");
        let err = ApiRoute::of_state_dir(state_dir).expect_err("the recorded file is gone").to_string();
        assert!(err.contains(&recorded.display().to_string()) && err.contains("gantry up"), "{err}");
        ApiRoute::default().record(state_dir, Path::new("configs/local.toml")).expect("record");
        assert!(!recorded.exists(), "a direct route keeps no record");

        // A recorded file whose provider is not behind a bastion routes directly.
        let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/local.toml");
        std::fs::write(&recorded, format!("{}\n", local.display())).expect("write");
        assert!(!ApiRoute::of_state_dir(state_dir).expect("a local cluster").is_forwarded());
    }
}
