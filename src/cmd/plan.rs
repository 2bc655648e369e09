//! `gantry plan CLUSTER_FILE`: prints what `up` would do — hosts to create, change and destroy,
//! and why, and on a cloud the cluster's own resources to create (VPC, subnets, gateway, route,
//! security group, key pair) — and changes nothing (not even the state dir).

use super::up::{ClusterArgs, ClusterSession, plan_json};
use crate::output::Format;
use anyhow::Context;

/// Runs `gantry plan`.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let session = ClusterSession::open(&args)?;
    let journal = session.read_journal()?;
    let plan = session.plan(&session.desired()?, &journal).await?;
    let resources = session
        .hosts
        .provider()
        .cluster_resources()
        .await
        .context("cannot list the cluster's network and other resources")?;
    if args.output == Format::Json {
        let mut json = plan_json(&plan);
        json["resources"] = resources
            .iter()
            .map(|r| serde_json::json!({"kind": r.kind, "name": r.name, "id": r.id, "owned": r.owned}))
            .collect();
        return crate::output::json(&json);
    }
    let missing: Vec<_> = resources.iter().filter(|r| r.id.is_none()).collect();
    if !missing.is_empty() {
        println!("Cluster resources to create:");
        for r in missing {
            println!("  + {:<17} {}", r.kind, r.name);
        }
    }
    print!("{plan}");
    Ok(())
}
