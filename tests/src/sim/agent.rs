//! One simulated device: the real sync [`Machine`] over an in-memory store,
//! driven the way `agent/src/sync/driver.rs` drives it, with the clock and
//! the network of the pair instead of tokio and quinn. The driver's few
//! checks of its own (a receipt must name the entry sent and verify; an
//! `UploadOffset` must not pass the length; an ack must name the hash) are
//! repeated here, so that the machine meets the answers it would meet.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use ed25519_dalek::{SigningKey, VerifyingKey};
use fieldseal_agent::sync::machine::{Action, Machine, MachineConfig, StoreView, UploadOutcome};
use fieldseal_proto::codec::Encode;
use fieldseal_proto::entry::SignedEntry;
use fieldseal_proto::identity::{DeviceId, Hash32};
use fieldseal_proto::msg::Message;
use fieldseal_proto::msg::{
    EntryBytes, Hello, SubmitEntry, UploadBegin, UploadQuery, Welcome, PROTOCOL_VERSION,
};
use fieldseal_proto::receipt::Receipt;
use fieldseal_proto::sample::SampleChain;

/// The device's durable store: entries, media not yet released, receipts,
/// acknowledgements. A device crash keeps all of it (the spool's own crash
/// safety is `faults_spool.rs`'s subject).
#[derive(Debug, Default)]
pub struct Store {
    /// Signed entries, in seq order.
    pub entries: Vec<Vec<u8>>,
    /// Media bytes the device still holds, by seq.
    pub media: BTreeMap<u64, Vec<u8>>,
    /// `(hash, len)` of each segment, by seq (kept after the bytes go).
    pub signed_media: BTreeMap<u64, (Hash32, u64)>,
    /// Verified receipts, by seq.
    pub receipts: BTreeMap<u64, Receipt>,
    /// Segments the server acknowledged (and the device then deleted).
    pub acked: BTreeSet<u64>,
}

impl StoreView for Store {
    fn head(&self) -> Option<u64> {
        (self.entries.len() as u64).checked_sub(1)
    }
    fn has_receipt(&self, seq: u64) -> bool {
        self.receipts.contains_key(&seq)
    }
    fn media_pending(&self, seq: u64) -> bool {
        self.media.contains_key(&seq) && !self.acked.contains(&seq)
    }
    fn media_held(&self, seq: u64) -> bool {
        self.media.contains_key(&seq)
    }
}

/// Where one upload stream of the device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Up {
    /// `UploadQuery` sent, waiting for the offset.
    Query,
    /// Bytes sent, waiting for the acknowledgement.
    Sent,
}

/// What the device wants sent (the pair puts it on the wire).
#[derive(Debug)]
pub enum Out {
    /// Open a connection and send `Hello` on its control stream.
    Connect(Message),
    /// A message on the control stream.
    Control(Message),
    /// A message on upload stream `n`.
    Upload(u64, Message),
    /// Raw bytes on upload stream `n`, then (with `true`) the end of the stream.
    Data(u64, Vec<u8>, bool),
}

/// A device of the pair.
#[derive(Debug)]
pub struct Agent {
    /// Its key.
    pub key: SigningKey,
    /// Its id.
    pub device: DeviceId,
    /// The server's receipt key, pinned at enrolment.
    pub server_key: VerifyingKey,
    /// The store.
    pub store: Store,
    /// The sync state machine under test.
    pub machine: Machine,
    /// The entries still to be recorded, with their media.
    pending: VecDeque<(SignedEntry, Option<Vec<u8>>)>,
    /// The live connection, if any.
    pub conn: Option<u64>,
    welcomed: bool,
    sent: VecDeque<(u64, Hash32)>,
    uploads: BTreeMap<u64, (u64, Up)>,
    next_stream: u64,
    /// The machine gave up (a refusal a human must look at).
    pub fatal: Option<String>,
    /// Receipts that did not verify or named another entry.
    pub bad_receipts: u64,
    /// Bytes per data packet (a stream's bytes arrive in chunks).
    pub chunk: usize,
}

