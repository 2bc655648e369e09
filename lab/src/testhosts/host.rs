//! One test host: its launcher (the script that becomes PID 1 of the host's namespaces and
//! execs sshd), its life cycle (launch, wait until ready, kill) and what a test does with it
//! (SSH commands, faults, detached scripts).

use super::system::{self, SSHD, run_ok};
use super::{LabError, READY_TIMEOUT, cgroup_v1};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(super) const NFT_TABLE: &str = "gantry_lab";

/// The sshd configuration of every host; paths are inside the host, where the host dir is
/// bind-mounted on /run/gantry-lab.
pub(super) const SSHD_CONFIG: &str = "Port 22\nListenAddress 0.0.0.0\nHostKey /run/gantry-lab/ssh/host_key\n\
     AuthorizedKeysFile /run/gantry-lab/ssh/authorized_keys .ssh/authorized_keys\nPermitRootLogin prohibit-password\n\
     PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
     UsePAM no\nUseDNS no\nStrictModes no\nPidFile none\nSubsystem sftp internal-sftp\n";

/// Where a host's detached scripts live, relative to the host dir (inside the host:
/// `/run/gantry-lab/scripts`).
const SCRIPTS: &str = "scripts";

/// The nft ruleset of a host: a set of blocked source addresses (partitions).
pub(super) fn nft_ruleset() -> String {
    format!(
        "table inet {NFT_TABLE} {{\n  set blocked {{ type ipv4_addr; }}\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    ip saddr @blocked drop\n  }}\n}}\n"
    )
}

/// The launcher of host `name`: it runs as PID 1 of the host's own namespaces, mounts the
/// host's filesystem view and execs sshd.
pub(super) fn launcher(name: &str, address: Ipv4Addr, dir: &Path, cgroup_mounts: &str) -> String {
    let d = dir.display();
    format!(
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
    )
}

/// What [`Host::new`] is made of.
pub(super) struct HostParts {
    pub index: usize,
    pub name: String,
    pub netns: String,
    pub veth: String,
    pub address: Ipv4Addr,
    pub dir: PathBuf,
    pub cgroup: PathBuf,
    /// The host's cgroup in each cgroup v1 hierarchy: made when it starts, removed when it stops.
    pub cgroups_v1: Vec<PathBuf>,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub known_hosts_line: String,
}

/// One test host. Its sshd listens on port 22 of [`Host::address`]. A `Host` is a handle:
/// clones name the same host, and stay valid values after the host is removed from its lab
/// (nothing answers there then).
#[derive(Debug, Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    parts: HostParts,
    child: Mutex<Option<Child>>,
}

impl std::fmt::Debug for HostParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("name", &self.name).field("address", &self.address).finish_non_exhaustive()
    }
}

impl Host {
    pub(super) fn new(parts: HostParts) -> Host {
        Host { inner: Arc::new(Inner { parts, child: Mutex::new(None) }) }
    }

    fn parts(&self) -> &HostParts {
        &self.inner.parts
    }

    /// The host's number in its lab, unique there (it names the host's namespace and veth).
    /// For a lab made by [`super::Lab::new`], host `host-<i>` has index `i`.
    pub fn index(&self) -> usize {
        self.parts().index
    }

    /// The host's name, which is also its hostname (`host-<i>` for [`super::Lab::new`]).
    pub fn name(&self) -> &str {
        &self.parts().name
    }

    /// The host's address on the lab network.
    pub fn address(&self) -> Ipv4Addr {
        self.parts().address
    }

    /// The port its sshd listens on: 22.
    pub fn ssh_port(&self) -> u16 {
        22
    }

    /// The network namespace's name (for `ip netns exec`).
    pub fn netns(&self) -> &str {
        &self.parts().netns
    }

    /// `<address> ssh-ed25519 <key>`, for a known_hosts file.
    pub fn known_hosts_line(&self) -> &str {
        &self.parts().known_hosts_line
    }

    /// The host's private directory on the real filesystem (overlay upper dirs, /opt, /root...).
    pub fn dir(&self) -> &Path {
        &self.parts().dir
    }

