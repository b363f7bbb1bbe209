//! A group of submitted entries decided together, sans-IO (STYLE.md item 4).
//!
//! The committer gathers the entries that arrive while the previous group is
//! being made durable (group commit). [`IngestBatch`] decides each of them in
//! submission order with [`Ingest::handle_entry`], moving each device's
//! chain head as it accepts, so that one group may hold several consecutive
//! entries of one device, echoes of an entry it accepted itself and
//! equivocations against one. [`IngestBatch::finish`] returns a
//! [`CommitPlan`]: per device the chain-log records to append (in seq order)
//! and the head after them, the leaves, the equivocation evidence to keep and
//! what each item is answered.
//!
//! It reads the index only through [`IndexView`] and never writes: making
//! the plan durable is the executor's work (`exec.rs`). Time, the first leaf
//! index and the receipt key come in as arguments of
//! [`CommitPlan::leaves`] and [`CommitPlan::receipts`].

use std::collections::HashMap;

use ed25519_dalek::{SigningKey, VerifyingKey};
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::entry::{ChainHead, SignedEntry};
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::receipt::Receipt;
use fieldseal_proto::sigbatch::{self, SigCheck};

use super::{AcceptedEntry, Decision, IndexView, Ingest};

/// An entry accepted in this group, until its receipt is signed.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Its device.
    pub device: DeviceId,
    /// The decoded entry.
    pub entry: SignedEntry,
    /// The bytes as submitted: the chain-log record's payload.
    pub record: Vec<u8>,
}

/// What one submitted item is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Accepted in this group: the receipt of [`CommitPlan::accepted`]`[k]`.
    Accepted(usize),
    /// The exact entry [`CommitPlan::accepted`]`[k]`, accepted earlier in
    /// this group: the same receipt.
    Echo(usize),
    /// Accepted before this group: its stored receipt, sent again.
    Stored(Vec<u8>),
    /// Refused: a [`Decision::Equivocation`] or a [`Decision::Reject`].
    Refused {
        /// The device whose connection submitted it.
        device: DeviceId,
        /// Why.
        decision: Decision,
    },
    /// The index failed while deciding (transient for the device).
    Internal(String),
}

/// One device's part of a group commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePlan {
    /// The device.
    pub device: DeviceId,
    /// Its chain log's length as the index holds it: the records are
    /// appended there (a longer log has an unindexed tail, cut off).
    pub indexed_log_len: u64,
    /// Its entries accepted in this group, as positions in
    /// [`CommitPlan::accepted`], in seq order.
    pub entries: Vec<usize>,
    /// Its chain head after them.
    pub head: ChainHead,
}

/// What a group commit must make durable, and what each item is answered.
#[derive(Debug, Clone, Default)]
pub struct CommitPlan {
    /// The entries accepted, in submission order: leaf `first + k` of the
    /// transparency log is `accepted[k]`.
    pub accepted: Vec<Accepted>,
    /// Per device with an accepted entry, in order of first acceptance.
    pub devices: Vec<DevicePlan>,
    /// Conflicting entries to keep as evidence: (device, bytes as submitted).
    pub equivocations: Vec<(DeviceId, Vec<u8>)>,
    /// One answer per submitted item, in submission order.
    pub answers: Vec<Answer>,
}

impl CommitPlan {
    /// The chain-log records of `d`, in seq order.
    pub fn records<'a>(&'a self, d: &DevicePlan) -> Vec<&'a [u8]> {
        d.entries
            .iter()
            .map(|&k| self.accepted[k].record.as_slice())
            .collect()
    }

    /// The transparency-log leaves of the accepted entries, in order. They
    /// carry the receipts' time (FORMAT.md §6.8), so that a proof can be
    /// checked from a receipt alone.
    pub fn leaves(&self, server_time_us: i64) -> Vec<Leaf> {
        self.accepted
            .iter()
            .map(|a| Leaf::Entry {
                device: a.device,
                seq: a.entry.seq(),
                entry_hash: a.entry.hash(),
                server_time_us,
            })
            .collect()
    }

    /// The receipts of the accepted entries, in order, once their leaves
    /// are in the log from index `first_leaf` on.
    pub fn receipts(&self, first_leaf: u64, server_time_us: i64, key: &SigningKey) -> Vec<Receipt> {
        (first_leaf..)
            .zip(&self.accepted)
            .map(|(index, a)| {
                Receipt::sign(
                    a.device,
                    a.entry.seq(),
                    a.entry.hash(),
                    server_time_us,
                    index,
                    key,
                )
            })
            .collect()
    }

    /// The index record of `accepted[k]` with its receipt.
    pub fn index_record(&self, k: usize, receipt: &Receipt) -> AcceptedEntry {
        let e = &self.accepted[k].entry;
        AcceptedEntry {
            entry_hash: e.hash(),
            media: e.entry.segment().map(|s| (s.media_sha256, s.media_len)),
            receipt: receipt.to_bytes(),
        }
    }
}

