//! `gantry node`: the cluster's agents: list them, drain one.

use super::ClientArgs;
use crate::output::{self, Format};
use anyhow::Context;
use gantry_api::{Client, DrainRequest, DrainStatus};
use std::time::Duration;

/// `gantry node …`
#[derive(Debug, clap::Subcommand)]
pub enum NodeCommand {
    /// Lists agents with their resources, usage and standing (ACTIVE, DRAINING, UNREACHABLE).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Drains an agent: it gets no new tasks; its service tasks are replaced elsewhere first and
    /// stopped once their replacements are healthy (within each app's minimum health capacity);
    /// its job runs may finish until the deadline, when whatever is left is killed.
    Drain {
        /// The agent's id, or the hostname of exactly one agent.
        agent: String,
        /// How long its tasks get before what is left is killed, e.g. `90s`, `5m`, `1h`. Asking
        /// again for a draining agent moves its deadline.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        deadline: Duration,
        /// Wait until nothing is left on the agent or the deadline passed, printing progress.
        #[arg(long)]
        wait: bool,
        /// Cancel the agent's drain instead: it takes tasks again.
        #[arg(long, conflicts_with = "wait")]
        cancel: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs a node command.
pub async fn run(command: NodeCommand) -> anyhow::Result<()> {
    match command {
        NodeCommand::List { client } => {
            let agents = client.client()?.list_agents().await?;
            if client.output == Format::Json {
                return output::json(&agents);
            }
            let rows: Vec<Vec<String>> = agents
                .iter()
                .map(|a| {
                    let attributes: Vec<String> = a.info.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    vec![
                        a.info.id.clone(),
                        a.info.hostname.clone(),
                        a.standing().to_string(),
                        a.tasks.to_string(),
                        format!("{}/{}", output::number(a.used.cpus), output::number(a.info.resources.cpus)),
                        format!("{}/{}", output::number(a.used.mem), output::number(a.info.resources.mem)),
                        if attributes.is_empty() { "-".to_string() } else { attributes.join(";") },
                        output::age(a.last_seen_at),
                    ]
                })
                .collect();
            output::table(&["ID", "HOSTNAME", "STATE", "TASKS", "CPUS", "MEM", "ATTRIBUTES", "SEEN"], &rows);
            Ok(())
        }
        NodeCommand::Drain { agent, deadline, wait, cancel, client } => {
            let api = client.client()?;
            let id = resolve(&api, &agent).await?;
            let json = client.output == Format::Json;
            let status = if cancel {
                api.cancel_drain(&id).await?
            } else {
                api.drain_agent(&id, &DrainRequest { deadline: deadline.as_secs_f64() }).await?
            };
            let status = if wait { wait_drained(&api, status, json).await? } else { status };
            if json {
                return output::json(&status);
            }
            print_status(&status);
            Ok(())
        }
    }
}

/// The id of the agent named `name`: an agent id, or the hostname of exactly one agent.
async fn resolve(api: &Client, name: &str) -> anyhow::Result<String> {
    let agents = api.list_agents().await?;
    if agents.iter().any(|a| a.info.id == name) {
        return Ok(name.to_string());
    }
    let named: Vec<&str> = agents.iter().filter(|a| a.info.hostname == name).map(|a| a.info.id.as_str()).collect();
    match named.as_slice() {
        [id] => Ok((*id).to_string()),
        [] => anyhow::bail!("no agent `{name}`: `gantry node list` shows their ids and hostnames"),
        ids => {
            anyhow::bail!("{} agents are registered as `{name}` ({}): name one by its id", ids.len(), ids.join(", "))
        }
    }
}

/// Polls the drain until nothing is left or the deadline passed, printing each change of the
/// number of tasks left (on stderr when stdout carries JSON).
async fn wait_drained(api: &Client, mut status: DrainStatus, json: bool) -> anyhow::Result<DrainStatus> {
    let mut shown = None;
    loop {
        if status.drain.is_none() || status.done() || status.deadline_passed {
            return Ok(status);
        }
        if shown != Some(status.tasks.len()) {
            let stuck = status.stuck.as_ref().map(|why| format!(" ({why})")).unwrap_or_default();
            output::progress(json, &format!("{}: {} tasks left{stuck}", status.hostname, status.tasks.len()));
            shown = Some(status.tasks.len());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        status = api.agent_drain(&status.agent_id).await.context("following the drain")?;
    }
}

fn print_status(status: &DrainStatus) {
    let who = format!("Agent {} ({})", status.agent_id, status.hostname);
    match status.drain {
        None => println!("{who} is not draining: it takes tasks."),
        Some(_) if status.done() => println!("{who} is drained: no tasks left."),
        Some(drain) => {
            let left = status.tasks.len();
            let when = if status.deadline_passed {
                "its deadline passed; what was left is being killed".to_string()
            } else {
                let seconds = drain.deadline.saturating_sub(gantry_api::now_millis()) / 1000;
                format!("deadline in {}", humantime::format_duration(Duration::from_secs(seconds)))
            };
            println!("{who} is draining: {left} tasks left, {when}.");
            if let Some(why) = &status.stuck {
                println!("Its tasks cannot move: {why}.");
            }
        }
    }
    if !status.tasks.is_empty() {
        let rows: Vec<Vec<String>> = status
            .tasks
            .iter()
            .map(|t| vec![t.id.clone(), t.app_id.clone(), t.state.to_string(), t.message.clone().unwrap_or_default()])
            .collect();
        output::table(&["TASK", "WORKLOAD", "STATE", "MESSAGE"], &rows);
    }
}
