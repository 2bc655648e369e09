//! `stop`: stops the daemon and its supervisor (or its systemd unit). Running tasks are left
//! alone (an agent's tasks outlive it); `kill-tasks` removes them.

use super::{ALIVE_FN, BootstrapError, HostContext, Phase, PhaseOutcome, quote};
use futures_util::future::BoxFuture;
use std::time::Duration;

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Stop;

/// Stops the supervisor (SIGTERM, which it forwards to the daemon), then the daemon if it is still
/// there (a supervisor killed with SIGKILL leaves it); SIGKILL after 10 s (polled every 20 ms). Prints `stopped` when
/// something was running. A pid is trusted only if its command line names the pid file's host.
pub(crate) fn stop_script(host: &HostContext) -> String {
    let layout = &host.access.layout;
    let root = layout.root.display().to_string();
    let pid_file = layout.pid_file(host.role).display().to_string();
    let daemon_pid_file = layout.daemon_pid_file(host.role).display().to_string();
    format!(
        r#"{ALIVE_FN}
ours() {{ alive "$1" && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -qF -- {root}; }}
stop() {{
  [ -f "$1" ] || return 0
  pid=$(cat "$1" 2>/dev/null)
  if [ -n "$pid" ] && ours "$pid"; then
    kill -TERM "$pid" 2>/dev/null; echo stopped
    i=0; while alive "$pid" && [ $i -lt 500 ]; do sleep 0.02; i=$((i+1)); done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$1"
}}
stop {pid_file}
stop {daemon_pid_file}
true"#,
        root = quote(&root),
        pid_file = quote(&pid_file),
        daemon_pid_file = quote(&daemon_pid_file),
    )
}

impl Phase for Stop {
    fn name(&self) -> &'static str {
        "stop"
    }

    fn run<'a>(&'a self, host: &'a mut HostContext) -> BoxFuture<'a, Result<PhaseOutcome, BootstrapError>> {
        Box::pin(async move {
            let script = if host.uses_systemd() {
                let unit = quote(host.unit_name());
                format!(
                    "if systemctl is-active --quiet {unit}; then systemctl stop {unit} && echo stopped; fi; \
                     systemctl disable --quiet {unit} 2>/dev/null; exit 0"
                )
            } else {
                stop_script(host)
            };
            let output = host.sh(self.name(), &script, Duration::from_secs(60)).await?;
            Ok(if output.stdout.contains("stopped") {
                PhaseOutcome::Done(format!("{} stopped", host.role))
            } else {
                PhaseOutcome::Skipped("not running".to_string())
            })
        })
    }
}
