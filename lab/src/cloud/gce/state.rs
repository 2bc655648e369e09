//! The emulator's memory: every resource as the JSON Compute Engine answers for it, keyed by
//! its path (`projects/p/zones/z/instances/i`), the operations, the request ids seen, and the
//! injected faults. One mutex guards it all; handlers hold it briefly and never across an await.

use super::error::ApiError;
use super::faults::Fault;
use super::hosts::HostAction;
use crate::testhosts::Ipv4Cidr;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::Duration;

/// Where self links point, as in real responses (nothing dials it).
pub const LINK_BASE: &str = "https://www.googleapis.com/compute/v1/";

/// The user an operation names.
pub const USER: &str = "gantry-lab@gantry-lab.iam.gserviceaccount.com";

/// A resource that exists.
#[derive(Debug, Clone)]
pub struct Resource {
    /// What a get answers.
    pub value: Value,
    /// An operation deletes it (a second delete is refused as not ready).
    pub deleting: bool,
}

/// All the emulator knows.
#[derive(Debug, Default)]
pub struct State {
    /// Networks, subnetworks, firewalls and instances by path.
    pub resources: BTreeMap<String, Resource>,
    /// Operations by path (`projects/p/zones/z/operations/o`).
    pub operations: BTreeMap<String, Value>,
    /// `project/requestId` → the operation's path.
    pub request_ids: BTreeMap<String, String>,
    /// Faults waiting for their request.
    pub faults: Vec<Fault>,
    next_id: u64,
}

impl State {
    /// A fresh unique numeric id, as Compute's uint64 ids (a string in JSON).
    pub fn id(&mut self) -> String {
        self.next_id += 1;
        (4_611_686_018_427_387_904u64 + self.next_id * 7_919).to_string()
    }

    /// The resource at `path`, or 404.
    pub fn get(&self, path: &str) -> Result<&Resource, ApiError> {
        self.resources.get(path).ok_or_else(|| ApiError::not_found(path))
    }

    /// Every resource whose path starts with `prefix` and has no further `/` (one collection).
    pub fn collection(&self, prefix: &str) -> Vec<Value> {
        self.resources
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains('/'))
            .map(|(_, r)| r.value.clone())
            .collect()
    }
}

/// The emulator's shared core: state, timing, the lab network and the way to the hosts.
#[derive(Debug)]
pub struct Api {
    state: Mutex<State>,
    /// How long an operation takes from PENDING to DONE.
    pub delay: Duration,
    /// The lab network: instances with an address in it get a host.
    pub cidr: Ipv4Cidr,
    hosts: Mutex<Option<mpsc::Sender<HostAction>>>,
}

impl Api {
    pub(super) fn new(delay: Duration, cidr: Ipv4Cidr, hosts: Option<mpsc::Sender<HostAction>>) -> Api {
        Api { state: Mutex::new(State::default()), delay, cidr, hosts: Mutex::new(hosts) }
    }

    /// The state, locked.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `action` to the host thread (nothing when the lab runs without hosts).
    pub fn host(&self, action: HostAction) {
        if let Some(hosts) = &*self.hosts.lock().unwrap_or_else(|e| e.into_inner())
            && hosts.send(action).is_err()
        {
            tracing::warn!("The host thread has ended: an instance's host is not changed.");
        }
    }

    /// Lets the host thread end (once it has done what it was asked).
    pub(super) fn close_hosts(&self) {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Now, as Compute writes timestamps (RFC 3339 with milliseconds and an offset).
pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string()
}

/// `LINK_BASE` + `path`.
pub fn link(path: &str) -> String {
    format!("{LINK_BASE}{path}")
}

/// The path of a reference given as a full URL (`https://.../compute/v1/projects/...`), a
/// partial one (`projects/p/global/networks/n`), or relative to `project`
/// (`global/networks/n`, `zones/z/machineTypes/t`): `projects/p/...`.
pub fn reference(project: &str, text: &str) -> String {
    let text = text.split_once("/compute/v1/").map_or(text, |(_, rest)| rest).trim_start_matches('/');
    if text.starts_with("projects/") { text.to_string() } else { format!("projects/{project}/{text}") }
}

/// The last segment of a path or URL.
pub fn last(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A list response: `items` (omitted when empty), paged by `maxResults` and `pageToken`.
pub fn page(kind: &str, id: &str, items: Vec<Value>, max_results: &str, token: &str) -> Result<Value, ApiError> {
    let (start, end, next) = window(items.len(), max_results, token)?;
    let mut out = json!({"kind": kind, "id": id, "selfLink": link(id)});
    if start < end {
        out["items"] = Value::from(items[start..end].to_vec());
    }
    if let Some(next) = next {
        out["nextPageToken"] = Value::from(next);
    }
    Ok(out)
}

/// The slice `[start, end)` of a list of `len` items that a page covers, and the next token.
pub fn window(len: usize, max_results: &str, token: &str) -> Result<(usize, usize, Option<String>), ApiError> {
    let size = match max_results {
        "" => 500,
        text => text.parse::<usize>().map_err(|_| ApiError::invalid("maxResults", text, "Must be a number"))?,
    };
    if size > 500 {
        return Err(ApiError::invalid("maxResults", max_results, "Must be less than or equal to 500"));
    }
    let size = if size == 0 { 500 } else { size };
    let start = match token {
        "" => 0,
        token => token
            .strip_prefix("gantry-lab-page-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= len)
            .ok_or_else(|| ApiError::invalid("pageToken", token, "Invalid page token"))?,
    };
    let end = (start + size).min(len);
    let next = (end < len).then(|| format!("gantry-lab-page-{end}"));
    Ok((start, end, next))
}
