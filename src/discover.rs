//! Which master a client command talks to, and with which credentials.
//!
//! The master: `--master` if given, else the master of the cluster named by `--cluster`, else of
//! the only (or most recently brought up) cluster in the state dir, else the default local
//! address. `gantry up` keeps, in each cluster's state dir `<state root>/<cluster>/`, the master
//! URL (`master_url`), the cluster CA (`ca.pem`) and an admin token (`admin-token`, mode 0600).
//!
//! The credentials: the CA of `--ca-cert`, else the chosen cluster's `ca.pem`; the token of
//! `--token`/`GANTRY_TOKEN`, else the chosen cluster's `admin-token`. With an explicit `--master`,
//! the chosen cluster is the known one whose `master_url` is that URL, else the one `--cluster`
//! names; with neither, the command sends no credentials and the master's refusal says why.

use anyhow::Context;
use gantry_api::Credentials;
use gantry_trust::pki::CA_CERT_FILE;
use gantry_trust::token::ADMIN_TOKEN_FILE;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The address a master listens on by default.
pub const DEFAULT_MASTER: &str = "https://127.0.0.1:5050";

/// The file `gantry up` writes the master URL to, in the cluster's state dir.
pub const MASTER_URL_FILE: &str = "master_url";

/// Where a `--token`/`GANTRY_TOKEN` token came from, as errors name it.
pub const TOKEN_OPTION_SOURCE: &str = "--token or GANTRY_TOKEN";

/// The master URL and the credentials for a client command, from its options (`master`,
/// `cluster`, `ca_cert`, `token`, each `None` when not given) and the clusters kept under
/// `state_root`, and the chosen cluster's state dir (if it is a known one). An unreadable
/// `ca_cert` is an error; a cluster without a CA or a token file leaves that credential out.
pub fn connection(
    master: Option<&str>,
    cluster: Option<&str>,
    ca_cert: Option<&Path>,
    token: Option<&str>,
    state_root: Option<&Path>,
) -> anyhow::Result<(String, Credentials, Option<PathBuf>)> {
    let chosen = choose(master, cluster, state_root)?;
    let dir = chosen.dir.as_deref();
    let ca_pem = match ca_cert {
        Some(path) => Some(read_ca(path).with_context(|| {
            format!("cannot use the CA certificate {} (--ca-cert or GANTRY_CA_CERT)", path.display())
        })?),
        None => match dir {
            Some(dir) => read_if_present(&dir.join(CA_CERT_FILE))?,
            None => None,
        },
    };
    let (token, token_source) = match token.map(str::trim).filter(|t| !t.is_empty()) {
        Some(token) => (Some(token.to_string()), Some(TOKEN_OPTION_SOURCE.to_string())),
        None => match dir {
            Some(dir) => {
                let file = dir.join(ADMIN_TOKEN_FILE);
                match read_if_present(&file)?.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) {
                    Some(token) => {
                        warn_if_shared(&file);
                        (Some(token), Some(file.display().to_string()))
                    }
                    None => (None, None),
                }
            }
            None => (None, None),
        },
    };
    Ok((chosen.url, Credentials { token, ca_pem, identity: None, token_source }, chosen.dir))
}

/// The master a client command talks to, and the state dir of its cluster if it is a known one.
struct Chosen {
    url: String,
    dir: Option<PathBuf>,
}

fn choose(master: Option<&str>, cluster: Option<&str>, state_root: Option<&Path>) -> anyhow::Result<Chosen> {
    let Some(root) = state_root else {
        return match (master, cluster) {
            (Some(master), _) => Ok(Chosen { url: master.to_string(), dir: None }),
            (None, Some(name)) => {
                anyhow::bail!("cannot find cluster `{name}`: no state dir (set HOME or GANTRY_STATE_DIR)")
            }
            (None, None) => Ok(Chosen { url: DEFAULT_MASTER.to_string(), dir: None }),
        };
    };
    if let Some(master) = master {
        let named = cluster.map(|name| root.join(name)).filter(|dir| dir.join(MASTER_URL_FILE).is_file());
        let dir = known(root).into_iter().find(|k| same_url(&k.url, master)).map(|k| k.dir).or(named);
        return Ok(Chosen { url: master.to_string(), dir });
    }
    if let Some(name) = cluster {
        let dir = root.join(name);
        let url = std::fs::read_to_string(dir.join(MASTER_URL_FILE)).with_context(|| {
            format!("no cluster `{name}` in {} (bring it up with `gantry up`, or pass --master)", root.display())
        })?;
        return Ok(Chosen { url: url.trim().to_string(), dir: Some(dir) });
    }
    let mut known = known(root);
    known.sort_by(|a, b| a.modified.cmp(&b.modified).then_with(|| a.url.cmp(&b.url)));
    Ok(known.pop().map_or_else(
        || Chosen { url: DEFAULT_MASTER.to_string(), dir: None },
        |k| Chosen { url: k.url, dir: Some(k.dir) },
    ))
}

/// A cluster `gantry up` brought up: its state dir, master URL and when the URL was written.
struct Known {
    dir: PathBuf,
    url: String,
    modified: SystemTime,
}

