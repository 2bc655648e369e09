//! `gantry task`: list, kill, and read the logs of tasks.

use super::ClientArgs;
use crate::output::{self, Format};
use gantry_api::client::LogsQuery;
use std::io::Write;
use std::time::Duration;

/// `gantry task …`
#[derive(Debug, clap::Subcommand)]
pub enum TaskCommand {
    /// Lists running and staging tasks (with `--all`, finished ones too).
    List {
        /// Only the tasks of this app.
        #[arg(long)]
        app: Option<String>,
        /// Include finished, failed and killed tasks.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Prints a task's stdout (or stderr).
    Logs {
        /// Task id.
        task: String,
        /// Keep printing as the task writes, until it ends (Ctrl-C to stop).
        #[arg(long, short)]
        follow: bool,
        /// Print stderr instead of stdout.
        #[arg(long)]
        stderr: bool,
        /// Start this many bytes before the end instead of at the beginning.
        #[arg(long)]
        tail: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stops a task; its app starts a replacement.
    Kill {
        /// Task id.
        task: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs a task command.
pub async fn run(command: TaskCommand) -> anyhow::Result<()> {
    match command {
        TaskCommand::List { app, all, client } => {
            let tasks = client.client()?.list_tasks(app.as_deref(), all).await?;
            if client.output == Format::Json {
                return output::json(&tasks);
            }
            let rows: Vec<Vec<String>> = tasks
                .iter()
                .map(|t| {
                    let health = match t.healthy {
                        Some(true) => "healthy",
                        Some(false) => "unhealthy",
                        None => "-",
                    };
                    let ports: Vec<String> = t.ports.iter().map(u16::to_string).collect();
                    vec![
                        t.id.clone(),
                        t.state.to_string(),
                        health.to_string(),
                        t.host.clone(),
                        if ports.is_empty() { "-".to_string() } else { ports.join(",") },
                        output::age(t.staged_at),
                        t.message.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(&["ID", "STATE", "HEALTH", "HOST", "PORTS", "AGE", "MESSAGE"], &rows);
            Ok(())
        }
        TaskCommand::Kill { task, client } => {
            let killed = client.client()?.kill_task(&task).await?;
            if client.output == Format::Json {
                return output::json(&killed);
            }
            println!("Task {task} is being killed; app {} will replace it.", killed.app_id);
            Ok(())
        }
        TaskCommand::Logs { task, follow, stderr, tail, client } => {
            let api = client.client()?;
            let stream = if stderr { "stderr" } else { "stdout" };
            let mut offset = tail.map_or(0, |t| -i64::try_from(t).unwrap_or(i64::MAX));
            let mut stdout = std::io::stdout();
            loop {
                let query = LogsQuery { stream: stream.to_string(), offset, length: 256 * 1024 };
                let chunk = api.task_logs(&task, &query).await?;
                if client.output == Format::Json {
                    output::json(&chunk)?;
                } else {
                    stdout.write_all(chunk.data.as_bytes())?;
                    stdout.flush()?;
                }
                offset = i64::try_from(chunk.next_offset).unwrap_or(i64::MAX);
                if !chunk.data.is_empty() {
                    continue;
                }
                if !follow || chunk.eof {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}
