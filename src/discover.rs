//! Which master a client command talks to, when `--master` is not given: the master of the
//! cluster named by `--cluster`, else of the only (or most recently brought up) cluster in the
//! state dir, else the default local address. `gantry up` records each cluster's master URL in
//! `<state dir>/<cluster>/master_url`.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The address a master listens on by default.
pub const DEFAULT_MASTER: &str = "http://127.0.0.1:5050";

/// The file `gantry up` writes the master URL to, in the cluster's state dir.
pub const MASTER_URL_FILE: &str = "master_url";

/// The master URL for a client command.
pub fn master_url(master: Option<&str>, cluster: Option<&str>, state_root: Option<&Path>) -> anyhow::Result<String> {
    if let Some(master) = master {
        return Ok(master.to_string());
    }
    let Some(root) = state_root else {
        return match cluster {
            Some(name) => anyhow::bail!("cannot find cluster `{name}`: no state dir (set HOME or GANTRY_STATE_DIR)"),
            None => Ok(DEFAULT_MASTER.to_string()),
        };
    };
    if let Some(name) = cluster {
        let file = root.join(name).join(MASTER_URL_FILE);
        let url = std::fs::read_to_string(&file).with_context(|| {
            format!("no cluster `{name}` in {} (bring it up with `gantry up`, or pass --master)", root.display())
        })?;
        return Ok(url.trim().to_string());
    }
    let mut known: Vec<(SystemTime, String)> = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| {
                    let file = entry.path().join(MASTER_URL_FILE);
                    let modified = std::fs::metadata(&file).and_then(|m| m.modified()).ok()?;
                    let url = std::fs::read_to_string(&file).ok()?;
                    Some((modified, url.trim().to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    known.sort();
    Ok(known.pop().map_or_else(|| DEFAULT_MASTER.to_string(), |(_, url)| url))
}

/// The root of the clusters' state dirs: `GANTRY_STATE_DIR`, else `~/.gantry/clusters`.
pub fn state_root() -> Option<PathBuf> {
    std::env::var_os(gantry_provision::journal::STATE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".gantry").join("clusters")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(root: &Path, name: &str, url: &str) {
        std::fs::create_dir_all(root.join(name)).expect("dir");
        std::fs::write(root.join(name).join(MASTER_URL_FILE), format!("{url}\n")).expect("write");
    }

    #[test]
    fn explicit_master_wins_then_named_cluster_then_most_recent_then_default() {
        let root = tempfile::tempdir().expect("temp dir");
        let root = root.path();
        assert_eq!(master_url(None, None, Some(root)).expect("default"), DEFAULT_MASTER);
        record(root, "alpha", "http://127.0.0.1:6001");
        assert_eq!(master_url(None, None, Some(root)).expect("only"), "http://127.0.0.1:6001");
        std::thread::sleep(std::time::Duration::from_millis(20));
        record(root, "beta", "http://127.0.0.1:6002");
        assert_eq!(master_url(None, None, Some(root)).expect("most recent"), "http://127.0.0.1:6002");
        assert_eq!(master_url(None, Some("alpha"), Some(root)).expect("named"), "http://127.0.0.1:6001");
        assert_eq!(master_url(Some("http://x:1"), Some("alpha"), Some(root)).expect("explicit"), "http://x:1");
        let err = master_url(None, Some("gamma"), Some(root)).expect_err("unknown cluster").to_string();
        assert!(err.contains("no cluster `gamma`"), "{err}");
        assert_eq!(master_url(None, None, None).expect("no root"), DEFAULT_MASTER);
    }
}