    /// The sshd log (its stderr) of the host's launches.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("sshd.log")).unwrap_or_default()
    }

    /// An OpenSSH client command logged in as root on this host with the lab key, checking the
    /// host key; append the remote command.
    pub fn ssh(&self, connect_timeout_secs: u32) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-i"])
            .arg(&self.parts().key)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.parts().known_hosts.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .arg("-o")
            .arg(format!("ConnectTimeout={connect_timeout_secs}"))
            .args(["-p", "22", "-l", "root"])
            .arg(self.address().to_string())
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
            self.name(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `script` as root inside the running host, detached (in its own session, with a
    /// clean environment, in the host's cgroup so that stopping the host kills it), the way a
    /// cloud runs an instance's user data: a script with a `#!` line runs under that
    /// interpreter, any other under `/bin/sh`. The script is kept as
    /// `/run/gantry-lab/scripts/<name>` inside the host; its output goes to the file this
    /// answers (on this machine; `<name>.log` beside the script inside the host). Returns once
    /// the script has started, not when it ends.
    pub fn run_detached(&self, name: &str, script: &[u8]) -> Result<PathBuf, LabError> {
        use std::os::unix::fs::PermissionsExt;
        if !system::valid_name(name) {
            return Err(LabError::BadName(name.to_string()));
        }
        let init = self.init_pid().ok_or_else(|| LabError::NotRunning(self.name().to_string()))?;
        let scripts = self.dir().join(SCRIPTS);
        std::fs::create_dir_all(&scripts).map_err(LabError::io("create the host's scripts dir"))?;
        let file = scripts.join(name);
        std::fs::write(&file, script).map_err(LabError::io(format!("write {}", file.display())))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
            .map_err(LabError::io(format!("chmod {}", file.display())))?;
        let log = scripts.join(format!("{name}.log"));
        let inside = format!("/run/gantry-lab/{SCRIPTS}/{name}");
        let program = if script.starts_with(b"#!") { inside } else { format!("/bin/sh {inside}") };
        // The outer shell joins the host's cgroup and backgrounds nsenter, then exits: the
        // script is nobody's child here, so nothing waits for it and no zombie is left.
        let line = format!(
            "{join_v1}echo $$ > '{procs}' && {{ nsenter --target {init} --mount --uts --ipc --net --pid --root --wd \
             env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
             setsid {program} </dev/null >>'{log}' 2>&1 & }}",
            join_v1 = cgroup_v1::join_script(&self.parts().cgroups_v1),
            procs = self.parts().cgroup.join("cgroup.procs").display(),
            log = log.display(),
        );
        system::run(Command::new("/bin/sh").arg("-c").arg(line))?;
        Ok(log)
    }

    /// The process id (in this machine's PID namespace) of the host's PID 1, if it runs.
    fn init_pid(&self) -> Option<u32> {
        let procs = std::fs::read_to_string(self.parts().cgroup.join("cgroup.procs")).ok()?;
        procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()).find(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .is_some_and(|ids| ids.split_whitespace().count() > 1 && ids.split_whitespace().last() == Some("1"))
        })
    }

    /// Takes the host off the network (its veth goes down): connections time out.
    pub fn cut_off(&self) {
        run_ok(Command::new("ip").args(["link", "set", &self.parts().veth, "down"]));
    }

    /// Undoes [`Host::cut_off`].
    pub fn restore(&self) {
        run_ok(Command::new("ip").args(["link", "set", &self.parts().veth, "up"]));
    }

    /// Kills the whole host (every process in it) at once and removes the cgroup v1 dirs its
    /// processes made; files in it persist.
    pub fn stop(&self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !system::cgroup_empty(&self.parts().cgroup) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        for dir in &self.parts().cgroups_v1 {
            cgroup_v1::remove_tree(dir);
        }
    }

    /// Boots a stopped host again and waits until its sshd accepts connections; panics when it
    /// does not (see [`Host::try_start`]).
    pub fn start(&self) {
        if let Err(e) = self.try_start() {
            panic!("{e}");
        }
    }

    /// Boots a stopped host again and waits until its sshd accepts connections.
    pub fn try_start(&self) -> Result<(), LabError> {
        self.launch()?;
        self.wait_ready()
    }

    /// Whether the host has been started and not stopped since (its launcher runs).
    pub fn is_running(&self) -> bool {
        let mut child = self.inner.child.lock().unwrap_or_else(|e| e.into_inner());
        child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Whether the host's sshd accepts TCP connections (from the root namespace).
    pub fn accepts(&self, timeout: Duration) -> bool {
        TcpStream::connect_timeout(&SocketAddr::from((self.address(), 22)), timeout).is_ok()
    }

    pub(super) fn launch(&self) -> Result<(), LabError> {
        let mut child = self.inner.child.lock().unwrap_or_else(|e| e.into_inner());
        if child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None))) {
            return Err(LabError::AlreadyRunning(self.name().to_string()));
        }
        // A host that had this address before (a removed host, a terminated instance) left its
        // MAC in this machine's neighbour table: until that entry ages out (up to a minute),
        // packets to the address go to a port that no longer exists.
        let _ = Command::new("ip").args(["neigh", "flush", "to", &self.address().to_string()]).output();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join("sshd.log"))
            .map_err(LabError::io("open the host log"))?;
        for dir in &self.parts().cgroups_v1 {
            cgroup_v1::create(dir).map_err(LabError::io(format!("create the host cgroup {}", dir.display())))?;
        }
        let script = format!(
            "{join_v1}echo $$ > {procs} && exec ip netns exec {ns} unshare --uts --ipc --mount --pid --fork --kill-child \
             --propagation private /bin/sh {launcher}",
            join_v1 = cgroup_v1::join_script(&self.parts().cgroups_v1),
            procs = self.parts().cgroup.join("cgroup.procs").display(),
            ns = self.parts().netns,
            launcher = self.dir().join("launch.sh").display(),
        );
        let stdout = log.try_clone().map_err(LabError::io("duplicate the log fd"))?;
        let spawned = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .map_err(LabError::io("launch the host"))?;
        *child = Some(spawned);
        Ok(())
    }

    pub(super) fn wait_ready(&self) -> Result<(), LabError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.accepts(Duration::from_millis(300)) {
                return Ok(());
            }
            if let Some(child) = self.inner.child.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(self.not_ready(format!("exited ({status}) before its sshd was ready")));
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(format!("sshd not ready in {READY_TIMEOUT:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn not_ready(&self, message: String) -> LabError {
        LabError::NotReady { host: self.name().to_string(), message, log: self.log() }
    }

    pub(super) fn kill(&self) {
        let _ = std::fs::write(self.parts().cgroup.join("cgroup.kill"), "1");
        if let Some(mut child) = self.inner.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(super) fn nft_set(&self, op: &str, addr: Ipv4Addr) {
        run_ok(Command::new("ip").args([
            "netns",
            "exec",
            self.netns(),
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
