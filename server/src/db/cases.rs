//! Cases, officers and device custody (`crate::cases`): records people
//! enter, not derived from evidence, so `reindex` keeps them. Each is one
//! JSON value in its own sled tree:
//! - `cases`: case number → [`Case`];
//! - `officers`: certificate number → [`OfficerRecord`];
//! - `custody`: device id (8 bytes) ‖ check-out time (8 bytes, big-endian,
//!   sign bit flipped so that order is time order) → [`Custody`];
//! - `media_time`: device id ‖ seq (big-endian) → the server time (µs, 8
//!   bytes big-endian) an upload of the segment's bytes was verified and
//!   stored. Absent for media held before it was recorded or found again by
//!   reconciliation: that upload time is unknown.

use std::collections::HashMap;

use fieldseal_proto::identity::DeviceId;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Db, DbError};
use crate::cases::{Case, Custody, OfficerRecord};

fn get<T: DeserializeOwned>(tree: &sled::Tree, key: &[u8]) -> Result<Option<T>, DbError> {
    match tree.get(key)? {
        Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
        None => Ok(None),
    }
}

fn all<T: DeserializeOwned>(tree: &sled::Tree) -> Result<Vec<T>, DbError> {
    tree.iter()
        .values()
        .map(|v| Ok(serde_json::from_slice(&v?)?))
        .collect()
}

fn put<T: Serialize>(tree: &sled::Tree, key: &[u8], value: &T) -> Result<(), DbError> {
    tree.insert(key, serde_json::to_vec(value)?)?;
    Ok(())
}

fn custody_key(device: DeviceId, from_us: i64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&device.0);
    k[8..].copy_from_slice(&((from_us as u64) ^ (1 << 63)).to_be_bytes());
    k
}

fn seq_key(device: DeviceId, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&device.0);
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

impl Db {
    /// Note when an upload of `(device, seq)` was stored; the first time
    /// counts. Not flushed: it rides with the index flush after it (a crash
    /// before that leaves the time unknown, the media still held).
    ///
    /// # Errors
    /// sled errors.
    pub fn put_media_time_unflushed(
        &self,
        device: DeviceId,
        seq: u64,
        at_us: i64,
    ) -> Result<(), DbError> {
        let key = seq_key(device, seq);
        // Only the first upload is the one a deadline judges.
        let _ = self.media_time.compare_and_swap(
            key,
            None as Option<&[u8]>,
            Some(&at_us.to_be_bytes()[..]),
        )?;
        Ok(())
    }

