//! Where a cluster's masters are and which one to talk to, for the CLI's [`crate::client::Client`]
//! and the agent.
//!
//! Every master answers, but only the leader serves the cluster: a follower answers
//! `307 Temporary Redirect` naming the leader (`Location`, and [`LEADER_HEADER`] with its
//! `host:port`), and `503` with `Retry-After` while no master leads (an election). A caller
//! keeps the master it last reached; on a redirect it moves to the leader named, on a master it
//! cannot reach it moves to the next one of the list. Retrying is safe: a redirect and a refused
//! connection both mean the request was not served.

use std::sync::Mutex;

/// The header naming the leader's `host:port` in a follower's redirect.
pub const LEADER_HEADER: &str = "x-gantry-leader";

/// Where a caller sends what it means for a master's base URL, when that is not the URL itself:
/// behind a bastion, a local port forwarded to the master. The masters keep their own URLs
/// (lists, redirects, errors); only requests go to the route's answer.
#[derive(Clone)]
pub struct Route(std::sync::Arc<dyn Fn(&str) -> String + Send + Sync>);

impl Route {
    /// A route that sends what is meant for a base URL to `reach(base)`.
    pub fn new(reach: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(reach))
    }

    /// The base URL to send what is meant for `base` to.
    pub fn reach(&self, base: &str) -> String {
        (self.0)(base)
    }
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Route")
    }
}

/// A list of masters' base URLs and the one in use.
#[derive(Debug)]
pub struct Masters {
    bases: Vec<String>,
    current: Mutex<String>,
}

impl Masters {
    /// The masters of `list`: base URLs (`https://10.0.0.11:5050`) separated by commas; the
    /// first is used first. An empty list yields one empty base, which fails on first use.
    pub fn parse(list: &str) -> Self {
        let bases: Vec<String> =
            list.split(',').map(|b| b.trim().trim_end_matches('/').to_string()).filter(|b| !b.is_empty()).collect();
        let first = bases.first().cloned().unwrap_or_default();
        Self { bases, current: Mutex::new(first) }
    }

    /// The master to send the next request to.
    pub fn current(&self) -> String {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every master of the list, in its order.
    pub fn all(&self) -> &[String] {
        &self.bases
    }

    /// `base` redirected to the leader at `leader` (`host:port`): use it from now on, with
    /// `base`'s scheme.
    pub fn redirected(&self, base: &str, leader: &str) {
        let scheme = base.split_once("://").map_or("https", |(scheme, _)| scheme);
        let next = format!("{scheme}://{}", leader.trim().trim_end_matches('/'));
        self.replace(base, next);
    }

    /// `base` could not be reached, or knows no leader: move to the master after it in the list
    /// (only if no other caller moved on already).
    pub fn unreachable(&self, base: &str) {
        let listed = self.bases.iter().any(|b| b == base);
        if listed && self.bases.len() < 2 {
            return;
        }
        let next = match self.bases.iter().position(|b| b == base) {
            Some(i) => self.bases[(i + 1) % self.bases.len()].clone(),
            // A leader learnt from a redirect that is not in the list: back to the list.
            None => self.bases[0].clone(),
        };
        self.replace(base, next);
    }

    fn replace(&self, base: &str, next: String) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if *current == base {
            *current = next;
        }
    }
}

/// The leader a follower's answer names, if it is a redirect to it.
pub fn redirect_target(status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap) -> Option<String> {
    if status != reqwest::StatusCode::TEMPORARY_REDIRECT {
        return None;
    }
    headers.get(LEADER_HEADER)?.to_str().ok().map(str::to_string)
}

/// Whether an answer says that no master leads right now (retry shortly).
pub fn no_leader(status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap) -> bool {
    status == reqwest::StatusCode::SERVICE_UNAVAILABLE && headers.contains_key(reqwest::header::RETRY_AFTER)
}

