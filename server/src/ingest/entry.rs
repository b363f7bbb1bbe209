//! One entry's ingest check, sans-IO (STYLE.md item 4).
//!
//! [`Ingest::handle_entry`] decides what to do with one `SubmitEntry` of one
//! device, given what the index knows (its chain head and, for a seq it
//! already holds, the stored entry). It does not touch a file, a socket or a
//! clock, and it knows nothing of groups: [`super::IngestBatch`] runs it for
//! each entry of a group and [`super::exec`] carries out the outcome.

use ed25519_dalek::VerifyingKey;
use fieldseal_proto::codec::Decode;
use fieldseal_proto::entry::{ChainHead, EntryError, SignedEntry};
use fieldseal_proto::identity::{DeviceId, Hash32};
use fieldseal_proto::msg::RejectCode;

/// What the index holds about an accepted entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedEntry {
    /// SHA-256 of the entry's signing bytes.
    pub entry_hash: Hash32,
    /// `(media_sha256, media_len)` for a segment entry.
    pub media: Option<(Hash32, u64)>,
    /// The receipt given for it (129 bytes, [`fieldseal_proto::receipt`]).
    pub receipt: Vec<u8>,
}

/// What to do with a submitted entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// New and valid: append it to the chain log, index it, sign a receipt.
    Accept {
        /// The decoded entry.
        entry: Box<SignedEntry>,
    },
    /// The exact entry is already accepted: send its stored receipt again.
    Duplicate {
        /// The stored receipt.
        receipt: Vec<u8>,
    },
    /// A different entry with a seq already accepted: keep it as evidence and
    /// raise an alarm, then reject it with [`RejectCode::Equivocation`].
    Equivocation {
        /// Its seq.
        seq: u64,
        /// The hash of the accepted entry.
        accepted: Hash32,
        /// The hash of the one submitted now.
        offered: Hash32,
    },
    /// Refuse it.
    Reject {
        /// The seq it carries, as far as it could be read (0 otherwise).
        seq: u64,
        /// Why.
        code: RejectCode,
        /// For humans.
        detail: String,
    },
}

/// One device's ingest state, as the driver loaded it from the index.
#[derive(Debug, Clone)]
pub struct Ingest {
    device: DeviceId,
    key: VerifyingKey,
    head: ChainHead,
}

impl Ingest {
    /// The state of `device` (identified by its enrolled `key`) whose chain,
    /// as the server holds it, ends at `head`.
    pub fn new(key: VerifyingKey, head: ChainHead) -> Self {
        Ingest {
            device: DeviceId::from_key(&key),
            key,
            head,
        }
    }

    /// The chain head the server holds.
    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// Decide about one submitted entry. `accepted(seq)` looks up an entry the
    /// server already holds (called only for `seq < head.next_seq`).
    pub fn handle_entry(
        &self,
        bytes: &[u8],
        accepted: impl FnOnce(u64) -> Option<AcceptedEntry>,
    ) -> Decision {
        self.handle_checked(bytes, None, accepted)
    }

    /// [`Ingest::handle_entry`] with the entry's signature already checked
    /// under this device's key (`Some(valid)`, with `verify_strict`'s answer:
    /// [`super::IngestBatch::handle_group`] checks a group's together);
    /// `None` checks it here.
    pub fn handle_checked(
        &self,
        bytes: &[u8],
        signature_valid: Option<bool>,
        accepted: impl FnOnce(u64) -> Option<AcceptedEntry>,
    ) -> Decision {
        let entry = match SignedEntry::from_bytes(bytes) {
            Ok(e) => e,
            Err(e) => {
                let code = match e {
                    fieldseal_proto::codec::DecodeError::UnsupportedVersion { .. } => {
                        RejectCode::UnsupportedVersion
                    }
                    _ => RejectCode::Malformed,
                };
                return reject(seq_hint(bytes), code, format!("cannot decode entry: {e}"));
            }
        };
        let seq = entry.seq();
        if entry.entry.device != self.device {
            return reject(
                seq,
                RejectCode::WrongDevice,
                format!(
                    "entry names device {}, connection is {}",
                    entry.entry.device, self.device
                ),
            );
        }
        let verified = match signature_valid {
            Some(true) => Ok(()),
            Some(false) => Err(EntryError::BadSignature),
            None => entry.verify(&self.key),
        };
        if let Err(e) = verified {
            let code = match e {
                EntryError::WrongDevice { .. } => RejectCode::WrongDevice,
                _ => RejectCode::BadSignature,
            };
            return reject(seq, code, e.to_string());
        }
        if seq < self.head.next_seq {
            return match accepted(seq) {
                Some(a) if a.entry_hash == entry.hash() => {
                    Decision::Duplicate { receipt: a.receipt }
                }
                Some(a) => Decision::Equivocation {
                    seq,
                    accepted: a.entry_hash,
                    offered: entry.hash(),
                },
                // The index lost an entry below its head: transient from the
                // device's point of view, a bug or damage on ours.
                None => reject(
                    seq,
                    RejectCode::Internal,
                    "accepted entry missing from index".into(),
                ),
            };
        }
        if seq > self.head.next_seq {
            return reject(
                seq,
                RejectCode::OutOfOrder,
                format!("expected seq {}", self.head.next_seq),
            );
        }
        if entry.entry.prev_hash != self.head.last_hash {
            return reject(
                seq,
                RejectCode::BrokenLink,
                "prev_hash is not the hash of the entry before".into(),
            );
        }
        Decision::Accept {
            entry: Box::new(entry),
        }
    }