fn known(root: &Path) -> Vec<Known> {
    std::fs::read_dir(root)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| {
                    let dir = entry.path();
                    let file = dir.join(MASTER_URL_FILE);
                    let modified = std::fs::metadata(&file).and_then(|m| m.modified()).ok()?;
                    let url = std::fs::read_to_string(&file).ok()?.trim().to_string();
                    Some(Known { dir, url, modified })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/')
}

fn read_ca(path: &Path) -> anyhow::Result<String> {
    let pem = std::fs::read_to_string(path)?;
    anyhow::ensure!(!gantry_trust::pki::pem_certs(&pem).is_empty(), "it holds no PEM certificate");
    Ok(pem)
}

/// The text of `file`, or `None` when it does not exist.
pub(crate) fn read_if_present(file: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
}

fn warn_if_shared(file: &Path) {
    if gantry_trust::files::readable_by_others(file).unwrap_or(false) {
        tracing::warn!(file = %file.display(), "The token file is readable by other users; `chmod 600` it.");
    }
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

    fn keep(root: &Path, name: &str, file: &str, text: &str) -> PathBuf {
        let path = root.join(name).join(file);
        std::fs::write(&path, text).expect("write");
        path
    }

    /// A CA certificate as `gantry up` keeps it.
    fn ca_pem(name: &str) -> String {
        gantry_trust::Ca::generate(name).expect("a CA").cert_pem().to_string()
    }

    /// The URL [`connection`] chooses, without options for credentials.
    fn master_url(master: Option<&str>, cluster: Option<&str>, root: Option<&Path>) -> anyhow::Result<String> {
        connection(master, cluster, None, None, root).map(|(url, _, _)| url)
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

    #[test]
    fn credentials_come_from_the_options_else_from_the_chosen_clusters_files() {
        let root = tempfile::tempdir().expect("temp dir");
        let root = root.path();
        let (alpha_ca, beta_ca) = (ca_pem("alpha"), ca_pem("beta"));
        record(root, "alpha", "https://10.0.0.1:5050");
        keep(root, "alpha", CA_CERT_FILE, &alpha_ca);
        let alpha_token = keep(root, "alpha", ADMIN_TOKEN_FILE, "alpha-secret\n");
        std::thread::sleep(std::time::Duration::from_millis(20));
        record(root, "beta", "https://10.0.0.2:5050");
        keep(root, "beta", CA_CERT_FILE, &beta_ca);
        let beta_token = keep(root, "beta", ADMIN_TOKEN_FILE, "beta-secret");

        let (url, c, _) = connection(None, None, None, None, Some(root)).expect("most recent");
        assert_eq!(url, "https://10.0.0.2:5050");
        assert_eq!((c.ca_pem.as_deref(), c.token.as_deref()), (Some(beta_ca.as_str()), Some("beta-secret")));
        assert_eq!(c.token_source, Some(beta_token.display().to_string()));

        let (url, c, _) = connection(None, Some("alpha"), None, None, Some(root)).expect("named");
        assert_eq!(url, "https://10.0.0.1:5050");
        assert_eq!((c.ca_pem.as_deref(), c.token.as_deref()), (Some(alpha_ca.as_str()), Some("alpha-secret")));
        assert_eq!(c.token_source, Some(alpha_token.display().to_string()));

        let (_, c, _) = connection(Some("https://10.0.0.1:5050/"), None, None, None, Some(root)).expect("by URL");
        assert_eq!(c.token.as_deref(), Some("alpha-secret"), "an explicit master uses the files of its cluster");
        let (_, c, _) = connection(Some("https://tunnel:5050"), Some("alpha"), None, None, Some(root)).expect("named");
        assert_eq!(c.token.as_deref(), Some("alpha-secret"), "else those of the cluster --cluster names");
        let (url, c, _) = connection(Some("https://elsewhere:5050"), None, None, None, Some(root)).expect("unknown");
        assert_eq!(url, "https://elsewhere:5050");
        assert!(c.ca_pem.is_none() && c.token.is_none() && c.token_source.is_none(), "{c:?}");

        let ca_file = keep(root, "alpha", "other-ca.pem", &alpha_ca);
        let (_, c, _) = connection(None, None, Some(&ca_file), Some(" given "), Some(root)).expect("options");
        assert_eq!(c.ca_pem.as_deref(), Some(alpha_ca.as_str()), "--ca-cert wins over the cluster's CA");
        assert_eq!(c.token.as_deref(), Some("given"));
        assert_eq!(c.token_source.as_deref(), Some(TOKEN_OPTION_SOURCE));
        let (_, c, _) = connection(None, None, None, Some(""), Some(root)).expect("empty token");
        assert_eq!(c.token.as_deref(), Some("beta-secret"), "an empty GANTRY_TOKEN counts as unset");

        let missing = root.join("nowhere.pem");
        let err = connection(None, None, Some(&missing), None, Some(root)).expect_err("missing CA file");
        assert!(format!("{err:#}").contains("nowhere.pem"), "{err:#}");
        let not_pem = keep(root, "alpha", "not.pem", "hello");
        let err = connection(None, None, Some(&not_pem), None, Some(root)).expect_err("not a certificate");
        assert!(format!("{err:#}").contains("holds no PEM certificate"), "{err:#}");

        let (url, c, _) = connection(None, None, None, None, None).expect("no state dir");
        assert_eq!(url, DEFAULT_MASTER);
        assert!(c.ca_pem.is_none() && c.token.is_none(), "{c:?}");
    }

    #[test]
    fn a_cluster_from_before_security_gives_no_credentials() {
        let root = tempfile::tempdir().expect("temp dir");
        record(root.path(), "old", "http://127.0.0.1:5050");
        let (url, c, _) = connection(None, None, None, None, Some(root.path())).expect("old cluster");
        assert_eq!(url, "http://127.0.0.1:5050");
        assert!(c.ca_pem.is_none() && c.token.is_none() && c.token_source.is_none(), "{c:?}");
    }
}
