//! `bootstrap`: bootstrap N test hosts (network namespaces with a real sshd, the harness of
//! `gantry_lab::testhosts`) — wall time from `gantry up` to every agent registered — and, in
//! the same run against the same hosts, the same steps done by an Ansible playbook (copy the
//! binary, template the config, start the daemon, wait for its port, then until every agent is
//! registered at the master). One master and N-1 agents; both sides start from cold SSH
//! connections and get the same fan-out (`[ssh] parallelism` and Ansible `forks` = N).
//!
//! Trust is part of both: `up` makes the cluster CA and tokens itself; for the playbook the
//! bench makes them the same way beforehand ([`ClusterTrust`]), the playbook copies the CA and
//! tokens into the master's data dir and renders the join token into the agents' env files
//! (0600), and the bench waits for the agents over TLS with the admin token.
//!
//! Needs root (the test hosts). Ansible comes from PyPI (`ansible-core`): the one on `PATH`, or
//! one the scenario installs into a virtualenv beside the bench binary.

use crate::report::{Figure, Report, progress};
use anyhow::{Context, anyhow, bail};
use gantry_lab::testhosts::{Lab, Skip};
use gantry_provision::trust::ClusterTrust;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the Ansible baseline installs gantry on a host (distinct from gantry's own).
const ANSIBLE_DIR: &str = "/opt/gantry-ansible";
/// Port of the agents' HTTP endpoint under Ansible (gantry's own bootstrap lets them pick).
const AGENT_PORT: u16 = 5051;

/// Options of `bootstrap`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Host counts (1 master + N-1 agents), each in a fresh lab of test hosts. The default
    /// finishes in about 1.5 minutes on 2 cores; `--hosts 5,20,50` takes about 5.
    #[arg(long, value_delimiter = ',', default_value = "5,20")]
    pub hosts: Vec<usize>,
    /// Skip the Ansible baseline.
    #[arg(long)]
    pub no_ansible: bool,
}

/// Runs the scenario.
pub fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let bin = crate::binary::gantry()?;
    let ansible = if args.no_ansible { None } else { Some(ansible_playbook()?) };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    report.note(format!(
        "bootstrap {:?} test hosts with `gantry up` ({} MiB binary){}",
        args.hosts,
        std::fs::metadata(&bin).map(|m| m.len() >> 20).unwrap_or(0),
        if ansible.is_some() { ", then with an Ansible playbook doing the same steps" } else { "" }
    ));
    for &n in &args.hosts {
        if n < 2 {
            bail!("--hosts: a cluster needs at least 2 hosts (1 master and 1 agent), not {n}");
        }
        progress(&format!("{n} hosts: creating the lab"));
        let lab = Lab::new(n).map_err(|Skip(reason)| anyhow!("bootstrap needs test hosts: {reason}"))?;
        let work = tempfile::Builder::new().prefix("gantry-bench-bootstrap-").tempdir()?;
        progress(&format!("{n} hosts: gantry up"));
        let (gantry, output) = gantry_up(&bin, &lab, work.path())?;
        report.note(format!("{n} hosts, gantry up, slowest host per phase: {}", phase_maxima(&output)));
        let mut figure = Figure::new(format!("bootstrap.hosts_{n}.gantry_s"), gantry.as_secs_f64(), "s");
        if let Some(playbook) = &ansible {
            progress(&format!("{n} hosts: ansible-playbook"));
            let baseline = ansible_up(&bin, &lab, work.path(), playbook, &runtime)?;
            figure = figure.baseline(baseline.as_secs_f64());
        }
        report.add(figure);
    }
    Ok(())
}

