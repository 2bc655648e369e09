//! Real hosts on this machine for multi-host tests (testing ladder rung 4, see TESTHOSTS.md):
//! each host is a Linux network namespace with its own address on a lab bridge, and its own
//! hostname, PID space, copy-on-write view of /etc, /usr and /var, empty /opt, /srv, /home and
//! /root, and a real OpenSSH sshd as its PID 1.
//!
//! Every name a lab creates starts with a per-run prefix `gt<4 hex>`: the bridge `<prefix>br`,
//! the veths `<prefix>v<i>`, the namespaces `<prefix>-h<i>`, the cgroup `gantry-lab-<prefix>`,
//! the temporary directory `gantry-lab-<prefix>-*` and the registry file
//! `/run/gantry-labs/<prefix>` (the owning process id). The lab subnet is `10.77.X.0/24` with X
//! derived from the prefix; the bridge is `.1`, host `i` is `.(10 + i)`. Hosts get no default
//! route: nothing leaves the lab network.
//!
//! Dropping the [`Lab`] removes everything, also after a failing test; [`cleanup_stale`]
//! removes what crashed runs left behind.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Why a lab cannot run on this machine; callers print `SKIPPED: <reason>` and return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip(pub String);

const SSHD: &str = "/usr/sbin/sshd";
const REGISTRY: &str = "/run/gantry-labs";
const NFT_TABLE: &str = "gantry_lab";
/// Leftovers without a live owner younger than this are left alone by [`cleanup_stale`]: they
/// may belong to a lab that is being created right now.
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
    key: PathBuf,
    known_hosts: PathBuf,
    hosts: Vec<Host>,
}

/// One test host. Its sshd listens on port 22 of [`Host::address`].
#[derive(Debug)]
pub struct Host {
    index: usize,
    name: String,
    netns: String,
    veth: String,
    address: Ipv4Addr,
    dir: PathBuf,
    cgroup: PathBuf,
    key: PathBuf,
    known_hosts: PathBuf,
    known_hosts_line: String,
    child: Mutex<Option<Child>>,
}

