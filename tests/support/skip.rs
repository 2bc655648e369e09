//! One way for a test to say it cannot run here. Off CI it prints `SKIPPED: <reason>` and the
//! test passes; when every test must run (`GANTRY_TESTS_REQUIRE_ALL=1`, which `scripts/test`
//! sets when it runs as root, as CI does) it fails instead, so a missing prerequisite can never
//! hide as a green run. Included by path where `tests/support` is not a module.

/// Reports that the calling test cannot run here; see the module docs.
pub fn skipped(reason: &str) {
    if std::env::var("GANTRY_TESTS_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("this run must run every test (GANTRY_TESTS_REQUIRE_ALL=1, as root), but: {reason}");
    }
    println!("SKIPPED: {reason}");
}
