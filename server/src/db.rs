//! The sled index: devices, enrolment tokens, users, per-device chain heads,
//! accepted entries with their receipts, which seqs have media, and the
//! transparency log's stored nodes.
//!
//! The files under the data folder (chain logs, blobs, `leaves.log`) are
//! the source of truth; this index makes them quick to query, and everything
//! in it that derives from evidence (heads, entries, receipts, media held,
//! the log's tree) can be rebuilt from them (`reindex.rs`). Devices, tokens
//! and users are not derived from evidence and are kept. One process owns
//! it (see `control.rs`).

use std::path::Path;
use std::sync::Arc;

use fieldseal_proto::codec::Encode;
use fieldseal_proto::entry::ChainHead;
use fieldseal_proto::identity::{DeviceId, Hash32};
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::merkle::{self, Frontier, MerkleError, StoredNode};
use serde::{Deserialize, Serialize};

use crate::ingest::AcceptedEntry;
use crate::leaflog::LeafLog;

/// Index errors.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// sled failed.
    #[error("index: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record did not decode.
    #[error("index record: {0}")]
    Corrupt(String),
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
}

impl From<serde_json::Error> for DbError {
    fn from(e: serde_json::Error) -> Self {
        DbError::Corrupt(e.to_string())
    }
}

/// An enrolled (or pending, or revoked) device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Device id, hex.
    pub id: String,
    /// Name given by the administrator.
    pub name: String,
    /// Ed25519 public key, hex.
    pub public_key: String,
    /// When it enrolled, µs since the epoch.
    pub enrolled_us: i64,
    /// When it was revoked, if it was.
    pub revoked_us: Option<i64>,
}

/// An enrolment token, stored under the SHA-256 of the token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    /// The device name it enrols.
    pub name: String,
    /// Until when it may be used, µs since the epoch.
    pub expires_us: i64,
    /// The device id it enrolled, once used.
    pub used_by: Option<String>,
}

/// A user of the server (the web UI and API come later).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRecord {
    /// Login name.
    pub name: String,
    /// Role: admin, custodian, supervisor, officer.
    pub role: String,
    /// argon2 PHC string.
    pub password_hash: String,
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    entry_hash: String,
    media: Option<(String, u64)>,
    receipt: String,
}

/// The index.
#[derive(Debug, Clone)]
pub struct Db {
    db: sled::Db,
    devices: sled::Tree,
    tokens: sled::Tree,
    users: sled::Tree,
    heads: sled::Tree,
    entries: sled::Tree,
    media: sled::Tree,
    /// Segment entries whose media is not held: the resend list of each
    /// connection, without scanning every entry of the device.
    missing: sled::Tree,
    log: sled::Tree,
    /// The log's leaves, durable before the tree nodes here.
    leaves: Arc<LeafLog>,
    /// Appends to the log read, extend and write the frontier: one at a time
    /// in this process (ingest, and custody leaves from scrub), whatever lock
    /// the caller holds. sled's own lock keeps other processes out.
    log_append: Arc<std::sync::Mutex<()>>,
}

