//! Links a custodian made between a range of a device's entries and an
//! activity of a case, for the recordings whose signed tags do not say (or
//! say wrongly) what they belong to. Entered by people, so `reindex` keeps
//! them; each link and unlink is also a custody leaf of the transparency
//! log (`http/links.rs`), which is the record that cannot be rewritten.
//!
//! Tree `links`:
//!
//! ```text
//! key   = case number || 0x00 || activity id || 0x00 || device (8) || first seq (8) || last seq (8)
//! value = JSON Link
//! ```
//!
//! Case numbers and activity ids are keys (`cases::valid_key`: no 0x00).

use fieldseal_proto::identity::DeviceId;
use serde::{Deserialize, Serialize};

use super::{Db, DbError};

/// A range of entries linked to an activity by a custodian.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Link {
    /// The device.
    #[serde(with = "crate::cases::device_hex")]
    #[schema(value_type = String)]
    pub device: DeviceId,
    /// First linked seq.
    pub first_seq: u64,
    /// Last linked seq (inclusive).
    pub last_seq: u64,
    /// The custodian who linked it.
    pub by: String,
    /// When (µs, server time).
    pub at_us: i64,
}

fn prefix(case: &str, activity: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(case.len() + activity.len() + 26);
    k.extend_from_slice(case.as_bytes());
    k.push(0);
    k.extend_from_slice(activity.as_bytes());
    k.push(0);
    k
}

fn key(case: &str, activity: &str, device: DeviceId, first: u64, last: u64) -> Vec<u8> {
    let mut k = prefix(case, activity);
    k.extend_from_slice(&device.0);
    k.extend_from_slice(&first.to_be_bytes());
    k.extend_from_slice(&last.to_be_bytes());
    k
}

impl Db {
    /// Store a link and flush; `false` (nothing changed) if the same range
    /// of the same device is already linked to the activity.
    ///
    /// # Errors
    /// sled errors.
    pub fn put_link(&self, case: &str, activity: &str, l: &Link) -> Result<bool, DbError> {
        let k = key(case, activity, l.device, l.first_seq, l.last_seq);
        let new = self
            .links
            .compare_and_swap(k, None as Option<&[u8]>, Some(serde_json::to_vec(l)?))?
            .is_ok();
        self.links.flush()?;
        Ok(new)
    }

    /// Remove a link and flush; the removed link, `None` if there was none.
    ///
    /// # Errors
    /// sled errors; a damaged record.
    pub fn remove_link(
        &self,
        case: &str,
        activity: &str,
        device: DeviceId,
        (first, last): (u64, u64),
    ) -> Result<Option<Link>, DbError> {
        let old = self
            .links
            .remove(key(case, activity, device, first, last))?;
        self.links.flush()?;
        Ok(match old {
            Some(v) => Some(serde_json::from_slice(&v)?),
            None => None,
        })
    }

    /// The links of one activity, by device and range.
    ///
    /// # Errors
    /// sled errors; a damaged record.
    pub fn links(&self, case: &str, activity: &str) -> Result<Vec<Link>, DbError> {
        self.links
            .scan_prefix(prefix(case, activity))
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_per_activity_and_removed_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let l = Link {
            device: DeviceId([4; 8]),
            first_seq: 2,
            last_seq: 9,
            by: "cus".into(),
            at_us: 5,
        };
        assert!(db.put_link("C-1", "a1", &l).unwrap());
        assert!(
            !db.put_link("C-1", "a1", &l).unwrap(),
            "the same link again"
        );
        assert_eq!(db.links("C-1", "a1").unwrap(), vec![l.clone()]);
        assert!(db.links("C-1", "a").unwrap().is_empty());
        assert!(db.links("C-1", "a11").unwrap().is_empty());
        assert_eq!(
            db.remove_link("C-1", "a1", l.device, (2, 8)).unwrap(),
            None,
            "another range is not this link"
        );
        assert_eq!(
            db.remove_link("C-1", "a1", l.device, (2, 9)).unwrap(),
            Some(l)
        );
        assert!(db.links("C-1", "a1").unwrap().is_empty());
    }
}
