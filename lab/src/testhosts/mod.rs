//! Real hosts on this machine for multi-host tests (testing ladder rung 4, see TESTHOSTS.md):
//! each host is a Linux network namespace with its own address on a lab bridge, and its own
//! hostname, PID space, copy-on-write view of /etc, /usr and /var, empty /opt, /srv, /home and
//! /root, and a real OpenSSH sshd as its PID 1.
//!
//! Every name a lab creates starts with a per-run prefix `gt<4 hex>`: the bridge `<prefix>br`,
//! the veths `<prefix>v<i>`, the namespaces `<prefix>-h<i>`, the cgroup `gantry-lab-<prefix>`
//! (at the root of the v2 hierarchy, and under this process's own cgroup in every cgroup v1
//! hierarchy, so that what a host makes under its own v1 cgroups goes with it), the temporary
//! directory `gantry-lab-<prefix>-*` and the registry files `/run/gantry-labs/<prefix>` (the
//! owning process id) and `/run/gantry-labs/<prefix>.v1` (the v1 cgroups). The lab subnet is `10.77.X.0/24` with X
//! derived from the prefix; the bridge is `.1`. [`Lab::new`] puts host `i` at `.(10 + i)`;
//! [`Lab::add_host`] adds a host at an address the caller picks while the lab runs, and
//! [`Lab::remove_host`] takes one away. Hosts get no default route: nothing leaves the lab
//! network.
//!
//! Dropping the [`Lab`] removes everything, also after a failing test; [`cleanup_stale`]
//! removes what crashed runs left behind.
//!
//! This module owns hosts and their network; it knows nothing of any cloud (see
//! [`crate::cloud`]).

mod cgroup_v1;
mod cleanup;
mod host;
mod system;

pub use cleanup::cleanup_stale;
pub use host::Host;

use std::ffi::OsStr;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use system::{REGISTRY, run};

/// Why a lab cannot run on this machine; callers print `SKIPPED: <reason>` and return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip(pub String);

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What went wrong creating, changing or running a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// This machine lacks a prerequisite (root, a tool, a kernel feature).
    #[error("test hosts cannot run here: {0}")]
    Unsupported(Skip),
    /// A command the lab runs failed.
    #[error("`{command}` failed: {message}")]
    Command {
        /// The command line, as Rust's `Debug` shows it.
        command: String,
        /// Its exit status and stderr, or why it could not start.
        message: String,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the lab was doing.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// A host name must be a hostname: 1 to 63 letters, digits, `-` and `.`, not starting with
    /// `-` or `.`.
    #[error("`{0}` is not a valid host name (1 to 63 letters, digits, '-' and '.')")]
    BadName(String),
    /// Host names are unique in a lab.
    #[error("the lab already has a host named {0}")]
    NameTaken(String),
    /// The address is not a host address of the lab network.
    #[error("{address} is not a host address of the lab network {cidr} (.2 to .254)")]
    OutsideLab {
        /// The address asked for.
        address: Ipv4Addr,
        /// The lab network.
        cidr: Ipv4Cidr,
    },
    /// Another host has the address.
    #[error("{address} is already the address of host {host}")]
    AddressTaken {
        /// The address asked for.
        address: Ipv4Addr,
        /// The host that has it.
        host: String,
    },
    /// No host of that name.
    #[error("the lab has no host named {0}")]
    NoSuchHost(String),
    /// The host is running already.
    #[error("host {0} is already running")]
    AlreadyRunning(String),
    /// The host is not running.
    #[error("host {0} is not running")]
    NotRunning(String),
    /// A host's sshd did not come up.
    #[error("host {host}: {message}; its log:\n{log}")]
    NotReady {
        /// The host.
        host: String,
        /// What happened (exited, or not ready in time).
        message: String,
        /// The host's launcher and sshd log.
        log: String,
    },
}

impl LabError {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
        let context = context.into();
        move |source| LabError::Io { context, source }
    }
}

