//! `gantry snapshot save|restore`: a consistent snapshot of the whole cluster state to a file
//! (admin token only), and a new master's data dir made from one (disaster recovery).

use super::ClientArgs;
use crate::output::{self, Format};
use anyhow::Context;
use gantry_master::snapshot::{self, ClusterSnapshot, Counts};
use std::path::PathBuf;

/// `gantry snapshot …`
#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCommand {
    /// Saves the whole cluster state (apps, jobs and runs, tasks, agents, tokens' hashes,
    /// policies, sealed secrets) to FILE, readable by its owner only. Needs an admin token.
    Save {
        /// Where to write it.
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Makes a new master's data dir from a snapshot; then start `gantry master --data-dir DIR`.
    /// DIR must hold the same cluster's ca.pem, ca-key.pem and secrets.key, and no state.
    Restore {
        /// A file written by `snapshot save`.
        file: PathBuf,
        /// The new master's data dir.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

/// What `save` and `restore` report.
#[derive(Debug, serde::Serialize)]
struct Report<'a> {
    path: &'a std::path::Path,
    cluster_ca: &'a str,
    taken_at: gantry_api::Millis,
    counts: Counts,
}

/// Runs a snapshot command.
pub async fn run(command: SnapshotCommand) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::Save { file, client } => {
            let value = client.client()?.snapshot().await?;
            let snapshot: ClusterSnapshot =
                serde_json::from_value(value).context("the master's answer is not a snapshot this gantry reads")?;
            let bytes = serde_json::to_vec(&snapshot)?;
            gantry_trust::files::write_private(&file, &bytes)
                .with_context(|| format!("cannot write the snapshot to {}", file.display()))?;
            let report = Report {
                path: &file,
                cluster_ca: &snapshot.cluster_ca,
                taken_at: snapshot.taken_at,
                counts: snapshot.counts(),
            };
            if client.output == Format::Json {
                return output::json(&report);
            }
            println!(
                "Saved a snapshot of cluster {} to {}: {}.",
                report.cluster_ca,
                file.display(),
                describe(&report.counts)
            );
            Ok(())
        }
        SnapshotCommand::Restore { file, data_dir, output: format } => {
            let snapshot = snapshot::read(&file)?;
            let counts = snapshot::restore(&snapshot, &data_dir)?;
            let report =
                Report { path: &data_dir, cluster_ca: &snapshot.cluster_ca, taken_at: snapshot.taken_at, counts };
            if format == Format::Json {
                return output::json(&report);
            }
            println!(
                "Restored the snapshot taken {} ago into {}: {}.\nStart the master on it: gantry master --data-dir {} --listen ADDRESS",
                output::age(snapshot.taken_at),
                data_dir.display(),
                describe(&report.counts),
                data_dir.display()
            );
            Ok(())
        }
    }
}

fn describe(counts: &Counts) -> String {
    format!(
        "{} apps, {} jobs ({} runs), {} tasks, {} agents, {} tokens, {} policies, {} secrets",
        counts.apps,
        counts.jobs,
        counts.job_runs,
        counts.tasks,
        counts.agents,
        counts.tokens,
        counts.policies,
        counts.secrets
    )
}
