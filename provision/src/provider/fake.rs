//! A recording, in-memory [`Provider`] for tests of the engine and the bootstrap: it keeps the
//! idempotency contract, records every call, and fails the Nth call with a chosen kind.

use super::{
    ErrorKind, HostDescription, HostSpec, HostState, Provider, ProviderCapabilities, ProviderError, TransportKind,
};
use futures_util::future::BoxFuture;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A call the fake received, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderCall {
    /// `create_host(name)`.
    Create(String),
    /// `describe_host(name)`.
    Describe(String),
    /// `list_hosts()`.
    List,
    /// `destroy_host(name)`.
    Destroy(String),
}

/// An in-memory provider that records its calls.
#[derive(Debug, Default)]
pub struct FakeProvider {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    hosts: BTreeMap<String, HostDescription>,
    calls: Vec<ProviderCall>,
    failures: BTreeMap<usize, ErrorKind>,
}

impl FakeProvider {
    /// A provider with no hosts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a host that exists before the test starts.
    pub fn with_host(self, name: &str, state: HostState) -> Self {
        self.lock().hosts.insert(name.to_string(), describe(name, state));
        self
    }

    /// Makes the `n`th call from now on (1-based, counting every call) fail with `kind`, without
    /// effect. The call is still recorded.
    pub fn fail_call(&self, n: usize, kind: ErrorKind) {
        let mut inner = self.lock();
        let at = inner.calls.len() + n;
        inner.failures.insert(at, kind);
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<ProviderCall> {
        self.lock().calls.clone()
    }

    /// The hosts that exist now.
    pub fn hosts(&self) -> BTreeMap<String, HostDescription> {
        self.lock().hosts.clone()
    }

    /// Changes a host's state (e.g. stops it behind the engine's back).
    pub fn set_state(&self, name: &str, state: HostState) {
        if let Some(host) = self.lock().hosts.get_mut(name) {
            host.state = state;
        }
    }

    /// Makes a host vanish behind the engine's back.
    pub fn lose(&self, name: &str) {
        self.lock().hosts.remove(name);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `call`; returns the scheduled failure for it, if any.
    fn enter(
        &self,
        call: ProviderCall,
        operation: &'static str,
        host: &str,
    ) -> Result<MutexGuard<'_, Inner>, ProviderError> {
        let mut inner = self.lock();
        inner.calls.push(call);
        let n = inner.calls.len();
        match inner.failures.remove(&n) {
            Some(kind) => Err(ProviderError::Call {
                provider: "fake".into(),
                operation,
                host: host.to_string(),
                kind,
                message: format!("call {n} failed as scheduled"),
            }),
            None => Ok(inner),
        }
    }
}

fn describe(name: &str, state: HostState) -> HostDescription {
    HostDescription {
        name: name.to_string(),
        state,
        address: Some("127.0.0.1".to_string()),
        attributes: BTreeMap::from([("provider".to_string(), "fake".to_string())]),
    }
}

impl Provider for FakeProvider {
    fn name(&self) -> &str {
        "fake"
    }

    fn capabilities(&self) -> ProviderCapabilities {
        ProviderCapabilities {
            create: true,
            destroy: true,
            start_stopped: true,
            max_parallel_creates: None,
            transport: TransportKind::Local,
            cluster_resources: false,
        }
    }

    fn create_host<'a>(&'a self, spec: &'a HostSpec) -> BoxFuture<'a, Result<HostDescription, ProviderError>> {
        Box::pin(async move {
            let mut inner = self.enter(ProviderCall::Create(spec.name.clone()), "create", &spec.name)?;
            let host = inner.hosts.entry(spec.name.clone()).or_insert_with(|| describe(&spec.name, HostState::Running));
            host.state = HostState::Running;
            Ok(host.clone())
        })
    }

    fn describe_host<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<HostDescription, ProviderError>> {
        Box::pin(async move {
            let inner = self.enter(ProviderCall::Describe(name.to_string()), "describe", name)?;
            inner.hosts.get(name).cloned().ok_or_else(|| ProviderError::Call {
                provider: "fake".into(),
                operation: "describe",
                host: name.to_string(),
                kind: ErrorKind::NotFound,
                message: "no such host".into(),
            })
        })
    }

    fn list_hosts(&self) -> BoxFuture<'_, Result<Vec<HostDescription>, ProviderError>> {
        Box::pin(async move {
            let inner = self.enter(ProviderCall::List, "list", "*")?;
            Ok(inner.hosts.values().cloned().collect())
        })
    }

    fn destroy_host<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let mut inner = self.enter(ProviderCall::Destroy(name.to_string()), "destroy", name)?;
            inner.hosts.remove(name);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_file::Role;

    fn spec(name: &str) -> HostSpec {
        HostSpec {
            cluster: "dev".into(),
            name: name.into(),
            role: Role::Agent,
            pool: "w".into(),
            resources: None,
            attributes: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn create_and_destroy_are_idempotent_by_name() {
        let provider = FakeProvider::new().with_host("w-1", HostState::Stopped);
        let dyn_provider: &dyn Provider = &provider;
        dyn_provider.create_host(&spec("w-0")).await.expect("create");
        dyn_provider.create_host(&spec("w-0")).await.expect("create again");
        let started = dyn_provider.create_host(&spec("w-1")).await.expect("start");
        assert_eq!(started.state, HostState::Running);
        provider.set_state("w-1", HostState::Stopped);
        let listed = dyn_provider.list_hosts().await.expect("list");
        let seen = super::super::observed(&listed);
        assert_eq!(seen.len(), 2);
        assert!(seen["w-0"].running && !seen["w-1"].running);
        dyn_provider.destroy_host("w-0").await.expect("destroy");
        dyn_provider.destroy_host("w-0").await.expect("destroy again");
        let err = dyn_provider.describe_host("w-0").await.expect_err("gone");
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(
            provider.calls(),
            vec![
                ProviderCall::Create("w-0".into()),
                ProviderCall::Create("w-0".into()),
                ProviderCall::Create("w-1".into()),
                ProviderCall::List,
                ProviderCall::Destroy("w-0".into()),
                ProviderCall::Destroy("w-0".into()),
                ProviderCall::Describe("w-0".into()),
            ]
        );
    }

    #[tokio::test]
    async fn the_nth_call_fails_with_the_chosen_kind_and_no_effect() {
        let provider = FakeProvider::new();
        provider.fail_call(2, ErrorKind::Quota);
        provider.create_host(&spec("w-0")).await.expect("first call succeeds");
        let err = provider.create_host(&spec("w-1")).await.expect_err("second call fails");
        assert_eq!(err.kind(), ErrorKind::Quota);
        assert!(!err.is_retryable());
        assert_eq!(err.to_string(), "fake: create w-1: quota exceeded: call 2 failed as scheduled");
        assert!(!provider.hosts().contains_key("w-1"));
        provider.create_host(&spec("w-1")).await.expect("third call succeeds");
        assert_eq!(provider.calls().len(), 3);
    }

    #[test]
    fn only_transient_errors_are_retryable() {
        let retryable: Vec<ErrorKind> = [
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Quota,
            ErrorKind::Auth,
            ErrorKind::Transient,
            ErrorKind::Other,
        ]
        .into_iter()
        .filter(|k| k.is_retryable())
        .collect();
        assert_eq!(retryable, vec![ErrorKind::Transient]);
    }
}
