//! Every master serves its listener, but only the leader of the Raft group serves the cluster.
//!
//! A master's process lives through many *terms*: when its Raft node becomes leader and has
//! applied its whole log, [`run`] builds the core ([`Master`], loaded from the replicated state
//! tables) and starts the allocator, the services driver and housekeeping on it; when the node
//! stops leading (a newer leader, a shutdown), the term ends: its loops stop, its command
//! streams close (so agents reconnect and find the new leader) and the core is dropped. A
//! follower keeps no cluster state in memory: its state machine applies every committed write
//! to its tables, and its next term loads them.
//!
//! [`router`] is the whole HTTP application of a master with peers:
//! - `/internal/raft/*`: the Raft RPCs, for other masters' certificates only;
//! - `/health`: this master's role; `200` while it leads and is ready, or follows a known
//!   leader, `503` while there is no leader (an election), it is starting, or it leads but has
//!   not heard from a majority for 500 ms (`cut-off`: see [`Leadership::in_touch`]);
//! - everything else: the leader's API; a follower answers `307 Temporary Redirect` to the
//!   same path on the leader (`Location`, and `X-Gantry-Leader` with the leader's address), or
//!   `503` while no leader is known. Nothing reaches a follower's core: it has none. A leader
//!   cut off from the majority answers `503` too, so it never serves a state the others may
//!   have moved past (their new leader's writes).

use crate::master::Master;
use crate::raft::NodeId;
use crate::raft::store::RaftStore;
use crate::security::Trust;
use crate::store::Store;
use crate::{Framework, MasterConfig, MasterError};
use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gantry_api::client::Health;
use gantry_trust::Identity;
use gantry_trust::listener::Peer;
use openraft::ServerState;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;
use tracing::{info, warn};

use gantry_api::masters::LEADER_HEADER;

/// How long a new leader waits to apply the log it inherited before it gives up the term.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A leader that has not heard from a majority of the masters for this long stops answering
/// (`503`): the others may elect a new leader once their lease on it has run out (500 ms) and
/// their election timeout has passed (250-500 ms more), so a leader cut off from them never
/// answers from a state they have moved past. 500 ms: under the 750 ms before the earliest
/// election, with room for openraft's 150 ms metrics tick.
const STALE_AFTER_MS: u64 = 500;

/// The term a master leads: its core and the API router over it.
struct Term {
    number: u64,
    master: Arc<Master>,
    api: Router,
}

/// What a master's listener serves through: see the module documentation.
pub struct Leadership {
    store: Arc<RaftStore>,
    trust: Arc<Trust>,
    config: MasterConfig,
    term: RwLock<Option<Term>>,
    /// Tells a waiting caller (tests, `start`) which term this master leads, 0 while none.
    leading: watch::Sender<u64>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership").field("leading", &*self.leading.borrow()).finish_non_exhaustive()
    }
}

impl Leadership {
    /// The leadership of the master configured by `config`, over its `store`.
    pub fn new(store: Arc<RaftStore>, trust: Arc<Trust>, config: MasterConfig) -> Arc<Self> {
        Arc::new(Self { store, trust, config, term: RwLock::new(None), leading: watch::channel(0).0 })
    }

    /// The core of the term this master leads, if it leads one.
    pub fn master(&self) -> Option<Arc<Master>> {
        self.term.read().unwrap_or_else(|p| p.into_inner()).as_ref().map(|t| t.master.clone())
    }

    /// Which term this master leads (0: none), as it changes.
    pub fn leading(&self) -> watch::Receiver<u64> {
        self.leading.subscribe()
    }

    /// The store.
    pub fn store(&self) -> &Arc<RaftStore> {
        &self.store
    }

    /// Whether this master, leading, has heard from a majority of the masters within
    /// [`STALE_AFTER_MS`] (always, in a group of one).
    pub fn in_touch(&self) -> bool {
        let metrics = self.store.raft().metrics();
        let metrics = metrics.borrow();
        if metrics.membership_config.membership().voter_ids().nth(1).is_none() {
            return true;
        }
        metrics.millis_since_quorum_ack.is_some_and(|ms| ms <= STALE_AFTER_MS)
    }

    fn install(&self, term: Option<Term>) -> Option<Term> {
        let number = term.as_ref().map_or(0, |t| t.number);
        let old = std::mem::replace(&mut *self.term.write().unwrap_or_else(|p| p.into_inner()), term);
        self.leading.send_replace(number);
        old
    }
}

/// The HTTP application of a master: see the module documentation.
pub fn router(leadership: Arc<Leadership>) -> Router {
    let raft = crate::raft::rpc::router(leadership.store.raft().clone()).layer(axum::middleware::from_fn(masters_only));
    Router::new().merge(raft).route("/health", get(health)).fallback(serve).with_state(leadership)
}

/// Refuses a Raft RPC from anyone but a master of the cluster (a certificate of its CA).
async fn masters_only(request: Request, next: Next) -> Response {
    let identity = request.extensions().get::<ConnectInfo<Peer>>().and_then(|c| c.0.identity.clone());
    match identity {
        Some(Identity::Master(_)) => next.run(request).await,
        _ => crate::api::ApiFailure::new(
            StatusCode::FORBIDDEN,
            "the Raft routes serve other masters only: present a master certificate of this cluster's CA",
        )
        .into_response(),
    }
}

