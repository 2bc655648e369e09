//! The master's durable state store: apps, tasks, agents, jobs, job runs and a small `meta` table.
//!
//! Everything the master acknowledges (an API answer, a status-update ack) is committed here
//! first, in one durable transaction per request ([`Store::write`] takes a whole batch). The
//! store holds plain records as JSON; it makes no decisions and knows nothing of the allocator.
//! [`RedbStore`] is the real implementation (`<data_dir>/state.redb`); [`MemStore`] is an
//! in-memory recording double for tests.

use crate::raft::membership::{MembershipError, NOT_REPLICATED};
use gantry_api::{Agent, App, Job, JobRun, Task};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

const APPS: TableDefinition<&str, &str> = TableDefinition::new("apps");
const TASKS: TableDefinition<&str, &str> = TableDefinition::new("tasks");
const AGENTS: TableDefinition<&str, &str> = TableDefinition::new("agents");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const JOBS: TableDefinition<&str, &str> = TableDefinition::new("jobs");
/// Job runs keyed `<job id>/<run id>`.
const JOB_RUNS: TableDefinition<&str, &str> = TableDefinition::new("job_runs");

/// The key of a job run in the `job_runs` table.
fn run_key(job_id: &str, run_id: &str) -> String {
    format!("{job_id}/{run_id}")
}

/// An app as stored: the API view plus the version of its last configuration change (scaling
/// bumps `app.version` but not `config_version`, so running tasks are not replaced).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    /// The app (its `status` is not meaningful in the store).
    pub app: App,
    /// Tasks with `app_version >= config_version` run the current configuration.
    pub config_version: u64,
}

/// One change in a write batch (also the payload of a replicated log entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StoreOp {
    /// Insert or replace an app.
    PutApp(AppRecord),
    /// Remove an app by id.
    DeleteApp(String),
    /// Insert or replace a task.
    PutTask(Task),
    /// Remove a task by id.
    DeleteTask(String),
    /// Insert or replace an agent.
    PutAgent(Agent),
    /// Remove an agent by id.
    DeleteAgent(String),
    /// Set a meta entry.
    PutMeta(String, String),
    /// Remove a meta entry.
    DeleteMeta(String),
    /// Insert or replace a job (its `status` is not meaningful in the store).
    PutJob(Job),
    /// Remove a job by id.
    DeleteJob(String),
    /// Insert or replace a job run.
    PutJobRun(JobRun),
    /// Remove a job run: job id, run id.
    DeleteJobRun(String, String),
}

/// Everything in the store, as loaded at start (and as a Raft snapshot carries it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Apps by id.
    pub apps: Vec<AppRecord>,
    /// Every task.
    pub tasks: Vec<Task>,
    /// Every agent.
    pub agents: Vec<Agent>,
    /// Meta entries.
    pub meta: BTreeMap<String, String>,
    /// Jobs by id.
    pub jobs: Vec<Job>,
    /// Every job run.
    pub job_runs: Vec<JobRun>,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The database failed.
    #[error("state store: {0}")]
    Redb(#[from] redb::Error),
    /// A stored record is not valid JSON of its type.
    #[error("state store: corrupt record `{key}` in `{table}`: {source}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The key.
        key: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A record could not be encoded.
    #[error("state store: cannot encode a record: {0}")]
    Encode(#[from] serde_json::Error),
    /// The masters' Raft group did not take the write (or could not start).
    #[error("state store: {0}")]
    Replication(String),
    /// This master does not lead its group: writes go to the leader (its API address, when known).
    #[error("this master does not lead the masters' group; the leader is {}", leader.as_deref().unwrap_or("not known yet"))]
    NotLeader {
        /// The leader's API address.
        leader: Option<String>,
    },
}

/// Called once with the outcome of a proposed batch ([`Store::propose`]).
pub type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// The master's persistence boundary. Every call but [`Store::propose`] is synchronous and durable
/// when it returns.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Applies every operation of `batch` in one durable transaction (all or nothing).
    fn write(&self, batch: &[StoreOp]) -> Result<(), StoreError>;
    /// Reads everything (at start).
    fn load(&self) -> Result<Snapshot, StoreError>;
    /// Proposes `batch` without waiting for it: `done` gets the outcome once it is durable (or
    /// why it is not). Batches proposed and written take effect in the order of these calls.
    /// The default writes at once and calls `done` before it returns.
    fn propose(&self, batch: Vec<StoreOp>, done: Done) {
        done(self.write(&batch));
    }
    /// Whether [`Self::propose`] answers later (a replicated store): then the master applies a
    /// change as soon as it is proposed and answers once it is committed (see
    /// [`crate::pipeline`]).
    fn pipelined(&self) -> bool {
        false
    }
    /// The masters' group as this master sees it (`None`: a store that is not replicated).
    fn group(&self) -> Option<Group> {
        None
    }
    /// Adds master `id`, serving its API at `address`, to the masters' group as a voter once it
    /// has caught up; idempotent and resumable (see
    /// [`crate::raft::store::RaftStore::add_master`]). Blocks until the change is committed:
    /// call it off an async worker. A store that is not replicated refuses it.
    fn add_master(&self, id: u64, address: &str) -> Result<(), MembershipError> {
        let _ = (id, address);
        Err(MembershipError::Refused(NOT_REPLICATED.to_string()))
    }
    /// Removes master `id` from the masters' group, refusing a change that would leave the group
    /// unable to commit (see [`crate::raft::store::RaftStore::remove_master`]); a master that is
    /// not a member is nothing to do. Blocks: call it off an async worker. A store that is not
    /// replicated refuses it.
    fn remove_master(&self, id: u64) -> Result<(), MembershipError> {
        let _ = id;
        Err(MembershipError::Refused(NOT_REPLICATED.to_string()))
    }
}

