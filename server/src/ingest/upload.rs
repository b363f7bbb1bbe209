//! Upload decisions, sans-IO (STYLE.md item 4; FORMAT.md §7.5).
//!
//! An upload stream opens with `UploadQuery`; the answer depends on the
//! accepted entry of that seq and on what the store already holds of its
//! bytes: a blob, a partial file, nothing. [`plan_query`] reads those facts
//! through a [`SegmentStore`] and returns one [`UploadPlan`] step. The
//! executor (`exec.rs`) carries out a repair step (mark held, verify the
//! partial file, discard it) and asks again, until the plan is to resume from
//! an offset or to refuse. [`check_begin`] and [`check_complete`] judge the
//! `UploadBegin` and the bytes that arrived.
//!
//! Nothing here writes, hashes or reads a socket: the driver
//! (`quic/upload.rs`) moves the bytes, the executor touches the store.

use fieldseal_proto::identity::{DeviceId, Hash32};
use fieldseal_proto::msg::{Message, UploadBegin, UploadFailCode, UploadQuery, MAX_MEDIA_LEN};

use super::AcceptedEntry;

/// An upload refused, as sent in `UploadFailed`.
pub type Refusal = (UploadFailCode, String);

/// What the store holds of a segment's bytes, as [`plan_query`] needs it.
/// The server's implementation reads the index, the blob store and the
/// partial-upload folder; tests use a struct.
pub trait SegmentStore {
    /// Why a lookup failed.
    type Error;

    /// Does the index note the media of (device, seq) as held?
    ///
    /// # Errors
    /// The index failed.
    fn media_held(&self, device: DeviceId, seq: u64) -> Result<bool, Self::Error>;

    /// Does the blob store hold a blob with this hash?
    ///
    /// # Errors
    /// The blob store failed.
    fn blob_exists(&self, hash: &Hash32) -> Result<bool, Self::Error>;

    /// The durable length of the partial upload of (device, seq), 0 if none.
    ///
    /// # Errors
    /// The file system failed.
    fn partial_len(&self, device: DeviceId, seq: u64) -> Result<u64, Self::Error>;
}

/// The next step in answering an `UploadQuery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadPlan {
    /// The blob exists but the index does not know the media is held (a
    /// crash between the rename and the index update, or the same bytes
    /// uploaded for another entry: content addressing). Note it as held,
    /// then ask again.
    MarkHeld,
    /// The partial file has every byte but they were never verified (a
    /// crash, a broken stream, an overrun): hash it; if it is the signed
    /// media, make it the blob and note it held, else discard it. Then ask
    /// again.
    VerifyPartial {
        /// The signed media hash.
        media_hash: Hash32,
        /// The signed media length.
        media_len: u64,
    },
    /// The partial file is longer than the segment: not ours to resume.
    /// Discard it, then ask again.
    Discard,
    /// Answer `UploadOffset` with this offset (the segment's length when
    /// the server holds it all).
    Resume(u64),
    /// Answer `UploadFailed`.
    Refuse(UploadFailCode, String),
}

/// Decide the next step for query `q` of `device`, given the accepted entry
/// of that seq (if any) and what `store` holds. Only looks at the blob store
/// when a blob could settle the query.
///
/// # Errors
/// A lookup of `store` failed.
pub fn plan_query<S: SegmentStore>(
    device: DeviceId,
    q: &UploadQuery,
    accepted: Option<&AcceptedEntry>,
    store: &S,
) -> Result<UploadPlan, S::Error> {
    let complete = store.media_held(device, q.seq)?;
    let media = accepted.and_then(|a| a.media);
    if let Some((hash, _)) = media {
        // A blob is renamed into place only once verified: if it exists,
        // the server holds these bytes.
        if !complete && hash == q.media_hash && store.blob_exists(&hash)? {
            return Ok(UploadPlan::MarkHeld);
        }
    }
    let held = store.partial_len(device, q.seq)?;
    if let Some((media_hash, media_len)) = media {
        if !complete && held == media_len {
            return Ok(UploadPlan::VerifyPartial {
                media_hash,
                media_len,
            });
        }
    }
    Ok(match check_query(q, accepted, complete, held) {
        Err((code, detail)) => UploadPlan::Refuse(code, detail),
        Ok(offset) if offset < held => UploadPlan::Discard,
        Ok(offset) => UploadPlan::Resume(offset),
    })
}

