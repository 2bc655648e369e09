//! The provider conformance suite: the same scenarios, in the same order, against every
//! [`Provider`] (local, onprem, aws; gce and azure next; the [`super::FakeProvider`] too), so a
//! provider is held to the contract in the module docs of [`super`] by one piece of code rather
//! than by each crate's own tests.
//!
//! A provider crate's test builds a [`Subject`] — the provider under test, the hosts it can make,
//! and a second provider of another cluster — and calls [`run`]. The suite returns a [`Report`]
//! or the first [`ConformanceError`], which names the provider, the [`Scenario`] and what was
//! seen instead of what the contract asks. After a failure it still destroys what it made and
//! tears both clusters down (best effort), so a cloud emulator or account is left clean.
//!
//! It is a library, not `cfg(test)`, so every provider crate's tests can call it. It never sleeps
//! in place of a check and sets no deadline of its own: the interrupted create is cancelled at
//! points it observes (dropped after its first poll; dropped once `describe_host` reports the
//! host, asked every 20 ms while the create runs), and every check is made on what the provider
//! answers.

use super::{
    ErrorKind, HostDescription, HostSpec, HostState, Provider, ProviderCapabilities, ProviderError, TransportKind,
};
use futures_util::FutureExt;
use futures_util::future::{self, Either};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// A host name no cluster of the suite has; describing it must be [`ErrorKind::NotFound`].
pub const UNKNOWN_HOST: &str = "conformance-unknown-9";

/// How often the interrupt scenario asks the provider whether the host it creates exists yet (a
/// polling interval, not a deadline: the create itself bounds the wait).
const WATCH_INTERVAL: Duration = Duration::from_millis(20);

/// The scenarios, in the order [`run`] performs them; each starts from the state the previous
/// ones left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// `prepare` succeeds (twice), the cluster lists no host and describes none of its names.
    StartsEmpty,
    /// `create_host` returns the host by its name, pending or running, with an address when the
    /// provider's transport is SSH and a `provider` attribute naming the provider.
    Create,
    /// Creating the same names again returns the same hosts and makes no second one.
    CreateIsIdempotent,
    /// `describe_host` matches what create returned; an unknown name is `NotFound`.
    Describe,
    /// `list_hosts` returns exactly the created hosts, also once a second cluster has hosts
    /// (some with the same names).
    ListIsThisCluster,
    /// A create dropped mid-flight, then a create of the same name, leaves exactly one host.
    InterruptAndResume,
    /// `destroy_host` removes a host (describe is `NotFound`, list lacks it), again is fine, and
    /// the second cluster's host of the same name survives.
    Destroy,
    /// With no host left, `teardown` succeeds (twice) and the cluster lists nothing.
    Teardown,
}

impl Scenario {
    /// Every scenario, in the order [`run`] performs them.
    pub const ALL: [Scenario; 8] = [
        Scenario::StartsEmpty,
        Scenario::Create,
        Scenario::CreateIsIdempotent,
        Scenario::Describe,
        Scenario::ListIsThisCluster,
        Scenario::InterruptAndResume,
        Scenario::Destroy,
        Scenario::Teardown,
    ];

    /// A short title, as in messages.
    pub fn title(self) -> &'static str {
        match self {
            Scenario::StartsEmpty => "list is empty at first",
            Scenario::Create => "create returns the host",
            Scenario::CreateIsIdempotent => "create again is idempotent",
            Scenario::Describe => "describe matches; an unknown name is not found",
            Scenario::ListIsThisCluster => "list is exactly this cluster's hosts",
            Scenario::InterruptAndResume => "an interrupted create resumes without a duplicate",
            Scenario::Destroy => "destroy removes the host, and again is fine",
            Scenario::Teardown => "teardown leaves nothing",
        }
    }

    fn number(self) -> usize {
        Scenario::ALL.iter().position(|s| *s == self).map_or(0, |i| i + 1)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.number(), self.title())
    }
}

