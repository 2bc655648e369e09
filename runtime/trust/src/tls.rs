//! The rustls configurations of every link: TLS 1.3 only, the ring provider, and the cluster CA
//! as the only root. Servers (the master's API, an agent's file endpoint) present their leaf
//! with the CA behind it and verify client certificates against the CA; clients trust the CA
//! alone and present a certificate where they have one.

use crate::identity::Identity;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::sync::Arc;

/// A TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM input holds no certificate or key.
    #[error("{0}")]
    Pem(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Makes ring the process-wide default provider, for HTTP clients built without a TLS
/// configuration of their own (health checks of tasks over plain HTTP still build one).
/// Idempotent; every configuration here calls it.
pub fn install_default_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = ring_provider().install_default();
    });
}

/// The crypto provider of every link.
pub fn provider() -> Arc<CryptoProvider> {
    install_default_provider();
    Arc::new(ring_provider())
}

fn ring_provider() -> CryptoProvider {
    // ring (rather than aws-lc-rs) keeps the build free of a C toolchain step and the binary
    // self-contained; its lack of post-quantum key exchange is why rustls marks it deprecated.
    #[allow(deprecated)]
    rustls::crypto::ring::default_provider()
}

fn certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes()).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TlsError::Pem(format!("{what}: no PEM certificate found")));
    }
    Ok(certs)
}

fn key(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| TlsError::Pem(format!("{what}: no PEM private key ({e})")))
}

fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(ca_pem, "the cluster CA")? {
        roots.add(cert)?;
    }
    Ok(Arc::new(roots))
}

/// What every link offers by ALPN: HTTP/2, else HTTP/1.1.
fn alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

/// A server presenting `cert_pem` (with the CA appended to its chain) that verifies client
/// certificates against `ca_pem`; clients without a certificate are admitted only when
/// `optional_client_cert` (they must then show a token).
pub fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    optional_client_cert: bool,
) -> Result<ServerConfig, TlsError> {
    server_config_with(ca_pem, SwappableIdentity::new(ca_pem, cert_pem, key_pem)?, optional_client_cert)
}

/// A client trusting only `ca_pem`, presenting `identity` (certificate and key PEM) if given.
pub fn client_config(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<ClientConfig, TlsError> {
    match identity {
        Some((cert, key_pem)) => client_config_with(ca_pem, SwappableIdentity::new(ca_pem, cert, key_pem)?),
        None => {
            let mut config = ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13])?
                .with_root_certificates(roots(ca_pem)?)
                .with_no_client_auth();
            config.alpn_protocols = alpn();
            Ok(config)
        }
    }
}

/// A client that trusts no root at all: it reaches no server over TLS. What a client without
/// the cluster CA gets, so it fails closed (with rustls' "unknown issuer") instead of open.
pub fn no_roots_client_config() -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn();
    Ok(config)
}

/// A client that accepts any server certificate. Only for fetching the cluster CA before a join,
/// whose hash is then checked against the join token: never for anything else.
pub fn ca_fetch_client_config() -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn();
    Ok(config)
}

/// A certificate and key that can be replaced while clients and servers built on it keep
/// running: a renewed certificate is presented on every handshake from then on. It serves as a
/// client certificate ([`client_config_with`]) and as a server certificate
/// ([`server_config_with`]).
pub struct SwappableIdentity(std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>);

impl std::fmt::Debug for SwappableIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwappableIdentity").finish_non_exhaustive()
    }
}

fn certified_key(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    let mut chain = certs(cert_pem, "the certificate")?;
    chain.extend(certs(ca_pem, "the cluster CA")?);
    let signing = provider().key_provider.load_private_key(key(key_pem, "the key")?)?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(chain, signing)))
}

impl SwappableIdentity {
    /// `cert_pem` (with `ca_pem` behind it in the chain) and its key.
    pub fn new(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self(std::sync::RwLock::new(certified_key(ca_pem, cert_pem, key_pem)?))))
    }

    /// Presents `cert_pem` and its key from now on.
    pub fn replace(&self, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<(), TlsError> {
        let key = certified_key(ca_pem, cert_pem, key_pem)?;
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = key;
        Ok(())
    }

    fn current(&self) -> Arc<rustls::sign::CertifiedKey> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl rustls::client::ResolvesClientCert for SwappableIdentity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl rustls::server::ResolvesServerCert for SwappableIdentity {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current())
    }
}

/// A client trusting only `ca_pem` that presents `identity`, whatever it holds at the time.
pub fn client_config_with(ca_pem: &str, identity: Arc<SwappableIdentity>) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_cert_resolver(identity);
    config.alpn_protocols = alpn();
    Ok(config)
}

/// A server presenting `identity`, whatever it holds at the time, that verifies client
/// certificates against `ca_pem`; clients without one are admitted only when
/// `optional_client_cert`.
pub fn server_config_with(
    ca_pem: &str,
    identity: Arc<SwappableIdentity>,
    optional_client_cert: bool,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let builder = WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider.clone());
    let verifier = if optional_client_cert { builder.allow_unauthenticated().build()? } else { builder.build()? };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(identity);
    config.alpn_protocols = alpn();
    Ok(config)
}

/// The identity of the first certificate a peer presented, if any.
pub fn peer_identity(certs: Option<&[CertificateDer<'_>]>) -> Option<Identity> {
    let first = certs?.first()?;
    Identity::from_cert_der(first).ok()
}

#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, LEAF_LIFETIME};

    #[test]
    fn configs_build_from_issued_material() {
        let ca = Ca::generate("t").expect("ca");
        let server = ca
            .issue(
                &Identity::Master("m".into()),
                &["localhost".into()],
                &["127.0.0.1".parse().expect("ip")],
                LEAF_LIFETIME,
            )
            .expect("issue");
        server_config(ca.cert_pem(), &server.cert_pem, &server.key_pem, true).expect("server");
        client_config(ca.cert_pem(), Some((&server.cert_pem, &server.key_pem))).expect("client with identity");
        client_config(ca.cert_pem(), None).expect("client");
        assert!(client_config("junk", None).is_err());
        let der = crate::pki::pem_certs(&server.cert_pem).pop().expect("cert");
        let certs = [CertificateDer::from(der)];
        assert_eq!(peer_identity(Some(&certs)), Some(Identity::Master("m".into())));
        assert_eq!(peer_identity(None), None);
    }
}
