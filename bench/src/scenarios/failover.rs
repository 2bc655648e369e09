//! `failover`: on a local cluster with default settings (heartbeat 1 s, unreachable after 3 s),
//! SIGKILL an agent running 20 service tasks and measure the time until all 20 run elsewhere.
//! With `--masters 3` (or 5), SIGKILL the leading master instead, again and again (see
//! [`masters`]).
//!
//! To put all 20 on one agent, the app is deployed while only `host-0` exists; two more agents
//! join before the kill. The killed agent's tasks keep running (as on a host whose agent
//! crashed); the cluster's cleanup kills them. Also reported: when the master marked the tasks
//! UNREACHABLE (detection) — the rest is replacement.

use crate::cluster::LocalCluster;
use crate::report::{Figure, Report, Target, progress};
use anyhow::bail;
use gantry_api::TaskState;
use std::time::Duration;
use tokio::time::Instant;

mod masters;

/// Options of `failover`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Service tasks on the killed agent (with several masters: of the service that must
    /// survive every master failover).
    #[arg(long, default_value_t = 20)]
    pub tasks: u32,
    /// Masters: with more than 1, kill the leading master instead of an agent.
    #[arg(long, default_value_t = 1)]
    pub masters: usize,
    /// With several masters: how many times the leader is killed.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

const APP: &str = "bench-failover";

/// Runs the scenario.
pub fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    if args.masters > 1 {
        return masters::run(args, report);
    }
    let bin = crate::binary::gantry()?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        let mut cluster = LocalCluster::start(&bin, 1).await?;
        report.note(format!(
            "{} tasks of `sleep 600` on host-0; then host-1 and host-2 join; SIGKILL host-0",
            args.tasks
        ));
        let definition = serde_json::from_value(serde_json::json!({
            "id": APP, "cmd": "sleep 600", "instances": args.tasks, "cpus": 0.05, "mem": 16
        }))?;
        cluster.client.create_app(&definition).await?;
        let victim = cluster.agent_id(0).await?;
        let wanted = args.tasks as usize;
        wait(&cluster, "tasks running on host-0", Duration::from_secs(60), |tasks| {
            tasks.iter().filter(|t| t.state == TaskState::Running && t.agent_id == victim).count() == wanted
        })
        .await?;
        cluster.add_agent()?;
        cluster.add_agent()?;
        cluster.wait_agents_active(3).await?;
        progress("SIGKILL host-0");
        let killed = Instant::now();
        cluster.agents[0].kill();
        let mut detected = None;
        let deadline = killed + Duration::from_secs(120);
        loop {
            let tasks = cluster.client.list_tasks(Some(APP), false).await?;
            if detected.is_none() && tasks.iter().any(|t| t.agent_id == victim && t.state == TaskState::Unreachable) {
                detected = Some(killed.elapsed());
            }
            let elsewhere = tasks.iter().filter(|t| t.state == TaskState::Running && t.agent_id != victim).count();
            if elsewhere >= wanted {
                break;
            }
            if Instant::now() > deadline {
                bail!("only {elsewhere} of {wanted} tasks run elsewhere after 120 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let total = killed.elapsed();
        report.add(Figure::new("failover.all_running_s", total.as_secs_f64(), "s").target(Target::at_most(5.0)));
        if let Some(detected) = detected {
            report.add(Figure::new("failover.detected_s", detected.as_secs_f64(), "s"));
            report.add(Figure::new("failover.replaced_after_detection_s", (total - detected).as_secs_f64(), "s"));
        }
        Ok(())
    })
}

async fn wait(
    cluster: &LocalCluster,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[gantry_api::Task]) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(tasks) = cluster.client.list_tasks(Some(APP), false).await
            && done(&tasks)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
