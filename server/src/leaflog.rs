//! `DIR/leaves.log`: every leaf of the transparency log, in log order — the
//! source of truth of the log. The index (sled) holds the Merkle tree built
//! from it, which `reindex` can rebuild.
//!
//! Records are framed as in a chain log (`docs/FORMAT.md` §9: a big-endian
//! u16 length, then that many bytes), each holding one leaf's data
//! (§6.8). A leaf is appended and fsynced here before the index stores its
//! tree nodes, before any receipt or checkpoint can name it, so a published
//! leaf is never lost with the index.
//!
//! Failure handling follows what PostgreSQL learnt about fsync: a failed
//! write is cut off again; a failed fsync leaves the file's state unknown,
//! so the log refuses every later append until the process restarts and
//! re-reads what is really on disk. It never retries an fsync as if the
//! first had succeeded.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fieldseal_proto::chainlog;

use crate::datadir::DataDir;
use crate::fsutil::sync_dir;

/// The append-only file of log leaves.
#[derive(Debug)]
pub struct LeafLog {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    file: File,
    /// Bytes of complete, durable records.
    len: u64,
    /// Number of records.
    count: u64,
    /// Set when an fsync failed: the file can no longer be trusted.
    poisoned: Option<String>,
}

/// What opening found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// Leaves held.
    pub count: u64,
    /// Bytes of a torn last record that were cut off (an append that
    /// crashed before its fsync returned: nothing named it yet).
    pub cut: u64,
}

impl LeafLog {
    /// Open (or create) `DIR/leaves.log`. A torn last record is cut off.
    ///
    /// # Errors
    /// I/O errors; a damaged record before the end (the log is then not
    /// opened: a human has to look, nothing is cut).
    pub fn open(dir: &Path) -> io::Result<(LeafLog, Opened)> {
        let path = DataDir::new(dir).leaves_log();
        let new = !path.exists();
        let file = crate::fsutil::private()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if new {
            sync_dir(dir)?;
        }
        let bytes = std::fs::read(&path)?;
        let (log, damage) = chainlog::split_lossy(&bytes);
        if let Some(e) = damage {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is damaged at byte {}: {e}; the transparency log cannot be trusted \
                     until this is examined",
                    path.display(),
                    log.complete_len
                ),
            ));
        }
        let len = log.complete_len as u64;
        let cut = bytes.len() as u64 - len;
        if cut > 0 {
            tracing::warn!(path = %path.display(), cut, "cutting a torn leaf off the log");
            file.set_len(len)?;
            file.sync_all()?;
        }
        let count = log.records.len() as u64;
        Ok((
            LeafLog {
                path,
                state: Mutex::new(State {
                    file,
                    len,
                    count,
                    poisoned: None,
                }),
            },
            Opened { count, cut },
        ))
    }

    /// Number of leaves.
    pub fn count(&self) -> u64 {
        self.lock().count
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Append one leaf's data, durably. Returns its index.
    ///
    /// # Errors
    /// I/O errors (the leaf is then not in the log); an earlier failed fsync.
    pub fn append(&self, leaf: &[u8]) -> io::Result<u64> {
        self.append_many(&[leaf])
    }

    /// Append several leaves with one write and one fsync (group commit).
    /// Returns the index of the first.
    ///
    /// # Errors
    /// As [`LeafLog::append`]: on error none of them is in the log.
    pub fn append_many(&self, leaves: &[&[u8]]) -> io::Result<u64> {
        let mut s = self.lock();
        if let Some(why) = &s.poisoned {
            return Err(io::Error::other(format!(
                "the transparency log refuses appends since an fsync failed ({why}); \
                 restart the server"
            )));
        }
        let mut rec = Vec::with_capacity(
            leaves
                .iter()
                .map(|l| l.len() + chainlog::RECORD_HEADER)
                .sum(),
        );
        for l in leaves {
            chainlog::put_record(&mut rec, l);
        }
        if let Err(e) = s.file.write_all_at(&rec, s.len) {
            // Cut the partial records off, so that the next append is framed
            // right; if even that fails, the file is not to be trusted.
            if let Err(e2) = s.file.set_len(s.len) {
                s.poisoned = Some(format!("cutting a failed write: {e2}"));
            }
            return Err(e);
        }
        if let Err(e) = s.file.sync_data() {
            s.poisoned = Some(e.to_string());
            tracing::error!(path = %self.path.display(), "ALARM fsync of the leaf log failed: {e}");
            return Err(e);
        }
        let first = s.count;
        s.len += rec.len() as u64;
        s.count += leaves.len() as u64;
        Ok(first)
    }

    /// Every leaf from index `from` on, in order.
    ///
    /// # Errors
    /// I/O errors; the file changed under us.
    pub fn read_from(&self, from: u64) -> io::Result<Vec<Vec<u8>>> {
        let s = self.lock();
        let len = usize::try_from(s.len).map_err(io::Error::other)?;
        let mut bytes = vec![0u8; len];
        s.file.read_exact_at(&mut bytes, 0)?;
        let log = chainlog::split(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", self.path.display()),
            )
        })?;
        let skip = usize::try_from(from).unwrap_or(usize::MAX);
        Ok(log.records.iter().skip(skip).map(|r| r.to_vec()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_survive_reopen_and_a_torn_tail_is_cut() {
        let d = tempfile::tempdir().unwrap();
        let (log, o) = LeafLog::open(d.path()).unwrap();
        assert_eq!(o, Opened { count: 0, cut: 0 });
        assert_eq!(log.append(b"one").unwrap(), 0);
        assert_eq!(log.append(b"two").unwrap(), 1);
        drop(log);
        // A crash in the middle of the third append.
        let p = DataDir::new(d.path()).leaves_log();
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.extend_from_slice(&[0, 5, b't', b'h']);
        std::fs::write(&p, &bytes).unwrap();
        let (log, o) = LeafLog::open(d.path()).unwrap();
        assert_eq!(o, Opened { count: 2, cut: 4 });
        assert_eq!(log.append(b"three").unwrap(), 2);
        assert_eq!(
            log.read_from(1).unwrap(),
            vec![b"two".to_vec(), b"three".to_vec()]
        );
    }

    #[test]
    fn damage_before_the_end_refuses_to_open() {
        let d = tempfile::tempdir().unwrap();
        let (log, _) = LeafLog::open(d.path()).unwrap();
        log.append(b"one").unwrap();
        log.append(b"two").unwrap();
        drop(log);
        let p = DataDir::new(d.path()).leaves_log();
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[0] = 0; // a zero length: damage, not a torn tail
        bytes[1] = 0;
        std::fs::write(&p, &bytes).unwrap();
        let err = LeafLog::open(d.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("damaged at byte 0"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), bytes, "changed a damaged log");
    }
}
