//! `gantry deployment`: list, show, cancel and promote deployments.

use super::ClientArgs;
use crate::output::{self, Format};
use gantry_api::Deployment;
use gantry_api::deployment::StepStatus;

/// `gantry deployment …`
#[derive(Debug, clap::Subcommand)]
pub enum DeploymentCommand {
    /// Lists active and recent deployments.
    List {
        /// Only this app's deployments.
        #[arg(long)]
        app: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Shows one deployment: steps, progress and, when stuck, why.
    Show {
        /// Deployment id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stops a deployment and deploys the version it started from again.
    Cancel {
        /// Deployment id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Lets a deployment waiting on its healthy canaries replace the remaining instances.
    Promote {
        /// Deployment id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs a deployment command.
pub async fn run(command: DeploymentCommand) -> anyhow::Result<()> {
    match command {
        DeploymentCommand::List { app, client } => {
            let list = client.client()?.list_deployments(app.as_deref()).await?;
            if client.output == Format::Json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list.iter().map(row).collect();
            output::table(&["ID", "APP", "VERSIONS", "KIND", "STATUS", "PROGRESS", "AGE", "REASON"], &rows);
            Ok(())
        }
        DeploymentCommand::Show { id, client } => {
            let d = client.client()?.get_deployment(&id).await?;
            if client.output == Format::Json {
                return output::json(&d);
            }
            show(&d);
            Ok(())
        }
        DeploymentCommand::Cancel { id, client } => {
            let d = client.client()?.cancel_deployment(&id).await?;
            if client.output == Format::Json {
                return output::json(&d);
            }
            let rollback = d.rollback_id.as_deref().unwrap_or("-");
            println!(
                "Deployment {id} cancelled; app {} returns to version {} (deployment {rollback}).",
                d.app_id, d.from_version
            );
            Ok(())
        }
        DeploymentCommand::Promote { id, client } => {
            let d = client.client()?.promote_deployment(&id).await?;
            if client.output == Format::Json {
                return output::json(&d);
            }
            println!("Deployment {id} promoted; app {} rolls out version {}.", d.app_id, d.to_version);
            Ok(())
        }
    }
}

fn row(d: &Deployment) -> Vec<String> {
    vec![
        d.id.clone(),
        d.app_id.clone(),
        format!("{}→{}", d.from_version, d.to_version),
        format!("{:?}", d.kind).to_lowercase(),
        d.status.to_string(),
        format!("{}/{} new ready, {} old", d.progress.new_ready, d.progress.instances, d.progress.old_active),
        output::age(d.created_at),
        d.reason.clone().unwrap_or_else(|| "-".to_string()),
    ]
}

fn show(d: &Deployment) {
    let p = &d.progress;
    println!("id:         {}", d.id);
    println!("app:        {} (version {} → {})", d.app_id, d.from_version, d.to_version);
    println!("kind:       {:?}", d.kind);
    println!("status:     {} (started {} ago)", d.status, output::age(d.created_at));
    let s = &d.strategy;
    println!(
        "strategy:   minimum_health_capacity={} maximum_over_capacity={} progress_deadline={}s auto_rollback={}{}",
        output::number(s.minimum_health_capacity),
        output::number(s.maximum_over_capacity),
        output::number(s.progress_deadline),
        s.auto_rollback,
        if s.canary > 0 { format!(" canary={} auto_promote={}", s.canary, s.auto_promote) } else { String::new() }
    );
    println!(
        "progress:   {}/{} new ready ({} running), {} old ({} ready); keeps ≥{} ready, runs ≤{}",
        p.new_ready, p.instances, p.new_active, p.old_active, p.old_ready, p.min_ready, p.max_active
    );
    for step in &d.steps {
        let mark = match step.status {
            StepStatus::Done => "done",
            StepStatus::Running => "running",
            StepStatus::Pending => "pending",
            StepStatus::Stopped => "stopped",
        };
        println!("step:       {:<8} {:<8} {}", step.name, mark, step.description);
    }
    if let Some(reason) = &d.reason {
        println!("reason:     {reason}");
    }
    if let Some(rollback) = &d.rollback_id {
        println!("rollback:   {rollback}");
    }
}
