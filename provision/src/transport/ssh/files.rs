//! Uploads and reads over exec channels (no SFTP subsystem needed on the host). An upload is
//! skipped when the destination already has the content and mode; otherwise it is streamed to a
//! hidden temp name beside the destination, checked with `sha256sum` on the host, chmodded,
//! fsynced and renamed into place with `mv -f` (atomic on one filesystem).

use super::exec::{self, Exec, quote};
use super::{Inner, OpError};
use crate::transport::{TransportError, Upload};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The stderr marker of a read of a missing file.
const NOT_FOUND: &str = "gantry: no such file";

/// Places `content` (whose SHA-256 is `sha256`) at `upload.dest`; returns whether it wrote.
pub(super) fn upload(inner: &Inner, upload: &Upload, content: &[u8], sha256: &str) -> Result<bool, TransportError> {
    let dest = &upload.dest;
    let tmp = temp_path(dest);
    let dir = dest.parent().unwrap_or_else(|| Path::new("/"));
    let (d, t) = (quote(&dest.to_string_lossy()), quote(&tmp.to_string_lossy()));
    let io = |op: &'static str, path: &Path, out: &Exec| {
        OpError::keep(TransportError::Io {
            host: inner.host.clone(),
            op,
            path: path.to_path_buf(),
            source: std::io::Error::other(describe(out)),
        })
    };
    inner.with_session(|c| {
        let run = |script: &str, stdin: Option<&[u8]>| {
            let timeout = inner.settings.command_timeout;
            exec::exec(c, &inner.settings, script, stdin, timeout).map_err(|e| inner.exec_error(script, timeout, e))
        };
        let probe = run(&format!("if [ -f {d} ]; then sha256sum -- {d} && stat -c %a -- {d}; fi"), None)?;
        if probe.success() && is_current(&String::from_utf8_lossy(&probe.stdout), sha256, upload.mode) {
            return Ok(false);
        }
        let dir_q = quote(&dir.to_string_lossy());
        let written = run(&format!("mkdir -p -- {dir_q} && cat > {t}"), Some(content))?;
        let placed = (|| {
            if !written.success() {
                return Err(io("write", &tmp, &written));
            }
            let sum = run(&format!("sha256sum -- {t}"), None)?;
            let actual = first_word(&String::from_utf8_lossy(&sum.stdout));
            if !sum.success() {
                return Err(io("checksum", &tmp, &sum));
            }
            if actual != sha256 {
                return Err(OpError::keep(TransportError::Checksum {
                    host: inner.host.clone(),
                    path: dest.clone(),
                    expected: sha256.to_string(),
                    actual,
                }));
            }
            // `sync FILE` needs coreutils 8.24+; older hosts fall back to a full sync.
            let moved = run(
                &format!(
                    "chmod {:o} -- {t} && {{ sync -- {t} 2>/dev/null || sync; }} && mv -f -- {t} {d} && \
                     {{ sync -- {dir_q} 2>/dev/null || true; }}",
                    upload.mode
                ),
                None,
            )?;
            if !moved.success() {
                return Err(io("rename", &tmp, &moved));
            }
            Ok(true)
        })();
        if placed.is_err() {
            let _ = run(&format!("rm -f -- {t}"), None);
        }
        placed
    })
}

/// Reads `path` with `cat`; [`TransportError::NotFound`] when it does not exist.
pub(super) fn read_file(inner: &Inner, path: &Path) -> Result<Vec<u8>, TransportError> {
    let p = quote(&path.to_string_lossy());
    let script = format!("if [ -e {p} ]; then exec cat -- {p}; else echo '{NOT_FOUND}' >&2; exit 44; fi");
    let out = inner.with_session(|c| {
        let timeout = inner.settings.command_timeout;
        exec::exec(c, &inner.settings, &script, None, timeout).map_err(|e| inner.exec_error(&script, timeout, e))
    })?;
    if out.success() {
        return Ok(out.stdout);
    }
    if out.exit_code == Some(44) && String::from_utf8_lossy(&out.stderr).contains(NOT_FOUND) {
        return Err(TransportError::NotFound { host: inner.host.clone(), path: path.to_path_buf() });
    }
    Err(TransportError::Io {
        host: inner.host.clone(),
        op: "read",
        path: path.to_path_buf(),
        source: std::io::Error::other(describe(&out)),
    })
}

impl Exec {
    fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// Whether `sha256sum` + `stat -c %a` output says the file has `sha256` and `mode`.
fn is_current(probe: &str, sha256: &str, mode: u32) -> bool {
    let mut lines = probe.lines();
    let sum = lines.next().map(first_word);
    let found = lines.next().and_then(|m| u32::from_str_radix(m.trim(), 8).ok());
    sum.as_deref() == Some(sha256) && found.map(|m| m & 0o7777) == Some(mode & 0o7777)
}

fn first_word(s: &str) -> String {
    s.split_whitespace().next().unwrap_or_default().to_string()
}

/// A remote command's failure for an error message: its stderr, or its exit code.
fn describe(out: &Exec) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    match (stderr.is_empty(), out.exit_code) {
        (false, _) => stderr,
        (true, Some(code)) => format!("exited with {code}"),
        (true, None) => "killed by a signal".to_string(),
    }
}

/// A unique hidden temp name beside `dest`.
fn temp_path(dest: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dest.with_file_name(format!(".{name}.gantry-{}-{n}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_current_file_is_recognised_by_sum_and_mode() {
        let probe = "abc  /etc/f\n640\n";
        assert!(is_current(probe, "abc", 0o640));
        assert!(!is_current(probe, "abc", 0o600));
        assert!(!is_current(probe, "abd", 0o640));
        assert!(!is_current("", "abc", 0o640));
    }
}
