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
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fieldseal_proto::chainlog;
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::entry::SignedEntry;
use fieldseal_proto::identity::Hash32;
use fieldseal_proto::receipt::Receipt;
use tokio::sync::watch;

use crate::spool::media_name;
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
    dir: PathBuf,
    inner: Mutex<Inner>,
    head: watch::Sender<Option<u64>>,
}

fn read_or_empty(path: &Path) -> io::Result<Vec<u8>> {
    match fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn append_durable(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(bytes)?;
    f.sync_data()
}

/// The chain head the receipts in `dir` prove: the highest seq with a receipt
/// and its entry hash. Receipts are verified by the sync client before they
/// are kept.
///
/// # Errors
/// I/O errors reading `receipts.log`.
pub fn head_from_receipts(dir: &Path) -> io::Result<Option<(u64, Hash32)>> {
    Ok(read_receipts(dir)?
        .into_iter()
        .next_back()
        .map(|(seq, r)| (seq, r.entry_hash)))
}

fn read_receipts(dir: &Path) -> io::Result<BTreeMap<u64, Receipt>> {
    let bytes = read_or_empty(&dir.join("receipts.log"))?;
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
        let mut inner = Inner {
            receipts: read_receipts(dir)?,
            ..Inner::default()
        };
        let acks = String::from_utf8_lossy(&read_or_empty(&dir.join("acks.log"))?).into_owned();
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
        let mut f = match File::open(self.dir.join("chain.log")) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        f.seek(SeekFrom::Start(inner.scanned))?;
        let mut tail = Vec::new();
        f.read_to_end(&mut tail)?;
        let (log, _) = chainlog::split_lossy(&tail);
        let mut pos = inner.scanned;
        for rec in log.records {
            if let Ok(e) = SignedEntry::from_bytes(rec) {
                if e.seq() == inner.offsets.len() as u64 {
                    inner.offsets.push(pos);
                    if let Some(s) = e.entry.segment() {
                        inner
                            .segments
                            .insert(e.seq(), (s.media_len, s.media_sha256));
                    }
                }
            }
            pos += rec.len() as u64 + 2;
        }
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
        let mut f = File::open(self.dir.join("chain.log"))?;
        f.seek(SeekFrom::Start(offset))?;
        let mut len = [0u8; 2];
        f.read_exact(&mut len)?;
        let mut rec = vec![0u8; usize::from(u16::from_be_bytes(len))];
        f.read_exact(&mut rec)?;
        Ok(Some(rec))
    }

    fn media(&self, seq: u64) -> io::Result<Option<MediaRef>> {
        let inner = self.inner.lock().expect("sync store lock");
        let Some(&(len, sha256)) = inner.segments.get(&seq) else {
            return Ok(None);
        };
        let path = self.dir.join("media").join(media_name(seq));
        Ok(path.exists().then_some(MediaRef { path, len, sha256 }))
    }

    fn save_receipt(&self, r: &Receipt) -> io::Result<()> {
        let mut rec = Vec::new();
        chainlog::put_record(&mut rec, &r.to_bytes());
        let mut inner = self.inner.lock().expect("sync store lock");
        if inner.receipts.contains_key(&r.seq) {
            return Ok(());
        }
        append_durable(&self.dir.join("receipts.log"), &rec)?;
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
        append_durable(&t.path().join("chain.log"), &log).unwrap();
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
}
