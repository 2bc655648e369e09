//! Pulls from a real registry (Debian's docker-registry on loopback) of images the tests build
//! from local files: by tag and by digest, Docker v2 and OCI manifests, gzip and zstd layers,
//! multi-platform indexes, and each way a pull fails (unknown image or tag, registry down,
//! credentials missing or refused).

mod support;

use gantry_image::{ImageError, Platform, PullPolicy, RegistryAuth};
use gantry_lab::registry::{Compression, ManifestFormat, RegistryOptions, TestLayer, push_index};
use std::path::Path;

fn read_link(layer: &Path, path: &str) -> String {
    std::fs::read_link(layer.join(path)).expect("symlink").to_string_lossy().into_owned()
}

#[tokio::test]
async fn pull_by_tag_and_by_digest() {
    let (Some(registry), Some(busybox)) = (support::registry(), support::busybox()) else { return };
    let image = busybox
        .entrypoint(&["/bin/httpd", "-f"])
        .cmd(&["-p", "8080"])
        .env("GREETING=hello")
        .user("nobody")
        .workdir("/www");
    let pushed = image.push(&registry, "team/web:1.4").await.expect("push");
    let (_dir, store) = support::store();

    let by_tag = store
        .pull(&format!("{}/team/web:1.4", registry.address()), PullPolicy::IfNotPresent, None)
        .await
        .expect("pull by tag");
    assert_eq!(by_tag.manifest_digest, pushed.manifest_digest);
    assert_eq!(by_tag.reference, format!("{}/team/web:1.4", registry.address()));
    assert_eq!(by_tag.config.entrypoint, ["/bin/httpd", "-f"]);
    assert_eq!(by_tag.config.cmd, ["-p", "8080"]);
    assert!(by_tag.config.env.contains(&"GREETING=hello".to_string()));
    assert_eq!(by_tag.config.user.as_deref(), Some("nobody"));
    assert_eq!(by_tag.config.working_dir.as_deref(), Some("/www"));
    assert_eq!(by_tag.layers.len(), 1);
    let layer = &by_tag.layers[0];
    let busybox_size = std::fs::metadata("/bin/busybox").expect("busybox").len();
    assert_eq!(std::fs::metadata(layer.join("bin/busybox")).expect("unpacked busybox").len(), busybox_size);
    assert_eq!(read_link(layer, "bin/sh"), "busybox");
    assert!(by_tag.size_bytes >= busybox_size, "size {} counts the layer", by_tag.size_bytes);

    let by_digest = format!("{}/team/web@{}", registry.address(), pushed.manifest_digest);
    let requests = registry.access_log().len();
    let again = store.pull(&by_digest, PullPolicy::IfNotPresent, None).await.expect("pull by digest");
    assert_eq!(registry.access_log().len(), requests, "an image cached under its tag answers its digest");
    let (_other_dir, fresh) = support::store();
    let from_registry = fresh.pull(&by_digest, PullPolicy::IfNotPresent, None).await.expect("pull by digest");
    assert_eq!(from_registry.manifest_digest, pushed.manifest_digest);
    assert_eq!(again.manifest_digest, pushed.manifest_digest);
    assert_eq!(again.layers, by_tag.layers, "the layer is kept once");
    assert_eq!(support::entries(&store.root().join("layers/sha256")).len(), 1);
    let listed = store.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].references.len(), 2, "{listed:?}");
}

#[tokio::test]
async fn oci_manifest_with_gzip_zstd_and_plain_layers() {
    let (Some(registry), Some(busybox)) = (support::registry(), support::busybox()) else { return };
    let image = busybox
        .format(ManifestFormat::Oci)
        .layer(TestLayer::new().file("etc/zstd.txt", "zstd layer\n", 0o644).compression(Compression::Zstd))
        .layer(TestLayer::new().file("etc/plain.txt", "plain layer\n", 0o600).compression(Compression::None));
    let pushed = image.push(&registry, "team/oci:2").await.expect("push");
    assert_eq!(pushed.media_type, "application/vnd.oci.image.manifest.v1+json");
    let (_dir, store) = support::store();
    let pulled =
        store.pull(&format!("{}/team/oci:2", registry.address()), PullPolicy::Always, None).await.expect("pull");
    assert_eq!(pulled.manifest_digest, pushed.manifest_digest);
    assert_eq!(pulled.layers.len(), 3);
    assert_eq!(std::fs::read_to_string(pulled.layers[1].join("etc/zstd.txt")).expect("zstd file"), "zstd layer\n");
    assert_eq!(std::fs::read_to_string(pulled.layers[2].join("etc/plain.txt")).expect("tar file"), "plain layer\n");
    assert!(pulled.layers[0].join("bin/busybox").is_file());
}