/// The decisions of one group, as they are made.
#[derive(Debug, Default)]
pub struct IngestBatch {
    /// Heads as this group moves them, with the indexed chain-log length.
    heads: HashMap<DeviceId, (ChainHead, u64)>,
    /// Accepted entries by (device, seq), as positions in `plan.accepted`.
    in_group: HashMap<(DeviceId, u64), usize>,
    plan: CommitPlan,
}

impl IngestBatch {
    /// An empty group.
    pub fn new() -> Self {
        IngestBatch::default()
    }

    /// Decide about one entry submitted on the connection of `key`, after
    /// every entry handed in before it. Its answer is the next one of the
    /// plan.
    pub fn handle_entry<V: IndexView>(&mut self, index: &V, key: VerifyingKey, bytes: &[u8]) {
        let answer = self.decide(index, key, bytes, None);
        self.plan.answers.push(answer);
    }

    /// [`IngestBatch::handle_entry`] for each item in order, with the
    /// signatures of the whole group checked first, together, on up to
    /// `threads` threads (proto's `sigbatch`: `verify_strict`'s answer for
    /// each, so every decision is the one `handle_entry` makes).
    pub fn handle_group<V: IndexView>(
        &mut self,
        index: &V,
        items: &[(VerifyingKey, Vec<u8>)],
        threads: usize,
    ) {
        for ((key, bytes), valid) in items.iter().zip(check_signatures(items, threads)) {
            let answer = self.decide(index, *key, bytes, valid);
            self.plan.answers.push(answer);
        }
    }

    fn decide<V: IndexView>(
        &mut self,
        index: &V,
        key: VerifyingKey,
        bytes: &[u8],
        signature_valid: Option<bool>,
    ) -> Answer {
        let device = DeviceId::from_key(&key);
        let (head, log_len) = match self.heads.get(&device) {
            Some(h) => *h,
            None => match index.head_and_log_len(device) {
                Ok(h) => *self.heads.entry(device).or_insert(h),
                Err(e) => return Answer::Internal(e.to_string()),
            },
        };
        let mut lookup_err = None;
        let mut echo_of = None;
        let decision = Ingest::new(key, head).handle_checked(bytes, signature_valid, |seq| {
            if let Some(&k) = self.in_group.get(&(device, seq)) {
                // Accepted in this group, not yet indexed: compared by hash;
                // its receipt does not exist yet.
                echo_of = Some(k);
                return Some(AcceptedEntry {
                    entry_hash: self.plan.accepted[k].entry.hash(),
                    media: None,
                    receipt: Vec::new(),
                });
            }
            index.entry(device, seq).unwrap_or_else(|e| {
                lookup_err = Some(e.to_string());
                None
            })
        });
        if let Some(e) = lookup_err {
            return Answer::Internal(e);
        }
        match decision {
            Decision::Accept { entry } => {
                self.heads
                    .insert(device, (ChainHead::after(&entry), log_len));
                let k = self.plan.accepted.len();
                self.in_group.insert((device, entry.seq()), k);
                self.plan.accepted.push(Accepted {
                    device,
                    entry: *entry,
                    record: bytes.to_vec(),
                });
                Answer::Accepted(k)
            }
            Decision::Duplicate { receipt } => match echo_of {
                Some(k) => Answer::Echo(k),
                None => Answer::Stored(receipt),
            },
            decision => {
                if matches!(decision, Decision::Equivocation { .. }) {
                    self.plan.equivocations.push((device, bytes.to_vec()));
                }
                Answer::Refused { device, decision }
            }
        }
    }

    /// The plan of the group: what to make durable, what to answer.
    pub fn finish(mut self) -> CommitPlan {
        let mut devices: Vec<DevicePlan> = Vec::new();
        for (k, a) in self.plan.accepted.iter().enumerate() {
            match devices.iter_mut().find(|d| d.device == a.device) {
                Some(d) => d.entries.push(k),
                None => {
                    let (head, indexed_log_len) = self.heads[&a.device];
                    devices.push(DevicePlan {
                        device: a.device,
                        indexed_log_len,
                        entries: vec![k],
                        head,
                    });
                }
            }
        }
        self.plan.devices = devices;
        self.plan
    }
}

