//! Which images to drop to bring the cache under a size: least recently used first, never an
//! image in use, and never a layer or blob that a kept image (or a pull in progress) still
//! needs. A pure function of the records; the store carries the plan out.

use crate::record::ImageRecord;
use std::collections::{HashMap, HashSet};

/// What to remove and what it frees.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Manifest digests of the images to drop, in the order chosen.
    pub images: Vec<String>,
    /// Layer digests no kept image uses.
    pub layers: Vec<String>,
    /// Blob digests (manifests, configs) no kept image uses.
    pub blobs: Vec<String>,
    /// Bytes freed.
    pub freed: u64,
    /// Bytes left after the plan.
    pub remaining: u64,
}

/// The cache's size, each shared layer and blob counted once.
pub(crate) fn total(records: &HashMap<String, ImageRecord>) -> u64 {
    let mut layers = HashMap::new();
    let mut blobs = HashMap::new();
    for record in records.values() {
        for layer in &record.layers {
            layers.insert(layer.digest.as_str(), layer.size);
        }
        blobs.insert(record.manifest_digest.as_str(), record.manifest_size);
        blobs.insert(record.config_digest.as_str(), record.config_size);
    }
    layers.values().sum::<u64>() + blobs.values().sum::<u64>()
}

/// Plans removals until the cache is at most `target` bytes. `in_use` holds manifest digests
/// or references of images that must stay; `protected` holds digests a pull is working on.
pub(crate) fn plan(
    records: &HashMap<String, ImageRecord>,
    in_use: &HashSet<String>,
    protected: &HashSet<String>,
    target: u64,
) -> Plan {
    let mut remaining = total(records);
    let mut candidates: Vec<&ImageRecord> = records
        .values()
        .filter(|r| !in_use.contains(&r.manifest_digest) && !r.references.iter().any(|name| in_use.contains(name)))
        .collect();
    candidates.sort_by(|a, b| (a.last_used, &a.manifest_digest).cmp(&(b.last_used, &b.manifest_digest)));
    let mut kept: HashMap<&str, &ImageRecord> = records.iter().map(|(d, r)| (d.as_str(), r)).collect();
    let mut plan = Plan::default();
    for candidate in candidates {
        if remaining <= target {
            break;
        }
        kept.remove(candidate.manifest_digest.as_str());
        let still_used = |digest: &str| {
            protected.contains(digest)
                || kept.values().any(|r| r.layers.iter().any(|l| l.digest == digest) || r.blobs().contains(&digest))
        };
        for layer in &candidate.layers {
            if !still_used(&layer.digest) && !plan.layers.contains(&layer.digest) {
                plan.layers.push(layer.digest.clone());
                plan.freed += layer.size;
                remaining = remaining.saturating_sub(layer.size);
            }
        }
        for (digest, size) in
            [(&candidate.manifest_digest, candidate.manifest_size), (&candidate.config_digest, candidate.config_size)]
        {
            if !still_used(digest) && !plan.blobs.contains(digest) {
                plan.blobs.push(digest.clone());
                plan.freed += size;
                remaining = remaining.saturating_sub(size);
            }
        }
        plan.images.push(candidate.manifest_digest.clone());
    }
    plan.remaining = remaining;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ImageConfig;
    use crate::record::LayerRecord;
    use std::time::{Duration, SystemTime};

    fn image(name: &str, age_s: u64, layers: &[(&str, u64)]) -> (String, ImageRecord) {
        let digest = format!("sha256:{name}");
        let record = ImageRecord {
            manifest_digest: digest.clone(),
            references: vec![format!("r/{name}:1")],
            config_digest: format!("sha256:{name}-config"),
            config: ImageConfig::default(),
            layers: layers.iter().map(|(d, s)| LayerRecord { digest: d.to_string(), size: *s }).collect(),
            manifest_size: 1,
            config_size: 1,
            last_used: SystemTime::UNIX_EPOCH + Duration::from_secs(1000 - age_s),
        };
        (digest, record)
    }

    fn records() -> HashMap<String, ImageRecord> {
        [
            image("old", 300, &[("base", 100), ("old-top", 50)]),
            image("mid", 200, &[("base", 100), ("mid-top", 30)]),
            image("new", 100, &[("new-only", 10)]),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn least_recently_used_first_and_shared_layers_stay() {
        let records = records();
        assert_eq!(total(&records), 100 + 50 + 30 + 10 + 6);
        let plan = plan(&records, &HashSet::new(), &HashSet::new(), 150);
        assert_eq!(plan.images, vec!["sha256:old"]);
        assert_eq!(plan.layers, vec!["old-top"], "base is still used by mid");
        assert_eq!(plan.freed, 52);
        assert_eq!(plan.remaining, 144);
    }

    #[test]
    fn images_in_use_are_never_removed() {
        let records = records();
        let in_use: HashSet<String> = ["sha256:old".to_string(), "r/mid:1".to_string()].into();
        let plan = plan(&records, &in_use, &HashSet::new(), 0);
        assert_eq!(plan.images, vec!["sha256:new"]);
        assert_eq!(plan.layers, vec!["new-only"]);
    }

    #[test]
    fn protected_layers_stay_and_nothing_happens_under_target() {
        let records = records();
        let protected: HashSet<String> = ["new-only".to_string()].into();
        let all = plan(&records, &HashSet::new(), &protected, 0);
        assert_eq!(all.images.len(), 3);
        assert!(!all.layers.contains(&"new-only".to_string()));
        assert_eq!(
            plan(&records, &HashSet::new(), &HashSet::new(), 1 << 30),
            Plan { remaining: 196, ..Plan::default() }
        );
    }
}
