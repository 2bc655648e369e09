//! The cluster CA and the certificates it issues (rcgen, ECDSA P-256).
//!
//! Each cluster has its own CA, created by `gantry up` (in the cluster's state dir) or by a
//! master's first start (in its data dir). Leaf certificates name whom they belong to in their
//! subject common name (see [`crate::Identity`]) and are short-lived; the master issues them:
//! its own server certificate at every start, and agents' certificates from their CSRs when they
//! join with the join token. Both kinds carry server and client authentication, since agents
//! also serve the master (sandbox files) and masters will talk to each other.

use crate::identity::Identity;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// File name of the CA certificate in a data or state dir.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key (0600).
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// The default lifetime of leaf certificates.
pub const LEAF_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// How far back a new certificate's validity starts, so peers whose clocks lag a few minutes
/// accept it.
pub const CLOCK_SKEW: Duration = Duration::from_secs(10 * 60);
/// The DNS name under which an agent's certificate is issued and checked: `<id>.agent.gantry`.
pub const AGENT_DNS_SUFFIX: &str = "agent.gantry";

/// A PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused to make or parse something.
    #[error("{what}: {source}")]
    Rcgen {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: rcgen::Error,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds something else than expected.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

fn rcgen_error(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> PkiError {
    let what = what.into();
    move |source| PkiError::Rcgen { what, source }
}

/// A certificate with its private key, both PEM.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert").field("key_pem", &"…").finish_non_exhaustive()
    }
}

/// The cluster CA: its certificate and signing key.
pub struct Ca {
    cert_pem: String,
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("hash", &self.hash()).finish_non_exhaustive()
    }
}

impl Ca {
    /// A new CA for the cluster `name`, valid for ten years.
    pub fn generate(name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_error("generating the CA key"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("gantry cluster CA {name}"));
        dn.push(DnType::OrganizationName, "gantry");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - to_time(CLOCK_SKEW);
        params.not_after = now + time::Duration::days(3650);
        params.serial_number = Some(serial());
        let cert = params.self_signed(&key).map_err(rcgen_error("signing the CA certificate"))?;
        let cert_pem = cert.pem();
        let cert_der = cert.der().to_vec();
        Ok(Self { cert_pem, cert_der, issuer: Issuer::new(params, key) })
    }

    /// The CA from its certificate and key (PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(rcgen_error("reading the CA key"))?;
        let cert_der = pem_certs(cert_pem).into_iter().next().ok_or_else(|| PkiError::Invalid {
            path: CA_CERT_FILE.to_string(),
            message: "no PEM certificate found".to_string(),
        })?;
        let issuer = Issuer::from_ca_cert_der(&cert_der.clone().into(), key)
            .map_err(rcgen_error("reading the CA certificate"))?;
        Ok(Self { cert_pem: cert_pem.to_string(), cert_der, issuer })
    }

    /// Loads `ca.pem` and `ca-key.pem` from `dir`; `None` when neither exists.
    pub fn load(dir: &Path) -> Result<Option<Self>, PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (false, false) => return Ok(None),
            (true, true) => {}
            (has_cert, _) => {
                let (present, missing) = if has_cert { (&cert_path, &key_path) } else { (&key_path, &cert_path) };
                return Err(PkiError::Invalid {
                    path: missing.display().to_string(),
                    message: format!(
                        "missing while {} exists: restore it, or remove both to create a new CA (every agent must then join again)",
                        present.display()
                    ),
                });
            }
        }
        if crate::files::readable_by_others(&key_path).map_err(io_error(&key_path))? {
            return Err(PkiError::Invalid {
                path: key_path.display().to_string(),
                message: format!("the CA key is readable by other users; run `chmod 600 {}`", key_path.display()),
            });
        }
        let cert = std::fs::read_to_string(&cert_path).map_err(io_error(&cert_path))?;
        let key = std::fs::read_to_string(&key_path).map_err(io_error(&key_path))?;
        Self::from_pem(&cert, &key).map(Some)
    }

    /// Writes `ca.pem` (0644) and `ca-key.pem` (0600) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        let key_path = dir.join(CA_KEY_FILE);
        crate::files::write_private(&key_path, self.issuer.key().serialize_pem().as_bytes())
            .map_err(io_error(&key_path))?;
        let cert_path = dir.join(CA_CERT_FILE);
        crate::files::write_with_mode(&cert_path, self.cert_pem.as_bytes(), 0o644).map_err(io_error(&cert_path))
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA key (PKCS#8 PEM); only `up` needs it, to hand it to the master it creates.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The SHA-256 of the CA certificate (DER), hex: what join tokens pin.
    pub fn hash(&self) -> String {
        crate::sha256_hex(&self.cert_der)
    }

    /// A new key and a certificate for `identity` valid for `lifetime`, with `dns` and `ips` as
    /// subject alternative names (a master's server certificate).
    pub fn issue(
        &self,
        identity: &Identity,
        dns: &[String],
        ips: &[IpAddr],
        lifetime: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_error("generating a key"))?;
        let params = leaf_params(identity, dns, ips, lifetime)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(rcgen_error(format!("issuing a certificate for {identity}")))?;
        Ok(IssuedCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Signs the public key of `csr_pem` for `identity`: the names asked for in the CSR are
    /// ignored, the identity decides them. Returns the certificate (PEM).
    pub fn sign_csr(&self, csr_pem: &str, identity: &Identity, lifetime: Duration) -> Result<String, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(rcgen_error("reading the CSR"))?;
        let dns = match identity {
            Identity::Agent(id) => vec![agent_dns_name(id)],
            _ => Vec::new(),
        };
        let params = leaf_params(identity, &dns, &[], lifetime)?;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(rcgen_error(format!("signing the CSR of {identity}")))?;
        Ok(cert.pem())
    }
}

