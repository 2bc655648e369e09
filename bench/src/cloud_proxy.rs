//! A counting HTTP pass-through in front of a cloud API emulator on loopback: clients are pointed
//! at [`CountingProxy::url`] instead of the emulator (`AWS_ENDPOINT_URL`, a cluster file's
//! `endpoint_url`), and every request is forwarded and recorded as a [`Call`]: its API action,
//! what it does to instances ([`Kind`]), the instances it names, and when it arrived and when its
//! answer left, so a scenario can count calls by action and kind and tell how many were in flight
//! at once.
//!
//! It understands each cloud's protocol ([`Protocol`]) in its own module: the EC2 Query protocol
//! ([`ec2`]), Compute Engine's REST paths ([`gce`]) and Azure Resource Manager's ([`azure`]). It
//! measures; it changes neither requests nor answers, except that the status URLs of Azure's
//! async operations are pointed at the proxy instead of the emulator, so their polls are counted
//! too.

pub mod azure;
pub mod ec2;
pub mod gce;

use anyhow::Context;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The largest request or answer body forwarded.
const MAX_BODY: usize = 64 << 20;

/// The API a proxy stands in front of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// EC2's Query protocol.
    Ec2,
    /// Compute Engine's REST API.
    Gce,
    /// Azure Resource Manager.
    Azure,
}

/// What a call does to instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Creates instances (`RunInstances`, `instances.insert`, a VM's PUT).
    Create,
    /// Reads instances, by name or as a list.
    Describe,
    /// Deletes instances.
    Delete,
    /// Asks how a long-running operation is doing (GCE operations, Azure status URLs).
    Poll,
    /// Anything else (networks, keys, images, …).
    Other,
}

impl Kind {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Describe => "describe",
            Kind::Delete => "delete",
            Kind::Poll => "poll",
            Kind::Other => "other",
        }
    }
}

/// One request that went through the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The API action (`RunInstances`, `instances.insert`, `virtualMachines.createOrUpdate`),
    /// `?` when the request names none.
    pub action: String,
    /// What it does to instances.
    pub kind: Kind,
    /// The instances it names, in order: for a create, those it creates (for `RunInstances`,
    /// those its answer launched); for an operation poll, the instance of the operation.
    pub instances: Vec<String>,
    /// For a describe, the instances its answer showed running (GCE and Azure; empty on EC2,
    /// whose create spans end at the last describe instead).
    pub ready: Vec<String>,
    /// The HTTP status of the answer (502 when the emulator could not be reached).
    pub status: u16,
    /// When the request had arrived whole, since the proxy started.
    pub start: Duration,
    /// When its answer was ready to go back, since the proxy started.
    pub end: Duration,
}

/// What the request (and its answer) told about a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// See [`Call::action`].
    pub action: String,
    /// See [`Call::kind`].
    pub kind: Kind,
    /// See [`Call::instances`].
    pub instances: Vec<String>,
    /// See [`Call::ready`].
    pub ready: Vec<String>,
}

impl Seen {
    /// A call of `kind` naming `instances`, whose answer is not read yet.
    pub fn new(action: String, kind: Kind, instances: Vec<String>) -> Seen {
        Seen { action, kind, instances, ready: Vec::new() }
    }
}

#[derive(Debug, Clone)]
struct Upstream {
    client: reqwest::Client,
    protocol: Protocol,
    base: String,
    url: String,
    epoch: Instant,
    calls: Arc<Mutex<Vec<Call>>>,
    /// Azure: the path of an operation's status URL → the VM it is about.
    operations: Arc<Mutex<HashMap<String, String>>>,
}

