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
    #[command(subcommand)]
    scenario: Scenario,
}

fn main() -> anyhow::Result<()> {
    // Every link is TLS; an HTTP client built without a TLS configuration of its own needs the
    // process-wide provider.
    gantry_trust::tls::install_default_provider();
    let cli = Cli::parse();
    let mut report = Report::start(cli.scenario.name(), cli.json);
    cli.scenario.run(&mut report)?;
    report.finish()
}