/// An IPv4 network in CIDR notation, such as a lab's `10.77.X.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The network address (host bits zero).
    pub network: Ipv4Addr,
    /// The prefix length, 0 to 32.
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// Whether `address` lies in this network.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len.min(32))).unwrap_or(0);
        u32::from(address) & mask == u32::from(self.network) & mask
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// What [`Lab::add_hosts`] creates: one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// The host's name, which is also its hostname (see [`LabError::BadName`]).
    pub name: String,
    /// Its address inside the lab network (see [`Lab::cidr`]).
    pub address: Ipv4Addr,
    /// `authorized_keys` lines authorised for root besides the lab's own client key (empty for
    /// none).
    pub authorized_keys: String,
}

/// Whether `name` may name a host: a hostname of 1 to 63 letters, digits, `-` and `.`,
/// starting with a letter or digit (see [`LabError::BadName`]).
pub fn valid_host_name(name: &str) -> bool {
    system::valid_name(name)
}

const STALE_AFTER: Duration = Duration::from_secs(5 * 60);
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const MAX_HOSTS: usize = 200;

/// A set of test hosts on one bridge.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    subnet: u8,
    dir: tempfile::TempDir,
    cgroup: PathBuf,
    cgroups_v1: Vec<PathBuf>,
    key: PathBuf,
    known_hosts: PathBuf,
    cgroup_mounts: String,
    hosts: Vec<Host>,
    next_index: usize,
}

impl Lab {
    /// Creates `n` hosts (`host-<i>` at `10.77.X.(10 + i)`; 0 makes a lab with only its bridge)
    /// and waits until every sshd accepts connections. Returns `Skip` when this machine lacks a
    /// prerequisite; panics (after cleaning up) when creation fails.
    pub fn new(n: usize) -> Result<Lab, Skip> {
        match Lab::try_new(n) {
            Ok(lab) => Ok(lab),
            Err(LabError::Unsupported(skip)) => Err(skip),
            Err(e) => panic!("creating a lab of {n} hosts failed: {e}"),
        }
    }

    /// Like [`Lab::new`], returning every failure as an error ([`LabError::Unsupported`] when
    /// this machine lacks a prerequisite). Whatever was created before a failure is removed.
    pub fn try_new(n: usize) -> Result<Lab, LabError> {
        Lab::try_new_in(n, None)
    }

