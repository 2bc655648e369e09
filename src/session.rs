//! What `plan`, `up`, `status` and `down` share: a cluster file opened with its state dir and its
//! provider, the plan towards it, and where the master's API is.

use crate::output::Format;
use anyhow::Context;
use gantry_api::AgentState;
use gantry_provider_local::LocalProvider;
use gantry_provider_onprem::OnpremProvider;
use gantry_provision::access::Connector;
use gantry_provision::bootstrap::RuntimeSettings;
use gantry_provision::cluster_api::{ClusterApi, HttpClusterApi};
use gantry_provision::cluster_file::{ClusterFile, ProviderKind, Role};
use gantry_provision::engine::{Engine, EngineOptions, PRIMARY_MASTER, Progress};
use gantry_provision::journal::{self, HostPhase, Journal, JournalState};
use gantry_provision::planner::{self, Desired, Plan};
use gantry_provision::provider::{self, Provider, TransportKind};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The provider a cluster file names; each is also the [`Connector`] of its hosts.
#[derive(Debug)]
pub enum Hosts {
    /// Directories and processes on this machine.
    Local(LocalProvider),
    /// Existing hosts over SSH.
    Onprem(Box<OnpremProvider>),
}

impl Hosts {
    /// The provider.
    pub fn provider(&self) -> &dyn Provider {
        match self {
            Self::Local(p) => p,
            Self::Onprem(p) => p.as_ref(),
        }
    }

    /// How its hosts are reached.
    pub fn connector(&self) -> &dyn Connector {
        match self {
            Self::Local(p) => p,
            Self::Onprem(p) => p.as_ref(),
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
}

impl ClusterSession {
    /// Loads and validates the file and picks its provider (no side effects).
    pub fn open(args: &ClusterArgs) -> anyhow::Result<Self> {
        let file = ClusterFile::load(&args.file)?;
        let state_dir = journal::state_dir(file.name(), args.state_dir.as_deref())?;
        let hosts = match file.provider() {
            ProviderKind::Local => Hosts::Local(LocalProvider::new(file.name(), &state_dir, file.local())),
            ProviderKind::Onprem => Hosts::Onprem(Box::new(OnpremProvider::new(&file, &state_dir))),
            other => anyhow::bail!("provider `{other}` is not available in this build"),
        };
        Ok(Self { file, state_dir, hosts })
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
        let api = HttpClusterApi;
        let settled = journal.hosts.iter().filter(|(_, r)| r.phase == HostPhase::Bootstrapped && r.pending.is_none());
        for (name, record) in settled {
            let why = match record.role {
                Role::Master if name == PRIMARY_MASTER => match api.health(&url).await {
                    Ok(()) => continue,
                    Err(_) => "the master's API does not answer".to_string(),
                },
                Role::Master => continue,
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
            api: Arc::new(HttpClusterApi),
            progress,
            runtime: RuntimeSettings::from_cluster_file(&self.file),
            binary,
            options: EngineOptions { parallelism, ..EngineOptions::default() },
        })
    }

    /// The primary master's URL, if that host exists.
    pub async fn master_url(&self) -> Option<String> {
        let host = self.hosts.provider().describe_host(PRIMARY_MASTER).await.ok()?;
        self.hosts.connector().connect(&host).ok().map(|a| a.master_url())
    }
}
