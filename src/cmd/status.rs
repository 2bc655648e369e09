//! `gantry status CLUSTER_FILE`: per host, what the journal records, what the provider reports
//! and how the live cluster sees it (master serving; agent ACTIVE or UNREACHABLE); on a cloud, also
//! the cluster's own resources (VPC, subnets, security group, …) with their ids.

use super::up::{ClusterArgs, ClusterSession};
use crate::output::{self, Format};
use gantry_provision::cluster_api::ClusterApi;
use gantry_provision::cluster_file::Role;
use gantry_provision::provider::HostState;
use std::collections::BTreeMap;

/// Runs `gantry status`.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let session = ClusterSession::open(&args)?;
    let journal = session.read_journal()?;
    let provider_hosts: BTreeMap<String, HostState> =
        session.hosts.provider().list_hosts().await?.into_iter().map(|h| (h.name, h.state)).collect();
    let desired = session.desired()?;
    let mut roles: BTreeMap<String, Role> = desired.hosts.iter().map(|h| (h.name.clone(), h.role)).collect();
    for (name, record) in &journal.hosts {
        roles.insert(name.clone(), record.role);
    }
    for name in provider_hosts.keys() {
        roles.entry(name.clone()).or_insert(Role::Agent);
    }
    let resources = session.hosts.provider().cluster_resources().await?;
    let master_url = session.master_url().await;
    let api = session.api();
    let mut rows = Vec::new();
    for (name, role) in &roles {
        let journal_state = journal.hosts.get(name).map_or("-".to_string(), |r| {
            let phase = format!("{:?}", r.phase).to_lowercase();
            match r.pending {
                Some(kind) => format!("{phase}, {} interrupted", kind.verb()),
                None => phase,
            }
        });
        let provider_state = provider_hosts.get(name).map_or("absent".to_string(), |s| format!("{s:?}").to_lowercase());
        let live = match (&master_url, role) {
            (None, _) => "-".to_string(),
            // Each master is asked about itself; `gantry master list` tells who leads.
            (Some(_), Role::Master) => match session.own_url(name).await {
                Some(own) => match api.health(&own).await {
                    Ok(()) => format!("serving {own}"),
                    Err(_) => "not answering".to_string(),
                },
                None => "not answering".to_string(),
            },
            (Some(url), Role::Agent) => match api.agent(url, name).await {
                Ok(Some(view)) => format!("{} ({} tasks)", view.state, view.tasks),
                Ok(None) => "not registered".to_string(),
                Err(_) => "master not answering".to_string(),
            },
        };
        let wanted = if desired.hosts.iter().any(|h| &h.name == name) { "yes" } else { "no" };
        rows.push(vec![name.clone(), role.to_string(), wanted.to_string(), journal_state, provider_state, live]);
    }
    if args.output == Format::Json {
        let hosts: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"host": r[0], "role": r[1], "desired": r[2] == "yes", "journal": r[3],
                    "provider": r[4], "live": r[5]})
            })
            .collect();
        let resources: Vec<_> = resources
            .iter()
            .map(|r| serde_json::json!({"kind": r.kind, "name": r.name, "id": r.id, "owned": r.owned}))
            .collect();
        return output::json(&serde_json::json!({
            "cluster": session.file.name(), "state_dir": session.state_dir, "master_url": master_url, "hosts": hosts,
            "resources": resources,
        }));
    }
    println!("Cluster `{}` (state in {})", session.file.name(), session.state_dir.display());
    output::table(&["HOST", "ROLE", "DESIRED", "JOURNAL", "PROVIDER", "LIVE"], &rows);
    if !resources.is_empty() {
        let rows: Vec<Vec<String>> = resources
            .iter()
            .map(|r| {
                let state = match (&r.id, r.owned) {
                    (Some(id), true) => id.clone(),
                    (Some(id), false) => format!("{id} (not gantry's)"),
                    (None, _) => "absent".to_string(),
                };
                vec![r.kind.clone(), r.name.clone(), state]
            })
            .collect();
        output::table(&["RESOURCE", "NAME", "ID"], &rows);
    }
    if let Some(url) = master_url {
        println!("API: {url}");
    }
    Ok(())
}