impl Agent {
    /// A device that will record `chain`, entry by entry, as the pair says.
    pub fn new(
        key: SigningKey,
        server_key: VerifyingKey,
        chain: SampleChain,
        cfg: MachineConfig,
        now: Instant,
    ) -> Agent {
        let mut media = chain.media;
        let pending = chain
            .entries
            .into_iter()
            .map(|e| {
                let m = media.remove(&e.seq());
                (e, m)
            })
            .collect();
        Agent {
            device: DeviceId::from_key(&key.verifying_key()),
            key,
            server_key,
            store: Store::default(),
            machine: Machine::new(cfg, now),
            pending,
            conn: None,
            welcomed: false,
            sent: VecDeque::new(),
            uploads: BTreeMap::new(),
            next_stream: 0,
            fatal: None,
            bad_receipts: 0,
            chunk: 4096,
        }
    }

    /// Entries not recorded yet.
    pub fn to_record(&self) -> usize {
        self.pending.len()
    }

    /// The media bytes of a segment not recorded yet (to damage them, as a
    /// failing storage card would, before the device reads them back).
    pub fn pending_media_mut(&mut self, seq: u64) -> Option<&mut Vec<u8>> {
        self.pending
            .iter_mut()
            .find(|(e, _)| e.seq() == seq)
            .and_then(|(_, m)| m.as_mut())
    }

    /// Record the next entry (it becomes durable in the store).
    pub fn record_next(&mut self) {
        if let Some((e, m)) = self.pending.pop_front() {
            if let Some(seg) = e.entry.segment() {
                self.store
                    .signed_media
                    .insert(e.seq(), (seg.media_sha256, seg.media_len));
            }
            if let Some(m) = m {
                self.store.media.insert(e.seq(), m);
            }
            self.store.entries.push(e.to_bytes());
        }
    }

    /// The connection is gone (broken, closed, or the device restarted it).
    pub fn disconnected(&mut self, now: Instant, rng: &mut impl rand_core::RngCore) {
        self.conn = None;
        self.welcomed = false;
        self.sent.clear();
        self.uploads.clear();
        self.machine.handle_disconnected(now, rng);
    }

    /// Whatever the machine wants to do now: connect, submit, upload.
    pub fn pump(&mut self, now: Instant, new_conn: &mut impl FnMut() -> u64) -> Vec<Out> {
        let mut out = Vec::new();
        if self.fatal.is_some() {
            return out;
        }
        if self.conn.is_none() {
            if self.machine.poll_connect().is_some_and(|t| t <= now) {
                self.conn = Some(new_conn());
                self.machine.handle_connected();
                out.push(Out::Connect(Message::Hello(Hello {
                    protocol_version: PROTOCOL_VERSION,
                    device_id: self.device,
                    chain_head_seq: self.store.head(),
                })));
            }
            return out;
        }
        if !self.welcomed {
            return out;
        }
        while let Some(seq) = self.machine.poll_submit(&self.store) {
            let bytes = self.store.entries[idx(seq)].clone();
            let hash = entry_hash(&bytes);
            self.sent.push_back((seq, hash));
            let entry = EntryBytes::new(bytes).expect("entries fit a frame");
            out.push(Out::Control(Message::SubmitEntry(SubmitEntry { entry })));
        }
        while let Some(seq) = self.machine.poll_upload(now) {
            let Some(&(media_hash, media_len)) = self.store.signed_media.get(&seq) else {
                self.machine
                    .handle_upload_done(seq, UploadOutcome::Acked, now);
                continue;
            };
            if !self.store.media.contains_key(&seq) {
                // Released already: nothing to send (as the driver does).
                self.machine
                    .handle_upload_done(seq, UploadOutcome::Acked, now);
                continue;
            }
            let n = self.next_stream;
            self.next_stream += 1;
            self.uploads.insert(n, (seq, Up::Query));
            out.push(Out::Upload(
                n,
                Message::UploadQuery(UploadQuery {
                    seq,
                    media_hash,
                    media_len,
                }),
            ));
        }
        out
    }