    /// Record that the driver made `entry` durable: the head moves on.
    pub fn accepted(&mut self, entry: &SignedEntry) {
        self.head = ChainHead::after(entry);
    }
}

fn reject(seq: u64, code: RejectCode, detail: String) -> Decision {
    Decision::Reject { seq, code, detail }
}

/// The seq field of entry bytes that do not decode, read from its fixed
/// offset (prefix 19 + version 1 + device id 8), for `EntryRejected.seq`.
fn seq_hint(bytes: &[u8]) -> u64 {
    bytes
        .get(28..36)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use fieldseal_proto::codec::Encode;
    use fieldseal_proto::sample;

    fn chain(seed: u8) -> (SigningKey, sample::SampleChain) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let c = sample::build(&key, &[2], 100);
        (key, c)
    }

    fn accepted_of(e: &SignedEntry) -> AcceptedEntry {
        AcceptedEntry {
            entry_hash: e.hash(),
            media: e.entry.segment().map(|s| (s.media_sha256, s.media_len)),
            receipt: vec![1, 2, 3],
        }
    }

    #[test]
    fn accepts_in_order_and_answers_duplicates_with_the_stored_receipt() {
        let (key, c) = chain(1);
        let mut ing = Ingest::new(key.verifying_key(), ChainHead::GENESIS);
        for e in &c.entries {
            match ing.handle_entry(&e.to_bytes(), |_| None) {
                Decision::Accept { entry } => ing.accepted(&entry),
                d => panic!("{d:?}"),
            }
        }
        let first = &c.entries[0];
        assert_eq!(
            ing.handle_entry(&first.to_bytes(), |_| Some(accepted_of(first))),
            Decision::Duplicate {
                receipt: vec![1, 2, 3]
            }
        );
    }

    #[test]
    fn rejects_gaps_broken_links_other_devices_and_bad_signatures() {
        let (key, c) = chain(1);
        let ing = Ingest::new(key.verifying_key(), ChainHead::GENESIS);
        let d = ing.handle_entry(&c.entries[1].to_bytes(), |_| None);
        assert!(matches!(
            d,
            Decision::Reject {
                code: RejectCode::OutOfOrder,
                seq: 1,
                ..
            }
        ));

        let mut head = ChainHead::after(&c.entries[0]);
        head.last_hash = [9; 32];
        let ing2 = Ingest::new(key.verifying_key(), head);
        let d = ing2.handle_entry(&c.entries[1].to_bytes(), |_| None);
        assert!(matches!(
            d,
            Decision::Reject {
                code: RejectCode::BrokenLink,
                ..
            }
        ));

        let (_, other) = chain(2);
        let d = ing.handle_entry(&other.entries[0].to_bytes(), |_| None);
        assert!(matches!(
            d,
            Decision::Reject {
                code: RejectCode::WrongDevice,
                ..
            }
        ));

        let mut bad = c.entries[0].to_bytes();
        let n = bad.len();
        bad[n - 1] ^= 1;
        let d = ing.handle_entry(&bad, |_| None);
        assert!(matches!(
            d,
            Decision::Reject {
                code: RejectCode::BadSignature,
                ..
            }
        ));

        let d = ing.handle_entry(b"junk", |_| None);
        assert!(matches!(
            d,
            Decision::Reject {
                code: RejectCode::Malformed,
                ..
            }
        ));
    }

    #[test]
    fn same_seq_different_entry_is_equivocation() {
        let (key, c) = chain(1);
        // Same key, a different chain: find the first seq where they differ.
        let c2 = sample::build(&key, &[3], 100);
        let seq = (0..c.entries.len())
            .find(|&i| c.entries[i].hash() != c2.entries[i].hash())
            .expect("the chains differ");
        let head = ChainHead::after(&c.entries[c.entries.len() - 1]);
        let ing = Ingest::new(key.verifying_key(), head);
        let e = &c2.entries[seq];
        let d = ing.handle_entry(&e.to_bytes(), |_| Some(accepted_of(&c.entries[seq])));
        assert!(matches!(d, Decision::Equivocation { seq: s, .. } if s == seq as u64));
    }
}
