use super::*;
use crate::cluster_file::Role;
use crate::provider::FakeProvider;
use futures_util::future::BoxFuture;
use std::sync::{Arc, Mutex};

fn spec(cluster: &str, name: &str) -> HostSpec {
    let role = if name.starts_with("master") { Role::Master } else { Role::Agent };
    HostSpec {
        cluster: cluster.into(),
        name: name.into(),
        role,
        pool: "w".into(),
        resources: None,
        attributes: BTreeMap::new(),
    }
}

fn subject<'a>(provider: &'a dyn Provider, other: &'a dyn Provider) -> Subject<'a> {
    Subject {
        provider,
        hosts: vec![spec("a", "master-0"), spec("a", "w-0")],
        interrupted: [spec("a", "w-1"), spec("a", "w-2")],
        other,
        other_hosts: vec![spec("b", "w-0"), spec("b", "w-7")],
    }
}

/// How a [`Flawed`] provider breaks the contract (or, `Booting`, keeps it while a create
/// takes a few polls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    /// Creates take several polls, the host pending meanwhile; no contract is broken.
    Booting,
    /// Like `Booting`, but a create that finds a pending host abandoned by a dropped create
    /// launches a second one (as a cloud provider that ignored its own journal would).
    BootingDuplicates,
    /// Create on an existing name fails with a conflict.
    CreateConflicts,
    /// An unknown name is described as `Other`, not `NotFound`.
    UnknownIsOther,
    /// Destroy does nothing.
    DestroyKeeps,
    /// Says its hosts are reached over SSH but reports no address.
    SshWithoutAddress,
}

/// A [`FakeProvider`] with a flaw; two of them sharing one fake are two clusters whose
/// lists leak into each other.
#[derive(Debug)]
struct Flawed {
    inner: Arc<FakeProvider>,
    flaw: Option<Flaw>,
    duplicates: Mutex<Vec<HostDescription>>,
}

impl Flawed {
    fn new(inner: Arc<FakeProvider>, flaw: Option<Flaw>) -> Self {
        Self { inner, flaw, duplicates: Mutex::new(Vec::new()) }
    }

    fn booting(&self) -> bool {
        matches!(self.flaw, Some(Flaw::Booting | Flaw::BootingDuplicates))
    }
}

impl Provider for Flawed {
    fn name(&self) -> &str {
        "fake"
    }

    fn capabilities(&self) -> ProviderCapabilities {
        let mut caps = self.inner.capabilities();
        if self.flaw == Some(Flaw::SshWithoutAddress) {
            caps.transport = TransportKind::Ssh;
        }
        caps
    }

    fn create_host<'a>(&'a self, spec: &'a HostSpec) -> BoxFuture<'a, Result<HostDescription, ProviderError>> {
        Box::pin(async move {
            let existing = self.inner.hosts().get(&spec.name).cloned();
            if let Some(host) = &existing {
                if self.flaw == Some(Flaw::CreateConflicts) {
                    return Err(ProviderError::Call {
                        provider: "fake".into(),
                        operation: "create",
                        host: spec.name.clone(),
                        kind: ErrorKind::Conflict,
                        message: "exists".into(),
                    });
                }
                if self.flaw == Some(Flaw::BootingDuplicates) && host.state == HostState::Pending {
                    self.duplicates.lock().expect("not poisoned").push(host.clone());
                }
            }
            if self.booting() && existing.is_none() {
                tokio::task::yield_now().await;
                self.inner.create_host(spec).await?;
                self.inner.set_state(&spec.name, HostState::Pending);
                for _ in 0..3 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            let mut host = self.inner.create_host(spec).await?;
            if self.flaw == Some(Flaw::SshWithoutAddress) {
                host.address = None;
            }
            Ok(host)
        })
    }

    fn describe_host<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<HostDescription, ProviderError>> {
        Box::pin(async move {
            match self.inner.describe_host(name).await {
                Err(ProviderError::Call { provider, operation, host, kind: ErrorKind::NotFound, message })
                    if self.flaw == Some(Flaw::UnknownIsOther) =>
                {
                    Err(ProviderError::Call { provider, operation, host, kind: ErrorKind::Other, message })
                }
                other => other,
            }
        })
    }

    fn list_hosts(&self) -> BoxFuture<'_, Result<Vec<HostDescription>, ProviderError>> {
        Box::pin(async move {
            let mut hosts = self.inner.list_hosts().await?;
            hosts.extend(self.duplicates.lock().expect("not poisoned").iter().cloned());
            Ok(hosts)
        })
    }

