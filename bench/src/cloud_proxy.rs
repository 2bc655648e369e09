//! A counting HTTP pass-through in front of a cloud API emulator on loopback: clients are pointed
//! at [`CountingProxy::url`] instead of the emulator (`AWS_ENDPOINT_URL`), and every request is
//! forwarded unchanged and recorded as a [`Call`]: its API action, the instances it names, and
//! when it arrived and when its answer left, so a scenario can count calls by action and tell how
//! many were in flight at once.
//!
//! It understands the EC2 Query protocol only (`Action=…` and `InstanceId.N=…` in a form body or
//! the query string; instance ids of a `RunInstances` answer). It measures; it never changes a
//! request or an answer.

use anyhow::Context;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The largest request or answer body forwarded.
const MAX_BODY: usize = 64 << 20;

/// One request that went through the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The API action (`RunInstances`), or `?` when the request names none.
    pub action: String,
    /// The instance ids the request names (`InstanceId.N`), in order.
    pub instance_ids: Vec<String>,
    /// For `RunInstances`, the ids of the instances its answer launched.
    pub launched: Vec<String>,
    /// The HTTP status of the answer (502 when the emulator could not be reached).
    pub status: u16,
    /// When the request had arrived whole, since the proxy started.
    pub start: Duration,
    /// When its answer was ready to go back, since the proxy started.
    pub end: Duration,
}

#[derive(Debug, Clone)]
struct Upstream {
    client: reqwest::Client,
    base: String,
    epoch: Instant,
    calls: Arc<Mutex<Vec<Call>>>,
}

/// The proxy, served on the current tokio runtime until dropped.
#[derive(Debug)]
pub struct CountingProxy {
    url: String,
    upstream: Upstream,
    server: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    /// Serves a proxy of `upstream` (`http://127.0.0.1:PORT`) on a free loopback port. Call it
    /// on a multi-threaded runtime when the caller then blocks outside it (on child processes).
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot bind the counting proxy")?;
        let url = format!("http://{}", listener.local_addr()?);
        let client = reqwest::Client::builder().no_proxy().build().context("cannot build the proxy's HTTP client")?;
        let upstream = Upstream {
            client,
            base: upstream.trim_end_matches('/').to_string(),
            epoch: Instant::now(),
            calls: Arc::new(Mutex::new(Vec::new())),
        };
        let app = axum::Router::new().fallback(forward).with_state(upstream.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("  .. the counting proxy stopped: {e}");
            }
        });
        Ok(Self { url, upstream, server })
    }

    /// The URL to give clients instead of the emulator's.
    pub fn url(&self) -> &str {
        &self.url
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
    let mut params = parts.uri.query().map(|q| pairs(q.as_bytes())).unwrap_or_default();
    params.extend(pairs(&body));
    let action = params.iter().find(|(k, _)| k == "Action").map_or_else(|| "?".to_string(), |(_, v)| v.clone());
    let instance_ids: Vec<String> =
        params.iter().filter(|(k, _)| k.starts_with("InstanceId.")).map(|(_, v)| v.clone()).collect();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let sent = upstream
        .client
        .request(parts.method.clone(), format!("{}{path}", upstream.base))
        .headers(end_to_end(&parts.headers))
        .body(body)
        .send()
        .await;
    let (status, headers, answer) = match sent {
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
    let launched =
        if action == "RunInstances" { instance_ids_in(&String::from_utf8_lossy(&answer)) } else { Vec::new() };
    let call = Call { action, instance_ids, launched, status: status.as_u16(), start, end: upstream.epoch.elapsed() };
    upstream.calls.lock().unwrap_or_else(PoisonError::into_inner).push(call);
    let mut response = Response::new(Body::from(answer));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
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

/// The decoded pairs of a form body or query string.
fn pairs(form: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(form).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// The distinct `<instanceId>` values of an EC2 XML answer, in order.
fn instance_ids_in(xml: &str) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for (_, rest) in xml.match_indices("<instanceId>").map(|(i, tag)| xml.split_at(i + tag.len())) {
        if let Some((id, _)) = rest.split_once("</instanceId>")
            && !ids.iter().any(|known| known == id)
        {
            ids.push(id.to_string());
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_are_decoded() {
        let found = pairs(b"Action=DescribeInstances&InstanceId.1=i-1&Filter.1.Name=tag%3Agantry%3Ahost");
        assert_eq!(found[0], ("Action".to_string(), "DescribeInstances".to_string()));
        assert_eq!(found[1], ("InstanceId.1".to_string(), "i-1".to_string()));
        assert_eq!(found[2].1, "tag:gantry:host");
    }

    #[test]
    fn a_run_instances_answer_names_its_instances_once() {
        let xml = "<RunInstancesResponse><instancesSet><item><instanceId>i-0a</instanceId>\
                   <networkInterfaceSet><item><attachment><instanceId>i-0a</instanceId></attachment></item>\
                   </networkInterfaceSet></item><item><instanceId>i-0b</instanceId></item></instancesSet>";
        assert_eq!(instance_ids_in(xml), ["i-0a", "i-0b"]);
        assert!(instance_ids_in("<Error/>").is_empty());
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
