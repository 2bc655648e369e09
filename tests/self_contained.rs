//! The gantry binary is uploaded to hosts that may have nothing beyond the kernel and libc: it
//! must not need OpenSSL or zlib there (both are linked statically). Checked with `ldd`; skipped
//! with a printed reason where `ldd` is missing.

mod support;

use std::process::Command;

/// Shared libraries of glibc itself and the GCC runtime every glibc system has.
const ALLOWED: [&str; 6] = ["linux-vdso.so", "libc.so", "libm.so", "ld-linux", "libgcc_s.so", "libpthread.so"];

#[test]
fn the_binary_needs_only_libc_on_a_host() {
    let Ok(out) = Command::new("ldd").arg(support::BIN).output() else {
        support::skipped("ldd is not installed");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ldd failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    let libraries: Vec<&str> = text.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(libraries.iter().any(|l| l.starts_with("libc.so")), "ldd listed no libc: {text}");
    let extra: Vec<&&str> = libraries.iter().filter(|l| !ALLOWED.iter().any(|a| l.contains(a))).collect();
    assert!(extra.is_empty(), "the binary needs more than libc on a host: {extra:?}\n{text}");
}
