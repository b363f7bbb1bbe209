//! The sled index: opening and locking it, and its errors. What it holds is
//! split by concept:
//! - `devices.rs`: devices, enrolment tokens, users, and each device's
//!   certificates (not derived from evidence: kept by `reindex`);
//! - `chain.rs`: per-device chain heads, accepted entries with their
//!   receipts, which seqs have media ([`crate::chainindex::ChainIndex`]);
//! - `log.rs`: the transparency log's stored tree nodes, built from
//!   `leaves.log`, and a copy of each custody leaf (the access log);
//! - `cases.rs`: cases, officers and device custody (entered by people:
//!   kept by `reindex`), and when each segment's bytes were first held (the
//!   server's observation, for upload deadlines: kept by `reindex`);
//! - `tags.rs`: which entries are signed with which case and activity
//!   (derived: rebuilt by `reindex`);
//! - `links.rs`: entry ranges a custodian linked to an activity (entered by
//!   people: kept by `reindex`);
//! - `retention.rs`: segments whose media expired under retention, and
//!   legal holds (kept by `reindex`).
//!
//! The files under the data folder (chain logs, blobs, `leaves.log`) are
//! the source of truth; this index makes them quick to query, and everything
//! in it that derives from evidence (heads, entries, receipts, media held,
//! the log's tree) can be rebuilt from them (`reindex.rs`). One process owns
//! it (see `control.rs`): sled's file lock keeps others out.
//!
//! On-disk keys and values (sled trees named below, JSON records, big-endian
//! keys) are part of the archive format: existing indexes must keep opening.

use std::path::Path;
use std::sync::Arc;

use fieldseal_proto::merkle::MerkleError;

use crate::chainindex::{ChainIndex, IndexError};
use crate::datadir::DataDir;
use crate::leaflog::LeafLog;

mod cases;
mod chain;
mod devices;
mod links;
mod log;
mod retention;
mod tags;

pub use devices::{CertHow, CertRecord, DeviceRecord, TokenRecord, UserRecord};
pub use links::Link;
pub use tags::{entry_tag, Tagged};

/// Index errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// sled failed.
    #[error("index: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record did not decode.
    #[error("index record: {0}")]
    Corrupt(String),
    /// The chain part of the index failed.
    #[error(transparent)]
    Chain(#[from] IndexError),
    /// The transparency log failed.
    #[error("log: {0}")]
    Merkle(#[from] MerkleError),
    /// The leaf log (`leaves.log`) failed.
    #[error("leaves.log: {0}")]
    Leaves(#[from] std::io::Error),
    /// The index's log has leaves that `leaves.log` lacks: the file lost
    /// durable data, or belongs to another archive.
    #[error(
        "the index's transparency log has {indexed} leaves but leaves.log only {held}: \
         leaves.log lost leaves; examine it before anything else"
    )]
    LeavesLost {
        /// Leaves in the index.
        indexed: u64,
        /// Leaves in the file.
        held: u64,
    },
    /// An enrolment found the device already enrolled (a concurrent one won).
    #[error("device already enrolled")]
    AlreadyEnrolled,
}

impl From<serde_json::Error> for DbError {
    fn from(e: serde_json::Error) -> Self {
        DbError::Corrupt(e.to_string())
    }
}

/// The index.
#[derive(Debug, Clone)]
pub struct Db {
    db: sled::Db,
    devices: sled::Tree,
    tokens: sled::Tree,
    users: sled::Tree,
    cases: sled::Tree,
    officers: sled::Tree,
    custody: sled::Tree,
    /// Device id ‖ notBefore (u64 seconds) → the certificate issued then
    /// (`devices.rs`).
    certs: sled::Tree,
    media_time: sled::Tree,
    /// Case number ‖ device ‖ seq → activity type (`tags.rs`).
    tags: sled::Tree,
    /// Case ‖ activity ‖ device ‖ range → link (`links.rs`).
    links: sled::Tree,
    heads: sled::Tree,
    entries: sled::Tree,
    media: sled::Tree,
    /// Segment entries whose media is not held: the resend list of each
    /// connection, without scanning every entry of the device.
    missing: sled::Tree,
    log: sled::Tree,
    /// Segments whose media expired under retention (`retention.rs`).
    expired: sled::Tree,
    /// Legal holds.
    holds: sled::Tree,
    /// The log's leaves, durable before the tree nodes here.
    leaves: Arc<LeafLog>,
    /// Appends to the log read, extend and write the frontier: one at a time
    /// in this process (ingest, and custody leaves from scrub), whatever lock
    /// the caller holds. sled's own lock keeps other processes out.
    log_append: Arc<std::sync::Mutex<()>>,
}

/// sled's page cache. Its default (1 GiB) let a reindex of 100,000 entries
/// grow the process by hundreds of MB; the hot part of the index (heads, the
/// log's frontier, recent entries) is small, and the OS caches the rest.
const INDEX_CACHE_BYTES: u64 = 64 * 1024 * 1024;

