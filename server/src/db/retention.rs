//! What the retention job and legal holds keep in the index
//! (`crate::retention`):
//! - `expired`: device id (8 bytes) ‖ seq (big-endian) → the server time
//!   the segment's media was expired (µs, i64 big-endian) ‖ the index of
//!   the `expire` custody leaf that records it (u64 big-endian), 16 bytes.
//!   Such a segment is never "missing" again: its bytes are not asked of the
//!   device, and `verify` and compliance say it expired.
//! - `holds`: hold id (u64 big-endian) → JSON [`Hold`].
//!
//! Both are kept by `reindex` (`clear_derived` does not touch them); both
//! are also on record as `expire`, `hold` and `release` leaves of the
//! transparency log.

use std::collections::BTreeMap;

use fieldseal_proto::identity::DeviceId;

use super::{Db, DbError};
use crate::retention::{Expired, Hold};

fn seq_key(device: DeviceId, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&device.0);
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn expired_value(v: &[u8]) -> Result<Expired, DbError> {
    let b: &[u8; 16] = v
        .try_into()
        .map_err(|_| DbError::Corrupt("expired value is not 16 bytes".into()))?;
    Ok(Expired {
        at_us: i64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
        leaf: u64::from_be_bytes(b[8..].try_into().expect("8 bytes")),
    })
}

impl Db {
    /// The media of `(device, seq)` expired under retention, recorded by
    /// custody leaf `e.leaf`: no longer held, no longer missing, remembered
    /// as expired. Flushed before it returns, so that the blob may then be
    /// deleted.
    ///
    /// # Errors
    /// sled errors.
    pub fn expire_media(&self, device: DeviceId, seq: u64, e: Expired) -> Result<(), DbError> {
        let k = seq_key(device, seq);
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&e.at_us.to_be_bytes());
        v[8..].copy_from_slice(&e.leaf.to_be_bytes());
        self.expired.insert(k, &v)?;
        self.media.remove(k)?;
        self.missing.remove(k)?;
        self.flush()
    }

    /// Did the media of `(device, seq)` expire, and when?
    ///
    /// # Errors
    /// sled errors; a damaged value.
    pub fn expired(&self, device: DeviceId, seq: u64) -> Result<Option<Expired>, DbError> {
        self.expired
            .get(seq_key(device, seq))?
            .map(|v| expired_value(&v))
            .transpose()
    }

    /// Every expired segment of one device, by seq.
    ///
    /// # Errors
    /// As [`Db::expired`].
    pub fn expired_of(&self, device: DeviceId) -> Result<BTreeMap<u64, Expired>, DbError> {
        let mut out = BTreeMap::new();
        for kv in self.expired.scan_prefix(device.0) {
            let (k, v) = kv?;
            let seq: [u8; 8] = k[8..]
                .try_into()
                .map_err(|_| DbError::Corrupt("expired key".into()))?;
            out.insert(u64::from_be_bytes(seq), expired_value(&v)?);
        }
        Ok(out)
    }

    /// A new hold id, never given before.
    ///
    /// # Errors
    /// sled errors.
    pub fn next_hold_id(&self) -> Result<u64, DbError> {
        // sled's ids are unique for the life of the database and start at 0;
        // 0 stays free so that no hold is "hold 0".
        Ok(self.db.generate_id()? + 1)
    }

    /// Store a hold (new, or released) and flush.
    ///
    /// # Errors
    /// sled errors.
    pub fn put_hold(&self, h: &Hold) -> Result<(), DbError> {
        self.holds
            .insert(h.id.to_be_bytes(), serde_json::to_vec(h)?)?;
        self.holds.flush()?;
        Ok(())
    }

    /// The hold with this id.
    ///
    /// # Errors
    /// sled errors; a damaged record.
    pub fn hold(&self, id: u64) -> Result<Option<Hold>, DbError> {
        match self.holds.get(id.to_be_bytes())? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// Every hold, released or not, by id.
    ///
    /// # Errors
    /// As [`Db::hold`].
    pub fn holds(&self) -> Result<Vec<Hold>, DbError> {
        self.holds
            .iter()
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }
}
