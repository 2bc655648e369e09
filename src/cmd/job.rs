//! `gantry job`: deploy, list, show and delete jobs; start, list, show and stop their runs.

use super::ClientArgs;
use crate::output::{self, Format};
use gantry_api::job::RunTrigger;
use gantry_api::{Job, JobRun};
use std::path::PathBuf;

/// `gantry job …`
#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
    /// Creates a job from a TOML or JSON file, or replaces its definition if it exists.
    Deploy {
        /// The job definition (`.toml` or `.json`).
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Lists jobs with their runs and next scheduled time.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Shows one job: definition and run summary.
    Show {
        /// Job id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Starts a run of a job now.
    Run {
        /// Job id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Lists a job's runs, newest first (active and finished).
    Runs {
        /// Job id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Shows one run with its attempts.
    ShowRun {
        /// Job id.
        id: String,
        /// Run id.
        run: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stops a run: kills its task; the run ends FAILED.
    StopRun {
        /// Job id.
        id: String,
        /// Run id.
        run: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Removes a job and its run history.
    Delete {
        /// Job id.
        id: String,
        /// Stop active runs instead of refusing.
        #[arg(long)]
        stop_current_runs: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs a job command.
pub async fn run(command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::Deploy { file, client } => {
            let definition = gantry_api::workload::read_job_file(&file)?;
            let job = client.client()?.put_job(&definition).await?;
            if client.output == Format::Json {
                return output::json(&job);
            }
            println!("Job {} deployed.", job.definition.id);
            Ok(())
        }
        JobCommand::List { client } => {
            let jobs = client.client()?.list_jobs().await?;
            if client.output == Format::Json {
                return output::json(&jobs);
            }
            let rows: Vec<Vec<String>> = jobs.iter().map(job_row).collect();
            output::table(&["ID", "ACTIVE", "SUCCEEDED", "FAILED", "LAST RUN", "NEXT RUN"], &rows);
            Ok(())
        }
        JobCommand::Show { id, client } => {
            let job = client.client()?.get_job(&id).await?;
            if client.output == Format::Json {
                return output::json(&job);
            }
            show_job(&job);
            Ok(())
        }
        JobCommand::Run { id, client } => {
            let run = client.client()?.start_job_run(&id).await?;
            if client.output == Format::Json {
                return output::json(&run);
            }
            println!("Run {} of job {id} started.", run.id);
            Ok(())
        }
        JobCommand::Runs { id, client } => {
            let runs = client.client()?.list_job_runs(&id).await?;
            if client.output == Format::Json {
                return output::json(&runs);
            }
            let rows: Vec<Vec<String>> = runs.iter().map(run_row).collect();
            output::table(&["RUN", "STATUS", "TRIGGER", "ATTEMPTS", "CREATED", "MESSAGE"], &rows);
            Ok(())
        }
        JobCommand::ShowRun { id, run, client } => {
            let run = client.client()?.get_job_run(&id, &run).await?;
            if client.output == Format::Json {
                return output::json(&run);
            }
            show_run(&run);
            Ok(())
        }
        JobCommand::StopRun { id, run, client } => {
            let run = client.client()?.stop_job_run(&id, &run).await?;
            if client.output == Format::Json {
                return output::json(&run);
            }
            println!("Run {} of job {id} is stopping.", run.id);
            Ok(())
        }
        JobCommand::Delete { id, stop_current_runs, client } => {
            let job = client.client()?.delete_job(&id, stop_current_runs).await?;
            if client.output == Format::Json {
                return output::json(&job);
            }
            println!("Job {id} deleted.");
            Ok(())
        }
    }
}

fn in_future(at: u64) -> String {
    let seconds = at.saturating_sub(gantry_api::now_millis()) / 1000;
    format!("in {seconds}s")
}

fn job_row(job: &Job) -> Vec<String> {
    let s = &job.status;
    vec![
        job.definition.id.clone(),
        s.active_runs.to_string(),
        s.successful_runs.to_string(),
        s.failed_runs.to_string(),
        s.last_run.map_or_else(|| "-".to_string(), |r| r.to_string()),
        s.next_run_at.map_or_else(|| "-".to_string(), in_future),
    ]
}

fn trigger(run: &JobRun) -> String {
    match &run.trigger {
        RunTrigger::Manual => "manual".to_string(),
        RunTrigger::Schedule { schedule_id, .. } => format!("schedule {schedule_id}"),
    }
}

fn run_row(run: &JobRun) -> Vec<String> {
    vec![
        run.id.clone(),
        run.status.to_string(),
        trigger(run),
        run.attempts.len().to_string(),
        format!("{} ago", output::age(run.created_at)),
        run.message.clone().unwrap_or_else(|| "-".to_string()),
    ]
}

fn show_job(job: &Job) {
    let d = &job.definition;
    println!("id:         {}", d.id);
    if let Some(description) = &d.description {
        println!("about:      {description}");
    }
    match (&d.run.cmd, &d.run.args) {
        (Some(cmd), _) => println!("cmd:        {cmd}"),
        (None, Some(args)) => println!("args:       {args:?}"),
        (None, None) => {}
    }
    println!(
        "resources:  cpus={} mem={} disk={}",
        output::number(d.run.cpus),
        output::number(d.run.mem),
        output::number(d.run.disk)
    );
    let restart = serde_json::to_value(d.run.restart_policy).ok();
    println!("restart:    {}", restart.as_ref().and_then(|v| v.as_str()).unwrap_or("?"));
    if let Some(deadline) = d.run.active_deadline {
        println!("deadline:   {}s", output::number(deadline));
    }
    for s in &d.schedules {
        let policy = serde_json::to_value(s.concurrency_policy).ok();
        println!(
            "schedule:   {} `{}` {} {}{}",
            s.id,
            s.cron,
            s.time_zone,
            policy.as_ref().and_then(|v| v.as_str()).unwrap_or("?"),
            if s.enabled { "" } else { " (disabled)" }
        );
    }
    let s = &job.status;
    println!("runs:       {} active, {} succeeded, {} failed", s.active_runs, s.successful_runs, s.failed_runs);
    if let Some(next) = s.next_run_at {
        println!("next run:   {}", in_future(next));
    }
}

fn show_run(run: &JobRun) {
    println!("run:        {} of job {}", run.id, run.job_id);
    println!("status:     {}", run.status);
    println!("trigger:    {}", trigger(run));
    println!("created:    {} ago", output::age(run.created_at));
    if let Some(message) = &run.message {
        println!("message:    {message}");
    }
    for attempt in &run.attempts {
        let exit = attempt.exit_code.map(|c| format!(" exit {c}")).unwrap_or_default();
        println!("attempt:    {} on {} {}{exit}", attempt.task_id, attempt.agent_id, attempt.state);
    }
}
