//! The watcher thread: polls EC2 on moto, plans with [`super::reconcile::plan`] and carries
//! the plan out on the lab (hosts added, stopped, started, removed; user data run). It runs its
//! own single-threaded tokio runtime for the SDK calls and does the lab's blocking work in
//! between, so the lab works the same from synchronous tests and from async code.

use super::reconcile::{self, Action, Key, Observed, State, Tracked};
use super::{AwsLabError, InstanceHost};
use crate::testhosts::{HostSpec, Ipv4Cidr, Lab};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::InstanceAttributeName;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

/// The lab and what the watcher made of it, shared with the [`super::AwsLab`].
#[derive(Debug)]
pub(super) struct Shared {
    state: Mutex<WatchState>,
    /// Notified after every poll.
    polled: Condvar,
}

#[derive(Debug)]
struct WatchState {
    lab: Lab,
    tracked: BTreeMap<Key, Tracked>,
    hosts: BTreeMap<Key, InstanceHost>,
    /// The last poll error of each region, logged once.
    errors: BTreeMap<String, String>,
}

impl Shared {
    pub(super) fn new(lab: Lab) -> Shared {
        let state = WatchState { lab, tracked: BTreeMap::new(), hosts: BTreeMap::new(), errors: BTreeMap::new() };
        Shared { state: Mutex::new(state), polled: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn instances(&self) -> Vec<InstanceHost> {
        self.lock().hosts.values().cloned().collect()
    }

    pub(super) fn wait_for<T>(
        &self,
        deadline: Instant,
        mut check: impl FnMut(&[InstanceHost]) -> Option<T>,
    ) -> Option<T> {
        let mut state = self.lock();
        loop {
            let hosts: Vec<InstanceHost> = state.hosts.values().cloned().collect();
            if let Some(found) = check(&hosts) {
                return Some(found);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            state = self.polled.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// The watcher thread's body: polls every `interval` until `stop` is dropped. The outcome of
/// the first poll goes to `ready`.
pub(super) fn run(
    shared: &Shared,
    clients: &[(String, Client)],
    cidr: Ipv4Cidr,
    interval: Duration,
    stop: &mpsc::Receiver<()>,
    ready: &mpsc::Sender<Result<(), AwsLabError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(AwsLabError::Io { context: "start the watcher's runtime".into(), source: e }));
            return;
        }
    };
    let mut first = true;
    loop {
        let polls = runtime.block_on(describe_all(clients));
        if first {
            first = false;
            let failed = polls.iter().find_map(|(region, result)| {
                result
                    .as_ref()
                    .err()
                    .map(|message| AwsLabError::Ec2 { region: region.clone(), message: message.clone() })
            });
            let answered = failed.is_none();
            let _ = ready.send(failed.map_or(Ok(()), Err));
            if !answered {
                return;
            }
        }
        let mut observed = Vec::new();
        let mut described = BTreeSet::new();
        {
            let mut state = shared.lock();
            for (region, result) in polls {
                match result {
                    Ok(instances) => {
                        if state.errors.remove(&region).is_some() {
                            tracing::info!(%region, "DescribeInstances answers again.");
                        }
                        described.insert(region);
                        observed.extend(instances);
                    }
                    Err(message) => {
                        if state.errors.get(&region) != Some(&message) {
                            tracing::warn!(%region, error = %message, "DescribeInstances failed; hosts stay as they are.");
                            state.errors.insert(region, message);
                        }
                    }
                }
            }
        }
        let actions = reconcile::plan(&shared.lock().tracked, &observed, &described, cidr);
        if !actions.is_empty() {
            apply(shared, clients, &runtime, actions);
        }
        shared.polled.notify_all();
        match stop.recv_timeout(interval) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Every instance of every region, or the region's error (with its sources).
async fn describe_all(clients: &[(String, Client)]) -> Vec<(String, Result<Vec<Observed>, String>)> {
    let polls = clients.iter().map(|(region, client)| async move { (region.clone(), describe(region, client).await) });
    futures_util::future::join_all(polls).await
}

async fn describe(region: &str, client: &Client) -> Result<Vec<Observed>, String> {
    let mut observed = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client.describe_instances().set_next_token(token.take()).send().await.map_err(chain)?;
        for instance in page.reservations().iter().flat_map(|r| r.instances()) {
            let (Some(id), Some(state)) = (
                instance.instance_id(),
                instance.state().and_then(|s| s.name()).and_then(|n| State::parse(n.as_str())),
            ) else {
                continue;
            };
            observed.push(Observed {
                region: region.to_string(),
                id: id.to_string(),
                state,
                private_ip: instance.private_ip_address().and_then(|a| a.parse::<Ipv4Addr>().ok()),
                name: instance
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some("Name"))
                    .and_then(|t| t.value())
                    .map(String::from),
                key_name: instance.key_name().map(String::from),
            });
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => return Ok(observed),
        }
    }
}

/// An error and its sources, one line.
fn chain(error: impl std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What a new host needs from EC2 besides the instance itself.
struct Boot {
    key: Key,
    spec: HostSpec,
    user_data: Option<Vec<u8>>,
}

fn apply(shared: &Shared, clients: &[(String, Client)], runtime: &tokio::runtime::Runtime, actions: Vec<Action>) {
    let creates: Vec<&Action> = actions.iter().filter(|a| matches!(a, Action::Create { .. })).collect();
    let boots = if creates.is_empty() { Vec::new() } else { runtime.block_on(prepare(clients, &creates)) };
    let mut state = shared.lock();
    create(&mut state, boots);
    for action in actions {
        match action {
            Action::Create { .. } => {}
            Action::Start { key, host } => {
                let started = state.lab.host_named(&host).map(|h| h.try_start());
                match started {
                    Some(Ok(())) => tracing::info!(instance = %key.1, %host, "Instance started: host started."),
                    Some(Err(e)) => tracing::warn!(instance = %key.1, %host, error = %e, "Starting the host failed."),
                    None => {}
                }
                set_running(&mut state, &key, true);
            }
            Action::Stop { key, host } => {
                if let Some(h) = state.lab.host_named(&host) {
                    h.stop();
                    tracing::info!(instance = %key.1, %host, "Instance stopped: host stopped.");
                }
                set_running(&mut state, &key, false);
            }
            Action::Remove { key, host } => {
                if let Err(e) = state.lab.remove_host(&host) {
                    tracing::warn!(instance = %key.1, %host, error = %e, "Removing the host failed.");
                } else {
                    tracing::info!(instance = %key.1, %host, "Instance terminated: host removed.");
                }
                state.tracked.remove(&key);
                state.hosts.remove(&key);
            }
            Action::Ignore { key, reason } => {
                tracing::info!(region = %key.0, instance = %key.1, %reason, "Instance ignored: it gets no host.");
                state.tracked.insert(key, Tracked::Ignored);
            }
            Action::Forget { key } => {
                state.tracked.remove(&key);
            }
        }
    }
}

fn set_running(state: &mut WatchState, key: &Key, running: bool) {
    if let Some(Tracked::Host { running: r, .. }) = state.tracked.get_mut(key) {
        *r = running;
    }
    if let Some(host) = state.hosts.get_mut(key) {
        host.running = running;
    }
}

/// Fetches the public keys of the key pairs and the user data of the instances to create.
async fn prepare(clients: &[(String, Client)], creates: &[&Action]) -> Vec<Boot> {
    let mut keys: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (region, client) in clients {
        let wanted =
            creates.iter().any(|a| matches!(a, Action::Create { key, key_name: Some(_), .. } if key.0 == *region));
        if !wanted {
            continue;
        }
        match client.describe_key_pairs().include_public_key(true).send().await {
            Ok(out) => {
                let pairs = out
                    .key_pairs()
                    .iter()
                    .filter_map(|k| Some((k.key_name()?.to_string(), k.public_key()?.trim().to_string())))
                    .collect();
                keys.insert(region.clone(), pairs);
            }
            Err(e) => tracing::warn!(%region, error = %chain(e), "DescribeKeyPairs failed: new hosts get no key pair."),
        }
    }
    let boots = creates.iter().filter_map(|action| {
        let Action::Create { key, address, hostname, key_name } = action else { return None };
        let client = clients.iter().find(|(r, _)| *r == key.0).map(|(_, c)| c)?;
        let public_key = key_name.as_ref().and_then(|name| {
            let found = keys.get(&key.0).and_then(|pairs| pairs.get(name)).cloned();
            if found.is_none() {
                tracing::warn!(instance = %key.1, key_pair = %name, "The instance's key pair has no public key: its host authorises none.");
            }
            found
        });
        Some(async move {
            let user_data = user_data(client, &key.1).await;
            Boot {
                key: key.clone(),
                spec: HostSpec {
                    name: hostname.clone(),
                    address: *address,
                    authorized_keys: public_key.unwrap_or_default(),
                },
                user_data,
            }
        })
    });
    futures_util::future::join_all(boots).await
}

async fn user_data(client: &Client, id: &str) -> Option<Vec<u8>> {
    let out = match client
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(InstanceAttributeName::UserData)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            tracing::warn!(instance = %id, error = %chain(e), "Reading the user data failed: none is run.");
            return None;
        }
    };
    let encoded = out.user_data().and_then(|v| v.value()).filter(|v| !v.is_empty())?;
    match aws_smithy_types::base64::decode(encoded) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::warn!(instance = %id, error = %e, "The user data is not base64: it is not run.");
            None
        }
    }
}

