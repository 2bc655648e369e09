//! A recording [`Transport`] for tests of bootstrap phases: it records every command, upload and
//! read, answers commands from a script (first rule whose pattern the script contains), and keeps
//! uploaded files in memory so later reads see them.

use super::{Command, CommandOutput, Transport, TransportError, Upload, Uploaded, sha256_hex};
use futures_util::future::BoxFuture;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A call the fake received, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportCall {
    /// `run` with this script.
    Run(String),
    /// `upload` to `dest` of content with this checksum.
    Upload {
        /// Destination.
        dest: PathBuf,
        /// SHA-256 of the content.
        sha256: String,
        /// Permission bits.
        mode: u32,
    },
    /// `read_file` of this path.
    Read(PathBuf),
}

/// What a scripted command does.
#[derive(Debug, Clone)]
enum Scripted {
    Output(CommandOutput),
    Timeout,
}

/// An in-memory transport that records its calls.
#[derive(Debug)]
pub struct FakeTransport {
    host: String,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    calls: Vec<TransportCall>,
    rules: Vec<(String, Scripted)>,
    files: BTreeMap<PathBuf, (Vec<u8>, u32)>,
}

impl FakeTransport {
    /// A fake for `host`; unscripted commands succeed with empty output.
    pub fn new(host: impl Into<String>) -> Self {
        Self { host: host.into(), inner: Mutex::new(Inner::default()) }
    }

    /// Commands whose script contains `pattern` return `output` (rules are tried in order).
    pub fn respond(&self, pattern: &str, output: CommandOutput) {
        self.lock().rules.push((pattern.to_string(), Scripted::Output(output)));
    }

    /// Commands whose script contains `pattern` time out.
    pub fn time_out(&self, pattern: &str) {
        self.lock().rules.push((pattern.to_string(), Scripted::Timeout));
    }

    /// A file present on the host before the test starts.
    pub fn with_file(self, path: impl Into<PathBuf>, content: &[u8]) -> Self {
        self.lock().files.insert(path.into(), (content.to_vec(), 0o644));
        self
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<TransportCall> {
        self.lock().calls.clone()
    }

    /// Content of a file on the fake host.
    pub fn file(&self, path: &Path) -> Option<Vec<u8>> {
        self.lock().files.get(path).map(|(content, _)| content.clone())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Transport for FakeTransport {
    fn host(&self) -> &str {
        &self.host
    }

    fn run<'a>(&'a self, command: &'a Command) -> BoxFuture<'a, Result<CommandOutput, TransportError>> {
        Box::pin(async move {
            let mut inner = self.lock();
            inner.calls.push(TransportCall::Run(command.script.clone()));
            let rule = inner.rules.iter().find(|(pattern, _)| command.script.contains(pattern.as_str()));
            match rule.map(|(_, s)| s.clone()) {
                Some(Scripted::Output(output)) => Ok(output),
                Some(Scripted::Timeout) => Err(TransportError::Timeout {
                    host: self.host.clone(),
                    script: command.script.clone(),
                    after: command.timeout,
                }),
                // `test -e PATH` answers from the fake host's files, as a shell would.
                None => match command.script.strip_prefix("test -e ") {
                    Some(path) => {
                        let path = PathBuf::from(path.trim_matches('\''));
                        let exists = inner.files.contains_key(&path);
                        Ok(CommandOutput { exit_code: Some(if exists { 0 } else { 1 }), ..CommandOutput::default() })
                    }
                    None => Ok(CommandOutput { exit_code: Some(0), ..CommandOutput::default() }),
                },
            }
        })
    }

    fn upload<'a>(&'a self, upload: &'a Upload) -> BoxFuture<'a, Result<Uploaded, TransportError>> {
        Box::pin(async move {
            let content = upload.source.contents(&self.host)?;
            let sha256 = sha256_hex(&content);
            let bytes = content.len() as u64;
            let mut inner = self.lock();
            inner.calls.push(TransportCall::Upload {
                dest: upload.dest.clone(),
                sha256: sha256.clone(),
                mode: upload.mode,
            });
            let entry = (content, upload.mode);
            let changed = inner.files.get(&upload.dest) != Some(&entry);
            inner.files.insert(upload.dest.clone(), entry);
            Ok(Uploaded { sha256, bytes, changed })
        })
    }

    fn read_file<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            let mut inner = self.lock();
            inner.calls.push(TransportCall::Read(path.to_path_buf()));
            inner
                .files
                .get(path)
                .map(|(content, _)| content.clone())
                .ok_or_else(|| TransportError::NotFound { host: self.host.clone(), path: path.to_path_buf() })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::UploadSource;
    use std::time::Duration;

    #[tokio::test]
    async fn records_calls_and_answers_from_its_script() {
        let fake = FakeTransport::new("w-0").with_file("/etc/os-release", b"ID=debian\n");
        fake.respond("uname", CommandOutput { exit_code: Some(0), stdout: "Linux\n".into(), stderr: String::new() });
        fake.time_out("wait-registered");
        let t: &dyn Transport = &fake;
        let timeout = Duration::from_secs(5);
        assert_eq!(t.run(&Command::new("uname -s", timeout)).await.expect("run").stdout, "Linux\n");
        assert!(t.run(&Command::new("mkdir -p /opt/gantry", timeout)).await.expect("run").success());
        let err = t.run(&Command::new("wait-registered w-0", timeout)).await.expect_err("scripted timeout");
        assert!(matches!(err, TransportError::Timeout { .. }));
        assert_eq!(t.read_file(Path::new("/etc/os-release")).await.expect("read"), b"ID=debian\n");
        let up = Upload { source: UploadSource::Bytes(b"hello".to_vec()), dest: "/opt/gantry/x".into(), mode: 0o755 };
        assert!(t.upload(&up).await.expect("upload").changed);
        assert!(!t.upload(&up).await.expect("upload again").changed);
        assert_eq!(fake.file(Path::new("/opt/gantry/x")), Some(b"hello".to_vec()));
        let missing = t.read_file(Path::new("/nope")).await.expect_err("missing");
        assert!(matches!(missing, TransportError::NotFound { .. }));
        let calls = fake.calls();
        assert_eq!(calls.len(), 7);
        assert_eq!(calls[0], TransportCall::Run("uname -s".into()));
        assert_eq!(
            calls[4],
            TransportCall::Upload { dest: "/opt/gantry/x".into(), sha256: sha256_hex(b"hello"), mode: 0o755 }
        );
    }
}
