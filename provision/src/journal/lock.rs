//! The cluster lock: an exclusive `flock` on `<state dir>/lock`, held by `up` and `down` for
//! their whole run. The holder writes its pid into the file so a refused run can name it. The
//! kernel releases the lock when the holder exits, so a crashed run never leaves it stuck.

use super::JournalError;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside a cluster's state dir.
pub const LOCK_FILE: &str = "lock";

/// A held cluster lock; dropping it releases the lock.
#[derive(Debug)]
pub struct ClusterLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl ClusterLock {
    /// Takes the lock of the state dir `dir` (created if missing) without waiting; fails with
    /// [`JournalError::Locked`] naming the holder's pid when another process or handle holds it.
    pub fn acquire(dir: &Path) -> Result<Self, JournalError> {
        std::fs::create_dir_all(dir).map_err(|source| JournalError::Io {
            op: "create dir",
            path: dir.into(),
            source,
        })?;
        let path = dir.join(LOCK_FILE);
        let io = |op: &'static str| {
            let path = path.clone();
            move |source| JournalError::Io { op, path, source }
        };
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io("open"))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let pid = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
                return Err(JournalError::Locked { dir: dir.to_path_buf(), pid });
            }
            Err((_, errno)) => return Err(io("lock")(std::io::Error::from(errno))),
        };
        lock.set_len(0).map_err(io("truncate"))?;
        lock.rewind().map_err(io("rewind"))?;
        writeln!(lock, "{}", std::process::id()).map_err(io("write"))?;
        lock.sync_data().map_err(io("fsync"))?;
        Ok(Self { _lock: lock, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
