//! [`ChainIndex`] over sled: the trees `heads` (device id → next seq, last
//! hash and chain log length, 48 bytes big-endian), `entries` ((device,
//! seq) → JSON [`StoredEntry`]), `media` and `missing` ((device, seq) →
//! nothing). Keys are the 8 id bytes then the big-endian seq, so a device's
//! keys sort by seq and a prefix scan finds them.

use std::collections::{BTreeMap, HashSet};

use fieldseal_proto::codec::Decode;
use fieldseal_proto::entry::ChainHead;
use fieldseal_proto::identity::{DeviceId, Hash32};
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::receipt::{Receipt, RECEIPT_LEN};
use serde::{Deserialize, Serialize};

use super::{Db, DbError};
use crate::chainindex::{ChainIndex, IndexError, MediaRefs};
use crate::ingest::AcceptedEntry;

impl From<sled::Error> for IndexError {
    fn from(e: sled::Error) -> Self {
        IndexError::Backend(Box::new(e))
    }
}

impl From<serde_json::Error> for IndexError {
    fn from(e: serde_json::Error) -> Self {
        IndexError::Corrupt(e.to_string())
    }
}

/// An accepted entry as the `entries` tree holds it (hex strings).
#[derive(Serialize, Deserialize)]
struct StoredEntry {
    entry_hash: String,
    media: Option<(String, u64)>,
    receipt: String,
}

fn seq_key(device: DeviceId, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&device.0);
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The (device, seq) of a 16-byte key; `None` for any other key.
fn parse_seq_key(k: &[u8]) -> Option<(DeviceId, u64)> {
    let k: &[u8; 16] = k.try_into().ok()?;
    let device = DeviceId(k[..8].try_into().expect("8 bytes"));
    Some((
        device,
        u64::from_be_bytes(k[8..].try_into().expect("8 bytes")),
    ))
}

fn hash32(s: &str) -> Result<Hash32, IndexError> {
    let v = hex::decode(s).map_err(|e| IndexError::Corrupt(e.to_string()))?;
    v.try_into()
        .map_err(|_| IndexError::Corrupt("hash is not 32 bytes".into()))
}

impl Db {
    /// The server time of the receipt of every accepted entry of `device`,
    /// by seq, in one pass over its keys: a timeline needs all of them, and
    /// a lookup per entry costs a tree descent and a record parse each.
    /// `None` for a receipt that does not decode, as [`Receipt::from_bytes`]
    /// makes of it. Only the receipt of each record is read.
    ///
    /// # Errors
    /// sled errors; a record that is not JSON or a key that is not a seq key.
    pub fn receipt_times(&self, device: DeviceId) -> Result<BTreeMap<u64, Option<i64>>, DbError> {
        /// The one field of a [`StoredEntry`] read here (hex, never escaped
        /// in JSON, so borrowed from the record).
        #[derive(Deserialize)]
        struct ReceiptOnly<'a> {
            #[serde(borrow)]
            receipt: std::borrow::Cow<'a, str>,
        }
        let mut out = BTreeMap::new();
        for kv in self.entries.scan_prefix(device.0) {
            let (k, v) = kv?;
            let (_, seq) =
                parse_seq_key(&k).ok_or_else(|| IndexError::Corrupt("entry key".into()))?;
            let r: ReceiptOnly<'_> = serde_json::from_slice(&v).map_err(IndexError::from)?;
            let mut bytes = [0u8; RECEIPT_LEN];
            let time = hex::decode_to_slice(r.receipt.as_bytes(), &mut bytes)
                .ok()
                .and_then(|()| Receipt::from_bytes(&bytes).ok())
                .map(|r| r.server_time_us);
            out.insert(seq, time);
        }
        Ok(out)
    }

    /// The seqs of `device` whose media the archive holds, in one pass.
    ///
    /// # Errors
    /// sled errors; a key that is not a seq key.
    pub fn media_held(&self, device: DeviceId) -> Result<HashSet<u64>, DbError> {
        let mut out = HashSet::new();
        for kv in self.media.scan_prefix(device.0) {
            let (_, seq) =
                parse_seq_key(&kv?.0).ok_or_else(|| IndexError::Corrupt("media key".into()))?;
            out.insert(seq);
        }
        Ok(out)
    }

    /// An index written before the `missing` tree existed gets it built
    /// from its entries, once.
    pub(super) fn build_missing_once(&self) -> Result<(), DbError> {
        const BUILT: &[u8] = b"missing-built";
        if self.missing.contains_key(BUILT)? {
            return Ok(());
        }
        for kv in self.entries.iter() {
            let (k, v) = kv?;
            let s: StoredEntry = serde_json::from_slice(&v)?;
            if s.media.is_some()
                && !self.media.contains_key(&k)?
                && !self.expired.contains_key(&k)?
            {
                self.missing.insert(k, &[])?;
            }
        }
        // A 13-byte key cannot collide with the 16-byte (device, seq) keys.
        self.missing.insert(BUILT, &[])?;
        Ok(())
    }
}

