//! What can go wrong pulling or keeping an image, in words a user can act on. Each variant says
//! whether retrying can help ([`ImageError::is_transient`]): the agent retries transient
//! failures with the app's backoff and fails the launch at once on the others.

use std::io;
use std::path::{Path, PathBuf};

/// Why an image could not be pulled, unpacked or kept.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image reference is not of the form `[registry/]repository[:tag][@sha256:...]`.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry has no such repository, tag or digest.
    #[error("image {reference} not found: {what}")]
    NotFound {
        /// The image reference, normalized.
        reference: String,
        /// What the registry does not have (the repository, the tag or the digest).
        what: String,
    },
    /// The reference names a multi-platform index without a manifest for this platform.
    #[error(
        "image {reference} has no manifest for {wanted}; its index has: {}",
        if available.is_empty() { "no platforms".to_string() } else { available.join(", ") }
    )]
    NoPlatform {
        /// The image reference, normalized.
        reference: String,
        /// The platform this store pulls for, `os/architecture`.
        wanted: String,
        /// The platforms the index offers, `os/architecture[/variant]`.
        available: Vec<String>,
    },
    /// The registry answered 401 or 403.
    #[error("{}", unauthorized_message(registry, reference, credentials.as_deref(), *had_credentials))]
    Unauthorized {
        /// The registry's `host[:port]`.
        registry: String,
        /// The image reference, normalized.
        reference: String,
        /// Where the refused credentials came from (a secret's name), when known.
        credentials: Option<String>,
        /// Whether any credentials were sent.
        had_credentials: bool,
    },
    /// The registry could not be reached (connection refused, reset, timed out); transient.
    #[error("registry {registry} is unreachable for image {reference}: {reason}")]
    Unreachable {
        /// The registry's `host[:port]`.
        registry: String,
        /// The image reference, normalized.
        reference: String,
        /// The network error.
        reason: String,
    },
    /// The registry's HTTPS certificate did not verify: issued by a CA this host does not
    /// trust, for another name, or expired.
    #[error("registry {registry}'s TLS certificate is not trusted for image {reference} ({reason}): {fix}")]
    UntrustedCertificate {
        /// The registry's `host[:port]`.
        registry: String,
        /// The image reference, normalized.
        reference: String,
        /// What rustls found wrong with the certificate.
        reason: String,
        /// What to change so that it verifies.
        fix: String,
    },
    /// A registry CA file ([`crate::StoreOptions::registry_ca_certs`]) is missing, unreadable
    /// or holds no valid certificate; the store does not open.
    #[error("registry CA file {}: {reason}", path.display())]
    RegistryCa {
        /// The file.
        path: PathBuf,
        /// What is wrong with it and how to fix it.
        reason: String,
    },
    /// No HTTPS client could be made for a registry (e.g. the host has no trusted roots).
    #[error("cannot set up HTTPS to registry {registry}: {reason}")]
    TlsSetup {
        /// The registry's `host[:port]`.
        registry: String,
        /// Why, and how to fix it.
        reason: String,
    },
    /// The registry answered with an error not covered above (transient for 5xx and 429).
    #[error("registry {registry} failed on image {reference}{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Registry {
        /// The registry's `host[:port]`.
        registry: String,
        /// The image reference, normalized.
        reference: String,
        /// The HTTP status, when there was one.
        status: Option<u16>,
        /// What the registry said.
        message: String,
    },
    /// A blob's content does not match the digest it was asked for; nothing was kept.
    #[error(
        "{what} {expected} of image {reference} does not match its digest: the registry sent \
         content with digest {got}; the blob in the registry is corrupt or was replaced"
    )]
    DigestMismatch {
        /// The image reference, normalized.
        reference: String,
        /// Which blob: `layer`, `config` or `manifest`.
        what: &'static str,
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        got: String,
    },
    /// The disk filled while writing; temporary files were removed. Transient: pruning or
    /// another task's exit can free space.
    #[error(
        "no space left on device writing {} for image {reference}: free disk space or lower the \
         image cache size",
        path.display()
    )]
    NoSpace {
        /// The image reference, normalized (empty where no single image was concerned).
        reference: String,
        /// What was being written.
        path: PathBuf,
    },
    /// The manifest, config or a layer is malformed or not a container image.
    #[error("image {reference} is not a usable container image: {reason}")]
    BadImage {
        /// The image reference, normalized.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A local file operation of the store failed.
    #[error("image store: {action} {}: {source}", path.display())]
    Io {
        /// What the store was doing.
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl ImageError {
    /// Whether retrying the same pull later can succeed without anyone changing the image,
    /// the registry's content or the credentials: unreachable registries, 5xx and 429 answers,
    /// and a full disk.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::NoSpace { .. } => true,
            Self::Registry { status, .. } => status.is_none_or(|s| s >= 500 || s == 429),
            _ => false,
        }
    }

    /// A local I/O error, as [`ImageError::NoSpace`] when the disk (or a quota) is full.
    pub(crate) fn io(reference: &str, action: &'static str, path: &Path, source: io::Error) -> Self {
        let full = matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
            || matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded);
        if full {
            Self::NoSpace { reference: reference.to_string(), path: path.to_path_buf() }
        } else {
            Self::Io { action, path: path.to_path_buf(), source }
        }
    }
}

fn unauthorized_message(registry: &str, reference: &str, credentials: Option<&str>, had: bool) -> String {
    match (credentials, had) {
        (Some(secret), _) => format!(
            "registry {registry} refused the credentials of secret {secret} for image {reference}: \
             check the user name and password in that secret and that they may pull this repository"
        ),
        (None, true) => format!(
            "registry {registry} refused the credentials given for image {reference}: check the \
             user name and password and that they may pull this repository"
        ),
        (None, false) => format!(
            "registry {registry} needs credentials for image {reference}: name a secret holding \
             them with registry_auth in the [container] section"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_kinds() {
        let unreachable = ImageError::Unreachable {
            registry: "r".into(),
            reference: "r/a:1".into(),
            reason: "connection refused".into(),
        };
        assert!(unreachable.is_transient());
        let server = |status| ImageError::Registry {
            registry: "r".into(),
            reference: "r/a:1".into(),
            status,
            message: "m".into(),
        };
        assert!(server(Some(503)).is_transient());
        assert!(server(Some(429)).is_transient());
        assert!(!server(Some(400)).is_transient());
        let missing = ImageError::NotFound { reference: "r/a:1".into(), what: "no tag 1".into() };
        assert!(!missing.is_transient());
    }

    #[test]
    fn enospc_is_no_space() {
        let err = ImageError::io("r/a:1", "writing", Path::new("/x"), io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(matches!(err, ImageError::NoSpace { .. }));
        assert!(err.is_transient());
        let other = ImageError::io("r/a:1", "writing", Path::new("/x"), io::Error::from_raw_os_error(libc::EACCES));
        assert!(matches!(other, ImageError::Io { .. }));
    }

    #[test]
    fn unauthorized_names_the_secret_or_asks_for_one() {
        let refused = ImageError::Unauthorized {
            registry: "reg:5000".into(),
            reference: "reg:5000/team/web:1.4".into(),
            credentials: Some("registry/team".into()),
            had_credentials: true,
        };
        assert!(refused.to_string().contains("refused the credentials of secret registry/team"));
        let needs = ImageError::Unauthorized {
            registry: "reg:5000".into(),
            reference: "reg:5000/team/web:1.4".into(),
            credentials: None,
            had_credentials: false,
        };
        assert!(needs.to_string().contains("needs credentials"), "{needs}");
    }
}