/// The masters' group as one master sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// This master's number.
    pub this: u64,
    /// The current term.
    pub term: u64,
    /// The leader's number, when known.
    pub leader: Option<u64>,
    /// Every member, this one included.
    pub members: Vec<gantry_api::client::MasterInfo>,
}

impl Group {
    /// This master's role.
    pub fn role(&self) -> &str {
        self.members.iter().find(|m| m.id == self.this).map_or("unknown", |m| m.role.as_str())
    }

    /// The leader's API address, when known.
    pub fn leader_address(&self) -> Option<&str> {
        let leader = self.leader?;
        self.members.iter().find(|m| m.id == leader).map(|m| m.address.as_str())
    }
}

/// The redb-backed store: `<data_dir>/state.redb`, one JSON value per record.
#[derive(Debug)]
pub struct RedbStore {
    db: redb::Database,
}

/// redb's page cache. The master reads the store only when it starts (the state lives in
/// memory), so redb's 1 GiB default would only hold written pages the master never reads again.
const CACHE_BYTES: usize = 32 << 20;

pub(crate) fn redb_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Redb(e.into())
}

impl RedbStore {
    /// Opens (or creates) the store in `data_dir`, creating the directory if missing.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StoreError::DataDir { path: data_dir.display().to_string(), source })?;
        let db =
            redb::Builder::new().set_cache_size(CACHE_BYTES).create(data_dir.join("state.redb")).map_err(redb_err)?;
        let txn = db.begin_write().map_err(redb_err)?;
        create_state_tables(&txn)?;
        txn.commit().map_err(redb_err)?;
        Ok(Self { db })
    }
}

fn read_table<T: serde::de::DeserializeOwned>(
    txn: &redb::ReadTransaction,
    def: TableDefinition<&str, &str>,
    name: &'static str,
) -> Result<Vec<(String, T)>, StoreError> {
    let table = txn.open_table(def).map_err(redb_err)?;
    let mut out = Vec::new();
    for entry in table.iter().map_err(redb_err)? {
        let (key, value) = entry.map_err(redb_err)?;
        let key = key.value().to_string();
        let parsed = serde_json::from_str(value.value()).map_err(|source| StoreError::Corrupt {
            table: name,
            key: key.clone(),
            source,
        })?;
        out.push((key, parsed));
    }
    Ok(out)
}