    /// When the bytes of `(device, seq)` were first stored, if known.
    ///
    /// # Errors
    /// sled errors; a damaged value.
    pub fn media_time(&self, device: DeviceId, seq: u64) -> Result<Option<i64>, DbError> {
        match self.media_time.get(seq_key(device, seq))? {
            None => Ok(None),
            Some(v) => {
                let b: [u8; 8] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| DbError::Corrupt("media_time value is not 8 bytes".into()))?;
                Ok(Some(i64::from_be_bytes(b)))
            }
        }
    }

    /// When the bytes of each segment of `device` were first stored, where
    /// known, by seq: [`Db::media_time`] for all of them in one pass.
    ///
    /// # Errors
    /// As [`Db::media_time`].
    pub fn media_times(&self, device: DeviceId) -> Result<HashMap<u64, i64>, DbError> {
        let mut out = HashMap::new();
        for kv in self.media_time.scan_prefix(device.0) {
            let (k, v) = kv?;
            let seq: [u8; 8] = k
                .get(8..)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| DbError::Corrupt("media_time key is not 16 bytes".into()))?;
            let at: [u8; 8] = v
                .as_ref()
                .try_into()
                .map_err(|_| DbError::Corrupt("media_time value is not 8 bytes".into()))?;
            out.insert(u64::from_be_bytes(seq), i64::from_be_bytes(at));
        }
        Ok(out)
    }

    /// The case with this number.
    ///
    /// # Errors
    /// sled errors; a damaged record.
    pub fn case(&self, number: &str) -> Result<Option<Case>, DbError> {
        get(&self.cases, number.as_bytes())
    }

    /// Every case, by number.
    ///
    /// # Errors
    /// As [`Db::case`].
    pub fn cases(&self) -> Result<Vec<Case>, DbError> {
        all(&self.cases)
    }

    /// Store a case (new or changed) and flush: a custodian's record is
    /// durable before the answer.
    ///
    /// # Errors
    /// sled errors.
    pub fn put_case(&self, c: &Case) -> Result<(), DbError> {
        put(&self.cases, c.number.as_bytes(), c)?;
        self.cases.flush()?;
        Ok(())
    }

    /// The officer with this certificate number.
    ///
    /// # Errors
    /// As [`Db::case`].
    pub fn officer(&self, certificate: &str) -> Result<Option<OfficerRecord>, DbError> {
        get(&self.officers, certificate.as_bytes())
    }

    /// Every officer.
    ///
    /// # Errors
    /// As [`Db::case`].
    pub fn officers(&self) -> Result<Vec<OfficerRecord>, DbError> {
        all(&self.officers)
    }

    /// Store an officer and flush.
    ///
    /// # Errors
    /// sled errors.
    pub fn put_officer(&self, o: &OfficerRecord) -> Result<(), DbError> {
        put(&self.officers, o.certificate.as_bytes(), o)?;
        self.officers.flush()?;
        Ok(())
    }

    /// Store a custody record (a check-out, or the same one with its return
    /// time) and flush.
    ///
    /// # Errors
    /// sled errors.
    pub fn put_custody(&self, c: &Custody) -> Result<(), DbError> {
        put(&self.custody, &custody_key(c.device, c.from_us), c)?;
        self.custody.flush()?;
        Ok(())
    }

    /// Custody records of one device, in time order.
    ///
    /// # Errors
    /// As [`Db::case`].
    pub fn custody_of(&self, device: DeviceId) -> Result<Vec<Custody>, DbError> {
        self.custody
            .scan_prefix(device.0)
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }

    /// Every custody record, by device and time.
    ///
    /// # Errors
    /// As [`Db::case`].
    pub fn custody_all(&self) -> Result<Vec<Custody>, DbError> {
        all(&self.custody)
    }
}

#[cfg(test)]
mod tests {
    use crate::cases::{Case, Custody, OfficerRecord};
    use fieldseal_proto::identity::DeviceId;

    #[test]
    fn records_round_trip_and_custody_is_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::Db::open(dir.path()).unwrap();
        let o = OfficerRecord {
            certificate: "CJ-001".into(),
            name: "王五".into(),
            auxiliary: false,
            valid_from: "2026-01-01".into(),
            valid_until: "2027-12-31".into(),
        };
        db.put_officer(&o).unwrap();
        assert_eq!(db.officer("CJ-001").unwrap(), Some(o.clone()));
        assert_eq!(db.officer("CJ-002").unwrap(), None);
        let c = Case {
            number: "CJ-2026-0001".into(),
            body: "b".into(),
            officers: vec!["CJ-001".into()],
            major: false,
            stages: vec![],
            review: None,
            activities: vec![],
            letters: vec![],
        };
        db.put_case(&c).unwrap();
        assert_eq!(db.cases().unwrap(), vec![c]);
        let d = DeviceId([7; 8]);
        for from in [500, -5, 20] {
            db.put_custody(&Custody {
                device: d,
                officer: "CJ-001".into(),
                from_us: from,
                to_us: None,
            })
            .unwrap();
        }
        db.put_custody(&Custody {
            device: DeviceId([8; 8]),
            officer: "X".into(),
            from_us: 0,
            to_us: None,
        })
        .unwrap();
        let times: Vec<i64> = db
            .custody_of(d)
            .unwrap()
            .iter()
            .map(|c| c.from_us)
            .collect();
        assert_eq!(times, vec![-5, 20, 500]);
        drop(db);
        let db = super::Db::open(dir.path()).unwrap();
        assert_eq!(db.officers().unwrap(), vec![o]);
        assert_eq!(db.custody_all().unwrap().len(), 4);
        db.put_media_time_unflushed(d, 3, 100).unwrap();
        db.put_media_time_unflushed(d, 3, 200).unwrap();
        assert_eq!(
            db.media_time(d, 3).unwrap(),
            Some(100),
            "the first upload counts"
        );
        assert_eq!(db.media_time(d, 4).unwrap(), None);
    }
}
