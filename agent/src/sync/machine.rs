//! The sync client's decisions as a sans-IO state machine (STYLE.md item 4).
//!
//! The driver tells it what happened (`handle_*`, with `now`) and asks what
//! to do next (`poll_*`). It never touches a socket, a clock or the global
//! RNG: jitter comes from the RNG given to [`Machine::handle_disconnected`].
//!
//! - **Entries** are submitted in seq order on the control stream, up to
//!   [`MachineConfig::max_inflight`] unanswered at a time, starting where the
//!   server's `Welcome` says (or lower, if the agent lacks receipts for
//!   entries the server holds: resubmitting them returns the stored receipt).
//! - **Uploads** run on their own streams, oldest seq first, at most
//!   [`MachineConfig::max_uploads`] at a time. A segment is uploaded once its
//!   entry has a receipt, or when `Welcome.resend_media` asks for it.
//! - **Reconnection** waits `min(max, base × 2^attempts)` scaled by a random
//!   factor in [0.5, 1.0) ("equal jitter"), so that a fleet of devices coming
//!   out of the same radio shadow does not reconnect in lockstep.
//! - **Certificate renewal** (protocol v3): once less than a third of the
//!   client certificate's validity is left by the server's clock (its
//!   `Welcome` tells it; [`fieldseal_proto::renew::renewal_due`]), one
//!   request on the live connection; a refusal that may pass is asked again
//!   after [`MachineConfig::renew_retry`]; a new certificate is used by
//!   reconnecting at once.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use fieldseal_proto::msg::{RejectCode, UploadFailCode, Welcome};
use fieldseal_proto::renew::renew_at;
use fieldseal_proto::x509::Validity;
use rand_core::RngCore;

/// Tuning of the machine.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// Most entries submitted and not yet answered. Entries are a few hundred
    /// bytes; 64 in flight cover a 300 ms RTT at well over 100 entries/s.
    pub max_inflight: usize,
    /// Most concurrent uploads. Each upload leaves its stream idle for a
    /// round trip after its bytes (fsync → acknowledgement), and one more
    /// before them when it must query (protocol 3 servers, retries, media
    /// the server may hold); on a 40 ms, 2 % loss link 2 uploads moved 48–60
    /// Mbit/s and 8 moved 95–105 (`fieldseal-loadgen upload --max-uploads`,
    /// `make bench`, before pipelining).
    /// Each costs a 256 KiB read buffer here and a partial file on the server.
    pub max_uploads: usize,
    /// First reconnection delay.
    pub backoff_base: Duration,
    /// Longest reconnection delay.
    pub backoff_max: Duration,
    /// Delay before retrying a failed upload on a live connection.
    pub upload_retry: Duration,
    /// Delay before asking again for a renewal the server could not give
    /// (not due by its clock yet, or failing). A tenth of the time a 90-day
    /// certificate has left when it falls due would be 3 days; an hour
    /// keeps the retries few and still leaves hundreds before expiry.
    pub renew_retry: Duration,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            max_inflight: 64,
            max_uploads: 8,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            upload_retry: Duration::from_secs(2),
            renew_retry: Duration::from_secs(3600),
        }
    }
}

/// A refusal the agent cannot fix by retrying: its chain or key is wrong
/// from the server's point of view. Syncing stops and a human must look.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server refused entry {seq}: {code:?} ({detail})")]
pub struct Fatal {
    /// The seq refused.
    pub seq: u64,
    /// The server's reason.
    pub code: RejectCode,
    /// The server's hint.
    pub detail: String,
}

/// How an upload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadOutcome {
    /// A signed `UploadAck` that proves the hand-over of this segment, kept.
    Acked,
    /// An `UploadAck` that proves nothing (not signed by the receipt key, or
    /// naming other media): nothing is released; retried like a failure.
    BadAck,
    /// `UploadFailed` with this code.
    Failed(UploadFailCode),
    /// The stream or connection broke.
    Broken,
}

