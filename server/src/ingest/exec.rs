//! The blocking executor of the ingest plans: the part of `ingest` that
//! touches the chain logs, `leaves.log`, the index, the blob store and the
//! clock. Run it off the async workers (`spawn_blocking`).
//!
//! It decides nothing the state machines decide: it reads their inputs,
//! carries out their plans in the durable order of DESIGN.md and turns the
//! outcome into messages. What it adds is failure handling: a group whose
//! leaves may be durable without their index records poisons ingest
//! (`Shared::ingest_poisoned`) until a restart rolls forward.

use ed25519_dalek::VerifyingKey;
use fieldseal_proto::codec::Decode;
use fieldseal_proto::identity::{DeviceId, Hash32};
use fieldseal_proto::msg::{Detail, EntryRejected, Message, RejectCode, UploadQuery};
use fieldseal_proto::receipt::Receipt;

use super::{
    check_complete, plan_query, AcceptedEntry, Answer, CommitError, CommitPlan, Completion,
    Decision, IngestBatch, Refusal, SegmentStore, UploadError, UploadPlan,
};
use crate::chainindex::{ChainIndex, IndexError};
use crate::{now_us, Shared};

/// Decide about one submitted entry and make an acceptance durable. Public
/// so that tests can fill an archive through the real ingest path.
pub fn submit_blocking(shared: &Shared, key: VerifyingKey, bytes: &[u8]) -> Message {
    submit_group_blocking(shared, &[(key, bytes.to_vec())])
        .pop()
        .expect("one answer per entry")
}

/// Decide about a group of submitted entries, in order, and make the
/// acceptances durable together before answering (group commit): every
/// touched chain log is written and fsynced, then all their leaves go to
/// `leaves.log` with one fsync, then the index is written and flushed once.
/// A crash at any point leaves what one-at-a-time acceptance would: entries
/// without a leaf were never answered and are cut off, entries with one are
/// rolled forward at start (`reindex.rs`). One answer per item, in order.
pub fn submit_group_blocking(shared: &Shared, items: &[(VerifyingKey, Vec<u8>)]) -> Vec<Message> {
    submit_group_at(shared, items, now_us)
}

/// As [`submit_group_blocking`], with the server time of the receipts from
/// `clock` (read once, after the chain logs are durable): a test that needs
/// a byte-exact archive (the golden export package) passes a fixed time.
pub fn submit_group_at(
    shared: &Shared,
    items: &[(VerifyingKey, Vec<u8>)],
    clock: impl FnOnce() -> i64,
) -> Vec<Message> {
    // Heads and the log frontier are read-modify-write: one group at a
    // time. A panic in an earlier group changed nothing durable that the
    // next group relies on (a failure after the leaves poisons ingest).
    let _one_group_at_a_time = shared
        .commit_lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(why) = shared.ingest_poisoned.get() {
        return (0..items.len()).map(|_| internal(0, why)).collect();
    }
    let mut batch = IngestBatch::new();
    batch.handle_group(&shared.db, items, signature_threads());
    let plan = batch.finish();
    keep_equivocations(shared, &plan);
    let receipts = if plan.accepted.is_empty() {
        Ok(Vec::new())
    } else {
        commit(shared, &plan, clock).map_err(|e| e.to_string())
    };
    answers(&plan, receipts.as_deref().map_err(String::as_str))
}

/// Threads that check a group's signatures: one per core, where a group
/// is large enough to share (proto's sigbatch: a thread per 4 signatures at
/// least; below 256 one at a time). This is the group's CPU work that would
/// otherwise wait on the committer's one thread.
fn signature_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
}

/// Count refused conflicting entries, and keep the first ones of each
/// device as evidence, durably, before the refusals are answered (their
/// alarms are logged with the answers): one write of each file per device
/// and group. A failure is logged: the refusals are answered all the same.
fn keep_equivocations(shared: &Shared, plan: &CommitPlan) {
    let mut by_device: std::collections::BTreeMap<DeviceId, Vec<(u64, &[u8])>> =
        std::collections::BTreeMap::new();
    for (device, bytes) in &plan.equivocations {
        // The batch decoded it to find the conflict: it has a seq.
        let seq = fieldseal_proto::entry::SignedEntry::from_bytes(bytes).map_or(0, |e| e.seq());
        by_device.entry(*device).or_default().push((seq, bytes));
    }
    let now = now_us();
    for (device, entries) in by_device {
        if let Err(e) = shared.equivocations.record(device, &entries, now) {
            tracing::error!(%device, n = entries.len(), "could not record equivocation evidence: {e}");
        }
    }
}

