use super::*;
use crate::access::FakeConnector;
use crate::cluster_api::{AgentView, FakeClusterApi};
use crate::cluster_file::ClusterFile;
use crate::journal::HostPhase;
use crate::planner::{self, Desired};
use crate::provider::{FakeProvider, HostState};
use crate::transport::{CommandOutput, TransportCall};
use futures_util::future::BoxFuture;
use gantry_api::AgentState;
use std::path::Path;

const FILE: &str = r#"
version = 1
[cluster]
name = "dev"
[[pool]]
name = "w"
count = 2
resources = "cpus=1"
attributes = { zone = "z{index}" }
"#;

fn desired(count: u32) -> Desired {
    let text = FILE.replace("count = 2", &format!("count = {count}"));
    let file = ClusterFile::parse(Path::new("/tmp/dev.toml"), &text).expect("a valid cluster file");
    Desired::from_cluster_file(&file)
}

struct Harness<P: Provider> {
    dir: tempfile::TempDir,
    provider: P,
    connector: FakeConnector,
    api: Arc<FakeClusterApi>,
    progress: RecordingProgress,
}

impl Harness<FakeProvider> {
    fn new() -> Self {
        Self::with(FakeProvider::new(), FakeConnector::new())
    }
}

impl<P: Provider> Harness<P> {
    fn with(provider: P, connector: FakeConnector) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("gantry"), b"#!/bin/sh\n").expect("a fake binary");
        Self { dir, provider, connector, api: Arc::new(FakeClusterApi::new()), progress: RecordingProgress::new() }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn engine(&self) -> Engine<'_> {
        Engine {
            cluster: "dev".to_string(),
            provider: &self.provider,
            connector: &self.connector,
            api: self.api.clone(),
            progress: &self.progress,
            runtime: RuntimeSettings::default(),
            binary: self.dir.path().join("gantry"),
            options: EngineOptions {
                parallelism: 4,
                retry: RetryPolicy { attempts: 3, initial: Duration::from_millis(1), max: Duration::from_millis(5) },
                ready_timeout: Duration::from_secs(2),
            },
        }
    }

    async fn plan(&self, desired: &Desired) -> Plan {
        let journal = Journal::read_state(&self.state_dir()).expect("journal");
        let hosts = self.provider.list_hosts().await.expect("list");
        planner::plan(desired, &journal, &crate::provider::observed(&hosts))
    }

    async fn converge(&self, desired: &Desired) -> Result<ApplyReport, EngineError> {
        let plan = self.plan(desired).await;
        let mut journal = Journal::open(&self.state_dir()).expect("journal");
        self.engine().apply(&plan, &mut journal).await
    }

    fn phases_of(&self, host: &str) -> Vec<String> {
        self.progress.phases().into_iter().filter(|(h, _)| h == host).map(|(_, p)| p).collect()
    }

    fn position(&self, host: &str, phase: &str) -> usize {
        self.progress.phases().iter().position(|(h, p)| h == host && p == phase).expect("the phase ran")
    }

    fn skipped(&self, host: &str) -> Vec<String> {
        self.progress
            .events()
            .into_iter()
            .filter_map(|e| match e {
                ProgressEvent::PhaseFinished { host: h, phase, skipped: true, .. } if h == host => Some(phase),
                _ => None,
            })
            .collect()
    }
}

fn uploaded(connector: &FakeConnector, host: &str, path: &str) -> String {
    let content = connector.transport(host).file(Path::new(path)).expect("the file was uploaded");
    String::from_utf8(content).expect("text")
}