#[tokio::test]
async fn multi_platform_index_picks_the_platform_or_lists_what_it_has() {
    let (Some(registry), Some(busybox)) = (support::registry(), support::busybox()) else { return };
    for (format, tag) in [(ManifestFormat::Docker, "multi:docker"), (ManifestFormat::Oci, "multi:oci")] {
        let amd64 = busybox
            .clone()
            .format(format)
            .platform("linux", "amd64")
            .layer(TestLayer::new().file("arch", "amd64", 0o644));
        let arm64 = busybox
            .clone()
            .format(format)
            .platform("linux", "arm64")
            .layer(TestLayer::new().file("arch", "arm64", 0o644));
        let index = push_index(&registry, tag, &[&arm64, &amd64], format).await.expect("push index");
        let reference = format!("{}/{tag}", registry.address());

        let (_dir, store) = support::store_for(Platform::new("linux", "amd64"));
        let pulled = store.pull(&reference, PullPolicy::IfNotPresent, None).await.expect("pull amd64");
        assert_ne!(pulled.manifest_digest, index, "the platform's manifest, not the index");
        assert_eq!(std::fs::read_to_string(pulled.layers[1].join("arch")).expect("arch file"), "amd64");
        let by_index_digest = store
            .pull(&format!("{}/multi@{index}", registry.address()), PullPolicy::IfNotPresent, None)
            .await
            .expect("pull by index digest");
        assert_eq!(by_index_digest.manifest_digest, pulled.manifest_digest);

        let (_dir, s390x) = support::store_for(Platform::new("linux", "s390x"));
        let err = s390x.pull(&reference, PullPolicy::IfNotPresent, None).await.expect_err("no s390x manifest");
        let ImageError::NoPlatform { ref available, .. } = err else { panic!("expected NoPlatform, got {err}") };
        assert_eq!(available, &["linux/arm64", "linux/amd64"]);
        let message = err.to_string();
        assert!(
            message.contains("no manifest for linux/s390x") && message.contains("linux/arm64, linux/amd64"),
            "{message}"
        );
        assert!(!err.is_transient());
    }
}

#[tokio::test]
async fn unknown_repository_and_tag_are_not_found() {
    let (Some(registry), Some(busybox)) = (support::registry(), support::busybox()) else { return };
    busybox.push(&registry, "team/web:1.4").await.expect("push");
    let (_dir, store) = support::store();
    let err = store
        .pull(&format!("{}/team/nothing:1", registry.address()), PullPolicy::IfNotPresent, None)
        .await
        .expect_err("no repo");
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("no repository team/nothing"), "{err}");
    let err = store
        .pull(&format!("{}/team/web:9.9", registry.address()), PullPolicy::IfNotPresent, None)
        .await
        .expect_err("no tag");
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("no tag 9.9"), "{err}");
    assert!(!err.is_transient());
    assert!(store.list().is_empty());
}

#[tokio::test]
async fn a_registry_that_is_down_is_unreachable_and_transient() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    // The listener is closed here: nothing listens on the port.
    let (_dir, store) = support::store();
    let err =
        store.pull(&format!("127.0.0.1:{port}/team/web:1.4"), PullPolicy::IfNotPresent, None).await.expect_err("down");
    assert!(matches!(err, ImageError::Unreachable { .. }), "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().contains(&format!("registry 127.0.0.1:{port} is unreachable")), "{err}");
}

#[tokio::test]
async fn basic_auth_registry_needs_the_right_credentials() {
    let options =
        RegistryOptions { basic_auth: Some(("team".to_string(), "s3cret".to_string())), ..Default::default() };
    let (Some(registry), Some(busybox)) = (support::registry_with(options), support::busybox()) else { return };
    let pushed = busybox.push(&registry, "team/private:1").await.expect("push with auth");
    let reference = format!("{}/team/private:1", registry.address());
    let (_dir, store) = support::store();

    let err = store.pull(&reference, PullPolicy::IfNotPresent, None).await.expect_err("no credentials");
    assert!(matches!(err, ImageError::Unauthorized { had_credentials: false, .. }), "{err}");
    assert!(err.to_string().contains("needs credentials"), "{err}");
    assert!(!err.is_transient());

    let wrong = RegistryAuth::basic("team", "wrong").from_secret("registry/team");
    let err = store.pull(&reference, PullPolicy::IfNotPresent, Some(wrong)).await.expect_err("wrong password");
    assert!(err.to_string().contains("refused the credentials of secret registry/team"), "{err}");

    let right = RegistryAuth::basic("team", "s3cret").from_secret("registry/team");
    let pulled = store.pull(&reference, PullPolicy::IfNotPresent, Some(right)).await.expect("pull with credentials");
    assert_eq!(pulled.manifest_digest, pushed.manifest_digest);
}

#[tokio::test]
async fn policies_and_a_moved_tag() {
    let (Some(registry), Some(busybox)) = (support::registry(), support::busybox()) else { return };
    let first = busybox.clone().push(&registry, "team/web:stable").await.expect("push");
    let reference = format!("{}/team/web:stable", registry.address());
    let (_dir, store) = support::store();
    store.pull(&reference, PullPolicy::IfNotPresent, None).await.expect("first pull");
    let manifests = || registry.access_log().iter().filter(|e| e.path.contains("/manifests/")).count();
    assert!(support::eventually(std::time::Duration::from_secs(10), || manifests() >= 1));
    let before = manifests();

    let cached = store.pull(&reference, PullPolicy::IfNotPresent, None).await.expect("cached pull");
    assert_eq!(cached.manifest_digest, first.manifest_digest);
    assert_eq!(manifests(), before, "a cached image asks the registry nothing");

    let second = busybox
        .layer(TestLayer::new().file("version", "2", 0o644))
        .push(&registry, "team/web:stable")
        .await
        .expect("push v2");
    let stale = store.pull(&reference, PullPolicy::IfNotPresent, None).await.expect("cached pull");
    assert_eq!(stale.manifest_digest, first.manifest_digest);
    let fresh = store.pull(&reference, PullPolicy::Always, None).await.expect("pull always");
    assert_eq!(fresh.manifest_digest, second.manifest_digest);
    assert_eq!(fresh.layers[0], stale.layers[0], "the shared busybox layer is reused");
    assert_eq!(registry.blob_gets(&first.layer_digests[0]), 1, "the busybox layer was fetched once");
    let old =
        store.list().into_iter().find(|i| i.manifest_digest == first.manifest_digest).expect("old image still cached");
    assert!(old.references.is_empty(), "the tag moved to the new image: {old:?}");
    assert_eq!(store.get(&reference).map(|i| i.manifest_digest), Some(second.manifest_digest));
}
