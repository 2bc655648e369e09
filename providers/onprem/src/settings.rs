//! The cluster-wide SSH settings (`[ssh]`) and how they combine with one host's entry into the
//! [`SshSettings`] of its transport.

use crate::HostEntry;
use gantry_provision::cluster_file::{ClusterFile, SshSection};
use gantry_provision::transport::{Passphrase, SshSettings, Sudo};
use std::path::PathBuf;

/// `[ssh]` with its paths resolved against the cluster file.
#[derive(Debug, Clone)]
pub struct SshDefaults {
    section: SshSection,
    known_hosts_file: Option<PathBuf>,
    bastion: Option<SshSettings>,
    secrets: Secrets,
}

/// Secrets asked for at the prompt; each overrides its environment variable.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// Passphrase of encrypted key files (else `GANTRY_SSH_PASSPHRASE`).
    pub passphrase: Option<Passphrase>,
    /// Password for sudo (else `GANTRY_SUDO_PASSWORD`, else none: NOPASSWD).
    pub sudo_password: Option<Passphrase>,
}

impl SshDefaults {
    /// The defaults of a cluster file, with secrets from the prompt.
    pub fn from_cluster_file(file: &ClusterFile, secrets: Secrets) -> Self {
        let known_hosts_file = file.ssh_known_hosts_file();
        let bastion = file.ssh.bastion.as_ref().map(|b| {
            let b = b.get_ref();
            let key = b.key_file.as_deref().map(|k| file.resolve(k)).or_else(|| file.ssh_key_file());
            let mut s = SshSettings::from_section(b.address.clone(), &file.ssh, key);
            s.port = b.port;
            s.user = b.user.clone().unwrap_or_else(|| file.ssh.user.clone());
            if let Some(known_hosts) = &known_hosts_file {
                s.known_hosts = known_hosts.clone();
            }
            if let Some(passphrase) = &secrets.passphrase {
                s.passphrase = Some(passphrase.clone());
            }
            s
        });
        Self { section: file.ssh.clone(), known_hosts_file, bastion, secrets }
    }

    /// The jump host's settings, when `[ssh.bastion]` is set.
    pub fn bastion(&self) -> Option<&SshSettings> {
        self.bastion.as_ref()
    }

    /// The settings of the transport to `entry`.
    pub fn settings(&self, entry: &HostEntry) -> SshSettings {
        let mut s = SshSettings::from_section(entry.address.clone(), &self.section, entry.key_file.clone());
        s.port = entry.port;
        s.user = entry.user.clone();
        if let Some(known_hosts) = &self.known_hosts_file {
            s.known_hosts = known_hosts.clone();
        }
        if let Some(passphrase) = &self.secrets.passphrase {
            s.passphrase = Some(passphrase.clone());
        }
        s.sudo = entry.sudo.then(|| match &self.secrets.sudo_password {
            Some(password) => Sudo::Password(password.clone()),
            None => Sudo::from_env(),
        });
        s.jump = self.bastion.clone().map(Box::new);
        s
    }
}
