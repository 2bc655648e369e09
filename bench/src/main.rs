//! `gantry-bench <scenario> [--json] [scenario options]`; see the README's "Benchmarks".

use clap::Parser;
use gantry_bench::report::Report;
use gantry_bench::scenarios::Scenario;

/// Benchmarks of gantry against the targets of the benchmark issue.
#[derive(Debug, Parser)]
#[command(name = "gantry-bench", version)]
struct Cli {
    /// Print the report as one JSON object instead of lines.
    #[arg(long, global = true)]
    json: bool,
    /// The `gantry` binary the scenarios run, as it is (no staleness check, no build): e.g. an
    /// older release to compare against in the same run. Default: the one beside this bench,
    /// built first when older than the sources.
    #[arg(long, global = true, value_name = "PATH")]
    gantry: Option<std::path::PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

fn main() -> anyhow::Result<()> {
    // Every link is TLS; an HTTP client built without a TLS configuration of its own needs the
    // process-wide provider.
    gantry_trust::tls::install_default_provider();
    let cli = Cli::parse();
    if let Some(path) = &cli.gantry {
        gantry_bench::binary::use_binary(path)?;
    }
    let mut report = Report::start(cli.scenario.name(), cli.json);
    cli.scenario.run(&mut report)?;
    report.finish()
}
