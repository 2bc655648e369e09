//! Highly available masters, end to end: three `gantry master` processes in one Raft group on
//! loopback and two agents, real tasks. The leader is SIGKILLed again and again while a client
//! keeps writing; afterwards every acknowledged write is there and no task was restarted. And
//! the group's members change through the CLI: it grows from three masters to five and shrinks
//! back to three, and still commits.

mod support;

use gantry_api::TaskState;
use std::collections::BTreeSet;
use std::time::Duration;
use support::writer::{Writer, app, check_stored};
use support::{Cluster, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_masters_survive_leader_kills_without_losing_a_write_or_restarting_a_task() {
    let mut cluster = Cluster::start_with_masters(3, 2).await;
    let client = cluster.client.clone();

    // One leader, two followers, as `gantry master list` tells.
    let (ok, out, err) = cluster.gantry(&["master", "list", "-o", "json"]);
    assert!(ok, "master list: {err}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).expect("JSON");
    assert_eq!(list.len(), 3, "three masters: {out}");
    let roles: Vec<&str> = list.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(roles.iter().filter(|r| **r == "leader").count(), 1, "one leader: {out}");
    assert_eq!(roles.iter().filter(|r| **r == "follower").count(), 2, "two followers: {out}");

    // A service that must not be restarted by any failover.
    client.put_app(&app("web", 2)).await.expect("deploy web");
    let running = cluster.wait_running("web", 2, true).await;
    let web_ids: BTreeSet<String> = running.iter().map(|t| t.id.clone()).collect();
    let web_processes: BTreeSet<i32> = cluster.task_processes().into_iter().collect();

    // A follower serves no API: it redirects to the leader, and says it follows.
    let first = wait_for("a leader", Duration::from_secs(10), || cluster.leader(None)).await;
    let follower = if first == 1 { 2 } else { 1 };
    let direct = cluster.client_of(follower);
    let response = direct.request(reqwest::Method::GET, "/api/v1/apps").send().await.expect("ask a follower");
    assert_eq!(response.status(), reqwest::StatusCode::TEMPORARY_REDIRECT);
    let named = response.headers().get("x-gantry-leader").and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(named, Some(format!("127.0.0.1:{}", cluster.master_ports[first - 1])), "it names the leader");
    let health = direct.health().await.expect("a follower's health");
    assert_eq!((health.status.as_str(), health.role.as_deref()), ("ok", Some("follower")));
    let apps = direct.list_apps().await.expect("the client follows the redirect");
    assert!(apps.iter().any(|a| a.definition.id == "web"));

    // A client writes apps one after the other while leaders die.
    let writer = Writer::start(client.clone());

    for round in 0..3 {
        let old = wait_for("a leader", Duration::from_secs(15), || cluster.leader(None)).await;
        let acknowledged_before = writer.acknowledged();
        cluster.kill_master_number(old);
        let new = wait_for("a new leader", Duration::from_secs(15), || cluster.leader(None)).await;
        assert_ne!(new, old, "round {round}: a new master leads");
        wait_for("writes acknowledged by the new leader", Duration::from_secs(15), || async {
            (writer.acknowledged() > acknowledged_before + 3).then_some(())
        })
        .await;
        // The old leader comes back on its disk and catches up as a follower.
        cluster.start_master_number(old);
        wait_for("the old leader to follow", Duration::from_secs(15), || async {
            let health = cluster.client_of(old).health().await.ok()?;
            (health.status == "ok" && health.role.as_deref() == Some("follower")).then_some(())
        })
        .await;
    }
    // Every acknowledged write is there, once; nothing else is.
    let writes = writer.stop().await;
    assert!(writes.acknowledged.len() > 12, "writes went on through the failovers: {}", writes.acknowledged.len());
    check_stored(&client, &writes, || cluster.logs()).await;

    // No failover restarted the service: the same tasks run, in the same processes.
    let tasks = client.list_tasks(Some("web"), false).await.expect("tasks");
    let now: BTreeSet<String> = tasks.iter().filter(|t| t.state == TaskState::Running).map(|t| t.id.clone()).collect();
    assert_eq!(now, web_ids, "the same tasks run; logs:\n{}", cluster.logs());
    let processes: BTreeSet<i32> = cluster.task_processes().into_iter().collect();
    assert!(web_processes.is_subset(&processes), "the service's processes never stopped");
    let history = client.list_tasks(Some("web"), true).await.expect("all tasks");
    assert_eq!(history.len(), 2, "no task of web was ever replaced: {history:?}");
}

/// The masters `gantry master ARGS -o json` answers, by number, with their roles.
fn masters_of(cluster: &Cluster, args: &[&str]) -> Vec<(u64, String)> {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let (ok, out, err) = cluster.gantry(&args);
    assert!(ok, "gantry {args:?}: {err}\nlogs:\n{}", cluster.logs());
    let masters: Vec<gantry_api::client::MasterInfo> = serde_json::from_str(&out).expect("JSON");
    masters.into_iter().map(|m| (m.id, m.role)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn masters_are_added_and_removed_through_the_cli_and_the_group_still_commits() {
    let mut cluster = Cluster::start_with_masters(3, 1).await;

    // Two more master processes; each waits until `gantry master add` makes it a member.
    for _ in 0..2 {
        let number = cluster.add_master();
        let address = format!("127.0.0.1:{}", cluster.master_ports[number - 1]);
        let id = number.to_string();
        let after = masters_of(&cluster, &["master", "add", &id, &address]);
        assert!(after.contains(&(number as u64, "follower".to_string())), "master {number} votes: {after:?}");
        // Adding it again changes nothing.
        assert_eq!(masters_of(&cluster, &["master", "add", &id, &address]).len(), number);
    }
    let five = masters_of(&cluster, &["master", "list"]);
    assert_eq!(five.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5], "{five:?}");
    let roles = |masters: &[(u64, String)], role: &str| masters.iter().filter(|(_, r)| r == role).count();
    assert_eq!((roles(&five, "leader"), roles(&five, "follower")), (1, 4), "five voters: {five:?}");
    let leader = five.iter().find(|(_, role)| role == "leader").map(|(id, _)| *id).expect("a leader");

    // The leader removes itself: once the group without it is committed it steps down, and a
    // master that stays leads. Then one more of the first three leaves (it does not lead now).
    // Each stops once it has left.
    let after = masters_of(&cluster, &["master", "remove", &leader.to_string()]);
    assert!(after.iter().all(|(member, _)| *member != leader), "the leader left: {after:?}");
    cluster.kill_master_number(usize::try_from(leader).expect("number"));
    let next = cluster.wait_logged("a master that stays leads", Duration::from_secs(15), || cluster.leader(None)).await;
    let next = u64::try_from(next).expect("number");
    assert_ne!(next, leader);
    let other = (1..=3).find(|id| *id != leader && *id != next).expect("another of the first three");
    let after = masters_of(&cluster, &["master", "remove", &other.to_string()]);
    assert!(after.iter().all(|(member, _)| *member != other), "master {other} left: {after:?}");
    cluster.kill_master_number(usize::try_from(other).expect("number"));
    let leaving = [leader, other];
    let three = masters_of(&cluster, &["master", "list"]);
    let expected: Vec<u64> = (1..=5).filter(|id| !leaving.contains(id)).collect();
    assert_eq!(three.iter().map(|(id, _)| *id).collect::<Vec<_>>(), expected, "{three:?}");
    assert_eq!((roles(&three, "leader"), roles(&three, "follower")), (1, 2), "three voters: {three:?}");

    // A write commits with the three; and with two of them, as a group of three does (two of
    // the five the group had could not).
    cluster.client.put_app(&app("with-three", 0)).await.expect("a write commits with three masters");
    cluster.kill_master_number(5);
    cluster.client.put_app(&app("with-two-of-three", 0)).await.expect("a write commits with two of three");
    let apps = cluster.client.list_apps().await.expect("apps");
    for id in ["with-three", "with-two-of-three"] {
        assert!(apps.iter().any(|a| a.definition.id == id), "{id} is there");
    }
}

/// A leader cut off from the majority (here both followers are frozen with SIGSTOP) stops
/// answering within about half a second, so it never serves a state the others could move past,
/// and a write to it fails with the reason instead of hanging; nothing of that write is kept.
/// Once the others are back, writes commit again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_off_from_the_majority_stops_answering_until_it_hears_from_them_again() {
    use nix::sys::signal::{Signal, kill};
    let cluster = Cluster::start_with_masters(3, 0).await;
    let client = cluster.client.clone();
    client.put_app(&app("before", 0)).await.expect("a write while all masters run");
    let leader = wait_for("a leader", Duration::from_secs(10), || cluster.leader(None)).await;
    let pid = |number: usize| {
        let child = cluster.masters[number - 1].as_ref().expect("running");
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid"))
    };
    let followers: Vec<usize> = (1..=3).filter(|n| *n != leader).collect();
    for number in &followers {
        kill(pid(*number), Signal::SIGSTOP).expect("freeze a follower");
    }

    let alone = cluster.client_of(leader);
    let health = wait_for("the leader to say it is cut off", Duration::from_secs(10), || async {
        let response = alone.request(reqwest::Method::GET, "/health").send().await.ok()?;
        let status = response.status();
        let health: gantry_api::client::Health = response.json().await.ok()?;
        (status == reqwest::StatusCode::SERVICE_UNAVAILABLE && health.status == "cut-off").then_some(health)
    })
    .await;
    assert_eq!(health.role.as_deref(), Some("leader"), "it still thinks it leads: {health:?}");
    let refused = alone.put_app(&app("during", 0)).await.expect_err("a cut-off leader takes no write");
    assert!(
        matches!(&refused, gantry_api::ClientError::Api { status: 503, .. })
            && refused.to_string().contains("has not heard from a majority"),
        "{refused}"
    );
    let read = alone.get_app("before").await.expect_err("nor answers a read");
    assert!(matches!(read, gantry_api::ClientError::Api { status: 503, .. }), "{read}");

    for number in &followers {
        kill(pid(*number), Signal::SIGCONT).expect("thaw a follower");
    }
    wait_for("writes to commit again", Duration::from_secs(20), || async {
        client.put_app(&app("after", 0)).await.ok()
    })
    .await;
    let apps: BTreeSet<String> = client.list_apps().await.expect("apps").into_iter().map(|a| a.definition.id).collect();
    assert!(apps.contains("before") && apps.contains("after"), "{apps:?}");
    assert!(!apps.contains("during"), "the refused write left nothing: {apps:?}");
}