/// How long a request waits between rounds of the masters while none leads.
pub const ELECTION_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a request keeps looking for the leader: a failover (about a second) with room.
pub const FAILOVER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Sends the request `build` makes for a master's base URL to the leader. From the master in
/// use, it follows a follower's redirect, moves past a master it cannot reach or that says no
/// master leads, and, once it has been round the masters, pauses [`ELECTION_PAUSE`] before the
/// next round; for up to [`FAILOVER_PATIENCE`]. Each of those answers means the request was
/// not served, so sending it again is safe. Answers the first other answer, or the last one.
/// The HTTP client must not follow redirects itself.
pub async fn send(
    masters: &Masters,
    build: impl Fn(&str) -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, (String, reqwest::Error)> {
    let started = std::time::Instant::now();
    let mut hops = 0;
    loop {
        let base = masters.current();
        let outcome = build(&base).send().await;
        let retry = match &outcome {
            // Another master may answer: one of the list, or the list's first after a leader
            // learnt from a redirect that has gone.
            Err(e) if e.is_connect() && (masters.all().len() > 1 || !masters.all().contains(&base)) => {
                masters.unreachable(&base);
                true
            }
            Err(_) => false,
            Ok(response) => {
                let (status, headers) = (response.status(), response.headers());
                if let Some(leader) = redirect_target(status, headers) {
                    masters.redirected(&base, &leader);
                    true
                } else if no_leader(status, headers) {
                    // This master knows no leader it can serve for (an election, or it is cut
                    // off from the others): another one may.
                    masters.unreachable(&base);
                    true
                } else {
                    false
                }
            }
        };
        if !retry || started.elapsed() >= FAILOVER_PATIENCE {
            return outcome.map_err(|e| (base, e));
        }
        hops += 1;
        if hops > masters.all().len() {
            hops = 0;
            tokio::time::sleep(ELECTION_PAUSE).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_follows_redirects_and_moves_past_dead_masters() {
        let masters = Masters::parse("https://a:1/, https://b:2,https://c:3");
        assert_eq!(masters.all(), ["https://a:1", "https://b:2", "https://c:3"]);
        assert_eq!(masters.current(), "https://a:1");
        masters.redirected("https://a:1", "c:3");
        assert_eq!(masters.current(), "https://c:3");
        // A stale caller's news about a master no longer in use changes nothing.
        masters.unreachable("https://a:1");
        assert_eq!(masters.current(), "https://c:3");
        masters.unreachable("https://c:3");
        assert_eq!(masters.current(), "https://a:1", "past the end of the list: its start");
        masters.redirected("https://a:1", "d:4");
        masters.unreachable("https://d:4");
        assert_eq!(masters.current(), "https://a:1", "a leader outside the list: back to the list");
        let one = Masters::parse("http://only:1");
        one.unreachable("http://only:1");
        assert_eq!(one.current(), "http://only:1");
        one.redirected("http://only:1", "other:2");
        assert_eq!(one.current(), "http://other:2", "the scheme is kept");
        one.unreachable("http://other:2");
        assert_eq!(one.current(), "http://only:1", "a leader that has gone: back to the one master listed");
    }

    #[test]
    fn redirects_and_elections_are_told_by_status_and_header() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(redirect_target(reqwest::StatusCode::TEMPORARY_REDIRECT, &headers), None);
        headers.insert(LEADER_HEADER, "b:2".parse().expect("value"));
        assert_eq!(redirect_target(reqwest::StatusCode::TEMPORARY_REDIRECT, &headers).as_deref(), Some("b:2"));
        assert_eq!(redirect_target(reqwest::StatusCode::OK, &headers), None);
        assert!(!no_leader(reqwest::StatusCode::SERVICE_UNAVAILABLE, &headers));
        headers.insert(reqwest::header::RETRY_AFTER, "1".parse().expect("value"));
        assert!(no_leader(reqwest::StatusCode::SERVICE_UNAVAILABLE, &headers));
    }
}
