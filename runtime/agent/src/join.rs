//! The agent's credentials: a key and a certificate issued by the cluster CA, kept in
//! `WORK/tls/` (`agent-key.pem` 0600, `agent.pem`, `ca.pem`).
//!
//! On a first start (or when the certificate has expired or will within a day) the agent joins
//! with the join token, k3s style: it fetches the master's CA certificate, checks its SHA-256
//! against the hash in the token, so it knows it talks to the right master before it sends
//! anything, then sends a CSR with the token and gets its certificate back. The key never leaves
//! the host; a re-join keeps it, which is what the master binds the agent id to.

use gantry_api::security::{JoinRequest, JoinResponse};
use gantry_trust::JoinToken;
use gantry_trust::pki;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::{info, warn};

/// The agent's certificate and key, and the CA (all PEM).
#[derive(Clone)]
pub struct Credentials {
    /// The cluster CA.
    pub ca_pem: String,
    /// The agent's certificate.
    pub cert_pem: String,
    /// Its key.
    pub key_pem: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

/// Joining failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// No usable certificate and no join token.
    #[error(
        "no valid certificate in {0} and no join token: pass --join-token (or GANTRY_JOIN_TOKEN) with the master's DATA/join-token"
    )]
    NoToken(PathBuf),
    /// The token does not parse.
    #[error(transparent)]
    Token(#[from] gantry_trust::TokenError),
    /// The master presented another CA than the token pins.
    #[error(
        "the master at {master} presented a CA whose hash is {found}, but the join token pins {expected}: wrong master, or a token of another cluster"
    )]
    WrongCa {
        /// The master URL.
        master: String,
        /// The hash in the token.
        expected: String,
        /// The hash of what the master sent.
        found: String,
    },
    /// The master answered the join with a refusal (4xx): retrying changes nothing.
    #[error("joining through {master}: the master refused (HTTP {status}): {message}")]
    Refused {
        /// The master URL.
        master: String,
        /// The HTTP status.
        status: u16,
        /// The master's reason.
        message: String,
    },
    /// The master could not be reached or answered unexpectedly; worth retrying.
    #[error("joining through {master}: {message}")]
    Master {
        /// The master URL.
        master: String,
        /// What went wrong.
        message: String,
    },
    /// Keys, CSR or certificate.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// A file in the work dir.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn dir(work_dir: &Path) -> PathBuf {
    work_dir.join("tls")
}

fn read(path: &Path) -> Result<Option<String>, JoinError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(JoinError::Io { path: path.to_path_buf(), source }),
    }
}

