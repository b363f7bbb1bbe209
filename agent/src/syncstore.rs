//! The spool as the sync client sees it: [`SyncStore`] over the data folder.
//!
//! ```text
//! DIR/chain.log      read: the entries to send (the writer appends; refresh() reads the new tail)
//! DIR/receipts.log   the server's signed receipts, chain-log records of 129 bytes, fsynced
//! DIR/acks.log       the server's signed media acknowledgements, kept as proof of hand-over
//!                    (crate::acks), fsynced
//! DIR/keepclock      the keep clock's checkpoint (crate::acks)
//! DIR/receipt.pub    read: the server's receipt key from enrolment, which signs receipts and acks
//! DIR/released.log   media deleted after acknowledgement and keep period (written by the spool)
//! ```
//!
//! Receipts and acknowledgements are evidence too: the receipt for the last
//! entry proves how long the chain was, so local verification can see a cut
//! tail (see [`head_from_receipts`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ed25519_dalek::VerifyingKey;
use fieldseal_proto::ack::MediaAck;
use fieldseal_proto::chainlog;
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::entry::SignedEntry;
use fieldseal_proto::identity::{DeviceId, Hash32};
use fieldseal_proto::receipt::Receipt;
use tokio::sync::watch;

use crate::acks::{self, KeepClock, KeptAck, Segment};
use crate::spool::media_name;
use crate::spoolfs::{SpoolFs, StdFs};
use crate::sync::store::{MediaRef, SyncStore};

#[derive(Debug)]
struct Inner {
    /// Offset of each entry's record in chain.log, by seq.
    offsets: Vec<u64>,
    /// Bytes of chain.log already scanned.
    scanned: u64,
    /// Segment seqs with their signed media length and hash.
    segments: BTreeMap<u64, (u64, Hash32)>,
    receipts: BTreeMap<u64, Receipt>,
    /// The device, from the first entry read.
    device: Option<DeviceId>,
    /// Kept acknowledgements by seq: the first one that proves the
    /// hand-over, or else the last one read.
    acks: BTreeMap<u64, KeptAck>,
    /// Seqs whose kept acknowledgement proves the hand-over (checked once, when kept or read).
    acked: BTreeSet<u64>,
    /// Acknowledgements read from `acks.log` that prove nothing, for the log and `status`.
    bad_acks: usize,
    keep_clock: KeepClock,
}

/// [`SyncStore`] over an agent data folder.
#[derive(Debug)]
pub struct FsSyncStore {
    fs: Arc<dyn SpoolFs>,
    dir: PathBuf,
    inner: Mutex<Inner>,
    head: watch::Sender<Option<u64>>,
    /// The server's receipt key from enrolment (`receipt.pub`), `None` before enrolment.
    receipt_key: Option<VerifyingKey>,
}