impl Lab {
    /// Creates `n` hosts and waits until every sshd accepts connections. Returns `Skip` when
    /// this machine lacks a prerequisite; panics (after cleaning up) when creation fails.
    pub fn new(n: usize) -> Result<Lab, Skip> {
        assert!(n <= MAX_HOSTS, "a lab has at most {MAX_HOSTS} hosts");
        let cgroup2 = prerequisites()?;
        cleanup_stale();
        std::fs::create_dir_all(REGISTRY).expect("create the lab registry");
        let (prefix, subnet) = pick_prefix();
        let registry = Path::new(REGISTRY).join(&prefix);
        std::fs::write(&registry, format!("{}\n", std::process::id())).expect("register the lab");
        let dir = tempfile::Builder::new().prefix(&format!("gantry-lab-{prefix}-")).tempdir().expect("lab temp dir");
        let cgroup = cgroup2.join(format!("gantry-lab-{prefix}"));
        let key = dir.path().join("client_key");
        let known_hosts = dir.path().join("known_hosts");
        let mut lab = Lab { prefix, subnet, dir, cgroup, key, known_hosts, hosts: Vec::new() };
        // From here on a panic drops `lab`, which removes whatever was created.
        std::fs::create_dir(&lab.cgroup).expect("create the lab cgroup");
        run_ok(
            Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "gantry-lab", "-f"]).arg(&lab.key),
        );
        let bridge = lab.bridge();
        run_ok(Command::new("ip").args(["link", "add", &bridge, "type", "bridge"]));
        run_ok(Command::new("ip").args(["addr", "add", &format!("10.77.{subnet}.1/24"), "dev", &bridge]));
        run_ok(Command::new("ip").args(["link", "set", &bridge, "up"]));
        disable_ipv6(&bridge);
        let mounts = cgroup_mount_script();
        for i in 0..n {
            let host = lab.create_host(i, &mounts);
            lab.hosts.push(host);
        }
        let lines: String = lab.hosts.iter().map(|h| format!("{}\n", h.known_hosts_line)).collect();
        std::fs::write(&lab.known_hosts, lines).expect("write known_hosts");
        for host in &lab.hosts {
            host.launch();
        }
        for host in &lab.hosts {
            host.wait_ready();
        }
        Ok(lab)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.prefix)
    }

    fn create_host(&self, i: usize, cgroup_mounts: &str) -> Host {
        let name = format!("host-{i}");
        let netns = format!("{}-h{i}", self.prefix);
        let veth = format!("{}v{i}", self.prefix);
        let address = Ipv4Addr::new(10, 77, self.subnet, 10 + i as u8);
        let dir = self.dir.path().join(&name);
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
            std::fs::create_dir_all(dir.join(sub)).expect("create a host dir");
        }
        let cgroup = self.cgroup.join(&name);
        std::fs::create_dir(&cgroup).expect("create the host cgroup");

        run_ok(Command::new("ip").args(["netns", "add", &netns]));
        // IPv4 only: no link-local IPv6 chatter, and partitions (on `ip saddr`) are complete.
        let _ = Command::new("ip")
            .args(["netns", "exec", &netns, "sh", "-c"])
            .arg("for f in all default lo; do echo 1 > /proc/sys/net/ipv6/conf/$f/disable_ipv6; done 2>/dev/null")
            .output();
        run_ok(
            Command::new("ip").args(["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns]),
        );
        disable_ipv6(&veth);
        run_ok(Command::new("ip").args(["link", "set", &veth, "master", &self.bridge(), "up"]));
        run_ok(Command::new("ip").args(["-n", &netns, "addr", "add", &format!("{address}/24"), "dev", "eth0"]));
        run_ok(Command::new("ip").args(["-n", &netns, "link", "set", "eth0", "up"]));
        run_ok(Command::new("ip").args(["-n", &netns, "link", "set", "lo", "up"]));
        let nft = dir.join("partition.nft");
        std::fs::write(
            &nft,
            format!(
                "table inet {NFT_TABLE} {{\n  set blocked {{ type ipv4_addr; }}\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    ip saddr @blocked drop\n  }}\n}}\n"
            ),
        )
        .expect("write the nft ruleset");
        run_ok(Command::new("ip").args(["netns", "exec", &netns, "nft", "-f"]).arg(&nft));

        let ssh = dir.join("ssh");
        run_ok(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", &name, "-f"])
                .arg(ssh.join("host_key")),
        );
        std::fs::copy(self.key.with_extension("pub"), ssh.join("authorized_keys")).expect("authorize the lab key");
        // Inside the host the host dir is bind-mounted on /run/gantry-lab (its /tmp is a tmpfs).
        std::fs::write(
            ssh.join("sshd_config"),
            "Port 22\nListenAddress 0.0.0.0\nHostKey /run/gantry-lab/ssh/host_key\n\
             AuthorizedKeysFile /run/gantry-lab/ssh/authorized_keys\nPermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nUseDNS no\nStrictModes no\nPidFile none\nSubsystem sftp internal-sftp\n",
        )
        .expect("write sshd_config");
        let public = std::fs::read_to_string(ssh.join("host_key.pub")).expect("read the host key");
        let mut fields = public.split_whitespace();
        let (kind, blob) = (fields.next().expect("key type"), fields.next().expect("key blob"));
        let known_hosts_line = format!("{address} {kind} {blob}");

        let d = dir.display();
        let launcher = format!(
            "#!/bin/sh\n\
             # Launcher of one gantry test host: runs as PID 1 of its own namespaces.\n\
             set -e\n\
             H='{d}'\n\
             hostname {name}\n\
             for d in etc usr var; do\n  mount -t overlay overlay -o \"lowerdir=/$d,upperdir=$H/$d.upper,workdir=$H/$d.work\" /$d\ndone\n\
             for d in opt srv home root; do mount --bind \"$H/$d\" /$d; done\n\
             mount -t tmpfs -o mode=755 tmpfs /run\n\
             mkdir -p /run/gantry-lab /run/sshd\n\
             mount --bind \"$H\" /run/gantry-lab\n\
             mount -t tmpfs -o mode=1777 tmpfs /tmp\n\
             mount -t proc proc /proc\n\
             {cgroup_mounts}\
             printf '127.0.0.1 localhost\\n::1 localhost\\n{address} {name}\\n' > /etc/hosts\n\
             : > /etc/resolv.conf\n\
             exec {SSHD} -D -e -f /run/gantry-lab/ssh/sshd_config\n"
        );
        std::fs::write(dir.join("launch.sh"), launcher).expect("write the launcher");
        Host {
            index: i,
            name,
            netns,
            veth,
            address,
            dir,
            cgroup,
            key: self.key.clone(),
            known_hosts: self.known_hosts.clone(),
            known_hosts_line,
            child: Mutex::new(None),
        }
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
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

    /// Hosts `a` and `b` no longer reach each other (both drop the other's packets); every other
    /// path keeps working.
    pub fn partition(&self, a: usize, b: usize) {
        let (ha, hb) = (&self.hosts[a], &self.hosts[b]);
        ha.nft_set("add", hb.address);
        hb.nft_set("add", ha.address);
    }

    /// Undoes [`Lab::partition`].
    pub fn heal(&self, a: usize, b: usize) {
        let (ha, hb) = (&self.hosts[a], &self.hosts[b]);
        ha.nft_set("delete", hb.address);
        hb.nft_set("delete", ha.address);
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
        teardown(&self.prefix, &self.cgroup);
        // The temp dir itself goes when `self.dir` drops, after this.
    }
}

impl Host {
    pub fn index(&self) -> usize {
        self.index
    }

    /// The hostname, `host-<i>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    pub fn ssh_port(&self) -> u16 {
        22
    }

    /// The network namespace's name (for `ip netns exec`).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// `<address> ssh-ed25519 <key>`, for a known_hosts file.
    pub fn known_hosts_line(&self) -> &str {
        &self.known_hosts_line
    }

    /// The host's private directory on the real filesystem (overlay upper dirs, /opt, /root...).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sshd log (its stderr) of the host's launches.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// An OpenSSH client command logged in as root on this host with the lab key, checking the
    /// host key; append the remote command.
    pub fn ssh(&self, connect_timeout_secs: u32) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-i"])
            .arg(&self.key)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .arg("-o")
            .arg(format!("ConnectTimeout={connect_timeout_secs}"))
            .args(["-p", "22", "-l", "root"])
            .arg(self.address.to_string())
            .arg("--")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `cmd` (a shell command line) on the host over SSH.
    pub fn run(&self, cmd: &str) -> Output {
        self.run_timeout(cmd, 5)
    }

    /// Like [`Host::run`] with the given SSH connect timeout in seconds.
    pub fn run_timeout(&self, cmd: &str, connect_timeout_secs: u32) -> Output {
        self.ssh(connect_timeout_secs).arg(cmd).output().expect("run ssh")
    }

    /// Runs `cmd` on the host and returns its stdout; panics when it fails.
    pub fn run_ok(&self, cmd: &str) -> String {
        let out = self.run(cmd);
        assert!(
            out.status.success(),
            "{} `{cmd}` failed ({}): {}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Takes the host off the network (its veth goes down): connections time out.
    pub fn cut_off(&self) {
        run_ok(Command::new("ip").args(["link", "set", &self.veth, "down"]));
    }

    /// Undoes [`Host::cut_off`].
    pub fn restore(&self) {
        run_ok(Command::new("ip").args(["link", "set", &self.veth, "up"]));
    }

    /// Kills the whole host (every process in it) at once; files in it persist.
    pub fn stop(&self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cgroup_empty(&self.cgroup) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Boots a stopped host again and waits until its sshd accepts connections.
    pub fn start(&self) {
        self.launch();
        self.wait_ready();
    }

    /// Whether the host's sshd accepts TCP connections (from the root namespace).
    pub fn accepts(&self, timeout: Duration) -> bool {
        TcpStream::connect_timeout(&SocketAddr::from((self.address, 22)), timeout).is_ok()
    }

    fn launch(&self) {
        let mut child = self.child.lock().expect("host lock");
        assert!(child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("sshd.log"))
            .expect("open the host log");
        let script = format!(
            "echo $$ > {procs} && exec ip netns exec {ns} unshare --uts --ipc --mount --pid --fork --kill-child \
             --propagation private /bin/sh {launcher}",
            procs = self.cgroup.join("cgroup.procs").display(),
            ns = self.netns,
            launcher = self.dir.join("launch.sh").display(),
        );
        let spawned = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("launch the host");
        *child = Some(spawned);
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.accepts(Duration::from_millis(300)) {
                return;
            }
            if let Some(child) = self.child.lock().expect("host lock").as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("{} exited ({status}) before its sshd was ready; log:\n{}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{}'s sshd not ready in {READY_TIMEOUT:?}; log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&self) {
        let _ = std::fs::write(self.cgroup.join("cgroup.kill"), "1");
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn nft_set(&self, op: &str, addr: Ipv4Addr) {
        run_ok(Command::new("ip").args([
            "netns",
            "exec",
            &self.netns,
            "nft",
            op,
            "element",
            "inet",
            NFT_TABLE,
            "blocked",
            &format!("{{ {addr} }}"),
        ]));
    }
}

/// Checks what a lab needs; returns the cgroup v2 mount point.
fn prerequisites() -> Result<PathBuf, Skip> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Skip("test hosts need root (network namespaces, mounts, cgroups)".into()));
    }
    for tool in ["ip", "unshare", "ssh-keygen", "ssh", "nft"] {
        if !in_path(tool) {
            return Err(Skip(format!("`{tool}` is not installed (scripts/test installs it)")));
        }
    }
    if !Path::new(SSHD).exists() {
        return Err(Skip(format!("{SSHD} is missing (install openssh-server)")));
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems.lines().any(|l| l.split_whitespace().last() == Some("overlay")) {
        return Err(Skip("the kernel has no overlayfs".into()));
    }
    let cgroup2 = mounts()
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .map(|m| PathBuf::from(m.target))
        .ok_or_else(|| Skip("no cgroup v2 hierarchy is mounted".into()))?;
    if !cgroup2.join("cgroup.kill").exists() && !has_kill_file(&cgroup2) {
        return Err(Skip("this kernel's cgroup v2 has no cgroup.kill".into()));
    }
    Ok(cgroup2)
}

fn has_kill_file(cgroup2: &Path) -> bool {
    // The root cgroup has no cgroup.kill; look at a child, making one when there is none.
    let child = std::fs::read_dir(cgroup2)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().is_dir() && e.path().join("cgroup.kill").exists());
    if child {
        return true;
    }
    let probe = cgroup2.join(format!("gantry-lab-probe-{}", std::process::id()));
    let found = std::fs::create_dir(&probe).is_ok() && probe.join("cgroup.kill").exists();
    let _ = std::fs::remove_dir(&probe);
    found
}

fn in_path(tool: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file())).unwrap_or(false)
        || ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().any(|d| Path::new(d).join(tool).is_file())
}