/// `gantry up` of all lab hosts (it returns once every agent is registered and ACTIVE), then
/// `gantry down`; returns the time of `up` and what it printed.
fn gantry_up(bin: &Path, lab: &Lab, work: &Path) -> anyhow::Result<(Duration, String)> {
    let file = work.join("cluster.toml");
    let mut text = format!(
        "version = 1\n[cluster]\nname = \"bench-{}\"\nprovider = \"onprem\"\n[ssh]\nkey_file = \"{}\"\n\
         known_hosts_file = \"{}\"\nparallelism = {}\n",
        lab.prefix(),
        lab.client_key().display(),
        lab.known_hosts_file().display(),
        lab.hosts().len()
    );
    for host in lab.hosts() {
        let role = if host.index() == 0 { "master" } else { "agent" };
        text.push_str(&format!("[[onprem.host]]\naddress = \"{}\"\nrole = \"{role}\"\n", host.address()));
    }
    std::fs::write(&file, text)?;
    let run = |verb: &str| -> anyhow::Result<(Duration, String)> {
        let started = Instant::now();
        let out = Command::new(bin)
            .arg(verb)
            .arg(&file)
            .env("GANTRY_STATE_DIR", work.join("state"))
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        let elapsed = started.elapsed();
        if !out.status.success() {
            bail!(
                "gantry {verb} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok((elapsed, String::from_utf8_lossy(&out.stdout).into_owned()))
    };
    let up = run("up")?;
    run("down")?;
    Ok(up)
}

/// From `up`'s progress lines (`[host] phase … done (12 ms)`), each phase's longest time on
/// one host: `inspect 120 ms, upload-binary 3.1 s, …` in phase order.
fn phase_maxima(output: &str) -> String {
    let mut maxima: Vec<(String, f64)> = Vec::new();
    for line in output.lines() {
        let Some((_, rest)) = line.split_once("] ") else { continue };
        let Some((phase, tail)) = rest.split_once(" … ") else { continue };
        let Some(time) = tail.rsplit_once('(').map(|(_, t)| t.trim_end_matches(')')) else { continue };
        let ms = match time.split_once(' ') {
            Some((v, "ms")) => v.parse::<f64>().ok(),
            Some((v, "s")) => v.parse::<f64>().ok().map(|s| s * 1000.0),
            _ => None,
        };
        let Some(ms) = ms else { continue };
        match maxima.iter_mut().find(|(p, _)| p == phase) {
            Some((_, max)) => *max = max.max(ms),
            None => maxima.push((phase.to_string(), ms)),
        }
    }
    maxima.iter().map(|(p, ms)| format!("{p} {} ms", crate::report::number(*ms))).collect::<Vec<_>>().join(", ")
}

/// The same bootstrap by `ansible-playbook`, timed until every agent is registered.
fn ansible_up(
    bin: &Path,
    lab: &Lab,
    work: &Path,
    playbook: &Path,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Duration> {
    let dir = work.join("ansible");
    std::fs::create_dir_all(&dir)?;
    let trust_dir = dir.join("trust");
    let trust = ClusterTrust::load_or_create(&trust_dir, &format!("bench-{}", lab.prefix()))?;
    let master = lab.host(0).address();
    let mut inventory = format!("[masters]\nmaster-0 ansible_host={master}\n[agents]\n");
    for host in &lab.hosts()[1..] {
        inventory.push_str(&format!("{} ansible_host={}\n", host.name(), host.address()));
    }
    inventory.push_str(&format!(
        "[all:vars]\nansible_user=root\nansible_ssh_private_key_file={}\nansible_python_interpreter=/usr/bin/python3\n\
         ansible_ssh_common_args='-o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes'\n\
         master_address={master}\nbinary={}\ndir={ANSIBLE_DIR}\nagent_port={AGENT_PORT}\ntrust_dir={}\n",
        lab.client_key().display(),
        lab.known_hosts_file().display(),
        bin.display(),
        trust_dir.display()
    ));
    std::fs::write(dir.join("inventory"), inventory)?;
    std::fs::write(
        dir.join("ansible.cfg"),
        format!(
            "[defaults]\nforks = {}\nhost_key_checking = True\nstdout_callback = default\nretry_files_enabled = False\n\
             [ssh_connection]\npipelining = True\ncontrol_path_dir = {}\n",
            lab.hosts().len(),
            dir.join("cp").display()
        ),
    )?;
    for (name, text) in TEMPLATES {
        std::fs::write(dir.join(name), text)?;
    }
    std::fs::write(dir.join("site.yml"), PLAYBOOK)?;
    let url = format!("https://{master}:5050");
    let agents = lab.hosts().len() - 1;
    let started = Instant::now();
    let out = Command::new(playbook)
        .args(["-i", "inventory", "site.yml"])
        .current_dir(&dir)
        .env("ANSIBLE_CONFIG", dir.join("ansible.cfg"))
        .env("ANSIBLE_LOCAL_TEMP", dir.join("tmp"))
        .env("ANSIBLE_HOME", dir.join("home"))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", playbook.display()))?;
    if !out.status.success() {
        bail!(
            "ansible-playbook failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    runtime.block_on(async {
        let client = gantry_api::Client::with_credentials(&url, &trust.credentials(&trust_dir))?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let active = client
                .list_agents()
                .await
                .map(|a| a.iter().filter(|a| a.state == gantry_api::AgentState::Active).count())
                .unwrap_or(0);
            if active >= agents {
                return Ok::<_, anyhow::Error>(());
            }
            if Instant::now() > deadline {
                bail!("after ansible-playbook, {active} of {agents} agents registered at {url} within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })?;
    Ok(started.elapsed())
}

/// `ansible-playbook` from `PATH`, or from a virtualenv beside this binary (installed on first use).
fn ansible_playbook() -> anyhow::Result<PathBuf> {
    if let Some(found) = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("ansible-playbook")).find(|p| p.is_file()))
    {
        return Ok(found);
    }
    let exe = std::env::current_exe()?;
    let venv = exe.parent().context("the bench binary has no directory")?.join("bench-ansible");
    let playbook = venv.join("bin/ansible-playbook");
    if playbook.is_file() {
        return Ok(playbook);
    }
    progress(&format!("installing ansible-core from PyPI into {}", venv.display()));
    let ok = Command::new("python3").arg("-m").arg("venv").arg(&venv).status()?.success()
        && Command::new(venv.join("bin/pip")).args(["install", "-q", "ansible-core"]).status()?.success();
    if !ok || !playbook.is_file() {
        bail!(
            "cannot install ansible-core into {} (run `pip install ansible-core`, or pass --no-ansible)",
            venv.display()
        );
    }
    Ok(playbook)
}

/// The config templates the playbook renders (the same settings `gantry up` renders).
const TEMPLATES: [(&str, &str); 2] = [
    (
        "master.env.j2",
        "GANTRY_LOG=info\nGANTRY_LISTEN={{ ansible_host }}:5050\nGANTRY_DATA_DIR={{ dir }}/data\n\
         GANTRY_HEARTBEAT_INTERVAL=1s\nGANTRY_AGENT_UNREACHABLE_TIMEOUT=3s\n",
    ),
    (
        "agent.env.j2",
        "GANTRY_LOG=info\nGANTRY_MASTER=https://{{ master_address }}:5050\nGANTRY_WORK_DIR={{ dir }}/work\n\
         GANTRY_LISTEN={{ ansible_host }}:{{ agent_port }}\nGANTRY_HOSTNAME={{ inventory_hostname }}\n\
         GANTRY_ATTRIBUTES=provider=onprem\nGANTRY_JOIN_TOKEN={{ lookup('file', trust_dir ~ '/join-token') }}\n",
    ),
];

/// Copy the binary (and, to the master, the CA and tokens), template the config, start the
/// daemon, wait for its port: masters, then agents.
const PLAYBOOK: &str = r#"- hosts: masters
  gather_facts: false
  tasks:
    - file: { path: "{{ dir }}/{{ item }}", state: directory }
      loop: [bin, etc, data, logs]
    - copy: { src: "{{ binary }}", dest: "{{ dir }}/bin/gantry", mode: "0755" }
    - copy: { src: "{{ trust_dir }}/{{ item.file }}", dest: "{{ dir }}/data/{{ item.file }}", mode: "{{ item.mode }}" }
      loop:
        - { file: ca.pem, mode: "0644" }
        - { file: ca-key.pem, mode: "0600" }
        - { file: join-token, mode: "0600" }
        - { file: admin-token, mode: "0600" }
    - template: { src: master.env.j2, dest: "{{ dir }}/etc/master.env", mode: "0600" }
    - shell: >-
        . {{ dir }}/etc/master.env; setsid nohup {{ dir }}/bin/gantry master --listen "$GANTRY_LISTEN"
        --data-dir "$GANTRY_DATA_DIR" --heartbeat-interval "$GANTRY_HEARTBEAT_INTERVAL"
        --agent-unreachable-timeout "$GANTRY_AGENT_UNREACHABLE_TIMEOUT" > {{ dir }}/logs/master.log 2>&1 < /dev/null &
    - wait_for: { host: "{{ ansible_host }}", port: 5050, timeout: 60 }
- hosts: agents
  gather_facts: false
  tasks:
    - file: { path: "{{ dir }}/{{ item }}", state: directory }
      loop: [bin, etc, work, logs]
    - copy: { src: "{{ binary }}", dest: "{{ dir }}/bin/gantry", mode: "0755" }
    - template: { src: agent.env.j2, dest: "{{ dir }}/etc/agent.env", mode: "0600" }
    - shell: >-
        set -a; . {{ dir }}/etc/agent.env; set +a; setsid nohup {{ dir }}/bin/gantry agent --master "$GANTRY_MASTER"
        --work-dir "$GANTRY_WORK_DIR" --listen "$GANTRY_LISTEN" --hostname "$GANTRY_HOSTNAME"
        --attributes "$GANTRY_ATTRIBUTES" > {{ dir }}/logs/agent.log 2>&1 < /dev/null &
    - wait_for: { host: "{{ ansible_host }}", port: "{{ agent_port }}", timeout: 60 }
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn phase_maxima_reads_up_progress() {
        let out = "[a] inspect … done: Linux (12 ms)\n[b] inspect … done (30 ms)\n\
                   [a] upload-binary … done (12.5 s)\n[a] bootstrap complete (13 s)\nWorkload x: deployed\n";
        assert_eq!(super::phase_maxima(out), "inspect 30 ms, upload-binary 12500 ms");
    }
}