    fn destroy_host<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            if self.flaw == Some(Flaw::DestroyKeeps) {
                return Ok(());
            }
            self.duplicates.lock().expect("not poisoned").retain(|h| h.name != name);
            self.inner.destroy_host(name).await
        })
    }
}

#[tokio::test]
async fn the_fake_provider_conforms() {
    let (a, b) = (FakeProvider::new(), FakeProvider::new());
    let report = run(&subject(&a, &b)).await.expect("the fake conforms");
    assert_eq!(report.passed, Scenario::ALL);
    assert_eq!(report.provider, "fake");
    assert!(report.notes.iter().any(|n| n.contains("finished in its first poll")), "{report}");
    assert!(a.hosts().is_empty() && b.hosts().is_empty(), "the suite leaves no host");
}

#[tokio::test]
async fn a_create_that_takes_polls_is_dropped_mid_flight_and_resumed() {
    let a = Flawed::new(Arc::new(FakeProvider::new()), Some(Flaw::Booting));
    let b = FakeProvider::new();
    let report = run(&subject(&a, &b)).await.expect("a slow create still conforms");
    let notes = report.notes.join("\n");
    assert!(notes.contains("create_host(w-1) of cluster a was dropped after its first poll"), "{notes}");
    assert!(notes.contains("create_host(w-2) of cluster a was dropped once describe_host reported"), "{notes}");
}

async fn failure(provider: &dyn Provider, other: &dyn Provider) -> (Scenario, String) {
    match run(&subject(provider, other)).await {
        Ok(report) => panic!("a flawed provider passed:\n{report}"),
        Err(ConformanceError::Failed { scenario, message, cleanup, .. }) => {
            assert!(cleanup.is_empty(), "the clean-up after the failure worked: {cleanup:?}");
            (scenario, message)
        }
        Err(e) => panic!("the subject was usable: {e}"),
    }
}

#[tokio::test]
async fn each_broken_rule_fails_its_scenario() {
    let cases = [
        (Flaw::BootingDuplicates, Scenario::InterruptAndResume, "list_hosts has 2 hosts named w-2"),
        (Flaw::CreateConflicts, Scenario::CreateIsIdempotent, "create_host(master-0) of cluster a again failed"),
        (Flaw::UnknownIsOther, Scenario::StartsEmpty, "should fail as not found, not as failed"),
        (Flaw::DestroyKeeps, Scenario::Destroy, "describe_host(master-0) of cluster a after it was destroyed"),
        (Flaw::SshWithoutAddress, Scenario::Create, "returned no address"),
    ];
    for (flaw, expected, words) in cases {
        let provider = Flawed::new(Arc::new(FakeProvider::new()), Some(flaw));
        let other = FakeProvider::new();
        let (scenario, message) = failure(&provider, &other).await;
        assert_eq!(scenario, expected, "{flaw:?}: {message}");
        assert!(message.contains(words), "{flaw:?}: {message}");
    }
}

#[tokio::test]
async fn a_list_that_shows_another_clusters_hosts_fails() {
    let shared = Arc::new(FakeProvider::new());
    let (a, b) = (Flawed::new(shared.clone(), None), Flawed::new(shared.clone(), None));
    let (scenario, message) = failure(&a, &b).await;
    assert_eq!(scenario, Scenario::ListIsThisCluster, "{message}");
    assert!(message.contains("should be exactly [\"master-0\", \"w-0\"]"), "{message}");
    assert!(shared.hosts().is_empty(), "the clean-up destroyed what the suite made");
}

#[tokio::test]
async fn an_unusable_subject_is_refused_before_any_call() {
    let (a, b) = (FakeProvider::new(), FakeProvider::new());
    let mut same = subject(&a, &b);
    same.other_hosts = vec![spec("a", "w-7")];
    let err = run(&same).await.expect_err("both clusters are named a");
    assert!(matches!(err, ConformanceError::Subject { .. }), "{err}");
    assert!(err.to_string().contains("both clusters are named a"), "{err}");
    assert!(a.calls().is_empty() && b.calls().is_empty());
}

#[test]
fn scenarios_are_numbered_in_order() {
    assert_eq!(Scenario::StartsEmpty.to_string(), "1 (list is empty at first)");
    assert_eq!(Scenario::Teardown.to_string(), "8 (teardown leaves nothing)");
}