/// The agent's credentials: those in the work dir while valid for more than a day, else new
/// ones from joining `master` with `token`, retried for up to `patience` while the master
/// cannot be reached.
pub async fn credentials(
    work_dir: &Path,
    agent_id: &str,
    master: &str,
    token: Option<&str>,
    patience: Duration,
) -> Result<Credentials, JoinError> {
    let dir = dir(work_dir);
    let key_path = dir.join("agent-key.pem");
    let cert_path = dir.join("agent.pem");
    let ca_path = dir.join(pki::CA_CERT_FILE);
    let key = read(&key_path)?;
    let now = i64::try_from(gantry_api::now_millis() / 1000).unwrap_or(i64::MAX);
    if let (Some(key), Some(cert), Some(ca)) = (&key, read(&cert_path)?, read(&ca_path)?) {
        let fresh = pki::not_after(&cert).is_some_and(|expires| expires - now > 24 * 3600);
        let same_cluster = token.map(JoinToken::parse).transpose()?.is_none_or(|t| t.ca_hash == ca_hash(&ca));
        if fresh && same_cluster {
            return Ok(Credentials { ca_pem: ca, cert_pem: cert, key_pem: key.clone() });
        }
        info!("The agent's certificate expires within a day (or the token names another cluster); joining again.");
    }
    let token = JoinToken::parse(token.ok_or_else(|| JoinError::NoToken(dir.clone()))?)?;
    let key_pem = match key {
        Some(key) => key,
        None => {
            let (_, key) = pki::new_csr()?;
            gantry_trust::files::write_private(&key_path, key.as_bytes())
                .map_err(|source| JoinError::Io { path: key_path.clone(), source })?;
            key
        }
    };
    let csr = pki::csr_for_key(&key_pem)?;
    let deadline = tokio::time::Instant::now() + patience;
    let mut backoff = Duration::from_millis(100);
    // Any master of the list serves the join: a follower redirects it to the leader.
    let masters = gantry_api::masters::Masters::parse(master);
    let joined = loop {
        let base = masters.current();
        match join(&base, &token, agent_id, &csr).await {
            Ok(joined) => break joined,
            Err(JoinError::Master { message, .. }) if tokio::time::Instant::now() < deadline => {
                warn!(master = %base, error = %message, "Cannot join yet; retrying.");
                masters.unreachable(&base);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(error) => return Err(error),
        }
    };
    let write = |path: &Path, text: &str| {
        gantry_trust::files::write_private(path, text.as_bytes())
            .map_err(|source| JoinError::Io { path: path.to_path_buf(), source })
    };
    write(&ca_path, &joined.ca)?;
    write(&cert_path, &joined.certificate)?;
    info!(%agent_id, "Joined the cluster: certificate stored.");
    Ok(Credentials { ca_pem: joined.ca, cert_pem: joined.certificate, key_pem })
}

/// How much of a certificate's life may be left before the agent renews it: a third of the
/// 30 days, so a master that is down for a week does not make agents fall off the cluster.
pub const RENEW_WHEN_LEFT: Duration = Duration::from_secs(10 * 24 * 3600);

/// Whether the certificate of `credentials` has less than [`RENEW_WHEN_LEFT`] to live at `now`
/// (seconds since the epoch).
pub fn renewal_due(credentials: &Credentials, now: i64) -> bool {
    let left = i64::try_from(RENEW_WHEN_LEFT.as_secs()).unwrap_or(i64::MAX);
    pki::not_after(&credentials.cert_pem).is_none_or(|expires| expires - now < left)
}

/// Renews the agent's certificate at `master` for the same key, over mutual TLS with the
/// current certificate, and stores it in the work dir. Answers the new credentials.
pub async fn renew(
    work_dir: &Path,
    agent_id: &str,
    master: &str,
    current: &Credentials,
) -> Result<Credentials, JoinError> {
    let masters = gantry_api::masters::Masters::parse(master);
    let mut last = None;
    for base in masters.all() {
        match renew_at(work_dir, agent_id, base, current).await {
            Ok(renewed) => return Ok(renewed),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| JoinError::Master { master: master.to_string(), message: "no master given".into() }))
}

/// [`renew`] at one master (a follower redirects it to the leader).
async fn renew_at(
    work_dir: &Path,
    agent_id: &str,
    master: &str,
    current: &Credentials,
) -> Result<Credentials, JoinError> {
    let master = master.trim_end_matches('/');
    let failed = |message: String| JoinError::Master { master: master.to_string(), message };
    let tls = gantry_trust::tls::client_config(&current.ca_pem, Some((&current.cert_pem, &current.key_pem)))
        .map_err(|e| failed(e.to_string()))?;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let request = gantry_api::security::RenewRequest { csr: pki::csr_for_key(&current.key_pem)? };
    let url = format!("{master}{}/{agent_id}/renew", gantry_api::protocol::PREFIX);
    let response = client.post(url).json(&request).send().await.map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| failed(e.to_string()))?;
    if !status.is_success() {
        return Err(failed(format!(
            "the master refused the renewal (HTTP {}): {}",
            status.as_u16(),
            String::from_utf8_lossy(&body)
        )));
    }
    let renewed: JoinResponse = serde_json::from_slice(&body).map_err(|e| failed(format!("unreadable answer: {e}")))?;
    let path = dir(work_dir).join("agent.pem");
    gantry_trust::files::write_private(&path, renewed.certificate.as_bytes())
        .map_err(|source| JoinError::Io { path: path.clone(), source })?;
    info!(%agent_id, "Certificate renewed.");
    Ok(Credentials { ca_pem: current.ca_pem.clone(), cert_pem: renewed.certificate, key_pem: current.key_pem.clone() })
}

fn ca_hash(ca_pem: &str) -> String {
    pki::pem_certs(ca_pem).first().map(|der| gantry_trust::sha256_hex(der)).unwrap_or_default()
}

async fn join(master: &str, token: &JoinToken, agent_id: &str, csr: &str) -> Result<JoinResponse, JoinError> {
    let master = master.trim_end_matches('/');
    let failed = |message: String| JoinError::Master { master: master.to_string(), message };
    let chain = |e: &dyn std::error::Error| gantry_api::client::error_chain(e);
    // Step 1: the CA, over a connection that checks nothing yet; its hash is checked next.
    let tls = gantry_trust::tls::ca_fetch_client_config().map_err(|e| failed(e.to_string()))?;
    let fetch = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| failed(chain(&e)))?;
    let response = fetch.get(format!("{master}/internal/v1/ca")).send().await.map_err(|e| failed(chain(&e)))?;
    if !response.status().is_success() {
        return Err(failed(format!("GET /internal/v1/ca answered HTTP {}", response.status().as_u16())));
    }
    let ca = response.text().await.map_err(|e| failed(chain(&e)))?;
    let found = ca_hash(&ca);
    if found != token.ca_hash {
        return Err(JoinError::WrongCa { master: master.to_string(), expected: token.ca_hash.clone(), found });
    }
    // Step 2: the CSR, to a master now verified by that CA.
    let tls = gantry_trust::tls::client_config(&ca, None).map_err(|e| failed(e.to_string()))?;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| failed(chain(&e)))?;
    let request = JoinRequest { token: token.to_string(), agent_id: agent_id.to_string(), csr: csr.to_string() };
    let response =
        client.post(format!("{master}/internal/v1/join")).json(&request).send().await.map_err(|e| failed(chain(&e)))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| failed(chain(&e)))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<gantry_api::ApiError>(&body)
            .map(|e| e.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).to_string());
        if status.is_client_error() {
            return Err(JoinError::Refused { master: master.to_string(), status: status.as_u16(), message });
        }
        return Err(failed(format!("the master answered HTTP {}: {message}", status.as_u16())));
    }
    serde_json::from_slice(&body).map_err(|e| failed(format!("unreadable answer: {e}")))
}
