//! The image index, `<root>/images/<hex of the manifest digest>.json`: one file per cached
//! image, written (to a temporary file, then renamed) only after every blob and layer it names
//! is in place, so a record always describes a complete image.

use crate::error::ImageError;
use crate::manifest::ImageConfig;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One unpacked layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    /// The layer blob's digest (also its directory's name).
    pub digest: String,
    /// Bytes the unpacked layer takes on disk.
    pub size: u64,
}

/// A cached image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    pub manifest_digest: String,
    /// Normalized references that resolve to this image here.
    pub references: Vec<String>,
    pub config_digest: String,
    pub config: ImageConfig,
    /// Bottom first.
    pub layers: Vec<LayerRecord>,
    pub manifest_size: u64,
    pub config_size: u64,
    pub last_used: SystemTime,
}

impl ImageRecord {
    /// Bytes this image takes, counting shared layers in full.
    pub(crate) fn size(&self) -> u64 {
        self.manifest_size + self.config_size + self.layers.iter().map(|l| l.size).sum::<u64>()
    }

    /// The digests of every blob the image keeps (manifest and config; layers are kept
    /// unpacked, not as blobs).
    pub(crate) fn blobs(&self) -> [&str; 2] {
        [&self.manifest_digest, &self.config_digest]
    }
}

fn file_name(digest: &str) -> String {
    format!("{}.json", digest.trim_start_matches("sha256:"))
}

/// Writes `record` into `dir` atomically (through `tmp`).
pub(crate) fn save(dir: &Path, tmp: &Path, record: &ImageRecord) -> Result<(), ImageError> {
    let reference = record.references.first().cloned().unwrap_or_default();
    let path = dir.join(file_name(&record.manifest_digest));
    let json =
        serde_json::to_vec_pretty(record).map_err(|e| ImageError::io(&reference, "encoding", &path, e.into()))?;
    let mut file = tempfile::Builder::new()
        .prefix("image-")
        .tempfile_in(tmp)
        .map_err(|e| ImageError::io(&reference, "creating a file in", tmp, e))?;
    file.write_all(&json).map_err(|e| ImageError::io(&reference, "writing", &path, e))?;
    file.as_file().sync_all().map_err(|e| ImageError::io(&reference, "syncing", &path, e))?;
    file.persist(&path).map_err(|e| ImageError::io(&reference, "renaming a record to", &path, e.error))?;
    Ok(())
}

/// Removes the record of `digest` from `dir`.
pub(crate) fn remove(dir: &Path, digest: &str) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(file_name(digest))) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Every readable record in `dir`, and the paths of files that are not records.
pub(crate) fn load_all(dir: &Path) -> std::io::Result<(Vec<ImageRecord>, Vec<PathBuf>)> {
    let mut records = Vec::new();
    let mut unreadable = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let record = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<ImageRecord>(&bytes).ok())
            .filter(|r| path.file_name().and_then(|n| n.to_str()) == Some(file_name(&r.manifest_digest).as_str()));
        match record {
            Some(record) => records.push(record),
            None => unreadable.push(path),
        }
    }
    Ok((records, unreadable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_remove() {
        let dir = tempfile::tempdir().expect("dir");
        let tmp = tempfile::tempdir().expect("tmp");
        let record = ImageRecord {
            manifest_digest: "sha256:aa".into(),
            references: vec!["r/a:1".into()],
            config_digest: "sha256:bb".into(),
            config: ImageConfig::default(),
            layers: vec![LayerRecord { digest: "sha256:cc".into(), size: 7 }],
            manifest_size: 1,
            config_size: 2,
            last_used: SystemTime::UNIX_EPOCH,
        };
        save(dir.path(), tmp.path(), &record).expect("save");
        std::fs::write(dir.path().join("junk.json"), b"{").expect("junk");
        let (records, unreadable) = load_all(dir.path()).expect("load");
        assert_eq!(records, vec![record.clone()]);
        assert_eq!(unreadable, vec![dir.path().join("junk.json")]);
        assert_eq!(record.size(), 10);
        remove(dir.path(), "sha256:aa").expect("remove");
        assert!(load_all(dir.path()).expect("load").0.is_empty());
    }
}