/// What the driver should do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Carry on.
    Continue,
    /// Drop the connection and reconnect after the backoff.
    Reconnect,
    /// Stop syncing.
    Stop(Fatal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    /// Not connected; connect at (or after) the instant.
    Down { retry_at: Instant },
    /// Connected, waiting for `Welcome`.
    Handshaking,
    /// Exchanging entries and uploads.
    Ready,
}

/// The sync client's state.
#[derive(Debug)]
pub struct Machine {
    cfg: MachineConfig,
    conn: Conn,
    attempts: u32,
    next_to_send: u64,
    inflight: VecDeque<u64>,
    /// Seqs whose media should be uploaded, oldest first.
    upload_queue: BTreeSet<u64>,
    uploading: BTreeSet<u64>,
    upload_not_before: HashMap<u64, Instant>,
    /// Failed attempts per segment, for its retry delay (reset on success).
    upload_failures: HashMap<u64, u32>,
    /// Segments whose upload was started and not acknowledged: the server
    /// may hold a prefix, so the next attempt asks for its offset instead of
    /// sending the whole file pipelined.
    tried: BTreeSet<u64>,
    /// `next_seq_expected` of this connection's `Welcome`: the server had
    /// accepted no entry from here on, so it can hold no byte of their
    /// media, whole or partial. Only such media is sent pipelined; for the
    /// rest (a device that lost its acknowledgements, a segment the server
    /// asks for again, an upload cut short before) it is asked first.
    server_next: u64,
    /// Lowest seq that may still have media to upload: every segment below
    /// it was acknowledged (or refused for good) at an earlier `Welcome`.
    media_scan_from: u64,
    /// Lowest seq without a receipt, as far as the machine knows.
    receipted_below: u64,
    /// Segments whose bytes the server refused as not matching the entry.
    failed_uploads: BTreeSet<u64>,
    /// When to ask for a new certificate on this connection (`None`: not
    /// this connection; the server is older than v3, or one was asked).
    renew_at: Option<Instant>,
    /// A renewal request is unanswered.
    renewing: bool,
}

/// A read-only view of the store for the machine.
pub trait StoreView {
    /// Highest durable seq.
    fn head(&self) -> Option<u64>;
    /// Has `seq` a receipt?
    fn has_receipt(&self, seq: u64) -> bool;
    /// Does the store hold media for `seq` that the server has not acknowledged?
    fn media_pending(&self, seq: u64) -> bool;
    /// Does the store still hold media for `seq`, acknowledged or not? The
    /// server asks again for media it acknowledged when its copy rotted
    /// (scrub): a store that still has the bytes sends them again.
    fn media_held(&self, seq: u64) -> bool {
        self.media_pending(seq)
    }
}

impl Machine {
    /// A machine that may connect at once.
    pub fn new(cfg: MachineConfig, now: Instant) -> Self {
        Machine {
            cfg,
            conn: Conn::Down { retry_at: now },
            attempts: 0,
            next_to_send: 0,
            inflight: VecDeque::new(),
            upload_queue: BTreeSet::new(),
            uploading: BTreeSet::new(),
            upload_not_before: HashMap::new(),
            upload_failures: HashMap::new(),
            tried: BTreeSet::new(),
            media_scan_from: 0,
            server_next: u64::MAX,
            receipted_below: 0,
            failed_uploads: BTreeSet::new(),
            renew_at: None,
            renewing: false,
        }
    }

    /// When to connect next (`None` while connected).
    pub fn poll_connect(&self) -> Option<Instant> {
        match self.conn {
            Conn::Down { retry_at } => Some(retry_at),
            _ => None,
        }
    }

    /// The driver is connected and has sent `Hello`.
    pub fn handle_connected(&mut self) {
        self.conn = Conn::Handshaking;
    }

