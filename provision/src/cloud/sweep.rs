//! What `gantry sweep <cloud>` decides, for every cloud: a cluster found by its tags (labels) is
//! deleted when it expired (`expires-at` in the past) or when no state dir on this machine knows
//! it (an orphan of a lost state dir), and kept otherwise. Each provider finds and deletes; the
//! verdict is here, pure.

use serde::Serialize;
use std::time::SystemTime;

/// Why a cluster's resources are swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// Its expiry has passed.
    Expired,
    /// No state dir on this machine knows it.
    Orphaned,
}

/// One cluster found in a region (subscription, project).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// The cluster's name (its tag or label).
    pub cluster: String,
    /// The earliest expiry among its resources (RFC 3339).
    pub expires_at: Option<String>,
    /// Its resources: (kind, id).
    pub resources: Vec<(String, String)>,
    /// Why it is swept; `None` = kept (alive and known).
    pub reason: Option<Reason>,
}

/// Why a cluster is swept: expired first, else unknown here; `None` to keep it.
pub fn verdict(expires_at: Option<&str>, now: SystemTime, known: bool) -> Option<Reason> {
    let expired = expires_at.and_then(|at| humantime::parse_rfc3339(at).ok()).is_some_and(|at| at <= now);
    if expired {
        Some(Reason::Expired)
    } else if !known {
        Some(Reason::Orphaned)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_clusters_go_before_unknown_ones_and_live_known_ones_stay() {
        let now = humantime::parse_rfc3339("2026-12-06T12:00:00Z").expect("time");
        assert_eq!(verdict(Some("2026-12-06T11:59:59Z"), now, true), Some(Reason::Expired));
        assert_eq!(verdict(Some("2026-12-06T13:00:00Z"), now, false), Some(Reason::Orphaned));
        assert_eq!(verdict(Some("2026-12-06T13:00:00Z"), now, true), None);
        assert_eq!(verdict(None, now, true), None);
    }
}
