//! How much disk a sandbox takes: the blocks allocated to it and to everything below it (sparse
//! files count what they hold, not their length), each inode once (hard links), symlinks not
//! followed, and other filesystems mounted inside (a container's root) not entered. The executor
//! measures it every few seconds against the task's `disk` limit. Synchronous.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes of disk allocated to `root` and everything below it on its filesystem; what cannot be
/// read (a file removed meanwhile, a directory without permission) counts as nothing.
pub fn usage_bytes(root: &Path) -> u64 {
    let Ok(top) = std::fs::symlink_metadata(root) else { return 0 };
    let device = top.dev();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut total = top.blocks() * 512;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let Ok(metadata) = entry.metadata() else { continue };
            if metadata.dev() != device || (metadata.nlink() > 1 && !seen.insert(metadata.ino())) {
                continue;
            }
            total += metadata.blocks() * 512;
            if metadata.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn counts_blocks_written_once_per_inode_and_not_the_holes_of_sparse_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let empty = usage_bytes(dir.path());
        let mut file = std::fs::File::create(dir.path().join("data")).expect("create");
        file.write_all(&vec![1u8; 4 << 20]).expect("write");
        file.sync_all().expect("sync");
        let written = usage_bytes(dir.path()) - empty;
        assert!((4 << 20..5 << 20).contains(&written), "{written}");

        std::fs::hard_link(dir.path().join("data"), dir.path().join("again")).expect("link");
        std::os::unix::fs::symlink(dir.path().join("data"), dir.path().join("symlink")).expect("symlink");
        std::fs::create_dir(dir.path().join("sub")).expect("sub");
        let sparse = std::fs::File::create(dir.path().join("sub/sparse")).expect("create");
        sparse.set_len(1 << 30).expect("a 1 GiB hole");
        let total = usage_bytes(dir.path()) - empty;
        assert!(total < written + (1 << 20), "links, symlinks and holes add next to nothing: {total}");
        assert_eq!(usage_bytes(&dir.path().join("missing")), 0);
    }
}
