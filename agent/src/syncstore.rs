//! The spool as the sync client sees it: [`SyncStore`] over the data folder.
//!
//! ```text
//! DIR/chain.log      read: the entries to send (the writer appends; refresh() reads the new tail)
//! DIR/receipts.log   the server's signed receipts, chain-log records of 129 bytes, fsynced
//! DIR/acks.log       "SEQ WALL_US" per line: media the server acknowledged, fsynced
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

use fieldseal_proto::chainlog;
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::entry::SignedEntry;
use fieldseal_proto::identity::Hash32;
use fieldseal_proto::receipt::Receipt;
use tokio::sync::watch;

use crate::spool::media_name;
use crate::spoolfs::{SpoolFs, StdFs};
use crate::sync::store::{MediaRef, SyncStore};

#[derive(Debug, Default)]
struct Inner {
    /// Offset of each entry's record in chain.log, by seq.
    offsets: Vec<u64>,
    /// Bytes of chain.log already scanned.
    scanned: u64,
    /// Segment seqs with their signed media length and hash.
    segments: BTreeMap<u64, (u64, Hash32)>,
    receipts: BTreeMap<u64, Receipt>,
    acked: BTreeMap<u64, i64>,
}

/// [`SyncStore`] over an agent data folder.
#[derive(Debug)]
pub struct FsSyncStore {
    fs: Arc<dyn SpoolFs>,
    dir: PathBuf,
    inner: Mutex<Inner>,
    head: watch::Sender<Option<u64>>,
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
        let mut inner = Inner {
            receipts: read_receipts(fs.as_ref(), dir)?,
            ..Inner::default()
        };
        let acks = String::from_utf8_lossy(&read_or_empty(fs.as_ref(), &dir.join("acks.log"))?)
            .into_owned();
        for line in acks.lines() {
            let mut it = line.split_whitespace();
            if let (Some(Ok(seq)), wall) = (it.next().map(str::parse::<u64>), it.next()) {
                inner
                    .acked
                    .insert(seq, wall.and_then(|w| w.parse().ok()).unwrap_or(0));
            }
        }
        let (head, _) = watch::channel(None);
        let store = FsSyncStore {
            fs,
            dir: dir.to_path_buf(),
            inner: Mutex::new(inner),
            head,
        };
        store.refresh()?;
        Ok(store)
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

    /// Segments acknowledged at least `keep_us` before `now_wall_us` whose
    /// media is still on the device: the spool may release them.
    pub fn releasable(&self, now_wall_us: i64, keep_us: i64, released: &BTreeSet<u64>) -> Vec<u64> {
        let inner = self.inner.lock().expect("sync store lock");
        inner
            .acked
            .iter()
            .filter(|(seq, at)| now_wall_us - **at >= keep_us && !released.contains(seq))
            .map(|(seq, _)| *seq)
            .collect()
    }

    /// Bytes of the segments whose media is not acknowledged (what is left
    /// to upload, at most), for progress messages.
    pub fn unacked_bytes(&self) -> u64 {
        let inner = self.inner.lock().expect("sync store lock");
        inner
            .segments
            .iter()
            .filter(|(s, _)| !inner.acked.contains_key(s))
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
            .filter(|s| !inner.acked.contains_key(s))
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

    fn media_acked(&self, seq: u64) -> io::Result<()> {
        let mut inner = self.inner.lock().expect("sync store lock");
        if inner.acked.contains_key(&seq) {
            return Ok(());
        }
        let now = crate::clock::Clock::wall_us(&crate::clock::SystemClock::new());
        append_durable(
            self.fs.as_ref(),
            &self.dir.join("acks.log"),
            format!("{seq} {now}\n").as_bytes(),
        )?;
        inner.acked.insert(seq, now);
        Ok(())
    }

    fn is_acked(&self, seq: u64) -> bool {
        self.inner
            .lock()
            .expect("sync store lock")
            .acked
            .contains_key(&seq)
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