/// Applies every operation of `batch` to the state tables in `txn` (not committed here).
pub(crate) fn apply_ops(txn: &redb::WriteTransaction, batch: &[StoreOp]) -> Result<(), StoreError> {
    let mut apps = txn.open_table(APPS).map_err(redb_err)?;
    let mut tasks = txn.open_table(TASKS).map_err(redb_err)?;
    let mut agents = txn.open_table(AGENTS).map_err(redb_err)?;
    let mut meta = txn.open_table(META).map_err(redb_err)?;
    let mut jobs = txn.open_table(JOBS).map_err(redb_err)?;
    let mut job_runs = txn.open_table(JOB_RUNS).map_err(redb_err)?;
    for op in batch {
        match op {
            StoreOp::PutApp(r) => {
                apps.insert(r.app.definition.id.as_str(), serde_json::to_string(r)?.as_str()).map_err(redb_err)?;
            }
            StoreOp::DeleteApp(id) => {
                apps.remove(id.as_str()).map_err(redb_err)?;
            }
            StoreOp::PutTask(t) => {
                tasks.insert(t.id.as_str(), serde_json::to_string(t)?.as_str()).map_err(redb_err)?;
            }
            StoreOp::DeleteTask(id) => {
                tasks.remove(id.as_str()).map_err(redb_err)?;
            }
            StoreOp::PutAgent(a) => {
                agents.insert(a.info.id.as_str(), serde_json::to_string(a)?.as_str()).map_err(redb_err)?;
            }
            StoreOp::DeleteAgent(id) => {
                agents.remove(id.as_str()).map_err(redb_err)?;
            }
            StoreOp::PutMeta(k, v) => {
                meta.insert(k.as_str(), v.as_str()).map_err(redb_err)?;
            }
            StoreOp::DeleteMeta(k) => {
                meta.remove(k.as_str()).map_err(redb_err)?;
            }
            StoreOp::PutJob(j) => {
                jobs.insert(j.definition.id.as_str(), serde_json::to_string(j)?.as_str()).map_err(redb_err)?;
            }
            StoreOp::DeleteJob(id) => {
                jobs.remove(id.as_str()).map_err(redb_err)?;
            }
            StoreOp::PutJobRun(r) => {
                job_runs
                    .insert(run_key(&r.job_id, &r.id).as_str(), serde_json::to_string(r)?.as_str())
                    .map_err(redb_err)?;
            }
            StoreOp::DeleteJobRun(job_id, run_id) => {
                job_runs.remove(run_key(job_id, run_id).as_str()).map_err(redb_err)?;
            }
        }
    }
    Ok(())
}

/// Creates the state tables in `txn` where missing.
pub(crate) fn create_state_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    for table in [APPS, TASKS, AGENTS, META, JOBS, JOB_RUNS] {
        txn.open_table(table).map_err(redb_err)?;
    }
    Ok(())
}

/// Empties every state table in `txn` (before a snapshot replaces the state).
pub(crate) fn clear_state(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    for table in [APPS, TASKS, AGENTS, META, JOBS, JOB_RUNS] {
        txn.delete_table(table).map_err(redb_err)?;
        txn.open_table(table).map_err(redb_err)?;
    }
    Ok(())
}

/// Every record of the state tables, as of `txn`.
pub(crate) fn load_from(txn: &redb::ReadTransaction) -> Result<Snapshot, StoreError> {
    let apps = read_table::<AppRecord>(txn, APPS, "apps")?.into_iter().map(|(_, v)| v).collect();
    let tasks = read_table::<Task>(txn, TASKS, "tasks")?.into_iter().map(|(_, v)| v).collect();
    let agents = read_table::<Agent>(txn, AGENTS, "agents")?.into_iter().map(|(_, v)| v).collect();
    let table = txn.open_table(META).map_err(redb_err)?;
    let mut meta = BTreeMap::new();
    for entry in table.iter().map_err(redb_err)? {
        let (k, v) = entry.map_err(redb_err)?;
        meta.insert(k.value().to_string(), v.value().to_string());
    }
    let jobs = read_table::<Job>(txn, JOBS, "jobs")?.into_iter().map(|(_, v)| v).collect();
    let job_runs = read_table::<JobRun>(txn, JOB_RUNS, "job_runs")?.into_iter().map(|(_, v)| v).collect();
    Ok(Snapshot { apps, tasks, agents, meta, jobs, job_runs })
}

