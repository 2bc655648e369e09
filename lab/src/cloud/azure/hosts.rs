//! The host worker: a thread that owns the test-host [`Lab`] and carries out the emulator's
//! [`HostCommand`]s (a VM runs: add its host, authorise its SSH keys, run its custom data; it
//! stops: stop the host; it is deleted: remove it), then tells the emulator the host is up so
//! the VM's operation ends. Booting a host takes seconds, so it happens here, never under the
//! emulator's lock.

use super::VmHost;
use super::state::World;
use crate::testhosts::{Lab, valid_host_name};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::Instant;

/// What the emulator asks of the host worker. `vm` is the VM's id in lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HostCommand {
    /// Give a running VM a host at `address` (or boot its stopped host again).
    Create {
        vm: String,
        group: String,
        name: String,
        address: Ipv4Addr,
        /// `authorized_keys` lines for root and for the admin user.
        authorized_keys: String,
        /// The VM's admin user (`osProfile.adminUsername`): made on the host with these keys and
        /// passwordless sudo, as Azure's provisioning agent does.
        admin_user: String,
        /// The decoded custom data, run once when it starts with `#!`.
        custom_data: Option<Vec<u8>>,
    },
    /// Stop the host of a VM powered off or deallocated.
    Stop { vm: String },
    /// Remove the host of a deleted VM.
    Remove { vm: String },
}

/// The hosts, shared between the worker and the [`super::AzureLab`].
#[derive(Debug, Default)]
pub(super) struct Hosts {
    hosts: Mutex<BTreeMap<String, VmHost>>,
    changed: Condvar,
}

impl Hosts {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, VmHost>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn all(&self) -> Vec<VmHost> {
        self.lock().values().cloned().collect()
    }

    /// Waits until `check` answers something or `deadline` passes.
    pub(super) fn wait_for<T>(&self, deadline: Instant, mut check: impl FnMut(&[VmHost]) -> Option<T>) -> Option<T> {
        let mut hosts = self.lock();
        loop {
            let all: Vec<VmHost> = hosts.values().cloned().collect();
            if let Some(found) = check(&all) {
                return Some(found);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            hosts = self.changed.wait_timeout(hosts, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// The worker's body: runs `commands` until the channel closes, then drops the lab (which
/// removes every host and the bridge).
pub(super) fn run(mut lab: Lab, hosts: &Hosts, world: &Arc<Mutex<World>>, commands: &mpsc::Receiver<HostCommand>) {
    while let Ok(command) = commands.recv() {
        match command {
            HostCommand::Create { ref vm, .. } => {
                create(&mut lab, hosts, &command);
                ready(world, vm);
            }
            HostCommand::Stop { vm } => {
                let host = hosts.lock().get(&vm).map(|h| h.host.clone());
                if let Some(host) = host {
                    host.stop();
                    tracing::info!(%vm, host = %host.name(), "VM stopped: host stopped.");
                    set_running(hosts, &vm, false);
                }
            }
            HostCommand::Remove { vm } => {
                let removed = hosts.lock().remove(&vm);
                if let Some(removed) = removed {
                    match lab.remove_host(removed.host.name()) {
                        Ok(()) => tracing::info!(%vm, host = %removed.host.name(), "VM deleted: host removed."),
                        Err(e) => tracing::warn!(%vm, error = %e, "Removing the VM's host failed."),
                    }
                }
                hosts.changed.notify_all();
            }
        }
    }
    hosts.lock().clear();
    hosts.changed.notify_all();
    drop(lab);
}

fn ready(world: &Arc<Mutex<World>>, vm: &str) {
    world.lock().unwrap_or_else(|e| e.into_inner()).host_ready(vm);
}

/// The shell script that makes `user` on a host as Azure's provisioning agent does: a home, the
/// VM's SSH keys in its authorized_keys, and passwordless sudo. Its password is `*` (none), not
/// locked: sshd without PAM refuses key logins to a locked account.
fn admin_user_script(user: &str, keys: &str) -> String {
    format!(
        "set -e\nid -u {user} >/dev/null 2>&1 || useradd -m -s /bin/sh -p '*' {user}\n\
         install -d -m 700 -o {user} -g {user} /home/{user}/.ssh\n\
         cat > /home/{user}/.ssh/authorized_keys <<'GANTRY_LAB_KEYS'\n{keys}\nGANTRY_LAB_KEYS\n\
         chown {user}:{user} /home/{user}/.ssh/authorized_keys && chmod 600 /home/{user}/.ssh/authorized_keys\n\
         echo '{user} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-azure-{user} && chmod 440 /etc/sudoers.d/90-azure-{user}\n"
    )
}

fn set_running(hosts: &Hosts, vm: &str, running: bool) {
    if let Some(host) = hosts.lock().get_mut(vm) {
        host.running = running;
    }
    hosts.changed.notify_all();
}

fn create(lab: &mut Lab, hosts: &Hosts, command: &HostCommand) {
    let HostCommand::Create { vm, group, name, address, authorized_keys, admin_user, custom_data } = command else {
        return;
    };
    let existing = hosts.lock().get(vm).map(|h| h.host.clone());
    if let Some(host) = existing {
        match host.try_start() {
            Ok(()) => tracing::info!(%vm, host = %host.name(), "VM started: host started."),
            Err(e) => tracing::warn!(%vm, error = %e, "Starting the VM's host failed."),
        }
        set_running(hosts, vm, true);
        return;
    }
    let mut hostname = name.clone();
    if !valid_host_name(&hostname) || lab.host_named(&hostname).is_some() {
        hostname = format!("vm-{}", address.octets()[3]);
    }
    match lab.add_host(&hostname, *address, authorized_keys) {
        Ok(host) => {
            tracing::info!(%vm, host = %host.name(), %address, "VM running: host added.");
            if !admin_user.is_empty() && admin_user != "root" {
                let out = host.run(&admin_user_script(admin_user, authorized_keys));
                if !out.status.success() {
                    tracing::warn!(%vm, user = %admin_user, stderr = %String::from_utf8_lossy(&out.stderr), "Making the admin user failed.");
                }
            }
            let custom_data_log = match custom_data {
                Some(script) if script.starts_with(b"#!") => match host.run_detached("custom-data", script) {
                    Ok(log) => Some(log),
                    Err(e) => {
                        tracing::warn!(%vm, error = %e, "Running the custom data failed.");
                        None
                    }
                },
                Some(_) => {
                    tracing::info!(%vm, "The custom data is no `#!` script: it is not run.");
                    None
                }
                None => None,
            };
            let entry =
                VmHost { resource_group: group.clone(), name: name.clone(), host, running: true, custom_data_log };
            hosts.lock().insert(vm.clone(), entry);
        }
        Err(e) => tracing::warn!(%vm, %address, error = %e, "VM running, but its host could not be made."),
    }
    hosts.changed.notify_all();
}