#[tokio::test]
async fn up_creates_every_host_at_once_bootstraps_masters_before_agents_and_journals_every_host() {
    let h = Harness::new();
    let report = h.converge(&desired(2)).await.expect("apply");
    assert_eq!(report.completed, 6);
    assert_eq!(report.master_url.as_deref(), Some("https://127.0.0.1:5050"));
    let journal = Journal::read_state(&h.state_dir()).expect("journal");
    assert_eq!(journal.hosts.len(), 3);
    for (name, record) in &journal.hosts {
        assert_eq!((record.phase, record.pending), (HostPhase::Bootstrapped, None), "{name}");
    }
    assert_eq!(
        h.phases_of("master-0"),
        ["create", "inspect", "upload-binary", "render-config", "install-service", "start", "join-group", "wait-ready"]
    );
    assert!(h.position("w-1", "create") < h.position("master-0", "inspect"), "hosts are created at once");
    assert!(h.position("master-0", "wait-ready") < h.position("w-0", "inspect"));
    assert!(h.position("master-0", "wait-ready") < h.position("w-1", "inspect"));
    let env = uploaded(&h.connector, "w-1", "/opt/gantry/etc/agent.env");
    for line in [
        "GANTRY_MASTER=https://127.0.0.1:5050",
        "GANTRY_HOSTNAME=w-1",
        "GANTRY_RESOURCES=cpus=1;ports=[31500-31999]",
        "GANTRY_ATTRIBUTES=provider=fake;zone=z1",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} in\n{env}");
    }
    let script = uploaded(&h.connector, "w-1", "/opt/gantry/bin/start-agent.sh");
    assert!(script.contains("supervise --detach --pid-file '/opt/gantry/run/agent.pid'"), "{script}");
    assert!(script.contains("'--resources' '${GANTRY_RESOURCES}'"), "{script}");
    assert!(h.plan(&desired(2)).await.is_empty(), "converged");
}

#[tokio::test]
async fn a_second_bootstrap_changes_nothing() {
    let h = Harness::new();
    h.converge(&desired(1)).await.expect("apply");
    h.connector.transport("w-0").respond(
        "echo running",
        CommandOutput { exit_code: Some(0), stdout: "running\n".into(), stderr: String::new() },
    );
    let host = desired(1).hosts.into_iter().find(|h| h.name == "w-0").expect("w-0");
    let plan = Plan {
        cluster: "dev".into(),
        source: "dev.toml".into(),
        actions: vec![Action::Bootstrap { host, reason: crate::planner::Reason::Adopt }],
        ignored: vec![],
    };
    let mut journal = Journal::open(&h.state_dir()).expect("journal");
    let before = h.skipped("w-0").len();
    h.engine().apply(&plan, &mut journal).await.expect("apply again");
    let skipped = h.skipped("w-0")[before..].to_vec();
    assert_eq!(skipped, ["upload-binary", "render-config", "install-service", "start", "join-group"]);
}

#[tokio::test]
async fn systemd_hosts_get_an_enabled_unit() {
    let h = Harness::with(FakeProvider::new(), FakeConnector::with_systemd());
    h.converge(&desired(1)).await.expect("apply");
    let unit = uploaded(&h.connector, "w-0", "/opt/gantry/etc/gantry-agent.service");
    assert!(unit.contains("EnvironmentFile=/opt/gantry/etc/agent.env"), "{unit}");
    assert!(unit.contains("ExecStart=/opt/gantry/bin/gantry agent --master ${GANTRY_MASTER}"), "{unit}");
    let runs: Vec<String> = h
        .connector
        .transport("w-0")
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            TransportCall::Run(script) => Some(script),
            _ => None,
        })
        .collect();
    assert!(runs.iter().any(|s| s.contains("systemctl enable --quiet 'gantry-agent.service'")), "{runs:?}");
    assert!(runs.iter().any(|s| s == "systemctl restart 'gantry-agent.service'"), "{runs:?}");
}

#[tokio::test]
async fn a_failed_call_leaves_a_resumable_journal() {
    let h = Harness::new();
    h.provider.fail_call(2, ErrorKind::Quota); // call 1 is the harness's list; call 2 creates master-0
    let err = h.converge(&desired(2)).await.expect_err("the create fails");
    let EngineError::Failed { failures } = &err else { panic!("{err}") };
    assert_eq!(failures.len(), 1);
    assert_eq!((failures[0].host.as_str(), failures[0].action), ("master-0", ActionKind::Create));
    assert!(failures[0].message.contains("quota exceeded"), "{err}");
    let journal = Journal::read_state(&h.state_dir()).expect("journal");
    assert_eq!(journal.hosts.keys().collect::<Vec<_>>(), ["master-0", "w-0", "w-1"], "the stage's other creates ran");
    assert_eq!(journal.hosts["master-0"].pending, None, "the failure is recorded");
    assert!(
        h.progress.phases().iter().all(|(_, phase)| phase == "create"),
        "later stages did not start: {:?}",
        h.progress.phases()
    );
    let plan = h.plan(&desired(2)).await;
    assert_eq!(plan.actions.len(), 4, "the master's create and every bootstrap are left: {plan}");
    h.converge(&desired(2)).await.expect("the next run converges");
    assert!(h.plan(&desired(2)).await.is_empty());
}