/// The writes that put every record of `snapshot` into empty state tables.
pub(crate) fn snapshot_ops(snapshot: &Snapshot) -> Vec<StoreOp> {
    let mut batch: Vec<StoreOp> = Vec::new();
    batch.extend(snapshot.apps.iter().cloned().map(StoreOp::PutApp));
    batch.extend(snapshot.tasks.iter().cloned().map(StoreOp::PutTask));
    batch.extend(snapshot.agents.iter().cloned().map(StoreOp::PutAgent));
    batch.extend(snapshot.meta.iter().map(|(k, v)| StoreOp::PutMeta(k.clone(), v.clone())));
    batch.extend(snapshot.jobs.iter().cloned().map(StoreOp::PutJob));
    batch.extend(snapshot.job_runs.iter().cloned().map(StoreOp::PutJobRun));
    batch
}

/// Writes every record of `snapshot` into the (empty) state tables of `txn`.
pub(crate) fn write_snapshot(txn: &redb::WriteTransaction, snapshot: &Snapshot) -> Result<(), StoreError> {
    apply_ops(txn, &snapshot_ops(snapshot))
}

impl Store for RedbStore {
    fn write(&self, batch: &[StoreOp]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(redb_err)?;
        apply_ops(&txn, batch)?;
        txn.commit().map_err(redb_err)
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read().map_err(redb_err)?;
        load_from(&txn)
    }
}

/// An in-memory store that records every batch, for tests ("stored before acknowledged").
#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<MemInner>,
}

#[derive(Debug, Default)]
struct MemInner {
    apps: BTreeMap<String, AppRecord>,
    tasks: BTreeMap<String, Task>,
    agents: BTreeMap<String, Agent>,
    meta: BTreeMap<String, String>,
    jobs: BTreeMap<String, Job>,
    job_runs: BTreeMap<String, JobRun>,
    batches: Vec<Vec<StoreOp>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every batch written so far, in order.
    pub fn batches(&self) -> Vec<Vec<StoreOp>> {
        self.inner.lock().map(|i| i.batches.clone()).unwrap_or_default()
    }
}

