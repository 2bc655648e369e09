//! `gantry node`: the cluster's agents.

use super::ClientArgs;
use crate::output::{self, Format};

/// `gantry node …`
#[derive(Debug, clap::Subcommand)]
pub enum NodeCommand {
    /// Lists agents with their resources, usage and standing.
    List {
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
                        a.state.to_string(),
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
    }
}