#[derive(Debug)]
struct Mount {
    fstype: String,
    target: String,
    options: String,
}

fn mounts() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| Mount { fstype: f[2].into(), target: f[1].into(), options: f[3].into() })
        })
        .collect()
}

/// Shell lines re-mounting, inside a host, the cgroup hierarchies mounted under /sys/fs/cgroup
/// here (`ip netns exec` mounts a fresh /sys, which hides them).
fn cgroup_mount_script() -> String {
    let mut script = String::new();
    for m in mounts() {
        if !(m.target == "/sys/fs/cgroup" || m.target.starts_with("/sys/fs/cgroup/")) {
            continue;
        }
        let line = match m.fstype.as_str() {
            "tmpfs" if m.target == "/sys/fs/cgroup" => "mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup\n".to_string(),
            "cgroup" => {
                let opts: Vec<&str> =
                    m.options.split(',').filter(|o| !matches!(*o, "rw" | "ro" | "relatime")).collect();
                format!("mkdir -p {t}\nmount -t cgroup -o {o} cgroup {t}\n", t = m.target, o = opts.join(","))
            }
            "cgroup2" => format!("mkdir -p {t}\nmount -t cgroup2 cgroup2 {t}\n", t = m.target),
            _ => continue,
        };
        script.push_str(&line);
    }
    script
}

