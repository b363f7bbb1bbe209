//! Rebuilding the index from the files: `fieldseal-server reindex`, and the
//! roll-forward at every start.
//!
//! The files are the source of truth: each device's `chain.log` (the
//! accepted entries, in seq order, each once), `leaves.log` (every leaf of
//! the transparency log, in order) and the blobs. From them:
//! - the log's tree: the hashes of the leaves, in order;
//! - an entry is accepted iff the log has an entry leaf for its device and
//!   seq; the leaf gives its entry hash, the receipt's time and (by its
//!   position) the receipt's log index. The receipt itself is signed again:
//!   ed25519 signatures are deterministic, so it comes out byte for byte the
//!   one the device was given;
//! - the media of a segment is held iff the blob store holds its hash;
//! - the case and activity tags (`db/tags.rs`) are those the accepted
//!   entries were signed with.
//!
//! An acceptance writes chain.log, then leaves.log, then the index. A crash
//! after leaves.log leaves an entry that is in the log but not indexed: its
//! receipt may not have reached the device, but its leaf is published, so at
//! the next start it is rolled forward (indexed as accepted) rather than
//! accepted a second time under a second leaf. A chain.log record with no
//! leaf was never acknowledged; it stays past the indexed length and is cut
//! off by the device's next acceptance.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use fieldseal_proto::chainlog;
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::entry::{ChainHead, SignedEntry};
use fieldseal_proto::identity::{DeviceId, Hash32};
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::receipt::Receipt;
use serde::Serialize;

use crate::admin::KeyError;
use crate::blobstore::BlobStore;
use crate::chainindex::{ChainIndex, IndexError};
use crate::datadir::DataDir;
use crate::db::{Db, DbError};
use crate::ingest::AcceptedEntry;

/// Why the index could not be rebuilt or rolled forward. Files that
/// disagree with each other are not errors: they are the outcome's problems.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReindexError {
    /// A leaf of `leaves.log` does not decode: the log cannot be trusted.
    #[error("leaves.log: leaf {index} does not decode: {detail}")]
    BadLeaf {
        /// Leaf index.
        index: u64,
        /// Why.
        detail: String,
    },
    /// A file or folder of the data folder could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The blob store failed.
    #[error("blob store: {0}")]
    Blobs(#[source] io::Error),
    /// `reindex_offline` on a folder a server is running on.
    #[error(
        "a server is running on {}: stop it first (reindex rebuilds the index it uses)",
        .0.display()
    )]
    ServerRunning(PathBuf),
    /// `reindex_offline` on a folder that is not a data folder.
    #[error("{} is not a data folder (no config.toml)", .0.display())]
    NotADataFolder(PathBuf),
    /// The receipt key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The index failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<IndexError> for ReindexError {
    fn from(e: IndexError) -> Self {
        ReindexError::Db(e.into())
    }
}

/// Where an entry's leaf is and what it says.
#[derive(Debug, Clone, Copy)]
struct EntryLeaf {
    index: u64,
    entry_hash: Hash32,
    server_time_us: i64,
}

/// Entry leaves by (device, seq). Should a seq have two leaves (archives
/// written before the roll-forward existed could accept an entry again after
/// a crash between log and index), the later one is the one whose receipt
/// was sent.
type EntryLeaves = HashMap<(DeviceId, u64), EntryLeaf>;

fn entry_leaves(db: &Db) -> Result<EntryLeaves, ReindexError> {
    let mut out = HashMap::new();
    for (i, data) in db.leaves_from(0)?.into_iter().enumerate() {
        let leaf = Leaf::from_bytes(&data).map_err(|e| ReindexError::BadLeaf {
            index: i as u64,
            detail: e.to_string(),
        })?;
        if let Leaf::Entry {
            device,
            seq,
            entry_hash,
            server_time_us,
        } = leaf
        {
            out.insert(
                (device, seq),
                EntryLeaf {
                    index: i as u64,
                    entry_hash,
                    server_time_us,
                },
            );
        }
    }
    Ok(out)
}

/// Device folders under `DIR/devices`, sorted.
fn device_ids(dir: &Path) -> Result<Vec<DeviceId>, ReindexError> {
    let dir = DataDir::new(dir);
    dir.device_ids().map_err(|source| ReindexError::Read {
        path: dir.devices(),
        source,
    })
}

fn chain_log(dir: &Path, id: DeviceId) -> Result<Vec<u8>, ReindexError> {
    let path = DataDir::new(dir).chain_log(id);
    match fs::read(&path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(ReindexError::Read { path, source }),
    }
}