#[tokio::test]
async fn retryable_failures_are_retried() {
    let h = Harness::new();
    h.provider.fail_call(2, ErrorKind::Transient);
    h.converge(&desired(1)).await.expect("the retry succeeds");
    let retries: Vec<_> =
        h.progress.events().into_iter().filter(|e| matches!(e, ProgressEvent::Retrying { .. })).collect();
    assert_eq!(retries.len(), 1, "{retries:?}");
}

#[tokio::test]
async fn down_drains_agents_and_destroys_masters_last() {
    let h = Harness::new();
    h.converge(&desired(2)).await.expect("up");
    h.api.set_agent("w-0", Some(AgentView { state: AgentState::Unreachable, tasks: 2 }));
    h.converge(&Desired::empty("dev", "dev.toml")).await.expect("down");
    assert!(h.provider.hosts().is_empty());
    assert!(Journal::read_state(&h.state_dir()).expect("journal").hosts.is_empty());
    assert!(h.position("w-0", "destroy-host") < h.position("master-0", "destroy-host"));
    assert!(h.position("w-1", "destroy-host") < h.position("master-0", "destroy-host"));
    assert!(h.position("w-0", "wait-unreachable") < h.position("w-0", "remove-files"));
    assert!(!h.skipped("w-0").contains(&"wait-unreachable".to_string()), "w-0 had tasks to replace");
    assert!(h.skipped("w-1").contains(&"wait-unreachable".to_string()), "w-1 had none");
    assert!(h.position("w-0", "wait-unreachable") < h.position("w-0", "revoke-agent"));
    let mut revoked = h.api.revoked();
    revoked.sort();
    assert_eq!(revoked, ["w-0", "w-1"], "every drained agent's certificate is revoked");
}

/// A provider that checks, at every create and destroy, that the journal on disk already holds the
/// intent of that action.
#[derive(Debug)]
struct JournalChecking {
    inner: FakeProvider,
    dir: PathBuf,
    violations: Mutex<Vec<String>>,
    checked: Mutex<usize>,
}

impl JournalChecking {
    fn check(&self, host: &str, kind: ActionKind) {
        let state = Journal::read_state(&self.dir).expect("journal");
        *self.checked.lock().expect("lock") += 1;
        if state.hosts.get(host).and_then(|r| r.pending) != Some(kind) {
            self.violations.lock().expect("lock").push(format!("{} {host} before its intent", kind.verb()));
        }
    }
}

impl Provider for JournalChecking {
    fn name(&self) -> &str {
        "checking"
    }
    fn capabilities(&self) -> crate::provider::ProviderCapabilities {
        self.inner.capabilities()
    }
    fn create_host<'a>(&'a self, spec: &'a HostSpec) -> BoxFuture<'a, Result<HostDescription, ProviderError>> {
        self.check(&spec.name, ActionKind::Create);
        self.inner.create_host(spec)
    }
    fn describe_host<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<HostDescription, ProviderError>> {
        self.inner.describe_host(name)
    }
    fn list_hosts(&self) -> BoxFuture<'_, Result<Vec<HostDescription>, ProviderError>> {
        self.inner.list_hosts()
    }
    fn destroy_host<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        self.check(name, ActionKind::Destroy);
        self.inner.destroy_host(name)
    }
}

#[tokio::test]
async fn the_journal_holds_the_intent_before_every_provider_call() {
    let provider = JournalChecking {
        inner: FakeProvider::new().with_host("w-7", HostState::Running),
        dir: PathBuf::new(),
        violations: Mutex::new(Vec::new()),
        checked: Mutex::new(0),
    };
    let mut h = Harness::with(provider, FakeConnector::new());
    h.provider.dir = h.state_dir();
    h.converge(&desired(2)).await.expect("up");
    h.converge(&Desired::empty("dev", "dev.toml")).await.expect("down");
    assert_eq!(*h.provider.checked.lock().expect("lock"), 7, "3 creates, 4 destroys (w-7 was unknown)");
    assert!(h.provider.violations.lock().expect("lock").is_empty(), "{:?}", h.provider.violations);
}