/// Make a group's acceptances durable: chain logs, leaves, index. Returns
/// the receipts, in the order of `plan.accepted`.
fn commit(
    shared: &Shared,
    plan: &CommitPlan,
    clock: impl FnOnce() -> i64,
) -> Result<Vec<Receipt>, CommitError> {
    // Per device, in seq order: one write and one fsync of its chain log.
    let mut log_lens = Vec::with_capacity(plan.devices.len());
    for d in &plan.devices {
        let len = shared
            .storage
            .append_entries(d.device, &plan.records(d), d.indexed_log_len)
            .map_err(CommitError::ChainLog)?;
        log_lens.push(len);
    }
    crate::fault::point("entry-after-chainlog");
    let server_time_us = clock();
    let first = match shared.db.log_append_many(&plan.leaves(server_time_us)) {
        Ok(f) => f,
        Err(e) => {
            // The leaves may be durable without their nodes: later groups
            // would then be numbered wrong. Stop accepting until a restart
            // rolls the log and the index forward from the files.
            let _ = shared
                .ingest_poisoned
                .set(format!("log append failed ({e}); restart the server"));
            return Err(e.into());
        }
    };
    let receipts = plan.receipts(first, server_time_us, &shared.receipt_key);
    let indexed =
        tag(&shared.db, plan).and_then(|()| index(shared.db.chain(), plan, &receipts, &log_lens));
    if let Err(e) = indexed {
        // The leaves are published but not indexed: accepting anything
        // more now could give a resent entry a second leaf. A restart rolls
        // these forward.
        let _ = shared
            .ingest_poisoned
            .set(format!("index write failed ({e}); restart the server"));
        return Err(e.into());
    }
    crate::fault::point("entry-after-index");
    Ok(receipts)
}

/// Index the case and activity tags of the accepted entries (`db/tags.rs`),
/// unflushed: [`index`] flushes them with the entries.
fn tag(db: &crate::db::Db, plan: &CommitPlan) -> Result<(), IndexError> {
    for a in &plan.accepted {
        db.put_tag_unflushed(&a.entry.entry)
            .map_err(|e| IndexError::Backend(Box::new(e)))?;
    }
    Ok(())
}

/// Index the accepted entries with their receipts, then each device's head
/// after its last entry of the group with the chain log's new length, and
/// flush once.
fn index(
    db: &dyn ChainIndex,
    plan: &CommitPlan,
    receipts: &[Receipt],
    log_lens: &[u64],
) -> Result<(), IndexError> {
    for (k, (a, r)) in plan.accepted.iter().zip(receipts).enumerate() {
        db.put_entry_unflushed(a.device, a.entry.seq(), &plan.index_record(k, r))?;
    }
    for (d, len) in plan.devices.iter().zip(log_lens) {
        db.put_head_unflushed(d.device, d.head, *len)?;
    }
    db.flush()
}

/// One message per item: `receipts` are those of `plan.accepted`, or why
/// the commit failed.
pub fn answers(plan: &CommitPlan, receipts: Result<&[Receipt], &str>) -> Vec<Message> {
    plan.answers
        .iter()
        .map(|a| match (a, receipts) {
            (Answer::Accepted(k) | Answer::Echo(k), Ok(r)) => Message::EntryReceipt(r[*k].clone()),
            (Answer::Accepted(k), Err(e)) => internal(plan.accepted[*k].entry.seq(), e),
            (Answer::Echo(_), Err(e)) => internal(0, e),
            (Answer::Stored(bytes), _) => match Receipt::from_bytes(bytes) {
                Ok(r) => Message::EntryReceipt(r),
                Err(e) => internal(0, e),
            },
            (Answer::Refused { device, decision }, _) => refusal(*device, decision),
            (Answer::Internal(e), _) => internal(0, e),
        })
        .collect()
}

/// The answer to an entry that is not accepted (equivocation, rejection).
fn refusal(device: DeviceId, d: &Decision) -> Message {
    match d {
        Decision::Equivocation {
            seq,
            accepted,
            offered,
        } => {
            tracing::error!(
                %device,
                seq,
                accepted = %hex::encode(accepted),
                offered = %hex::encode(offered),
                "ALARM equivocation: device signed two different entries with one seq"
            );
            Message::EntryRejected(EntryRejected {
                seq: *seq,
                code: RejectCode::Equivocation,
                detail: Detail::lossy(&format!("seq {seq} differs from the accepted entry")),
            })
        }
        Decision::Reject { seq, code, detail } => {
            tracing::warn!(%device, seq, ?code, detail, "entry rejected");
            Message::EntryRejected(EntryRejected {
                seq: *seq,
                code: *code,
                detail: Detail::lossy(detail),
            })
        }
        Decision::Accept { .. } | Decision::Duplicate { .. } => {
            unreachable!("accepted and duplicate entries are answered by the group")
        }
    }
}

/// A transient refusal: the device retries later. The cause is logged, not
/// sent.
pub(crate) fn internal(seq: u64, e: impl std::fmt::Display) -> Message {
    tracing::error!("ingest failed: {e}");
    Message::EntryRejected(EntryRejected {
        seq,
        code: RejectCode::Internal,
        detail: Detail::lossy("internal error; retry later"),
    })
}

/// What the server holds of a segment: the index, the blob store and the
/// partial-upload folder.
struct Held<'a>(&'a Shared);

