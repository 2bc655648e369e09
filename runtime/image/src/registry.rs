//! The registry side of a pull, over `oci-client`: one client per registry and credentials
//! (plain HTTP for loopback and the configured insecure registries, HTTPS otherwise, trusting
//! the system's roots and the store's registry CAs), manifest and blob requests, and the
//! translation of its errors into [`ImageError`]s a user can act on.

use crate::error::ImageError;
use crate::manifest::ACCEPTED;
use crate::options::{RegistryAuth, StoreOptions, is_loopback};
use crate::reference::ImageReference;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol, SizedStream};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth as OciAuth;
use rustls::CertificateError;
use rustls::pki_types::CertificateDer;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A registry and the user name and password its client sends.
type ClientKey = (String, Option<(String, String)>);

/// Clients by registry and credentials (oci-client keeps one credential per registry per
/// client, so different credentials need different clients).
pub(crate) struct Registries {
    insecure: Vec<String>,
    loopback_plain_http: bool,
    /// Extra roots for HTTPS (DER), from [`StoreOptions::registry_ca_certs`].
    extra_roots: Vec<Certificate>,
    clients: Mutex<HashMap<ClientKey, Arc<oci_client::Client>>>,
}

impl std::fmt::Debug for Registries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let clients = self.clients.lock().map(|c| c.len()).unwrap_or_default();
        f.debug_struct("Registries")
            .field("insecure", &self.insecure)
            .field("loopback_plain_http", &self.loopback_plain_http)
            .field("extra_roots", &self.extra_roots.len())
            .field("clients", &clients)
            .finish()
    }
}

/// One pull's view of a registry: the client, the credentials and the image for messages.
pub(crate) struct Session<'a> {
    client: Arc<oci_client::Client>,
    oci_auth: OciAuth,
    auth: Option<&'a RegistryAuth>,
    reference: &'a ImageReference,
}

impl Registries {
    /// The registries of a store with `options`, trusting `extra_roots` (read from
    /// `options.registry_ca_certs` by [`crate::ca::load`]) besides the system's roots.
    pub(crate) fn new(options: &StoreOptions, extra_roots: Vec<CertificateDer<'static>>) -> Self {
        gantry_trust::tls::install_default_provider();
        let extra_roots = extra_roots
            .into_iter()
            .map(|der| Certificate { encoding: CertificateEncoding::Der, data: der.to_vec() })
            .collect();
        Self {
            insecure: options.insecure_registries.clone(),
            loopback_plain_http: options.loopback_plain_http,
            extra_roots,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `registry` is spoken to over plain HTTP.
    fn plain_http(&self, registry: &str) -> bool {
        (self.loopback_plain_http && is_loopback(registry)) || self.insecure.iter().any(|r| r == registry)
    }

    /// A session for pulling `reference` with `auth`.
    pub(crate) fn session<'a>(
        &self,
        reference: &'a ImageReference,
        auth: Option<&'a RegistryAuth>,
    ) -> Result<Session<'a>, ImageError> {
        let registry = reference.registry.clone();
        let key = (registry.clone(), auth.map(|a| (a.username.clone(), a.password.clone())));
        let mut clients = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let client = match clients.get(&key) {
            Some(client) => client.clone(),
            None => {
                let client = Arc::new(self.client(&registry)?);
                clients.insert(key, client.clone());
                client
            }
        };
        let oci_auth = match auth {
            Some(a) => OciAuth::Basic(a.username.clone(), a.password.clone()),
            None => OciAuth::Anonymous,
        };
        Ok(Session { client, oci_auth, auth, reference })
    }

    /// A new client for `registry` (oci-client's `Client::new` would fall back to a default
    /// configuration, without the extra roots, when this one cannot be built).
    fn client(&self, registry: &str) -> Result<oci_client::Client, ImageError> {
        let plain = self.plain_http(registry);
        let config = ClientConfig {
            protocol: if plain { ClientProtocol::Http } else { ClientProtocol::Https },
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            user_agent: concat!("gantry/", env!("CARGO_PKG_VERSION")),
            extra_root_certificates: self.extra_roots.clone(),
            ..ClientConfig::default()
        };
        oci_client::Client::try_from(config).map_err(|e| ImageError::TlsSetup {
            registry: registry.to_string(),
            reason: format!(
                "{e}: install the system's CA certificates (Debian: ca-certificates) or give the \
                 registry's CA with --registry-ca"
            ),
        })
    }
}

