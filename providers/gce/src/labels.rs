//! gantry's labels, and what stands in for them where GCE has none. Instances and their boot
//! disks carry the labels from their insert call on, which is how `up` finds what an interrupted
//! run made, `down` what to delete and `sweep` what expired. Networks, subnetworks and firewall
//! rules take no labels in Compute v1: they have deterministic names (`gantry-<cluster>…`) and
//! carry the same facts in their `description` ([`description`], read back by [`from_description`]).
//!
//! Label values cannot hold `:`, so the expiry is the Unix time in seconds.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The cluster a resource belongs to.
pub const CLUSTER: &str = "gantry-cluster";
/// The host an instance is (its name in the cluster).
pub const HOST: &str = "gantry-host";
/// The pool of an instance.
pub const POOL: &str = "gantry-pool";
/// When the cluster expires (Unix seconds); `gantry sweep` deletes it afterwards.
pub const EXPIRES_AT: &str = "gantry-expires-at";

/// The labels of one resource: the user's, then gantry's (which win).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    map: BTreeMap<String, String>,
}

impl Labels {
    /// The labels of a resource of `cluster`, with the user's `extra` and an expiry.
    pub fn new(cluster: &str, extra: &BTreeMap<String, String>, expires_at: Option<SystemTime>) -> Self {
        let mut map = extra.clone();
        map.insert(CLUSTER.to_string(), cluster.to_string());
        if let Some(at) = expires_at {
            map.insert(EXPIRES_AT.to_string(), unix_seconds(at).to_string());
        }
        Self { map }
    }

    /// These labels plus `key = value`.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.map.insert(key.to_string(), value.to_string());
        self
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// The labels as the SDK takes them.
    pub fn to_map(&self) -> HashMap<String, String> {
        self.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// An expiry label's value (Unix seconds) as RFC 3339, as sweep reports it; `None` if unreadable.
pub fn expiry_rfc3339(value: &str) -> Option<String> {
    let seconds: u64 = value.parse().ok()?;
    Some(humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string())
}

/// A list filter on label `key` = `value`.
pub fn filter(key: &str, value: &str) -> String {
    format!("labels.{key} = \"{value}\"")
}

/// A list filter on resources that have label `key`.
pub fn has(key: &str) -> String {
    format!("labels.{key}:*")
}

/// The `description` of a network resource of `cluster`: its facts as `key=value` words.
pub fn description(cluster: &str, expires_at: Option<SystemTime>) -> String {
    let mut text = format!("gantry cluster network: {CLUSTER}={cluster}");
    if let Some(at) = expires_at {
        text.push_str(&format!(" {EXPIRES_AT}={}", unix_seconds(at)));
    }
    text
}

/// The cluster and expiry (Unix seconds) a [`description`] records; `None` when it is not one.
pub fn from_description(text: &str) -> Option<(String, Option<String>)> {
    let value =
        |key: &str| text.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')).map(str::to_string);
    Some((value(CLUSTER)?, value(EXPIRES_AT)))
}

/// A GCE request id (a UUID, 8-4-4-4-12 hexadecimal digits) for the create of `what` under
/// `token` (a journaled 32-digit token): the same inputs always give the same id, so a resumed
/// create is answered with the operation it already started.
pub fn request_id(token: &str, what: &str) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(token.as_bytes());
    hash.update(b"/");
    hash.update(what.as_bytes());
    let hex: String = hash.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gantry_labels_win_and_expiry_is_in_seconds() {
        let user = BTreeMap::from([("team".to_string(), "a".to_string()), (CLUSTER.to_string(), "x".to_string())]);
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let labels = Labels::new("prod", &user, Some(at)).with(HOST, "workers-0");
        assert_eq!(labels.get(CLUSTER), Some("prod"));
        assert_eq!(labels.get("team"), Some("a"));
        assert_eq!(labels.get(EXPIRES_AT), Some("1800000000"));
        assert!(labels.to_map().values().all(|v| !v.contains(':')), "GCE label values hold no ':'");
        assert_eq!(expiry_rfc3339("1800000000").as_deref(), Some("2027-01-15T08:00:00Z"));
        assert_eq!(expiry_rfc3339("soon"), None);
    }

    #[test]
    fn descriptions_carry_the_cluster_and_expiry() {
        let at = UNIX_EPOCH + Duration::from_secs(42);
        let text = description("prod", Some(at));
        assert_eq!(from_description(&text), Some(("prod".to_string(), Some("42".to_string()))));
        assert_eq!(from_description(&description("dev", None)), Some(("dev".to_string(), None)));
        assert_eq!(from_description("someone else's network"), None);
    }

    #[test]
    fn request_ids_are_uuids_stable_per_token_and_target() {
        let id = request_id("0123456789abcdef0123456789abcdef", "europe-west1-b");
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
        assert_eq!(id, request_id("0123456789abcdef0123456789abcdef", "europe-west1-b"));
        assert_ne!(id, request_id("0123456789abcdef0123456789abcdef", "europe-west1-c"));
        assert_eq!(filter(CLUSTER, "prod"), "labels.gantry-cluster = \"prod\"");
    }
}
