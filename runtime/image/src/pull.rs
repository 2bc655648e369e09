//! Pulling an image into the store: resolve the reference to a platform manifest, fetch the
//! config and each layer blob (verified), unpack the layers, and only then record the image.
//! Concurrent pulls of one reference run one after another (the later ones find the image
//! cached); concurrent pulls sharing a blob fetch and unpack it once.

use crate::error::ImageError;
use crate::manifest::{self, Descriptor, Fetched, ImageManifest};
use crate::options::{PullPolicy, RegistryAuth};
use crate::record::{self, ImageRecord, LayerRecord};
use crate::reference::{ImageReference, parse_digest};
use crate::registry::Session;
use crate::store::{Image, ImageStore, Inner, layer_dir};
use crate::unpack::{disk_usage, unpack_layer};
use futures_util::future::join_all;
use std::sync::Arc;
use std::time::SystemTime;
use tracing::{debug, info};

/// Marks digests as being worked on (so a prune keeps them) until dropped.
struct InFlight {
    inner: Arc<Inner>,
    digests: Vec<String>,
}

impl InFlight {
    fn new(inner: &Arc<Inner>, digests: Vec<String>) -> Self {
        let mut state = inner.state();
        for digest in &digests {
            *state.in_flight.entry(digest.clone()).or_default() += 1;
        }
        Self { inner: inner.clone(), digests }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.inner.state();
        for digest in &self.digests {
            if let Some(count) = state.in_flight.get_mut(digest) {
                *count -= 1;
                if *count == 0 {
                    state.in_flight.remove(digest);
                }
            }
        }
    }
}

impl ImageStore {
    /// Pulls `reference` (`[registry/]repository[:tag][@sha256:...]`) for the store's platform
    /// and returns it unpacked. With [`PullPolicy::IfNotPresent`] a cached image answers
    /// without any request; with [`PullPolicy::Always`] the manifest is asked for again (blobs
    /// already here are not). `auth`: basic credentials, used for the registry's challenge.
    pub async fn pull(
        &self,
        reference: &str,
        policy: PullPolicy,
        auth: Option<RegistryAuth>,
    ) -> Result<Image, ImageError> {
        let parsed = ImageReference::parse(reference)?;
        let name = parsed.to_string();
        let _one_pull = self.inner.image_locks.lock(&name).await;
        if policy == PullPolicy::IfNotPresent {
            // By name, or by manifest digest when the image is cached under another name.
            let mut cached = self.touch_cached(&name, None)?;
            if cached.is_none()
                && let Some(digest) = &parsed.digest
            {
                cached = self.touch_cached(&name, Some(digest))?;
            }
            if let Some(image) = cached {
                debug!(reference = %name, "Image found in the cache.");
                return Ok(image);
            }
        }
        let session = self.inner.registries.session(&parsed, auth.as_ref())?;
        let (manifest_bytes, manifest_digest, manifest) = self.resolve(&session, &parsed, &name).await?;
        if let Some(image) = self.touch_cached(&name, Some(&manifest_digest))? {
            return Ok(image);
        }
        let digests = std::iter::once(manifest_digest.clone())
            .chain(std::iter::once(manifest.config.digest.clone()))
            .chain(manifest.layers.iter().map(|l| l.digest.clone()))
            .collect();
        let _in_flight = InFlight::new(&self.inner, digests);
        let started = std::time::Instant::now();
        let config_path = self.fetch_blob(&session, &name, "config", &manifest.config).await?;
        let config_bytes =
            tokio::fs::read(&config_path).await.map_err(|e| ImageError::io(&name, "reading", &config_path, e))?;
        let config = manifest::parse_config(&config_bytes)
            .map_err(|reason| ImageError::BadImage { reference: name.clone(), reason })?;
        // Every layer runs to its end even when another fails: what succeeded stays cached for
        // the retry, and nothing is left half-done behind the error.
        let layers: Vec<LayerRecord> =
            join_all(manifest.layers.iter().map(|layer| self.ensure_layer(&session, &name, layer)))
                .await
                .into_iter()
                .collect::<Result<_, _>>()?;
        self.inner.blobs.write(&name, "manifest", &manifest_digest, &manifest_bytes)?;
        let record = ImageRecord {
            manifest_digest: manifest_digest.clone(),
            references: vec![name.clone()],
            config_digest: manifest.config.digest.clone(),
            config,
            layers,
            manifest_size: manifest_bytes.len() as u64,
            config_size: config_bytes.len() as u64,
            last_used: SystemTime::now(),
        };
        self.remember(record.clone(), &name)?;
        info!(reference = %name, digest = %manifest_digest, bytes = record.size(), elapsed_ms = started.elapsed().as_millis() as u64, "Image pulled.");
        self.inner.image(&record, &name).ok_or_else(|| ImageError::BadImage {
            reference: name.clone(),
            reason: "its layers were removed while it was being pulled".into(),
        })
    }