fn seq_key(device: DeviceId, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&device.0);
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn node_key(level: u8, index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = level;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn hash32(s: &str) -> Result<Hash32, DbError> {
    let v = hex::decode(s).map_err(|e| DbError::Corrupt(e.to_string()))?;
    v.try_into()
        .map_err(|_| DbError::Corrupt("hash is not 32 bytes".into()))
}

const LOG_SIZE: &[u8] = b"size";

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
        let db = sled::Config::new()
            .path(crate::datadir::DataDir::new(dir).index())
            .cache_capacity(INDEX_CACHE_BYTES)
            .open()?;
        let (leaves, _) = LeafLog::open(dir)?;
        let db = Db {
            devices: db.open_tree("devices")?,
            tokens: db.open_tree("tokens")?,
            users: db.open_tree("users")?,
            heads: db.open_tree("heads")?,
            entries: db.open_tree("entries")?,
            media: db.open_tree("media")?,
            missing: db.open_tree("missing")?,
            log: db.open_tree("log")?,
            leaves: Arc::new(leaves),
            log_append: Arc::default(),
            db,
        };
        {
            let _one_at_a_time = db.log_lock();
            db.catch_up_log(true)?;
        }
        db.build_missing_once()?;
        db.flush()?;
        Ok(db)
    }

    fn log_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.log_append
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Add to the tree the leaves that `leaves.log` holds beyond it (`warn`:
    /// that is a crash's leftover, not a rebuild). Called with the log lock
    /// held.
    fn catch_up_log(&self, warn: bool) -> Result<(), DbError> {
        let indexed = self.log_size()?;
        let held = self.leaves.count();
        if indexed > held {
            return Err(DbError::LeavesLost { indexed, held });
        }
        if indexed < held && warn {
            tracing::warn!(
                indexed,
                held,
                "adding leaves that reached leaves.log but not the index"
            );
        }
        if indexed < held {
            let mut f = self.frontier()?;
            // In batches of a few thousand leaves: one batch for a whole
            // rebuild held every node in memory at once (270 MB for 30,000
            // leaves). Each batch ends with the size, so the tree is
            // consistent after any of them.
            for chunk in self.leaves.read_from(indexed)?.chunks(4096) {
                let mut batch = sled::Batch::default();
                for leaf in chunk {
                    for n in f.append(merkle::leaf_hash(leaf))? {
                        batch.insert(node_key(n.level, n.index).as_slice(), n.hash.as_slice());
                    }
                }
                batch.insert(LOG_SIZE, f.size().to_be_bytes().as_slice());
                self.log.apply_batch(batch)?;
            }
        }
        Ok(())
    }

    /// An index written before the `missing` tree existed gets it built
    /// from its entries, once.
    fn build_missing_once(&self) -> Result<(), DbError> {
        const BUILT: &[u8] = b"missing-built";
        if self.missing.contains_key(BUILT)? {
            return Ok(());
        }
        for kv in self.entries.iter() {
            let (k, v) = kv?;
            let s: StoredEntry = serde_json::from_slice(&v)?;
            if s.media.is_some() && !self.media.contains_key(&k)? {
                self.missing.insert(k, &[])?;
            }
        }
        // A 13-byte key cannot collide with the 16-byte (device, seq) keys.
        self.missing.insert(BUILT, &[])?;
        Ok(())
    }

    /// The leaf data of every leaf from `from` on, from `leaves.log`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn leaves_from(&self, from: u64) -> Result<Vec<Vec<u8>>, DbError> {
        Ok(self.leaves.read_from(from)?)
    }

    /// Forget everything that derives from evidence (heads, entries,
    /// receipts, media held, the log's tree), for `reindex` to rebuild it.
    /// Devices, tokens and users stay.
    ///
    /// # Errors
    /// sled errors.
    pub fn clear_derived(&self) -> Result<(), DbError> {
        let _one_at_a_time = self.log_lock();
        for t in [&self.heads, &self.entries, &self.media, &self.log] {
            t.clear()?;
        }
        self.missing.clear()?;
        self.build_missing_once()?;
        self.flush()
    }

    /// Rebuild the log's tree from `leaves.log` (after [`Db::clear_derived`]).
    ///
    /// # Errors
    /// sled errors, a damaged leaf log.
    pub fn rebuild_log(&self) -> Result<u64, DbError> {
        let _one_at_a_time = self.log_lock();
        self.catch_up_log(false)?;
        self.flush()?;
        self.log_size()
    }

    /// Make everything written so far durable.
    ///
    /// # Errors
    /// sled errors.
    pub fn flush(&self) -> Result<(), DbError> {
        self.db.flush()?;
        Ok(())
    }

    /// A device by id.
    ///
    /// # Errors
    /// sled or decoding errors.
    pub fn device(&self, id: DeviceId) -> Result<Option<DeviceRecord>, DbError> {
        match self.devices.get(id.0)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// Store a device.
    ///
    /// # Errors
    /// sled errors.
    pub fn put_device(&self, d: &DeviceRecord) -> Result<(), DbError> {
        let id: DeviceId =
            d.id.parse()
                .map_err(|_| DbError::Corrupt("device id".into()))?;
        self.devices.insert(id.0, serde_json::to_vec(d)?)?;
        Ok(())
    }

    /// Every device.
    ///
    /// # Errors
    /// sled or decoding errors.
    pub fn devices(&self) -> Result<Vec<DeviceRecord>, DbError> {
        self.devices
            .iter()
            .map(|kv| Ok(serde_json::from_slice(&kv?.1)?))
            .collect()
    }

    /// A token by the SHA-256 of its text.
    ///
    /// # Errors
    /// sled or decoding errors.
    pub fn token(&self, token_hash: &Hash32) -> Result<Option<TokenRecord>, DbError> {
        match self.tokens.get(token_hash)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// Store a token.
    ///
    /// # Errors
    /// sled errors.
    pub fn put_token(&self, token_hash: &Hash32, t: &TokenRecord) -> Result<(), DbError> {
        self.tokens.insert(token_hash, serde_json::to_vec(t)?)?;
        Ok(())
    }

    /// Use a token and enrol a device in one transaction, so that two
    /// concurrent enrolments cannot both use one token. Returns the token as
    /// it was before; the caller checks it and the closure decides.
    ///
    /// # Errors
    /// sled errors, or the error `check` returns (nothing is changed then).
    pub fn enroll<E>(
        &self,
        token_hash: &Hash32,
        check: impl Fn(Option<TokenRecord>) -> Result<(TokenRecord, DeviceRecord), E>,
    ) -> Result<Result<DeviceRecord, E>, DbError> {
        use sled::Transactional;
        let res = (&self.tokens, &self.devices).transaction(|(tokens, devices)| {
            let current = match tokens.get(token_hash)? {
                Some(v) => Some(serde_json::from_slice::<TokenRecord>(&v).map_err(|e| {
                    sled::transaction::ConflictableTransactionError::Abort(e.to_string())
                })?),
                None => None,
            };
            match check(current) {
                Err(e) => Ok(Err(e)),
                Ok((tok, dev)) => {
                    let id: DeviceId = dev.id.parse().map_err(|_| {
                        sled::transaction::ConflictableTransactionError::Abort("id".to_string())
                    })?;
                    if devices.get(id.0)?.is_some() {
                        return Ok(Ok(None));
                    }
                    let tj = serde_json::to_vec(&tok).expect("serialisable");
                    let dj = serde_json::to_vec(&dev).expect("serialisable");
                    tokens.insert(token_hash.as_slice(), tj)?;
                    devices.insert(id.0.as_slice(), dj)?;
                    Ok(Ok(Some(dev)))
                }
            }
        });
        match res {
            Ok(Ok(Some(dev))) => {
                self.flush()?;
                Ok(Ok(dev))
            }
            Ok(Ok(None)) => Err(DbError::Corrupt("device already enrolled".into())),
            Ok(Err(e)) => Ok(Err(e)),
            Err(sled::transaction::TransactionError::Abort(e)) => Err(DbError::Corrupt(e)),
            Err(sled::transaction::TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// A user by name.
    ///
    /// # Errors
    /// sled or decoding errors.
    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, DbError> {
        match self.users.get(name)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// Store a user.
    ///
    /// # Errors
    /// sled errors.
    pub fn put_user(&self, u: &UserRecord) -> Result<(), DbError> {
        self.users
            .insert(u.name.as_bytes(), serde_json::to_vec(u)?)?;
        Ok(())
    }

    /// The chain head the server holds for a device.
    ///
    /// # Errors
    /// sled or decoding errors.
    pub fn head(&self, device: DeviceId) -> Result<ChainHead, DbError> {
        Ok(self.head_and_log_len(device)?.0)
    }

    /// The chain head and the length of the device's chain log that holds
    /// exactly the entries before it (bytes past it were appended by an
    /// acceptance that crashed before it was indexed, and are cut off).
    ///
    /// # Errors
    /// sled or decoding errors.
    pub fn head_and_log_len(&self, device: DeviceId) -> Result<(ChainHead, u64), DbError> {
        match self.heads.get(device.0)? {
            None => Ok((ChainHead::GENESIS, 0)),
            Some(v) if v.len() == 48 => {
                let mut last_hash = [0u8; 32];
                last_hash.copy_from_slice(&v[8..40]);
                let u = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("8 bytes"));
                Ok((
                    ChainHead {
                        next_seq: u(&v[..8]),
                        last_hash,
                    },
                    u(&v[40..]),
                ))
            }
            Some(_) => Err(DbError::Corrupt("chain head".into())),
        }
    }

    /// An accepted entry.
    ///
    /// # Errors
    /// sled or decoding errors.
    pub fn entry(&self, device: DeviceId, seq: u64) -> Result<Option<AcceptedEntry>, DbError> {
        let Some(v) = self.entries.get(seq_key(device, seq))? else {
            return Ok(None);
        };
        let s: StoredEntry = serde_json::from_slice(&v)?;
        Ok(Some(AcceptedEntry {
            entry_hash: hash32(&s.entry_hash)?,
            media: match s.media {
                Some((h, l)) => Some((hash32(&h)?, l)),
                None => None,
            },
            receipt: hex::decode(&s.receipt).map_err(|e| DbError::Corrupt(e.to_string()))?,
        }))
    }

    /// Append one leaf to the transparency log: to `leaves.log`, durably,
    /// then its nodes to the index. Returns its index.
    ///
    /// # Errors
    /// I/O errors of the leaf log; sled errors, a corrupt log.
    pub fn log_append(&self, leaf: &Leaf) -> Result<u64, DbError> {
        self.log_append_many(std::slice::from_ref(leaf))
    }

    /// Append leaves in order, with one fsync of `leaves.log` (group
    /// commit). Returns the index of the first.
    ///
    /// # Errors
    /// As [`Db::log_append`].
    pub fn log_append_many(&self, leaves: &[Leaf]) -> Result<u64, DbError> {
        let _one_at_a_time = self.log_lock();
        // An earlier append may have reached the file but failed in sled.
        self.catch_up_log(true)?;
        let mut f = self.frontier()?;
        let data: Vec<Vec<u8>> = leaves.iter().map(Encode::to_bytes).collect();
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let first = self.leaves.append_many(&refs)?;
        if first != f.size() {
            return Err(DbError::Corrupt(format!(
                "leaf appended at {first}, the tree has {} leaves",
                f.size()
            )));
        }
        crate::fault::point("leaf-after-file");
        let mut batch = sled::Batch::default();
        for leaf in leaves {
            let nodes: Vec<StoredNode> = f.append(leaf.hash())?;
            for n in nodes {
                batch.insert(node_key(n.level, n.index).as_slice(), n.hash.as_slice());
            }
        }
        batch.insert(LOG_SIZE, f.size().to_be_bytes().as_slice());
        self.log.apply_batch(batch)?;
        Ok(first)
    }

    /// Number of leaves in the log.
    ///
    /// # Errors
    /// sled errors.
    pub fn log_size(&self) -> Result<u64, DbError> {
        Ok(match self.log.get(LOG_SIZE)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| DbError::Corrupt("log size".into()))?,
            ),
            None => 0,
        })
    }

    /// The stored hash of the full subtree at `(level, index)`.
    ///
    /// # Errors
    /// sled errors; [`MerkleError::NodeUnavailable`] for a node not stored.
    pub fn log_node(&self, level: u8, index: u64) -> Result<Hash32, DbError> {
        match self.log.get(node_key(level, index))? {
            Some(v) => v
                .as_ref()
                .try_into()
                .map_err(|_| DbError::Corrupt("log node is not 32 bytes".into())),
            None => Err(MerkleError::NodeUnavailable { level, index }.into()),
        }
    }

    fn frontier(&self) -> Result<Frontier, DbError> {
        // Size first: nodes never change once stored, so a leaf appended
        // meanwhile cannot make this frontier inconsistent.
        let size = self.log_size()?;
        Frontier::from_source(&|l, i| self.log_node(l, i), size)
    }

    /// Size and root of the log, read together (one consistent tree head).
    ///
    /// # Errors
    /// sled errors, a corrupt log.
    pub fn log_head(&self) -> Result<(u64, Hash32), DbError> {
        let f = self.frontier()?;
        Ok((f.size(), f.root()))
    }

    /// The root of the first `size` leaves.
    ///
    /// # Errors
    /// sled errors; a size beyond the log ([`MerkleError::NodeUnavailable`]).
    pub fn log_root_at(&self, size: u64) -> Result<Hash32, DbError> {
        merkle::root_from(&|l, i| self.log_node(l, i), size)
    }

    /// Inclusion proof of leaf `index` in the tree of the first `size` leaves.
    ///
    /// # Errors
    /// sled errors; `index >= size`; a size beyond the log.
    pub fn log_inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash32>, DbError> {
        merkle::inclusion_proof_from(&|l, i| self.log_node(l, i), index, size)
    }

    /// Consistency proof from the first `old` leaves to the first `new`.
    ///
    /// # Errors
    /// sled errors; `old > new`; a size beyond the log.
    pub fn log_consistency(&self, old: u64, new: u64) -> Result<Vec<Hash32>, DbError> {
        merkle::consistency_proof_from(&|l, i| self.log_node(l, i), old, new)
    }

    /// The root of the log.
    ///
    /// # Errors
    /// sled errors, a corrupt log.
    pub fn log_root(&self) -> Result<Hash32, DbError> {
        Ok(self.frontier()?.root())
    }

    /// Record an accepted entry: its index record, then the new head with the
    /// chain log's length, then flush. The chain log on disk is already
    /// written and fsynced by then. sled recovers writes in order, so a crash
    /// leaves either both or the entry record alone (then the entry is simply
    /// accepted again).
    ///
    /// # Errors
    /// sled errors.
    pub fn put_accepted(
        &self,
        device: DeviceId,
        seq: u64,
        a: &AcceptedEntry,
        head: ChainHead,
        log_len: u64,
    ) -> Result<(), DbError> {
        self.put_entry_unflushed(device, seq, a)?;
        self.put_head_unflushed(device, head, log_len)?;
        self.flush()
    }

    /// The index record of an accepted entry alone, unflushed: `reindex`
    /// writes a device's head once, after all its entries.
    ///
    /// # Errors
    /// sled errors.
    pub fn put_entry_unflushed(
        &self,
        device: DeviceId,
        seq: u64,
        a: &AcceptedEntry,
    ) -> Result<(), DbError> {
        let s = StoredEntry {
            entry_hash: hex::encode(a.entry_hash),
            media: a.media.map(|(h, l)| (hex::encode(h), l)),
            receipt: hex::encode(&a.receipt),
        };
        let k = seq_key(device, seq);
        self.entries.insert(k, serde_json::to_vec(&s)?)?;
        if a.media.is_some() && !self.media.contains_key(k)? {
            self.missing.insert(k, &[])?;
        }
        Ok(())
    }

    /// A device's chain head and chain log length, unflushed.
    ///
    /// # Errors
    /// sled errors.
    pub fn put_head_unflushed(
        &self,
        device: DeviceId,
        head: ChainHead,
        log_len: u64,
    ) -> Result<(), DbError> {
        let mut h = Vec::with_capacity(48);
        h.extend_from_slice(&head.next_seq.to_be_bytes());
        h.extend_from_slice(&head.last_hash);
        h.extend_from_slice(&log_len.to_be_bytes());
        self.heads.insert(device.0, h)?;
        Ok(())
    }

    /// Does the server hold the verified media of this entry?
    ///
    /// # Errors
    /// sled errors.
    pub fn has_media(&self, device: DeviceId, seq: u64) -> Result<bool, DbError> {
        Ok(self.media.contains_key(seq_key(device, seq))?)
    }

    /// Mark the media of an entry as held (after the blob is durable).
    ///
    /// # Errors
    /// sled errors.
    pub fn put_media(&self, device: DeviceId, seq: u64) -> Result<(), DbError> {
        self.put_media_unflushed(device, seq)?;
        self.flush()
    }

    /// [`Db::put_media`] without the flush, for `reindex`.
    ///
    /// # Errors
    /// sled errors.
    pub fn put_media_unflushed(&self, device: DeviceId, seq: u64) -> Result<(), DbError> {
        self.media.insert(seq_key(device, seq), &[])?;
        self.missing.remove(seq_key(device, seq))?;
        Ok(())
    }

    /// Forget that the server holds the media of an entry (a scrub found
    /// its bytes damaged): the seq is then asked for again in the device's
    /// next `Welcome.resend_media`.
    ///
    /// # Errors
    /// sled errors.
    pub fn forget_media(&self, device: DeviceId, seq: u64) -> Result<(), DbError> {
        self.media.remove(seq_key(device, seq))?;
        if self.entries.contains_key(seq_key(device, seq))? {
            self.missing.insert(seq_key(device, seq), &[])?;
        }
        self.flush()
    }

    /// Every accepted segment entry of every device, by media hash: who
    /// refers to a blob.
    ///
    /// # Errors
    /// sled or decoding errors.
    pub fn media_refs(
        &self,
    ) -> Result<std::collections::BTreeMap<Hash32, Vec<(DeviceId, u64)>>, DbError> {
        let mut out: std::collections::BTreeMap<Hash32, Vec<(DeviceId, u64)>> =
            std::collections::BTreeMap::new();
        for kv in self.entries.iter() {
            let (k, v) = kv?;
            let s: StoredEntry = serde_json::from_slice(&v)?;
            if let Some((h, _)) = s.media {
                let k: [u8; 16] = k
                    .as_ref()
                    .try_into()
                    .map_err(|_| DbError::Corrupt("entry key".into()))?;
                let device = DeviceId(k[..8].try_into().expect("8 bytes"));
                let seq = u64::from_be_bytes(k[8..].try_into().expect("8 bytes"));
                out.entry(hash32(&h)?).or_default().push((device, seq));
            }
        }
        Ok(out)
    }

    /// Every (device, seq) whose media the index says is not held.
    ///
    /// # Errors
    /// sled errors.
    pub fn missing_all(&self) -> Result<Vec<(DeviceId, u64)>, DbError> {
        let mut out = Vec::new();
        for kv in self.missing.iter() {
            let (k, _) = kv?;
            if k.len() == 16 {
                let device = DeviceId(k[..8].try_into().expect("8 bytes"));
                out.push((
                    device,
                    u64::from_be_bytes(k[8..].try_into().expect("8 bytes")),
                ));
            }
        }
        Ok(out)
    }

    /// Segment seqs of a device whose media the server lacks, oldest first,
    /// at most `max`.
    ///
    /// # Errors
    /// sled or decoding errors.
    pub fn missing_media(&self, device: DeviceId, max: usize) -> Result<Vec<u64>, DbError> {
        let mut out = Vec::new();
        for kv in self.missing.scan_prefix(device.0).take(max) {
            let (k, _) = kv?;
            if k.len() == 16 {
                out.push(u64::from_be_bytes(
                    k[8..16].try_into().expect("16-byte key"),
                ));
            }
        }
        Ok(out)
    }
}