/// For each item whose bytes decode as an entry of its connection's device,
/// whether its signature verifies (`verify_strict`'s answer); `None` for
/// the others, which [`Ingest`] refuses before asking.
fn check_signatures(items: &[(VerifyingKey, Vec<u8>)], threads: usize) -> Vec<Option<bool>> {
    let mut checks = Vec::with_capacity(items.len());
    let mut at = Vec::with_capacity(items.len());
    for (key, bytes) in items {
        let ours =
            SignedEntry::from_bytes(bytes).is_ok_and(|e| e.entry.device == DeviceId::from_key(key));
        at.push(ours.then_some(checks.len()));
        if ours {
            // Decoding is canonical and takes every byte: the entry's
            // signing bytes, then its signature.
            let (msg, sig) = bytes.split_at(bytes.len() - 64);
            let sig = sig.try_into().expect("64 bytes");
            checks.push(SigCheck { key, msg, sig });
        }
    }
    let valid = sigbatch::verify_strict_many(&checks, threads);
    at.into_iter().map(|k| k.map(|k| valid[k])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{SigningKey, Verifier};
    use fieldseal_proto::codec::Encode;
    use fieldseal_proto::msg::RejectCode;
    use fieldseal_proto::sample;

    /// The index as a map, as the index would hold it after earlier groups.
    #[derive(Default)]
    struct MemIndex {
        heads: HashMap<DeviceId, (ChainHead, u64)>,
        entries: HashMap<(DeviceId, u64), AcceptedEntry>,
        broken: bool,
    }

    impl IndexView for MemIndex {
        type Error = String;
        fn head_and_log_len(&self, d: DeviceId) -> Result<(ChainHead, u64), String> {
            if self.broken {
                return Err("index unreadable".into());
            }
            Ok(self
                .heads
                .get(&d)
                .copied()
                .unwrap_or((ChainHead::GENESIS, 0)))
        }
        fn entry(&self, d: DeviceId, seq: u64) -> Result<Option<AcceptedEntry>, String> {
            Ok(self.entries.get(&(d, seq)).cloned())
        }
    }

    impl MemIndex {
        /// Apply a plan as the executor would (with receipts from leaf 0).
        fn commit(&mut self, plan: &CommitPlan) {
            let receipts = plan.receipts(0, 1, &SigningKey::from_bytes(&[9; 32]));
            for (k, a) in plan.accepted.iter().enumerate() {
                let rec = plan.index_record(k, &receipts[k]);
                self.entries.insert((a.device, a.entry.seq()), rec);
            }
            for d in &plan.devices {
                self.heads.insert(d.device, (d.head, d.indexed_log_len + 1));
            }
        }
    }

    fn device(seed: u8) -> (VerifyingKey, Vec<Vec<u8>>) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let c = sample::build(&key, &[2], 100);
        (
            key.verifying_key(),
            c.entries.iter().map(Encode::to_bytes).collect(),
        )
    }

    fn run(index: &MemIndex, items: &[(VerifyingKey, &[u8])]) -> CommitPlan {
        let mut b = IngestBatch::new();
        for (key, bytes) in items {
            b.handle_entry(index, *key, bytes);
        }
        b.finish()
    }

    /// The plan of `items` with the group's signatures checked together.
    fn run_group(index: &MemIndex, items: &[(VerifyingKey, &[u8])], threads: usize) -> CommitPlan {
        let owned: Vec<(VerifyingKey, Vec<u8>)> =
            items.iter().map(|(k, b)| (*k, b.to_vec())).collect();
        let mut b = IngestBatch::new();
        b.handle_group(index, &owned, threads);
        b.finish()
    }

    #[test]
    fn a_group_checked_together_is_decided_as_one_entry_at_a_time() {
        // Three devices' chains interleaved, enough entries for the batch
        // path (sigbatch::BATCH_MIN), with bad signatures, entries of
        // another device on a connection, bytes that do not decode, echoes
        // and an equivocation.
        let long = |seed: u8, parts: u32| {
            let key = SigningKey::from_bytes(&[seed; 32]);
            let c = sample::build(&key, &[parts], 16);
            let bytes: Vec<Vec<u8>> = c.entries.iter().map(Encode::to_bytes).collect();
            (key, bytes)
        };
        let (sa, mut a) = long(1, 140);
        let (sb, b) = long(2, 120);
        let (sc, c) = long(3, 50);
        let (ka, kb, kc) = (sa.verifying_key(), sb.verifying_key(), sc.verifying_key());
        let n = a[40].len();
        a[40][n - 1] ^= 0x10; // a bad signature: a's later entries are out of order
        let mut forged = SignedEntry::from_bytes(&a[20]).unwrap().entry;
        forged.wall_us += 1;
        let forged = forged.sign(&sb).unwrap().to_bytes(); // a's entry signed by b's key
        let mut twin = SignedEntry::from_bytes(&c[7]).unwrap().entry;
        twin.wall_us += 1;
        let twin = twin.sign(&sc).unwrap().to_bytes(); // another entry 7 of c
        let mut items: Vec<(VerifyingKey, &[u8])> = Vec::new();
        for i in 0..a.len().max(b.len()) {
            if let Some(e) = a.get(i) {
                items.push((ka, e));
            }
            if let Some(e) = b.get(i) {
                items.push((kb, e));
            }
            if let Some(e) = c.get(i) {
                items.push((kc, e));
            }
            match i {
                10 => items.push((ka, &b[3])),
                15 => items.push((kb, b"junk")),
                25 => items.push((ka, &forged)),
                30 => items.push((kc, &c[2])),
                35 => items.push((kc, &twin)),
                45 => items.push((kb, &b[1][..b[1].len() - 1])),
                _ => {}
            }
        }
        assert!(items.len() > sigbatch::BATCH_MIN);
        let index = MemIndex::default();
        let reference = run(&index, &items);
        assert!(reference.equivocations.len() == 1 && reference.accepted.len() > 200);
        for threads in [1, 2] {
            let together = run_group(&index, &items, threads);
            assert_eq!(together.answers, reference.answers, "{threads} threads");
            assert_eq!(together.devices, reference.devices);
            assert_eq!(together.equivocations, reference.equivocations);
            let records = |p: &CommitPlan| {
                p.accepted
                    .iter()
                    .map(|a| a.record.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(records(&together), records(&reference));
        }
    }

    fn refused_code(a: &Answer) -> Option<RejectCode> {
        match a {
            Answer::Refused {
                decision: Decision::Reject { code, .. },
                ..
            } => Some(*code),
            _ => None,
        }
    }

    #[test]
    fn two_devices_interleaved_get_one_plan_each_in_seq_order() {
        let (ka, a) = device(1);
        let (kb, b) = device(2);
        let mut index = MemIndex::default();
        index
            .heads
            .insert(DeviceId::from_key(&kb), (ChainHead::GENESIS, 0));
        let plan = run(
            &index,
            &[
                (ka, &a[0]),
                (kb, &b[0]),
                (ka, &a[1]),
                (kb, &b[1]),
                (ka, &a[2]),
            ],
        );
        assert_eq!(
            plan.answers,
            (0..5).map(Answer::Accepted).collect::<Vec<_>>()
        );
        assert_eq!(plan.devices.len(), 2);
        let da = &plan.devices[0];
        assert_eq!(da.device, DeviceId::from_key(&ka));
        assert_eq!(da.entries, vec![0, 2, 4]);
        assert_eq!(plan.records(da), vec![&a[0][..], &a[1][..], &a[2][..]]);
        assert_eq!(da.head, ChainHead::after(&plan.accepted[4].entry));
        assert_eq!(plan.devices[1].entries, vec![1, 3]);
        // Leaves in submission order, with the time given.
        let leaves = plan.leaves(77);
        assert_eq!(leaves.len(), 5);
        assert!(matches!(
            leaves[1],
            Leaf::Entry {
                seq: 0,
                server_time_us: 77,
                ..
            }
        ));
        assert!(plan.equivocations.is_empty());
    }

    #[test]
    fn receipts_carry_the_leaf_index_and_time_given() {
        let (ka, a) = device(1);
        let plan = run(&MemIndex::default(), &[(ka, &a[0]), (ka, &a[1])]);
        let key = SigningKey::from_bytes(&[9; 32]);
        let r = plan.receipts(40, 1234, &key);
        assert_eq!(r.iter().map(|r| r.log_index).collect::<Vec<_>>(), [40, 41]);
        assert!(r.iter().all(|r| r.server_time_us == 1234));
        assert_eq!(r[1].seq, 1);
        assert_eq!(r[1].entry_hash, plan.accepted[1].entry.hash());
        key.verifying_key()
            .verify(
                &r[0].signing_bytes(),
                &ed25519_dalek::Signature::from_bytes(&r[0].signature),
            )
            .expect("signed by the key given");
        assert_eq!(plan.index_record(1, &r[1]).receipt, r[1].to_bytes());
    }

    #[test]
    fn a_duplicate_within_the_group_echoes_the_first_acceptance() {
        let (ka, a) = device(1);
        let plan = run(
            &MemIndex::default(),
            &[(ka, &a[0]), (ka, &a[0]), (ka, &a[1]), (ka, &a[0])],
        );
        assert_eq!(
            plan.answers,
            [
                Answer::Accepted(0),
                Answer::Echo(0),
                Answer::Accepted(1),
                Answer::Echo(0)
            ]
        );
        // Only one record and one leaf per entry.
        assert_eq!(plan.accepted.len(), 2);
        assert_eq!(plan.devices[0].entries, vec![0, 1]);
    }

    #[test]
    fn an_entry_accepted_before_the_group_gets_its_stored_receipt() {
        let (ka, a) = device(1);
        let mut index = MemIndex::default();
        let first = run(&index, &[(ka, &a[0]), (ka, &a[1])]);
        index.commit(&first);
        let plan = run(&index, &[(ka, &a[1]), (ka, &a[2])]);
        let stored = index.entries[&(DeviceId::from_key(&ka), 1)].receipt.clone();
        assert_eq!(plan.answers, [Answer::Stored(stored), Answer::Accepted(0)]);
        assert_eq!(plan.devices[0].indexed_log_len, 1);
    }

    #[test]
    fn equivocation_against_the_index_and_within_the_group_is_kept() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let c1 = sample::build(&key, &[2], 100);
        let c2 = sample::build(&key, &[3], 100);
        let seq = (0..c1.entries.len())
            .find(|&i| c1.entries[i].hash() != c2.entries[i].hash())
            .expect("the chains differ");
        let kv = key.verifying_key();
        let b1: Vec<Vec<u8>> = c1.entries.iter().map(Encode::to_bytes).collect();
        let other = c2.entries[seq].to_bytes();

        // Within the group: accepted a moment ago, then contradicted.
        let mut items: Vec<(VerifyingKey, &[u8])> =
            b1[..=seq].iter().map(|b| (kv, &b[..])).collect();
        items.push((kv, &other));
        let plan = run(&MemIndex::default(), &items);
        assert!(matches!(
            plan.answers[seq + 1],
            Answer::Refused { decision: Decision::Equivocation { seq: s, .. }, .. } if s == seq as u64
        ));
        assert_eq!(
            plan.equivocations,
            [(DeviceId::from_key(&kv), other.clone())]
        );
        assert_eq!(plan.accepted.len(), seq + 1);

        // Against the index.
        let mut index = MemIndex::default();
        index.commit(&run(&index, &items[..=seq]));
        let plan = run(&index, &[(kv, &other)]);
        assert!(matches!(
            plan.answers[0],
            Answer::Refused {
                decision: Decision::Equivocation { .. },
                ..
            }
        ));
        assert_eq!(plan.equivocations.len(), 1);
        assert!(plan.devices.is_empty());
    }

    #[test]
    fn out_of_order_and_broken_links_are_refused_and_leave_the_head() {
        let (ka, a) = device(1);
        let plan = run(
            &MemIndex::default(),
            &[(ka, &a[1]), (ka, &a[0]), (ka, &a[2])],
        );
        assert_eq!(refused_code(&plan.answers[0]), Some(RejectCode::OutOfOrder));
        assert_eq!(plan.answers[1], Answer::Accepted(0));
        assert_eq!(refused_code(&plan.answers[2]), Some(RejectCode::OutOfOrder));

        let mut index = MemIndex::default();
        let head = ChainHead {
            next_seq: 1,
            last_hash: [9; 32],
        };
        index.heads.insert(DeviceId::from_key(&ka), (head, 50));
        let plan = run(&index, &[(ka, &a[1])]);
        assert_eq!(refused_code(&plan.answers[0]), Some(RejectCode::BrokenLink));
        assert!(plan.accepted.is_empty() && plan.devices.is_empty());
    }

    #[test]
    fn an_index_failure_answers_internal_and_accepts_nothing() {
        let (ka, a) = device(1);
        let index = MemIndex {
            broken: true,
            ..MemIndex::default()
        };
        let plan = run(&index, &[(ka, &a[0])]);
        assert!(matches!(plan.answers[0], Answer::Internal(_)));
        assert!(plan.accepted.is_empty());
    }
}
