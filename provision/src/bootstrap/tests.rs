use super::*;
use crate::access::{FakeConnector, HostLayout};
use crate::cluster_api::FakeClusterApi;
use crate::transport::{FakeTransport, TransportCall};
use std::path::Path;

fn context(role: Role, transport: Arc<dyn crate::transport::Transport>) -> HostContext {
    HostContext {
        name: "master-0".to_string(),
        role,
        desired: None,
        provider_attributes: BTreeMap::new(),
        access: HostAccess {
            transport,
            layout: HostLayout::new("/opt/gantry"),
            address: "10.0.0.5".to_string(),
            public_address: None,
            api_port: 5050,
            use_systemd: true,
        },
        master_url: None,
        api_url: None,
        masters: Vec::new(),
        runtime: RuntimeSettings::default(),
        binary: PathBuf::from("/nonexistent"),
        api: Arc::new(FakeClusterApi::new()),
        ready_timeout: Duration::from_millis(300),
        facts: None,
        binary_sha256: None,
    }
}

fn linux(transport: &FakeTransport, init: &str) {
    let stdout = format!("Linux\n{}\n{init}\n", std::env::consts::ARCH);
    transport.respond("uname -s", CommandOutput { exit_code: Some(0), stdout, stderr: String::new() });
}

#[tokio::test]
async fn inspect_detects_systemd_and_refuses_other_systems() {
    let transport = Arc::new(FakeTransport::new("master-0"));
    linux(&transport, "systemd");
    let mut host = context(Role::Master, transport);
    Inspect.run(&mut host).await.expect("inspect");
    assert!(host.uses_systemd());
    host.access.use_systemd = false;
    assert!(!host.uses_systemd(), "a provider may forbid systemd units");

    let bsd = Arc::new(FakeTransport::new("bsd"));
    bsd.respond(
        "uname -s",
        CommandOutput { exit_code: Some(0), stdout: "FreeBSD\namd64\nnone\n".into(), ..Default::default() },
    );
    let err = Inspect.run(&mut context(Role::Master, bsd)).await.expect_err("not Linux");
    assert!(err.to_string().contains("gantry runs on Linux"), "{err}");
}

#[tokio::test]
async fn the_master_config_names_its_address_and_runtime_settings() {
    let connector = FakeConnector::new();
    let transport = connector.transport("master-0");
    let mut host = context(Role::Master, transport.clone());
    RenderConfig.run(&mut host).await.expect("render");
    let env =
        String::from_utf8(transport.file(Path::new("/opt/gantry/etc/master.env")).expect("uploaded")).expect("text");
    assert!(env.contains("GANTRY_LISTEN=10.0.0.5:5050\n"), "{env}");
    assert!(env.contains("GANTRY_DATA_DIR=/opt/gantry/data\n"), "{env}");
    assert!(env.contains("GANTRY_AGENT_UNREACHABLE_TIMEOUT=3s\n"), "{env}");
    let again = RenderConfig.run(&mut host).await.expect("render again");
    assert_eq!(again, PhaseOutcome::Skipped("unchanged".to_string()));
}

/// With several masters, each master's config names its number and its peers, and every master
/// gets the cluster's secrets key; a master holding another key is refused (the group would
/// disagree on it), while a master alone hands its own key to the state dir.
#[tokio::test]
async fn every_master_of_a_group_gets_its_number_its_peers_and_the_clusters_secrets_key() {
    let state = tempfile::tempdir().expect("state dir");
    let trust = Arc::new(crate::trust::ClusterTrust::load_or_create(state.path(), "c").expect("trust"));
    let member = |number: u64, address: &str| MasterMember {
        number,
        name: format!("master-{}", number - 1),
        address: address.to_string(),
        url: format!("https://{address}"),
    };
    let group = vec![member(1, "10.0.0.5:5050"), member(2, "10.0.0.6:5050"), member(3, "10.0.0.7:5050")];
    let key_path = Path::new("/opt/gantry/data/secrets.key");

    let transport = Arc::new(FakeTransport::new("master-1"));
    let mut host = context(Role::Master, transport.clone());
    host.name = "master-1".to_string();
    host.masters = group.clone();
    host.runtime.trust = Some(trust.clone());
    RenderConfig.run(&mut host).await.expect("render");
    let env =
        String::from_utf8(transport.file(Path::new("/opt/gantry/etc/master.env")).expect("uploaded")).expect("text");
    assert!(env.contains("GANTRY_NODE_ID=2\n"), "{env}");
    assert!(env.contains("GANTRY_PEERS=1=10.0.0.5:5050,3=10.0.0.7:5050\n"), "{env}");
    let args = templates::args(Role::Master, &render_config::context(&host).expect("context")).expect("args");
    let at = args.iter().position(|a| a == "--node-id").expect("--node-id");
    assert_eq!(args[at..at + 4], ["--node-id", "${GANTRY_NODE_ID}", "--peers", "${GANTRY_PEERS}"]);
    assert_eq!(transport.file(key_path), Some(trust.seal_key.clone()), "the cluster's secrets key is uploaded");

    let other = Arc::new(FakeTransport::new("master-2").with_file(key_path, b"another key"));
    let mut host = context(Role::Master, other.clone());
    host.name = "master-2".to_string();
    host.masters = group;
    host.runtime.trust = Some(trust.clone());
    let err = RenderConfig.run(&mut host).await.expect_err("another key in a group");
    assert!(err.to_string().contains("holds another key than the cluster's"), "{err}");
    assert_eq!(other.file(key_path).as_deref(), Some(&b"another key"[..]), "the host's key is left alone");

    host.masters = Vec::new();
    RenderConfig.run(&mut host).await.expect("a master alone keeps its key");
    let env = String::from_utf8(other.file(Path::new("/opt/gantry/etc/master.env")).expect("env")).expect("text");
    assert!(!env.contains("GANTRY_NODE_ID"), "a master alone has no number or peers: {env}");
    assert_eq!(std::fs::read(&trust.seal_key_path).expect("state dir key"), b"another key", "adopted");
}

