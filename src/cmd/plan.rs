//! `gantry plan CLUSTER_FILE`: prints what `up` would do — hosts to create, change and destroy,
//! and why — and changes nothing (not even the state dir).

use super::up::{ClusterArgs, ClusterSession, plan_json};
use crate::output::Format;

/// Runs `gantry plan`.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let session = ClusterSession::open(&args)?;
    let journal = session.read_journal()?;
    let plan = session.plan(&session.desired()?, &journal).await?;
    if args.output == Format::Json {
        return crate::output::json(&plan_json(&plan));
    }
    print!("{plan}");
    Ok(())
}