/// What the suite runs against.
#[derive(Debug)]
pub struct Subject<'a> {
    /// The provider under test. Its cluster must have no host when the suite starts.
    pub provider: &'a dyn Provider,
    /// Hosts it can create (onprem: hosts its cluster file lists), at least one, all of one
    /// cluster, with distinct names.
    pub hosts: Vec<HostSpec>,
    /// Two more hosts of the same cluster, for the interrupt scenario: the create of the first is
    /// dropped after its first poll, the create of the second once the provider reports the host.
    pub interrupted: [HostSpec; 2],
    /// A provider of a second cluster, configured as the first is (same region, same kind of
    /// state dir), with no host when the suite starts.
    pub other: &'a dyn Provider,
    /// Hosts the second cluster creates, at least one; give one the name of a host in `hosts`
    /// (two clusters may use the same host names) and one a name of its own.
    pub other_hosts: Vec<HostSpec>,
}

/// What a passing run saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The provider's name.
    pub provider: String,
    /// The scenarios that passed, in order (all of them when [`run`] returns a report).
    pub passed: Vec<Scenario>,
    /// What the suite could and could not exercise, e.g. a create that finished in its first
    /// poll, so there was nothing to interrupt.
    pub notes: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "provider `{}` passed {} of {} conformance scenarios",
            self.provider,
            self.passed.len(),
            Scenario::ALL.len()
        )?;
        for scenario in &self.passed {
            writeln!(f, "  ok {scenario}")?;
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        Ok(())
    }
}

/// Why a provider does not conform, or why the suite could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConformanceError {
    /// The [`Subject`] is not one the suite can run (no hosts, mixed clusters, a provider that
    /// cannot create or destroy).
    #[error("provider `{provider}`: the conformance subject is unusable: {message}")]
    Subject {
        /// The provider's name.
        provider: String,
        /// What is wrong with the subject.
        message: String,
    },
    /// A scenario failed.
    #[error("provider `{provider}` fails conformance scenario {scenario}: {message}{}", cleanup_note(.cleanup))]
    Failed {
        /// The provider's name.
        provider: String,
        /// The scenario that failed.
        scenario: Scenario,
        /// What the contract asks and what the provider did instead.
        message: String,
        /// What the clean-up after the failure could not undo.
        cleanup: Vec<String>,
    },
}

fn cleanup_note(cleanup: &[String]) -> String {
    if cleanup.is_empty() { String::new() } else { format!(" (clean-up after it failed too: {})", cleanup.join("; ")) }
}

/// Runs every [`Scenario`] in order against `subject`; the first failure ends the run (after a
/// best-effort clean-up of both clusters). Needs a tokio runtime with its timer enabled.
pub async fn run<'a>(subject: &'a Subject<'a>) -> Result<Report, ConformanceError> {
    let provider = subject.provider.name().to_string();
    let caps = subject.provider.capabilities();
    check_subject(subject, &caps)
        .map_err(|message| ConformanceError::Subject { provider: provider.clone(), message })?;
    let mut state = Run::new(subject, caps);
    let mut passed = Vec::new();
    for scenario in Scenario::ALL {
        let outcome = match scenario {
            Scenario::StartsEmpty => state.starts_empty().await,
            Scenario::Create => state.create().await,
            Scenario::CreateIsIdempotent => state.create_again().await,
            Scenario::Describe => state.describe().await,
            Scenario::ListIsThisCluster => state.list_is_this_cluster().await,
            Scenario::InterruptAndResume => state.interrupt_and_resume().await,
            Scenario::Destroy => state.destroy().await,
            Scenario::Teardown => state.teardown().await,
        };
        if let Err(message) = outcome {
            let cleanup = state.clean_up().await;
            return Err(ConformanceError::Failed { provider, scenario, message, cleanup });
        }
        passed.push(scenario);
    }
    Ok(Report { provider, passed, notes: state.notes })
}

