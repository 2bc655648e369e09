//! The attacker suite: the real binary as master and agents, and every request an attacker
//! could make refused with a clear error, the cluster unchanged. Agent certificates for the
//! attacks are made with the CA key of the master's data dir (what a stolen agent key gives).

mod support;

use gantry_api::protocol::{PREFIX, StatusUpdate};
use gantry_api::security::CreateToken;
use gantry_api::{AppDefinition, Client, Credentials, TaskState};
use std::io::{Read, Write};
use support::{Cluster, repo_root};

fn web_app(id: &str) -> AppDefinition {
    let mut app = gantry_api::workload::read_app_file(&repo_root().join("configs/apps/web.toml")).expect("web.toml");
    app.id = id.to_string();
    app.instances = 1;
    app
}

/// An HTTP client presenting a certificate of `ca` for agent `id`, trusting `trust_pem`.
fn agent_http(ca: &gantry_trust::Ca, id: &str, trust_pem: &str) -> reqwest::Client {
    let cert = ca
        .issue(&gantry_trust::Identity::Agent(id.to_string()), &[], &[], gantry_trust::pki::LEAF_LIFETIME)
        .expect("certificate");
    let tls = gantry_trust::tls::client_config(trust_pem, Some((&cert.cert_pem, &cert.key_pem))).expect("TLS");
    reqwest::Client::builder().tls_backend_preconfigured(tls).build().expect("client")
}

