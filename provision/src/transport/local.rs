//! [`LocalTransport`]: the host is this machine. Commands run as `/bin/sh -c` in their own
//! process group, killed as a group on timeout; uploads are written to a temp name beside the
//! destination, fsynced, renamed over it, the directory fsynced, and the result re-read and
//! checksummed.

use super::{Command, CommandOutput, Transport, TransportError, Upload, Uploaded, sha256_hex};
use futures_util::future::BoxFuture;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

/// Runs commands and copies files on this machine.
#[derive(Debug, Clone)]
pub struct LocalTransport {
    host: String,
    dir: Option<PathBuf>,
}

impl LocalTransport {
    /// A transport for this machine, called `host` in messages.
    pub fn new(host: impl Into<String>) -> Self {
        Self { host: host.into(), dir: None }
    }

    /// Runs commands in `dir` (the root of a host that is a directory, as with the local provider).
    pub fn in_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    fn io(&self, op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TransportError {
        let (host, path) = (self.host.clone(), path.to_path_buf());
        move |source| TransportError::Io { host, op, path, source }
    }

    fn upload_blocking(&self, upload: &Upload) -> Result<Uploaded, TransportError> {
        let content = upload.source.contents(&self.host)?;
        let sha256 = sha256_hex(&content);
        let bytes = content.len() as u64;
        let dest = &upload.dest;
        if let (Ok(existing), Ok(meta)) = (fs::read(dest), fs::metadata(dest))
            && sha256_hex(&existing) == sha256
            && meta.permissions().mode() & 0o7777 == upload.mode
        {
            return Ok(Uploaded { sha256, bytes, changed: false });
        }
        let dir = dest.parent().unwrap_or_else(|| Path::new("/"));
        fs::create_dir_all(dir).map_err(self.io("create dir", dir))?;
        let tmp = temp_path(dest);
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(upload.mode)
                .open(&tmp)
                .map_err(self.io("create", &tmp))?;
            file.write_all(&content).map_err(self.io("write", &tmp))?;
            file.set_permissions(fs::Permissions::from_mode(upload.mode)).map_err(self.io("chmod", &tmp))?;
            file.sync_all().map_err(self.io("fsync", &tmp))?;
            fs::rename(&tmp, dest).map_err(self.io("rename", &tmp))
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(self.io("fsync dir", dir))?;
        verify_checksum(&self.host, dest, &sha256)?;
        Ok(Uploaded { sha256, bytes, changed: true })
    }
}

/// A unique temp name beside `dest`, hidden, so a crash never leaves a half-written `dest`.
fn temp_path(dest: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dest.with_file_name(format!(".{name}.gantry-{}-{n}.tmp", std::process::id()))
}

/// Re-reads `path` and compares its SHA-256 with `expected`.
pub(crate) fn verify_checksum(host: &str, path: &Path, expected: &str) -> Result<(), TransportError> {
    let written = fs::read(path).map_err(|source| TransportError::Io {
        host: host.to_string(),
        op: "read back",
        path: path.to_path_buf(),
        source,
    })?;
    let actual = sha256_hex(&written);
    if actual != expected {
        return Err(TransportError::Checksum {
            host: host.to_string(),
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

impl Transport for LocalTransport {
    fn host(&self) -> &str {
        &self.host
    }

    fn run<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<CommandOutput, TransportError>> {
        Box::pin(async move {
            let sh = Path::new("/bin/sh");
            let mut child = tokio::process::Command::new(sh);
            if let Some(dir) = &self.dir {
                child.current_dir(dir);
            }
            let child = child
                .arg("-c")
                .arg(&command.script)
                .envs(&command.env)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .map_err(self.io("spawn", sh))?;
            let pgid = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
            match tokio::time::timeout(command.timeout, child.wait_with_output()).await {
                Ok(output) => {
                    let output = output.map_err(self.io("wait for", sh))?;
                    Ok(CommandOutput {
                        exit_code: output.status.code(),
                        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                    })
                }
                Err(_) => {
                    if let Some(pgid) = pgid {
                        let _ = killpg(pgid, Signal::SIGKILL);
                    }
                    Err(TransportError::Timeout {
                        host: self.host.clone(),
                        script: command.script.clone(),
                        after: command.timeout,
                    })
                }
            }
        })
    }

    fn upload<'a>(&'a self, upload: &'a Upload) -> BoxFuture<'a, Result<Uploaded, TransportError>> {
        Box::pin(async move {
            let this = self.clone();
            let upload = upload.clone();
            let dest = upload.dest.clone();
            tokio::task::spawn_blocking(move || this.upload_blocking(&upload))
                .await
                .map_err(|e| self.io("upload", &dest)(std::io::Error::other(e)))?
        })
    }

    fn read_file<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            tokio::fs::read(path).await.map_err(|e| match e.kind() {
                ErrorKind::NotFound => TransportError::NotFound { host: self.host.clone(), path: path.to_path_buf() },
                _ => self.io("read", path)(e),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::UploadSource;
    use std::time::Duration;

    const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn upload(dest: &Path, content: &[u8], mode: u32) -> Upload {
        Upload { source: UploadSource::Bytes(content.to_vec()), dest: dest.to_path_buf(), mode }
    }

    #[tokio::test]
    async fn runs_scripts_and_reports_exit_codes() {
        let t = LocalTransport::new("localhost");
        let mut cmd = Command::new("echo out; echo err >&2; echo \"$GREETING\"; exit 3", Duration::from_secs(30));
        cmd.env.insert("GREETING".into(), "hi".into());
        let out = t.run(&cmd).await.expect("runs");
        assert_eq!(out.exit_code, Some(3));
        assert!(!out.success());
        assert_eq!(out.stdout, "out\nhi\n");
        assert_eq!(out.stderr, "err\n");
        let ok = t.run(&Command::new("true", Duration::from_secs(30))).await.expect("runs");
        assert!(ok.success());
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let t = LocalTransport::new("localhost");
        let err = t.run(&Command::new(script, Duration::from_millis(300))).await.expect_err("times out");
        assert!(matches!(err, TransportError::Timeout { .. }), "{err}");
        assert!(err.is_retryable());
        let pid: i32 = fs::read_to_string(&pidfile).expect("pid written").trim().parse().expect("a pid");
        let mut alive = true;
        for _ in 0..100 {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            alive = stat.split(") ").nth(1).is_some_and(|rest| !rest.starts_with('Z'));
            if !alive {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!alive, "the background `sleep` (pid {pid}) outlived the timeout");
    }

    #[tokio::test]
    async fn upload_is_atomic_checksummed_and_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("etc/gantry/agent.toml");
        let t = LocalTransport::new("localhost");
        let first = t.upload(&upload(&dest, b"hello", 0o640)).await.expect("upload");
        assert_eq!(first, Uploaded { sha256: HELLO_SHA256.into(), bytes: 5, changed: true });
        assert_eq!(fs::read(&dest).expect("read"), b"hello");
        assert_eq!(fs::metadata(&dest).expect("stat").permissions().mode() & 0o7777, 0o640);
        let again = t.upload(&upload(&dest, b"hello", 0o640)).await.expect("upload again");
        assert!(!again.changed);
        let chmod = t.upload(&upload(&dest, b"hello", 0o600)).await.expect("new mode");
        assert!(chmod.changed);
        let src = dir.path().join("src.bin");
        fs::write(&src, b"binary").expect("write");
        let from_file =
            t.upload(&Upload { source: UploadSource::File(src), dest: dest.clone(), mode: 0o755 }).await.expect("file");
        assert_eq!(from_file.sha256, crate::transport::sha256_hex(b"binary"));
        assert_eq!(t.read_file(&dest).await.expect("read back"), b"binary");
        let leftovers: Vec<_> = fs::read_dir(dest.parent().expect("parent"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .filter(|n| n != "agent.toml")
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    }

    #[test]
    fn checksum_mismatch_is_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        fs::write(&path, b"tampered").expect("write");
        let err = verify_checksum("localhost", &path, HELLO_SHA256).expect_err("mismatch");
        assert!(matches!(&err, TransportError::Checksum { expected, .. } if expected == HELLO_SHA256), "{err}");
        verify_checksum("localhost", &path, &sha256_hex(b"tampered")).expect("match");
    }

    #[tokio::test]
    async fn reading_a_missing_file_is_not_found() {
        let t = LocalTransport::new("localhost");
        let err = t.read_file(Path::new("/nonexistent/gantry")).await.expect_err("missing");
        assert!(matches!(err, TransportError::NotFound { .. }), "{err}");
    }
}
