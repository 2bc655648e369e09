//! A typed client of the public API v1. Every route the master serves has one method here.
//!
//! Routes: `GET /health`, `GET /version`; `GET|POST /api/v1/apps`,
//! `GET|PUT|DELETE /api/v1/apps/{id}`, `POST /api/v1/apps/{id}/scale` (`{"instances": N}`),
//! `POST /api/v1/apps/{id}/restart`; `GET /api/v1/tasks?app=ID&all=BOOL`,
//! `GET /api/v1/tasks/{id}`, `POST /api/v1/tasks/{id}/kill`,
//! `GET /api/v1/tasks/{id}/logs?stream=stdout|stderr&offset=N&length=N`;
//! `GET /api/v1/agents`, `GET|DELETE /api/v1/agents/{id}`, `GET|POST|DELETE /api/v1/agents/{id}/drain`;
//! image caches (methods in `client_images`): `GET /api/v1/agents/{id}/images`,
//! `POST /api/v1/agents/{id}/images/prune` (`{"all": BOOL}`);
//! `GET /api/v1/events` (server-sent events);
//! jobs (methods in `client_jobs`): `GET|POST /api/v1/jobs`, `GET|PUT /api/v1/jobs/{id}`,
//! `DELETE /api/v1/jobs/{id}?stop_current_runs=BOOL`, `GET|POST /api/v1/jobs/{id}/runs`
//! (`POST` starts a run now), `GET /api/v1/jobs/{id}/runs/{run}`,
//! `POST /api/v1/jobs/{id}/runs/{run}/stop`.
//! Versions and deployments (methods in `client_deployments`): `GET /api/v1/apps/{id}/versions`,
//! `POST /api/v1/apps/{id}/rollback`; `GET /api/v1/deployments?app=ID`, `GET /api/v1/deployments/{id}`,
//! `POST /api/v1/deployments/{id}/cancel`, `POST /api/v1/deployments/{id}/promote`.
//! Security and the masters' group (methods in `client_security`): tokens, policies, secrets,
//! `GET /api/v1/whoami`, `GET /api/v1/snapshot`; `GET /api/v1/masters`, `POST /api/v1/masters`
//! ([`AddMaster`]: adds a master as a voter once it has caught up), `DELETE /api/v1/masters/{id}`
//! (both answer the members after the change; admin only).

use crate::agent::{Agent, DrainRequest, DrainStatus};
use crate::app::{App, AppDefinition};
use crate::error::ApiError;
use crate::protocol::FileChunk;
use crate::task::Task;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Body of `POST /api/v1/apps/{id}/scale`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    /// New instance count.
    pub instances: u32,
}

/// Answer of `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Build version.
    pub version: String,
    /// The master's id (random per data dir).
    pub master_id: String,
}

/// Answer of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` when the master serves.
    pub status: String,
    /// This master's part in the masters' group: `leader`, `follower`, `candidate` or `learner`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The group's current term as this master knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    /// The leader's API address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

/// One master of the group (`GET /api/v1/masters`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterInfo {
    /// Its number in the group.
    pub id: u64,
    /// Its API address.
    pub address: String,
    /// `leader`, `follower`, `candidate`, `learner`, as the answering master sees it.
    pub role: String,
    /// The term (known for the answering master).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    /// The last log index it has applied (known for the answering master) or that the leader
    /// knows it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied: Option<u64>,
    /// How many entries it is behind the leader's log (known on the leader).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
}

/// Body of `POST /api/v1/masters`: the master to add to the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMaster {
    /// Its number in the group (1 and up: the `--node-id` it runs with).
    pub id: u64,
    /// The address it serves its API on, `host:port` (its `--listen`), as the other masters
    /// reach it.
    pub address: String,
}

/// Query of `GET /api/v1/tasks/{id}/logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsQuery {
    /// `stdout` or `stderr`.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Byte offset to read from; negative values count from the end (tail).
    #[serde(default)]
    pub offset: i64,
    /// At most this many bytes.
    #[serde(default = "default_length")]
    pub length: u64,
}

fn default_stream() -> String {
    "stdout".to_string()
}
fn default_length() -> u64 {
    64 * 1024
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The master answered with an error body.
    #[error("{}{} (HTTP {status})", .error.field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default(), .error.message)]
    Api {
        /// HTTP status.
        status: u16,
        /// The master's explanation.
        error: ApiError,
    },
    /// The master could not be reached or the answer was not understood.
    #[error("cannot reach the master at {url}: {message}")]
    Transport {
        /// The master URL.
        url: String,
        /// The cause.
        message: String,
    },
}

