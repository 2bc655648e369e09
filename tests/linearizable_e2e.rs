//! The highly available masters are linearizable, end to end: three `gantry master` processes
//! in one Raft group on loopback, four clients reading, writing and deleting the apps `k-0` to
//! `k-4` (an app's value is one of its labels; no instances, so nothing is launched) while the
//! leader is SIGKILLed and brought back, three times; or paused (SIGSTOP) while another master
//! is elected and takes writes, then resumed. Every call is recorded with the times it was
//! invoked and answered, and the history must be linearizable as a map of registers
//! ([`gantry_lab::linearizability`]).

mod support;

use gantry_api::{AppDefinition, Client, ClientError};
use gantry_lab::linearizability::{self, Clock, Operation, RegisterMap, RegisterOp, Verdict};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::Cluster;
use tokio::task::JoinHandle;

/// The keys: the apps' ids.
const KEYS: [&str; 5] = ["k-0", "k-1", "k-2", "k-3", "k-4"];
/// How many clients call all along.
const CLIENTS: u64 = 4;
/// The label that carries an app's value.
const VALUE_LABEL: &str = "linearizability-value";
/// How many times the leader is killed, or paused.
const FAILOVERS: usize = 3;

/// App `id` holding `value`, with no instances: a small definition, as every write's log entry
/// carries the app's recent versions.
fn app(id: &str, value: u64) -> AppDefinition {
    let labels = serde_json::json!({ VALUE_LABEL: value.to_string() });
    serde_json::from_value(serde_json::json!({ "id": id, "cmd": "sleep 3600", "instances": 0, "labels": labels }))
        .expect("a valid app")
}

/// Whether master `number` says it follows a leader.
async fn follows(cluster: &Cluster, number: usize) -> Option<()> {
    let health = cluster.client_of(number).health().await.ok()?;
    (health.status == "ok" && health.role.as_deref() == Some("follower")).then_some(())
}

/// Whether master `number` follows a leader and has caught up with its log (a few entries
/// behind at most, as the leader tells): only then may the next failover leave it and the new
/// leader as the two masters a commit needs.
async fn caught_up(cluster: &Cluster, number: usize) -> Option<()> {
    follows(cluster, number).await?;
    let masters = cluster.client.list_masters().await.ok()?;
    let lag = masters.iter().find(|m| m.id == number as u64)?.lag?;
    (lag <= 10).then_some(())
}

/// One failover, on the clients' clock.
#[derive(Debug)]
struct Failover {
    /// The master killed or paused.
    old: usize,
    /// The master that led next.
    new: usize,
    /// When the old leader was killed or paused (ns).
    at: u64,
    /// How long until the next leader was ready.
    election: Duration,
}

impl std::fmt::Display for Failover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "master {} lost the lead at {} ns; master {} led {:?} later",
            self.old, self.at, self.new, self.election
        )
    }
}

/// The failovers, one a line.
fn lines(failovers: &[Failover]) -> String {
    failovers.iter().map(|f| format!("\n  {f}")).collect()
}

/// What the clients saw, on one clock.
#[derive(Default)]
struct Recorder {
    clock: Clock,
    history: Mutex<Vec<Operation<RegisterOp>>>,
    /// Answers no correct master gives: a write refused as bad, an app without its value.
    unexpected: Mutex<Vec<String>>,
    next_value: AtomicU64,
}

impl Recorder {
    fn record(&self, operation: Operation<RegisterOp>) {
        self.history.lock().expect("lock").push(operation);
    }

    fn unexpected(&self, what: String) {
        self.unexpected.lock().expect("lock").push(what);
    }

    /// How many writes invoked after `time` were acknowledged.
    fn writes_acknowledged_after(&self, time: u64) -> usize {
        let history = self.history.lock().expect("lock");
        history
            .iter()
            .filter(|o| o.invoke > time && o.complete.is_some() && matches!(o.op, RegisterOp::Write { .. }))
            .count()
    }

    /// How many calls have completed with a known result.
    fn completed(&self) -> usize {
        self.history.lock().expect("lock").iter().filter(|o| o.complete.is_some()).count()
    }

    /// Client `client` reads `key` through `api` and records what it saw.
    async fn read(&self, api: &Client, client: u64, key: &str) {
        let invoke = self.clock.now();
        let answer = api.get_app(key).await;
        let complete = self.clock.now();
        let value = match answer {
            Ok(app) => match app.definition.labels.get(VALUE_LABEL).and_then(|v| v.parse().ok()) {
                Some(value) => Some(value),
                None => return self.unexpected(format!("app {key} has no value: {:?}", app.definition.labels)),
            },
            Err(error) if error.status() == Some(404) => None,
            // A read without an answer constrains nothing.
            Err(_) => return,
        };
        let op = RegisterOp::Read { key: key.to_string(), value };
        self.record(Operation { client, invoke, complete: Some(complete), op });
    }