/// Adds the hosts (booting in parallel), falling back to the instance id as the hostname when
/// the `Name` tag is another host's already, then runs the user data.
fn create(state: &mut WatchState, boots: Vec<Boot>) {
    let specs: Vec<HostSpec> = boots
        .iter()
        .map(|b| {
            let mut spec = b.spec.clone();
            if spec.name != b.key.1 && state.lab.host_named(&spec.name).is_some() {
                spec.name = b.key.1.clone();
            }
            spec
        })
        .collect();
    let taken_twice: BTreeSet<String> = {
        let mut seen = BTreeSet::new();
        specs.iter().filter(|s| !seen.insert(s.name.clone())).map(|s| s.name.clone()).collect()
    };
    let specs: Vec<HostSpec> = specs
        .into_iter()
        .zip(&boots)
        .map(|(mut spec, boot)| {
            if taken_twice.contains(&spec.name) {
                spec.name = boot.key.1.clone();
            }
            spec
        })
        .collect();
    let results = state.lab.add_hosts(specs);
    for (boot, result) in boots.into_iter().zip(results) {
        let (region, id) = boot.key.clone();
        match result {
            Ok(host) => {
                tracing::info!(%region, instance = %id, host = %host.name(), address = %host.address(), "Instance running: host added.");
                let user_data_log =
                    boot.user_data.as_deref().and_then(|script| match host.run_detached("user-data", script) {
                        Ok(log) => Some(log),
                        Err(e) => {
                            tracing::warn!(instance = %id, error = %e, "Running the user data failed.");
                            None
                        }
                    });
                state.tracked.insert(boot.key.clone(), Tracked::Host { name: host.name().to_string(), running: true });
                state
                    .hosts
                    .insert(boot.key, InstanceHost { region, instance_id: id, host, running: true, user_data_log });
            }
            Err(e) => {
                tracing::warn!(%region, instance = %id, error = %e, "Instance running, but its host could not be made; it is not retried.");
                state.tracked.insert(boot.key, Tracked::Failed);
            }
        }
    }
}
