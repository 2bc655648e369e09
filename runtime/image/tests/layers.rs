//! Unpacked layers as overlayfs takes them (root only: whiteout devices, trusted.* xattrs,
//! ownership and device nodes need it): OCI whiteouts become 0:0 character devices, opaque
//! markers the `trusted.overlay.opaque` xattr, and an overlay of the layers shows the upper
//! layer's deletions; ownership, modes, hard links, symlinks and device nodes are kept.

mod support;

use gantry_image::PullPolicy;
use gantry_lab::registry::TestLayer;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// An overlay mount of layers, unmounted on drop (also when the test fails).
struct Overlay(PathBuf);

impl Overlay {
    fn mount(layers: &[PathBuf], target: &Path) -> Overlay {
        let lower: Vec<String> = layers.iter().rev().map(|l| l.display().to_string()).collect();
        let status = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &format!("lowerdir={}", lower.join(":"))])
            .arg(target)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount overlay of {lower:?}");
        Overlay(target.to_path_buf())
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn whiteouts_and_opaque_directories_hide_lower_files_under_overlay() {
    if !support::root("unpacking whiteouts and mounting an overlay") {
        return;
    }
    let (Some(registry), Some(busybox)) = (support::registry(), support::busybox()) else { return };
    let lower = TestLayer::new()
        .file("etc/keep", "kept", 0o644)
        .file("etc/gone", "deleted above", 0o644)
        .file("data/old-a", "a", 0o644)
        .file("data/old-b", "b", 0o644);
    let upper = TestLayer::new().whiteout("etc/gone").opaque("data").file("data/new", "new", 0o644);
    let pushed = busybox.layer(lower).layer(upper).push(&registry, "team/whiteouts:1").await.expect("push");
    let (_dir, store) = support::store();
    let image = store
        .pull(&format!("{}/team/whiteouts:1", registry.address()), PullPolicy::IfNotPresent, None)
        .await
        .expect("pull");
    assert_eq!(image.manifest_digest, pushed.manifest_digest);
    let top = &image.layers[2];

    let whiteout = std::fs::symlink_metadata(top.join("etc/gone")).expect("whiteout node");
    assert!(whiteout.file_type().is_char_device(), "{whiteout:?}");
    assert_eq!(whiteout.rdev(), 0, "a 0:0 device");
    assert!(!top.join("etc/.wh.gone").exists(), "the marker itself is not unpacked");
    let opaque = xattr::get(top.join("data"), "trusted.overlay.opaque").expect("read xattr");
    assert_eq!(opaque.as_deref(), Some(&b"y"[..]));
    assert!(!top.join("data/.wh..wh..opq").exists());

    let mountpoint = tempfile::tempdir().expect("mountpoint");
    let overlay = Overlay::mount(&image.layers, mountpoint.path());
    let merged = mountpoint.path();
    assert_eq!(std::fs::read_to_string(merged.join("etc/keep")).expect("kept file"), "kept");
    assert!(!merged.join("etc/gone").exists(), "a file deleted by the upper layer is gone");
    assert!(
        !merged.join("data/old-a").exists() && !merged.join("data/old-b").exists(),
        "an opaque directory hides the lower one"
    );
    assert_eq!(std::fs::read_to_string(merged.join("data/new")).expect("new file"), "new");
    assert!(merged.join("bin/busybox").is_file());
    drop(overlay);
}

#[tokio::test]
async fn ownership_modes_links_and_devices_are_kept() {
    if !support::root("unpacking ownership and device nodes") {
        return;
    }
    let (Some(registry), Some(busybox)) = (support::registry(), support::busybox()) else { return };
    let layer = TestLayer::new()
        .file("home/app/secret", "s", 0o640)
        .owner(1000, 1001)
        .file("bin/suid", "x", 0o4755)
        .hardlink("bin/suid-link", "bin/suid")
        .symlink("etc/abs", "/etc/passwd")
        .char_device("dev/null", 1, 3, 0o666)
        .dir("tmp", 0o1777);
    let pushed = busybox.layer(layer).push(&registry, "team/meta:1").await.expect("push");
    let (_dir, store) = support::store();
    let image =
        store.pull(&format!("{}/team/meta:1", registry.address()), PullPolicy::IfNotPresent, None).await.expect("pull");
    assert_eq!(image.manifest_digest, pushed.manifest_digest);
    let top = &image.layers[1];
    let secret = std::fs::metadata(top.join("home/app/secret")).expect("secret");
    assert_eq!((secret.uid(), secret.gid(), secret.mode() & 0o7777), (1000, 1001, 0o640));
    let suid = std::fs::metadata(top.join("bin/suid")).expect("suid");
    assert_eq!(suid.mode() & 0o7777, 0o4755);
    let link = std::fs::metadata(top.join("bin/suid-link")).expect("hard link");
    assert_eq!((link.ino(), link.nlink()), (suid.ino(), 2));
    assert_eq!(std::fs::read_link(top.join("etc/abs")).expect("symlink"), Path::new("/etc/passwd"));
    let null = std::fs::symlink_metadata(top.join("dev/null")).expect("device");
    assert!(null.file_type().is_char_device());
    assert_eq!(
        (nix::sys::stat::major(null.rdev()), nix::sys::stat::minor(null.rdev()), null.mode() & 0o7777),
        (1, 3, 0o666)
    );
    assert_eq!(std::fs::metadata(top.join("tmp")).expect("tmp").mode() & 0o7777, 0o1777);
    assert_eq!(std::fs::metadata(top).expect("layer root").mode() & 0o777, 0o755);
}