    /// The connection failed or broke. Returns when to retry.
    pub fn handle_disconnected(&mut self, now: Instant, rng: &mut impl RngCore) -> Instant {
        let exp = self
            .cfg
            .backoff_base
            .saturating_mul(1u32 << self.attempts.min(16));
        let cap = exp.min(self.cfg.backoff_max);
        // Equal jitter: half fixed, half random, so the delay never collapses to 0.
        let frac = f64::from(rng.next_u32()) / f64::from(u32::MAX);
        let delay = cap.mul_f64(0.5 + 0.5 * frac);
        self.attempts = self.attempts.saturating_add(1);
        let retry_at = now + delay;
        self.conn = Conn::Down { retry_at };
        self.inflight.clear();
        self.uploading.clear();
        self.renew_at = None;
        self.renewing = false;
        retry_at
    }

    /// The connection speaks v3 and was made with a certificate valid over
    /// `cert`; the server's clock reads `server_now` (seconds since the
    /// epoch) at `now`. Schedules the renewal request.
    pub fn handle_cert(&mut self, cert: &Validity, server_now: i64, now: Instant) {
        let wait = renew_at(cert).saturating_sub(server_now);
        // Beyond a year an Instant gains nothing (and 4096 would overflow it).
        let wait = Duration::from_secs(u64::try_from(wait).unwrap_or(0).min(366 * 86_400));
        self.renew_at = now.checked_add(wait);
    }

    /// Ask for a new certificate now?
    pub fn poll_renew(&mut self, now: Instant) -> bool {
        if self.is_ready() && self.renew_at.is_some_and(|t| t <= now) {
            self.renew_at = None;
            self.renewing = true;
            return true;
        }
        false
    }

    /// The server could not renew now (not due by its clock, or failing):
    /// ask again later on this connection.
    pub fn handle_renew_refused(&mut self, now: Instant) {
        self.renewing = false;
        self.renew_at = now.checked_add(self.cfg.renew_retry);
    }

    /// A new certificate is kept: reconnect with it at once (no backoff:
    /// nothing went wrong).
    pub fn handle_renewed(&mut self, now: Instant) {
        self.conn = Conn::Down { retry_at: now };
        self.inflight.clear();
        self.uploading.clear();
        self.renew_at = None;
        self.renewing = false;
    }

    /// The server's `Welcome` arrived. Works out where to start.
    pub fn handle_welcome(&mut self, w: &Welcome, store: &impl StoreView) {
        self.conn = Conn::Ready;
        self.attempts = 0;
        let head_next = store.head().map_or(0, |h| h + 1);
        while self.receipted_below < head_next && store.has_receipt(self.receipted_below) {
            self.receipted_below += 1;
        }
        // Resubmitting an entry the server holds returns its stored receipt.
        self.next_to_send = self.receipted_below.min(w.next_seq_expected);
        self.upload_queue.clear();
        self.upload_not_before.clear();
        self.server_next = w.next_seq_expected;
        for &seq in w.resend_media.as_slice() {
            if store.media_held(seq) && !self.failed_uploads.contains(&seq) {
                self.upload_queue.insert(seq);
            }
        }
        // Segments the agent still holds unacknowledged and that have a
        // receipt. Below `media_scan_from` none was at an earlier `Welcome`,
        // and media is only ever acknowledged in a run, never the reverse:
        // each connection scans the backlog, not the whole chain.
        let end = self.receipted_below.min(head_next);
        let mut first_pending = None;
        for seq in self.media_scan_from..end {
            if store.media_pending(seq) && !self.failed_uploads.contains(&seq) {
                first_pending.get_or_insert(seq);
                self.upload_queue.insert(seq);
            }
        }
        self.media_scan_from = first_pending.unwrap_or(end).max(self.media_scan_from);
    }

    /// Is the connection ready for entries and uploads?
    pub fn is_ready(&self) -> bool {
        self.conn == Conn::Ready
    }

