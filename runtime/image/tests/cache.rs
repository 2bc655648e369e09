//! The cache against a real registry: a blob whose content does not match its digest is
//! refused and leaves nothing; concurrent pulls fetch each blob once; pruning goes by least
//! recent use and keeps images in use and shared layers; a crash mid-unpack leaves nothing a
//! later pull trusts.

mod support;

use gantry_image::{ImageError, ImageStore, PullPolicy, StoreOptions};
use gantry_lab::registry::TestLayer;
use std::collections::HashSet;
use std::time::Duration;

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

#[tokio::test]
async fn a_blob_that_does_not_match_its_digest_leaves_nothing() {
    let (Some(registry), Some(busybox)) = (support::registry(), support::busybox()) else { return };
    let image = busybox.layer(TestLayer::new().file("data", vec![7u8; 4096], 0o644));
    let pushed = image.push(&registry, "team/corrupt:1").await.expect("push");
    let bad = &pushed.layer_digests[1];
    let data = registry.blob_data_path(bad);
    let len = std::fs::metadata(&data).expect("blob in the registry's storage").len() as usize;
    std::fs::write(&data, vec![0x42u8; len]).expect("replace the blob's content");

    let (_dir, store) = support::store();
    let err = store
        .pull(&format!("{}/team/corrupt:1", registry.address()), PullPolicy::IfNotPresent, None)
        .await
        .expect_err("corrupt blob");
    let ImageError::DigestMismatch { ref expected, ref got, what, .. } = err else {
        panic!("expected DigestMismatch, got {err}")
    };
    assert_eq!((expected, what), (bad, "layer"));
    assert_ne!(got, bad);
    assert!(err.to_string().contains(bad.as_str()), "{err}");
    assert!(!store.root().join("blobs/sha256").join(hex(bad)).exists(), "no corrupt blob kept");
    assert!(!store.root().join("layers/sha256").join(hex(bad)).exists(), "no layer from it");
    assert_eq!(support::entries(&store.root().join("tmp")), Vec::<String>::new(), "no temporary file left");
    assert!(store.list().is_empty());
    assert!(store.get(&format!("{}/team/corrupt:1", registry.address())).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pulls_fetch_each_blob_once() {
    let (Some(registry), Some(busybox)) = (support::registry(), support::busybox()) else { return };
    let image = busybox.layer(TestLayer::new().random_file("data/random", 1 << 20).expect("random data"));
    let pushed = image.push(&registry, "team/web:1").await.expect("push");
    image.push(&registry, "team/web:latest").await.expect("second tag");
    let names = [
        format!("{}/team/web:1", registry.address()),
        format!("{}/team/web:latest", registry.address()),
        format!("{}/team/web@{}", registry.address(), pushed.manifest_digest),
    ];
    let (_dir, store) = support::store();
    let pulls: Vec<_> = (0..8)
        .map(|i| {
            let (store, name) = (store.clone(), names[i % names.len()].clone());
            let policy = if i % 2 == 0 { PullPolicy::Always } else { PullPolicy::IfNotPresent };
            tokio::spawn(async move { store.pull(&name, policy, None).await })
        })
        .collect();
    for pull in pulls {
        let image = pull.await.expect("task").expect("pull");
        assert_eq!(image.manifest_digest, pushed.manifest_digest);
        assert!(image.layers[1].join("data/random").is_file());
    }
    let blobs: Vec<&String> = pushed.layer_digests.iter().chain(std::iter::once(&pushed.config_digest)).collect();
    let all_logged = support::eventually(Duration::from_secs(10), || blobs.iter().all(|d| registry.blob_gets(d) >= 1));
    assert!(all_logged, "every blob was fetched: {:?}", registry.access_log());
    for digest in blobs {
        assert_eq!(registry.blob_gets(digest), 1, "blob {digest} fetched once: {:#?}", registry.access_log());
    }
    assert_eq!(store.list().len(), 1);
    assert_eq!(store.list()[0].references.len(), 3);
}

#[tokio::test]
async fn prune_removes_least_recently_used_first_and_keeps_images_in_use() {
    let (Some(registry), Some(busybox)) = (support::registry(), support::busybox()) else { return };
    let mut pushed = Vec::new();
    for name in ["a", "b", "c"] {
        let image =
            busybox.clone().layer(TestLayer::new().random_file(&format!("data/{name}"), 64 << 10).expect("random"));
        pushed.push(image.push(&registry, &format!("team/{name}:1")).await.expect("push"));
    }
    let reference = |name: &str| format!("{}/team/{name}:1", registry.address());
    let (_dir, store) = support::store();
    for name in ["a", "b", "c", "b"] {
        store.pull(&reference(name), PullPolicy::IfNotPresent, None).await.expect("pull");
    }
    let layer = |digest: &String| store.root().join("layers/sha256").join(hex(digest));
    let shared = layer(&pushed[0].layer_digests[0]);
    let total = store.total_bytes();
    let in_use: HashSet<String> = [pushed[0].manifest_digest.clone()].into();

    // a is the oldest but in use; c is older than b, which its second pull refreshed.
    let report = store.prune(&in_use, total - 1);
    let removed: Vec<&String> = report.removed.iter().map(|i| &i.manifest_digest).collect();
    assert_eq!(removed, [&pushed[2].manifest_digest]);
    assert!(report.freed_bytes >= 64 << 10, "{report:?}");
    assert!(report.remaining_bytes < total);
    assert!(report.failures.is_empty(), "{report:?}");
    assert!(!layer(&pushed[2].layer_digests[1]).exists(), "c's own layer is gone");
    assert!(shared.is_dir(), "the shared busybox layer stays");
    assert!(store.get(&reference("c")).is_none());
    assert!(store.get(&reference("b")).is_some());

    let report = store.remove_unused(&in_use);
    let removed: Vec<&String> = report.removed.iter().map(|i| &i.manifest_digest).collect();
    assert_eq!(removed, [&pushed[1].manifest_digest]);
    assert!(shared.is_dir(), "a still uses the busybox layer");
    assert!(layer(&pushed[0].layer_digests[1]).is_dir());
    let left: Vec<String> = store.list().into_iter().map(|i| i.manifest_digest).collect();
    assert_eq!(left, [pushed[0].manifest_digest.clone()]);
    assert_eq!(support::entries(&store.root().join("layers/sha256")).len(), 2);
}

#[tokio::test]
async fn a_crash_mid_unpack_leaves_nothing_a_later_pull_trusts() {
    let (Some(registry), Some(busybox)) = (support::registry(), support::busybox()) else { return };
    let image = busybox.layer(TestLayer::new().file("data/one", "1", 0o644).file("data/two", "2", 0o644));
    let pushed = image.push(&registry, "team/web:1").await.expect("push");
    let reference = format!("{}/team/web:1", registry.address());
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path(), StoreOptions::default()).expect("open");
    let pulled = store.pull(&reference, PullPolicy::IfNotPresent, None).await.expect("pull");
    drop(store);

    // As if the process died while unpacking that layer: it is half-made, still in tmp/, and
    // not in its place; a download was cut short too.
    let half = dir.path().join("tmp/layer-crashed");
    std::fs::rename(&pulled.layers[1], &half).expect("move the layer back to tmp");
    std::fs::remove_file(half.join("data/two")).expect("half of it");
    std::fs::write(dir.path().join("tmp/blob-cut"), b"partial").expect("partial download");

    let store = ImageStore::open(dir.path(), StoreOptions::default()).expect("reopen");
    assert_eq!(support::entries(&dir.path().join("tmp")), Vec::<String>::new(), "leftovers removed on open");
    assert!(store.get(&reference).is_none(), "an image with a missing layer is not trusted");
    assert!(store.list().is_empty());
    let again = store.pull(&reference, PullPolicy::IfNotPresent, None).await.expect("pull again");
    assert_eq!(std::fs::read_to_string(again.layers[1].join("data/two")).expect("complete layer"), "2");
    assert_eq!(again.layers[0], pulled.layers[0], "the intact layer is reused");
    assert!(support::eventually(Duration::from_secs(10), || registry.blob_gets(&pushed.layer_digests[1]) == 2));
    assert_eq!(registry.blob_gets(&pushed.layer_digests[0]), 1);
}

#[tokio::test]
async fn a_layer_that_fills_the_disk_is_no_space_and_leaves_nothing() {
    if !support::root("mounting a small tmpfs") {
        return;
    }
    let (Some(registry), Some(busybox)) = (support::registry(), support::busybox()) else { return };
    let image = busybox.layer(TestLayer::new().random_file("data/big", 4 << 20).expect("random"));
    image.push(&registry, "team/big:1").await.expect("push");
    let dir = tempfile::tempdir().expect("tempdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(dir.path())
        .status()
        .expect("run mount");
    assert!(mounted.success(), "mount a 3 MiB tmpfs");
    let unmount = Unmount(dir.path().to_path_buf());
    let store = ImageStore::open(dir.path(), StoreOptions::default()).expect("open");
    let err = store
        .pull(&format!("{}/team/big:1", registry.address()), PullPolicy::IfNotPresent, None)
        .await
        .expect_err("disk full");
    assert!(matches!(err, ImageError::NoSpace { .. }), "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("no space left on device"), "{err}");
    assert_eq!(support::entries(&dir.path().join("tmp")), Vec::<String>::new(), "temporary files removed");
    assert!(store.list().is_empty());
    drop(unmount);
}

/// Unmounts a mount point on drop (also when the test fails).
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