    /// Client `client` writes a new value to `key` through `api` and records it.
    async fn write(&self, api: &Client, client: u64, key: &str) {
        let value = self.next_value.fetch_add(1, Ordering::SeqCst) + 1;
        let definition = app(key, value);
        let invoke = self.clock.now();
        let answer = api.put_app(&definition).await;
        let complete = self.clock.now();
        let op = RegisterOp::Write { key: key.to_string(), value };
        match answer {
            Ok(_) => self.record(Operation { client, invoke, complete: Some(complete), op }),
            Err(error) if outcome_unknown(&error) => self.record(Operation { client, invoke, complete: None, op }),
            // Refused, so not done.
            Err(error) if error.status() == Some(409) => {}
            Err(error) => self.unexpected(format!("writing {value} to {key} was refused: {error}")),
        }
    }

    /// Client `client` deletes `key` through `api` and records it.
    async fn delete(&self, api: &Client, client: u64, key: &str) {
        let invoke = self.clock.now();
        let answer = api.delete_app(key).await;
        let complete = self.clock.now();
        let op = RegisterOp::Delete { key: key.to_string() };
        match answer {
            Ok(_) => self.record(Operation { client, invoke, complete: Some(complete), op }),
            // Nothing to delete: as good as a read that found nothing.
            Err(error) if error.status() == Some(404) => {
                let op = RegisterOp::Read { key: key.to_string(), value: None };
                self.record(Operation { client, invoke, complete: Some(complete), op });
            }
            Err(error) if outcome_unknown(&error) => self.record(Operation { client, invoke, complete: None, op }),
            Err(error) if error.status() == Some(409) => {}
            Err(error) => self.unexpected(format!("deleting {key} was refused: {error}")),
        }
    }
}

/// Whether a failed write may have taken effect all the same: the connection broke, the master
/// could not say whether its store committed (5xx), or the client gave up on redirects.
fn outcome_unknown(error: &ClientError) -> bool {
    error.status().is_none_or(|status| !(400..500).contains(&status))
}

