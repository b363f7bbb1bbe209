//! The agent's sled index: a cache over the files of the spool for quick
//! answers (chain head, segment count, bytes held), never the source of truth.
//! `fieldseal-agent reindex` throws it away and rebuilds it from `chain.log`.
//!
//! Being a cache, a damaged index never stops the agent: [`Index::open_repairing`]
//! moves a folder that sled finds corrupt (a power cut can tear `index/conf`,
//! which sled writes once and never fsyncs) aside to `index.damaged-<unix
//! seconds>/`, kept for inspection, and rebuilds the index from `chain.log`.
//!
//! ```text
//! key                 value
//! "head"              next_seq u64 || last_hash [32] || log_len u64
//! "e" || seq u64      kind u8 || media_len u64 || wall_us i64
//! ```

use std::path::{Path, PathBuf};

use fieldseal_proto::codec::Decode;
use fieldseal_proto::entry::{Body, SignedEntry};

use crate::chainlog;
use crate::spoolfs::{SpoolFs, StdFs};

/// Errors of the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// sled failed.
    #[error("index: {0}")]
    Sled(#[from] sled::Error),
    /// The chain log could not be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The chain log is damaged.
    #[error("chain.log is damaged at byte {0}: {1}")]
    Damaged(usize, String),
}

impl IndexError {
    /// Whether the error says that the index's own files are damaged (so that
    /// moving them aside and rebuilding is the cure), as opposed to an error
    /// of the chain log or of the system (a full disk, another process
    /// holding the index), which rebuilding would not cure.
    pub fn is_index_damage(&self) -> bool {
        match self {
            IndexError::Sled(e) => match e {
                sled::Error::Corruption { .. }
                | sled::Error::Unsupported(_)
                | sled::Error::ReportableBug(_)
                | sled::Error::CollectionNotFound(_) => true,
                // A file of the index cut short or holding garbage; a lock
                // held by another process or a full disk is not damage.
                sled::Error::Io(io) => matches!(
                    io.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
                ),
            },
            IndexError::Io(_) | IndexError::Damaged(..) => false,
        }
    }
}

/// Most memory sled may use to cache the index's pages. sled's default is 1 GiB, which a
/// long-running agent would approach: the index grows by some 50 bytes per chain entry, ~1 MiB a
/// day of 4 s segments, and nothing evicts below the capacity. The index is read on start and for
/// `status`, never on the recording path, so a small cache costs nothing a body camera notices;
/// 4 MiB keeps the hot pages (the head, the latest entries) with room to spare.
const INDEX_CACHE_BYTES: u64 = 4 << 20;

/// What the index knows of the chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexSummary {
    /// Next seq.
    pub next_seq: u64,
    /// Length of chain.log the index covers.
    pub log_len: u64,
    /// Segment entries.
    pub segments: u64,
    /// Event entries.
    pub events: u64,
}

/// The open index.
#[derive(Debug)]
pub struct Index {
    db: sled::Db,
}

/// Entries written to sled in one batch while catching up with the chain log. One batch per
/// entry cost ~150 µs an entry, 13–15 s for 100,000 (docs/PERFORMANCE.md, the first start
/// after filling a spool); a batch holds ~100 KB of keys and values.
const CATCH_UP_BATCH: usize = 4096;

/// Adds an entry at chain-log length `log_len` after it, and the head it makes, to `batch`
/// (a later head in the same batch replaces an earlier one).
fn put(batch: &mut sled::Batch, e: &SignedEntry, log_len: u64) {
    let (kind, media_len) = match &e.entry.body {
        Body::Segment(s) => (1u8, s.media_len),
        Body::Event(_) => (2u8, 0),
    };
    let mut key = vec![b'e'];
    key.extend_from_slice(&e.seq().to_be_bytes());
    let mut val = vec![kind];
    val.extend_from_slice(&media_len.to_be_bytes());
    val.extend_from_slice(&e.entry.wall_us.to_be_bytes());
    let mut head = (e.seq() + 1).to_be_bytes().to_vec();
    head.extend_from_slice(&e.hash());
    head.extend_from_slice(&log_len.to_be_bytes());
    batch.insert(key, val);
    batch.insert(b"head".as_slice(), head);
}

/// How long opening the index waits for another process to let go of it: a
/// `status` or `verify` run while `run` starts holds it for the moment it
/// takes to read it, and must not make `run` fail. Far longer than that; a
/// process that holds it longer is another recorder, refused after this.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether sled could not open the index because another process holds its
/// lock. sled says so only in words ("could not acquire lock on …", the
/// `flock` error formatted in), so the words are what is matched.
fn held_by_another(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}

