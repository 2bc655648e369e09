//! The agents' image caches (`gantry image list|prune`): the images an agent keeps for its
//! container tasks, and what a prune removed. The agent answers [`ImageCache`] and
//! [`ImagePruneReport`] on its own endpoint; the master relays them as [`AgentImages`] and
//! [`AgentImagesPruned`], which add the agent they came from.

use crate::Millis;
use serde::{Deserialize, Serialize};

/// One cached image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedImage {
    /// The normalized references that resolve to it, e.g. `registry.example.com/team/web:1.4`.
    pub references: Vec<String>,
    /// Its manifest digest (`sha256:<hex>`).
    pub manifest_digest: String,
    /// Bytes it takes, layers it shares with other images counted in full.
    pub size_bytes: u64,
    /// When a pull last returned it (a launch uses it).
    pub last_used: Millis,
    /// Whether a live task runs from it; such an image is never pruned.
    pub in_use: bool,
}

impl CachedImage {
    /// The first 12 hex digits of the manifest digest, as tables show it.
    pub fn short_digest(&self) -> &str {
        let hex = self.manifest_digest.split_once(':').map_or(self.manifest_digest.as_str(), |(_, hex)| hex);
        hex.get(..12).unwrap_or(hex)
    }
}

/// An agent's image cache: `GET /images` on the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageCache {
    /// Bytes the cache holds, layers shared by images counted once.
    pub total_bytes: u64,
    /// The size above which the agent prunes least recently used images not in use.
    pub max_bytes: u64,
    /// The images, most recently used first.
    pub images: Vec<CachedImage>,
}

/// Body of a prune (`POST /api/v1/agents/{id}/images/prune`, and `POST /images/prune` on the
/// agent); an empty body is `{"all": false}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneImagesRequest {
    /// Remove every image no live task uses; otherwise remove least recently used ones until
    /// the cache is at most its `max_bytes`.
    #[serde(default)]
    pub all: bool,
}

/// What a prune removed: `POST /images/prune` on the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePruneReport {
    /// The images removed, least recently used first.
    pub removed: Vec<CachedImage>,
    /// Bytes freed.
    pub freed_bytes: u64,
    /// Bytes the cache holds now.
    pub remaining_bytes: u64,
    /// Files that could not be removed, with the reason (the next prune tries them again).
    pub failures: Vec<String>,
}

/// An agent's image cache, as the master answers it: `GET /api/v1/agents/{id}/images`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentImages {
    /// The agent's id.
    pub agent_id: String,
    /// The agent's hostname.
    pub hostname: String,
    /// Its cache.
    #[serde(flatten)]
    pub cache: ImageCache,
}

/// What a prune removed on an agent: `POST /api/v1/agents/{id}/images/prune`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentImagesPruned {
    /// The agent's id.
    pub agent_id: String,
    /// The agent's hostname.
    pub hostname: String,
    /// What was removed.
    #[serde(flatten)]
    pub report: ImagePruneReport,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(digest: &str) -> CachedImage {
        CachedImage {
            references: vec!["r/web:1".into()],
            manifest_digest: digest.into(),
            size_bytes: 10,
            last_used: 5,
            in_use: false,
        }
    }

    #[test]
    fn short_digests_keep_twelve_hex_digits() {
        assert_eq!(image("sha256:0123456789abcdef0123").short_digest(), "0123456789ab");
        assert_eq!(image("sha256:abc").short_digest(), "abc");
        assert_eq!(image("0123456789abcdef").short_digest(), "0123456789ab");
    }

    #[test]
    fn the_master_adds_the_agent_beside_the_cache_fields() {
        let images = AgentImages {
            agent_id: "a1".into(),
            hostname: "node-1".into(),
            cache: ImageCache { total_bytes: 10, max_bytes: 100, images: vec![image("sha256:ab")] },
        };
        let json = serde_json::to_value(&images).expect("serialize");
        assert_eq!(json["agent_id"], "a1");
        assert_eq!(json["total_bytes"], 10);
        assert_eq!(json["images"][0]["manifest_digest"], "sha256:ab");
        assert_eq!(serde_json::from_value::<AgentImages>(json).expect("round trip"), images);
    }

    #[test]
    fn a_prune_body_defaults_to_down_to_the_limit_and_refuses_unknown_fields() {
        assert_eq!(serde_json::from_str::<PruneImagesRequest>("{}").expect("empty"), PruneImagesRequest { all: false });
        assert!(serde_json::from_str::<PruneImagesRequest>(r#"{"all": true}"#).expect("all").all);
        assert!(serde_json::from_str::<PruneImagesRequest>(r#"{"everything": true}"#).is_err());
    }
}