impl Session<'_> {
    /// The manifest (or index) at `reference` and its digest, checked against the reference's
    /// digest and the registry's `Docker-Content-Digest` by oci-client.
    pub(crate) async fn manifest(&self, reference: &ImageReference) -> Result<(Vec<u8>, String), ImageError> {
        let oci = reference.to_oci();
        match self.client.pull_manifest_raw(&oci, &self.oci_auth, &ACCEPTED).await {
            Ok((bytes, digest)) => Ok((bytes.to_vec(), digest)),
            Err(e) => match self.error(e, "manifest", reference) {
                ImageError::NotFound { reference: name, .. } if self.repository_unknown(&oci).await => {
                    Err(ImageError::NotFound {
                        reference: name,
                        what: format!("registry {} has no repository {}", reference.registry, reference.repository),
                    })
                }
                other => Err(other),
            },
        }
    }

    /// Whether the registry says the repository itself does not exist (distribution answers
    /// MANIFEST_UNKNOWN for a manifest of an unknown repository; its tag list says which).
    async fn repository_unknown(&self, oci: &oci_client::Reference) -> bool {
        match self.client.list_tags(oci, &self.oci_auth, Some(1), None).await {
            Err(OciDistributionError::RegistryError { envelope, .. }) => {
                envelope.errors.first().is_some_and(|e| e.code == OciErrorCode::NameUnknown)
            }
            _ => false,
        }
    }

    /// A stream of the blob `digest` (verified again by the caller while it is written).
    pub(crate) async fn blob(&self, digest: &str, size: u64) -> Result<SizedStream, ImageError> {
        let descriptor = OciDescriptor {
            digest: digest.to_string(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            ..Default::default()
        };
        let oci = self.reference.to_oci();
        // Authenticate the session first: oci-client asks the registry for a token per request
        // kind only once it holds credentials for the registry.
        self.client.store_auth_if_needed(oci.resolve_registry(), &self.oci_auth).await;
        self.client
            .pull_blob_stream(&oci, &descriptor)
            .await
            .map_err(|e| self.error(e, "blob", &self.reference.with_digest(digest)))
    }

    /// Translates an oci-client error about `what` (`manifest` or `blob`) of `target`.
    pub(crate) fn error(&self, err: OciDistributionError, what: &str, target: &ImageReference) -> ImageError {
        let registry = self.reference.registry.clone();
        let reference = self.reference.to_string();
        let unauthorized = || ImageError::Unauthorized {
            registry: registry.clone(),
            reference: reference.clone(),
            credentials: self.auth.and_then(|a| a.source.clone()),
            had_credentials: self.auth.is_some(),
        };
        let not_found = |code: Option<&OciErrorCode>| {
            let what = match (code, what) {
                (Some(OciErrorCode::NameUnknown), _) => {
                    format!("registry {registry} has no repository {}", target.repository)
                }
                (_, "blob") => format!(
                    "registry {registry} has no blob {} in repository {} (the image was pushed incompletely)",
                    target.digest.as_deref().unwrap_or_default(),
                    target.repository
                ),
                _ => match (&target.digest, &target.tag) {
                    (Some(digest), _) => {
                        format!("repository {} on {registry} has no manifest {digest}", target.repository)
                    }
                    (None, tag) => format!(
                        "repository {} on {registry} has no tag {}",
                        target.repository,
                        tag.as_deref().unwrap_or("latest")
                    ),
                },
            };
            ImageError::NotFound { reference: reference.clone(), what }
        };
        let registry_error = |status: Option<u16>, message: String| ImageError::Registry {
            registry: registry.clone(),
            reference: reference.clone(),
            status,
            message,
        };
        match err {
            OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
                unauthorized()
            }
            OciDistributionError::ImageManifestNotFoundError(_) => not_found(None),
            OciDistributionError::RegistryError { envelope, .. } => {
                let code = envelope.errors.first().map(|e| &e.code);
                match code {
                    Some(
                        OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound,
                    ) => not_found(code),
                    Some(OciErrorCode::Unauthorized | OciErrorCode::Denied) => unauthorized(),
                    Some(OciErrorCode::Toomanyrequests) => registry_error(Some(429), envelope.to_string()),
                    _ => registry_error(Some(400), envelope.to_string()),
                }
            }
            OciDistributionError::ServerError { code, message, .. } => match code {
                401 | 403 => unauthorized(),
                404 => not_found(None),
                _ => registry_error(Some(code), message),
            },
            OciDistributionError::RequestError(e) => match untrusted_certificate(&e, &registry) {
                Some((reason, fix)) => ImageError::UntrustedCertificate { registry, reference, reason, fix },
                None => network_error(&registry, &reference, &e),
            },
            OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError {
                expected,
                actual,
            }) => ImageError::DigestMismatch {
                reference,
                what: if what == "blob" { "layer" } else { "manifest" },
                expected,
                got: actual,
            },
            OciDistributionError::IoError(e) => registry_error(None, format!("reading the answer failed: {e}")),
            other => ImageError::BadImage { reference, reason: other.to_string() },
        }
    }
}