fn with_token(cluster: &Cluster, token: Option<&str>) -> Client {
    let ca = std::fs::read_to_string(cluster.path().join("master").join("ca.pem")).expect("CA");
    let credentials = Credentials { token: token.map(str::to_string), ca_pem: Some(ca), ..Default::default() };
    Client::with_credentials(&cluster.master_url, &credentials).expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_is_refused_and_changes_nothing() {
    let cluster = Cluster::start(2).await;
    let admin = cluster.client.clone();
    admin.put_app(&web_app("web")).await.expect("deploy web");
    let tasks = cluster.wait_running("web", 1, false).await;
    let task = &tasks[0];
    let agents = admin.list_agents().await.expect("agents");
    let owner = agents.iter().find(|a| a.info.id == task.agent_id).expect("the task's agent");
    let other = agents.iter().find(|a| a.info.id != task.agent_id).expect("another agent");
    let data = cluster.path().join("master");
    let ca = gantry_trust::Ca::load(&data).expect("CA").expect("present");
    let ca_pem = ca.cert_pem().to_string();
    let apps_before = admin.list_apps().await.expect("apps");

    // No credentials at all.
    let err = with_token(&cluster, None).list_apps().await.expect_err("anonymous");
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(err.to_string().contains("no credentials"), "{err}");

    // Plain HTTP on the API port.
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", cluster.master_port)).expect("connect");
    plain.write_all(b"GET /api/v1/apps HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let mut answer = String::new();
    let _ = plain.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("HTTPS only"), "{answer}");

    // A certificate of another CA: the handshake fails.
    let foreign = gantry_trust::Ca::generate("evil").expect("another CA");
    let evil = agent_http(&foreign, &owner.info.id, &ca_pem);
    let err = evil
        .post(format!("{}{PREFIX}/{}/heartbeat", cluster.master_url, owner.info.id))
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect_err("a foreign certificate is refused at the handshake");
    assert!(err.is_connect() || err.is_request(), "{err:?}");

    // An agent's certificate used as an admin.
    let as_other = agent_http(&ca, &other.info.id, &ca_pem);
    let response = as_other.get(format!("{}/api/v1/apps", cluster.master_url)).send().await.expect("send");
    assert_eq!(response.status(), 403);
    let response = as_other.delete(format!("{}/api/v1/apps/web", cluster.master_url)).send().await.expect("send");
    assert_eq!(response.status(), 403);

    // Agent B posting a status update for agent A's task, on its own route and on A's.
    let update = StatusUpdate {
        task_id: task.id.clone(),
        state: TaskState::Failed,
        healthy: None,
        exit_code: Some(1),
        message: Some("forged".to_string()),
        uuid: "forged-1".to_string(),
        timestamp: 0,
        limits: Vec::new(),
    };
    for route_agent in [&other.info.id, &owner.info.id] {
        let response = as_other
            .post(format!("{}{PREFIX}/{route_agent}/status", cluster.master_url))
            .json(&update)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 403, "status via {route_agent}'s route");
    }

    // Agent B opening A's command stream.
    let response =
        as_other.get(format!("{}{PREFIX}/{}/commands", cluster.master_url, owner.info.id)).send().await.expect("send");
    assert_eq!(response.status(), 403);

    // A read-only token writing; a revoked token; an expired token; junk.
    let read_only = admin
        .create_token(&CreateToken { name: "viewer".into(), policies: vec!["read-only".into()], ttl_secs: None })
        .await
        .expect("token");
    let viewer = with_token(&cluster, Some(&read_only.token));
    assert_eq!(viewer.list_apps().await.expect("read-only reads").len(), 1);
    let err = viewer.scale_app("web", 3).await.expect_err("read-only writes");
    assert_eq!(err.status(), Some(403));
    assert!(err.to_string().contains("token viewer may not write apps `web`"), "{err}");
    let err = viewer.list_secrets().await.expect_err("read-only reads secrets");
    assert_eq!(err.status(), Some(403));
    admin.revoke_token("viewer").await.expect("revoke");
    assert_eq!(viewer.list_apps().await.expect_err("revoked").status(), Some(401));
    let expired = admin
        .create_token(&CreateToken { name: "brief".into(), policies: vec!["admin".into()], ttl_secs: Some(0) })
        .await
        .expect("token");
    let err = with_token(&cluster, Some(&expired.token)).list_apps().await.expect_err("expired");
    assert_eq!(err.status(), Some(401));
    assert!(err.to_string().contains("token brief expired"), "{err}");
    let err = with_token(&cluster, Some("gt1_nonsense")).list_apps().await.expect_err("junk");
    assert_eq!(err.status(), Some(401));

    // The command line says who it is, and what to do without the CA or a token.
    let (ok, stdout, stderr) = cluster.gantry(&["token", "whoami"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("token:admin") && stdout.contains("policies: admin"), "{stdout}");
    let (ok, _, stderr) = support::gantry(&cluster.master_url, &["app", "list"]);
    assert!(!ok && stderr.contains("--ca-cert"), "no CA: {stderr}");
    let ca_file = cluster.path().join("master").join("ca.pem");
    let output = std::process::Command::new(support::BIN)
        .args(["app", "list", "--master", &cluster.master_url, "--ca-cert"])
        .arg(&ca_file)
        .env("GANTRY_STATE_DIR", cluster.path().join("no-state"))
        .env_remove("GANTRY_TOKEN")
        .output()
        .expect("run gantry");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("HTTP 401") && stderr.contains("no token was sent"),
        "{stderr}"
    );

    // Nothing changed.
    let apps_after = admin.list_apps().await.expect("apps");
    assert_eq!(apps_before.len(), apps_after.len());
    assert_eq!(apps_after[0].definition.instances, 1);
    let still = admin.get_task(&task.id).await.expect("task");
    assert_eq!(still.state, TaskState::Running, "the forged update was not applied");
    assert_eq!(admin.list_agents().await.expect("agents").len(), 2);
}

