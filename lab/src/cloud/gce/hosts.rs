//! The host thread: it owns the test-host [`Lab`] and carries out what the operations ask of
//! instances' hosts (boot or start, stop, remove), so the HTTP server never blocks on a host.
//! An instance whose address lies outside the lab network gets no host (logged once).

use super::InstanceHost;
use crate::testhosts::{HostSpec, Ipv4Cidr, Lab};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Condvar, Mutex, MutexGuard, mpsc};
use std::time::Instant;

/// What an instance's host must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAction {
    /// The instance runs: boot its host (first time) or start it again.
    Up {
        /// The instance's path (its key).
        key: String,
        /// The instance's name (the host's name, unless another host has it).
        name: String,
        /// The instance's id (the host's name when its name is taken).
        id: String,
        /// The instance's zone.
        zone: String,
        /// The instance's private address.
        address: Ipv4Addr,
        /// `authorized_keys` lines for root (from the `ssh-keys` metadata).
        authorized_keys: String,
        /// The `startup-script` metadata, run once on the first boot.
        startup_script: Option<Vec<u8>>,
    },
    /// The instance stopped: stop its host.
    Stop {
        /// The instance's path.
        key: String,
    },
    /// The instance is gone: remove its host.
    Remove {
        /// The instance's path.
        key: String,
    },
}

/// The lab and the instances' hosts, shared by the host thread and the [`super::GceLab`].
#[derive(Debug)]
pub struct Hosts {
    state: Mutex<HostState>,
    changed: Condvar,
}

#[derive(Debug)]
struct HostState {
    lab: Lab,
    cidr: Ipv4Cidr,
    hosts: BTreeMap<String, InstanceHost>,
    ignored: BTreeSet<String>,
}

impl Hosts {
    pub(super) fn new(lab: Lab) -> Hosts {
        let cidr = lab.cidr();
        let state = HostState { lab, cidr, hosts: BTreeMap::new(), ignored: BTreeSet::new() };
        Hosts { state: Mutex::new(state), changed: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, HostState> {
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
            state = self.changed.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// The host thread's body: until every sender is gone, takes the actions waiting and
    /// carries them out (the new hosts of a batch boot together).
    pub(super) fn run(&self, actions: &mpsc::Receiver<HostAction>) {
        while let Ok(first) = actions.recv() {
            let batch: Vec<HostAction> = std::iter::once(first).chain(actions.try_iter()).collect();
            let mut state = self.lock();
            let mut creates = Vec::new();
            for action in batch {
                match action {
                    HostAction::Up { ref key, .. } if !state.hosts.contains_key(key) => creates.push(action),
                    other => {
                        create(&mut state, std::mem::take(&mut creates));
                        apply(&mut state, other);
                    }
                }
            }
            create(&mut state, creates);
            drop(state);
            self.changed.notify_all();
        }
    }
}

fn apply(state: &mut HostState, action: HostAction) {
    match action {
        HostAction::Up { key, .. } => {
            let Some(instance) = state.hosts.get_mut(&key) else { return };
            if instance.running {
                return;
            }
            match instance.host.try_start() {
                Ok(()) => tracing::info!(instance = %key, "Instance started: host started."),
                Err(e) => tracing::warn!(instance = %key, error = %e, "Starting the host failed."),
            }
            instance.running = true;
        }
        HostAction::Stop { key } => {
            if let Some(instance) = state.hosts.get_mut(&key) {
                instance.host.stop();
                instance.running = false;
                tracing::info!(instance = %key, "Instance stopped: host stopped.");
            }
        }
        HostAction::Remove { key } => {
            state.ignored.remove(&key);
            if let Some(instance) = state.hosts.remove(&key) {
                match state.lab.remove_host(instance.host.name()) {
                    Ok(()) => tracing::info!(instance = %key, "Instance deleted: host removed."),
                    Err(e) => tracing::warn!(instance = %key, error = %e, "Removing the host failed."),
                }
            }
        }
    }
}

/// Boots the hosts of new instances together, then runs their startup scripts.
fn create(state: &mut HostState, creates: Vec<HostAction>) {
    let mut boots = Vec::new();
    let mut names = BTreeSet::new();
    for action in creates {
        let HostAction::Up { key, name, id, zone, address, authorized_keys, startup_script } = action else { continue };
        if !state.cidr.contains(address) {
            if state.ignored.insert(key.clone()) {
                tracing::info!(instance = %key, %address, cidr = %state.cidr, "Instance outside the lab network: it gets no host.");
            }
            continue;
        }
        let taken = state.lab.host_named(&name).is_some() || names.contains(&name);
        let name = if taken { format!("gce-{id}") } else { name };
        names.insert(name.clone());
        boots.push((key, zone, startup_script, HostSpec { name, address, authorized_keys }));
    }
    if boots.is_empty() {
        return;
    }
    let specs = boots.iter().map(|b| b.3.clone()).collect();
    let results = state.lab.add_hosts(specs);
    for ((key, zone, script, spec), result) in boots.into_iter().zip(results) {
        match result {
            Ok(host) => {
                tracing::info!(instance = %key, host = %host.name(), address = %host.address(), "Instance running: host added.");
                let startup_log =
                    script.as_deref().and_then(|script| match host.run_detached("startup-script", script) {
                        Ok(log) => Some(log),
                        Err(e) => {
                            tracing::warn!(instance = %key, error = %e, "Running the startup script failed.");
                            None
                        }
                    });
                let name = super::state::last(&key).to_string();
                state.hosts.insert(key, InstanceHost { zone, name, host, running: true, startup_log });
            }
            Err(e) => {
                tracing::warn!(instance = %key, host = %spec.name, error = %e, "Instance running, but its host could not be made; it is not retried.");
                state.ignored.insert(key);
            }
        }
    }
}