    /// The next entry to submit, if any may go now.
    pub fn poll_submit(&mut self, store: &impl StoreView) -> Option<u64> {
        if !self.is_ready() || self.inflight.len() >= self.cfg.max_inflight {
            return None;
        }
        let head = store.head()?;
        if self.next_to_send > head {
            return None;
        }
        let seq = self.next_to_send;
        self.next_to_send += 1;
        self.inflight.push_back(seq);
        Some(seq)
    }

    /// A verified receipt for `seq` was saved.
    pub fn handle_receipt(&mut self, seq: u64, store: &impl StoreView) -> Action {
        if self.inflight.front() != Some(&seq) {
            // Answers come in order; anything else is a protocol error.
            return Action::Reconnect;
        }
        self.inflight.pop_front();
        while store.has_receipt(self.receipted_below) {
            self.receipted_below += 1;
        }
        if store.media_pending(seq) {
            self.upload_queue.insert(seq);
        }
        Action::Continue
    }

    /// A receipt that does not verify, or for another entry: the server is
    /// broken or not ours. Reconnect (and keep the entry unreceipted).
    pub fn handle_bad_receipt(&mut self) -> Action {
        Action::Reconnect
    }

    /// The server refused entry `seq`.
    pub fn handle_rejected(&mut self, seq: u64, code: RejectCode, detail: &str) -> Action {
        if code.is_retryable() {
            // OutOfOrder or Internal: start over from what the server holds.
            return Action::Reconnect;
        }
        Action::Stop(Fatal {
            seq,
            code,
            detail: detail.to_string(),
        })
    }

    /// The next upload to start, oldest first.
    pub fn poll_upload(&mut self, now: Instant) -> Option<u64> {
        if !self.is_ready() || self.uploading.len() >= self.cfg.max_uploads {
            return None;
        }
        let seq = *self.upload_queue.iter().find(|s| {
            !self.uploading.contains(s) && self.upload_not_before.get(s).is_none_or(|t| *t <= now)
        })?;
        self.uploading.insert(seq);
        Some(seq)
    }

    /// The upload of `seq` that [`Machine::poll_upload`] gave has started
    /// (after [`Machine::upload_pipelined`] was asked): until it is
    /// acknowledged, later attempts ask the server for its offset.
    pub fn upload_started(&mut self, seq: u64) {
        self.tried.insert(seq);
    }

    /// Whether the upload of `seq` that [`Machine::poll_upload`] gave may
    /// be sent pipelined (protocol version 4, FORMAT.md §7.5): the whole
    /// file from offset 0 without asking first. Only media whose entry the
    /// server had not accepted when this connection began, and only on a
    /// first attempt: any earlier one may have left a prefix there worth
    /// resuming from.
    pub fn upload_pipelined(&self, seq: u64) -> bool {
        seq >= self.server_next && !self.tried.contains(&seq)
    }