    /// When the machine wants to be woken without a packet.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.fatal.is_some() {
            return None;
        }
        match self.conn {
            None => self.machine.poll_connect(),
            // Waiting for `Welcome`, the driver waits on the stream alone.
            Some(_) if !self.welcomed => None,
            Some(_) => self.machine.poll_timeout(),
        }
    }

    /// A message on the control stream. Returns false when the connection
    /// must be dropped (the machine asked for it, or a protocol error).
    pub fn on_control(&mut self, m: Message) -> bool {
        let action = match m {
            Message::Welcome(w) => {
                self.on_welcome(&w);
                Action::Continue
            }
            Message::EntryReceipt(r) => self.on_receipt(r),
            Message::EntryRejected(r) => {
                self.sent.pop_front();
                self.machine
                    .handle_rejected(r.seq, r.code, r.detail.as_str())
            }
            _ => Action::Reconnect,
        };
        self.act(action)
    }

    fn on_welcome(&mut self, w: &Welcome) {
        self.welcomed = true;
        self.machine.handle_welcome(w, &self.store);
    }

    fn on_receipt(&mut self, r: Receipt) -> Action {
        let Some((seq, hash)) = self.sent.pop_front() else {
            self.bad_receipts += 1;
            return self.machine.handle_bad_receipt();
        };
        if r.seq != seq
            || r.device_id != self.device
            || r.entry_hash != hash
            || r.verify(&self.server_key).is_err()
        {
            self.bad_receipts += 1;
            return self.machine.handle_bad_receipt();
        }
        self.store.receipts.insert(seq, r);
        self.machine.handle_receipt(seq, &self.store)
    }

    /// A message on upload stream `n`. `Some(seq)` when the device
    /// released the media of `seq` on an acknowledgement (the pair checks
    /// that the server really holds it). Returns the bytes to send, if any.
    pub fn on_upload(&mut self, n: u64, m: Message, now: Instant) -> (Vec<Out>, Option<u64>, bool) {
        let Some(&(seq, state)) = self.uploads.get(&n) else {
            return (Vec::new(), None, true);
        };
        let (hash, len) = self.store.signed_media[&seq];
        let outcome = match (state, m) {
            (Up::Query | Up::Sent, Message::UploadAck(a)) => {
                match a.verify_for(&self.server_key, self.device, seq, (hash, len)) {
                    Ok(()) => UploadOutcome::Acked,
                    Err(_) => UploadOutcome::BadAck,
                }
            }
            (Up::Query, Message::UploadOffset(o)) if o.seq == seq && o.offset < len => {
                let bytes = self.store.media[&seq][idx(o.offset)..].to_vec();
                let mut out = vec![Out::Upload(
                    n,
                    Message::UploadBegin(UploadBegin {
                        seq,
                        media_hash: hash,
                        offset: o.offset,
                        len,
                    }),
                )];
                let chunks: Vec<&[u8]> = bytes.chunks(self.chunk.max(1)).collect();
                let last = chunks.len().saturating_sub(1);
                for (i, c) in chunks.iter().enumerate() {
                    out.push(Out::Data(n, c.to_vec(), i == last));
                }
                if chunks.is_empty() {
                    out.push(Out::Data(n, Vec::new(), true));
                }
                self.uploads.insert(n, (seq, Up::Sent));
                return (out, None, true);
            }
            (_, Message::UploadFailed(f)) => UploadOutcome::Failed(f.code),
            _ => UploadOutcome::Broken,
        };
        self.uploads.remove(&n);
        let mut released = None;
        if outcome == UploadOutcome::Acked {
            // Keep period 0: the media goes as soon as it is acknowledged.
            self.store.acked.insert(seq);
            self.store.media.remove(&seq);
            released = Some(seq);
        }
        let action = self.machine.handle_upload_done(seq, outcome, now);
        let keep = self.act(action);
        (Vec::new(), released, keep)
    }

    fn act(&mut self, a: Action) -> bool {
        match a {
            Action::Continue => true,
            Action::Reconnect => false,
            Action::Stop(f) => {
                self.fatal = Some(f.to_string());
                false
            }
        }
    }

    /// Every entry recorded, receipted, and no upload left to do.
    pub fn is_drained(&self) -> bool {
        self.pending.is_empty() && self.conn.is_some() && self.machine.is_drained(&self.store)
    }
}

fn idx(n: u64) -> usize {
    usize::try_from(n).expect("sim sizes fit usize")
}

/// The hash of entry bytes the store wrote itself.
fn entry_hash(bytes: &[u8]) -> Hash32 {
    use fieldseal_proto::codec::Decode;
    SignedEntry::from_bytes(bytes)
        .expect("the store holds entries it encoded")
        .hash()
}

/// The backoff the pair uses: short, so that faults heal within virtual seconds.
pub fn machine_config() -> MachineConfig {
    MachineConfig {
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_secs(2),
        upload_retry: Duration::from_millis(300),
        ..MachineConfig::default()
    }
}
