//! The run lock: `DIR/run.lock` holds the pid of the server running on a
//! data folder, under an exclusive `flock` for the life of the process. A
//! second `run` finds it taken at once and names the holder, instead of
//! waiting on sled's own lock and failing with its raw error.
//!
//! The kernel drops a `flock` when its process dies, so a crash leaves no
//! stale lock (the file and its old pid stay and are overwritten).

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use crate::datadir::DataDir;

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "another server (pid {pid}) holds the data folder {}: stop it first, or give another --data",
        dir.display()
    )]
    Held {
        /// The data folder.
        dir: PathBuf,
        /// The pid written in the lock file (`?` if unreadable).
        pid: String,
    },
    /// The lock file could not be opened or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// The lock, held until dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Take the run lock of `dir` without waiting and write our pid in it.
///
/// # Errors
/// [`LockError::Held`] when another process holds it; I/O errors.
pub fn take(dir: &Path) -> Result<RunLock, LockError> {
    let path = DataDir::new(dir).run_lock();
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let mut f = crate::fsutil::private()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    if let Err(e) = flock(&f, FlockOperation::NonBlockingLockExclusive) {
        if e == rustix::io::Errno::WOULDBLOCK {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(LockError::Held {
                dir: dir.to_path_buf(),
                pid: if pid.is_empty() {
                    "?".into()
                } else {
                    pid.into()
                },
            });
        }
        return Err(io(e.into()));
    }
    f.set_len(0).map_err(io)?;
    f.rewind().map_err(io)?;
    writeln!(f, "{}", std::process::id()).map_err(io)?;
    Ok(RunLock { _file: f })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_told_the_holders_pid() {
        let d = tempfile::tempdir().unwrap();
        let held = take(d.path()).unwrap();
        // flock is per open file description: a second open in the same
        // process conflicts as another process would.
        let e = take(d.path()).unwrap_err().to_string();
        let pid = std::process::id();
        assert!(
            e.contains(&format!("another server (pid {pid}) holds")),
            "{e}"
        );
        drop(held);
        take(d.path()).unwrap();
    }
}
