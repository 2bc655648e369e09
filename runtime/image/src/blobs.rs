//! The content-addressed blob directory, `<root>/blobs/sha256/<hex>`: every blob is streamed
//! into a temporary file under `<root>/tmp`, hashed on the way, and renamed in only when its
//! SHA-256 matches the digest asked for. A blob file therefore always holds what its name
//! says; a failed or interrupted download leaves nothing here (the temporary file is removed,
//! or found and removed by the next [`crate::ImageStore::open`]).

use crate::error::ImageError;
use crate::reference::parse_digest;
use crate::registry::{Session, network_error};
use futures_util::StreamExt;
use oci_client::errors::DigestError;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

/// The blob directory and the store's temporary directory (same filesystem, for renames).
#[derive(Debug, Clone)]
pub(crate) struct Blobs {
    dir: PathBuf,
    tmp: PathBuf,
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

impl Blobs {
    pub(crate) fn new(dir: PathBuf, tmp: PathBuf) -> Self {
        Self { dir, tmp }
    }

    /// Where the blob `digest` lives; `Err` when the digest is not `sha256:<64 hex>` (a
    /// manifest naming paths instead of digests is refused here).
    pub(crate) fn path(&self, digest: &str) -> Result<PathBuf, String> {
        let digest = parse_digest(digest)?;
        Ok(self.dir.join(&digest["sha256:".len()..]))
    }

    /// Stores `bytes` (already in memory, e.g. a manifest) as the blob `digest` after checking it.
    pub(crate) fn write(
        &self,
        reference: &str,
        what: &'static str,
        digest: &str,
        bytes: &[u8],
    ) -> Result<PathBuf, ImageError> {
        let path =
            self.path(digest).map_err(|reason| ImageError::BadImage { reference: reference.to_string(), reason })?;
        let got = sha256_digest(bytes);
        if got != digest {
            return Err(ImageError::DigestMismatch {
                reference: reference.to_string(),
                what,
                expected: digest.to_string(),
                got,
            });
        }
        if path.exists() {
            return Ok(path);
        }
        let io = |action, e| ImageError::io(reference, action, &self.tmp, e);
        let mut tmp =
            tempfile::Builder::new().prefix("blob-").tempfile_in(&self.tmp).map_err(|e| io("creating a file in", e))?;
        tmp.write_all(bytes).map_err(|e| io("writing a file in", e))?;
        tmp.as_file().sync_all().map_err(|e| io("syncing a file in", e))?;
        tmp.persist(&path).map_err(|e| ImageError::io(reference, "renaming a blob to", &path, e.error))?;
        Ok(path)
    }

    /// Downloads the blob `digest` (of `size` bytes, 0 when unknown) unless it is here already,
    /// verifying it on the way; returns its path.
    pub(crate) async fn download(
        &self,
        session: &Session<'_>,
        reference: &str,
        what: &'static str,
        digest: &str,
        size: u64,
    ) -> Result<PathBuf, ImageError> {
        let path =
            self.path(digest).map_err(|reason| ImageError::BadImage { reference: reference.to_string(), reason })?;
        if path.exists() {
            return Ok(path);
        }
        let io = |action, e| ImageError::io(reference, action, &self.tmp, e);
        let (file, tmp_path) = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&self.tmp)
            .map_err(|e| io("creating a file in", e))?
            .into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut stream = session.blob(digest, size).await?;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) if is_verification_error(&e) => break,
                Err(e) => return Err(network_error(registry_of(reference), reference, &e)),
            };
            written += chunk.len() as u64;
            if size > 0 && written > size {
                return Err(ImageError::BadImage {
                    reference: reference.to_string(),
                    reason: format!(
                        "the registry sent more than the {size} bytes its manifest gives for {what} {digest}"
                    ),
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(|e| ImageError::io(reference, "writing", &tmp_path, e))?;
        }
        file.flush().await.map_err(|e| ImageError::io(reference, "writing", &tmp_path, e))?;
        file.sync_all().await.map_err(|e| ImageError::io(reference, "syncing", &tmp_path, e))?;
        drop(file);
        let got = format!("sha256:{:x}", hasher.finalize());
        if got != digest {
            return Err(ImageError::DigestMismatch {
                reference: reference.to_string(),
                what,
                expected: digest.to_string(),
                got,
            });
        }
        tmp_path.persist(&path).map_err(|e| ImageError::io(reference, "renaming a blob to", &path, e.error))?;
        Ok(path)
    }

    /// Removes the blob `digest` if it is here.
    pub(crate) fn remove(&self, digest: &str) -> u64 {
        let Ok(path) = self.path(digest) else { return 0 };
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(&path) {
            Ok(()) => size,
            Err(_) => 0,
        }
    }

    /// The digests of every blob here.
    pub(crate) fn list(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        entries.flatten().filter_map(|e| e.file_name().to_str().map(|hex| format!("sha256:{hex}"))).collect()
    }
}

/// oci-client's own check of the digest fails the stream's last item; ours reports it.
fn is_verification_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<DigestError>())
        .is_some_and(|d| matches!(d, DigestError::VerificationError { .. }))
}

/// The registry part of a normalized reference string.
fn registry_of(reference: &str) -> &str {
    reference.split('/').next().unwrap_or(reference)
}
