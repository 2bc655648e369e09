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
    /// Shows one task: where it runs, its state and why, its resources and the limits its
    /// agent enforces.
    Show {
        /// Task id.
        task: String,
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
        TaskCommand::Show { task, client } => {
            let task = client.client()?.get_task(&task).await?;
            if client.output == Format::Json {
                return output::json(&task);
            }
            print!("{}", describe(&task));
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

/// The text of `task show`.
fn describe(task: &gantry_api::Task) -> String {
    let health = match task.healthy {
        Some(true) => "healthy",
        Some(false) => "unhealthy",
        None => "-",
    };
    let ports: Vec<String> = task.ports.iter().map(u16::to_string).collect();
    let r = &task.resources;
    let mut text = format!(
        "Task:      {}\nApp:       {} (version {})\nHost:      {} (agent {})\nState:     {}\nHealth:    {health}\nPorts:     {}\nResources: cpus={} mem={} MiB disk={} MiB gpus={}\nStaged:    {}\n",
        task.id,
        task.app_id,
        task.app_version,
        task.host,
        task.agent_id,
        task.state,
        if ports.is_empty() { "-".to_string() } else { ports.join(",") },
        r.cpus,
        r.mem,
        r.disk,
        r.gpus,
        output::age(task.staged_at),
    );
    if let Some(code) = task.exit_code {
        text.push_str(&format!("Exit code: {code}\n"));
    }
    if let Some(message) = &task.message {
        text.push_str(&format!("Message:   {message}\n"));
    }
    if task.limits.is_empty() {
        text.push_str("Limits:    (reported once the task runs)\n");
    } else {
        text.push_str("Limits:\n");
        for limit in &task.limits {
            text.push_str(&format!("  {limit}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_names_the_reason_and_every_limit() {
        let task: gantry_api::Task = serde_json::from_value(serde_json::json!({
            "id": "web.1", "app_id": "web", "app_version": 3, "agent_id": "a1", "host": "h1",
            "state": "FAILED", "ports": [31000],
            "resources": {"cpus": 0.5, "mem": 128.0, "disk": 0.0, "gpus": 0, "ports": []},
            "staged_at": 0, "exit_code": null, "message": "out of memory (limit 128 MiB)",
            "limits": ["mem 128 MiB: cgroup v1 (memory.limit_in_bytes)", "pids 4096: cgroup v1 (pids.max)"]
        }))
        .expect("a task");
        let text = describe(&task);
        assert!(text.contains("Message:   out of memory (limit 128 MiB)\n"), "{text}");
        assert!(text.contains("  mem 128 MiB: cgroup v1 (memory.limit_in_bytes)\n"), "{text}");
        assert!(text.contains("Ports:     31000\n"), "{text}");
    }
}