/// The proxy, served on the current tokio runtime until dropped.
#[derive(Debug)]
pub struct CountingProxy {
    upstream: Upstream,
    server: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    /// Serves a proxy of `upstream` (`http://127.0.0.1:PORT`), which speaks `protocol`, on a free
    /// loopback port. Call it on a multi-threaded runtime when the caller then blocks outside it
    /// (on child processes).
    pub async fn start(upstream: &str, protocol: Protocol) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot bind the counting proxy")?;
        let url = format!("http://{}", listener.local_addr()?);
        gantry_trust::tls::install_default_provider();
        let client = reqwest::Client::builder().no_proxy().build().context("cannot build the proxy's HTTP client")?;
        let upstream = Upstream {
            client,
            protocol,
            base: upstream.trim_end_matches('/').to_string(),
            url,
            epoch: Instant::now(),
            calls: Arc::new(Mutex::new(Vec::new())),
            operations: Arc::new(Mutex::new(HashMap::new())),
        };
        let app = axum::Router::new().fallback(forward).with_state(upstream.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("  .. the counting proxy stopped: {e}");
            }
        });
        Ok(Self { upstream, server })
    }

    /// The URL to give clients instead of the emulator's.
    pub fn url(&self) -> &str {
        &self.upstream.url
    }

    /// The calls recorded since the last `take` (or the start), in the order their answers left.
    pub fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.upstream.calls.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn forward(State(upstream): State<Upstream>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}")),
    };
    let start = upstream.epoch.elapsed();
    let mut seen = match upstream.protocol {
        Protocol::Ec2 => ec2::request(parts.uri.query(), &body),
        Protocol::Gce => gce::request(&parts.method, parts.uri.path(), &body),
        Protocol::Azure => azure::request(&parts.method, parts.uri.path()),
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let sent = upstream
        .client
        .request(parts.method.clone(), format!("{}{path}", upstream.base))
        .headers(end_to_end(&parts.headers))
        .body(body)
        .send()
        .await;
    let (status, mut headers, answer) = match sent {
        Ok(answer) => {
            let status = answer.status();
            let headers = end_to_end(answer.headers());
            match answer.bytes().await {
                Ok(bytes) => (status, headers, bytes),
                Err(e) => (StatusCode::BAD_GATEWAY, HeaderMap::new(), format!("emulator answer: {e}").into()),
            }
        }
        Err(e) => (StatusCode::BAD_GATEWAY, HeaderMap::new(), format!("emulator unreachable: {e}").into()),
    };
    if status.is_success() {
        match upstream.protocol {
            Protocol::Ec2 => ec2::answer(&mut seen, &answer),
            Protocol::Gce => gce::answer(&mut seen, &answer),
            Protocol::Azure => {
                learn(&upstream, &mut seen, parts.uri.path(), &mut headers);
                azure::answer(&mut seen, &answer);
            }
        }
    }
    let call = Call {
        action: seen.action,
        kind: seen.kind,
        instances: seen.instances,
        ready: seen.ready,
        status: status.as_u16(),
        start,
        end: upstream.epoch.elapsed(),
    };
    upstream.calls.lock().unwrap_or_else(PoisonError::into_inner).push(call);
    let mut response = Response::new(Body::from(answer));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Azure: remembers which VM the status URLs of a VM's create or delete are about, names it on
/// their polls, and points the status URLs at the proxy.
fn learn(upstream: &Upstream, seen: &mut Seen, path: &str, headers: &mut HeaderMap) {
    let mut operations = upstream.operations.lock().unwrap_or_else(PoisonError::into_inner);
    match (seen.kind, seen.instances.first()) {
        (Kind::Create | Kind::Delete, Some(vm)) => {
            for status_path in azure::operation_paths(headers) {
                operations.insert(status_path, vm.clone());
            }
        }
        (Kind::Poll, None) => seen.instances.extend(operations.get(azure::path_of(path)).cloned()),
        _ => {}
    }
    azure::redirect(headers, &upstream.base, &upstream.url);
}

fn plain(status: StatusCode, message: String) -> Response {
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = status;
    response
}

/// The headers of a message without the hop-by-hop ones (and the host and length, which the
/// next hop sets).
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut kept = headers.clone();
    for name in [
        header::HOST,
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
    ] {
        kept.remove(name);
    }
    kept.remove("keep-alive");
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn azure_polls_come_through_the_proxy_and_name_the_vm_of_their_operation() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let emulator = format!("http://{}", listener.local_addr().expect("address"));
        let status = format!("{emulator}/subscriptions/s/providers/Microsoft.Compute/locations/l/operations/op-1");
        let app = axum::Router::new().fallback(move |request: Request| {
            let status = status.clone();
            async move {
                let mut response = Response::new(Body::from(r#"{"status":"Succeeded"}"#));
                if request.method() == axum::http::Method::PUT {
                    *response.status_mut() = StatusCode::CREATED;
                    let value = format!("{status}?api-version=2024-07-01");
                    response.headers_mut().insert("azure-asyncoperation", value.parse().expect("header"));
                }
                response
            }
        });
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let proxy = CountingProxy::start(&emulator, Protocol::Azure).await.expect("proxy");
        let client = reqwest::Client::builder().no_proxy().build().expect("client");
        let vm = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/workers-1";
        let put = client.put(format!("{}{vm}?api-version=2024-07-01", proxy.url())).body("{}").send().await;
        let put = put.expect("the PUT goes through");
        assert_eq!(put.status(), StatusCode::CREATED);
        let poll = put.headers()["azure-asyncoperation"].to_str().expect("text").to_string();
        assert!(poll.starts_with(proxy.url()), "{poll} points at the proxy");
        let polled = client.get(&poll).send().await.expect("the poll goes through");
        assert_eq!(polled.text().await.expect("body"), r#"{"status":"Succeeded"}"#);
        let calls = proxy.take();
        let seen: Vec<(&str, Kind, Vec<String>)> =
            calls.iter().map(|c| (c.action.as_str(), c.kind, c.instances.clone())).collect();
        assert_eq!(
            seen,
            [
                ("virtualMachines.createOrUpdate", Kind::Create, vec!["workers-1".to_string()]),
                ("Microsoft.Compute/operations.get", Kind::Poll, vec!["workers-1".to_string()]),
            ]
        );
        assert!(calls.iter().all(|c| c.start <= c.end));
        server.abort();
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:1".parse().expect("valid"));
        headers.insert(header::CONNECTION, "keep-alive".parse().expect("valid"));
        headers.insert(header::AUTHORIZATION, "AWS4-HMAC-SHA256 x".parse().expect("valid"));
        let kept = end_to_end(&headers);
        assert_eq!(kept.len(), 1);
        assert!(kept.contains_key(header::AUTHORIZATION));
    }
}