impl Db {
    /// Open the index, waiting up to `wait` while another process holds its
    /// lock: an admin command that found no server listening opens the index
    /// itself for a moment, and a server starting at that moment must not fail.
    ///
    /// # Errors
    /// As [`Db::open`], once `wait` has passed.
    pub fn open_waiting(dir: &Path, wait: std::time::Duration) -> Result<Db, DbError> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            match Db::open(dir) {
                Err(DbError::Sled(sled::Error::Io(e))) if std::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "index busy; retrying");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// Open (or create) the index `DIR/index` and the leaf log
    /// `DIR/leaves.log` of the data folder `dir`. Leaves that reached the
    /// file but not the index (a crash in between) are added to the index's
    /// tree.
    ///
    /// # Errors
    /// sled errors, including "locked by another process"; a damaged
    /// `leaves.log`; an index with leaves the file lacks.
    pub fn open(dir: &Path) -> Result<Db, DbError> {
        // sled makes its folder with the umask's mode: make it first, the
        // owner's alone, so that its files (the admin's password hash among
        // them) are out of other users' reach whatever mode sled gives them.
        let index = DataDir::new(dir).index();
        crate::fsutil::create_dir_private(&index).map_err(|e| DbError::Sled(e.into()))?;
        let db = sled::Config::new()
            .path(&index)
            .cache_capacity(INDEX_CACHE_BYTES)
            .open()?;
        sync_sled_files(&index)?;
        let (leaves, _) = LeafLog::open(dir)?;
        let db = Db {
            devices: db.open_tree("devices")?,
            tokens: db.open_tree("tokens")?,
            users: db.open_tree("users")?,
            cases: db.open_tree("cases")?,
            officers: db.open_tree("officers")?,
            custody: db.open_tree("custody")?,
            certs: db.open_tree("certs")?,
            media_time: db.open_tree("media_time")?,
            tags: db.open_tree("tags")?,
            links: db.open_tree("links")?,
            heads: db.open_tree("heads")?,
            entries: db.open_tree("entries")?,
            media: db.open_tree("media")?,
            missing: db.open_tree("missing")?,
            log: db.open_tree("log")?,
            expired: db.open_tree("expired")?,
            holds: db.open_tree("holds")?,
            leaves: Arc::new(leaves),
            log_append: Arc::default(),
            db,
        };
        {
            let _one_at_a_time = db.log_lock();
            db.catch_up_log(true)?;
            db.build_custody_once()?;
        }
        db.build_missing_once()?;
        db.flush()?;
        Ok(db)
    }

    /// Forget everything that derives from evidence (heads, entries,
    /// receipts, media held, tags, the log's tree), for `reindex` to rebuild
    /// it. Devices, tokens, users, cases and links stay.
    ///
    /// # Errors
    /// sled errors.
    pub fn clear_derived(&self) -> Result<(), DbError> {
        let _one_at_a_time = self.log_lock();
        for t in [
            &self.heads,
            &self.entries,
            &self.media,
            &self.tags,
            &self.log,
        ] {
            t.clear()?;
        }
        self.missing.clear()?;
        self.build_missing_once()?;
        self.flush()
    }

    /// A CRC32 of every key and value of every tree: tests compare it
    /// before and after a request that must change nothing.
    ///
    /// # Errors
    /// sled errors.
    #[cfg(test)]
    pub fn checksum(&self) -> Result<u32, DbError> {
        Ok(self.db.checksum()?)
    }

    /// Make everything written so far durable (devices and tokens as well
    /// as the chain part: one sled database).
    ///
    /// # Errors
    /// sled errors.
    pub fn flush(&self) -> Result<(), DbError> {
        self.db.flush()?;
        Ok(())
    }

    /// The chain part of the index, as the trait the state machines use.
    pub fn chain(&self) -> &dyn ChainIndex {
        self
    }
}

/// fsync sled's settings file `index/conf` and the folders that hold the
/// index's files. sled writes `conf` once, when it creates the index, and
/// never fsyncs it nor the folder that names `conf` and `db`: a power cut soon
/// after `init` could tear it, and sled then refuses to open the index (which
/// holds the users, devices and cases). Three fsyncs at each open cost nothing.
fn sync_sled_files(index: &Path) -> Result<(), DbError> {
    let conf = index.join("conf");
    std::fs::File::open(&conf)
        .and_then(|f| f.sync_all())
        .and_then(|()| crate::fsutil::sync_dir(index))
        .and_then(|()| crate::fsutil::sync_folder_of(index))
        .map_err(|e| DbError::Sled(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sled_index_conforms() {
        let dirs = std::sync::Mutex::new(Vec::new());
        crate::chainindex::conformance::run_all(&|| {
            let d = tempfile::tempdir().unwrap();
            let db = Db::open(d.path()).unwrap();
            dirs.lock().unwrap().push(d);
            Box::new(db)
        });
    }

    #[test]
    fn chain_index_writes_survive_reopen() {
        let d = tempfile::tempdir().unwrap();
        let dev = fieldseal_proto::identity::DeviceId([3; 8]);
        let head = fieldseal_proto::entry::ChainHead {
            next_seq: 1,
            last_hash: [5; 32],
        };
        let a = crate::ingest::AcceptedEntry {
            entry_hash: [5; 32],
            media: Some(([6; 32], 10)),
            receipt: vec![1, 2, 3],
        };
        {
            let db = Db::open(d.path()).unwrap();
            db.chain().put_accepted(dev, 0, &a, head, 99).unwrap();
        }
        let db = Db::open(d.path()).unwrap();
        let ix = db.chain();
        assert_eq!(ix.head_and_log_len(dev).unwrap(), (head, 99));
        assert_eq!(ix.entry(dev, 0).unwrap(), Some(a));
        assert_eq!(ix.missing_media(dev, 5).unwrap(), vec![0]);
    }
}
