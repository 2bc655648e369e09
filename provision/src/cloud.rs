//! What every cloud provider (aws, gce, azure) needs beside its SDK calls: the cluster's SSH key,
//! SSH to new machines whose host keys are learnt on first contact ([`CloudHosts`]), waiting
//! for a booted machine's SSH port, polls with exponential backoff, idempotency tokens, the
//! expiry of a cluster with a TTL and what `gantry sweep` does with it ([`sweep`]), and spreading
//! hosts across zones by their index.
//!
//! It is provider-neutral: nothing here knows an SDK.

mod hosts;
pub mod registry;
mod ssh_key;
pub mod sweep;
mod wait;

pub use hosts::{CloudHosts, forget_host_keys};
pub use registry::{Records, Registry};
pub use ssh_key::ensure as ensure_ssh_key;
pub use wait::{Backoff, wait_for_port};

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long a launched machine may take to run and to accept SSH connections.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// The cluster's SSH key in a state dir (made on the first `up`; 0600).
pub fn key_file(state_dir: &Path) -> PathBuf {
    state_dir.join("ssh").join("id_ed25519")
}

/// A host's index in its pool (`workers-3` → 3), for spreading hosts across zones.
pub fn host_index(name: &str) -> usize {
    name.rsplit('-').next().and_then(|i| i.parse().ok()).unwrap_or(0)
}

/// A fresh idempotency token for one create of `host` (32 hexadecimal digits): recorded in the
/// provider's journal before the call, so a retried or resumed create reuses it.
pub fn request_token(cluster: &str, host: &str) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(cluster.as_bytes());
    hash.update(host.as_bytes());
    hash.update(format!("{:?}", SystemTime::now()).as_bytes());
    hash.update(std::process::id().to_le_bytes());
    hash.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// When a cluster created at `created_at` (RFC 3339, as journaled; now if unreadable) with `ttl`
/// expires.
pub fn expires_at(created_at: &str, ttl: Duration) -> SystemTime {
    humantime::parse_rfc3339(created_at).unwrap_or_else(|_| SystemTime::now()) + ttl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_spread_by_their_index() {
        assert_eq!(host_index("workers-3"), 3);
        assert_eq!(host_index("master-0"), 0);
        assert_eq!(host_index("odd"), 0);
    }

    #[test]
    fn tokens_are_32_hex_digits_and_differ_per_host() {
        let token = request_token("c", "workers-0");
        assert_eq!(token.len(), 32);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()), "{token}");
        assert_ne!(token, request_token("c", "workers-1"));
    }

    #[test]
    fn expiry_is_creation_plus_ttl() {
        let at = expires_at("2026-12-07T01:00:00Z", Duration::from_secs(3600));
        assert_eq!(humantime::format_rfc3339_seconds(at).to_string(), "2026-12-07T02:00:00Z");
    }
}