impl ClientError {
    /// HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            Self::Transport { .. } => None,
        }
    }
}

/// How a client proves who it is and knows the master is genuine.
#[derive(Clone, Default)]
pub struct Credentials {
    /// A bearer token (`gantry token create`, or the admin token `up` stores).
    pub token: Option<String>,
    /// The cluster CA (PEM): the only root the client trusts.
    pub ca_pem: Option<String>,
    /// A client certificate and its key (PEM), instead of or besides a token.
    pub identity: Option<(String, String)>,
    /// Where the token came from, for error messages (`--token`, `GANTRY_TOKEN`, a file).
    pub token_source: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("ca_pem", &self.ca_pem.is_some())
            .field("identity", &self.identity.is_some())
            .field("token_source", &self.token_source)
            .finish()
    }
}

/// A client of a cluster's masters: it talks to the one it last reached and follows the
/// followers' redirects to the leader (see [`crate::masters`]).
#[derive(Debug, Clone)]
pub struct Client {
    masters: std::sync::Arc<crate::masters::Masters>,
    route: Option<crate::masters::Route>,
    http: reqwest::Client,
    token: Option<String>,
    token_source: Option<String>,
}

impl Client {
    /// A client of the master at `base` without credentials: it trusts no certificate, so it
    /// reaches no master over `https://`; only useful to see how a master refuses it. Use
    /// [`Client::with_credentials`].
    pub fn new(base: &str) -> Result<Self, ClientError> {
        Self::with_credentials(base, &Credentials::default())
    }

    /// A client of the master at `base` (e.g. `https://127.0.0.1:5050`, or several, separated
    /// by commas) that trusts `credentials.ca_pem` alone and authenticates with its token
    /// and/or certificate.
    pub fn with_credentials(base: &str, credentials: &Credentials) -> Result<Self, ClientError> {
        let transport = |message: String| ClientError::Transport { url: base.to_string(), message };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &credentials.ca_pem {
            let identity = credentials.identity.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
            let tls = gantry_trust::tls::client_config(ca, identity).map_err(|e| transport(e.to_string()))?;
            builder = builder.tls_backend_preconfigured(tls);
        } else {
            let tls = gantry_trust::tls::no_roots_client_config().map_err(|e| transport(e.to_string()))?;
            builder = builder.tls_backend_preconfigured(tls);
        }
        let http = builder.build().map_err(|e| transport(error_chain(&e)))?;
        Ok(Self {
            masters: std::sync::Arc::new(crate::masters::Masters::parse(base)),
            route: None,
            http,
            token: credentials.token.as_ref().map(|t| t.trim().to_string()),
            token_source: credentials.token_source.clone(),
        })
    }

    /// This client, sending what it means for a master to where `route` says (a local port
    /// forwarded to the master through a bastion).
    pub fn routed(mut self, route: crate::masters::Route) -> Self {
        self.route = Some(route);
        self
    }

