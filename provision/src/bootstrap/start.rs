//! `start`: runs the daemon, or restarts it when its config or binary changed since it was started
//! (the checksum of the env file, start script and binary it was started with is kept in
//! `run/<role>.started`). A daemon already running with this config is left alone.

use super::{ALIVE_FN, BootstrapError, HostContext, Phase, PhaseOutcome, quote, stop};
use crate::transport::{TransportError, Upload, UploadSource, sha256_hex};
use futures_util::future::BoxFuture;
use std::path::Path;
use std::time::Duration;

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Start;

async fn read_or_empty(host: &HostContext, path: &Path) -> Result<Vec<u8>, BootstrapError> {
    match host.access.transport.read_file(path).await {
        Ok(bytes) => Ok(bytes),
        Err(TransportError::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

impl Phase for Start {
    fn name(&self) -> &'static str {
        "start"
    }

    fn run<'a>(&'a self, host: &'a mut HostContext) -> BoxFuture<'a, Result<PhaseOutcome, BootstrapError>> {
        Box::pin(async move {
            let layout = host.access.layout.clone();
            let systemd = host.uses_systemd();
            let service = if systemd { layout.unit_file(host.role) } else { layout.start_script(host.role) };
            let mut config = read_or_empty(host, &layout.env_file(host.role)).await?;
            config.extend(read_or_empty(host, &service).await?);
            config.extend(host.binary_sha256.as_deref().unwrap_or_default().as_bytes());
            let config = sha256_hex(&config);
            let stamp = read_or_empty(host, &layout.started_stamp(host.role)).await?;
            let unit = quote(host.unit_name());
            let probe = if systemd {
                format!("systemctl is-active --quiet {unit} && echo running; exit 0")
            } else {
                let pid_file = quote(layout.pid_file(host.role).display().to_string());
                format!("{ALIVE_FN}\n[ -f {pid_file} ] && alive \"$(cat {pid_file})\" && echo running; exit 0")
            };
            let running = host.sh(self.name(), &probe, Duration::from_secs(30)).await?.stdout.contains("running");
            let same_config = stamp == config.as_bytes();
            if running && same_config {
                return Ok(PhaseOutcome::Skipped("running with this config".to_string()));
            }
            let script = match (systemd, running) {
                (true, _) => format!("systemctl restart {unit}"),
                // Also when the supervisor is not running: a daemon it left behind (it was killed
                // with SIGKILL) is stopped before a new supervisor starts another.
                (false, _) => format!("{}\nsh {}", stop::stop_script(host), quote(service.display().to_string())),
            };
            host.sh(self.name(), &script, Duration::from_secs(60)).await?;
            if !host.sh(self.name(), &probe, Duration::from_secs(30)).await?.stdout.contains("running") {
                return Err(BootstrapError::NotReady {
                    host: host.name.clone(),
                    what: format!("the {} to start", host.role),
                    waited: Duration::ZERO,
                    last: "its supervisor is not running after the start command".to_string(),
                    log_tail: super::wait_ready::log_tail(host, 20).await,
                });
            }
            let upload = Upload {
                source: UploadSource::Bytes(config.into_bytes()),
                dest: layout.started_stamp(host.role),
                mode: 0o644,
            };
            host.access.transport.upload(&upload).await?;
            Ok(PhaseOutcome::Done(if running { "restarted with the new config" } else { "started" }.to_string()))
        })
    }
}
