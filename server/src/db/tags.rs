//! The tag index: which accepted entries the agent signed with a case number
//! (and an activity type), so that "the entries of case C" is one prefix
//! scan and never a walk over every chain. Derived from evidence: ingest
//! writes it with the accepted entries (same index flush, after chain logs
//! and `leaves.log`), `reindex` rebuilds it from the chain logs.
//!
//! Tree `tags`:
//!
//! ```text
//! key   = case number (UTF-8) || 0x00 || device id (8) || seq (8, big-endian)
//! value = activity type (UTF-8), empty when the entry named no activity
//! ```
//!
//! Signed tags are text without control characters (`proto` refuses them),
//! so the 0x00 cannot occur in a case number; a reader still checks that a
//! key is exactly `case || 0x00 || 16 bytes`.
//!
//! Tagged entries: segments (`case`, `activity`), and the events that set
//! the tag (`RecordingStarted`, `TagChanged`). An entry without a case
//! number is not indexed.

use fieldseal_proto::entry::{Body, Entry, Event};
use fieldseal_proto::identity::DeviceId;

use super::{Db, DbError};

/// A stored key and value of the tag index.
pub type RawTag = (Vec<u8>, Vec<u8>);

/// One tagged entry of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    /// Its device.
    pub device: DeviceId,
    /// Its seq.
    pub seq: u64,
    /// The activity type it was signed with, if one.
    pub activity: Option<String>,
}

/// The case number and activity type `e` was signed with, if it names a case.
pub fn entry_tag(e: &Entry) -> Option<(&str, Option<&str>)> {
    let (case, activity) = match &e.body {
        Body::Segment(s) => (&s.case, &s.activity),
        Body::Event(
            Event::RecordingStarted { case, activity, .. } | Event::TagChanged { case, activity },
        ) => (case, activity),
        Body::Event(_) => return None,
    };
    Some((case.as_deref()?, activity.as_deref()))
}

fn case_prefix(case: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(case.len() + 17);
    k.extend_from_slice(case.as_bytes());
    k.push(0);
    k
}

impl Db {
    /// Index `e`'s tag, if it has one. Not flushed: it rides with the index
    /// flush of the entries it belongs to.
    ///
    /// # Errors
    /// sled errors.
    pub fn put_tag_unflushed(&self, e: &Entry) -> Result<(), DbError> {
        let Some((case, activity)) = entry_tag(e) else {
            return Ok(());
        };
        let mut k = case_prefix(case);
        k.extend_from_slice(&e.device.0);
        k.extend_from_slice(&e.seq.to_be_bytes());
        self.tags
            .insert(k, activity.unwrap_or_default().as_bytes())?;
        Ok(())
    }

    /// Every entry tagged with `case`, by device and seq.
    ///
    /// # Errors
    /// sled errors; a damaged record.
    pub fn tagged(&self, case: &str) -> Result<Vec<Tagged>, DbError> {
        let prefix = case_prefix(case);
        let mut out = Vec::new();
        for kv in self.tags.scan_prefix(&prefix) {
            let (k, v) = kv?;
            let rest: &[u8; 16] = k[prefix.len()..]
                .try_into()
                .map_err(|_| DbError::Corrupt("tag key".into()))?;
            let activity = std::str::from_utf8(&v)
                .map_err(|_| DbError::Corrupt("tag value is not UTF-8".into()))?;
            out.push(Tagged {
                device: DeviceId(rest[..8].try_into().expect("8 bytes")),
                seq: u64::from_be_bytes(rest[8..].try_into().expect("8 bytes")),
                activity: (!activity.is_empty()).then(|| activity.to_owned()),
            });
        }
        Ok(out)
    }

    /// The whole tag index as stored, for comparing a rebuilt one.
    ///
    /// # Errors
    /// sled errors.
    pub fn tags_raw(&self) -> Result<Vec<RawTag>, DbError> {
        self.tags
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use fieldseal_proto::sample;

    #[test]
    fn tagged_entries_of_a_case_are_found_by_its_number_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::Db::open(dir.path()).unwrap();
        let c = sample::build(&SigningKey::from_bytes(&[1; 32]), &[2], 10);
        for e in &c.entries {
            db.put_tag_unflushed(&e.entry).unwrap();
        }
        let got = db.tagged("CJ-2026-0001").unwrap();
        // The recording-started event and its two segments; not the agent
        // start or the stop.
        let seqs: Vec<u64> = got.iter().map(|t| t.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        assert!(got
            .iter()
            .all(|t| t.activity.as_deref() == Some("seizure")
                && t.device == c.entries[0].entry.device));
        // A case whose number is a prefix of another's finds nothing of it.
        assert!(db.tagged("CJ-2026-000").unwrap().is_empty());
        assert!(db.tagged("CJ-2026-00011").unwrap().is_empty());
    }
}