    /// The manifest for this platform: the reference's own, or the index entry picked for it.
    async fn resolve(
        &self,
        session: &Session<'_>,
        parsed: &ImageReference,
        name: &str,
    ) -> Result<(Vec<u8>, String, ImageManifest), ImageError> {
        let bad = |reason: String| ImageError::BadImage { reference: name.to_string(), reason };
        let (bytes, digest) = session.manifest(parsed).await?;
        match manifest::parse(&bytes).map_err(bad)? {
            Fetched::Image(m) => Ok((bytes, digest, m)),
            Fetched::Index(entries) => {
                let wanted = &self.inner.options.platform;
                let chosen = manifest::pick_platform(&entries, wanted).map_err(|available| ImageError::NoPlatform {
                    reference: name.to_string(),
                    wanted: wanted.to_string(),
                    available,
                })?;
                parse_digest(&chosen).map_err(bad)?;
                let (bytes, digest) = session.manifest(&parsed.with_digest(&chosen)).await?;
                match manifest::parse(&bytes).map_err(bad)? {
                    Fetched::Image(m) => Ok((bytes, digest, m)),
                    Fetched::Index(_) => Err(bad(format!("its index entry for {wanted} is another index"))),
                }
            }
        }
    }

    /// A blob, downloaded once however many pulls want it at the same time.
    async fn fetch_blob(
        &self,
        session: &Session<'_>,
        name: &str,
        what: &'static str,
        blob: &Descriptor,
    ) -> Result<std::path::PathBuf, ImageError> {
        let _one_fetch = self.inner.blob_locks.lock(&blob.digest).await;
        self.inner.blobs.download(session, name, what, &blob.digest, blob.size).await
    }

    /// A layer unpacked in the store (fetched and unpacked once however many pulls want it).
    async fn ensure_layer(
        &self,
        session: &Session<'_>,
        name: &str,
        layer: &Descriptor,
    ) -> Result<LayerRecord, ImageError> {
        let bad = |reason: String| ImageError::BadImage { reference: name.to_string(), reason };
        let dest = layer_dir(&self.inner.layers, &layer.digest)
            .ok_or_else(|| bad(format!("layer digest {:?} is not sha256:<hex>", layer.digest)))?;
        let _one_unpack = self.inner.blob_locks.lock(&layer.digest).await;
        let known = self.known_layer_size(&layer.digest);
        if dest.is_dir() {
            let size = match known {
                Some(size) => size,
                None => disk_usage(&dest).map_err(|e| ImageError::io(name, "measuring", &dest, e))?,
            };
            return Ok(LayerRecord { digest: layer.digest.clone(), size });
        }
        let blob = self.inner.blobs.download(session, name, "layer", &layer.digest, layer.size).await?;
        let (tmp, reference, digest, target) =
            (self.inner.tmp.clone(), name.to_string(), layer.digest.clone(), dest.clone());
        // The unpacked layer replaces its blob: the cache keeps each layer once.
        let unpack = move || {
            let size = unpack_layer(&blob, &tmp, &target, &reference, &digest)?;
            let _ = std::fs::remove_file(&blob);
            Ok::<_, ImageError>(size)
        };
        let size = tokio::task::spawn_blocking(unpack)
            .await
            .map_err(|e| bad(format!("unpacking layer {} stopped: {e}", layer.digest)))??;
        debug!(reference = %name, digest = %layer.digest, size, "Layer unpacked.");
        Ok(LayerRecord { digest: layer.digest.clone(), size })
    }

    fn known_layer_size(&self, digest: &str) -> Option<u64> {
        let state = self.inner.state();
        state.records.values().flat_map(|r| &r.layers).find(|l| l.digest == digest).map(|l| l.size)
    }

    /// The cached image `name` resolves to (or, with `digest`, the image of that manifest, now
    /// also known as `name`), marked as just used.
    fn touch_cached(&self, name: &str, digest: Option<&str>) -> Result<Option<Image>, ImageError> {
        let record = {
            let state = self.inner.state();
            let digest = match digest {
                Some(digest) => digest.to_string(),
                None => match state.references.get(name) {
                    Some(digest) => digest.clone(),
                    None => return Ok(None),
                },
            };
            match state.records.get(&digest) {
                Some(record) => record.clone(),
                None => return Ok(None),
            }
        };
        if self.inner.image(&record, name).is_none() {
            return Ok(None);
        }
        let mut record = record;
        record.last_used = SystemTime::now();
        self.remember(record.clone(), name)?;
        Ok(self.inner.image(&record, name))
    }

    /// Saves `record` and makes `name` point at it (taking the name off any other image);
    /// names other pulls gave the same image meanwhile are kept.
    fn remember(&self, mut record: ImageRecord, name: &str) -> Result<(), ImageError> {
        let inner = &self.inner;
        let mut state = inner.state();
        let digest = record.manifest_digest.clone();
        if let Some(existing) = state.records.get(&digest) {
            for other in &existing.references {
                let still_ours = state.references.get(other) == Some(&digest);
                if still_ours && !record.references.contains(other) {
                    record.references.push(other.clone());
                }
            }
        }
        if !record.references.iter().any(|r| r == name) {
            record.references.push(name.to_string());
        }
        record::save(&inner.images, &inner.tmp, &record)?;
        if let Some(previous) = state.references.insert(name.to_string(), digest.clone())
            && previous != digest
            && let Some(old) = state.records.get_mut(&previous)
        {
            old.references.retain(|r| r != name);
            record::save(&inner.images, &inner.tmp, old)?;
        }
        state.records.insert(digest, record);
        Ok(())
    }
}
