//! The image store: the on-disk cache and what is known of it in memory. Layout under the
//! root (one store per root; the root must hold no `:` or `,`, as overlayfs options cannot):
//!
//! - `blobs/sha256/<hex>`: verified blobs (manifests, configs; layer blobs only until unpacked)
//! - `layers/sha256/<hex>/`: unpacked layers, ready as overlayfs lower directories
//! - `images/<hex>.json`: one record per cached image (see [`crate::record`])
//! - `tmp/`: downloads and unpacks in progress; emptied by [`ImageStore::open`]
//!
//! Pulling is in [`crate::pull`]; this file opens the store, answers from the cache, and
//! prunes it.

use crate::blobs::Blobs;
use crate::ca;
use crate::error::ImageError;
use crate::manifest::ImageConfig;
use crate::options::StoreOptions;
use crate::prune;
use crate::record::{self, ImageRecord};
use crate::reference::{ImageReference, parse_digest};
use crate::registry::Registries;
use crate::single_flight::KeyedLocks;
use crate::unpack::disk_usage;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;
use tracing::{info, warn};

/// A pulled image, ready to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The normalized reference it was asked for, e.g. `registry.example.com/team/web:1.4`.
    pub reference: String,
    /// The digest of its (platform-specific) manifest; the identity [`ImageStore::prune`] takes.
    pub manifest_digest: String,
    /// How a container from it runs.
    pub config: ImageConfig,
    /// The unpacked layer directories, bottom first (overlayfs' `lowerdir=` wants them top
    /// first: reverse them).
    pub layers: Vec<PathBuf>,
    /// Bytes it takes in the cache, shared layers counted in full.
    pub size_bytes: u64,
}

/// A cached image, as `gantry image list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The normalized references that resolve to it here.
    pub references: Vec<String>,
    /// Its manifest digest.
    pub manifest_digest: String,
    /// Bytes it takes, shared layers counted in full.
    pub size_bytes: u64,
    /// When a pull last returned it.
    pub last_used: SystemTime,
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    /// The images removed, least recently used first.
    pub removed: Vec<ImageInfo>,
    /// Bytes freed (layers and blobs no kept image shares, and leftovers of interrupted pulls).
    pub freed_bytes: u64,
    /// Bytes the cache holds now.
    pub remaining_bytes: u64,
    /// Files that could not be removed, with the reason (they are tried again next time).
    pub failures: Vec<String>,
}