/// What was indexed for one device.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DeviceOutcome {
    /// Device id.
    pub device: String,
    /// Entries indexed (by this run).
    pub entries: u64,
    /// Segments whose media the blob store holds.
    pub media_held: u64,
    /// Bytes of chain.log past the last accepted entry (never acknowledged).
    pub unindexed_tail: u64,
    /// What did not add up: the files disagree with each other.
    pub problems: Vec<String>,
}

/// Index the entries of one device from `(head, log_len)` on: each record
/// of chain.log past `log_len` whose seq has an entry leaf.
fn index_device(
    db: &Db,
    blobs: &dyn BlobStore,
    key: &SigningKey,
    leaves: &EntryLeaves,
    id: DeviceId,
    bytes: &[u8],
    (mut head, log_len): (ChainHead, u64),
) -> Result<DeviceOutcome, ReindexError> {
    let mut out = DeviceOutcome {
        device: id.to_string(),
        ..DeviceOutcome::default()
    };
    let start = usize::try_from(log_len)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let (log, damage) = chainlog::split_lossy(&bytes[start..]);
    let mut offset = start as u64;
    let mut records = log.records.iter();
    loop {
        let seq = head.next_seq;
        let Some(leaf) = leaves.get(&(id, seq)) else {
            break;
        };
        let record = records.next();
        let media = match record.map(|r| SignedEntry::from_bytes(r)) {
            Some(Ok(e)) => {
                if e.seq() != seq || e.hash() != leaf.entry_hash {
                    out.problems.push(format!(
                        "chain.log record of seq {seq} is not the entry the log accepted"
                    ));
                } else {
                    db.put_tag_unflushed(&e.entry)?;
                }
                e.entry.segment().map(|s| (s.media_sha256, s.media_len))
            }
            Some(Err(err)) => {
                out.problems.push(format!(
                    "chain.log record of seq {seq} does not decode: {err}"
                ));
                None
            }
            None => {
                out.problems.push(format!(
                    "the log accepted seq {seq} but chain.log ends before it"
                ));
                None
            }
        };
        if let Some(r) = record {
            offset += (chainlog::RECORD_HEADER + r.len()) as u64;
        }
        let receipt = Receipt::sign(
            id,
            seq,
            leaf.entry_hash,
            leaf.server_time_us,
            leaf.index,
            key,
        );
        head = ChainHead {
            next_seq: seq + 1,
            last_hash: leaf.entry_hash,
        };
        let accepted = AcceptedEntry {
            entry_hash: leaf.entry_hash,
            media,
            receipt: receipt.to_bytes(),
        };
        db.put_entry_unflushed(id, seq, &accepted)?;
        out.entries += 1;
        if let Some((hash, _)) = media {
            if blobs.stat(&hash).map_err(ReindexError::Blobs)?.is_some() {
                db.put_media_unflushed(id, seq)?;
                out.media_held += 1;
            }
        }
    }
    if out.entries > 0 {
        db.put_head_unflushed(id, head, offset)?;
    }
    out.unindexed_tail = (bytes.len() as u64).saturating_sub(offset);
    if let Some(e) = damage {
        out.problems.push(format!(
            "chain.log is damaged at byte {}: {e}",
            start + log.complete_len
        ));
    }
    Ok(out)
}

/// What `reindex` did.
#[derive(Debug, Clone, Serialize)]
pub struct ReindexOutcome {
    /// Leaves in the log.
    pub log_size: u64,
    /// Root of the log, hex.
    pub log_root: String,
    /// Per device.
    pub devices: Vec<DeviceOutcome>,
}

impl ReindexOutcome {
    /// The text for humans.
    pub fn human(&self) -> String {
        let mut out = format!("log: {} leaves, root {}\n", self.log_size, self.log_root);
        for d in &self.devices {
            out.push_str(&format!(
                "device {}: {} entries, media held for {}",
                d.device, d.entries, d.media_held
            ));
            if d.unindexed_tail > 0 {
                out.push_str(&format!(
                    ", {} bytes of never-acknowledged tail left",
                    d.unindexed_tail
                ));
            }
            out.push('\n');
            for p in &d.problems {
                out.push_str(&format!("  PROBLEM {p}\n"));
            }
        }
        out
    }

    /// True iff no device had a problem.
    pub fn ok(&self) -> bool {
        self.devices.iter().all(|d| d.problems.is_empty())
    }
}

