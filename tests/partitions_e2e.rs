//! Network partitions of highly available masters, on test hosts: three `gantry master`
//! processes, each in its own test host's network namespace, and an agent on this machine. A
//! partition is real: nftables in a master's namespace drops every packet between it and the
//! other masters, while this machine (the clients, the agent) still reaches it.
//!
//! While a client keeps writing: the leader is partitioned from both followers (the minority
//! side stops answering and commits nothing; the majority elects a new leader and goes on),
//! healed (the old leader follows and catches up); then one follower is partitioned (the group
//! goes on) and healed. Afterwards every acknowledged write is there once, nothing unwritten
//! is, and the service's task was never restarted.

mod support;

use gantry_api::TaskState;
use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::testhosts::{Lab, Skip};
use support::writer::{Writer, app, check_stored};
use support::{Cluster, MasterHost};

/// Drops every packet between the host of network namespace `netns` and `others`, both ways.
fn partition(netns: &str, others: &[String]) {
    let set = others.join(", ");
    let rules = format!(
        "table inet gantry_partition {{
            chain input {{ type filter hook input priority 0; ip saddr {{ {set} }} drop; }}
            chain output {{ type filter hook output priority 0; ip daddr {{ {set} }} drop; }}
        }}"
    );
    let mut nft = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run nft");
    nft.stdin.take().expect("stdin").write_all(rules.as_bytes()).expect("write the rules");
    assert!(nft.wait().expect("nft").success(), "nft took the partition rules in {netns}");
}

/// Undoes [`partition`].
fn heal(netns: &str) {
    let status = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "delete", "table", "inet", "gantry_partition"])
        .status()
        .expect("run nft");
    assert!(status.success(), "nft removed the partition in {netns}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_of_the_leader_and_of_a_follower_lose_no_write_and_restart_no_task() {
    let lab = match Lab::new(3) {
        Ok(lab) => lab,
        Err(Skip(reason)) => {
            support::skipped(&reason.to_string());
            return;
        }
    };
    let hosts: Vec<MasterHost> = lab
        .hosts()
        .iter()
        .map(|h| MasterHost::Netns { netns: h.netns().to_string(), address: h.address().to_string() })
        .collect();
    let address = |number: usize| lab.host(number - 1).address().to_string();
    let netns = |number: usize| lab.host(number - 1).netns().to_string();
    let cluster = Cluster::start_on(hosts, 1).await;
    let client = cluster.client.clone();

    client.put_app(&app("web", 1)).await.expect("deploy web");
    let web_ids: BTreeSet<String> = cluster.wait_running("web", 1, true).await.iter().map(|t| t.id.clone()).collect();

    let writer = Writer::start(client.clone());
    let acknowledged = || writer.acknowledged();
    let more_writes =
        |after: usize, what: &'static str| {
            cluster.wait_logged(what, Duration::from_secs(20), move || async move {
                (acknowledged() > after + 3).then_some(())
            })
        };

    // The leader alone on one side.
    let old = cluster.wait_logged("a leader", Duration::from_secs(15), || cluster.leader(None)).await;
    let others: Vec<usize> = (1..=3).filter(|n| *n != old).collect();
    partition(&netns(old), &others.iter().map(|n| address(*n)).collect::<Vec<_>>());
    let before = acknowledged();
    let alone = cluster.client_of(old);
    let health = cluster
        .wait_logged("the old leader to stop answering", Duration::from_secs(10), || async {
            let response = alone.request(reqwest::Method::GET, "/health").send().await.ok()?;
            let status = response.status();
            let health: gantry_api::client::Health = response.json().await.ok()?;
            (status == reqwest::StatusCode::SERVICE_UNAVAILABLE).then_some(health)
        })
        .await;
    assert!(["cut-off", "no-leader"].contains(&health.status.as_str()), "the minority side says why: {health:?}");
    let refused = alone.put_app(&app("minority", 0)).await.expect_err("the minority side takes no write");
    assert!(matches!(refused, gantry_api::ClientError::Api { status: 503, .. }), "{refused}");
    let new = cluster.wait_logged("a new leader", Duration::from_secs(15), || cluster.leader(Some(old))).await;
    assert_ne!(new, old, "a master of the majority leads");
    more_writes(before, "writes committed by the majority").await;

    // Healed: the old leader follows the new one and catches up.
    heal(&netns(old));
    cluster
        .wait_logged("the old leader to follow", Duration::from_secs(20), || async {
            let health = cluster.client_of(old).health().await.ok()?;
            (health.status == "ok" && health.role.as_deref() == Some("follower")).then_some(())
        })
        .await;

    // One follower alone on one side: the group goes on without it.
    let leader = cluster.wait_logged("a leader", Duration::from_secs(15), || cluster.leader(None)).await;
    let follower = (1..=3).find(|n| *n != leader).expect("a follower");
    let rest: Vec<String> = (1..=3).filter(|n| *n != follower).map(address).collect();
    partition(&netns(follower), &rest);
    let before = acknowledged();
    more_writes(before, "writes committed without the partitioned follower").await;
    heal(&netns(follower));
    let before = acknowledged();
    more_writes(before, "writes committed after the heal").await;

    // Every acknowledged write is there, once; nothing else is; and every master holds the
    // same log up to the last write.
    let writes = writer.stop().await;
    check_stored(&client, &writes, || cluster.logs()).await;
    let apps = client.list_apps().await.expect("apps");
    assert!(!apps.iter().any(|a| a.definition.id == "minority"), "the minority's write left nothing");
    cluster
        .wait_logged("every master to apply the same log", Duration::from_secs(20), || async {
            let (ok, out, _) = cluster.gantry(&["master", "list", "-o", "json"]);
            let list: Vec<serde_json::Value> = serde_json::from_str(&out).ok().filter(|_| ok)?;
            let applied: BTreeSet<u64> = list.iter().filter_map(|m| m["last_applied"].as_u64()).collect();
            (list.len() == 3 && applied.len() == 1).then_some(())
        })
        .await;

    // No partition restarted the service.
    let tasks = client.list_tasks(Some("web"), true).await.expect("tasks");
    let running: BTreeSet<String> =
        tasks.iter().filter(|t| t.state == TaskState::Running).map(|t| t.id.clone()).collect();
    assert_eq!(running, web_ids, "the same task runs; logs:\n{}", cluster.logs());
    assert_eq!(tasks.len(), 1, "web's task was never replaced: {tasks:?}");
    drop(cluster);
    drop(lab);
}
