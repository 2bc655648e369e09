//! Finding the `gantry` binary the process scenarios run: the one `--gantry PATH` names, or
//! beside this bench binary, in the same target dir and profile. If it is missing or older than the workspace's sources, the bench
//! builds it with `$CARGO build --release --bin gantry` when run by cargo (which sets `CARGO`),
//! and otherwise says which command to run.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The workspace root this bench was built from.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Newest modification time of the files `gantry` is built from.
fn newest_source(root: &Path) -> Option<SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<SystemTime>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                walk(&path, newest);
            } else if path.extension().is_some_and(|e| e == "rs" || e == "toml")
                && let Ok(modified) = meta.modified()
                && newest.is_none_or(|n| modified > n)
            {
                *newest = Some(modified);
            }
        }
    }
    let mut newest = std::fs::metadata(root.join("Cargo.lock")).and_then(|m| m.modified()).ok();
    for dir in ["src", "runtime", "provision", "providers", "templates"] {
        walk(&root.join(dir), &mut newest);
    }
    if let Ok(modified) = std::fs::metadata(root.join("Cargo.toml")).and_then(|m| m.modified()) {
        newest = newest.max(Some(modified));
    }
    newest
}

/// The binary `--gantry` named, if any.
static CHOSEN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes [`gantry`] answer `path` (absolute, checked to be an executable file) as it is.
pub fn use_binary(path: &Path) -> anyhow::Result<()> {
    let path = std::fs::canonicalize(path).with_context(|| format!("--gantry {}", path.display()))?;
    let executable = std::fs::metadata(&path)
        .map(|m| m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
        .unwrap_or(false);
    if !executable {
        bail!("--gantry {}: not an executable file", path.display());
    }
    CHOSEN.set(path).map_err(|_| anyhow::anyhow!("the gantry binary was already chosen"))
}

/// The `gantry` binary: the one `--gantry` named ([`use_binary`]), else the one beside this
/// bench, built first if it is missing or stale (see module doc).
pub fn gantry() -> anyhow::Result<PathBuf> {
    if let Some(chosen) = CHOSEN.get() {
        return Ok(chosen.clone());
    }
    let exe = std::env::current_exe().context("cannot find the bench binary's path")?;
    let profile_dir = exe.parent().context("the bench binary has no directory")?.to_path_buf();
    // `cargo test` runs tests from `<profile>/deps`.
    let profile_dir = if profile_dir.ends_with("deps") {
        profile_dir.parent().map_or(profile_dir.clone(), Path::to_path_buf)
    } else {
        profile_dir
    };
    let binary = profile_dir.join("gantry");
    let root = workspace_root();
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
    let stale = match (built, newest_source(&root)) {
        (None, _) => true,
        (Some(built), Some(source)) => source > built,
        (Some(_), None) => false,
    };
    if !stale {
        return Ok(binary);
    }
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let command = if release { "cargo build --release --bin gantry" } else { "cargo build --bin gantry" };
    let Some(cargo) = std::env::var_os("CARGO") else {
        bail!(
            "{} is {}; run `{command}` in {} (with the same CARGO_TARGET_DIR) first",
            binary.display(),
            if built.is_some() { "older than the sources" } else { "missing" },
            root.display()
        );
    };
    eprintln!("  .. {} is missing or stale: running `{command}`", binary.display());
    let target_dir = profile_dir.parent().context("the profile dir has no parent")?;
    let mut build = std::process::Command::new(cargo);
    build.arg("build").args(["--bin", "gantry", "-p", "gantry"]).current_dir(&root).env("CARGO_TARGET_DIR", target_dir);
    if release {
        build.arg("--release");
    }
    let status = build.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("`{command}` failed");
    }
    Ok(binary)
}