/// Pids whose command line holds `needle`.
fn cmdlines_holding(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_secret_reaches_only_its_tasks_environment_and_file() {
    let cluster = Cluster::start(1).await;
    let admin = cluster.client.clone();
    let planted = format!("planted-{}", gantry_trust::hex(&gantry_trust::random_bytes::<8>()));
    // Every event of the whole test, raw, to search for the value at the end.
    let mut events = admin
        .request(reqwest::Method::GET, "/api/v1/events")
        .timeout(std::time::Duration::from_secs(3600))
        .send()
        .await
        .expect("the event stream");
    assert!(events.status().is_success());
    let (event_text, mut event_bytes) = (std::sync::Arc::new(std::sync::Mutex::new(Vec::new())), Vec::new());
    let sink = event_text.clone();
    let reader = tokio::spawn(async move {
        while let Ok(Some(chunk)) = events.chunk().await {
            sink.lock().expect("lock").extend_from_slice(&chunk);
        }
    });

    // An app that names a secret not stored yet waits, saying why.
    let mut app: AppDefinition = serde_json::from_value(serde_json::json!({
        "id": "reader", "cmd": "sleep 600", "instances": 1,
        "secrets": {"DB_PASSWORD": "db/password"}, "secret_files": {"db.pass": "db/password"},
    }))
    .expect("app");
    admin.put_app(&app).await.expect("deploy");
    let waiting =
        support::wait_for("the app to say which secret is missing", std::time::Duration::from_secs(20), || async {
            admin.get_app("reader").await.ok()?.status.waiting.filter(|w| w.contains("db/password"))
        })
        .await;
    assert!(waiting.contains("gantry secret put db/password"), "{waiting}");

    // A deployer may deploy apps, but not one that reads a secret it may not read.
    let deployer = admin
        .create_token(&CreateToken { name: "deployer".into(), policies: vec!["deployer".into()], ttl_secs: None })
        .await
        .expect("token");
    app.id = "sneaky".into();
    let err = with_token(&cluster, Some(&deployer.token)).put_app(&app).await.expect_err("deployer reads a secret");
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(err.to_string().contains("may not read secrets `db/password`"), "{err}");

    let info = admin.put_secret("db/password", &planted).await.expect("put");
    assert_eq!(info.version, 1);
    let tasks = cluster.wait_running("reader", 1, false).await;
    let task = &tasks[0];
    let pid = support::wait_for("the task's process", std::time::Duration::from_secs(20), || async {
        cluster
            .task_processes()
            .into_iter()
            .find(|pid| support::environ(*pid).contains(&format!("GANTRY_TASK_ID={}", task.id)))
    })
    .await;
    assert!(support::environ(pid).lines().any(|l| l == format!("DB_PASSWORD={planted}")), "the task gets the value");
    let sandbox = cluster.path().join("agent-0").join("tasks").join(&task.id);
    let file = sandbox.join("db.pass");
    assert_eq!(std::fs::read_to_string(&file).expect("secret file"), planted);
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(&file).expect("metadata");
    assert_eq!(meta.permissions().mode() & 0o777, 0o400);
    let process_uid = std::fs::metadata(format!("/proc/{pid}")).expect("proc").uid();
    assert_eq!(meta.uid(), process_uid, "the file belongs to the task's user");
    if nix::unistd::Uid::effective().is_root() {
        let nobody = nix::unistd::User::from_name("nobody").expect("lookup").expect("nobody exists");
        assert_eq!(process_uid, nobody.uid.as_raw(), "a root agent runs tasks as nobody");
        assert_eq!(std::fs::metadata(&sandbox).expect("sandbox").permissions().mode() & 0o777, 0o750);
    }
    for json in ["task.json", "launch.json"] {
        let mode = std::fs::metadata(sandbox.join(json)).expect(json).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{json} holds the environment");
    }

    // Nowhere else: API answers, the store, the logs, command lines.
    let answers = [
        serde_json::to_string(&admin.list_secrets().await.expect("list")).expect("json"),
        serde_json::to_string(&admin.get_secret("db/password").await.expect("show")).expect("json"),
        serde_json::to_string(&admin.get_app("reader").await.expect("app")).expect("json"),
        serde_json::to_string(&admin.list_tasks(None, true).await.expect("tasks")).expect("json"),
        serde_json::to_string(&admin.list_agents().await.expect("agents")).expect("json"),
    ];
    for answer in &answers {
        assert!(!answer.contains(&planted), "an API answer holds the value: {answer}");
    }
    for file in ["state.redb", "raft-log.redb"] {
        let store = std::fs::read(cluster.path().join("master").join(file)).expect("store file");
        assert!(!store.windows(planted.len()).any(|w| w == planted.as_bytes()), "{file} holds the value in clear");
    }
    for log in ["master.log", "agent-0.log"] {
        let text = std::fs::read_to_string(cluster.path().join(log)).expect("log");
        assert!(!text.contains(&planted), "{log} names the value");
    }
    assert!(cmdlines_holding(&planted).is_empty(), "no command line names the value");
    reader.abort();
    event_bytes.extend_from_slice(&event_text.lock().expect("lock"));
    let event_text = String::from_utf8_lossy(&event_bytes);
    assert!(event_text.contains("reader"), "the stream carried the app's task events: {event_text}");
    assert!(!event_text.contains(&planted), "an event holds the value");

    assert_eq!(admin.put_secret("db/password", &planted).await.expect("put again").version, 2);
    admin.delete_app("reader").await.expect("delete app");
    admin.delete_secret("db/password").await.expect("delete");
    assert_eq!(admin.get_secret("db/password").await.expect_err("gone").status(), Some(404));
}