fn check_subject(subject: &Subject<'_>, caps: &ProviderCapabilities) -> Result<(), String> {
    if !caps.create || !caps.destroy {
        return Err("the suite creates and destroys hosts, but the provider's capabilities say it cannot".into());
    }
    let (Some(first), Some(other)) = (subject.hosts.first(), subject.other_hosts.first()) else {
        return Err("`hosts` and `other_hosts` each need at least one host".into());
    };
    let ours: Vec<&HostSpec> = subject.hosts.iter().chain(&subject.interrupted).collect();
    if let Some(stray) = ours.iter().find(|h| h.cluster != first.cluster) {
        return Err(format!("host {} is of cluster {}, not {}", stray.name, stray.cluster, first.cluster));
    }
    if let Some(stray) = subject.other_hosts.iter().find(|h| h.cluster != other.cluster) {
        return Err(format!("other host {} is of cluster {}, not {}", stray.name, stray.cluster, other.cluster));
    }
    if first.cluster == other.cluster {
        return Err(format!("both clusters are named {}", first.cluster));
    }
    let names: BTreeSet<&str> = ours.iter().map(|h| h.name.as_str()).collect();
    let other_names: BTreeSet<&str> = subject.other_hosts.iter().map(|h| h.name.as_str()).collect();
    if names.len() != ours.len() || other_names.len() != subject.other_hosts.len() {
        return Err("host names must be distinct within a cluster".into());
    }
    if names.contains(UNKNOWN_HOST) || other_names.contains(UNKNOWN_HOST) {
        return Err(format!("{UNKNOWN_HOST} is the name the suite expects to be unknown"));
    }
    Ok(())
}

/// Returns `Err(message)` from the enclosing scenario when `cond` does not hold.
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err(format!($($message)+));
        }
    };
}

/// The state the scenarios share.
struct Run<'a> {
    subject: &'a Subject<'a>,
    provider: &'a dyn Provider,
    other: &'a dyn Provider,
    caps: ProviderCapabilities,
    cluster: String,
    other_cluster: String,
    /// This cluster's hosts as create returned them.
    created: BTreeMap<String, HostDescription>,
    /// The second cluster's hosts as its create returned them.
    other_created: BTreeMap<String, HostDescription>,
    notes: Vec<String>,
}

/// `result`, or a message naming the call that failed.
fn call<T>(what: impl fmt::Display, result: Result<T, ProviderError>) -> Result<T, String> {
    result.map_err(|e| format!("{what} failed: {e}"))
}

/// Checks a host as `provider`'s create returned it for `spec`.
fn check_created(provider: &dyn Provider, spec: &HostSpec, host: &HostDescription) -> Result<(), String> {
    let what = format!("create_host({}) of cluster {}", spec.name, spec.cluster);
    ensure!(host.name == spec.name, "{what} returned a host named {}", host.name);
    ensure!(
        matches!(host.state, HostState::Running | HostState::Pending),
        "{what} returned a host that is {:?}, not running or pending",
        host.state
    );
    if provider.capabilities().transport == TransportKind::Ssh {
        ensure!(
            host.address.as_deref().is_some_and(|a| !a.is_empty()),
            "{what} returned no address, but the provider's hosts are reached over SSH: {host:?}"
        );
    }
    ensure!(
        host.attributes.get("provider").map(String::as_str) == Some(provider.name()),
        "{what} returned attributes {:?} without provider = {}",
        host.attributes,
        provider.name()
    );
    Ok(())
}

/// Checks that `provider` of `cluster` describes `name` as not found.
async fn not_found(provider: &dyn Provider, cluster: &str, name: &str, why: &str) -> Result<(), String> {
    match provider.describe_host(name).await {
        Ok(host) => Err(format!("describe_host({name}) of cluster {cluster} {why}, but it answered {host:?}")),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!(
            "describe_host({name}) of cluster {cluster} {why}: it should fail as not found, not as {}: {e}",
            e.kind()
        )),
    }
}

/// Asks `describe_host(name)` until the provider finds the host.
async fn until_described(provider: &dyn Provider, name: &str) -> Result<HostDescription, ProviderError> {
    loop {
        match provider.describe_host(name).await {
            Err(e) if e.kind() == ErrorKind::NotFound => tokio::time::sleep(WATCH_INTERVAL).await,
            other => return other,
        }
    }
}