impl ChainIndex for Db {
    fn head_and_log_len(&self, device: DeviceId) -> Result<(ChainHead, u64), IndexError> {
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
            Some(_) => Err(IndexError::Corrupt("chain head".into())),
        }
    }

    fn put_head_unflushed(
        &self,
        device: DeviceId,
        head: ChainHead,
        log_len: u64,
    ) -> Result<(), IndexError> {
        let mut h = Vec::with_capacity(48);
        h.extend_from_slice(&head.next_seq.to_be_bytes());
        h.extend_from_slice(&head.last_hash);
        h.extend_from_slice(&log_len.to_be_bytes());
        self.heads.insert(device.0, h)?;
        Ok(())
    }

    fn entry(&self, device: DeviceId, seq: u64) -> Result<Option<AcceptedEntry>, IndexError> {
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
            receipt: hex::decode(&s.receipt).map_err(|e| IndexError::Corrupt(e.to_string()))?,
        }))
    }

    fn put_entry_unflushed(
        &self,
        device: DeviceId,
        seq: u64,
        a: &AcceptedEntry,
    ) -> Result<(), IndexError> {
        let s = StoredEntry {
            entry_hash: hex::encode(a.entry_hash),
            media: a.media.map(|(h, l)| (hex::encode(h), l)),
            receipt: hex::encode(&a.receipt),
        };
        let k = seq_key(device, seq);
        self.entries.insert(k, serde_json::to_vec(&s)?)?;
        // Media that expired under retention is not missing: never asked
        // for again (also when `reindex` puts the entry back).
        if a.media.is_some() && !self.media.contains_key(k)? && !self.expired.contains_key(k)? {
            self.missing.insert(k, &[])?;
        }
        Ok(())
    }

    fn has_media(&self, device: DeviceId, seq: u64) -> Result<bool, IndexError> {
        Ok(self.media.contains_key(seq_key(device, seq))?)
    }

    fn put_media_unflushed(&self, device: DeviceId, seq: u64) -> Result<(), IndexError> {
        self.media.insert(seq_key(device, seq), &[])?;
        self.missing.remove(seq_key(device, seq))?;
        Ok(())
    }

    fn forget_media(&self, device: DeviceId, seq: u64) -> Result<(), IndexError> {
        self.media.remove(seq_key(device, seq))?;
        let k = seq_key(device, seq);
        if self.entries.contains_key(k)? && !self.expired.contains_key(k)? {
            self.missing.insert(k, &[])?;
        }
        ChainIndex::flush(self)
    }

    fn media_refs(&self) -> Result<MediaRefs, IndexError> {
        let mut out = MediaRefs::new();
        for kv in self.entries.iter() {
            let (k, v) = kv?;
            let s: StoredEntry = serde_json::from_slice(&v)?;
            if let Some((h, _)) = s.media {
                let (device, seq) =
                    parse_seq_key(&k).ok_or_else(|| IndexError::Corrupt("entry key".into()))?;
                out.entry(hash32(&h)?).or_default().push((device, seq));
            }
        }
        Ok(out)
    }

    fn missing_all(&self) -> Result<Vec<(DeviceId, u64)>, IndexError> {
        let mut out = Vec::new();
        for kv in self.missing.iter() {
            // Other keys (the "built" marker) are not (device, seq).
            if let Some(ds) = parse_seq_key(&kv?.0) {
                out.push(ds);
            }
        }
        Ok(out)
    }

    fn missing_media(&self, device: DeviceId, max: usize) -> Result<Vec<u64>, IndexError> {
        let mut out = Vec::new();
        for kv in self.missing.scan_prefix(device.0).take(max) {
            if let Some((_, seq)) = parse_seq_key(&kv?.0) {
                out.push(seq);
            }
        }
        Ok(out)
    }

    fn flush(&self) -> Result<(), IndexError> {
        self.db.flush()?;
        Ok(())
    }

    fn log_append_many(&self, leaves: &[Leaf]) -> Result<u64, IndexError> {
        self.append_leaves(leaves).map_err(index_error)
    }

    fn log_size(&self) -> Result<u64, IndexError> {
        self.stored_size().map_err(index_error)
    }

    fn log_node(&self, level: u8, index: u64) -> Result<Hash32, IndexError> {
        self.stored_node(level, index).map_err(index_error)
    }
}

/// A [`DbError`] of the log's part as the trait reports it: what a caller
/// branches on keeps its variant, the rest is the backend's failure.
fn index_error(e: DbError) -> IndexError {
    match e {
        DbError::Chain(e) => e,
        DbError::Merkle(e) => IndexError::Log(e),
        DbError::Corrupt(s) => IndexError::Corrupt(s),
        other => IndexError::Backend(Box::new(other)),
    }
}