/// The offset to resume from, given the accepted entry of that seq (if any),
/// whether its media is already complete and the durable length of the
/// partial file the server holds.
fn check_query(
    q: &UploadQuery,
    accepted: Option<&AcceptedEntry>,
    complete: bool,
    partial_len: u64,
) -> Result<u64, Refusal> {
    let (hash, len) = media_of(q.seq, accepted)?;
    if hash != q.media_hash || len != q.media_len {
        return Err((
            UploadFailCode::EntryMismatch,
            "hash or length differ from the signed entry".into(),
        ));
    }
    if complete {
        return Ok(len);
    }
    // A partial file longer than the segment cannot be ours: start over.
    Ok(if partial_len > len { 0 } else { partial_len })
}

/// The stream's first message must be an `UploadQuery`.
///
/// # Errors
/// Anything else, as the failure to send (seq 0: none was named).
pub fn expect_query(m: Message) -> Result<UploadQuery, Refusal> {
    match m {
        Message::UploadQuery(q) => Ok(q),
        _ => Err((UploadFailCode::UnknownEntry, "UploadQuery first".into())),
    }
}

/// After `UploadOffset` short of the end, the device must send `UploadBegin`.
///
/// # Errors
/// Anything else, as the failure to send.
pub fn expect_begin(m: Message) -> Result<UploadBegin, Refusal> {
    match m {
        Message::UploadBegin(b) => Ok(b),
        _ => Err((UploadFailCode::BadOffset, "UploadBegin expected".into())),
    }
}

/// Check an `UploadBegin` against the signed entry and the offset the server
/// holds. Returns the signed `(media_hash, media_len)` and how many raw bytes
/// must follow.
///
/// # Errors
/// The failure to send in `UploadFailed`.
pub fn check_begin(
    b: &UploadBegin,
    accepted: Option<&AcceptedEntry>,
    held: u64,
) -> Result<((Hash32, u64), u64), Refusal> {
    let (hash, len) = media_of(b.seq, accepted)?;
    if hash != b.media_hash || len != b.len || b.len > MAX_MEDIA_LEN {
        return Err((
            UploadFailCode::EntryMismatch,
            "hash or length differ from the signed entry".into(),
        ));
    }
    if b.offset != held {
        return Err((
            UploadFailCode::BadOffset,
            format!("server holds {held} bytes, not {}", b.offset),
        ));
    }
    Ok(((hash, len), b.len - b.offset))
}

/// What to do with a partial file whose every byte arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The signed media: make it a blob, note it held, acknowledge.
    Store,
    /// The file holds fewer bytes than arrived: a write failed behind
    /// tokio's back (a full disk). Discard; the device should retry later.
    Short(u64),
    /// The bytes are not those the entry signed. Discard and refuse.
    Mismatch,
}

/// Judge `(hash, len)` of what the partial file holds against the signed
/// `(media_hash, media_len)`.
pub fn check_complete(signed: (Hash32, u64), got: (Hash32, u64)) -> Completion {
    let ((media_hash, media_len), (hash, len)) = (signed, got);
    if len != media_len {
        Completion::Short(len)
    } else if hash != media_hash {
        Completion::Mismatch
    } else {
        Completion::Store
    }
}

