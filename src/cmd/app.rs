//! `gantry app`: deploy, list, show, scale, restart and delete apps; list their versions and
//! roll back to one.

use super::ClientArgs;
use crate::output::{self, Format};
use gantry_api::App;
use std::path::PathBuf;

/// `gantry app …`
#[derive(Debug, clap::Subcommand)]
pub enum AppCommand {
    /// Creates an app from a TOML or JSON file, or updates it if it exists.
    Deploy {
        /// The app definition (`.toml` or `.json`).
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Lists apps with their instance counts.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Shows one app: definition and status.
    Show {
        /// App id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Sets the number of instances.
    Scale {
        /// App id.
        id: String,
        /// New instance count.
        instances: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replaces every instance with a fresh one.
    Restart {
        /// App id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Lists the app's stored versions, oldest first.
    Versions {
        /// App id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Deploys a previous version again (as a new version), rolled out as a deployment.
    Rollback {
        /// App id.
        id: String,
        /// The version to return to; the one before the current version if omitted.
        #[arg(long)]
        to: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stops every instance and removes the app.
    Delete {
        /// App id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs an app command.
pub async fn run(command: AppCommand) -> anyhow::Result<()> {
    match command {
        AppCommand::Deploy { file, client } => {
            let definition = gantry_api::workload::read_app_file(&file)?;
            let app = client.client()?.put_app(&definition).await?;
            let rollout = match &app.status.deployment {
                Some(id) => format!("; deployment {id} rolls it out (`gantry deployment show {id}`)"),
                None => String::new(),
            };
            done(&client, &app, &format!("App {} deployed (version {}){rollout}.", app.definition.id, app.version))
        }
        AppCommand::List { client } => {
            let apps = client.client()?.list_apps().await?;
            if client.output == Format::Json {
                return output::json(&apps);
            }
            let rows: Vec<Vec<String>> = apps.iter().map(summary_row).collect();
            output::table(&["ID", "INSTANCES", "RUNNING", "HEALTHY", "STAGED", "VERSION", "WAITING"], &rows);
            Ok(())
        }
        AppCommand::Show { id, client } => {
            let app = client.client()?.get_app(&id).await?;
            if client.output == Format::Json {
                return output::json(&app);
            }
            show(&app);
            Ok(())
        }
        AppCommand::Scale { id, instances, client } => {
            let app = client.client()?.scale_app(&id, instances).await?;
            done(&client, &app, &format!("App {id} scaled to {instances} instances."))
        }
        AppCommand::Restart { id, client } => {
            let app = client.client()?.restart_app(&id).await?;
            done(&client, &app, &format!("App {id} is restarting (version {}).", app.version))
        }
        AppCommand::Versions { id, client } => {
            let versions = client.client()?.app_versions(&id).await?;
            if client.output == Format::Json {
                return output::json(&versions);
            }
            let rows: Vec<Vec<String>> = versions
                .iter()
                .map(|v| {
                    let d = &v.definition;
                    let what = d.cmd.clone().or_else(|| d.args.as_ref().map(|a| a.join(" "))).unwrap_or_default();
                    vec![v.version.to_string(), output::age(v.created_at), d.instances.to_string(), what]
                })
                .collect();
            output::table(&["VERSION", "AGE", "INSTANCES", "COMMAND"], &rows);
            Ok(())
        }
        AppCommand::Rollback { id, to, client } => {
            let app = client.client()?.rollback_app(&id, to).await?;
            let deployment = app.status.deployment.clone().unwrap_or_else(|| "-".to_string());
            done(
                &client,
                &app,
                &format!("App {id} is rolling back (version {}, deployment {deployment}).", app.version),
            )
        }
        AppCommand::Delete { id, client } => {
            let app = client.client()?.delete_app(&id).await?;
            done(&client, &app, &format!("App {id} deleted; its tasks are being stopped."))
        }
    }
}

fn done(client: &ClientArgs, app: &App, sentence: &str) -> anyhow::Result<()> {
    if client.output == Format::Json {
        return output::json(app);
    }
    println!("{sentence}");
    Ok(())
}

fn summary_row(app: &App) -> Vec<String> {
    let s = &app.status;
    vec![
        app.definition.id.clone(),
        s.instances.to_string(),
        s.running.to_string(),
        s.healthy.to_string(),
        s.staged.to_string(),
        app.version.to_string(),
        s.waiting.clone().unwrap_or_else(|| "-".to_string()),
    ]
}

fn show(app: &App) {
    let d = &app.definition;
    let s = &app.status;
    println!("id:         {}", d.id);
    println!("version:    {} (updated {} ago)", app.version, output::age(app.updated_at));
    match (&d.cmd, &d.args) {
        (Some(cmd), _) => println!("cmd:        {cmd}"),
        (None, Some(args)) => println!("args:       {args:?}"),
        (None, None) => {}
    }
    println!(
        "resources:  cpus={} mem={} disk={}{}",
        output::number(d.cpus),
        output::number(d.mem),
        output::number(d.disk),
        if d.gpus > 0 { format!(" gpus={}", d.gpus) } else { String::new() }
    );
    if !d.ports.is_empty() {
        let ports: Vec<String> = d
            .ports
            .iter()
            .map(|p| if p.port == 0 { p.name.clone() } else { format!("{}={}", p.name, p.port) })
            .collect();
        println!("ports:      {}", ports.join(", "));
    }
    for c in &d.constraints {
        println!("constraint: {c}");
    }
    for hc in &d.health_checks {
        println!(
            "health:     {} every {}s, {} failures",
            format!("{:?}", hc.protocol).to_uppercase(),
            output::number(hc.interval),
            hc.max_consecutive_failures
        );
    }
    println!(
        "instances:  {} wanted, {} running, {} healthy, {} unhealthy, {} staged",
        s.instances, s.running, s.healthy, s.unhealthy, s.staged
    );
    if let Some(waiting) = &s.waiting {
        println!("waiting:    {waiting}");
    }
    if let Some(deployment) = &s.deployment {
        println!("deployment: {deployment} (`gantry deployment show {deployment}`)");
    }
    if let Some(until) = s.backoff_until {
        let seconds = until.saturating_sub(gantry_api::now_millis()) / 1000;
        println!("backoff:    next launch in {seconds}s");
    }
}
