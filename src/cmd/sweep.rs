//! `gantry sweep aws|gce|azure`: finds gantry's resources in a region (aws), project (gce) or
//! subscription (azure) by their cluster tag or label and deletes those of clusters that expired
//! (`[cluster] ttl`) or that no state dir on this machine knows (orphans). Without `--yes` it
//! only lists what it would delete.

use crate::output::Format;
use gantry_provision::cloud::sweep::{Found, Reason};
use std::path::PathBuf;

/// Clouds that can be swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Cloud {
    /// Amazon EC2.
    Aws,
    /// Google Compute Engine.
    Gce,
    /// Microsoft Azure.
    Azure,
}

/// Arguments of `gantry sweep`.
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// The cloud to sweep.
    pub cloud: Cloud,
    /// aws and gce: the region to sweep (gce: its subnetworks; instances of every zone).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// gce: the project to sweep.
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT")]
    pub project: Option<String>,
    /// azure: the subscription to sweep.
    #[arg(long, env = "AZURE_SUBSCRIPTION_ID")]
    pub subscription: Option<String>,
    /// The cloud's API endpoint (an emulator) [default: AWS_ENDPOINT_URL, GANTRY_GCE_ENDPOINT_URL
    /// or GANTRY_AZURE_ENDPOINT_URL, else the cloud's own].
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
pub async fn run(args: SweepArgs) -> anyhow::Result<()> {
    let root = match &args.state_dir {
        Some(root) => root.clone(),
        None => gantry_provision::journal::state_dir("x", None)?.parent().map(PathBuf::from).unwrap_or_default(),
    };
    let known = |cluster: &str| root.join(cluster).join(gantry_provision::journal::JOURNAL_FILE).exists();
    let now = std::time::SystemTime::now();
    let endpoint = args.endpoint_url.as_deref();
    let (scope, found) = match args.cloud {
        Cloud::Aws => aws::sweep(&args, endpoint, now, &known).await?,
        Cloud::Gce => gce::sweep(&args, endpoint, now, &known).await?,
        Cloud::Azure => azure::sweep(&args, endpoint, now, &known).await?,
    };
    if args.output == Format::Json {
        crate::output::json(&serde_json::json!({ "scope": scope, "clusters": found, "deleted": args.yes }))?;
    }
    Ok(())
}

/// Prints what was found and, with `--yes`, deletes the doomed clusters with `delete`.
#[cfg_attr(
    not(any(feature = "aws", feature = "gce", feature = "azure")),
    allow(dead_code, reason = "used by the cloud sweeps only")
)]
async fn report<F, Fut>(args: &SweepArgs, found: &[Found], mut delete: F) -> anyhow::Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let json = args.output == Format::Json;
    let say = |line: String| crate::output::progress(json, &line);
    let doomed: Vec<&Found> = found.iter().filter(|f| f.reason.is_some()).collect();
    for cluster in found {
        let verdict = match cluster.reason {
            Some(Reason::Expired) => "expired",
            Some(Reason::Orphaned) => "orphaned (no state on this machine)",
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
        return Ok(());
    }
    for cluster in doomed {
        delete(cluster.cluster.clone()).await?;
        say(format!("Deleted every resource of {}.", cluster.cluster));
    }
    Ok(())
}

/// The value of a required scope flag, or an error naming the flag and its variable.
#[cfg_attr(
    not(any(feature = "aws", feature = "gce", feature = "azure")),
    allow(dead_code, reason = "used by the cloud sweeps only")
)]
fn required<'a>(value: &'a Option<String>, flag: &str, env: &str) -> anyhow::Result<&'a str> {
    value.as_deref().filter(|v| !v.is_empty()).ok_or_else(|| anyhow::anyhow!("sweep needs {flag} (or {env})"))
}

type Known<'a> = &'a dyn Fn(&str) -> bool;

#[cfg(feature = "aws")]
mod aws {
    use super::*;
    use gantry_provider_aws::{ec2::Ec2, sweep};

    pub async fn sweep(
        args: &SweepArgs,
        endpoint: Option<&str>,
        now: std::time::SystemTime,
        known: Known<'_>,
    ) -> anyhow::Result<(String, Vec<Found>)> {
        let region = required(&args.region, "--region", "AWS_REGION")?;
        let ec2 = Ec2::connect(region, endpoint).await?;
        let found = sweep::find(&ec2, now, known).await?;
        report(args, &found, |cluster| {
            let ec2 = &ec2;
            async move { Ok(sweep::delete(ec2, &cluster).await?) }
        })
        .await?;
        Ok((region.to_string(), found))
    }
}

#[cfg(feature = "gce")]
mod gce {
    use super::*;
    use gantry_provider_gce::{Compute, sweep};

    pub async fn sweep(
        args: &SweepArgs,
        endpoint: Option<&str>,
        now: std::time::SystemTime,
        known: Known<'_>,
    ) -> anyhow::Result<(String, Vec<Found>)> {
        let region = required(&args.region, "--region", "AWS_REGION")?;
        let compute = Compute::connect(args.project.as_deref(), region, endpoint).await?;
        let found = sweep::find(&compute, now, known).await?;
        report(args, &found, |cluster| {
            let compute = &compute;
            async move { Ok(sweep::delete(compute, &cluster).await?) }
        })
        .await?;
        Ok((args.project.clone().unwrap_or_default(), found))
    }
}

#[cfg(feature = "azure")]
mod azure {
    use super::*;
    use gantry_provider_azure::{Arm, sweep};

    pub async fn sweep(
        args: &SweepArgs,
        endpoint: Option<&str>,
        now: std::time::SystemTime,
        known: Known<'_>,
    ) -> anyhow::Result<(String, Vec<Found>)> {
        let arm = Arm::connect(args.subscription.as_deref(), endpoint).await?;
        let found = sweep::find(&arm, now, known).await?;
        report(args, &found, |cluster| {
            let arm = &arm;
            async move { Ok(sweep::delete(arm, &cluster).await?) }
        })
        .await?;
        Ok((args.subscription.clone().unwrap_or_default(), found))
    }
}

/// A cloud this build leaves out (its cargo feature is off).
#[allow(unused_macros, reason = "used only in builds without a cloud feature")]
macro_rules! missing {
    ($name:ident, $feature:literal) => {
        mod $name {
            use super::*;

            pub async fn sweep(
                _args: &SweepArgs,
                _endpoint: Option<&str>,
                _now: std::time::SystemTime,
                _known: Known<'_>,
            ) -> anyhow::Result<(String, Vec<Found>)> {
                anyhow::bail!(concat!(
                    "this build has no ",
                    $feature,
                    " provider (hint: build gantry with `--features ",
                    $feature,
                    "`)"
                ))
            }
        }
    };
}

#[cfg(not(feature = "aws"))]
missing!(aws, "aws");
#[cfg(not(feature = "gce"))]
missing!(gce, "gce");
#[cfg(not(feature = "azure"))]
missing!(azure, "azure");