async fn health(State(leadership): State<Arc<Leadership>>) -> (StatusCode, Json<Health>) {
    let group = leadership.store.group();
    let health = |status: &str| Health {
        status: status.to_string(),
        role: group.as_ref().map(|g| g.role().to_string()),
        term: group.as_ref().map(|g| g.term),
        leader: group.as_ref().and_then(|g| g.leader_address().map(str::to_string)),
    };
    let leads = group.as_ref().is_some_and(|g| g.leader == Some(g.this));
    match leadership.master() {
        Some(_) if !leadership.in_touch() => (StatusCode::SERVICE_UNAVAILABLE, Json(health("cut-off"))),
        Some(master) if master.ready() => (StatusCode::OK, Json(health("ok"))),
        _ if !leads && group.as_ref().is_some_and(|g| g.leader.is_some()) => (StatusCode::OK, Json(health("ok"))),
        _ if leads => (StatusCode::SERVICE_UNAVAILABLE, Json(health("starting"))),
        _ => (StatusCode::SERVICE_UNAVAILABLE, Json(health("no-leader"))),
    }
}

/// The leader's API, or a follower's redirect to it.
async fn serve(State(leadership): State<Arc<Leadership>>, request: Request) -> Response {
    let api = leadership.term.read().unwrap_or_else(|p| p.into_inner()).as_ref().map(|t| t.api.clone());
    if let Some(api) = api {
        if !leadership.in_touch() {
            return retry_later(
                "this master leads but has not heard from a majority of the masters (it may be cut off from them): retry; a client that knows every master finds the one that leads",
            );
        }
        return match api.oneshot(request).await {
            Ok(response) => response,
            Err(infallible) => match infallible {},
        };
    }
    let group = leadership.store.group();
    let leader =
        group.as_ref().filter(|g| g.leader != Some(g.this)).and_then(|g| g.leader_address().map(str::to_string));
    let Some(leader) = leader else {
        return retry_later(
            "no master serves as leader right now (an election is under way, a new leader is loading the state, or a majority of masters is down): retry in a second",
        );
    };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{leader}{path}");
    let mut response = crate::api::ApiFailure::new(
        StatusCode::TEMPORARY_REDIRECT,
        format!("this master follows; the leader is {leader}: send the request there"),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&leader) {
        response.headers_mut().insert(LEADER_HEADER, value);
    }
    response
}

/// `503` with `Retry-After: 1` and `message`: nothing was done, ask again (or another master).
fn retry_later(message: &str) -> Response {
    let mut response = crate::api::ApiFailure::new(StatusCode::SERVICE_UNAVAILABLE, message).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Leads whenever the Raft node leads, until `shutdown`: see the module documentation.
pub async fn run(
    leadership: Arc<Leadership>,
    frameworks: fn() -> Vec<Box<dyn Framework>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let raft = leadership.store.raft().clone();
    let mut metrics = raft.metrics();
    loop {
        // Wait to lead.
        let term = loop {
            {
                let m = metrics.borrow_and_update();
                if m.state == ServerState::Leader && m.current_leader == Some(m.id) {
                    break m.current_term;
                }
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        };
        match lead(&leadership, term, frameworks, &mut metrics, &mut shutdown).await {
            Ok(()) => {}
            Err(error) => warn!(%error, term, "Could not lead this term; waiting for the next."),
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Leads `term` until it ends.
async fn lead(
    leadership: &Arc<Leadership>,
    term: u64,
    frameworks: fn() -> Vec<Box<dyn Framework>>,
    metrics: &mut watch::Receiver<openraft::RaftMetrics<NodeId, openraft::BasicNode>>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), MasterError> {
    let raft = leadership.store.raft().clone();
    // The state tables hold every acknowledged write once the log this leader inherited (and its
    // own first entry of the term) is applied.
    let last = metrics.borrow().last_log_index;
    raft.wait(Some(APPLY_TIMEOUT))
        .applied_index_at_least(last, "apply the inherited log")
        .await
        .map_err(|e| crate::StoreError::Replication(format!("the new leader could not apply its log: {e}")))?;
    let (stop_term, term_stopped) = watch::channel(false);
    let store: Arc<dyn Store> = leadership.store.clone();
    let (config, trust) = (leadership.config.clone(), leadership.trust.clone());
    let master = tokio::task::spawn_blocking(move || crate::build_on(config, store, trust, term_stopped))
        .await
        .map_err(|e| MasterError::Panicked(e.to_string()))??;
    let loops: Vec<JoinHandle<()>> = crate::start_loops(&master, frameworks());
    let api = crate::router(master.clone());
    let mut settling = master.settling();
    leadership.install(Some(Term { number: term, master, api }));
    info!(term, "This master leads the cluster.");
    loop {
        {
            let m = metrics.borrow_and_update();
            if m.state != ServerState::Leader || m.current_term != term {
                info!(term, state = ?m.state, leader = ?m.current_leader, "This master no longer leads.");
                break;
            }
        }
        // A change of this term that was not committed: the core's memory holds a state that
        // may never be, so the term ends, and the next one (the same Raft term, if this master
        // still leads) loads what was committed.
        let failed = async {
            match settling.as_mut() {
                Some(settling) => settling.wait_for(|s| s.failed.is_some()).await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { break },
            _ = shutdown.wait_for(|stop| *stop) => break,
            true = failed => {
                warn!(term, "A change of this term was not committed; reloading the committed state.");
                break;
            }
        }
    }
    let old = leadership.install(None);
    let _ = stop_term.send(true);
    for handle in loops {
        let _ = handle.await;
    }
    drop(old);
    Ok(())
}
