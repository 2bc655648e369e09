//! Pulls over HTTPS from a real registry (Debian's docker-registry on loopback, serving a
//! certificate from a CA made for the test): trusted through `registry_ca_certs`, refused with
//! a way out without it, and together with basic auth.

mod support;

use gantry_image::{ImageError, PullPolicy, RegistryAuth, StoreOptions};
use gantry_lab::registry::{RegistryOptions, TestRegistry};
use std::path::PathBuf;

fn tls_registry(basic_auth: Option<(&str, &str)>) -> Option<TestRegistry> {
    let basic_auth = basic_auth.map(|(u, p)| (u.to_string(), p.to_string()));
    support::registry_with(RegistryOptions { basic_auth, tls: true })
}

/// A store that speaks HTTPS to loopback registries, trusting `ca_files` besides the system.
fn https_store(ca_files: Vec<PathBuf>) -> (tempfile::TempDir, gantry_image::ImageStore) {
    support::store_with(StoreOptions { loopback_plain_http: false, registry_ca_certs: ca_files, ..Default::default() })
}

#[tokio::test]
async fn pull_over_https_trusting_the_registry_ca() {
    let (Some(registry), Some(busybox)) = (tls_registry(None), support::busybox()) else { return };
    let pushed = busybox.push(&registry, "team/web:tls").await.expect("push over https");
    let ca = registry.ca_pem().expect("a TLS registry has a CA");
    // A bundle, as companies ship them: another CA first, then the registry's.
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("bundle.pem");
    let other = gantry_trust::Ca::generate("unrelated").expect("another CA");
    let registry_ca = std::fs::read_to_string(&ca).expect("read CA");
    std::fs::write(&bundle, format!("{}{registry_ca}", other.cert_pem())).expect("write bundle");
    let (_store_dir, store) = https_store(vec![bundle]);

    let reference = format!("{}/team/web:tls", registry.address());
    let pulled = store.pull(&reference, PullPolicy::IfNotPresent, None).await.expect("pull over https");
    assert_eq!(pulled.manifest_digest, pushed.manifest_digest);
    let busybox_size = std::fs::metadata("/bin/busybox").expect("busybox").len();
    let unpacked = pulled.layers[0].join("bin/busybox");
    assert_eq!(std::fs::metadata(unpacked).expect("unpacked busybox").len(), busybox_size);
    assert!(
        registry.access_log().iter().any(|e| e.method == "GET" && e.path.contains("/manifests/") && e.status == 200),
        "the registry served the manifest over TLS: {:?}",
        registry.access_log()
    );
}

#[tokio::test]
async fn without_the_ca_the_certificate_is_not_trusted_and_the_error_says_how_to_fix_it() {
    let (Some(registry), Some(busybox)) = (tls_registry(None), support::busybox()) else { return };
    busybox.push(&registry, "team/web:tls").await.expect("push over https");
    let (_dir, store) = https_store(Vec::new());

    let reference = format!("{}/team/web:tls", registry.address());
    let err = store.pull(&reference, PullPolicy::IfNotPresent, None).await.expect_err("untrusted certificate");
    assert!(matches!(err, ImageError::UntrustedCertificate { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("registry {}'s TLS certificate is not trusted", registry.address())),
        "{message}"
    );
    assert!(message.contains("UnknownIssuer") && message.contains("--registry-ca"), "{message}");
    assert!(!err.is_transient(), "a certificate does not start verifying by itself");
}

#[tokio::test]
async fn https_with_basic_auth() {
    let (Some(registry), Some(busybox)) = (tls_registry(Some(("team", "s3cret"))), support::busybox()) else {
        return;
    };
    let pushed = busybox.push(&registry, "team/private:tls").await.expect("push over https with auth");
    let (_dir, store) = https_store(vec![registry.ca_pem().expect("CA")]);
    let reference = format!("{}/team/private:tls", registry.address());

    let err = store.pull(&reference, PullPolicy::IfNotPresent, None).await.expect_err("no credentials");
    assert!(matches!(err, ImageError::Unauthorized { had_credentials: false, .. }), "{err}");

    let right = RegistryAuth::basic("team", "s3cret").from_secret("registry/team");
    let pulled = store.pull(&reference, PullPolicy::IfNotPresent, Some(right)).await.expect("pull with credentials");
    assert_eq!(pulled.manifest_digest, pushed.manifest_digest);
}

#[test]
fn a_bad_ca_file_fails_open_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("corp-ca.pem");
    let options = StoreOptions { registry_ca_certs: vec![missing.clone()], ..Default::default() };
    let err = gantry_image::ImageStore::open(&dir.path().join("images"), options).expect_err("missing CA file");
    assert!(matches!(err, ImageError::RegistryCa { .. }), "{err:?}");
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");
    assert!(!dir.path().join("images").exists(), "nothing is created when the options are wrong");
}
