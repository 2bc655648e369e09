//! `gantry up CLUSTER_FILE`: makes the cluster match the file — plans, prints the plan, applies it
//! with per-host progress (resuming whatever an earlier run left unfinished), deploys the file's
//! workloads and prints where the API is. A second run prints "No changes". Also holds the
//! progress printer and apply step that `down` shares.

use crate::output::Format;
use anyhow::Context;
use gantry_provision::cluster_file::ClusterFile;
use gantry_provision::engine::{Engine, Progress, ProgressEvent};
use gantry_provision::journal::{ClusterLock, Journal};
use gantry_provision::planner::{ActionKind, Plan};
use std::path::Path;
use std::time::Duration;

/// File in the state dir holding the master URL (for client commands).
pub use crate::discover::MASTER_URL_FILE;
pub use crate::session::{ClusterArgs, ClusterSession};

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
        crate::output::progress(self.to_stderr, &line);
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
    let say = |line: String| crate::output::progress(json, &line);
    say(plan.to_string().trim_end().to_string());
    let printer = LinePrinter { to_stderr: json };
    let engine = session.engine(&printer)?;
    let started = std::time::Instant::now();
    let master_url =
        if plan.is_empty() { session.master_url().await } else { apply(&engine, &plan, &mut journal).await? };
    let master_url =
        master_url.context("the cluster has no master after `up` (the journal records none the provider still has)")?;
    std::fs::write(session.state_dir.join(MASTER_URL_FILE), format!("{master_url}\n"))
        .with_context(|| format!("cannot record the master URL in {}", session.state_dir.display()))?;
    session.route.record(&session.state_dir, &args.file)?;
    let workloads = deploy_workloads(&session.file, session.client(&master_url)?).await?;
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
        say(format!("API: {master_url}"));
        say(format!(
            "Client commands use the admin token and CA in {} by themselves; elsewhere: export GANTRY_MASTER={master_url} GANTRY_CA_CERT=… GANTRY_TOKEN=…",
            session.state_dir.display()
        ));
    }
    Ok(())
}

/// Puts every `[[workload]]` app and job; returns (id, what happened).
async fn deploy_workloads(file: &ClusterFile, client: gantry_api::Client) -> anyhow::Result<Vec<(String, String)>> {
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