/// `join-group` asks the other masters' leader to make a master of a group a voter, `leave-group`
/// to remove it; a master alone does neither.
#[tokio::test]
async fn a_master_of_a_group_joins_it_and_leaves_it_through_the_others() {
    let api = Arc::new(FakeClusterApi::new());
    let mut host = context(Role::Master, Arc::new(FakeTransport::new("master-2")));
    host.api = api.clone();
    host.name = "master-2".to_string();
    let outcome = JoinGroup.run(&mut host).await.expect("alone");
    assert!(matches!(outcome, PhaseOutcome::Skipped(_)), "{outcome:?}");
    host.masters = (1..=3)
        .map(|number| MasterMember {
            number,
            name: format!("master-{}", number - 1),
            address: format!("10.0.0.{number}:5050"),
            url: format!("https://192.0.2.{number}:5050"),
        })
        .collect();
    JoinGroup.run(&mut host).await.expect("join");
    LeaveGroup.run(&mut host).await.expect("leave");
    let others = "https://192.0.2.1:5050,https://192.0.2.2:5050".to_string();
    assert_eq!(
        api.group_changes(),
        [("+3 10.0.0.3:5050".to_string(), others.clone()), ("-3".to_string(), others)],
        "master-2 is number 3, asked about through the other two masters"
    );
    assert_eq!(
        bootstrap_phases().iter().map(|p| p.name()).filter(|n| n.contains("group")).collect::<Vec<_>>(),
        ["join-group"]
    );
    assert_eq!(
        destroy_phases().iter().map(|p| p.name()).collect::<Vec<_>>(),
        ["inspect", "leave-group", "stop", "kill-tasks", "remove-files"]
    );
}

/// The cluster file's agent options reach the agent's command line, under systemd and under
/// gantry's supervisor (every provider, `local` included); unset, none is passed.
#[tokio::test]
async fn the_agent_gets_the_cluster_files_agent_options() {
    let connector = FakeConnector::new();
    let transport = connector.transport("w-0");
    let mut host = context(Role::Agent, transport.clone());
    host.master_url = Some("https://10.0.0.5:5050".to_string());
    let defaults = templates::args(Role::Agent, &render_config::context(&host).expect("context")).expect("args");
    assert!(
        !defaults.iter().any(|a| a.contains("pids") || a.contains("image") || a.contains("registry")),
        "{defaults:?}"
    );
    assert!(!defaults.contains(&"--cgroup-favordynmods".to_string()), "{defaults:?}");

    host.runtime.task_pids = Some(0);
    host.runtime.image_cache_gib = Some(0.5);
    host.runtime.insecure_registries = vec!["registry.lab:5000".to_string(), "[fd00::1]:5000".to_string()];
    host.runtime.cgroup_favordynmods = true;
    let args = templates::args(Role::Agent, &render_config::context(&host).expect("context")).expect("args");
    let expected = [
        "--task-pids",
        "0",
        "--image-cache-gib",
        "0.5",
        "--insecure-registry",
        "registry.lab:5000",
        "--insecure-registry",
        "[fd00::1]:5000",
        "--cgroup-favordynmods",
    ];
    assert_eq!(args[args.len() - expected.len()..], expected, "{args:?}");

    InstallService.run(&mut host).await.expect("install the start script");
    let script = transport.file(&host.access.layout.start_script(Role::Agent)).expect("uploaded");
    let script = String::from_utf8(script).expect("text");
    assert!(
        script.contains(
            "'--task-pids' '0' '--image-cache-gib' '0.5' '--insecure-registry' 'registry.lab:5000' \
             '--insecure-registry' '[fd00::1]:5000' '--cgroup-favordynmods'"
        ),
        "{script}"
    );
    host.facts = Some(HostFacts { os: "Linux".into(), arch: std::env::consts::ARCH.into(), systemd: true });
    InstallService.run(&mut host).await.expect("install the unit");
    let unit = transport.file(&host.access.layout.unit_file(Role::Agent)).expect("uploaded");
    let unit = String::from_utf8(unit).expect("text");
    assert!(unit.contains(" --task-pids 0 --image-cache-gib 0.5 --insecure-registry registry.lab:5000 "), "{unit}");
    assert!(unit.contains("--insecure-registry [fd00::1]:5000 --cgroup-favordynmods\n"), "{unit}");
}

