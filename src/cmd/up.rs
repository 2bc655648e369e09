//! `gantry up CLUSTER_FILE`: makes the cluster match the file — plans, prints the plan, applies it
//! with per-host progress (resuming whatever an earlier run left unfinished), deploys the file's
//! workloads and prints where the API is. A second run prints "No changes". Also holds what
//! `plan`, `status` and `down` share: opening a cluster's file, state and provider.

use crate::output::Format;
use anyhow::Context;
use gantry_api::AgentState;
use gantry_provider_local::LocalProvider;
use gantry_provision::access::Connector;
use gantry_provision::bootstrap::RuntimeSettings;
use gantry_provision::cluster_api::{ClusterApi, HttpClusterApi};
use gantry_provision::cluster_file::{ClusterFile, ProviderKind, Role};
use gantry_provision::engine::{Engine, EngineOptions, PRIMARY_MASTER, Progress, ProgressEvent};
use gantry_provision::journal::{self, ClusterLock, HostPhase, Journal, JournalState};
use gantry_provision::planner::{self, ActionKind, Desired, Plan};
use gantry_provision::provider::{self, Provider, TransportKind};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// File in the state dir holding the master URL (for client commands).
pub use crate::discover::MASTER_URL_FILE;

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
    pub provider: LocalProvider,
}

impl ClusterSession {
    /// Loads and validates the file and picks its provider (no side effects).
    pub fn open(args: &ClusterArgs) -> anyhow::Result<Self> {
        let file = ClusterFile::load(&args.file)?;
        let state_dir = journal::state_dir(file.name(), args.state_dir.as_deref())?;
        let provider = match file.provider() {
            ProviderKind::Local => LocalProvider::new(file.name(), &state_dir, file.local()),
            other => anyhow::bail!("provider `{other}` is not available in this build"),
        };
        Ok(Self { file, state_dir, provider })
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
        let hosts = self.provider.list_hosts().await.context("cannot list the cluster's hosts")?;
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
        let parallelism = match self.provider.capabilities().transport {
            TransportKind::Ssh => *self.file.ssh.parallelism.get_ref() as usize,
            TransportKind::Local => EngineOptions::default().parallelism,
        };
        Ok(Engine {
            cluster: self.file.name().to_string(),
            provider: &self.provider,
            connector: &self.provider,
            api: Arc::new(HttpClusterApi),
            progress,
            runtime: RuntimeSettings::from_cluster_file(&self.file),
            binary,
            options: EngineOptions { parallelism, ..EngineOptions::default() },
        })
    }

    /// The primary master's URL, if that host exists.
    pub async fn master_url(&self) -> Option<String> {
        let host = self.provider.describe_host(PRIMARY_MASTER).await.ok()?;
        self.provider.connect(&host).ok().map(|a| a.master_url())
    }
}

/// Prints progress as lines: `[workers-1] upload-binary … done (12 ms)`.
#[derive(Debug)]
pub struct LinePrinter {
    /// Print to stderr (when stdout carries JSON).
    pub to_stderr: bool,
}

impl Progress for LinePrinter {
    fn event(&self, event: ProgressEvent) {
        let line = match event {
            ProgressEvent::PhaseFinished { host, phase, skipped, detail, elapsed } => {
                let what = match (skipped, detail.is_empty()) {
                    (true, _) => format!("skipped: {detail}"),
                    (false, true) => "done".to_string(),
                    (false, false) => format!("done: {detail}"),
                };
                format!("[{host}] {phase} … {what} ({})", millis(elapsed))
            }
            ProgressEvent::Retrying { host, phase, attempt, delay, error } => {
                format!("[{host}] {phase} … attempt {attempt} failed, retrying in {}: {error}", millis(delay))
            }
            ProgressEvent::PhaseFailed { host, phase, error, elapsed } => {
                format!("[{host}] {phase} … FAILED ({}): {error}", millis(elapsed))
            }
            ProgressEvent::ActionFinished { action: ActionKind::Create, .. } => return,
            ProgressEvent::ActionFinished { host, action, elapsed } => {
                format!("[{host}] {} complete ({})", action.verb(), millis(elapsed))
            }
            ProgressEvent::ActionStarted { .. } | ProgressEvent::ActionFailed { .. } => return,
        };
        if self.to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
            let _ = std::io::stdout().flush();
        }
    }
}

fn millis(d: Duration) -> String {
    if d < Duration::from_secs(10) { format!("{} ms", d.as_millis()) } else { format!("{:.1} s", d.as_secs_f64()) }
}

