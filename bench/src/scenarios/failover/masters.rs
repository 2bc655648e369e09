//! `failover --masters N`: a group of N masters (default timings) and two agents running a
//! service of `--tasks` tasks; a client writes apps one after another, and the leading master is
//! SIGKILLed `--rounds` times (each time it comes back and catches up before the next kill).
//!
//! Per kill: the time until another master says it leads (`/health`), and until the client has
//! a write acknowledged again that it sent after the kill (goal ≤ 1.5 s). Afterwards: how many
//! acknowledged writes are missing (goal 0) and how many of the service's tasks were restarted
//! or replaced (goal 0).

use super::Args;
use crate::cluster::{LocalCluster, MasterOptions};
use crate::report::{Figure, Report, Target, progress};
use crate::stats::Samples;
use anyhow::{Context, bail};
use gantry_api::{AppDefinition, TaskState};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const APP: &str = "bench-masters";
/// How long the group runs undisturbed after a killed master is back, before the next kill.
const SETTLE: Duration = Duration::from_secs(2);

/// One write of the client: when it was sent, when it ended, and whether it was acknowledged.
struct Write {
    id: String,
    sent: Instant,
    ended: Instant,
    acknowledged: bool,
}

/// Runs the scenario.
pub fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let bin = crate::binary::gantry()?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        let options = MasterOptions { masters: args.masters, ..MasterOptions::default() };
        let mut cluster = LocalCluster::start_master(&bin, &options).await?;
        cluster.add_agent()?;
        cluster.add_agent()?;
        cluster.wait_agents_active(2).await?;
        report.note(format!(
            "{} masters (heartbeat 100 ms, election after 400-800 ms), 2 agents, {} tasks of `sleep 600`; {} SIGKILLs of the leader during sequential app writes",
            args.masters, args.tasks, args.rounds
        ));
        let definition: AppDefinition = serde_json::from_value(serde_json::json!({
            "id": APP, "cmd": "sleep 600", "instances": args.tasks, "cpus": 0.05, "mem": 16
        }))?;
        cluster.client.create_app(&definition).await?;
        let service = running(&cluster, args.tasks as usize).await?;

        let writes = Arc::new(Mutex::new(Vec::<Write>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (client, writes, stop) = (cluster.client.clone(), writes.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let id = format!("bench-w-{n}");
                    let definition: AppDefinition =
                        serde_json::from_value(serde_json::json!({ "id": id, "cmd": "true", "instances": 0 }))
                            .expect("a valid app");
                    let sent = Instant::now();
                    let acknowledged = client.put_app(&definition).await.is_ok();
                    writes.lock().expect("lock").push(Write { id, sent, ended: Instant::now(), acknowledged });
                }
            })
        };

        let mut elected = Vec::new();
        let mut resumed = Vec::new();
        for round in 0..args.rounds {
            let old = wait_leader(&cluster, None).await?;
            progress(&format!("round {}: SIGKILL master {old}", round + 1));
            let killed = Instant::now();
            cluster.kill_master(old);
            wait_leader(&cluster, Some(old)).await?;
            elected.push(killed.elapsed());
            let deadline = killed + Duration::from_secs(30);
            let back = loop {
                let first = writes
                    .lock()
                    .expect("lock")
                    .iter()
                    .filter(|w| w.acknowledged && w.sent >= killed)
                    .map(|w| w.ended)
                    .min();
                if let Some(at) = first {
                    break at;
                }
                if Instant::now() > deadline {
                    bail!("no write was acknowledged within 30 s of killing master {old}");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            resumed.push(back - killed);
            cluster.restart_master(old)?;
            wait_follower(&cluster, old).await?;
            // The next kill finds a group in its steady state, the restarted master caught up.
            tokio::time::sleep(SETTLE).await;
        }
        stop.store(true, Ordering::SeqCst);
        writer.await.context("the writer panicked")?;

        let writes = std::mem::take(&mut *writes.lock().expect("lock"));
        let stored: BTreeSet<String> = cluster.client.list_apps().await?.into_iter().map(|a| a.definition.id).collect();
        let acknowledged: Vec<&Write> = writes.iter().filter(|w| w.acknowledged).collect();
        let lost = acknowledged.iter().filter(|w| !stored.contains(&w.id)).count();
        let unknown = writes.len() - acknowledged.len();
        let tasks = cluster.client.list_tasks(Some(APP), true).await?;
        let now: BTreeSet<String> =
            tasks.iter().filter(|t| t.state == TaskState::Running).map(|t| t.id.clone()).collect();
        let restarts = tasks.len().saturating_sub(args.tasks as usize) + service.difference(&now).count();

        let elected = Samples::from_durations(&elected);
        let resumed = Samples::from_durations(&resumed);
        report.add(Figure::new("failover.masters.new_leader_p50_s", elected.median() / 1000.0, "s"));
        report.add(Figure::new("failover.masters.new_leader_max_s", elected.max() / 1000.0, "s"));
        report.add(
            Figure::new("failover.masters.writes_resumed_p50_s", resumed.median() / 1000.0, "s")
                .target(Target::at_most(1.5)),
        );
        report.add(
            Figure::new("failover.masters.writes_resumed_max_s", resumed.max() / 1000.0, "s")
                .target(Target::at_most(1.5)),
        );
        report.add(Figure::new("failover.masters.task_restarts", restarts as f64, "tasks").target(Target::at_most(0.0)));
        report.add(Figure::new("failover.masters.lost_writes", lost as f64, "writes").target(Target::at_most(0.0)));
        report.add(Figure::new("failover.masters.acknowledged_writes", acknowledged.len() as f64, "writes"));
        report.add(Figure::new("failover.masters.unknown_outcome_writes", unknown as f64, "writes"));
        Ok(())
    })
}

/// The ids of `n` running tasks of the service, once they run.
async fn running(cluster: &LocalCluster, n: usize) -> anyhow::Result<BTreeSet<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tasks = cluster.client.list_tasks(Some(APP), false).await?;
        let running: BTreeSet<String> =
            tasks.iter().filter(|t| t.state == TaskState::Running).map(|t| t.id.clone()).collect();
        if running.len() == n {
            return Ok(running);
        }
        if Instant::now() > deadline {
            bail!("only {} of {n} tasks ran within 60 s", running.len());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for a leader other than `not`, and answers its number.
async fn wait_leader(cluster: &LocalCluster, not: Option<usize>) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(leader) = cluster.leader().await
            && Some(leader) != not
        {
            return Ok(leader);
        }
        if Instant::now() > deadline {
            bail!("no master led within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until master `number` follows the leader.
async fn wait_follower(cluster: &LocalCluster, number: usize) -> anyhow::Result<()> {
    let url = format!("https://127.0.0.1:{}", cluster.master_ports[number - 1]);
    let client = gantry_api::Client::with_credentials(&url, &cluster.credentials)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(health) = client.health().await
            && health.status == "ok"
            && health.role.as_deref() == Some("follower")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("master {number} did not follow within 30 s of its restart");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