/// The certificate problem behind a failed request, if that is why it failed: what rustls
/// said and what to change. rustls' error sits inside `io::Error`s (nested), whose `source()`
/// skips what they wrap, hence `get_ref()` for them.
fn untrusted_certificate(err: &(dyn std::error::Error + 'static), registry: &str) -> Option<(String, String)> {
    let mut next = Some(err);
    while let Some(current) = next {
        if let Some(rustls::Error::InvalidCertificate(problem)) = current.downcast_ref::<rustls::Error>() {
            return Some((problem.to_string(), certificate_fix(problem, registry)));
        }
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    None
}

fn certificate_fix(problem: &CertificateError, registry: &str) -> String {
    match problem {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
            "the certificate does not name {registry}: reissue it with that name among its subject \
             alternative names, or name the registry in the image reference as the certificate does"
        ),
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => {
            "the certificate is outside its validity period: renew it, or correct this host's clock".to_string()
        }
        _ => format!(
            "if {registry}'s certificate is issued by a private CA, start the agent with \
             --registry-ca FILE naming that CA's certificate (PEM)"
        ),
    }
}

/// A transport-level failure: the registry is unreachable (transient).
pub(crate) fn network_error(registry: &str, reference: &str, err: &(dyn std::error::Error + 'static)) -> ImageError {
    let mut reason = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    ImageError::Unreachable { registry: registry.to_string(), reference: reference.to_string(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_plain_http_unless_turned_off() {
        let default = Registries::new(&StoreOptions::default(), Vec::new());
        assert!(default.plain_http("127.0.0.1:5000"));
        assert!(!default.plain_http("registry.example.com"));
        let options = StoreOptions {
            loopback_plain_http: false,
            insecure_registries: vec!["localhost:5001".to_string()],
            ..StoreOptions::default()
        };
        let https = Registries::new(&options, Vec::new());
        assert!(!https.plain_http("127.0.0.1:5000"));
        assert!(https.plain_http("localhost:5001"), "insecure_registries still speak plain HTTP");
    }

    #[test]
    fn certificate_problems_are_found_inside_nested_io_errors() {
        let wrapped = |problem| {
            let tls = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::InvalidCertificate(problem));
            std::io::Error::other(tls)
        };
        let (reason, fix) =
            untrusted_certificate(&wrapped(CertificateError::UnknownIssuer), "reg:5000").expect("found");
        assert_eq!(reason, "UnknownIssuer");
        assert!(fix.contains("--registry-ca"), "{fix}");
        let (_, fix) = untrusted_certificate(&wrapped(CertificateError::NotValidForName), "reg:5000").expect("found");
        assert!(fix.contains("does not name reg:5000"), "{fix}");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(untrusted_certificate(&refused, "reg:5000").is_none());
    }
}
