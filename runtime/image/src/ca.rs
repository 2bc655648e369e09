//! The extra CA certificates registries' HTTPS certificates may be issued by
//! ([`crate::StoreOptions::registry_ca_certs`]): read from PEM files once, when the store
//! opens, and checked the way rustls will use them, so a wrong file fails there, naming it,
//! rather than at every pull.

use crate::error::ImageError;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::{Path, PathBuf};

/// What to give instead, appended to every complaint about a file.
const FIX: &str = "give --registry-ca a PEM file of the registry's CA certificate(s) \
                   (-----BEGIN CERTIFICATE-----); convert a DER file with \
                   `openssl x509 -inform der -in FILE -out FILE.pem`";

/// Every certificate (DER) of `paths`, in order.
pub(crate) fn load(paths: &[PathBuf]) -> Result<Vec<CertificateDer<'static>>, ImageError> {
    let mut all = Vec::new();
    for path in paths {
        all.extend(load_file(path)?);
    }
    Ok(all)
}

fn load_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, ImageError> {
    let invalid = |reason: String| ImageError::RegistryCa { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|e| {
        invalid(format!("cannot be read ({e}): fix the path given with --registry-ca or let the agent read it"))
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("is not valid PEM ({e}): {FIX}")))?;
    if certs.is_empty() {
        return Err(invalid(format!("holds no certificate: {FIX}")));
    }
    for (index, cert) in certs.iter().enumerate() {
        rustls::RootCertStore::empty().add(cert.clone()).map_err(|e| {
            invalid(format!("certificate {} of {} is not a usable CA certificate ({e}): {FIX}", index + 1, certs.len()))
        })?;
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    fn reason(paths: &[PathBuf]) -> String {
        match load(paths) {
            Err(e @ ImageError::RegistryCa { .. }) => e.to_string(),
            other => panic!("expected a RegistryCa error, got {other:?}"),
        }
    }

    #[test]
    fn no_files_no_certificates() {
        assert!(load(&[]).expect("nothing to read").is_empty());
    }

    #[test]
    fn a_missing_file_is_named_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("corp-ca.pem");
        let message = reason(std::slice::from_ref(&missing));
        assert!(message.contains(&missing.display().to_string()), "{message}");
        assert!(message.contains("cannot be read") && message.contains("--registry-ca"), "{message}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_only = file(dir.path(), "key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        assert!(reason(&[key_only]).contains("holds no certificate"));
        let text = file(dir.path(), "notes.txt", "not a certificate\n");
        assert!(reason(&[text]).contains("holds no certificate"));
    }

    #[test]
    fn garbage_inside_a_certificate_block_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let garbage = file(
            dir.path(),
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        );
        let message = reason(&[garbage]);
        assert!(message.contains("certificate 1 of 1 is not a usable CA certificate"), "{message}");
    }
}
