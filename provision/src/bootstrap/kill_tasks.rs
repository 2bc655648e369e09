//! `kill-tasks`: kills every process of the agent's task sandboxes — executors (their command line
//! names `<work>/tasks/`) and tasks (their environment does, `GANTRY_SANDBOX`) — so nothing a
//! removed agent started keeps running. Nothing to do on a master.

use super::{ALIVE_FN, BootstrapError, HostContext, Phase, PhaseOutcome, quote};
use crate::cluster_file::Role;
use futures_util::future::BoxFuture;
use std::time::Duration;

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct KillTasks;

impl Phase for KillTasks {
    fn name(&self) -> &'static str {
        "kill-tasks"
    }

    fn run<'a>(&'a self, host: &'a mut HostContext) -> BoxFuture<'a, Result<PhaseOutcome, BootstrapError>> {
        Box::pin(async move {
            if host.role == Role::Master {
                return Ok(PhaseOutcome::Skipped("a master runs no tasks".to_string()));
            }
            let tasks = format!("{}/tasks/", host.access.layout.work_dir().display());
            // The needle is assembled at run time and handed to grep in a file, so that neither
            // this script's command line nor grep's contains it.
            let (head, tail) = tasks.split_at(tasks.len() - 3);
            let script = format!(
                r#"{ALIVE_FN}
pattern=$(mktemp) || exit 1
trap 'rm -f "$pattern"' EXIT
printf '%s%s' {head} {tail} > "$pattern"
killed=0
for round in $(seq 25); do
  found=0
  for pid in $(grep -lsFf "$pattern" /proc/[0-9]*/cmdline /proc/[0-9]*/environ | cut -d/ -f3 | sort -u); do
    [ "$pid" = "$$" ] && continue
    alive "$pid" && kill -KILL "$pid" 2>/dev/null && found=$((found+1))
  done
  killed=$((killed+found))
  [ $found -eq 0 ] && break
  sleep 0.02
done
echo "$killed""#,
                head = quote(head),
                tail = quote(tail),
            );
            let output = host.sh(self.name(), &script, Duration::from_secs(60)).await?;
            let killed: u32 = output.stdout.trim().parse().unwrap_or(0);
            Ok(if killed == 0 {
                PhaseOutcome::Skipped("no task processes".to_string())
            } else {
                PhaseOutcome::Done(format!("{killed} processes killed"))
            })
        })
    }
}
