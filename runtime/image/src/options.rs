//! The knobs of a store and of one pull: the cache's size, which registries speak plain HTTP,
//! which CAs registries' certificates may come from, the platform to pull for, the pull policy
//! and registry credentials.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// The default cache size above which [`crate::ImageStore::prune`] has work: 20 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 20 << 30;

/// How a store is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The cache size the agent prunes down to (least recently used images first); the store
    /// itself never removes an image on its own, because only the caller knows which are in use.
    pub max_bytes: u64,
    /// Registries (`host[:port]`, as written in references) spoken to over plain HTTP.
    /// Loopback registries are too, unless [`StoreOptions::loopback_plain_http`] is off.
    pub insecure_registries: Vec<String>,
    /// Whether loopback registries (`127.0.0.0/8`, `::1`, `localhost`) speak plain HTTP (the
    /// default: a registry on the host itself rarely has a certificate). Off, they speak HTTPS
    /// like any other registry, unless listed in [`StoreOptions::insecure_registries`].
    pub loopback_plain_http: bool,
    /// PEM files of CA certificates (each may hold several) that registries' HTTPS certificates
    /// may be issued by, on top of the system's trusted roots: for registries behind a private
    /// CA. Read by [`crate::ImageStore::open`], which fails naming the file when one is missing,
    /// unreadable or holds no valid certificate.
    pub registry_ca_certs: Vec<PathBuf>,
    /// The platform whose manifest is picked from a multi-platform index.
    pub platform: Platform,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            insecure_registries: Vec::new(),
            loopback_plain_http: true,
            registry_ca_certs: Vec::new(),
            platform: Platform::current(),
        }
    }
}

/// An operating system and CPU architecture, in OCI's names (`linux`, `amd64`, `arm64`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// The operating system, e.g. `linux`.
    pub os: String,
    /// The CPU architecture, e.g. `amd64`.
    pub architecture: String,
}

impl Platform {
    /// A platform from its two names.
    pub fn new(os: &str, architecture: &str) -> Self {
        Self { os: os.to_string(), architecture: architecture.to_string() }
    }

    /// This machine: `linux/<arch>` in OCI's architecture names.
    pub fn current() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "loongarch64" => "loong64",
            other => other,
        };
        Self::new(std::env::consts::OS, architecture)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)
    }
}

/// Whether a pull asks the registry when the image is already cached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Use the cached image for this reference when there is one; ask the registry otherwise.
    #[default]
    IfNotPresent,
    /// Ask the registry for the reference's current manifest every time (blobs already cached
    /// are not fetched again).
    Always,
}

/// Registry credentials for HTTP basic auth (also used to get a bearer token where the
/// registry's challenge asks for one).
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
    /// Where they came from, e.g. the secret `registry/team`; named in error messages.
    pub source: Option<String>,
}

impl RegistryAuth {
    /// Basic-auth credentials of unnamed origin.
    pub fn basic(username: &str, password: &str) -> Self {
        Self { username: username.to_string(), password: password.to_string(), source: None }
    }

    /// Names where the credentials came from (a secret's name), for error messages.
    pub fn from_secret(mut self, secret: &str) -> Self {
        self.source = Some(secret.to_string());
        self
    }
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

/// Whether `registry` (`host[:port]`) is on loopback: `localhost`, `127.0.0.0/8` or `::1`.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => registry.split(':').next().unwrap_or_default(),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("127.3.4.5"));
        assert!(is_loopback("localhost:80"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }

    #[test]
    fn debug_hides_the_password() {
        let auth = RegistryAuth::basic("u", "hunter2").from_secret("registry/team");
        assert!(!format!("{auth:?}").contains("hunter2"));
    }

    #[test]
    fn pull_policy_names() {
        assert_eq!(serde_json::to_string(&PullPolicy::IfNotPresent).expect("json"), "\"if-not-present\"");
    }
}