    /// The HTTP client, with the TLS settings of this client (for streams such as events).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A request to `path` on the master in use, with this client's token (for streams: it
    /// does not follow redirects; [`Client::call`] does).
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.request_to(&self.masters.current(), method, path)
    }

    fn request_to(&self, base: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = match &self.route {
            Some(route) => self.http.request(method, format!("{}{path}", route.reach(base))),
            None => self.http.request(method, format!("{base}{path}")),
        };
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Where this client's token came from, if it has one.
    pub fn token_source(&self) -> Option<&str> {
        self.token_source.as_deref()
    }

    /// The URL of the master in use.
    pub fn base(&self) -> String {
        self.masters.current()
    }

    /// The masters this client knows.
    pub fn masters(&self) -> &crate::masters::Masters {
        &self.masters
    }

    /// Sends `method path` (with `body` as JSON) to the leader; see [`crate::masters::send`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<reqwest::Response, ClientError> {
        let body = match body {
            Some(body) => Some(serde_json::to_vec(body).map_err(|e| ClientError::Transport {
                url: self.base(),
                message: format!("cannot encode the request body: {e}"),
            })?),
            None => None,
        };
        crate::masters::send(&self.masters, |base| {
            let request = self.request_to(base, method.clone(), path);
            match &body {
                Some(body) => request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone()),
                None => request,
            }
        })
        .await
        .map_err(|(url, e)| ClientError::Transport { url, message: tls_hint(error_chain(&e)) })
    }

    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        let response = self.send(method, path, body).await?;
        self.answer(response, path).await
    }

    /// The JSON body of a successful `response` to `path`, or its error.
    async fn answer<T: DeserializeOwned>(&self, response: reqwest::Response, path: &str) -> Result<T, ClientError> {
        let url = response.url().origin().ascii_serialization();
        let transport =
            |e: reqwest::Error| ClientError::Transport { url: url.clone(), message: tls_hint(error_chain(&e)) };
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::Transport {
                url: url.clone(),
                message: format!("unexpected answer to {path}: {e}"),
            });
        }
        let error = serde_json::from_slice::<ApiError>(&bytes).unwrap_or_else(|_| ApiError {
            message: format!(
                "{} {}",
                status.canonical_reason().unwrap_or("error"),
                String::from_utf8_lossy(&bytes).trim()
            ),
            field: None,
        });
        Err(ClientError::Api { status: status.as_u16(), error: self.explain(status, error) })
    }

    /// Adds to a 401 or 403 which token was used and how to get the right one.
    pub fn explain(&self, status: StatusCode, mut error: ApiError) -> ApiError {
        let hint = match (status, &self.token_source) {
            (StatusCode::UNAUTHORIZED, None) => {
                " (no token was sent: pass --token or set GANTRY_TOKEN; `gantry up` stores an admin token in the cluster's state dir)"
                    .to_string()
            }
            (StatusCode::UNAUTHORIZED, Some(source)) => {
                format!(" (the token from {source} was refused; an admin can make a new one with `gantry token create`)")
            }
            (StatusCode::FORBIDDEN, Some(source)) => format!(
                " (token from {source}; ask an admin for a token with a policy that grants it: `gantry token create --policy …`)"
            ),
            _ => String::new(),
        };
        error.message.push_str(&hint);
        error
    }

    /// `GET /health`.
    /// `GET /health` of the master in use itself: not redirected, not retried (a follower's
    /// health is its own), so an error or a `503` answers at once.
    pub async fn health(&self) -> Result<Health, ClientError> {
        let base = self.masters.current();
        let response = self
            .request_to(&base, Method::GET, "/health")
            .send()
            .await
            .map_err(|e| ClientError::Transport { url: base.clone(), message: tls_hint(error_chain(&e)) })?;
        self.answer(response, "/health").await
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<VersionInfo, ClientError> {
        self.call(Method::GET, "/version", None::<&()>).await
    }

    /// `GET /api/v1/apps`.
    pub async fn list_apps(&self) -> Result<Vec<App>, ClientError> {
        self.call(Method::GET, "/api/v1/apps", None::<&()>).await
    }

    /// `GET /api/v1/apps/{id}`.
    pub async fn get_app(&self, id: &str) -> Result<App, ClientError> {
        self.call(Method::GET, &format!("/api/v1/apps/{}", encode(id)), None::<&()>).await
    }

    /// `POST /api/v1/apps`: create; 409 if the id exists.
    pub async fn create_app(&self, definition: &AppDefinition) -> Result<App, ClientError> {
        self.call(Method::POST, "/api/v1/apps", Some(definition)).await
    }

    /// `PUT /api/v1/apps/{id}`: create, or update when the definition differs.
    pub async fn put_app(&self, definition: &AppDefinition) -> Result<App, ClientError> {
        self.call(Method::PUT, &format!("/api/v1/apps/{}", encode(&definition.id)), Some(definition)).await
    }

    /// `DELETE /api/v1/apps/{id}`: stops every instance and forgets the app.
    pub async fn delete_app(&self, id: &str) -> Result<App, ClientError> {
        self.call(Method::DELETE, &format!("/api/v1/apps/{}", encode(id)), None::<&()>).await
    }

    /// `POST /api/v1/apps/{id}/scale`.
    pub async fn scale_app(&self, id: &str, instances: u32) -> Result<App, ClientError> {
        self.call(Method::POST, &format!("/api/v1/apps/{}/scale", encode(id)), Some(&ScaleRequest { instances })).await
    }

    /// `POST /api/v1/apps/{id}/restart`: replaces every instance.
    pub async fn restart_app(&self, id: &str) -> Result<App, ClientError> {
        self.call(Method::POST, &format!("/api/v1/apps/{}/restart", encode(id)), None::<&()>).await
    }

    /// `GET /api/v1/tasks`: active tasks, of one app if given; `all` adds finished ones.
    pub async fn list_tasks(&self, app: Option<&str>, all: bool) -> Result<Vec<Task>, ClientError> {
        let mut path = format!("/api/v1/tasks?all={all}");
        if let Some(app) = app {
            path.push_str(&format!("&app={}", encode(app)));
        }
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `GET /api/v1/tasks/{id}`.
    pub async fn get_task(&self, id: &str) -> Result<Task, ClientError> {
        self.call(Method::GET, &format!("/api/v1/tasks/{}", encode(id)), None::<&()>).await
    }

    /// `POST /api/v1/tasks/{id}/kill`: the app then replaces it.
    pub async fn kill_task(&self, id: &str) -> Result<Task, ClientError> {
        self.call(Method::POST, &format!("/api/v1/tasks/{}/kill", encode(id)), None::<&()>).await
    }

    /// `GET /api/v1/tasks/{id}/logs`.
    pub async fn task_logs(&self, id: &str, query: &LogsQuery) -> Result<FileChunk, ClientError> {
        let path = format!(
            "/api/v1/tasks/{}/logs?stream={}&offset={}&length={}",
            encode(id),
            encode(&query.stream),
            query.offset,
            query.length
        );
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `GET /api/v1/agents`.
    pub async fn list_agents(&self) -> Result<Vec<Agent>, ClientError> {
        self.call(Method::GET, "/api/v1/agents", None::<&()>).await
    }

    /// `DELETE /api/v1/agents/{id}`: removes the agent from the cluster: its certificates are
    /// revoked (it must join again), and the master forgets it (tasks it still had are LOST and
    /// replaced). Answers the agent as it was.
    pub async fn revoke_agent(&self, id: &str) -> Result<Agent, ClientError> {
        self.call(Method::DELETE, &format!("/api/v1/agents/{}", encode(id)), None::<&()>).await
    }

    /// `POST /api/v1/agents/{id}/drain`: the agent gets no new tasks, its service tasks are
    /// replaced elsewhere, and what still runs on it at the deadline is killed.
    pub async fn drain_agent(&self, id: &str, request: &DrainRequest) -> Result<DrainStatus, ClientError> {
        self.call(Method::POST, &format!("/api/v1/agents/{}/drain", encode(id)), Some(request)).await
    }

    /// `GET /api/v1/agents/{id}/drain`: the agent's drain and the tasks left on it.
    pub async fn agent_drain(&self, id: &str) -> Result<DrainStatus, ClientError> {
        self.call(Method::GET, &format!("/api/v1/agents/{}/drain", encode(id)), None::<&()>).await
    }

    /// `DELETE /api/v1/agents/{id}/drain`: cancels a drain; the agent takes tasks again.
    pub async fn cancel_drain(&self, id: &str) -> Result<DrainStatus, ClientError> {
        self.call(Method::DELETE, &format!("/api/v1/agents/{}/drain", encode(id)), None::<&()>).await
    }

    /// `GET /api/v1/agents/{id}`.
    pub async fn get_agent(&self, id: &str) -> Result<Agent, ClientError> {
        self.call(Method::GET, &format!("/api/v1/agents/{}", encode(id)), None::<&()>).await
    }
}

/// Whether an HTTP status means "not found".
pub fn is_not_found(error: &ClientError) -> bool {
    error.status() == Some(StatusCode::NOT_FOUND.as_u16())
}

/// Percent-encodes one path segment.
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Adds what to do to a certificate error.
fn tls_hint(message: String) -> String {
    if message.contains("UnknownIssuer") || message.contains("invalid peer certificate") {
        return format!(
            "{message} (this client does not trust the master's certificate: pass --ca-cert or GANTRY_CA_CERT with the cluster's ca.pem, or --cluster NAME for a cluster made by `gantry up`)"
        );
    }
    if message.contains("HTTPS only") || message.contains("invalid HTTP version") {
        return format!("{message} (the master speaks HTTPS: use an https:// URL)");
    }
    message
}

/// An error and its causes, each once, joined by `: `.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}