fn media_of(seq: u64, accepted: Option<&AcceptedEntry>) -> Result<(Hash32, u64), Refusal> {
    match accepted {
        None => Err((
            UploadFailCode::UnknownEntry,
            format!("no accepted entry {seq}"),
        )),
        Some(AcceptedEntry { media: None, .. }) => Err((
            UploadFailCode::EntryMismatch,
            format!("entry {seq} is not a segment"),
        )),
        Some(AcceptedEntry { media: Some(m), .. }) => Ok(*m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::convert::Infallible;

    const DEV: DeviceId = DeviceId([7; 8]);
    const HASH: Hash32 = [5; 32];

    /// What the store holds of the one segment under test.
    #[derive(Default)]
    struct Held {
        complete: bool,
        blob: bool,
        partial: u64,
        blob_looked_up: Cell<bool>,
    }

    impl SegmentStore for Held {
        type Error = Infallible;
        fn media_held(&self, _: DeviceId, _: u64) -> Result<bool, Infallible> {
            Ok(self.complete)
        }
        fn blob_exists(&self, h: &Hash32) -> Result<bool, Infallible> {
            self.blob_looked_up.set(true);
            Ok(self.blob && *h == HASH)
        }
        fn partial_len(&self, _: DeviceId, _: u64) -> Result<u64, Infallible> {
            Ok(self.partial)
        }
    }

    fn segment() -> AcceptedEntry {
        AcceptedEntry {
            entry_hash: [1; 32],
            media: Some((HASH, 100)),
            receipt: vec![],
        }
    }

    fn query() -> UploadQuery {
        UploadQuery {
            seq: 3,
            media_hash: HASH,
            media_len: 100,
        }
    }

    fn plan(held: &Held) -> UploadPlan {
        let Ok(p) = plan_query(DEV, &query(), Some(&segment()), held);
        p
    }

    #[test]
    fn a_blob_the_index_does_not_know_is_marked_held() {
        let held = Held {
            blob: true,
            partial: 100,
            ..Held::default()
        };
        assert_eq!(plan(&held), UploadPlan::MarkHeld);
    }

    #[test]
    fn held_media_resumes_at_the_end_without_looking_at_blobs() {
        let held = Held {
            complete: true,
            blob: true,
            ..Held::default()
        };
        assert_eq!(plan(&held), UploadPlan::Resume(100));
        assert!(!held.blob_looked_up.get());
    }

    #[test]
    fn a_complete_partial_file_is_verified() {
        let held = Held {
            partial: 100,
            ..Held::default()
        };
        assert_eq!(
            plan(&held),
            UploadPlan::VerifyPartial {
                media_hash: HASH,
                media_len: 100
            }
        );
    }

    #[test]
    fn a_partial_file_longer_than_the_segment_is_discarded() {
        let held = Held {
            partial: 1000,
            ..Held::default()
        };
        assert_eq!(plan(&held), UploadPlan::Discard);
        // Once discarded, the upload starts over.
        assert_eq!(plan(&Held::default()), UploadPlan::Resume(0));
    }

    #[test]
    fn a_shorter_partial_file_is_resumed() {
        let held = Held {
            partial: 40,
            ..Held::default()
        };
        assert_eq!(plan(&held), UploadPlan::Resume(40));
    }

    #[test]
    fn queries_that_contradict_the_signed_entry_are_refused() {
        let held = Held::default();
        let refused =
            |q: &UploadQuery, a: Option<&AcceptedEntry>| match plan_query(DEV, q, a, &held) {
                Ok(UploadPlan::Refuse(code, _)) => code,
                other => panic!("{other:?}"),
            };
        assert_eq!(refused(&query(), None), UploadFailCode::UnknownEntry);
        let event = AcceptedEntry {
            media: None,
            ..segment()
        };
        assert_eq!(
            refused(&query(), Some(&event)),
            UploadFailCode::EntryMismatch
        );
        let lying = UploadQuery {
            media_len: 10,
            ..query()
        };
        assert_eq!(
            refused(&lying, Some(&segment())),
            UploadFailCode::EntryMismatch
        );
        // A blob with another hash does not settle a lying query.
        let other = UploadQuery {
            media_hash: [6; 32],
            ..query()
        };
        let held = Held {
            blob: true,
            ..Held::default()
        };
        assert!(matches!(
            plan_query(DEV, &other, Some(&segment()), &held),
            Ok(UploadPlan::Refuse(UploadFailCode::EntryMismatch, _))
        ));
    }

    #[test]
    fn begin_must_match_the_signed_entry_and_the_held_offset() {
        let a = segment();
        let b = UploadBegin {
            seq: 3,
            media_hash: HASH,
            offset: 40,
            len: 100,
        };
        assert_eq!(check_begin(&b, Some(&a), 40), Ok(((HASH, 100), 60)));
        assert_eq!(
            check_begin(&b, Some(&a), 0).unwrap_err().0,
            UploadFailCode::BadOffset
        );
        let b2 = UploadBegin { len: 1 << 40, ..b };
        assert_eq!(
            check_begin(&b2, Some(&a), 40).unwrap_err().0,
            UploadFailCode::EntryMismatch
        );
        assert_eq!(
            check_begin(&b, None, 40).unwrap_err().0,
            UploadFailCode::UnknownEntry
        );
    }

    #[test]
    fn the_stream_opens_with_a_query_and_goes_on_with_begin() {
        let q = Message::UploadQuery(query());
        assert_eq!(expect_query(q), Ok(query()));
        assert_eq!(
            expect_query(Message::Ping { nonce: 1 }).unwrap_err().0,
            UploadFailCode::UnknownEntry
        );
        assert_eq!(
            expect_begin(Message::UploadQuery(query())).unwrap_err().0,
            UploadFailCode::BadOffset
        );
    }

    #[test]
    fn arrived_bytes_are_stored_only_if_they_are_the_signed_media() {
        assert_eq!(check_complete((HASH, 100), (HASH, 100)), Completion::Store);
        assert_eq!(
            check_complete((HASH, 100), (HASH, 60)),
            Completion::Short(60)
        );
        assert_eq!(
            check_complete((HASH, 100), ([0; 32], 100)),
            Completion::Mismatch
        );
    }
}
