//! The first pull's measurements: when the agent's download, fsync and unpack of the large
//! layer ended (from its image store, see `gantry-image`'s store layout), and the `curl`
//! baseline of the same blobs.

use super::runs::Launched;
use crate::report::progress;
use anyhow::{Context, bail};
use gantry_lab::registry::{PushedImage, TestRegistry};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// The curl baseline: `(bytes, seconds)` of the median of `runs` fetches of the image's
/// config and layer blobs; `None` (with the reason on stderr) where curl cannot run.
pub fn curl_median(registry: &TestRegistry, repository: &str, image: &PushedImage, runs: usize) -> Option<(u64, f64)> {
    let digests: Vec<&String> = std::iter::once(&image.config_digest).chain(&image.layer_digests).collect();
    let mut results = Vec::new();
    for _ in 0..runs {
        match curl(registry.address(), repository, &digests) {
            Ok(result) => results.push(result),
            Err(error) => {
                progress(&format!("no curl baseline: {error:#}"));
                return None;
            }
        }
    }
    results.sort_by(|a, b| a.1.total_cmp(&b.1));
    results.get(results.len() / 2).copied()
}

/// One `curl` of `digests` from `repository` on the registry at `address`, one connection:
/// total bytes and the sum of the transfers' times.
fn curl(address: &str, repository: &str, digests: &[&String]) -> anyhow::Result<(u64, f64)> {
    let mut command = std::process::Command::new("curl");
    command.args(["-sS", "--fail", "-w", "%{size_download} %{time_total}\\n"]);
    for digest in digests {
        command.args(["-o", "/dev/null", &format!("http://{address}/v2/{repository}/blobs/{digest}")]);
    }
    let output = command.output().context("cannot run curl (Debian package curl)")?;
    if !output.status.success() {
        bail!("curl failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let total = sum_transfers(&stdout)?;
    if total.0 == 0 {
        bail!("curl fetched nothing: {stdout}");
    }
    Ok(total)
}

/// Sums curl's `size_download time_total` lines: total bytes and seconds.
fn sum_transfers(lines: &str) -> anyhow::Result<(u64, f64)> {
    let mut total = (0u64, 0f64);
    for line in lines.lines() {
        let mut fields = line.split_whitespace();
        let (Some(bytes), Some(seconds)) = (fields.next(), fields.next()) else { continue };
        total.0 += bytes.parse::<u64>().with_context(|| format!("curl's size_download in {line:?}"))?;
        total.1 += seconds.parse::<f64>().with_context(|| format!("curl's time_total in {line:?}"))?;
    }
    Ok(total)
}

/// Instants of the first pull on its agent.
#[derive(Debug)]
pub struct PullMarks {
    /// `task.json` written: the pull starts.
    pub started: Option<SystemTime>,
    /// The large layer's blob last written.
    pub downloaded: Option<SystemTime>,
    /// The blob fsynced and renamed into the store.
    pub appeared: Option<SystemTime>,
    /// The image record written: layers unpacked.
    pub recorded: Option<SystemTime>,
}

impl PullMarks {
    /// Reads the marks of `launched`, the first pull of `large` on the agent with `work_dir`.
    pub fn read(work_dir: &Path, launched: &Launched, large: &PushedImage, blob: Option<BlobSeen>) -> Self {
        let mtime = |path: PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let record = work_dir.join("images/images").join(format!("{}.json", hex(&large.manifest_digest)));
        Self {
            started: launched.sandbox.as_ref().and_then(|s| mtime(s.join("task.json"))),
            downloaded: blob.as_ref().and_then(|b| b.modified),
            appeared: blob.map(|b| b.appeared),
            recorded: mtime(record),
        }
    }

    /// `from` → `to`, when both are known and in order.
    pub fn span(&self, from: Option<SystemTime>, to: Option<SystemTime>) -> Option<Duration> {
        to?.duration_since(from?).ok()
    }

    /// The download: `started` → `downloaded`.
    pub fn download(&self) -> Option<Duration> {
        self.span(self.started, self.downloaded)
    }
}

/// When a blob appeared in a store, and its modification time then.
#[derive(Debug, Clone, Copy)]
pub struct BlobSeen {
    appeared: SystemTime,
    modified: Option<SystemTime>,
}

/// Polls (every millisecond, on a thread) until one of `paths` exists.
#[derive(Debug)]
pub struct BlobWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Option<BlobSeen>>,
}

impl BlobWatch {
    /// Starts watching.
    pub fn start(paths: Vec<PathBuf>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                for path in &paths {
                    if let Ok(meta) = std::fs::metadata(path) {
                        return Some(BlobSeen { appeared: SystemTime::now(), modified: meta.modified().ok() });
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            None
        });
        Self { stop, thread }
    }

    /// What was seen, stopping the watch.
    pub fn finish(self) -> Option<BlobSeen> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().ok().flatten()
    }
}

/// The hex part of a `sha256:` digest.
pub fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_transfers_add_up() {
        let (bytes, seconds) = sum_transfers("1024 0.001500\n50000000 0.080000\n\n").expect("parsed");
        assert_eq!(bytes, 50_001_024);
        assert!((seconds - 0.0815).abs() < 1e-9, "{seconds}");
        assert!(sum_transfers("12 soon\n").is_err());
    }
}