/// One client: reads (half the calls), writes (7 in 20) and deletes (3 in 20) of random keys
/// until `stop`. Deleting often keeps the apps' version histories, which every write's log
/// entry carries, short.
async fn run_client(api: Client, client: u64, recorder: Arc<Recorder>, stop: Arc<AtomicBool>) {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ (client + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    while !stop.load(Ordering::SeqCst) {
        let key = KEYS[(random() % KEYS.len() as u64) as usize];
        match random() % 20 {
            0..=9 => recorder.read(&api, client, key).await,
            10..=16 => recorder.write(&api, client, key).await,
            _ => recorder.delete(&api, client, key).await,
        }
    }
}

/// The clients at work on a cluster, each with its own connections, following the leader.
struct Workload {
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<()>>,
}

impl Workload {
    /// Starts [`CLIENTS`] clients of every master of `cluster`, and waits until they have made
    /// 100 calls.
    async fn start(cluster: &Cluster) -> Self {
        let recorder = Arc::new(Recorder::default());
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..CLIENTS)
            .map(|client| {
                let api = support::admin_client(&cluster.master_url, &cluster.master_dir(1));
                tokio::spawn(run_client(api, client, recorder.clone(), stop.clone()))
            })
            .collect();
        cluster
            .wait_logged("calls before the first failover", Duration::from_secs(30), || async {
                (recorder.completed() >= 100).then_some(())
            })
            .await;
        Self { recorder, stop, clients }
    }

    /// Lets the clients make 100 more calls, stops them, and checks what they saw.
    async fn finish_and_check(self, cluster: &Cluster, failovers: &[Failover], started: Instant) {
        let calls_after = self.recorder.completed() + 100;
        cluster
            .wait_logged("calls after the last failover", Duration::from_secs(30), || async {
                (self.recorder.completed() >= calls_after).then_some(())
            })
            .await;
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients {
            client.await.expect("a client");
        }
        let history = std::mem::take(&mut *self.recorder.history.lock().expect("lock"));
        let unexpected = std::mem::take(&mut *self.recorder.unexpected.lock().expect("lock"));
        let unknown = history.iter().filter(|o| o.complete.is_none()).count();
        let count = |read: bool| {
            history.iter().filter(|o| o.complete.is_some() && matches!(o.op, RegisterOp::Read { .. }) == read).count()
        };
        println!(
            "history: {} operations ({} reads, {} writes and deletes acknowledged, {unknown} of unknown outcome); failovers:{}",
            history.len(),
            count(true),
            count(false),
            lines(failovers),
        );
        assert!(unexpected.is_empty(), "answers no master should give: {unexpected:#?}");
        assert!(count(true) > 50 && count(false) > 50, "reads and writes were answered, many of each");
        for (i, failover) in failovers.iter().enumerate() {
            let next = failovers.get(i + 1).map_or(u64::MAX, |f| f.at);
            let acknowledged = history
                .iter()
                .filter(|o| o.invoke > failover.at && o.complete.is_some_and(|c| c < next))
                .filter(|o| matches!(o.op, RegisterOp::Write { .. }))
                .count();
            assert!(acknowledged > 0, "writes went on after the failover: {failover}");
        }

        let checking = Instant::now();
        let verdict = linearizability::check(&RegisterMap::new(), &history).expect("a well-formed history");
        println!("checked in {:?}; the whole test took {:?}", checking.elapsed(), started.elapsed());
        if let Verdict::Violation(violation) = verdict {
            panic!(
                "the masters are not linearizable (times in ns since the clients started; failovers:{}):\n{violation}\nlogs:\n{}",
                lines(failovers),
                cluster.logs()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_and_writes_through_leader_kills_are_linearizable() {
    let started = Instant::now();
    let mut cluster = Cluster::start_with_masters(3, 0).await;
    cluster.wait_logged("a leader", Duration::from_secs(15), || cluster.leader(None)).await;
    let workload = Workload::start(&cluster).await;
    let recorder = workload.recorder.clone();

    // The leader dies, a new one is elected and serves writes, the old one comes back and
    // follows; three times.
    let mut failovers = Vec::new();
    for round in 0..FAILOVERS {
        let old = cluster.wait_logged("a leader", Duration::from_secs(15), || cluster.leader(None)).await;
        let at = recorder.clock.now();
        cluster.kill_master_number(old);
        let new = cluster.wait_logged("a new leader", Duration::from_secs(30), || cluster.leader(None)).await;
        assert_ne!(new, old, "round {round}: a new master leads");
        let election = Duration::from_nanos(recorder.clock.now() - at);
        cluster
            .wait_logged("writes acknowledged by the new leader", Duration::from_secs(15), || async {
                (recorder.writes_acknowledged_after(at) >= 20).then_some(())
            })
            .await;
        cluster.start_master_number(old);
        cluster
            .wait_logged("the old leader to catch up with the log", Duration::from_secs(30), || {
                caught_up(&cluster, old)
            })
            .await;
        failovers.push(Failover { old, new, at, election });
    }
    workload.finish_and_check(&cluster, &failovers, started).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_and_writes_through_a_paused_leader_are_linearizable() {
    let started = Instant::now();
    let cluster = Cluster::start_with_masters(3, 0).await;
    cluster.wait_logged("a leader", Duration::from_secs(15), || cluster.leader(None)).await;
    let workload = Workload::start(&cluster).await;
    let recorder = workload.recorder.clone();

    // The leader stops in its tracks (a long pause, as of a VM or a garbage collector), with
    // the clients' calls to it in flight; the others elect a leader, and a fifth client writes
    // every key through it. Then the old leader resumes, before it can hear that it was
    // deposed, and the clients' next calls reach it.
    let mut failovers = Vec::new();
    for round in 0..FAILOVERS {
        let old = cluster.wait_logged("a leader", Duration::from_secs(15), || cluster.leader(None)).await;
        let pid = cluster.masters[old - 1].as_ref().expect("the leader runs").id();
        let pid = Pid::from_raw(i32::try_from(pid).expect("a pid"));
        let at = recorder.clock.now();
        kill(pid, Signal::SIGSTOP).expect("pause the leader");
        let new = cluster.wait_logged("a new leader", Duration::from_secs(30), || cluster.leader(Some(old))).await;
        assert_ne!(new, old, "round {round}: a new master leads");
        let election = Duration::from_nanos(recorder.clock.now() - at);
        let writer = cluster.client_of(new);
        for key in KEYS {
            recorder.write(&writer, CLIENTS, key).await;
        }
        kill(pid, Signal::SIGCONT).expect("resume the old leader");
        cluster
            .wait_logged("the old leader to catch up with the log", Duration::from_secs(30), || {
                caught_up(&cluster, old)
            })
            .await;
        failovers.push(Failover { old, new, at, election });
    }
    workload.finish_and_check(&cluster, &failovers, started).await;
}
