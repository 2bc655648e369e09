//! The registry harness's TLS mode: a throwaway CA and a server certificate for `127.0.0.1`
//! and `localhost` signed by it, written to the registry's directory, and a rustls client
//! configuration trusting that CA alone (the readiness probe's; the pusher's is reqwest's).

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The PEM files of a TLS registry.
#[derive(Debug, Clone)]
pub(super) struct TlsFiles {
    /// The CA certificate clients must trust.
    pub(super) ca: PathBuf,
    /// The server certificate (for `127.0.0.1` and `localhost`).
    pub(super) cert: PathBuf,
    /// The server certificate's private key (PKCS#8).
    pub(super) key: PathBuf,
}

/// Makes a new CA and a server certificate it signs, and writes both (and the key) to `dir`.
pub(super) fn write_certificates(dir: &Path) -> anyhow::Result<TlsFiles> {
    let ca_key = KeyPair::generate().context("generating the test CA's key")?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("gantry lab registry CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key).context("signing the test CA")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().context("generating the registry's key")?;
    let mut server_params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .context("naming the registry's certificate")?;
    server_params.distinguished_name = name("127.0.0.1");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server_params.signed_by(&server_key, &issuer).context("signing the registry's certificate")?;

    let files = TlsFiles { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server-key.pem") };
    std::fs::write(&files.ca, ca_cert.pem()).context("writing the test CA")?;
    std::fs::write(&files.cert, server_cert.pem()).context("writing the registry's certificate")?;
    std::fs::write(&files.key, server_key.serialize_pem()).context("writing the registry's key")?;
    Ok(files)
}

/// A rustls client configuration trusting only the CA in `ca_pem`.
pub(super) fn client_config(ca_pem: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).context("reading the test CA")? {
        roots.add(cert.context("parsing the test CA")?).context("trusting the test CA")?;
    }
    // ring, the provider of every gantry link (deprecated by rustls only for its lack of
    // post-quantum key exchange).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}