fn read_or_empty(fs: &dyn SpoolFs, path: &Path) -> io::Result<Vec<u8>> {
    match fs.read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Append `bytes` to `path` and fsync; the first append also fsyncs the
/// folder, or a power loss could take the new file's name with it.
/// Cut a record torn by a power cut off the end of the log at `path` (as
/// the spool does for `chain.log`): the next append must not land behind
/// it, or the reader takes the torn record's length over the new one's
/// bytes and the new record is lost or read as a wrong one. A torn record
/// was never durable, so never counted as kept.
///
/// # Errors
/// I/O errors.
fn cut_torn_tail(fs: &dyn SpoolFs, path: &Path) -> io::Result<()> {
    let bytes = read_or_empty(fs, path)?;
    let (log, damage) = chainlog::split_lossy(&bytes);
    if log.torn_tail > 0 && damage.is_none() {
        let mut f = fs.open_append(path)?;
        f.set_len(log.complete_len as u64)?;
        f.sync()?;
    }
    Ok(())
}

fn append_durable(fs: &dyn SpoolFs, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let new = !fs.exists(path);
    let mut f = fs.open_append(path)?;
    f.write_all(bytes)?;
    f.sync()?;
    if new {
        fs.sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// The chain head the receipts in `dir` prove: the highest seq with a receipt
/// and its entry hash. Receipts are verified by the sync client before they
/// are kept.
///
/// # Errors
/// I/O errors reading `receipts.log`.
pub fn head_from_receipts(dir: &Path) -> io::Result<Option<(u64, Hash32)>> {
    Ok(read_receipts(&StdFs, dir)?
        .into_iter()
        .next_back()
        .map(|(seq, r)| (seq, r.entry_hash)))
}

fn read_receipts(fs: &dyn SpoolFs, dir: &Path) -> io::Result<BTreeMap<u64, Receipt>> {
    let bytes = read_or_empty(fs, &dir.join("receipts.log"))?;
    let (log, _damage) = chainlog::split_lossy(&bytes);
    Ok(log
        .records
        .iter()
        .filter_map(|r| Receipt::from_bytes(r).ok())
        .map(|r| (r.seq, r))
        .collect())
}

/// The segment `seq` of the chain read so far, for checking an acknowledgement.
fn segment_of(inner: &Inner, seq: u64) -> Option<Segment> {
    let &(len, sha256) = inner.segments.get(&seq)?;
    Some(Segment {
        device: inner.device?,
        seq,
        media: (sha256, len),
    })
}

/// The server's receipt key from enrolment, `None` before enrolment or if
/// `receipt.pub` does not read as a key (then nothing is ever released).
pub fn read_receipt_key(fs: &dyn SpoolFs, dir: &Path) -> Option<VerifyingKey> {
    let text = String::from_utf8(fs.read(&dir.join("receipt.pub")).ok()?).ok()?;
    let bytes: [u8; 32] = hex::decode(text.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

impl FsSyncStore {
    /// Open the store over `dir`, reading what is there.
    ///
    /// # Errors
    /// I/O errors.
    pub fn open(dir: &Path) -> io::Result<Self> {
        FsSyncStore::open_with(Arc::new(StdFs), dir)
    }

    /// [`FsSyncStore::open`] over the file operations `fs` (the fault
    /// suite's in-memory twin, [`crate::spoolfs::MemFs`]).
    ///
    /// # Errors
    /// As [`FsSyncStore::open`].
    pub fn open_with(fs: Arc<dyn SpoolFs>, dir: &Path) -> io::Result<Self> {
        if acks::retire_v1_log(fs.as_ref(), dir)? {
            tracing::warn!("acks.log of protocol v1 (unsigned) moved to acks.v1.log: those segments are asked for again and released only on a signed acknowledgement");
        }
        for log in ["acks.log", "receipts.log"] {
            cut_torn_tail(fs.as_ref(), &dir.join(log))?;
        }
        let (kept, unreadable) = acks::read_log(fs.as_ref(), dir)?;
        let newest = kept.iter().map(|k| k.kept_run_us).max().unwrap_or(0);
        let inner = Inner {
            offsets: Vec::new(),
            scanned: 0,
            segments: BTreeMap::new(),
            receipts: read_receipts(fs.as_ref(), dir)?,
            device: None,
            acks: BTreeMap::new(),
            acked: BTreeSet::new(),
            bad_acks: unreadable,
            keep_clock: KeepClock::open(fs.as_ref(), dir, newest),
        };
        let (head, _) = watch::channel(None);
        let store = FsSyncStore {
            receipt_key: read_receipt_key(fs.as_ref(), dir),
            fs,
            dir: dir.to_path_buf(),
            inner: Mutex::new(inner),
            head,
        };
        store.refresh()?;
        let mut inner = store.inner.lock().expect("sync store lock");
        for k in kept {
            store.keep(&mut inner, k);
        }
        if inner.bad_acks > 0 {
            tracing::error!(count = inner.bad_acks, "acks.log holds acknowledgements that prove nothing: they release nothing (`fieldseal-agent verify` names them)");
        }
        drop(inner);
        Ok(store)
    }

    /// Note a kept acknowledgement: it counts as an acknowledgement only if
    /// it proves the hand-over of a segment of the chain.
    fn keep(&self, inner: &mut Inner, k: KeptAck) {
        let seq = k.ack.seq;
        if inner.acked.contains(&seq) {
            return;
        }
        let seg = segment_of(inner, seq);
        match acks::proves(&k, seg, self.receipt_key.as_ref()) {
            Ok(()) => {
                inner.acked.insert(seq);
            }
            Err(why) => {
                tracing::error!(seq, %why, "a kept acknowledgement proves nothing");
                inner.bad_acks += 1;
            }
        }
        inner.acks.insert(seq, k);
    }

    /// Read entries appended to chain.log since the last look and tell the
    /// sync client the new head.
    ///
    /// # Errors
    /// I/O errors reading the chain log.
    pub fn refresh(&self) -> io::Result<()> {
        let mut inner = self.inner.lock().expect("sync store lock");
        let log = crate::chainlog::read_from(
            self.fs.as_ref(),
            &crate::chainlog::path(&self.dir),
            inner.scanned,
        )?;
        for rec in log.records() {
            if let Ok(e) = SignedEntry::from_bytes(rec.bytes) {
                if e.seq() == inner.offsets.len() as u64 {
                    inner.device.get_or_insert(e.entry.device);
                    inner.offsets.push(rec.offset);
                    if let Some(s) = e.entry.segment() {
                        inner
                            .segments
                            .insert(e.seq(), (s.media_len, s.media_sha256));
                    }
                }
            }
        }
        let pos = log.end();
        inner.scanned = pos;
        let head = (inner.offsets.len() as u64).checked_sub(1);
        drop(inner);
        self.head.send_replace(head);
        Ok(())
    }

    /// Segments whose media the spool may release now ([`acks::decide`]):
    /// a signed acknowledgement that verifies under the receipt key names
    /// exactly the segment, and `keep_us` of keep-clock time passed since it
    /// was kept. Also checkpoints the keep clock (at most once a minute).
    ///
    /// # Errors
    /// I/O errors writing the keep clock's checkpoint.
    pub fn releasable(&self, keep_us: u64, released: &BTreeSet<u64>) -> io::Result<Vec<u64>> {
        let mut inner = self.inner.lock().expect("sync store lock");
        inner.keep_clock.checkpoint(self.fs.as_ref(), &self.dir)?;
        let now = inner.keep_clock.now_us();
        let mut due = Vec::new();
        for (&seq, k) in inner.acks.iter().filter(|(s, _)| !released.contains(s)) {
            let seg = segment_of(&inner, seq);
            match acks::decide(Some(k), seg, self.receipt_key.as_ref(), now, keep_us) {
                Ok(()) => due.push(seq),
                Err(acks::Keep::KeepPeriod { .. }) => {}
                Err(why) => tracing::debug!(seq, %why, "media kept"),
            }
        }
        Ok(due)
    }

    /// Acknowledgements kept that prove the hand-over of a segment.
    pub fn acks_kept(&self) -> usize {
        self.inner.lock().expect("sync store lock").acked.len()
    }

    /// Acknowledgements kept that prove nothing (see [`acks::proves`]).
    pub fn bad_acks(&self) -> usize {
        self.inner.lock().expect("sync store lock").bad_acks
    }

    /// Bytes of the segments whose media is not acknowledged (what is left
    /// to upload, at most), for progress messages.
    pub fn unacked_bytes(&self) -> u64 {
        let inner = self.inner.lock().expect("sync store lock");
        inner
            .segments
            .iter()
            .filter(|(s, _)| !inner.acked.contains(s))
            .map(|(_, (len, _))| *len)
            .sum()
    }

    /// Entries without a receipt, and segments whose media is not acknowledged.
    pub fn backlog(&self) -> (u64, u64) {
        let inner = self.inner.lock().expect("sync store lock");
        let no_receipt = (0..inner.offsets.len() as u64)
            .filter(|s| !inner.receipts.contains_key(s))
            .count() as u64;
        let not_acked = inner
            .segments
            .keys()
            .filter(|s| !inner.acked.contains(s))
            .count() as u64;
        (no_receipt, not_acked)
    }
}

impl SyncStore for FsSyncStore {
    fn head(&self) -> Option<u64> {
        *self.head.borrow()
    }

    fn entry(&self, seq: u64) -> io::Result<Option<Vec<u8>>> {
        let offset = {
            let inner = self.inner.lock().expect("sync store lock");
            match usize::try_from(seq).ok().and_then(|i| inner.offsets.get(i)) {
                Some(&o) => o,
                None => return Ok(None),
            }
        };
        crate::chainlog::read_record(self.fs.as_ref(), &crate::chainlog::path(&self.dir), offset)
            .map(Some)
    }

    fn media(&self, seq: u64) -> io::Result<Option<MediaRef>> {
        let inner = self.inner.lock().expect("sync store lock");
        let Some(&(len, sha256)) = inner.segments.get(&seq) else {
            return Ok(None);
        };
        let path = self.dir.join("media").join(media_name(seq));
        Ok(self
            .fs
            .exists(&path)
            .then_some(MediaRef { path, len, sha256 }))
    }

    fn save_receipt(&self, r: &Receipt) -> io::Result<()> {
        let mut rec = Vec::new();
        chainlog::put_record(&mut rec, &r.to_bytes());
        let mut inner = self.inner.lock().expect("sync store lock");
        if inner.receipts.contains_key(&r.seq) {
            return Ok(());
        }
        append_durable(self.fs.as_ref(), &self.dir.join("receipts.log"), &rec)?;
        inner.receipts.insert(r.seq, r.clone());
        Ok(())
    }

    fn media_acked(&self, ack: &MediaAck) -> io::Result<()> {
        let mut inner = self.inner.lock().expect("sync store lock");
        if inner.acked.contains(&ack.seq) {
            return Ok(());
        }
        let k = KeptAck {
            ack: ack.clone(),
            kept_run_us: inner.keep_clock.now_us(),
            kept_wall_us: crate::clock::Clock::wall_us(&crate::clock::SystemClock::new()),
        };
        // Only proof is kept: the driver checked it, this checks it again
        // against the chain as the store reads it.
        acks::proves(&k, segment_of(&inner, ack.seq), self.receipt_key.as_ref()).map_err(
            |why| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("acknowledgement of segment {}: {why}", ack.seq),
                )
            },
        )?;
        let mut rec = Vec::new();
        chainlog::put_record(&mut rec, &k.to_record());
        append_durable(self.fs.as_ref(), &self.dir.join("acks.log"), &rec)?;
        self.keep(&mut inner, k);
        Ok(())
    }

    fn is_acked(&self, seq: u64) -> bool {
        self.inner
            .lock()
            .expect("sync store lock")
            .acked
            .contains(&seq)
    }

    fn has_receipt(&self, seq: u64) -> bool {
        self.inner
            .lock()
            .expect("sync store lock")
            .receipts
            .contains_key(&seq)
    }

    fn subscribe(&self) -> watch::Receiver<Option<u64>> {
        self.head.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldseal_proto::codec::Encode;
    use fieldseal_proto::sample;
    use std::fs;

    /// Lay a sample chain out as an agent data folder.
    fn folder(chain: &sample::SampleChain) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let mut log = Vec::new();
        for e in &chain.entries {
            chainlog::put_record(&mut log, &e.to_bytes());
        }
        fs::write(t.path().join("chain.log"), log).unwrap();
        fs::create_dir_all(t.path().join("media")).unwrap();
        for (seq, b) in &chain.media {
            fs::write(t.path().join("media").join(media_name(*seq)), b).unwrap();
        }
        // Enrolled with the server key of seed [9; 32] (the conformance tests' key).
        let server = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
        fs::write(
            t.path().join("receipt.pub"),
            format!("{}\n", hex::encode(server.as_bytes())),
        )
        .unwrap();
        t
    }

    #[test]
    fn the_folder_store_passes_the_sync_store_conformance_tests() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let chain = sample::build(&key, &[3, 2], 100);
        let t = folder(&chain);
        let store = FsSyncStore::open(t.path()).unwrap();
        crate::sync::store::conformance(&store, &chain);
        // What it recorded survives a reopen.
        let again = FsSyncStore::open(t.path()).unwrap();
        assert!(again.has_receipt(0));
        assert!(again.is_acked(*chain.media.keys().next().unwrap()));
        assert_eq!(head_from_receipts(t.path()).unwrap().map(|h| h.0), Some(0));
    }

    #[test]
    fn refresh_follows_appends_and_the_watch_sees_them() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let chain = sample::build(&key, &[2], 100);
        let t = folder(&chain);
        let store = FsSyncStore::open(t.path()).unwrap();
        let rx = store.subscribe();
        let more = sample::build(&key, &[2, 1], 100);
        let mut log = Vec::new();
        for e in &more.entries[chain.entries.len()..] {
            chainlog::put_record(&mut log, &e.to_bytes());
        }
        append_durable(&StdFs, &t.path().join("chain.log"), &log).unwrap();
        store.refresh().unwrap();
        assert_eq!(store.head(), Some(more.entries.len() as u64 - 1));
        assert_eq!(*rx.borrow(), store.head());
        assert_eq!(
            store.entry(store.head().unwrap()).unwrap(),
            Some(more.entries.last().unwrap().to_bytes())
        );
        let (no_receipt, not_acked) = store.backlog();
        assert_eq!(no_receipt, more.entries.len() as u64);
        assert_eq!(not_acked, 3);
    }

    #[test]
    fn over_the_power_loss_twin_entries_are_read_and_receipts_survive() {
        use crate::spoolfs::MemFs;
        use fieldseal_proto::entry::Event;

        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let clock = crate::clock::SystemClock::new();
        let fs = MemFs::new(7);
        let dir = Path::new("/spool");
        let (mut spool, _) =
            crate::spool::Spool::open_with(Arc::new(fs.clone()), dir, &key, &clock).unwrap();
        let mut sent = Vec::new();
        for _ in 0..3 {
            let e = spool
                .append_event(&key, &clock, Event::IdentityShown { officer: None })
                .unwrap();
            sent.push(e);
        }
        let store = FsSyncStore::open_with(Arc::new(fs.clone()), dir).unwrap();
        assert_eq!(store.head(), Some(2));
        for e in &sent {
            assert_eq!(store.entry(e.seq()).unwrap(), Some(e.to_bytes()));
        }
        let server = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let r = Receipt::sign(sent[0].entry.device, 0, sent[0].hash(), 1, 0, &server);
        store.save_receipt(&r).unwrap();
        // A receipt saved is kept: the new receipts.log's name survives the
        // power loss too (it would not without the folder's fsync).
        fs.power_loss(false);
        let again = FsSyncStore::open_with(Arc::new(fs.clone()), dir).unwrap();
        assert!(again.has_receipt(0));
        assert_eq!(again.head(), Some(2));
    }
}

/// Release of acknowledged media (issue 13 item 4): only on a signed
/// acknowledgement that names the segment, and only after the keep period
/// measured on the keep clock.
#[cfg(test)]
mod release_tests {
    use super::*;
    use crate::acks::KeptAck;
    use ed25519_dalek::SigningKey;
    use fieldseal_proto::sample;
    use std::fs;

    const HOUR: u64 = 3_600_000_000;
    const YEAR_US: i64 = 365 * 86_400 * 1_000_000;

    fn server() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    /// An enrolled folder with a chain of one recording of two segments; the
    /// first segment's seq, device and media.
    fn setup() -> (tempfile::TempDir, u64, DeviceId, (Hash32, u64)) {
        let key = SigningKey::from_bytes(&[5; 32]);
        let chain = sample::build(&key, &[2], 100);
        let t = tests_folder(&chain);
        let seq = *chain.media.keys().next().unwrap();
        let s = chain.entries[usize::try_from(seq).unwrap()]
            .entry
            .segment()
            .unwrap()
            .clone();
        (
            t,
            seq,
            chain.entries[0].entry.device,
            (s.media_sha256, s.media_len),
        )
    }

    fn tests_folder(chain: &sample::SampleChain) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let mut log = Vec::new();
        for e in &chain.entries {
            chainlog::put_record(&mut log, &e.to_bytes());
        }
        fs::write(t.path().join("chain.log"), log).unwrap();
        fs::create_dir_all(t.path().join("media")).unwrap();
        for (seq, b) in &chain.media {
            fs::write(t.path().join("media").join(media_name(*seq)), b).unwrap();
        }
        let pk = hex::encode(server().verifying_key().as_bytes());
        fs::write(t.path().join("receipt.pub"), format!("{pk}\n")).unwrap();
        t
    }

    /// Append a kept acknowledgement to acks.log as an earlier process would have.
    fn keep_on_disk(dir: &Path, ack: MediaAck, kept_run_us: u64, kept_wall_us: i64) {
        let k = KeptAck {
            ack,
            kept_run_us,
            kept_wall_us,
        };
        let mut rec = Vec::new();
        chainlog::put_record(&mut rec, &k.to_record());
        append_durable(&StdFs, &dir.join("acks.log"), &rec).unwrap();
    }

    fn none() -> BTreeSet<u64> {
        BTreeSet::new()
    }

    #[test]
    fn a_valid_signed_ack_releases_after_the_keep_period_only() {
        let (t, seq, dev, media) = setup();
        let store = FsSyncStore::open(t.path()).unwrap();
        store
            .media_acked(&MediaAck::sign(dev, seq, media, 1, &server()))
            .unwrap();
        assert!(store.is_acked(seq));
        assert_eq!(store.releasable(HOUR, &none()).unwrap(), Vec::<u64>::new());
        assert_eq!(store.releasable(0, &none()).unwrap(), vec![seq]);
        // Kept durably: a reopened store still holds the proof.
        let again = FsSyncStore::open(t.path()).unwrap();
        assert!(again.is_acked(seq));
        assert_eq!(
            again.releasable(0, &BTreeSet::from([seq])).unwrap(),
            Vec::<u64>::new()
        );
    }

    /// A power cut that tore the last acknowledgement kept (found by the
    /// power-cut filesystem of tests/tests/powercut.rs): the next open cuts
    /// the torn record off, so the next one kept is read back as it was,
    /// not run into the torn one's length and reported as proving nothing.
    #[test]
    fn a_torn_ack_record_is_cut_off_before_the_next_is_kept() {
        let (t, seq, dev, media) = setup();
        let ack = MediaAck::sign(dev, seq, media, 1, &server());
        let mut rec = Vec::new();
        let k = KeptAck {
            ack: ack.clone(),
            kept_run_us: 0,
            kept_wall_us: 0,
        };
        chainlog::put_record(&mut rec, &k.to_record());
        // The power went while this record was being appended: 40 bytes of it.
        append_durable(&StdFs, &t.path().join("acks.log"), &rec[..40]).unwrap();
        let store = FsSyncStore::open(t.path()).unwrap();
        assert_eq!(
            fs::metadata(t.path().join("acks.log")).unwrap().len(),
            0,
            "the torn record is cut off"
        );
        store.media_acked(&ack).unwrap();
        drop(store);
        let store = FsSyncStore::open(t.path()).unwrap();
        assert!(store.is_acked(seq));
        assert_eq!(store.bad_acks(), 0);
    }

    #[test]
    fn forged_and_mismatched_acks_are_refused_and_release_nothing() {
        let (t, seq, dev, media) = setup();
        let store = FsSyncStore::open(t.path()).unwrap();
        let forger = SigningKey::from_bytes(&[66; 32]);
        let mut other_hash = media;
        other_hash.0[0] ^= 1;
        let bad = [
            MediaAck::sign(dev, seq, media, 1, &forger),
            MediaAck::sign(dev, seq, other_hash, 1, &server()),
            MediaAck::sign(dev, seq, (media.0, media.1 + 1), 1, &server()),
            MediaAck::sign(dev, seq + 1, media, 1, &server()),
            MediaAck::sign(DeviceId([0; 8]), seq, media, 1, &server()),
        ];
        for a in &bad {
            let e = store.media_acked(a).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{a:?}");
        }
        assert!(!store.is_acked(seq));
        assert_eq!(store.releasable(0, &none()).unwrap(), Vec::<u64>::new());
        assert!(
            !t.path().join("acks.log").exists(),
            "nothing that proves nothing is kept"
        );
        // Written into acks.log behind the agent's back, they release nothing
        // either, and `verify` names each one.
        for a in bad {
            keep_on_disk(t.path(), a, 0, 0);
        }
        let store = FsSyncStore::open(t.path()).unwrap();
        assert!(!store.is_acked(seq));
        assert_eq!(store.bad_acks(), 5);
        assert_eq!(store.releasable(0, &none()).unwrap(), Vec::<u64>::new());
        let key = SigningKey::from_bytes(&[5; 32]).verifying_key();
        let r = crate::spool::verify_dir(t.path(), &key, None).unwrap();
        let bad_acks = r
            .findings
            .iter()
            .filter(|f| f.kind == fieldseal_proto::chain::FindingKind::BadAck)
            .count();
        assert_eq!(bad_acks, 5, "{r}");
    }

    #[test]
    fn an_unsigned_v1_ack_releases_nothing() {
        let (t, seq, _, _) = setup();
        fs::write(
            t.path().join("acks.log"),
            format!("{seq} 1751328000000000\n"),
        )
        .unwrap();
        let store = FsSyncStore::open(t.path()).unwrap();
        assert!(
            !store.is_acked(seq),
            "asked for again, so that the server signs it"
        );
        assert_eq!(store.releasable(0, &none()).unwrap(), Vec::<u64>::new());
        assert!(t.path().join("acks.v1.log").exists());
    }

    #[test]
    fn a_wall_clock_a_year_ahead_does_not_release_early() {
        let (t, seq, dev, media) = setup();
        // Kept a year ago by the wall clock (the clock was set forward since,
        // or the ack's wall time is a year old): the keep clock has not run
        // a day since, so the media stays.
        let now = crate::clock::Clock::wall_us(&crate::clock::SystemClock::new());
        keep_on_disk(
            t.path(),
            MediaAck::sign(dev, seq, media, now - YEAR_US, &server()),
            0,
            now - YEAR_US,
        );
        let store = FsSyncStore::open(t.path()).unwrap();
        assert!(store.is_acked(seq));
        assert_eq!(
            store.releasable(24 * HOUR, &none()).unwrap(),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn after_a_restart_the_keep_period_continues_from_what_was_persisted() {
        let (t, seq, dev, media) = setup();
        keep_on_disk(
            t.path(),
            MediaAck::sign(dev, seq, media, 1, &server()),
            2 * HOUR,
            0,
        );
        // The agent ran 23 hours after keeping it (persisted checkpoint) ...
        fs::write(t.path().join("keepclock"), format!("{}\n", 25 * HOUR)).unwrap();
        let store = FsSyncStore::open(t.path()).unwrap();
        assert_eq!(
            store.releasable(24 * HOUR, &none()).unwrap(),
            Vec::<u64>::new()
        );
        assert_eq!(store.releasable(23 * HOUR, &none()).unwrap(), vec![seq]);
        // ... the releasable() above checkpointed the clock: a new boot goes
        // on from there, not from zero, and not from the wall clock.
        let saved: u64 = fs::read_to_string(t.path().join("keepclock"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!((25 * HOUR..26 * HOUR).contains(&saved), "{saved}");
        // One more hour of run time in a later boot: the day is complete.
        fs::write(t.path().join("keepclock"), format!("{}\n", 26 * HOUR)).unwrap();
        let store = FsSyncStore::open(t.path()).unwrap();
        assert_eq!(store.releasable(24 * HOUR, &none()).unwrap(), vec![seq]);
    }

    #[test]
    fn verify_accepts_released_media_only_with_a_proof_of_hand_over() {
        let (t, seq, dev, media) = setup();
        let key = SigningKey::from_bytes(&[5; 32]).verifying_key();
        fs::remove_file(t.path().join("media").join(media_name(seq))).unwrap();
        fs::write(t.path().join("released.log"), format!("{seq}\n")).unwrap();
        let r = crate::spool::verify_dir(t.path(), &key, None).unwrap();
        assert_eq!(
            r.findings
                .iter()
                .map(|f| (f.seq, f.kind))
                .collect::<Vec<_>>(),
            vec![(Some(seq), fieldseal_proto::chain::FindingKind::MissingMedia)],
            "released without a signed acknowledgement: {r}"
        );
        keep_on_disk(
            t.path(),
            MediaAck::sign(dev, seq, media, 1, &server()),
            0,
            0,
        );
        let r = crate::spool::verify_dir(t.path(), &key, None).unwrap();
        assert!(r.ok, "{r}");
    }
}
