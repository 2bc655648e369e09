//! `remove-files`: removes gantry's files from the host (its whole root, and the systemd unit
//! where one was installed).

use super::{BootstrapError, HostContext, Phase, PhaseOutcome, quote};
use futures_util::future::BoxFuture;
use std::time::Duration;

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct RemoveFiles;

impl Phase for RemoveFiles {
    fn name(&self) -> &'static str {
        "remove-files"
    }

    fn run<'a>(&'a self, host: &'a mut HostContext) -> BoxFuture<'a, Result<PhaseOutcome, BootstrapError>> {
        Box::pin(async move {
            let root = host.access.layout.root.display().to_string();
            if root.is_empty() || root == "/" {
                return Err(BootstrapError::Unsupported {
                    host: host.name.clone(),
                    message: format!("refusing to remove the host's root `{root}`"),
                });
            }
            let mut script = format!("if [ -e {r} ]; then rm -rf -- {r} && echo removed; fi", r = quote(&root));
            if host.uses_systemd() {
                let unit = quote(format!("/etc/systemd/system/{}", host.unit_name()));
                script.push_str(&format!("; if [ -e {unit} ]; then rm -f {unit} && systemctl daemon-reload; fi"));
            }
            let output = host.sh(self.name(), &script, Duration::from_secs(120)).await?;
            Ok(if output.stdout.contains("removed") {
                PhaseOutcome::Done(root)
            } else {
                PhaseOutcome::Skipped("already gone".to_string())
            })
        })
    }
}