impl Store for MemStore {
    fn write(&self, batch: &[StoreOp]) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if batch.is_empty() {
            return Ok(());
        }
        inner.batches.push(batch.to_vec());
        for op in batch {
            match op {
                StoreOp::PutApp(r) => {
                    inner.apps.insert(r.app.definition.id.clone(), r.clone());
                }
                StoreOp::DeleteApp(id) => {
                    inner.apps.remove(id);
                }
                StoreOp::PutTask(t) => {
                    inner.tasks.insert(t.id.clone(), t.clone());
                }
                StoreOp::DeleteTask(id) => {
                    inner.tasks.remove(id);
                }
                StoreOp::PutAgent(a) => {
                    inner.agents.insert(a.info.id.clone(), a.clone());
                }
                StoreOp::DeleteAgent(id) => {
                    inner.agents.remove(id);
                }
                StoreOp::PutMeta(k, v) => {
                    inner.meta.insert(k.clone(), v.clone());
                }
                StoreOp::DeleteMeta(k) => {
                    inner.meta.remove(k);
                }
                StoreOp::PutJob(j) => {
                    inner.jobs.insert(j.definition.id.clone(), j.clone());
                }
                StoreOp::DeleteJob(id) => {
                    inner.jobs.remove(id);
                }
                StoreOp::PutJobRun(r) => {
                    inner.job_runs.insert(run_key(&r.job_id, &r.id), r.clone());
                }
                StoreOp::DeleteJobRun(job_id, run_id) => {
                    inner.job_runs.remove(&run_key(job_id, run_id));
                }
            }
        }
        Ok(())
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Snapshot {
            apps: inner.apps.values().cloned().collect(),
            tasks: inner.tasks.values().cloned().collect(),
            agents: inner.agents.values().cloned().collect(),
            meta: inner.meta.clone(),
            jobs: inner.jobs.values().cloned().collect(),
            job_runs: inner.job_runs.values().cloned().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_api::{AgentInfo, AgentState, AppDefinition, Resources, TaskState};

    fn record(id: &str) -> AppRecord {
        let definition: AppDefinition =
            serde_json::from_str(&format!(r#"{{"id":"{id}","cmd":"sleep 100"}}"#)).expect("valid");
        AppRecord {
            app: App { definition, version: 3, created_at: 1, updated_at: 2, status: Default::default() },
            config_version: 2,
        }
    }

    fn task(id: &str) -> Task {
        Task {
            id: id.to_string(),
            app_id: "web".to_string(),
            app_version: 3,
            agent_id: "a1".to_string(),
            host: "h".to_string(),
            state: TaskState::Running,
            healthy: Some(true),
            ports: vec![31000],
            resources: Resources { ports: Resources::from_ports(&[31000]), ..Resources::scalar(0.1, 32.0, 0.0, 0) },
            staged_at: 5,
            started_at: Some(6),
            finished_at: None,
            exit_code: None,
            message: None,
            limits: Vec::new(),
        }
    }

    fn agent(id: &str) -> Agent {
        Agent {
            info: AgentInfo {
                id: id.to_string(),
                hostname: "h".to_string(),
                endpoint: "http://127.0.0.1:5051".to_string(),
                resources: Resources::scalar(2.0, 2048.0, 0.0, 0),
                attributes: BTreeMap::new(),
                version: "0.1.0".to_string(),
            },
            state: AgentState::Active,
            drain: None,
            registered_at: 1,
            last_seen_at: 2,
            used: Resources::default(),
            tasks: 0,
        }
    }

    fn batch() -> Vec<StoreOp> {
        vec![
            StoreOp::PutApp(record("web")),
            StoreOp::PutApp(record("db")),
            StoreOp::DeleteApp("db".to_string()),
            StoreOp::PutTask(task("web.1")),
            StoreOp::PutTask(task("web.2")),
            StoreOp::DeleteTask("web.2".to_string()),
            StoreOp::PutAgent(agent("a1")),
            StoreOp::PutMeta("master-id".to_string(), "m1".to_string()),
            StoreOp::PutJob(job("nightly")),
            StoreOp::PutJob(job("gone")),
            StoreOp::DeleteJob("gone".to_string()),
            StoreOp::PutJobRun(run("nightly", "r1")),
            StoreOp::PutJobRun(run("nightly", "r2")),
            StoreOp::DeleteJobRun("nightly".to_string(), "r2".to_string()),
        ]
    }

    fn assert_expected(snapshot: &Snapshot) {
        assert_eq!(snapshot.apps, vec![record("web")]);
        assert_eq!(snapshot.tasks, vec![task("web.1")]);
        assert_eq!(snapshot.agents, vec![agent("a1")]);
        assert_eq!(snapshot.meta.get("master-id").map(String::as_str), Some("m1"));
        assert_eq!(snapshot.jobs, vec![job("nightly")]);
        assert_eq!(snapshot.job_runs, vec![run("nightly", "r1")]);
    }

    fn job(id: &str) -> Job {
        let definition = serde_json::from_str(&format!(r#"{{"id":"{id}","run":{{"cmd":"true"}}}}"#)).expect("valid");
        Job { definition, created_at: 1, updated_at: 2, status: Default::default() }
    }

    fn run(job_id: &str, id: &str) -> JobRun {
        JobRun::new(job_id, id.to_string(), gantry_api::job::RunTrigger::Manual, 3)
    }

    #[test]
    fn redb_round_trip_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("nested").join("master");
        {
            let store = RedbStore::open(&data_dir).expect("open");
            store.write(&batch()).expect("write");
            assert_expected(&store.load().expect("load"));
        }
        let store = RedbStore::open(&data_dir).expect("reopen");
        assert_expected(&store.load().expect("load after reopen"));
        assert!(data_dir.join("state.redb").exists());
    }

    #[test]
    fn redb_rejects_a_second_open_while_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _store = RedbStore::open(dir.path()).expect("open");
        assert!(RedbStore::open(dir.path()).is_err());
    }

    #[test]
    fn mem_store_records_batches_and_applies_them() {
        let store = MemStore::new();
        store.write(&batch()).expect("write");
        store.write(&[]).expect("empty write");
        assert_eq!(store.batches(), vec![batch()]);
        assert_expected(&store.load().expect("load"));
    }
}