    /// Like [`Lab::try_new`], on the network `10.77.<subnet>.0/24` when `subnet` is given (so a
    /// cluster file can name it), else on a free one.
    pub fn try_new_in(n: usize, subnet: Option<u8>) -> Result<Lab, LabError> {
        assert!(n <= MAX_HOSTS, "a lab has at most {MAX_HOSTS} hosts");
        let cgroup2 = system::prerequisites().map_err(LabError::Unsupported)?;
        cleanup_stale();
        std::fs::create_dir_all(REGISTRY).map_err(LabError::io("create the lab registry"))?;
        let (prefix, subnet) = system::pick_prefix(subnet)
            .map_err(|message| LabError::Command { command: "pick the lab network".to_string(), message })?;
        let registry = Path::new(REGISTRY).join(&prefix);
        std::fs::write(&registry, format!("{}\n", std::process::id())).map_err(LabError::io("register the lab"))?;
        let dir = match tempfile::Builder::new().prefix(&format!("gantry-lab-{prefix}-")).tempdir() {
            Ok(dir) => dir,
            Err(e) => {
                let _ = std::fs::remove_file(&registry);
                return Err(LabError::io("create the lab temp dir")(e));
            }
        };
        let cgroup = cgroup2.join(format!("gantry-lab-{prefix}"));
        let cgroups_v1 = cgroup_v1::own_dirs().into_iter().map(|d| d.join(format!("gantry-lab-{prefix}"))).collect();
        let key = dir.path().join("client_key");
        let known_hosts = dir.path().join("known_hosts");
        let cgroup_mounts = system::cgroup_mount_script();
        let mut lab = Lab {
            prefix,
            subnet,
            dir,
            cgroup,
            cgroups_v1,
            key,
            known_hosts,
            cgroup_mounts,
            hosts: Vec::new(),
            next_index: 0,
        };
        // From here on an error drops `lab`, which removes whatever was created.
        std::fs::create_dir(&lab.cgroup).map_err(LabError::io("create the lab cgroup"))?;
        cgroup_v1::record(&lab.prefix, &lab.cgroups_v1).map_err(LabError::io("record the lab's cgroup v1 dirs"))?;
        for dir in &lab.cgroups_v1 {
            cgroup_v1::create(dir).map_err(LabError::io(format!("create the lab cgroup {}", dir.display())))?;
        }
        std::fs::write(&lab.known_hosts, "").map_err(LabError::io("write known_hosts"))?;
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "gantry-lab", "-f"])
            .arg(&lab.key))?;
        let bridge = lab.bridge();
        run(Command::new("ip").args(["link", "add", &bridge, "type", "bridge"]))?;
        run(Command::new("ip").args(["addr", "add", &format!("10.77.{subnet}.1/24"), "dev", &bridge]))?;
        run(Command::new("ip").args(["link", "set", &bridge, "up"]))?;
        system::disable_ipv6(&bridge);
        let specs = (0..n)
            .map(|i| HostSpec {
                name: format!("host-{i}"),
                address: Ipv4Addr::new(10, 77, subnet, 10 + i as u8),
                authorized_keys: String::new(),
            })
            .collect();
        for added in lab.add_hosts(specs) {
            added?;
        }
        Ok(lab)
    }

    /// Adds a host named `name` (also its hostname) at `address`, a host address of the lab
    /// network chosen by the caller, with `authorized_key` (an `authorized_keys` line; empty
    /// for none) authorised for root besides the lab's client key, and waits until its sshd
    /// accepts connections. The lab keeps running meanwhile; its known_hosts file gains the
    /// host's key. On failure nothing of the host remains.
    pub fn add_host(&mut self, name: &str, address: Ipv4Addr, authorized_key: &str) -> Result<Host, LabError> {
        let spec = HostSpec { name: name.to_string(), address, authorized_keys: authorized_key.to_string() };
        self.add_hosts(vec![spec]).pop().expect("one result per spec")
    }

    /// Adds several hosts at once (see [`Lab::add_host`]): they boot in parallel, so this is
    /// much faster than adding them one by one. Answers one result per spec, in order; a host
    /// that failed leaves nothing behind and does not stop the others.
    pub fn add_hosts(&mut self, specs: Vec<HostSpec>) -> Vec<Result<Host, LabError>> {
        let mut results: Vec<Result<Host, LabError>> = Vec::with_capacity(specs.len());
        for spec in specs {
            let checked = self.check_spec(&spec, &results);
            let created = checked.and_then(|()| {
                let index = self.next_index;
                self.next_index += 1;
                self.create_host(index, &spec).inspect_err(|_| self.destroy_artifacts(index, &spec.name))
            });
            results.push(created);
        }
        let lines: String =
            self.hosts.iter().chain(results.iter().flatten()).map(|h| format!("{}\n", h.known_hosts_line())).collect();
        if let Err(e) = std::fs::write(&self.known_hosts, lines) {
            tracing::warn!(error = %e, "Writing the lab's known_hosts failed.");
        }
        for result in &mut results {
            if let Ok(host) = result
                && let Err(e) = host.launch()
            {
                self.destroy(host);
                *result = Err(e);
            }
        }
        for result in &mut results {
            if let Ok(host) = result
                && let Err(e) = host.wait_ready()
            {
                self.destroy(host);
                *result = Err(e);
            }
        }
        self.hosts.extend(results.iter().flatten().cloned());
        self.write_known_hosts();
        results
    }

    /// Removes host `name`: kills everything in it and deletes its namespace, veth, cgroup and
    /// files. Handles to it ([`Host`] clones) remain valid values, but nothing answers there.
    pub fn remove_host(&mut self, name: &str) -> Result<(), LabError> {
        let position =
            self.hosts.iter().position(|h| h.name() == name).ok_or_else(|| LabError::NoSuchHost(name.to_string()))?;
        let host = self.hosts.remove(position);
        self.destroy(&host);
        self.write_known_hosts();
        Ok(())
    }

    /// Runs `program` on this machine (in the root namespaces) inside the lab's cgroups, in a
    /// child cgroup `_<name>` (of the v2 one and of each v1 one): dropping the lab, or [`cleanup_stale`] after a crash, kills it
    /// with the hosts. Add arguments, environment and stdio to the answered command, then spawn
    /// it; the lab cannot tell when it exits, so the caller still waits for its child.
    pub fn command(&self, name: &str, program: impl AsRef<OsStr>) -> Result<Command, LabError> {
        if !system::valid_name(name) {
            return Err(LabError::BadName(name.to_string()));
        }
        let cgroup = self.cgroup.join(format!("_{name}"));
        if !cgroup.exists() {
            std::fs::create_dir(&cgroup).map_err(LabError::io(format!("create cgroup {}", cgroup.display())))?;
        }
        let v1: Vec<PathBuf> = self.cgroups_v1.iter().map(|d| d.join(format!("_{name}"))).collect();
        for dir in &v1 {
            cgroup_v1::create(dir).map_err(LabError::io(format!("create cgroup {}", dir.display())))?;
        }
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!(
                "{}echo $$ > '{}' && exec \"$0\" \"$@\"",
                cgroup_v1::join_script(&v1),
                cgroup.join("cgroup.procs").display()
            ))
            .arg(program);
        Ok(cmd)
    }

    fn check_spec(&self, spec: &HostSpec, pending: &[Result<Host, LabError>]) -> Result<(), LabError> {
        if !system::valid_name(&spec.name) {
            return Err(LabError::BadName(spec.name.clone()));
        }
        let cidr = self.cidr();
        let last = u32::from(spec.address) & 0xff;
        if !cidr.contains(spec.address) || !(2..=254).contains(&last) {
            return Err(LabError::OutsideLab { address: spec.address, cidr });
        }
        for other in self.hosts.iter().chain(pending.iter().flatten()) {
            if other.name() == spec.name {
                return Err(LabError::NameTaken(spec.name.clone()));
            }
            if other.address() == spec.address {
                return Err(LabError::AddressTaken { address: spec.address, host: other.name().to_string() });
            }
        }
        Ok(())
    }

    fn bridge(&self) -> String {
        format!("{}br", self.prefix)
    }

    /// Host `name`'s cgroup in each cgroup v1 hierarchy.
    fn host_cgroups_v1(&self, name: &str) -> Vec<PathBuf> {
        self.cgroups_v1.iter().map(|d| d.join(name)).collect()
    }

    fn host_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn netns_name(&self, index: usize) -> String {
        format!("{}-h{index}", self.prefix)
    }

    fn veth_name(&self, index: usize) -> String {
        format!("{}v{index}", self.prefix)
    }

    fn create_host(&self, index: usize, spec: &HostSpec) -> Result<Host, LabError> {
        let name = spec.name.as_str();
        let address = spec.address;
        let netns = self.netns_name(index);
        let veth = self.veth_name(index);
        let dir = self.host_dir(name);
        for sub in [
            "etc.upper",
            "etc.work",
            "usr.upper",
            "usr.work",
            "var.upper",
            "var.work",
            "opt",
            "srv",
            "home",
            "root",
            "ssh",
        ] {
            std::fs::create_dir_all(dir.join(sub)).map_err(LabError::io("create a host dir"))?;
        }
        let cgroup = self.cgroup.join(name);
        std::fs::create_dir(&cgroup).map_err(LabError::io("create the host cgroup"))?;

        run(Command::new("ip").args(["netns", "add", &netns]))?;
        // IPv4 only: no link-local IPv6 chatter, and partitions (on `ip saddr`) are complete.
        let _ = Command::new("ip")
            .args(["netns", "exec", &netns, "sh", "-c"])
            .arg("for f in all default lo; do echo 1 > /proc/sys/net/ipv6/conf/$f/disable_ipv6; done 2>/dev/null")
            .output();
        run(Command::new("ip").args(["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns]))?;
        system::disable_ipv6(&veth);
        run(Command::new("ip").args(["link", "set", &veth, "master", &self.bridge(), "up"]))?;
        run(Command::new("ip").args(["-n", &netns, "addr", "add", &format!("{address}/24"), "dev", "eth0"]))?;
        run(Command::new("ip").args(["-n", &netns, "link", "set", "eth0", "up"]))?;
        run(Command::new("ip").args(["-n", &netns, "link", "set", "lo", "up"]))?;
        let nft = dir.join("partition.nft");
        std::fs::write(&nft, host::nft_ruleset()).map_err(LabError::io("write the nft ruleset"))?;
        run(Command::new("ip").args(["netns", "exec", &netns, "nft", "-f"]).arg(&nft))?;

        let ssh = dir.join("ssh");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(ssh.join("host_key")))?;
        let mut authorized =
            std::fs::read_to_string(self.key.with_extension("pub")).map_err(LabError::io("read the lab key"))?;
        for line in spec.authorized_keys.lines().map(str::trim).filter(|l| !l.is_empty()) {
            authorized.push_str(line);
            authorized.push('\n');
        }
        std::fs::write(ssh.join("authorized_keys"), authorized).map_err(LabError::io("authorize the keys"))?;
        // Inside the host the host dir is bind-mounted on /run/gantry-lab (its /tmp is a tmpfs).
        std::fs::write(ssh.join("sshd_config"), host::SSHD_CONFIG).map_err(LabError::io("write sshd_config"))?;
        let public = std::fs::read_to_string(ssh.join("host_key.pub")).map_err(LabError::io("read the host key"))?;
        let mut fields = public.split_whitespace();
        let (kind, blob) = (fields.next().unwrap_or_default(), fields.next().unwrap_or_default());
        let known_hosts_line = format!("{address} {kind} {blob}");
        std::fs::write(dir.join("launch.sh"), host::launcher(name, address, &dir, &self.cgroup_mounts))
            .map_err(LabError::io("write the launcher"))?;
        Ok(Host::new(host::HostParts {
            index,
            name: name.to_string(),
            netns,
            veth,
            address,
            dir,
            cgroup,
            cgroups_v1: self.host_cgroups_v1(name),
            key: self.key.clone(),
            known_hosts: self.known_hosts.clone(),
            known_hosts_line,
        }))
    }

    /// Kills `host` and removes everything of it.
    fn destroy(&self, host: &Host) {
        host.kill();
        self.destroy_artifacts(host.index(), host.name());
    }

    fn destroy_artifacts(&self, index: usize, name: &str) {
        cleanup::remove_cgroup_tree(&self.cgroup.join(name));
        for dir in self.host_cgroups_v1(name) {
            cgroup_v1::remove_tree(&dir);
        }
        let _ = Command::new("ip").args(["netns", "del", &self.netns_name(index)]).output();
        let veth = self.veth_name(index);
        if system::link_names().contains(&veth) {
            let _ = Command::new("ip").args(["link", "del", &veth]).output();
        }
        let _ = std::fs::remove_dir_all(self.host_dir(name));
    }

    fn write_known_hosts(&self) {
        let lines: String = self.hosts.iter().map(|h| format!("{}\n", h.known_hosts_line())).collect();
        if let Err(e) = std::fs::write(&self.known_hosts, lines) {
            tracing::warn!(error = %e, "Writing the lab's known_hosts failed.");
        }
    }

    /// The hosts, in the order they were added.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The `i`-th host (in the order they were added; for a lab made by [`Lab::new`] and never
    /// changed, `host-<i>`). Panics when there is none.
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// The host named `name`.
    pub fn host_named(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name() == name)
    }

    /// The host at `address`.
    pub fn host_at(&self, address: Ipv4Addr) -> Option<&Host> {
        self.hosts.iter().find(|h| h.address() == address)
    }

    /// The per-run name prefix, `gt<4 hex>`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The lab's temporary directory (host dirs, keys, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The address of the bridge in the root namespace (`10.77.X.1`).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 1)
    }

    /// The lab network, `10.77.X.0/24`: hosts take addresses `.2` to `.254` of it.
    pub fn cidr(&self) -> Ipv4Cidr {
        Ipv4Cidr { network: Ipv4Addr::new(10, 77, self.subnet, 0), prefix_len: 24 }
    }

    /// The lab's client private key, authorized for root on every host.
    pub fn client_key(&self) -> &Path {
        &self.key
    }

    /// A known_hosts file with every host's key.
    pub fn known_hosts_file(&self) -> &Path {
        &self.known_hosts
    }

    /// The lab's cgroup v2 directory (one child per host).
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// The lab's cgroup directories in the cgroup v1 hierarchies, one per writable hierarchy
    /// with a controller (none on a v2-only machine), each under this process's own cgroup
    /// there and with one child per host: what runs on a host makes its v1 cgroups in these,
    /// and they go with the host.
    pub fn cgroups_v1(&self) -> &[PathBuf] {
        &self.cgroups_v1
    }

    /// Hosts `a` and `b` no longer reach each other (both drop the other's packets); every other
    /// path keeps working.
    pub fn partition(&self, a: usize, b: usize) {
        let (ha, hb) = (&self.hosts[a], &self.hosts[b]);
        ha.nft_set("add", hb.address());
        hb.nft_set("add", ha.address());
    }

    /// Undoes [`Lab::partition`].
    pub fn heal(&self, a: usize, b: usize) {
        let (ha, hb) = (&self.hosts[a], &self.hosts[b]);
        ha.nft_set("delete", hb.address());
        hb.nft_set("delete", ha.address());
    }

    /// Host `i` drops every packet from this machine (the bridge's address), so only other lab
    /// hosts reach it: what a host behind a bastion looks like to the provisioner.
    pub fn hide_from_gateway(&self, i: usize) {
        self.hosts[i].nft_set("add", self.gateway());
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for host in &self.hosts {
            host.kill();
        }
        cleanup::teardown(&self.prefix, &self.cgroup);
        // The temp dir itself goes when `self.dir` drops, after this.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_contains_its_addresses_only() {
        let cidr = Ipv4Cidr { network: Ipv4Addr::new(10, 77, 5, 0), prefix_len: 24 };
        assert_eq!(cidr.to_string(), "10.77.5.0/24");
        assert!(cidr.contains(Ipv4Addr::new(10, 77, 5, 4)));
        assert!(cidr.contains(Ipv4Addr::new(10, 77, 5, 255)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 77, 6, 4)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 0, 5, 4)));
        let all = Ipv4Cidr { network: Ipv4Addr::UNSPECIFIED, prefix_len: 0 };
        assert!(all.contains(Ipv4Addr::new(192, 168, 1, 1)));
        let one = Ipv4Cidr { network: Ipv4Addr::new(10, 0, 0, 9), prefix_len: 32 };
        assert!(one.contains(Ipv4Addr::new(10, 0, 0, 9)));
        assert!(!one.contains(Ipv4Addr::new(10, 0, 0, 8)));
    }

    #[test]
    fn skip_displays_its_reason() {
        assert_eq!(Skip("no root".into()).to_string(), "no root");
        assert_eq!(LabError::Unsupported(Skip("no root".into())).to_string(), "test hosts cannot run here: no root");
    }
}