impl SegmentStore for Held<'_> {
    type Error = UploadError;

    fn media_held(&self, device: DeviceId, seq: u64) -> Result<bool, UploadError> {
        Ok(self.0.db.has_media(device, seq)?)
    }

    fn blob_exists(&self, hash: &Hash32) -> Result<bool, UploadError> {
        Ok(self.0.blobs.stat(hash)?.is_some())
    }

    fn partial_len(&self, device: DeviceId, seq: u64) -> Result<u64, UploadError> {
        Ok(self.0.storage.partial_len(device, seq)?)
    }
}

/// Each repair step of [`UploadPlan`] settles a fact (the media is held, the
/// partial file is gone), so a query settles within this many steps; more
/// would be a bug in the plan, not a reason to spin.
const MAX_UPLOAD_STEPS: usize = 4;

/// Answer an `UploadQuery`: carry out the plan's repair steps until it says
/// to resume from an offset (`Ok(Ok(offset))`) or to refuse (`Ok(Err(_))`).
/// Blocking.
///
/// # Errors
/// The index, the blob store or a partial file failed.
pub(crate) fn settle_query(
    shared: &Shared,
    device: DeviceId,
    q: &UploadQuery,
    accepted: Option<&AcceptedEntry>,
) -> Result<Result<u64, Refusal>, UploadError> {
    let seq = q.seq;
    for _ in 0..MAX_UPLOAD_STEPS {
        match plan_query(device, q, accepted, &Held(shared))? {
            UploadPlan::MarkHeld => shared.db.put_media(device, seq)?,
            UploadPlan::VerifyPartial {
                media_hash,
                media_len,
            } => {
                if shared.storage.hash_partial(device, seq)? == (media_hash, media_len) {
                    shared.storage.commit_partial(
                        device,
                        seq,
                        &media_hash,
                        shared.blobs.as_ref(),
                    )?;
                    shared.db.put_media(device, seq)?;
                } else {
                    shared.storage.discard_partial(device, seq)?;
                }
            }
            UploadPlan::Discard => shared.storage.discard_partial(device, seq)?,
            UploadPlan::Resume(offset) => return Ok(Ok(offset)),
            UploadPlan::Refuse(code, detail) => return Ok(Err((code, detail))),
        }
    }
    Err(UploadError::Unsettled(seq))
}

/// Make a complete upload a blob if [`check_complete`] says so: the hash and
/// length of what the partial file holds (`got`, from its
/// [`crate::storage::PartWriter`]) against the signed entry's; hand the file
/// to the blob store (fsync, rename, fsync folder) and note that the media is
/// held. Otherwise discard the partial file. Blocking.
///
/// # Errors
/// The index, the blob store or the partial file failed.
pub(crate) fn commit_upload(
    shared: &Shared,
    device: DeviceId,
    seq: u64,
    signed: (Hash32, u64),
    got: (Hash32, u64),
) -> Result<Completion, UploadError> {
    let verdict = check_complete(signed, got);
    if verdict != Completion::Store {
        shared.storage.discard_partial(device, seq)?;
        return Ok(verdict);
    }
    shared
        .storage
        .commit_partial(device, seq, &signed.0, shared.blobs.as_ref())?;
    crate::fault::point("blob-after-rename");
    // Not flushed: that the media is held follows from the blob, which is
    // durable; a start-up after a crash notes held blobs again
    // (`reindex::reconcile_media`), and so does the next upload query.
    shared.db.put_media_unflushed(device, seq)?;
    // When the bytes arrived, for upload deadlines (Art. 27 compliance).
    shared.db.put_media_time_unflushed(device, seq, now_us())?;
    Ok(Completion::Store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Accepted;
    use ed25519_dalek::SigningKey;
    use fieldseal_proto::sample;

    fn plan() -> CommitPlan {
        let key = SigningKey::from_bytes(&[1; 32]);
        let c = sample::build(&key, &[2], 100);
        let e = c.entries[1].clone();
        CommitPlan {
            accepted: vec![Accepted {
                device: e.entry.device,
                record: Vec::new(),
                entry: e,
            }],
            answers: vec![
                Answer::Accepted(0),
                Answer::Echo(0),
                Answer::Stored(vec![1, 2, 3]),
                Answer::Internal("index".into()),
            ],
            ..CommitPlan::default()
        }
    }

    fn rejected(m: &Message) -> (u64, RejectCode) {
        match m {
            Message::EntryRejected(r) => (r.seq, r.code),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failed_commit_answers_every_acceptance_internal() {
        let out = answers(&plan(), Err("disk"));
        let got: Vec<_> = out.iter().map(rejected).collect();
        assert_eq!(
            got,
            [
                (1, RejectCode::Internal),
                (0, RejectCode::Internal),
                (0, RejectCode::Internal),
                (0, RejectCode::Internal),
            ]
        );
    }

    #[test]
    fn an_echo_gets_the_receipt_of_the_entry_it_repeats() {
        let p = plan();
        let receipts = p.receipts(7, 99, &SigningKey::from_bytes(&[9; 32]));
        let out = answers(&p, Ok(&receipts));
        assert_eq!(out[0], Message::EntryReceipt(receipts[0].clone()));
        assert_eq!(out[1], out[0]);
        // A stored receipt that does not decode is an internal error.
        assert_eq!(rejected(&out[2]), (0, RejectCode::Internal));
    }
}
