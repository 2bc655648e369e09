//! `gantry sweep aws --region R [--yes]`: finds gantry's resources in a region by their cluster
//! tag and deletes those of clusters that expired (`[cluster] ttl`) or that no state dir on this
//! machine knows (orphans). Without `--yes` it only lists what it would delete.

use crate::output::Format;
use std::path::PathBuf;

/// Clouds that can be swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Cloud {
    /// Amazon EC2.
    Aws,
}

/// Arguments of `gantry sweep`.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// The cloud to sweep.
    pub cloud: Cloud,
    /// The region to sweep.
    #[arg(long, env = "AWS_REGION")]
    pub region: String,
    /// The EC2 endpoint (an emulator) [default: AWS_ENDPOINT_URL, else AWS's own].
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// Delete what is found; without it, only list it.
    #[arg(long)]
    pub yes: bool,
    /// Root of the clusters' state dirs, whose clusters are not orphans [default: ~/.gantry/clusters]
    #[arg(long, env = "GANTRY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// Runs `gantry sweep`.
#[cfg(feature = "aws")]
pub async fn run(args: SweepArgs) -> anyhow::Result<()> {
    use gantry_provider_aws::{ec2::Ec2, sweep};
    let Cloud::Aws = args.cloud;
    let json = args.output == Format::Json;
    let ec2 = Ec2::connect(&args.region, args.endpoint_url.as_deref()).await?;
    let root = match &args.state_dir {
        Some(root) => root.clone(),
        None => gantry_provision::journal::state_dir("x", None)?.parent().map(PathBuf::from).unwrap_or_default(),
    };
    let known = |cluster: &str| root.join(cluster).join(gantry_provision::journal::JOURNAL_FILE).exists();
    let found = sweep::find(&ec2, std::time::SystemTime::now(), &known).await?;
    let say = |line: String| crate::output::progress(json, &line);
    let doomed: Vec<&sweep::Found> = found.iter().filter(|f| f.reason.is_some()).collect();
    for cluster in &found {
        let verdict = match cluster.reason {
            Some(sweep::Reason::Expired) => "expired",
            Some(sweep::Reason::Orphaned) => "orphaned (no state on this machine)",
            None => "kept (alive, state known)",
        };
        say(format!(
            "{}: {} resources, expires {}: {verdict}",
            cluster.cluster,
            cluster.resources.len(),
            cluster.expires_at.as_deref().unwrap_or("never")
        ));
    }
    if !args.yes {
        if !doomed.is_empty() {
            say(format!("Dry run: {} clusters would be deleted; run again with --yes to delete them.", doomed.len()));
        }
    } else {
        for cluster in &doomed {
            sweep::delete(&ec2, &cluster.cluster).await?;
            say(format!("Deleted every resource of {}.", cluster.cluster));
        }
    }
    if json {
        crate::output::json(&serde_json::json!({ "region": args.region, "clusters": found, "deleted": args.yes }))?;
    }
    Ok(())
}

/// Runs `gantry sweep` (this build has no cloud provider).
#[cfg(not(feature = "aws"))]
pub async fn run(_args: SweepArgs) -> anyhow::Result<()> {
    anyhow::bail!("this build has no aws provider (hint: build gantry with `--features aws`)")
}