#[tokio::test]
async fn an_agent_without_a_master_url_is_refused() {
    let transport = Arc::new(FakeTransport::new("w-0"));
    let err = RenderConfig.run(&mut context(Role::Agent, transport)).await.expect_err("no master");
    assert!(err.to_string().contains("no master URL"), "{err}");
}

#[tokio::test]
async fn wait_ready_gives_up_with_the_end_of_the_log() {
    let transport = Arc::new(FakeTransport::new("w-0"));
    transport.respond(
        "tail -n 20",
        CommandOutput { exit_code: Some(0), stdout: "bind: address in use\n".into(), ..Default::default() },
    );
    let mut host = context(Role::Agent, transport);
    host.master_url = Some("http://10.0.0.5:5050".to_string());
    let api = FakeClusterApi::new();
    api.set_agent("master-0", None);
    host.api = Arc::new(api);
    let err = WaitReady.run(&mut host).await.expect_err("never registers");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(text.contains("not registered yet") && text.contains("bind: address in use"), "{text}");
}

#[tokio::test]
async fn destroy_refuses_to_remove_the_root_directory() {
    let transport = Arc::new(FakeTransport::new("h"));
    let mut host = context(Role::Agent, transport.clone());
    host.access.layout = HostLayout::new("/");
    RemoveFiles.run(&mut host).await.expect_err("refused");
    assert!(transport.calls().iter().all(|c| !matches!(c, TransportCall::Run(_))), "nothing ran");
}

#[test]
fn quoting_survives_single_quotes() {
    assert_eq!(quote("it's"), r"'it'\''s'");
}

#[tokio::test]
async fn kill_tasks_kills_the_sandboxes_processes_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("hosts/w-0");
    let spawn = |sandbox: PathBuf| {
        std::process::Command::new("sleep").arg("1000").env("GANTRY_SANDBOX", sandbox).spawn().expect("spawn sleep")
    };
    let mut task = spawn(root.join("work/tasks/hello.1"));
    let mut bystander = spawn(dir.path().join("hosts/w-1/work/tasks/hello.2"));
    let transport = Arc::new(crate::transport::LocalTransport::new("w-0").in_dir(dir.path()));
    let mut host = context(Role::Agent, transport);
    host.access.layout = HostLayout::new(&root);
    let outcome = KillTasks.run(&mut host).await.expect("kill-tasks");
    assert_eq!(outcome, PhaseOutcome::Done("1 processes killed".to_string()));
    let status = task.wait().expect("reap");
    assert!(!status.success(), "the task was killed");
    assert!(bystander.try_wait().expect("try_wait").is_none(), "another host's task still runs");
    let again = KillTasks.run(&mut host).await.expect("kill-tasks again");
    assert_eq!(again, PhaseOutcome::Skipped("no task processes".to_string()));
    let _ = bystander.kill();
    let _ = bystander.wait();
}

#[tokio::test]
async fn wait_unreachable_waits_only_for_agents_with_tasks() {
    use crate::cluster_api::AgentView;
    use gantry_api::AgentState;
    let mut host = context(Role::Agent, Arc::new(FakeTransport::new("w-0")));
    host.name = "w-0".to_string();
    let outcome = WaitUnreachable.run(&mut host).await.expect("no master");
    assert_eq!(outcome, PhaseOutcome::Skipped("no master".to_string()));
    host.master_url = Some("http://10.0.0.5:5050".to_string());
    let api = Arc::new(FakeClusterApi::new());
    host.api = api.clone();
    let outcome = WaitUnreachable.run(&mut host).await.expect("idle agent");
    assert_eq!(outcome, PhaseOutcome::Skipped("no tasks to replace".to_string()));
    api.set_agent("w-0", Some(AgentView { state: AgentState::Active, tasks: 2 }));
    let err = WaitUnreachable.run(&mut host).await.expect_err("never marked unreachable");
    assert!(err.to_string().contains("ACTIVE with 2 tasks"), "{err}");
    api.set_agent("w-0", Some(AgentView { state: AgentState::Unreachable, tasks: 2 }));
    assert!(matches!(WaitUnreachable.run(&mut host).await, Ok(PhaseOutcome::Done(_))));
}
