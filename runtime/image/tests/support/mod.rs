//! What the image store's tests share: a real registry (Debian's docker-registry) and the
//! busybox image (Debian's busybox-static), or a printed reason to skip (a failure where every
//! test must run), and a fresh store.

#![allow(dead_code)]

#[path = "../../../../tests/support/skip.rs"]
mod skip;

pub use skip::skipped;

use gantry_image::{ImageStore, Platform, StoreOptions};
use gantry_lab::registry::{RegistryOptions, TestImage, TestRegistry};
use std::time::{Duration, Instant};

/// A registry without auth, or `None` after reporting why it cannot run.
pub fn registry() -> Option<TestRegistry> {
    registry_with(RegistryOptions::default())
}

/// A registry with `options`, or `None` after reporting why it cannot run.
pub fn registry_with(options: RegistryOptions) -> Option<TestRegistry> {
    if let Some(reason) = TestRegistry::missing() {
        skipped(&reason);
        return None;
    }
    Some(TestRegistry::start(options).expect("start docker-registry"))
}

/// The busybox image, or `None` after reporting why it cannot be made.
pub fn busybox() -> Option<TestImage> {
    match TestImage::busybox() {
        Ok(image) => Some(image),
        Err(e) => {
            skipped(&e.to_string());
            None
        }
    }
}

/// Whether this test runs as root; reports the skip when not.
pub fn root(what: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        skipped(&format!("{what} needs root"));
    }
    root
}

/// A fresh store in a temporary directory (kept alive by the returned guard).
pub fn store() -> (tempfile::TempDir, ImageStore) {
    store_for(Platform::current())
}

/// A fresh store pulling for `platform`.
pub fn store_for(platform: Platform) -> (tempfile::TempDir, ImageStore) {
    store_with(StoreOptions { platform, ..StoreOptions::default() })
}

/// A fresh store with `options`.
pub fn store_with(options: StoreOptions) -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path(), options).expect("open store");
    (dir, store)
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The names of the entries of `dir` (empty when it does not exist).
pub fn entries(dir: &std::path::Path) -> Vec<String> {
    let Ok(read) = std::fs::read_dir(dir) else { return Vec::new() };
    read.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}
