//! A real image registry for tests (testing ladder rung 6): Debian's `docker-registry` (the
//! distribution registry, `docker-registry serve <config.yml>`) on a free loopback port, with
//! filesystem storage in a temporary directory and, optionally, htpasswd basic auth (bcrypt)
//! and HTTPS with a certificate from a throwaway CA ([`TestRegistry::ca_pem`]). Killed and
//! removed on drop. Its access log is kept so tests can count requests.
//!
//! Images for it are made from local files only, by [`TestImage`], and pushed through the
//! registry's HTTP API; nothing is ever pulled from outside.

mod image;
mod tls;

pub use image::{Compression, ManifestFormat, PushedImage, TestImage, TestLayer, push_index};

use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to start a [`TestRegistry`].
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// `(user, password)`: require HTTP basic auth (htpasswd with bcrypt) for every request.
    pub basic_auth: Option<(String, String)>,
    /// Serve HTTPS (only) with a certificate for `127.0.0.1` and `localhost` issued by a CA
    /// made for this registry; clients trust it through [`TestRegistry::ca_pem`].
    pub tls: bool,
}

/// One request the registry served, from its access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogEntry {
    /// `GET`, `HEAD`, `PUT`, ...
    pub method: String,
    /// The request path with its query, e.g. `/v2/team/web/blobs/sha256:...`.
    pub path: String,
    /// The HTTP status answered.
    pub status: u16,
}

/// A running `docker-registry` on loopback; stopped and its storage removed on drop.
#[derive(Debug)]
pub struct TestRegistry {
    child: Child,
    dir: tempfile::TempDir,
    address: String,
    basic_auth: Option<(String, String)>,
    tls: Option<tls::TlsFiles>,
}

impl TestRegistry {
    /// Why a registry cannot run here (the `docker-registry` package is missing), if so.
    pub fn missing() -> Option<String> {
        match executable() {
            Some(_) => None,
            None => Some("docker-registry is not installed (Debian package docker-registry)".to_string()),
        }
    }

    /// Starts a registry and waits (up to 30 s) until `/v2/` answers.
    pub fn start(options: RegistryOptions) -> anyhow::Result<TestRegistry> {
        let Some(program) = executable() else {
            bail!("{}", Self::missing().unwrap_or_default());
        };
        let dir = tempfile::Builder::new()
            .prefix("gantry-lab-registry-")
            .tempdir()
            .context("creating the registry's directory")?;
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).context("creating the registry's storage")?;
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:0\n  secret: gantry-lab\n",
            storage.display()
        );
        let tls = if options.tls { Some(tls::write_certificates(dir.path())?) } else { None };
        if let Some(files) = &tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                files.cert.display(),
                files.key.display()
            ));
        }
        if let Some((user, password)) = &options.basic_auth {
            let hash = bcrypt::hash(password, 4).context("hashing the registry password")?;
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).context("writing htpasswd")?;
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: gantry-lab\n    path: {}\n", htpasswd.display()));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).context("writing the registry config")?;
        let stdout = std::fs::File::create(dir.path().join("access.log")).context("creating the access log")?;
        let stderr = std::fs::File::create(dir.path().join("registry.log")).context("creating the registry log")?;
        let child = Command::new(program)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .context("starting docker-registry")?;
        let mut registry = TestRegistry { child, dir, address: String::new(), basic_auth: options.basic_auth, tls };
        registry.address = registry.wait_listening()?;
        registry.wait_ready()?;
        Ok(registry)
    }

    /// `127.0.0.1:<port>`, as written in image references.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// `https://<address>` for a TLS registry, `http://<address>` otherwise.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.address)
    }

    /// The PEM file of the CA that issued a TLS registry's certificate (`None` without TLS).
    pub fn ca_pem(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|files| files.ca.clone())
    }

    /// The `(user, password)` the registry requires, if any.
    pub fn basic_auth(&self) -> Option<(&str, &str)> {
        self.basic_auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The registry's storage directory.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The file holding blob `digest` in the registry's storage: writing it changes what the
    /// registry serves for that digest (to test digest verification).
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        let prefix = hex.get(..2).unwrap_or(hex);
        self.storage().join(format!("docker/registry/v2/blobs/sha256/{prefix}/{hex}/data"))
    }

    /// Every request served so far (the registry writes a line when a request completes).
    pub fn access_log(&self) -> Vec<AccessLogEntry> {
        let text = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        text.lines().filter_map(parse_access_line).collect()
    }

    /// How many `GET`s of blob `digest` the registry answered (any repository).
    pub fn blob_gets(&self, digest: &str) -> usize {
        let suffix = format!("/blobs/{digest}");
        self.access_log().iter().filter(|e| e.method == "GET" && e.path.ends_with(&suffix)).count()
    }

    /// The registry's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn wait_listening(&mut self) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // `listening on 127.0.0.1:PORT` (`..., tls` with TLS).
            if let Some(address) = self.log().lines().find_map(|l| {
                let rest = l.split("msg=\"listening on ").nth(1)?;
                rest.split(['"', ',']).next().map(str::to_string)
            }) {
                return Ok(address);
            }
            if let Some(status) = self.child.try_wait().context("watching docker-registry")? {
                bail!("docker-registry exited ({status}) before listening:\n{}", self.log());
            }
            if Instant::now() > deadline {
                bail!("docker-registry did not start listening within 30 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let tls = self.tls.as_ref().map(|files| tls::client_config(&files.ca)).transpose()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match http_status(&self.address, "/v2/", tls.as_ref()) {
                Ok(200 | 401) => return Ok(()),
                Ok(_) | Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                other => bail!("docker-registry at {} does not answer /v2/ ({other:?}):\n{}", self.address, self.log()),
            }
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn executable() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("docker-registry")).find(|p| p.is_file())
}

/// The status of a `GET path` (one request on its own connection), over TLS with `tls`.
fn http_status(address: &str, path: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> std::io::Result<u16> {
    let tcp = TcpStream::connect(address)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut stream: Box<dyn ReadWrite> = match tls {
        None => Box::new(tcp),
        Some(config) => {
            let ip = tcp.peer_addr()?.ip();
            let connection = rustls::ClientConnection::new(config.clone(), ip.into()).map_err(std::io::Error::other)?;
            Box::new(rustls::StreamOwned::new(connection, tcp))
        }
    };
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status"))
}

/// A plain or TLS stream.
trait ReadWrite: Read + Write {}

impl<T: Read + Write> ReadWrite for T {}

/// `127.0.0.1 - - [date] "GET /v2/ HTTP/1.1" 200 2 "" "agent"` → the method, path and status.
fn parse_access_line(line: &str) -> Option<AccessLogEntry> {
    let mut quoted = line.split('"');
    let request = quoted.nth(1)?;
    let after = quoted.next()?;
    let mut parts = request.split(' ');
    let (method, path) = (parts.next()?, parts.next()?);
    let status = after.split_whitespace().next()?.parse().ok()?;
    Some(AccessLogEntry { method: method.to_string(), path: path.to_string(), status })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lines() {
        let line = r#"127.0.0.1 - - [07/Dec/2026:04:52:12 +0000] "GET /v2/team/web/blobs/sha256:ab HTTP/1.1" 200 2 "" "oci-client/0.18""#;
        assert_eq!(
            parse_access_line(line),
            Some(AccessLogEntry { method: "GET".into(), path: "/v2/team/web/blobs/sha256:ab".into(), status: 200 })
        );
        assert_eq!(parse_access_line("time=x level=info"), None);
    }
}