/// The plan as JSON.
pub fn plan_json(plan: &Plan) -> serde_json::Value {
    let actions: Vec<serde_json::Value> = plan
        .actions
        .iter()
        .map(|a| {
            serde_json::json!({
                "host": a.host_name(), "action": a.kind().verb(), "role": a.role().to_string(),
                "pool": a.pool(), "reason": a.reason().to_string(),
            })
        })
        .collect();
    serde_json::json!({ "cluster": plan.cluster, "source": plan.source, "actions": actions, "ignored": plan.ignored })
}

/// Applies `plan`; Ctrl-C stops it with the journal recording where (the next run resumes).
pub async fn apply(engine: &Engine<'_>, plan: &Plan, journal: &mut Journal) -> anyhow::Result<Option<String>> {
    tokio::select! {
        report = engine.apply(plan, journal) => Ok(report?.master_url),
        _ = tokio::signal::ctrl_c() => anyhow::bail!(
            "interrupted: the journal records what was under way; run the command again to resume"
        ),
    }
}

/// Runs `gantry up`.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let json = args.output == Format::Json;
    let session = ClusterSession::open(&args)?;
    let _lock = ClusterLock::acquire(&session.state_dir)?;
    let mut journal = Journal::open(&session.state_dir)?;
    let desired = session.desired()?;
    let plan = session.plan(&desired, journal.state()).await?;
    let say = |line: String| if json { eprintln!("{line}") } else { println!("{line}") };
    say(plan.to_string().trim_end().to_string());
    let printer = LinePrinter { to_stderr: json };
    let engine = session.engine(&printer)?;
    let started = std::time::Instant::now();
    let master_url =
        if plan.is_empty() { session.master_url().await } else { apply(&engine, &plan, &mut journal).await? };
    let master_url = master_url.context("the cluster has no master after `up` (is master-0 in the journal?)")?;
    std::fs::write(session.state_dir.join(MASTER_URL_FILE), format!("{master_url}\n"))
        .with_context(|| format!("cannot record the master URL in {}", session.state_dir.display()))?;
    let workloads = deploy_workloads(&session.file, &master_url).await?;
    for (id, what) in &workloads {
        say(format!("Workload {id}: {what}"));
    }
    if !plan.is_empty() {
        say(format!("Cluster `{}` is up ({:.1} s).", session.file.name(), started.elapsed().as_secs_f64()));
    }
    if json {
        let workloads: Vec<_> =
            workloads.iter().map(|(id, what)| serde_json::json!({"workload": id, "result": what})).collect();
        crate::output::json(&serde_json::json!({
            "plan": plan_json(&plan), "master_url": master_url, "state_dir": session.state_dir, "workloads": workloads,
        }))?;
    } else {
        println!("API: {master_url}");
        println!("export GANTRY_MASTER={master_url}");
    }
    Ok(())
}

/// Puts every `[[workload]]` app and job; returns (id, what happened).
async fn deploy_workloads(file: &ClusterFile, master_url: &str) -> anyhow::Result<Vec<(String, String)>> {
    let client = gantry_api::Client::new(master_url)?;
    let mut results = Vec::new();
    for path in file.app_files() {
        let definition = gantry_api::workload::read_app_file(&path)?;
        let before = client.get_app(&definition.id).await.ok();
        if before.as_ref().is_some_and(|app| app.definition == definition) {
            results.push((definition.id.clone(), "unchanged".to_string()));
            continue;
        }
        let app = client
            .put_app(&definition)
            .await
            .with_context(|| format!("cannot deploy {} from {}", definition.id, path.display()))?;
        let what = if before.is_some() { "updated" } else { "deployed" };
        results.push((app.definition.id.clone(), format!("{what} (version {})", app.version)));
    }
    for path in file.job_files() {
        let definition = gantry_api::workload::read_job_file(&path)?;
        let before = client.get_job(&definition.id).await.ok();
        if before.as_ref().is_some_and(|job| job.definition == definition) {
            results.push((definition.id.clone(), "unchanged".to_string()));
            continue;
        }
        client
            .put_job(&definition)
            .await
            .with_context(|| format!("cannot deploy job {} from {}", definition.id, path.display()))?;
        let what = if before.is_some() { "updated" } else { "deployed" };
        results.push((definition.id.clone(), format!("job {what}")));
    }
    Ok(results)
}

/// Removes the state dir once nothing of the cluster is left (`down`).
pub fn remove_state_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove the state dir {}", dir.display())),
    }
}
