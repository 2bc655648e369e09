//! gantry's tags: every resource the azure provider makes carries them from its create call on,
//! which is how `up` finds what an interrupted run made, `down` finds what to delete and `sweep`
//! finds what expired. Azure tag names may not hold `:`, hence `gantry-…`.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The cluster a resource belongs to.
pub const CLUSTER: &str = "gantry-cluster";
/// The host a VM (and its NIC and public IP) is.
pub const HOST: &str = "gantry-host";
/// The pool of a VM.
pub const POOL: &str = "gantry-pool";
/// When the cluster expires (RFC 3339); `gantry sweep azure` deletes it afterwards.
pub const EXPIRES_AT: &str = "gantry-expires-at";

/// The tags of one resource: the user's, then gantry's (which win).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tags {
    map: BTreeMap<String, String>,
}

impl Tags {
    /// The tags of a resource of `cluster`, with the user's `extra` and an expiry.
    pub fn new(cluster: &str, extra: &BTreeMap<String, String>, expires_at: Option<&str>) -> Self {
        let mut map = extra.clone();
        map.insert(CLUSTER.to_string(), cluster.to_string());
        if let Some(at) = expires_at {
            map.insert(EXPIRES_AT.to_string(), at.to_string());
        }
        Self { map }
    }

    /// These tags plus `key = value`.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.map.insert(key.to_string(), value.to_string());
        self
    }

    /// The tags as a resource's `tags` object.
    pub fn json(&self) -> Value {
        Value::Object(self.map.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>())
    }
}

/// The value of tag `key` in a resource's `tags` object.
pub fn value<'a>(tags: Option<&'a Value>, key: &str) -> Option<&'a str> {
    tags?.get(key)?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gantry_tags_win_over_the_users_and_read_back() {
        let extra = BTreeMap::from([("team".to_string(), "infra".to_string()), (CLUSTER.to_string(), "x".to_string())]);
        let tags = Tags::new("blue", &extra, Some("2026-12-07T02:00:00Z")).with(HOST, "workers-0");
        let json = tags.json();
        assert_eq!(value(Some(&json), CLUSTER), Some("blue"));
        assert_eq!(value(Some(&json), "team"), Some("infra"));
        assert_eq!(value(Some(&json), EXPIRES_AT), Some("2026-12-07T02:00:00Z"));
        assert_eq!(value(Some(&json), HOST), Some("workers-0"));
        assert_eq!(value(None, CLUSTER), None);
    }
}
