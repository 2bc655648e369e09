//! A client that creates apps `w-1`, `w-2`, … one after the other while the masters fail, and
//! the check that afterwards every acknowledged write is stored once and nothing else is.

use super::repo_root;
use gantry_api::{AppDefinition, Client, ClientError};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The web app of `configs/apps/web.toml` as `id` with `instances`.
pub fn app(id: &str, instances: u32) -> AppDefinition {
    let mut app = gantry_api::workload::read_app_file(&repo_root().join("configs/apps/web.toml")).expect("web.toml");
    app.id = id.to_string();
    app.instances = instances;
    app
}

/// What a writer saw: the apps whose creation was acknowledged, those whose outcome it cannot
/// know (the connection broke after the request was sent, or the write was not committed in
/// time and may still be), and those refused as bad.
#[derive(Debug, Default)]
pub struct Writes {
    pub acknowledged: Vec<String>,
    pub unknown: Vec<String>,
    pub refused: Vec<String>,
}

/// A running writer.
pub struct Writer {
    writes: Arc<Mutex<Writes>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Starts writing through `client`.
    pub fn start(client: Client) -> Writer {
        let writes = Arc::new(Mutex::new(Writes::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (writes, stop) = (writes.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let id = format!("w-{n}");
                    let outcome = client.put_app(&app(&id, 0)).await;
                    let mut writes = writes.lock().expect("lock");
                    match outcome {
                        Ok(_) => writes.acknowledged.push(id),
                        Err(ClientError::Api { status: 503, .. }) => writes.unknown.push(id),
                        Err(error @ ClientError::Api { .. }) => writes.refused.push(format!("{id}: {error}")),
                        Err(_) => writes.unknown.push(id),
                    }
                }
            })
        };
        Writer { writes, stop, task }
    }

    /// How many writes were acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.writes.lock().expect("lock").acknowledged.len()
    }

    /// Stops writing and answers what it saw.
    pub async fn stop(self) -> Writes {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("writer");
        std::mem::take(&mut *self.writes.lock().expect("lock"))
    }
}

/// Checks, through `client`, that every acknowledged write is stored once and that nothing but
/// what was written is (`logs` on failure).
pub async fn check_stored(client: &Client, writes: &Writes, logs: impl Fn() -> String) {
    println!("writes: {} acknowledged, {} unknown", writes.acknowledged.len(), writes.unknown.len());
    assert!(writes.refused.is_empty(), "no write was refused as bad: {:?}", writes.refused);
    let apps = client.list_apps().await.expect("apps");
    let stored: Vec<&str> = apps.iter().map(|a| a.definition.id.as_str()).filter(|id| id.starts_with("w-")).collect();
    let unique: BTreeSet<&str> = stored.iter().copied().collect();
    assert_eq!(stored.len(), unique.len(), "no app is stored twice");
    for id in &writes.acknowledged {
        assert!(unique.contains(id.as_str()), "acknowledged write {id} survived; logs:\n{}", logs());
    }
    let known: BTreeSet<&str> = writes.acknowledged.iter().chain(&writes.unknown).map(String::as_str).collect();
    assert!(unique.is_subset(&known), "only what was written is stored");
}