impl Index {
    /// Open (or create) the index in `dir/index`, waiting up to
    /// [`LOCK_WAIT`] while another process holds it.
    ///
    /// # Errors
    /// sled errors, among them another process holding the index longer.
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match Self::open_once(dir) {
                Err(IndexError::Sled(sled::Error::Io(e)))
                    if held_by_another(&e) && std::time::Instant::now() < deadline =>
                {
                    tracing::debug!(error = %e, "index held by another process; waiting");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn open_once(dir: &Path) -> Result<Self, IndexError> {
        // sled makes its folder with the umask's mode: make it first, the
        // owner's alone, so that its files are out of other users' reach.
        let path = dir.join("index");
        crate::fsutil::create_dir_private(&path).map_err(|e| IndexError::Sled(e.into()))?;
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(INDEX_CACHE_BYTES)
            .open()?;
        // sled never fsyncs `conf` (written once, at creation) nor the folder
        // naming its files: do so, so that a cut soon after creation does
        // not cost a rebuild. Three fsyncs per open.
        let index = dir.join("index");
        std::fs::File::open(index.join("conf"))
            .and_then(|f| f.sync_all())
            .and_then(|()| crate::fsutil::sync_dir(&index))
            .and_then(|()| crate::fsutil::sync_dir(dir))?;
        Ok(Index { db })
    }

    /// Open the index in `dir/index` and bring it up to date with
    /// `dir/chain.log`. If sled finds the index's files damaged, they are moved
    /// aside to `dir/index.damaged-<unix seconds>/` (kept for inspection, and
    /// logged) and the index is rebuilt from the chain log: the index is a
    /// cache and must never stop the agent from recording. Returns the index
    /// and, after a repair, where the damaged folder went.
    ///
    /// # Errors
    /// A damaged chain log, I/O errors, another process holding the index, or
    /// sled failing on a freshly made index.
    pub fn open_repairing(dir: &Path) -> Result<(Self, Option<PathBuf>), IndexError> {
        let err = match Self::open(dir).and_then(|idx| idx.catch_up(dir).map(|_| idx)) {
            Ok(idx) => return Ok((idx, None)),
            Err(e) if e.is_index_damage() => e,
            Err(e) => return Err(e),
        };
        let aside = move_aside(dir)?;
        tracing::warn!(
            error = %err,
            moved_to = %aside.display(),
            "the index is damaged (a cache): moved aside, rebuilding it from chain.log"
        );
        let idx = Self::open(dir)?;
        let n = idx.catch_up(dir)?;
        tracing::info!(entries = n, "index rebuilt from chain.log");
        Ok((idx, Some(aside)))
    }

    /// [`Index::catch_up`], and if that finds the index damaged,
    /// [`Index::open_repairing`] in its place.
    ///
    /// # Errors
    /// As [`Index::open_repairing`].
    pub fn catch_up_or_repair(self, dir: &Path) -> Result<Self, IndexError> {
        match self.catch_up(dir) {
            Ok(_) => Ok(self),
            Err(e) if e.is_index_damage() => {
                drop(self);
                Ok(Self::open_repairing(dir)?.0)
            }
            Err(e) => Err(e),
        }
    }

    /// Record an appended entry, at chain-log length `log_len` after it.
    ///
    /// # Errors
    /// sled errors.
    pub fn add(&self, e: &SignedEntry, log_len: u64) -> Result<(), IndexError> {
        let mut batch = sled::Batch::default();
        put(&mut batch, e, log_len);
        self.db.apply_batch(batch)?;
        Ok(())
    }

    /// Bring the index up to date with `dir/chain.log`: entries past the
    /// length it covers are added. Returns how many.
    ///
    /// # Errors
    /// I/O, sled, or a damaged chain log.
    pub fn catch_up(&self, dir: &Path) -> Result<u64, IndexError> {
        self.catch_up_with(&StdFs, dir)
    }

    /// [`Index::catch_up`] reading the chain log through `fs` (the fault
    /// suite's in-memory twin, [`crate::spoolfs::MemFs`]).
    ///
    /// # Errors
    /// As [`Index::catch_up`].
    pub fn catch_up_with(&self, fs: &dyn SpoolFs, dir: &Path) -> Result<u64, IndexError> {
        let path = chainlog::path(dir);
        let len = match fs.len(&path) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e.into()),
        };
        let covered = self.summary()?.log_len;
        let log = if covered > len {
            None
        } else {
            Some(chainlog::read_from(fs, &path, covered)?)
        };
        let Some(log) = log.filter(|l| covered == 0 || l.damage().is_none()) else {
            // The log is shorter than the index thinks (a torn tail was cut):
            // the index is stale, start over. So too when the length it
            // covers is not where a record ends: the index is wrong, and only
            // a read from the start can tell whether the log is damaged.
            self.db.clear()?;
            return self.catch_up_with(fs, dir);
        };
        if let Some(e) = log.damage() {
            return Err(IndexError::Damaged(
                usize::try_from(log.end()).unwrap_or(usize::MAX),
                e.to_string(),
            ));
        }
        let mut added = 0;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for rec in log.records() {
            let pos = rec.end();
            let e = SignedEntry::from_bytes(rec.bytes).map_err(|err| {
                IndexError::Damaged(usize::try_from(pos).unwrap_or(0), err.to_string())
            })?;
            // Each batch is atomic and moves the head with its entries, so an interrupted
            // catch-up resumes after the last batch applied.
            put(&mut batch, &e, pos);
            in_batch += 1;
            added += 1;
            if in_batch == CATCH_UP_BATCH {
                self.db.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        if in_batch > 0 {
            self.db.apply_batch(batch)?;
        }
        self.db.flush()?;
        Ok(added)
    }

    /// Throw the index away and rebuild it from the chain log.
    ///
    /// # Errors
    /// As [`Index::catch_up`].
    pub fn rebuild(&self, dir: &Path) -> Result<u64, IndexError> {
        self.db.clear()?;
        self.catch_up(dir)
    }

    /// Counts and head.
    ///
    /// # Errors
    /// sled errors.
    pub fn summary(&self) -> Result<IndexSummary, IndexError> {
        let mut s = IndexSummary::default();
        if let Some(h) = self.db.get(b"head")? {
            if h.len() == 48 {
                s.next_seq = u64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
                s.log_len = u64::from_be_bytes(h[40..48].try_into().expect("8 bytes"));
            }
        }
        for kv in self.db.scan_prefix(b"e") {
            let (_, v) = kv?;
            match v.first() {
                Some(1) => s.segments += 1,
                Some(2) => s.events += 1,
                _ => {}
            }
        }
        Ok(s)
    }
}

/// Move the index folder of `dir` aside to `dir/index.damaged-<unix
/// seconds>[-n]/` and fsync `dir`, so that a fresh index can take its place.
fn move_aside(dir: &Path) -> Result<PathBuf, IndexError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = dir.join(format!("index.damaged-{secs}"));
    let mut n = 1;
    while aside.exists() {
        aside = dir.join(format!("index.damaged-{secs}-{n}"));
        n += 1;
    }
    std::fs::rename(dir.join("index"), &aside)?;
    crate::fsutil::sync_dir(dir)?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `status` that opened the index a moment before `run` must not make
    /// `run` fail: the second open waits for the first to let go.
    #[test]
    fn opening_waits_for_a_short_holder_to_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = Index::open(dir.path()).unwrap();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(first);
        });
        let second = Index::open(dir.path());
        holder.join().unwrap();
        assert!(second.is_ok(), "{:?}", second.err());
    }

    #[test]
    fn catch_up_indexes_every_entry_in_batches_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[6u8; 32]);
        // More than one batch, and a partial last one.
        let segments = u32::try_from(CATCH_UP_BATCH).unwrap() + 10;
        let n = crate::spool::fill_sample(dir.path(), &key, segments, 16).unwrap();
        let log_len = std::fs::metadata(dir.path().join("chain.log"))
            .unwrap()
            .len();
        let idx = Index::open(dir.path()).unwrap();
        assert_eq!(idx.catch_up(dir.path()).unwrap(), n);
        let s = idx.summary().unwrap();
        assert_eq!(s.next_seq, n);
        assert_eq!(s.log_len, log_len);
        assert_eq!(s.segments, u64::from(segments));
        assert_eq!(s.events, n - u64::from(segments));
        // Up to date: nothing more to add; a rebuild adds everything again.
        assert_eq!(idx.catch_up(dir.path()).unwrap(), 0);
        assert_eq!(idx.rebuild(dir.path()).unwrap(), n);
        assert_eq!(idx.summary().unwrap(), s);
    }

    #[test]
    fn catch_up_over_the_power_loss_twin_reads_the_log_that_survived() {
        use crate::spoolfs::{Fault, MemFs};
        use fieldseal_proto::entry::Event;
        use std::sync::Arc;

        let key = ed25519_dalek::SigningKey::from_bytes(&[6u8; 32]);
        let clock = crate::clock::SystemClock::new();
        let fs = MemFs::new(3);
        let dir = Path::new("/spool");
        let event = || Event::IdentityShown { officer: None };
        let (mut spool, _) =
            crate::spool::Spool::open_with(Arc::new(fs.clone()), dir, &key, &clock).unwrap();
        for _ in 0..3 {
            spool.append_event(&key, &clock, event()).unwrap();
        }
        let sled_dir = tempfile::tempdir().unwrap();
        let idx = Index::open(sled_dir.path()).unwrap();
        assert_eq!(idx.catch_up_with(&fs, dir).unwrap(), 3);
        // The next append is written but the power goes before its fsync,
        // and part of it survives: the spool cuts the torn record off and
        // signs the power loss, which is all the index has to add.
        fs.inject(fs.ops() + 2, Fault::Crash);
        assert!(spool.append_event(&key, &clock, event()).is_err());
        fs.power_loss(true);
        drop(spool);
        let (spool, report) =
            crate::spool::Spool::open_with(Arc::new(fs.clone()), dir, &key, &clock).unwrap();
        assert!(report.crashed);
        assert_eq!(idx.catch_up_with(&fs, dir).unwrap(), 1);
        let s = idx.summary().unwrap();
        assert_eq!(s.next_seq, spool.head().next_seq);
        assert_eq!(s.log_len, spool.log_len());
    }
}