/// Rebuild everything in the index that derives from evidence, from the
/// files. Devices, tokens and users are kept.
///
/// # Errors
/// A damaged leaves.log; unreadable files; sled errors.
pub fn reindex(
    dir: &Path,
    db: &Db,
    blobs: &dyn BlobStore,
    key: &SigningKey,
) -> Result<ReindexOutcome, ReindexError> {
    db.clear_derived()?;
    let log_size = db.rebuild_log()?;
    let leaves = entry_leaves(db)?;
    let mut devices = Vec::new();
    for id in device_ids(dir)? {
        let bytes = chain_log(dir, id)?;
        devices.push(index_device(
            db,
            blobs,
            key,
            &leaves,
            id,
            &bytes,
            (ChainHead::GENESIS, 0),
        )?);
    }
    let known: std::collections::HashSet<DeviceId> = devices
        .iter()
        .filter_map(|d| d.device.parse().ok())
        .collect();
    let mut orphans: Vec<String> = leaves
        .keys()
        .filter(|(d, _)| !known.contains(d))
        .map(|(d, _)| d.to_string())
        .collect();
    orphans.sort();
    orphans.dedup();
    for d in orphans {
        devices.push(DeviceOutcome {
            device: d.clone(),
            problems: vec![format!(
                "the log has entries of device {d}, which has no chain.log"
            )],
            ..DeviceOutcome::default()
        });
    }
    db.flush()?;
    let (size, root) = db.log_head()?;
    debug_assert_eq!(size, log_size);
    Ok(ReindexOutcome {
        log_size: size,
        log_root: hex::encode(root),
        devices,
    })
}

/// At start: note as held the media whose blob is in the store although the
/// index does not say so (`put_media` is not flushed: the blob is the
/// durable fact). Returns how many were noted.
///
/// # Errors
/// sled errors, blob store errors.
pub fn reconcile_media(db: &Db, blobs: &dyn BlobStore) -> Result<u64, ReindexError> {
    let mut n = 0;
    for (device, seq) in db.missing_all()? {
        let Some((hash, _)) = db.entry(device, seq)?.and_then(|a| a.media) else {
            continue;
        };
        if blobs.stat(&hash).map_err(ReindexError::Blobs)?.is_some() {
            db.put_media_unflushed(device, seq)?;
            n += 1;
        }
    }
    if n > 0 {
        db.flush()?;
        tracing::info!(segments = n, "noted held media the index had not flushed");
    }
    Ok(n)
}

/// At start: index the entries an acceptance left in the log but not in the
/// index (a crash between the two). Returns how many, per device.
///
/// # Errors
/// Unreadable files; sled errors.
pub fn roll_forward(
    dir: &Path,
    db: &Db,
    blobs: &dyn BlobStore,
    key: &SigningKey,
) -> Result<Vec<DeviceOutcome>, ReindexError> {
    let mut tails = Vec::new();
    for id in device_ids(dir)? {
        let bytes = chain_log(dir, id)?;
        let (head, log_len) = db.head_and_log_len(id)?;
        if bytes.len() as u64 > log_len {
            tails.push((id, bytes, head, log_len));
        }
    }
    if tails.is_empty() {
        return Ok(Vec::new());
    }
    let leaves = entry_leaves(db)?;
    let mut out = Vec::new();
    for (id, bytes, head, log_len) in tails {
        let d = index_device(db, blobs, key, &leaves, id, &bytes, (head, log_len))?;
        if d.entries > 0 {
            tracing::warn!(
                device = %id,
                entries = d.entries,
                "rolled forward entries that were in the log but not indexed"
            );
        }
        out.push(d);
    }
    db.flush()?;
    Ok(out)
}

/// `fieldseal-server reindex`: open the data folder's index (no server may
/// be running on it) and rebuild it.
///
/// # Errors
/// A server is running here; as [`reindex`].
pub fn reindex_offline(dir: &Path) -> Result<ReindexOutcome, ReindexError> {
    let data = DataDir::new(dir);
    if std::os::unix::net::UnixStream::connect(data.control_socket()).is_ok() {
        return Err(ReindexError::ServerRunning(dir.to_path_buf()));
    }
    if !data.config().exists() {
        return Err(ReindexError::NotADataFolder(dir.to_path_buf()));
    }
    let db = Db::open_waiting(dir, std::time::Duration::from_secs(3))?;
    let cfg = crate::config::Config::load(dir)
        .map_err(|e| ReindexError::Blobs(io::Error::other(e.to_string())))?;
    let blobs = crate::blobstore::open_configured(dir, &cfg.blobs).map_err(ReindexError::Blobs)?;
    let key = crate::admin::load_receipt_key(dir)?;
    reindex(dir, &db, blobs.as_ref(), &key)
}