/// The DNS name in agent `id`'s certificate, which the master checks when it connects to it.
pub fn agent_dns_name(id: &str) -> String {
    format!("{id}.{AGENT_DNS_SUFFIX}")
}

/// A new key pair and a CSR for it (both PEM); the key never leaves the requester.
pub fn new_csr() -> Result<(String, String), PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_error("generating a key"))?;
    let params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error("preparing a CSR"))?;
    let csr = params.serialize_request(&key).map_err(rcgen_error("writing the CSR"))?;
    let pem = csr.pem().map_err(rcgen_error("encoding the CSR"))?;
    Ok((pem, key.serialize_pem()))
}

/// A CSR (PEM) for an existing private key (PEM), to renew a certificate with the same key.
pub fn csr_for_key(key_pem: &str) -> Result<String, PkiError> {
    let key = KeyPair::from_pem(key_pem).map_err(rcgen_error("reading the key"))?;
    let params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error("preparing a CSR"))?;
    let csr = params.serialize_request(&key).map_err(rcgen_error("writing the CSR"))?;
    csr.pem().map_err(rcgen_error("encoding the CSR"))
}

/// The SHA-256 (hex) of the public key of a CSR (PEM): the key an agent id is bound to.
pub fn csr_key_hash(csr_pem: &str) -> Result<String, PkiError> {
    use rcgen::PublicKeyData;
    let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(rcgen_error("reading the CSR"))?;
    Ok(crate::sha256_hex(&csr.public_key.subject_public_key_info()))
}

/// Every certificate (DER) in a PEM text, in order.
pub fn pem_certs(pem: &str) -> Vec<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes()).filter_map(Result::ok).map(|c| c.to_vec()).collect()
}

/// Seconds since the Unix epoch at which the first certificate of `cert_pem` expires.
pub fn not_after(cert_pem: &str) -> Option<i64> {
    let der = pem_certs(cert_pem).into_iter().next()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

fn leaf_params(
    identity: &Identity,
    dns: &[String],
    ips: &[IpAddr],
    lifetime: Duration,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, identity.to_string());
    params.distinguished_name = dn;
    for name in dns {
        let name = name.clone().try_into().map_err(rcgen_error(format!("the DNS name `{name}`")))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    params.subject_alt_names.extend(ips.iter().copied().map(SanType::IpAddress));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - to_time(CLOCK_SKEW);
    params.not_after = now + to_time(lifetime);
    params.serial_number = Some(serial());
    Ok(params)
}

fn serial() -> SerialNumber {
    let mut bytes = crate::random_bytes::<16>();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn to_time(d: Duration) -> time::Duration {
    time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.display().to_string(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_survives_a_save_and_load_and_keeps_its_hash() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(Ca::load(dir.path()).expect("nothing yet").is_none());
        let ca = Ca::generate("test").expect("ca");
        ca.save(dir.path()).expect("save");
        let loaded = Ca::load(dir.path()).expect("load").expect("present");
        assert_eq!(loaded.hash(), ca.hash());
        assert!(!crate::files::readable_by_others(&dir.path().join(CA_KEY_FILE)).expect("mode"));
        std::fs::remove_file(dir.path().join(CA_KEY_FILE)).expect("remove key");
        let err = Ca::load(dir.path()).expect_err("half a CA").to_string();
        assert!(err.contains("missing while"), "{err}");
    }

    #[test]
    fn a_signed_csr_names_the_identity_the_ca_chose_not_the_one_asked_for() {
        let ca = Ca::generate("test").expect("ca");
        let (csr, _key) = new_csr().expect("csr");
        let cert = ca.sign_csr(&csr, &Identity::Agent("a1".to_string()), LEAF_LIFETIME).expect("sign");
        let der = pem_certs(&cert).pop().expect("one cert");
        assert_eq!(Identity::from_cert_der(&der).expect("identity"), Identity::Agent("a1".to_string()));
        let expires = not_after(&cert).expect("expiry");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!((expires - now - 30 * 24 * 3600).abs() < 60, "30 days");
        assert_eq!(csr_key_hash(&csr).expect("hash").len(), 64);
    }

    #[test]
    fn a_renewal_csr_keeps_the_key() {
        let (csr, key) = new_csr().expect("csr");
        let again = csr_for_key(&key).expect("renewal csr");
        assert_eq!(csr_key_hash(&csr).expect("first"), csr_key_hash(&again).expect("second"));
    }
}
