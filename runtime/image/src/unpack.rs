//! Unpacking one layer blob (tar; gzip or zstd compressed, recognized by their magic numbers)
//! into a directory that overlayfs takes as a lower layer as it is: OCI whiteouts become
//! overlayfs whiteouts (`.wh.NAME` → a 0:0 character device `NAME`; `.wh..wh..opq` → the
//! xattr `trusted.overlay.opaque=y` on its directory). Ownership, modes, xattrs, symlinks,
//! hard links and device nodes are kept (ownership and devices need root). Entries with `..`
//! and entries reached through a symlink that leaves the layer are refused.
//!
//! The layer is unpacked into a fresh directory under the store's `tmp/`, synced, and renamed
//! to its final place only when complete, so a crash never leaves a half-unpacked layer where
//! a pull would trust it. Blocking: run it on a blocking thread.

use crate::error::ImageError;
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The xattr overlayfs reads to hide a lower directory's contents.
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Unpacks the layer blob at `blob` into `dest` (which must not exist) by way of a temporary
/// directory in `tmp`; returns the bytes the layer takes on disk.
pub(crate) fn unpack_layer(
    blob: &Path,
    tmp: &Path,
    dest: &Path,
    reference: &str,
    digest: &str,
) -> Result<u64, ImageError> {
    let bad = |reason: String| ImageError::BadImage {
        reference: reference.to_string(),
        reason: format!("layer {digest}: {reason}"),
    };
    let staging = tempfile::Builder::new()
        .prefix("layer-")
        .tempdir_in(tmp)
        .map_err(|e| ImageError::io(reference, "creating a directory in", tmp, e))?;
    let root = staging.path();
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))
        .map_err(|e| ImageError::io(reference, "setting the mode of", root, e))?;
    let file = File::open(blob).map_err(|e| ImageError::io(reference, "opening", blob, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let magic = reader.fill_buf().map_err(|e| ImageError::io(reference, "reading", blob, e))?;
    let decoded: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(reader))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(ruzstd::decoding::StreamingDecoder::new(reader).map_err(|e| bad(format!("bad zstd stream: {e}")))?)
    } else {
        Box::new(reader)
    };
    let mut archive = tar::Archive::new(decoded);
    let as_root = nix::unistd::geteuid().is_root();
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(as_root);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let entries = archive.entries().map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| unpack_error(reference, digest, root, e))?;
        let path = entry.path().map_err(|e| bad(format!("an entry has an invalid path: {e}")))?.into_owned();
        let Some(rel) = relative(&path) else {
            return Err(bad(format!("entry {} leaves the layer (..)", path.display())));
        };
        let Some(name) = rel.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue; // the layer's root itself
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        let kind = entry.header().entry_type();
        if name == ".wh..wh..opq" {
            let dir = ensure_dir(root, parent).map_err(bad)?;
            xattr::set(&dir, OPAQUE_XATTR, b"y")
                .map_err(|e| ImageError::io(reference, "marking opaque (needs root for trusted.* xattrs)", &dir, e))?;
        } else if let Some(hidden) = name.strip_prefix(".wh.") {
            let target = ensure_dir(root, parent).map_err(bad)?.join(hidden);
            remove_existing(&target).map_err(|e| ImageError::io(reference, "replacing", &target, e))?;
            mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(|e| {
                ImageError::io(reference, "creating a whiteout (needs root: CAP_MKNOD)", &target, e.into())
            })?;
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            let target = ensure_dir(root, parent).map_err(bad)?.join(&name);
            make_node(&entry, &target, as_root)
                .map_err(|e| ImageError::io(reference, "creating the device node", &target, e))?;
        } else if !entry.unpack_in(root).map_err(|e| unpack_error(reference, digest, root, e))? {
            return Err(bad(format!("entry {} leaves the layer", path.display())));
        }
    }
    let size = disk_usage(root).map_err(|e| ImageError::io(reference, "measuring", root, e))?;
    let dir = File::open(root).map_err(|e| ImageError::io(reference, "opening", root, e))?;
    nix::unistd::syncfs(&dir).map_err(|e| ImageError::io(reference, "syncing", root, e.into()))?;
    let staged = staging.keep();
    if let Err(e) = fs::rename(&staged, dest) {
        let _ = fs::remove_dir_all(&staged);
        if !dest.is_dir() {
            return Err(ImageError::io(reference, "renaming a layer to", dest, e));
        }
    }
    Ok(size)
}

/// `path` without leading `/` and `.` components; `None` when it has a `..`.
fn relative(path: &Path) -> Option<PathBuf> {
    let mut rel = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => rel.push(part),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => return None,
        }
    }
    Some(rel)
}

/// `root/rel`, creating missing directories; refuses to go through a symlink or a non-directory.
fn ensure_dir(root: &Path, rel: &Path) -> Result<PathBuf, String> {
    let mut dir = root.to_path_buf();
    for part in rel.components() {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "{} is not a directory (a symlink or a file) where an entry needs one",
                    rel.display()
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
            }
            Err(e) => return Err(format!("reading {}: {e}", dir.display())),
        }
    }
    Ok(dir)
}