    /// When a delayed upload may start. `None` while every upload slot is
    /// taken: the end of an upload wakes the driver anyway, and a deadline
    /// already passed would make it spin until then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let upload = match self.conn {
            Conn::Down { retry_at } => return Some(retry_at),
            _ if self.uploading.len() >= self.cfg.max_uploads => None,
            _ => self
                .upload_queue
                .iter()
                .filter(|s| !self.uploading.contains(s))
                .filter_map(|s| self.upload_not_before.get(s))
                .min()
                .copied(),
        };
        match (upload, self.renew_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// An upload ended.
    pub fn handle_upload_done(&mut self, seq: u64, outcome: UploadOutcome, now: Instant) -> Action {
        self.uploading.remove(&seq);
        match outcome {
            UploadOutcome::Acked => {
                self.upload_queue.remove(&seq);
                self.upload_not_before.remove(&seq);
                self.upload_failures.remove(&seq);
                self.tried.remove(&seq);
                Action::Continue
            }
            UploadOutcome::Failed(UploadFailCode::EntryMismatch | UploadFailCode::HashMismatch) => {
                // Our file does not match what we signed (damaged or
                // tampered): retrying sends the same wrong bytes. The server
                // keeps listing the seq in `resend_media`; a human must look.
                self.upload_queue.remove(&seq);
                self.failed_uploads.insert(seq);
                Action::Continue
            }
            UploadOutcome::Failed(_) | UploadOutcome::BadAck => {
                // The delay doubles with each failure of this segment (a
                // server whose disk is full says so for a while), up to the
                // reconnection backoff's cap.
                let n = self.upload_failures.entry(seq).or_insert(0);
                let delay = self
                    .cfg
                    .upload_retry
                    .saturating_mul(1 << (*n).min(8))
                    .min(self.cfg.backoff_max);
                *n += 1;
                self.upload_not_before.insert(seq, now + delay);
                Action::Continue
            }
            UploadOutcome::Broken => Action::Reconnect,
        }
    }

    /// Every entry up to the store's head has a receipt, no upload is
    /// pending or running, and no renewal request is unanswered.
    pub fn is_drained(&self, store: &impl StoreView) -> bool {
        let head_next = store.head().map_or(0, |h| h + 1);
        self.is_ready()
            && !self.renewing
            && self.inflight.is_empty()
            && self.receipted_below >= head_next
            && self.upload_queue.is_empty()
            && self.uploading.is_empty()
    }

    /// Segments the server refused as not matching their signed entry.
    pub fn failed_uploads(&self) -> &BTreeSet<u64> {
        &self.failed_uploads
    }

    /// Entries submitted and not yet answered.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldseal_proto::msg::SeqList;
    use std::collections::BTreeSet;

    #[derive(Default)]
    struct View {
        head: Option<u64>,
        receipts: BTreeSet<u64>,
        media: BTreeSet<u64>,
        acked: BTreeSet<u64>,
    }
    impl StoreView for View {
        fn head(&self) -> Option<u64> {
            self.head
        }
        fn has_receipt(&self, s: u64) -> bool {
            self.receipts.contains(&s)
        }
        fn media_pending(&self, s: u64) -> bool {
            self.media.contains(&s) && !self.acked.contains(&s)
        }
        fn media_held(&self, s: u64) -> bool {
            self.media.contains(&s)
        }
    }

    struct Counter(u32);
    impl RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            self.0 = self.0.wrapping_add(0x9e37_79b9);
            self.0
        }
        fn next_u64(&mut self) -> u64 {
            u64::from(self.next_u32())
        }
        fn fill_bytes(&mut self, d: &mut [u8]) {
            d.fill(self.next_u32().to_le_bytes()[0]);
        }
        fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(d);
            Ok(())
        }
    }

    fn welcome(next: u64, resend: Vec<u64>) -> Welcome {
        Welcome {
            protocol_version: 1,
            server_time_us: 0,
            next_seq_expected: next,
            resend_media: SeqList::new(resend).unwrap(),
        }
    }

    #[test]
    fn submits_in_order_within_the_window_then_uploads_oldest_first() {
        let now = Instant::now();
        let cfg = MachineConfig {
            max_inflight: 2,
            ..MachineConfig::default()
        };
        let mut m = Machine::new(cfg, now);
        let mut v = View {
            head: Some(3),
            media: [1, 2].into(),
            ..View::default()
        };
        assert_eq!(m.poll_submit(&v), None, "not before Welcome");
        m.handle_connected();
        m.handle_welcome(&welcome(0, vec![]), &v);
        assert_eq!(m.poll_submit(&v), Some(0));
        assert_eq!(m.poll_submit(&v), Some(1));
        assert_eq!(m.poll_submit(&v), None, "window full");
        v.receipts.insert(0);
        assert_eq!(m.handle_receipt(0, &v), Action::Continue);
        assert_eq!(m.poll_submit(&v), Some(2));
        v.receipts.insert(1);
        m.handle_receipt(1, &v);
        v.receipts.insert(2);
        m.handle_receipt(2, &v);
        assert_eq!(m.poll_upload(now), Some(1));
        assert_eq!(m.poll_upload(now), Some(2));
        assert_eq!(m.poll_upload(now), None);
        assert_eq!(m.poll_submit(&v), Some(3));
        v.receipts.insert(3);
        m.handle_receipt(3, &v);
        m.handle_upload_done(1, UploadOutcome::Acked, now);
        v.media.remove(&1);
        assert!(!m.is_drained(&v));
        m.handle_upload_done(2, UploadOutcome::Acked, now);
        assert!(m.is_drained(&v));
    }

    #[test]
    fn resumes_below_the_server_head_when_receipts_are_missing() {
        let now = Instant::now();
        let mut m = Machine::new(MachineConfig::default(), now);
        let v = View {
            head: Some(5),
            receipts: [0, 1].into(),
            media: [4].into(),
            ..View::default()
        };
        m.handle_connected();
        m.handle_welcome(&welcome(4, vec![4, 9]), &v);
        assert_eq!(
            m.poll_submit(&v),
            Some(2),
            "lost receipts are fetched again"
        );
        assert_eq!(m.poll_upload(now), Some(4), "resend_media the agent holds");
        assert_eq!(m.poll_upload(now), None, "9 is not held");
    }

    #[test]
    fn acknowledged_media_the_server_asks_for_again_is_resent() {
        // The server's scrub found its copy of 3 damaged and asks again.
        let now = Instant::now();
        let mut m = Machine::new(MachineConfig::default(), now);
        let v = View {
            head: Some(4),
            receipts: [0, 1, 2, 3, 4].into(),
            media: [3, 4].into(),
            acked: [3, 4].into(),
        };
        m.handle_connected();
        m.handle_welcome(&welcome(5, vec![3]), &v);
        assert_eq!(
            m.poll_upload(now),
            Some(3),
            "held and asked for: sent again"
        );
        assert_eq!(m.poll_upload(now), None, "4 was not asked for");
        assert!(!m.is_drained(&v));
        m.handle_upload_done(3, UploadOutcome::Acked, now);
        assert!(m.is_drained(&v));
    }

    #[test]
    fn only_media_new_to_the_server_is_pipelined_and_only_once() {
        // The server holds entries 0..=5 and lacks the media of 3; 6 and 7
        // are new to it. 2's media may be there (the agent lost its
        // acknowledgement), 3's may be there in part: both are asked about.
        let now = Instant::now();
        let mut m = Machine::new(MachineConfig::default(), now);
        let v = View {
            head: Some(7),
            receipts: [0, 1, 2, 3, 4, 5].into(),
            media: [2, 3, 6, 7].into(),
            ..View::default()
        };
        m.handle_connected();
        m.handle_welcome(&welcome(6, vec![3]), &v);
        assert!(!m.upload_pipelined(2), "the server may hold it");
        assert!(!m.upload_pipelined(3), "the server may hold a prefix");
        assert!(
            m.upload_pipelined(6) && m.upload_pipelined(7),
            "new to the server"
        );
        // Started and not acknowledged (the connection may drop before the
        // outcome arrives): asked about from then on, on any connection.
        m.upload_started(6);
        assert!(!m.upload_pipelined(6), "after an attempt");
        m.handle_upload_done(6, UploadOutcome::Failed(UploadFailCode::Internal), now);
        assert!(!m.upload_pipelined(6));
        m.upload_started(7);
        m.handle_upload_done(7, UploadOutcome::Acked, now);
        m.handle_connected();
        m.handle_welcome(&welcome(8, vec![6]), &v);
        assert!(
            !m.upload_pipelined(6),
            "still asked about on the next connection"
        );
        assert!(m.upload_pipelined(9), "later entries are new again");
    }

    #[test]
    fn each_welcome_scans_the_backlog_not_the_whole_chain() {
        /// A view that counts the questions about pending media.
        struct Counting(View, std::cell::Cell<u64>);
        impl StoreView for Counting {
            fn head(&self) -> Option<u64> {
                self.0.head()
            }
            fn has_receipt(&self, s: u64) -> bool {
                self.0.has_receipt(s)
            }
            fn media_pending(&self, s: u64) -> bool {
                self.1.set(self.1.get() + 1);
                self.0.media_pending(s)
            }
            fn media_held(&self, s: u64) -> bool {
                self.0.media_held(s)
            }
        }
        let now = Instant::now();
        let mut m = Machine::new(MachineConfig::default(), now);
        let mut v = Counting(
            View {
                head: Some(9_999),
                receipts: (0..10_000).collect(),
                media: (0..10_000).collect(),
                acked: (0..9_990).collect(),
            },
            std::cell::Cell::new(0),
        );
        m.handle_connected();
        m.handle_welcome(&welcome(10_000, vec![]), &v);
        assert_eq!(
            v.1.get(),
            10_000,
            "the first Welcome of a run looks at every segment"
        );
        let mut queued = Vec::new();
        while let Some(seq) = m.poll_upload(now) {
            queued.push(seq);
        }
        assert_eq!(
            queued,
            (9_990..9_998).collect::<Vec<_>>(),
            "oldest first, 8 at once"
        );
        // 9,990..9,994 acknowledged, then the connection drops.
        for seq in 9_990..9_995 {
            v.0.acked.insert(seq);
        }
        let mut rng = Counter(1);
        m.handle_disconnected(now, &mut rng);
        v.1.set(0);
        m.handle_connected();
        m.handle_welcome(&welcome(10_000, vec![]), &v);
        assert_eq!(v.1.get(), 10, "from the oldest pending segment on");
        assert_eq!(
            m.poll_upload(now),
            Some(9_995),
            "nothing pending is skipped"
        );
        m.handle_disconnected(now, &mut rng);
        v.1.set(0);
        m.handle_connected();
        m.handle_welcome(&welcome(10_000, vec![]), &v);
        assert_eq!(v.1.get(), 5);
    }

    #[test]
    fn backoff_grows_with_jitter_and_resets_on_welcome() {
        let now = Instant::now();
        let cfg = MachineConfig::default();
        let mut m = Machine::new(cfg.clone(), now);
        let mut rng = Counter(1);
        let mut last = Duration::ZERO;
        for i in 0..12u32 {
            let d = m.handle_disconnected(now, &mut rng) - now;
            let cap = cfg.backoff_base.saturating_mul(1 << i).min(cfg.backoff_max);
            assert!(d >= cap / 2 && d <= cap, "attempt {i}: {d:?} vs {cap:?}");
            if i < 5 {
                assert!(d > last / 4);
            }
            last = d;
        }
        assert!(last <= cfg.backoff_max);
        m.handle_connected();
        m.handle_welcome(&welcome(0, vec![]), &View::default());
        let d = m.handle_disconnected(now, &mut rng) - now;
        assert!(d <= cfg.backoff_base);
    }

    #[test]
    fn failed_uploads_wait_and_fatal_rejections_stop() {
        let now = Instant::now();
        let mut m = Machine::new(MachineConfig::default(), now);
        let v = View {
            head: Some(1),
            receipts: [0, 1].into(),
            media: [1].into(),
            ..View::default()
        };
        m.handle_connected();
        m.handle_welcome(&welcome(2, vec![]), &v);
        assert_eq!(m.poll_upload(now), Some(1));
        m.handle_upload_done(1, UploadOutcome::Failed(UploadFailCode::BadOffset), now);
        assert_eq!(m.poll_upload(now), None);
        let later = now + Duration::from_secs(3);
        assert_eq!(
            m.poll_timeout(),
            Some(now + MachineConfig::default().upload_retry)
        );
        assert_eq!(m.poll_upload(later), Some(1));
        // A second failure of the same segment waits twice as long.
        m.handle_upload_done(1, UploadOutcome::Failed(UploadFailCode::Internal), later);
        assert_eq!(
            m.poll_timeout(),
            Some(later + 2 * MachineConfig::default().upload_retry)
        );
        // With every slot taken, a due retry is no reason to wake up.
        let mut one = Machine::new(
            MachineConfig {
                max_uploads: 1,
                ..MachineConfig::default()
            },
            now,
        );
        let v2 = View {
            head: Some(2),
            receipts: [0, 1, 2].into(),
            media: [1, 2].into(),
            ..View::default()
        };
        one.handle_connected();
        one.handle_welcome(&welcome(3, vec![]), &v2);
        assert_eq!(one.poll_upload(now), Some(1));
        one.handle_upload_done(1, UploadOutcome::Failed(UploadFailCode::Internal), now);
        assert_eq!(one.poll_upload(now), Some(2));
        assert_eq!(one.poll_upload(later), None, "the only slot is taken");
        assert_eq!(one.poll_timeout(), None, "no deadline to spin on");
        one.handle_upload_done(2, UploadOutcome::Acked, later);
        assert_eq!(one.poll_upload(later), Some(1));
        assert_eq!(
            m.handle_rejected(7, RejectCode::OutOfOrder, ""),
            Action::Reconnect
        );
        assert!(matches!(
            m.handle_rejected(7, RejectCode::Equivocation, "x"),
            Action::Stop(Fatal {
                seq: 7,
                code: RejectCode::Equivocation,
                ..
            })
        ));
    }

    #[test]
    fn renews_once_a_third_is_left_by_the_servers_clock() {
        let now = Instant::now();
        let mut m = Machine::new(MachineConfig::default(), now);
        let v = View::default();
        m.handle_connected();
        m.handle_welcome(&welcome(0, vec![]), &v);
        let cert = Validity {
            not_before: 1000,
            not_after: 1090,
        };
        // The server says 1030: due at 1060, 30 s from now, whatever the
        // device's own clock says.
        m.handle_cert(&cert, 1030, now);
        assert!(!m.poll_renew(now));
        assert_eq!(m.poll_timeout(), Some(now + Duration::from_secs(30)));
        assert!(m.is_drained(&v));
        assert!(m.poll_renew(now + Duration::from_secs(30)));
        assert!(!m.is_drained(&v), "waits for the answer");
        assert!(!m.poll_renew(now + Duration::from_secs(31)), "asked once");
        assert_eq!(m.poll_timeout(), None);
        // Not given: asked again after renew_retry.
        let later = now + Duration::from_secs(31);
        m.handle_renew_refused(later);
        assert!(m.is_drained(&v));
        assert_eq!(
            m.poll_timeout(),
            Some(later + MachineConfig::default().renew_retry)
        );
        // Given: reconnect at once, without backoff.
        m.handle_renewed(later);
        assert_eq!(m.poll_connect(), Some(later));
        assert!(!m.poll_renew(later + Duration::from_secs(86_400)));
        // Already due when the connection is made (the device was off).
        m.handle_connected();
        m.handle_welcome(&welcome(0, vec![]), &v);
        m.handle_cert(&cert, 1085, later);
        assert!(m.poll_renew(later));
        // A certificate of before expiry (to 4096) is not asked for.
        let old = Validity {
            not_before: 157_766_400,
            not_after: 67_090_118_400,
        };
        m.handle_cert(&old, 1_800_000_000, later);
        assert!(!m.poll_renew(later + Duration::from_secs(300 * 86_400)));
        // A lost connection forgets the schedule; the next Welcome sets it.
        m.handle_cert(&cert, 1085, later);
        m.handle_disconnected(later, &mut Counter(1));
        m.handle_connected();
        m.handle_welcome(&welcome(0, vec![]), &v);
        assert!(!m.poll_renew(later));
    }
}