/// A fresh prefix whose subnet no interface or route of this machine uses.
fn pick_prefix() -> (String, u8) {
    let links = command_stdout(Command::new("ip").args(["-o", "link", "show"]));
    let used = command_stdout(Command::new("ip").args(["-4", "-o", "addr", "show"]))
        + &command_stdout(Command::new("ip").args(["-4", "route", "show", "table", "all"]));
    for attempt in 0u64..1000 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(attempt);
        hasher.write_u32(std::process::id());
        hasher.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
        let r = (hasher.finish() & 0xffff) as u16;
        let prefix = format!("gt{r:04x}");
        let subnet = 1 + (r % 254) as u8;
        let taken = links.contains(&format!("{prefix}br"))
            || Path::new(REGISTRY).join(&prefix).exists()
            || used.contains(&format!("10.77.{subnet}."));
        if !taken {
            return (prefix, subnet);
        }
    }
    panic!("no free lab prefix and subnet");
}

/// Turns IPv6 off on one of the lab's interfaces in the root namespace (where the kernel has it).
fn disable_ipv6(link: &str) {
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{link}/disable_ipv6"), "1");
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
}

fn command_stdout(cmd: &mut Command) -> String {
    cmd.output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

fn cgroup_empty(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.procs")).map(|s| s.trim().is_empty()).unwrap_or(true)
}

/// Whether `name` is a lab prefix: `gt` and four lowercase hex digits.
fn is_prefix(name: &str) -> bool {
    name.len() == 6
        && name.starts_with("gt")
        && name[2..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The lab prefix a name of ours starts with: `<prefix>br`, `<prefix>v<i>`, `<prefix>-h<i>`.
fn prefix_of(name: &str) -> Option<&str> {
    let (prefix, rest) = (name.get(..6)?, name.get(6..)?);
    let ours = rest == "br"
        || rest.strip_prefix('v').is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
        || rest.strip_prefix("-h").is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()));
    (is_prefix(prefix) && ours).then_some(prefix)
}

fn netns_names() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

fn link_names() -> Vec<String> {
    command_stdout(Command::new("ip").args(["-o", "link", "show"]))
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        .collect()
}

/// Removes everything of lab `prefix`: kills its hosts, removes its cgroups, namespaces
/// (with their veths and nft tables), bridge and registry entry. The lab's temp dir is left to
/// its owner (or [`cleanup_stale`]).
fn teardown(prefix: &str, cgroup: &Path) {
    let host_cgroups: Vec<PathBuf> =
        std::fs::read_dir(cgroup).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    for dir in &host_cgroups {
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    }
    // Hosts' processes made cgroups of their own inside (an agent's task cgroups, left empty when
    // their executor was killed): remove the deepest first, since a cgroup with children cannot go.
    let mut dirs = Vec::new();
    collect_cgroups(cgroup, &mut dirs);
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    // Killed tasks are reaped asynchronously: rmdir fails with EBUSY for a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    for dir in &dirs {
        while dir.exists() && std::fs::remove_dir(dir).is_err() && Instant::now() < deadline {
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for ns in netns_names() {
        if prefix_of(&ns) == Some(prefix) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
    }
    for link in link_names() {
        if prefix_of(&link) == Some(prefix) {
            let _ = Command::new("ip").args(["link", "del", &link]).output();
        }
    }
    let _ = std::fs::remove_file(Path::new(REGISTRY).join(prefix));
}

fn age(path: &Path) -> Option<Duration> {
    let modified = std::fs::symlink_metadata(path).and_then(|m| m.modified()).ok()?;
    Some(SystemTime::now().duration_since(modified).unwrap_or_default())
}

/// Removes what earlier labs left behind when their process died without dropping the lab:
/// every `gt<4 hex>` prefix whose registered owner process is gone, or that has no registry
/// entry and whose namespaces, cgroup and temp dir are all older than a few minutes. Only names
/// of this harness's patterns are touched.
pub fn cleanup_stale() {
    let Some(cgroup2) = mounts().into_iter().find(|m| m.fstype == "cgroup2").map(|m| PathBuf::from(m.target)) else {
        return;
    };
    let tmp = std::env::temp_dir();
    let mut prefixes = BTreeSet::new();
    let mut artifacts: Vec<(String, PathBuf)> = Vec::new();
    for ns in netns_names() {
        if let Some(p) = prefix_of(&ns) {
            prefixes.insert(p.to_string());
            artifacts.push((p.to_string(), Path::new("/run/netns").join(&ns)));
        }
    }
    for link in link_names() {
        if let Some(p) = prefix_of(&link) {
            prefixes.insert(p.to_string());
        }
    }
    let dirs = |root: &Path, lead: &str| -> Vec<(String, PathBuf)> {
        std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let p = name.strip_prefix(lead)?.get(..6)?;
                let rest = &name[lead.len() + 6..];
                (is_prefix(p) && (rest.is_empty() || rest.starts_with('-'))).then(|| (p.to_string(), e.path()))
            })
            .collect()
    };
    let cgroups = dirs(&cgroup2, "gantry-lab-");
    let temps = dirs(&tmp, "gantry-lab-");
    let registered = dirs(Path::new(REGISTRY), "");
    for (p, path) in cgroups.iter().chain(&temps).chain(&registered) {
        prefixes.insert(p.clone());
        artifacts.push((p.clone(), path.clone()));
    }
    for prefix in prefixes {
        let registry = Path::new(REGISTRY).join(&prefix);
        let stale = match std::fs::read_to_string(&registry) {
            Ok(pid) => !Path::new("/proc").join(pid.trim()).exists(),
            Err(_) => artifacts
                .iter()
                .filter(|(p, _)| *p == prefix)
                .all(|(_, path)| age(path).is_none_or(|a| a > STALE_AFTER)),
        };
        if !stale {
            continue;
        }
        teardown(&prefix, &cgroup2.join(format!("gantry-lab-{prefix}")));
        for (p, path) in &temps {
            if *p == prefix {
                let _ = std::fs::remove_dir_all(path);
            }
        }
    }
}

/// `dir` and every cgroup below it.
fn collect_cgroups(dir: &Path, into: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    into.push(dir.to_path_buf());
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_cgroups(&entry.path(), into);
        }
    }
}