impl<'a> Run<'a> {
    fn new(subject: &'a Subject<'a>, caps: ProviderCapabilities) -> Self {
        Run {
            subject,
            provider: subject.provider,
            other: subject.other,
            caps,
            cluster: subject.hosts[0].cluster.clone(),
            other_cluster: subject.other_hosts[0].cluster.clone(),
            created: BTreeMap::new(),
            other_created: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    /// This cluster's hosts as list reports them, sorted by name, duplicates kept.
    async fn list(&self) -> Result<Vec<HostDescription>, String> {
        let mut hosts = call(format!("list_hosts of cluster {}", self.cluster), self.provider.list_hosts().await)?;
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(hosts)
    }

    async fn listed_names(&self) -> Result<Vec<String>, String> {
        Ok(self.list().await?.into_iter().map(|h| h.name).collect())
    }

    /// Checks that list reports exactly the created hosts, each once and as create described it.
    async fn list_is_created(&self, when: &str) -> Result<(), String> {
        let listed = self.list().await?;
        let names: Vec<&str> = listed.iter().map(|h| h.name.as_str()).collect();
        let expected: Vec<&str> = self.created.keys().map(String::as_str).collect();
        ensure!(
            names == expected,
            "{when}, list_hosts of cluster {} should be exactly {expected:?} (each once), but is {names:?}",
            self.cluster
        );
        for host in &listed {
            self.same_host("list_hosts", &self.created[&host.name], host)?;
        }
        Ok(())
    }

    /// Checks that `seen` (from `how`) is the host create returned as `known`: same name, address
    /// and attributes; pending or running.
    fn same_host(&self, how: &str, known: &HostDescription, seen: &HostDescription) -> Result<(), String> {
        ensure!(
            seen.name == known.name
                && seen.address == known.address
                && seen.attributes == known.attributes
                && matches!(seen.state, HostState::Running | HostState::Pending),
            "{how} of cluster {} reports host {} as {seen:?}, but create returned {known:?}",
            self.cluster,
            known.name
        );
        Ok(())
    }

    /// Checks `cluster_resources`: all of them exist (`made`), or every owned one is gone.
    async fn resources_check(&self, after: &str, made: bool) -> Result<(), String> {
        let cluster = &self.cluster;
        let resources =
            call(format!("cluster_resources of cluster {cluster} {after}"), self.provider.cluster_resources().await)?;
        if !self.caps.cluster_resources {
            ensure!(
                resources.is_empty(),
                "the capabilities say cluster {cluster} has no resources of its own, but cluster_resources {after} \
                 lists {resources:?}"
            );
            return Ok(());
        }
        let wrong: Vec<_> = resources.iter().filter(|r| (made || r.owned) && r.id.is_some() != made).collect();
        let should =
            if made { "every resource should exist (have an id)" } else { "every owned resource should be gone" };
        ensure!(wrong.is_empty(), "{after}, {should} in cluster {cluster}, but these are not: {wrong:?}");
        Ok(())
    }

    async fn starts_empty(&mut self) -> Result<(), String> {
        let cluster = &self.cluster;
        call(format!("prepare of cluster {cluster}"), self.provider.prepare().await)?;
        call(format!("prepare of cluster {cluster} again (idempotent)"), self.provider.prepare().await)?;
        self.resources_check("after prepare", true).await?;
        let names = self.listed_names().await?;
        ensure!(
            names.is_empty(),
            "before any create, list_hosts of cluster {cluster} should be empty but is {names:?}"
        );
        for spec in &self.subject.hosts {
            not_found(self.provider, cluster, &spec.name, "before it is created").await?;
        }
        Ok(())
    }

    async fn create(&mut self) -> Result<(), String> {
        let (provider, subject) = (self.provider, self.subject);
        for spec in &subject.hosts {
            let what = format!("create_host({}) of cluster {}", spec.name, spec.cluster);
            let host = call(what, provider.create_host(spec).await)?;
            check_created(provider, spec, &host)?;
            self.created.insert(spec.name.clone(), host);
        }
        Ok(())
    }

    async fn create_again(&mut self) -> Result<(), String> {
        for spec in &self.subject.hosts {
            let what = format!("create_host({}) of cluster {} again", spec.name, spec.cluster);
            let again = call(what, self.provider.create_host(spec).await)?;
            self.same_host("create_host again", &self.created[&spec.name], &again)?;
        }
        self.list_is_created("after every host was created twice").await
    }

    async fn describe(&mut self) -> Result<(), String> {
        let cluster = &self.cluster;
        for (name, known) in &self.created {
            let seen =
                call(format!("describe_host({name}) of cluster {cluster}"), self.provider.describe_host(name).await)?;
            self.same_host("describe_host", known, &seen)?;
        }
        not_found(self.provider, cluster, UNKNOWN_HOST, "names no host").await
    }

    async fn list_is_this_cluster(&mut self) -> Result<(), String> {
        self.list_is_created("after the creates").await?;
        let (other, subject, theirs) = (self.other, self.subject, self.other_cluster.clone());
        call(format!("prepare of the second cluster {theirs}"), other.prepare().await)?;
        for spec in &subject.other_hosts {
            let what = format!("create_host({}) of the second cluster {theirs}", spec.name);
            let host = call(what, other.create_host(spec).await)?;
            check_created(other, spec, &host)?;
            self.other_created.insert(spec.name.clone(), host);
        }
        let names: Vec<&String> = self.other_created.keys().collect();
        self.list_is_created(&format!("once the second cluster {theirs} has hosts {names:?}")).await?;
        let cluster = &self.cluster;
        for name in self.other_created.keys() {
            match self.created.get(name) {
                Some(ours) => {
                    let what = format!("describe_host({name}) of cluster {cluster} (a name cluster {theirs} has too)");
                    let seen = call(what, self.provider.describe_host(name).await)?;
                    self.same_host("describe_host (of a name the second cluster has too)", ours, &seen)?;
                }
                None => not_found(self.provider, cluster, name, "names only a host of the second cluster").await?,
            }
        }
        let listed = call(format!("list_hosts of the second cluster {theirs}"), other.list_hosts().await)?;
        let mut listed: Vec<String> = listed.into_iter().map(|h| h.name).collect();
        listed.sort();
        let expected: Vec<String> = self.other_created.keys().cloned().collect();
        ensure!(
            listed == expected,
            "list_hosts of the second cluster {theirs} should be exactly {expected:?}, but is {listed:?}"
        );
        Ok(())
    }

    async fn interrupt_and_resume(&mut self) -> Result<(), String> {
        let (provider, subject) = (self.provider, self.subject);
        let [early, late] = &subject.interrupted;
        let what = format!("create_host({}) of cluster {}", early.name, self.cluster);
        match provider.create_host(early).now_or_never() {
            None => self.notes.push(format!("{what} was dropped after its first poll")),
            Some(Ok(_)) => {
                self.notes.push(format!("{what} finished in its first poll: there was nothing to interrupt"))
            }
            Some(Err(e)) => return Err(format!("{what}, polled once, failed: {e}")),
        }
        self.resume(early, "dropped after its first poll").await?;

        let what = format!("create_host({}) of cluster {}", late.name, self.cluster);
        let watch = std::pin::pin!(until_described(provider, &late.name));
        match future::select(provider.create_host(late), watch).await {
            Either::Left((Ok(_), _)) => self.notes.push(format!(
                "{what} finished before describe_host reported the host: there was nothing to interrupt"
            )),
            Either::Left((Err(e), _)) => return Err(format!("{what}, watched, failed: {e}")),
            Either::Right((Ok(seen), create)) => {
                drop(create);
                self.notes.push(format!("{what} was dropped once describe_host reported the host {:?}", seen.state));
            }
            Either::Right((Err(e), _)) => return Err(format!("while {what} ran, describe_host failed: {e}")),
        }
        self.resume(late, "dropped once describe_host reported the host").await?;
        self.list_is_created("after the interrupted creates resumed").await
    }

    /// Creates `spec` after an interrupted create; checks that exactly one host has its name.
    async fn resume(&mut self, spec: &HostSpec, how: &str) -> Result<(), String> {
        let what = format!("create_host({}) of cluster {} after one {how}", spec.name, self.cluster);
        let host = call(&what, self.provider.create_host(spec).await)?;
        check_created(self.provider, spec, &host)?;
        let names = self.listed_names().await?;
        let count = names.iter().filter(|n| **n == spec.name).count();
        ensure!(count == 1, "after {what}, list_hosts has {count} hosts named {} (should be 1): {names:?}", spec.name);
        self.created.insert(spec.name.clone(), host);
        Ok(())
    }

    async fn destroy(&mut self) -> Result<(), String> {
        let (provider, other) = (self.provider, self.other);
        let (cluster, theirs) = (self.cluster.clone(), self.other_cluster.clone());
        let names: Vec<String> = self.created.keys().cloned().collect();
        for name in names {
            call(format!("destroy_host({name}) of cluster {cluster}"), provider.destroy_host(&name).await)?;
            self.created.remove(&name);
            not_found(provider, &cluster, &name, "after it was destroyed").await?;
            self.list_is_created(&format!("after destroy_host({name})")).await?;
            let what = format!("destroy_host({name}) of cluster {cluster} again (idempotent)");
            call(what, provider.destroy_host(&name).await)?;
        }
        let what = format!("destroy_host({UNKNOWN_HOST}) of cluster {cluster} (a name that never existed)");
        call(what, provider.destroy_host(UNKNOWN_HOST).await)?;
        for (name, known) in &self.other_created {
            let what =
                format!("describe_host({name}) of the second cluster {theirs} after cluster {cluster}'s destroys");
            let seen = call(what, other.describe_host(name).await)?;
            ensure!(
                seen.name == known.name && seen.address == known.address,
                "destroying cluster {cluster}'s hosts changed the second cluster's host {name}: {seen:?}, was {known:?}"
            );
        }
        let names: Vec<String> = self.other_created.keys().cloned().collect();
        for name in names {
            call(format!("destroy_host({name}) of the second cluster {theirs}"), other.destroy_host(&name).await)?;
            self.other_created.remove(&name);
        }
        call(format!("teardown of the second cluster {theirs}"), other.teardown().await)?;
        let left = call(format!("list_hosts of the second cluster {theirs}"), other.list_hosts().await)?;
        ensure!(left.is_empty(), "the second cluster {theirs} still lists {left:?} after destroying every host");
        Ok(())
    }

    async fn teardown(&mut self) -> Result<(), String> {
        let cluster = &self.cluster;
        call(format!("teardown of cluster {cluster}"), self.provider.teardown().await)?;
        let names = self.listed_names().await?;
        ensure!(names.is_empty(), "after teardown, list_hosts of cluster {cluster} should be empty but is {names:?}");
        self.resources_check("after teardown", false).await?;
        call(format!("teardown of cluster {cluster} again (idempotent)"), self.provider.teardown().await)?;
        Ok(())
    }

    /// After a failure: destroys every host either cluster may have and tears both down (the
    /// second cluster first: its resources may live in the first's network); what fails is
    /// reported, not retried.
    async fn clean_up(&self) -> Vec<String> {
        let ours = self.subject.hosts.iter().chain(&self.subject.interrupted);
        let clusters = [
            (self.other, &self.other_cluster, self.subject.other_hosts.iter().collect::<Vec<_>>()),
            (self.provider, &self.cluster, ours.collect()),
        ];
        let mut failures = Vec::new();
        for (provider, cluster, hosts) in clusters {
            let mut names: BTreeSet<String> = hosts.iter().map(|h| h.name.clone()).collect();
            if let Ok(listed) = provider.list_hosts().await {
                names.extend(listed.into_iter().map(|h| h.name));
            }
            for name in &names {
                if let Err(e) = provider.destroy_host(name).await {
                    failures.push(format!("destroy_host({name}) of cluster {cluster}: {e}"));
                }
            }
            if let Err(e) = provider.teardown().await {
                failures.push(format!("teardown of cluster {cluster}: {e}"));
            }
        }
        failures
    }
}

#[cfg(test)]
mod tests;