fn remove_existing(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A character or block device or a FIFO, as the tar header describes it.
fn make_node<R: Read>(entry: &tar::Entry<'_, R>, target: &Path, as_root: bool) -> io::Result<()> {
    let header = entry.header();
    let kind = header.entry_type();
    let flag = if kind.is_character_special() {
        SFlag::S_IFCHR
    } else if kind.is_block_special() {
        SFlag::S_IFBLK
    } else {
        SFlag::S_IFIFO
    };
    let mode = header.mode()? & 0o7777;
    let dev = makedev(u64::from(header.device_major()?.unwrap_or(0)), u64::from(header.device_minor()?.unwrap_or(0)));
    remove_existing(target)?;
    mknod(target, flag, Mode::from_bits_truncate(mode), dev)?;
    if as_root {
        let uid = u32::try_from(header.uid()?).map_err(io::Error::other)?;
        let gid = u32::try_from(header.gid()?).map_err(io::Error::other)?;
        std::os::unix::fs::lchown(target, Some(uid), Some(gid))?;
    }
    fs::set_permissions(target, fs::Permissions::from_mode(mode))
}

/// Maps tar's errors: a full disk is [`ImageError::NoSpace`], the rest a bad layer.
fn unpack_error(reference: &str, digest: &str, root: &Path, e: io::Error) -> ImageError {
    if matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded) {
        return ImageError::NoSpace { reference: reference.to_string(), path: root.to_path_buf() };
    }
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    ImageError::BadImage { reference: reference.to_string(), reason: format!("layer {digest}: {reason}") }
}

/// Bytes the tree at `root` takes on disk (allocated blocks, each inode counted once).
pub(crate) fn disk_usage(root: &Path) -> io::Result<u64> {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let meta = fs::symlink_metadata(&dir)?;
        total += meta.blocks() * 512;
        if !meta.is_dir() {
            continue;
        }
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.nlink() == 1 || seen.insert(meta.ino()) {
                total += meta.blocks() * 512;
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(relative(Path::new("/./bin/sh")), Some(PathBuf::from("bin/sh")));
        assert_eq!(relative(Path::new("a/../../etc/passwd")), None);
        assert_eq!(relative(Path::new("./")), Some(PathBuf::new()));
    }

    /// Unpacks `tar` as a layer in a fresh directory; returns the directory and the result.
    fn unpack(tar: Vec<u8>) -> (tempfile::TempDir, Result<u64, ImageError>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let blob = dir.path().join("blob");
        std::fs::write(&blob, tar).expect("blob");
        std::fs::create_dir(dir.path().join("tmp")).expect("tmp");
        let result = unpack_layer(&blob, &dir.path().join("tmp"), &dir.path().join("layer"), "r/a:1", "sha256:x");
        (dir, result)
    }

    fn leftovers(dir: &Path) -> usize {
        fs::read_dir(dir.join("tmp")).expect("tmp").count()
    }

    #[test]
    fn entries_with_parent_components_are_refused() {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..9].copy_from_slice(b"../escape");
        header.set_size(1);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&header, &b"x"[..]).expect("append");
        let (dir, result) = unpack(builder.into_inner().expect("tar"));
        let err = result.expect_err("refused");
        assert!(err.to_string().contains("leaves the layer"), "{err}");
        assert!(!dir.path().join("escape").exists() && !dir.path().join("layer").exists());
        assert_eq!(leftovers(dir.path()), 0, "the half-made layer is removed");
    }

    #[test]
    fn symlinks_out_of_the_layer_are_not_followed() {
        let outside = tempfile::tempdir().expect("outside");
        let mut builder = tar::Builder::new(Vec::new());
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        builder.append_link(&mut link, "escape", outside.path()).expect("symlink");
        let mut file = tar::Header::new_gnu();
        file.set_size(1);
        file.set_mode(0o644);
        builder.append_data(&mut file, "escape/planted", &b"x"[..]).expect("file");
        let (dir, result) = unpack(builder.into_inner().expect("tar"));
        assert!(matches!(result, Err(ImageError::BadImage { .. })), "{result:?}");
        assert!(!outside.path().join("planted").exists(), "nothing written outside the layer");
        assert_eq!(leftovers(dir.path()), 0);
    }

    #[test]
    fn a_plain_layer_unpacks_and_measures() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut file = tar::Header::new_gnu();
        file.set_size(5000);
        file.set_mode(0o600);
        file.set_uid(0);
        file.set_gid(0);
        file.set_mtime(1);
        builder.append_data(&mut file, "etc/data", &[1u8; 5000][..]).expect("file");
        let (dir, result) = unpack(builder.into_inner().expect("tar"));
        let size = result.expect("unpacked");
        assert!(size >= 5000, "{size}");
        assert_eq!(fs::read(dir.path().join("layer/etc/data")).expect("file").len(), 5000);
        assert_eq!(leftovers(dir.path()), 0);
    }

    #[test]
    fn ensure_dir_refuses_symlinks() {
        let root = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/etc", root.path().join("escape")).expect("symlink");
        assert!(ensure_dir(root.path(), Path::new("escape/x")).is_err());
        let made = ensure_dir(root.path(), Path::new("a/b")).expect("dirs");
        assert!(made.is_dir());
    }
}
