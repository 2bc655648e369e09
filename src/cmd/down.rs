//! `gantry down CLUSTER_FILE`: undoes everything the journal records. The workloads go first
//! (every app is deleted through the API, so the agents kill their tasks), then agents are drained
//! and destroyed, then masters. Idempotent; an interrupted `down` resumes. When nothing is left,
//! the cluster's state dir (journal included) is removed: a cluster that is down leaves no
//! processes, ports or files behind.

use super::up::{ClusterArgs, ClusterSession, LinePrinter, apply, plan_json, remove_state_dir};
use crate::output::Format;
use anyhow::Context;
use gantry_provision::journal::{ClusterLock, Journal};
use gantry_provision::planner::Desired;
use std::time::{Duration, Instant};

/// Runs `gantry down`.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let json = args.output == Format::Json;
    let session = ClusterSession::open(&args)?;
    let say = |line: String| crate::output::progress(json, &line);
    let lock = ClusterLock::acquire(&session.state_dir)?;
    let mut journal = Journal::open(&session.state_dir)?;
    if let Some(url) = session.master_url().await
        && let Ok(client) = session.client(&url)
    {
        delete_workloads(&client, &say).await;
    }
    let desired = Desired::empty(session.file.name(), &session.file.source.display().to_string());
    let plan = session.plan(&desired, journal.state()).await?;
    if plan.is_empty() {
        say(format!("Nothing to destroy: the journal in {} records no hosts.", session.state_dir.display()));
    } else {
        say(plan.to_string().trim_end().to_string());
    }
    let printer = LinePrinter { to_stderr: json };
    let engine = session.engine(&printer)?;
    if !plan.is_empty() {
        apply(&engine, &plan, &mut journal).await?;
    }
    let left = session.plan(&desired, journal.state()).await?;
    if !left.is_empty() {
        anyhow::bail!("hosts are left after `down`:\n{left}");
    }
    // The cluster's own resources (a cloud's network, firewall, key pair) go after its last host.
    let resources = session.hosts.provider().cluster_resources().await.unwrap_or_default();
    if resources.iter().any(|r| r.id.is_some() && r.owned) {
        session
            .hosts
            .provider()
            .teardown()
            .await
            .context("cannot delete the cluster's network (run `down` again to retry)")?;
        for resource in resources.iter().filter(|r| r.id.is_some() && r.owned) {
            say(format!(
                "Deleted {} {} ({}).",
                resource.kind,
                resource.name,
                resource.id.as_deref().unwrap_or_default()
            ));
        }
    }
    drop(journal);
    drop(lock);
    remove_state_dir(&session.state_dir)?;
    say(format!("Cluster `{}` is down; removed {}.", session.file.name(), session.state_dir.display()));
    if json {
        crate::output::json(&serde_json::json!({ "plan": plan_json(&plan), "removed": session.state_dir }))?;
    }
    Ok(())
}

/// Deletes every app and waits (up to a minute) until no task runs on a reachable agent. A master that does not
/// answer is skipped: destroying the agents kills their tasks anyway.
async fn delete_workloads(client: &gantry_api::Client, say: &dyn Fn(String)) {
    let Ok(apps) = client.list_apps().await else {
        say(format!("The master at {} does not answer; its tasks are killed with the agents.", client.base()));
        return;
    };
    for app in &apps {
        match client.delete_app(&app.definition.id).await {
            Ok(_) => say(format!("Deleted app {}.", app.definition.id)),
            Err(e) => say(format!("Cannot delete app {}: {e}", app.definition.id)),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match client.list_tasks(None, false).await {
            // Tasks of unreachable agents cannot be stopped through the API; destroying their
            // hosts kills them.
            Ok(tasks) if tasks.iter().all(|t| t.state == gantry_api::TaskState::Unreachable) => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => return,
        }
    }
    say("Some tasks were still stopping after 60 s; they are killed with their agents.".to_string());
}
