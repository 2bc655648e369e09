//! The `placement` scenario end to end at a tiny scale: it runs, places everything and reports
//! every figure. No wall-clock assertions.

use gantry_bench::report::Report;
use gantry_bench::scenarios::placement::{Args, StoreKind, run};

#[test]
fn placement_at_a_tiny_scale_reports_every_figure() {
    for store in [StoreKind::Mem, StoreKind::Redb] {
        let args =
            Args { agents: 100, apps: 10, instances: 5, frameworks: 10, tasks_per_framework: 3, cycles: 2, store };
        let mut report = Report::quiet("placement");
        run(&args, &mut report).expect("the scenario runs");
        for name in [
            "placement.placements_per_s",
            "placement.place_all_s",
            "placement.idle_cycle_ms",
            "placement.allocation_cycle_ms",
        ] {
            let figure = report.figure(name).unwrap_or_else(|| panic!("{name} is reported"));
            assert!(figure.value.is_finite() && figure.value >= 0.0, "{name} = {}", figure.value);
        }
        assert!(report.figure("placement.placements_per_s").and_then(|f| f.target).is_some());
        assert!(report.notes.iter().all(|n| !n.starts_with("only ")), "every task fits: {:?}", report.notes);
    }
}
