//! `upload-binary`: places this gantry binary on the host; skipped when the checksum matches.

use super::{BootstrapError, HostContext, Phase, PhaseOutcome};
use crate::transport::{Upload, UploadSource};
use futures_util::future::BoxFuture;

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct UploadBinary;

impl Phase for UploadBinary {
    fn name(&self) -> &'static str {
        "upload-binary"
    }

    fn run<'a>(&'a self, host: &'a mut HostContext) -> BoxFuture<'a, Result<PhaseOutcome, BootstrapError>> {
        Box::pin(async move {
            let upload = Upload {
                source: UploadSource::File(host.binary.clone()),
                dest: host.access.layout.binary(),
                mode: 0o755,
            };
            let uploaded = host.access.transport.upload(&upload).await?;
            host.binary_sha256 = Some(uploaded.sha256.clone());
            let size = format!("{:.1} MB", uploaded.bytes as f64 / 1e6);
            Ok(if uploaded.changed {
                PhaseOutcome::Done(size)
            } else {
                PhaseOutcome::Skipped(format!("{size}, checksum matches"))
            })
        })
    }
}
