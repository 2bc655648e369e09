//! `install-service`: how the daemon is kept running. Where systemd runs (and the provider allows
//! it), a unit rendered from `templates/gantry.service` is installed and enabled; elsewhere a start
//! script rendered from `templates/supervise.sh` runs the daemon under `gantry supervise`.

use super::{BootstrapError, HostContext, Phase, PhaseOutcome, quote, render_config, templates};
use crate::transport::{Upload, UploadSource};
use futures_util::future::BoxFuture;
use std::time::Duration;

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct InstallService;

impl Phase for InstallService {
    fn name(&self) -> &'static str {
        "install-service"
    }

    fn run<'a>(&'a self, host: &'a mut HostContext) -> BoxFuture<'a, Result<PhaseOutcome, BootstrapError>> {
        Box::pin(async move {
            let mut context = render_config::context(host)?;
            context.insert("args", &templates::args(host.role, &context)?);
            let layout = &host.access.layout;
            if host.uses_systemd() {
                let unit = templates::render("gantry.service", &context)?;
                let dest = layout.unit_file(host.role);
                let upload = Upload { source: UploadSource::Bytes(unit.into_bytes()), dest: dest.clone(), mode: 0o644 };
                host.access.transport.upload(&upload).await?;
                let installed = format!("/etc/systemd/system/{}", host.unit_name());
                let script = format!(
                    "if cmp -s {src} {dst}; then echo unchanged; else install -m 0644 {src} {dst} && systemctl daemon-reload; fi \
                     && systemctl enable --quiet {unit}",
                    src = quote(dest.display().to_string()),
                    dst = quote(&installed),
                    unit = quote(host.unit_name()),
                );
                let output = host.sh(self.name(), &script, Duration::from_secs(60)).await?;
                return Ok(if output.stdout.contains("unchanged") {
                    PhaseOutcome::Skipped(format!("{installed} unchanged"))
                } else {
                    PhaseOutcome::Done(installed)
                });
            }
            let script = templates::render("supervise.sh", &context)?;
            let dest = layout.start_script(host.role);
            let upload = Upload { source: UploadSource::Bytes(script.into_bytes()), dest, mode: 0o755 };
            let uploaded = host.access.transport.upload(&upload).await?;
            Ok(if uploaded.changed {
                PhaseOutcome::Done(format!("{} (gantry supervisor)", upload.dest.display()))
            } else {
                PhaseOutcome::Skipped("start script unchanged".to_string())
            })
        })
    }
}
