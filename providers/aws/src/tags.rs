//! gantry's tags: every resource the aws provider makes carries them from its creation on (in the
//! create call itself, so nothing exists untagged even for a moment), which is how `up` finds
//! what an interrupted run made, `down` finds what to delete and `sweep` finds what expired.

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use std::collections::BTreeMap;

/// The cluster a resource belongs to.
pub const CLUSTER: &str = "gantry:cluster";
/// The host an instance is (its name in the cluster).
pub const HOST: &str = "gantry:host";
/// The pool of an instance.
pub const POOL: &str = "gantry:pool";
/// What a resource is for: `vpc`, `subnet:<zone>`, `internet-gateway`, `route-table`,
/// `security-group`, `key-pair`.
pub const ROLE: &str = "gantry:resource";
/// When the cluster expires (RFC 3339); `gantry sweep` deletes it afterwards.
pub const EXPIRES_AT: &str = "gantry:expires-at";

/// The tags of one resource: the user's, then gantry's (which win), and `Name`.
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

    /// The tag specification of a create call for `resource`.
    pub fn spec(&self, resource: ResourceType) -> TagSpecification {
        let tags = self.map.iter().map(|(k, v)| Tag::builder().key(k).value(v).build());
        TagSpecification::builder().resource_type(resource).set_tags(Some(tags.collect())).build()
    }
}

/// A filter on tag `key` = `value`.
pub fn filter(key: &str, value: &str) -> Filter {
    Filter::builder().name(format!("tag:{key}")).values(value).build()
}

/// A filter on resources that have tag `key`, whatever its value.
pub fn has(key: &str) -> Filter {
    Filter::builder().name("tag-key").values(key).build()
}

/// The value of tag `key` among `tags`.
pub fn value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(Tag::value)
}