/// A content-addressed cache of images pulled from registries; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct ImageStore {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    pub(crate) options: StoreOptions,
    pub(crate) blobs: Blobs,
    pub(crate) layers: PathBuf,
    pub(crate) images: PathBuf,
    pub(crate) tmp: PathBuf,
    pub(crate) state: Mutex<State>,
    pub(crate) registries: Registries,
    /// One pull per reference at a time.
    pub(crate) image_locks: KeyedLocks,
    /// One download or unpack per blob digest at a time.
    pub(crate) blob_locks: KeyedLocks,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) records: HashMap<String, ImageRecord>,
    /// Normalized reference → manifest digest.
    pub(crate) references: HashMap<String, String>,
    /// Digests a pull is fetching or unpacking, with how many pulls are.
    pub(crate) in_flight: HashMap<String, usize>,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`. Removes what interrupted downloads and
    /// unpacks left in `tmp/`, and drops records whose layers are missing. Fails, before
    /// touching the disk, when a file of [`StoreOptions::registry_ca_certs`] cannot be read or
    /// holds no valid certificate ([`ImageError::RegistryCa`]).
    pub fn open(root: &Path, options: StoreOptions) -> Result<ImageStore, ImageError> {
        let io = |action, path: &Path, e| ImageError::io("", action, path, e);
        let extra_roots = ca::load(&options.registry_ca_certs)?;
        if root.to_string_lossy().contains([':', ',']) {
            let reason = std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "overlayfs options cannot name paths with ':' or ','",
            );
            return Err(io("choosing a directory without ':' or ',' for", root, reason));
        }
        let (blobs_dir, layers, images, tmp) =
            (root.join("blobs/sha256"), root.join("layers/sha256"), root.join("images"), root.join("tmp"));
        for dir in [&blobs_dir, &layers, &images, &tmp] {
            std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
        }
        for entry in std::fs::read_dir(&tmp).map_err(|e| io("reading", &tmp, e))?.flatten() {
            let path = entry.path();
            let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            removed.map_err(|e| io("removing the leftover", &path, e))?;
            info!(path = %path.display(), "Removed what an interrupted pull left.");
        }
        let (loaded, unreadable) = record::load_all(&images).map_err(|e| io("reading", &images, e))?;
        for path in unreadable {
            warn!(path = %path.display(), "Removing an unreadable image record.");
            std::fs::remove_file(&path).map_err(|e| io("removing", &path, e))?;
        }
        let mut state = State::default();
        for record in loaded {
            let complete = record.layers.iter().all(|l| layer_dir(&layers, &l.digest).is_some_and(|d| d.is_dir()));
            if !complete {
                warn!(digest = %record.manifest_digest, "Dropping an image record whose layers are missing.");
                record::remove(&images, &record.manifest_digest).map_err(|e| io("removing a record in", &images, e))?;
                continue;
            }
            for name in &record.references {
                let newer = state
                    .references
                    .get(name)
                    .and_then(|d| state.records.get(d))
                    .is_none_or(|other| other.last_used < record.last_used);
                if newer {
                    state.references.insert(name.clone(), record.manifest_digest.clone());
                }
            }
            state.records.insert(record.manifest_digest.clone(), record);
        }
        let inner = Inner {
            root: root.to_path_buf(),
            registries: Registries::new(&options, extra_roots),
            options,
            blobs: Blobs::new(blobs_dir, tmp.clone()),
            layers,
            images,
            tmp,
            state: Mutex::new(state),
            image_locks: KeyedLocks::default(),
            blob_locks: KeyedLocks::default(),
        };
        Ok(ImageStore { inner: Arc::new(inner) })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The size [`ImageStore::prune`] should bring the cache to (from [`StoreOptions`]).
    pub fn max_bytes(&self) -> u64 {
        self.inner.options.max_bytes
    }

    /// Bytes the cache holds, shared layers counted once.
    pub fn total_bytes(&self) -> u64 {
        prune::total(&self.inner.state().records)
    }

    /// The cached images, most recently used first.
    pub fn list(&self) -> Vec<ImageInfo> {
        let state = self.inner.state();
        let mut infos: Vec<ImageInfo> = state.records.values().map(info).collect();
        infos.sort_by(|a, b| b.last_used.cmp(&a.last_used).then_with(|| a.manifest_digest.cmp(&b.manifest_digest)));
        infos
    }

    /// The cached image for a reference (normalized as [`ImageReference::parse`] does) or a
    /// manifest digest, without asking any registry and without marking it used.
    pub fn get(&self, reference_or_digest: &str) -> Option<Image> {
        let state = self.inner.state();
        let digest = if parse_digest(reference_or_digest).is_ok() {
            reference_or_digest.to_string()
        } else {
            let name = ImageReference::parse(reference_or_digest).ok()?.to_string();
            state.references.get(&name)?.clone()
        };
        let record = state.records.get(&digest)?;
        let name = record.references.first().cloned().unwrap_or_default();
        self.inner.image(record, &name)
    }

    /// Removes least recently used images not in `in_use` (manifest digests or references)
    /// until the cache holds at most `target_bytes`; never removes a layer or blob a kept image
    /// or a running pull needs. Also removes leftovers no image names. Blocking file I/O.
    pub fn prune(&self, in_use: &HashSet<String>, target_bytes: u64) -> PruneReport {
        let inner = &self.inner;
        let mut report = PruneReport::default();
        let mut doomed = Vec::new();
        {
            let mut state = inner.state();
            let protected: HashSet<String> = state.in_flight.keys().cloned().collect();
            let plan = prune::plan(&state.records, in_use, &protected, target_bytes);
            for digest in &plan.images {
                let Some(record) = state.records.remove(digest) else { continue };
                state.references.retain(|_, d| d != digest);
                if let Err(e) = record::remove(&inner.images, digest) {
                    report.failures.push(format!("record of {digest}: {e}"));
                }
                report.removed.push(info(&record));
            }
            let named: HashSet<&str> = state
                .records
                .values()
                .flat_map(|r| r.layers.iter().map(|l| l.digest.as_str()).chain(r.blobs()))
                .chain(protected.iter().map(String::as_str))
                .collect();
            // Layers leave their place (a rename, under the lock) before a pull can look for them.
            let orphans = list_layers(&inner.layers).into_iter().filter(|d| !named.contains(d.as_str()));
            for digest in plan.layers.iter().cloned().chain(orphans).collect::<HashSet<_>>() {
                let Some(dir) = layer_dir(&inner.layers, &digest) else { continue };
                let grave = inner.tmp.join(format!("removing-{}", digest.trim_start_matches("sha256:")));
                match std::fs::rename(&dir, &grave) {
                    Ok(()) => doomed.push(grave),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => report.failures.push(format!("layer {digest}: {e}")),
                }
            }
            for digest in inner.blobs.list().into_iter().filter(|d| !named.contains(d.as_str())) {
                report.freed_bytes += inner.blobs.remove(&digest);
            }
            report.remaining_bytes = prune::total(&state.records);
        }
        for grave in doomed {
            report.freed_bytes += disk_usage(&grave).unwrap_or(0);
            if let Err(e) = std::fs::remove_dir_all(&grave) {
                report.failures.push(format!("{}: {e}", grave.display()));
            }
        }
        if !report.removed.is_empty() {
            info!(removed = report.removed.len(), freed_bytes = report.freed_bytes, "Pruned the image cache.");
        }
        report
    }

    /// Removes every image not in `in_use` (`gantry image prune`).
    pub fn remove_unused(&self, in_use: &HashSet<String>) -> PruneReport {
        self.prune(in_use, 0)
    }
}

impl Inner {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The [`Image`] a record describes, if its layers are all still in place.
    pub(crate) fn image(&self, record: &ImageRecord, reference: &str) -> Option<Image> {
        let layers: Option<Vec<PathBuf>> = record.layers.iter().map(|l| layer_dir(&self.layers, &l.digest)).collect();
        let layers = layers?;
        if !layers.iter().all(|d| d.is_dir()) {
            return None;
        }
        Some(Image {
            reference: reference.to_string(),
            manifest_digest: record.manifest_digest.clone(),
            config: record.config.clone(),
            layers,
            size_bytes: record.size(),
        })
    }
}

/// The directory of layer `digest`, if the digest is well formed.
pub(crate) fn layer_dir(layers: &Path, digest: &str) -> Option<PathBuf> {
    parse_digest(digest).ok().map(|d| layers.join(&d["sha256:".len()..]))
}

fn list_layers(layers: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(layers) else { return Vec::new() };
    entries.flatten().filter_map(|e| e.file_name().to_str().map(|hex| format!("sha256:{hex}"))).collect()
}

fn info(record: &ImageRecord) -> ImageInfo {
    ImageInfo {
        references: record.references.clone(),
        manifest_digest: record.manifest_digest.clone(),
        size_bytes: record.size(),
        last_used: record.last_used,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_overlayfs_cannot_name_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = ImageStore::open(&dir.path().join("a:b"), StoreOptions::default()).expect_err("colon");
        assert!(err.to_string().contains("without ':' or ','"), "{err}");
        let store = ImageStore::open(&dir.path().join("images"), StoreOptions::default()).expect("plain path");
        assert_eq!(store.total_bytes(), 0);
        assert!(store.list().is_empty());
        assert!(dir.path().join("images/tmp").is_dir() && dir.path().join("images/layers/sha256").is_dir());
    }
}
