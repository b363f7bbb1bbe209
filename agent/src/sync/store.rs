//! What the sync client needs from the agent's store, and an in-memory twin.
//!
//! The real spool (another module) implements [`SyncStore`]; [`MemStore`]
//! is for tests. Every method that records progress is durable before it
//! returns: a receipt saved or an acknowledgement recorded survives a crash.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fieldseal_proto::ack::MediaAck;
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::entry::SignedEntry;
use fieldseal_proto::identity::Hash32;
use fieldseal_proto::receipt::Receipt;
use tokio::sync::watch;

/// Where a segment's media file is, and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRef {
    /// The file.
    pub path: PathBuf,
    /// Its length (the signed `media_len`).
    pub len: u64,
    /// Its SHA-256 (the signed `media_sha256`).
    pub sha256: Hash32,
}

/// The agent's store as the sync client sees it.
pub trait SyncStore: Send + Sync + 'static {
    /// The highest durable seq, `None` for an empty chain.
    fn head(&self) -> Option<u64>;
    /// The signed bytes of entry `seq`.
    ///
    /// # Errors
    /// I/O errors of the store.
    fn entry(&self, seq: u64) -> io::Result<Option<Vec<u8>>>;
    /// The media file of segment entry `seq`, if the store still holds it.
    ///
    /// # Errors
    /// I/O errors of the store.
    fn media(&self, seq: u64) -> io::Result<Option<MediaRef>>;
    /// Keep a verified receipt; durable before returning.
    ///
    /// # Errors
    /// I/O errors of the store.
    fn save_receipt(&self, r: &Receipt) -> io::Result<()>;
    /// The server acknowledged the media of `ack.seq` (verified and durable
    /// there) with `ack`, which the caller checked against the receipt key
    /// and the segment's signed entry; kept durably before returning, as
    /// proof of hand-over. The store may delete the file after its keep
    /// period, and only on such a proof.
    ///
    /// # Errors
    /// I/O errors of the store; a store that checks acknowledgements itself
    /// refuses one that proves nothing (`InvalidData`).
    fn media_acked(&self, ack: &MediaAck) -> io::Result<()>;
    /// Was the media of `seq` acknowledged?
    fn is_acked(&self, seq: u64) -> bool;
    /// Does the store hold a receipt for `seq`?
    fn has_receipt(&self, seq: u64) -> bool;
    /// A watch of [`SyncStore::head`]: changes when a new entry is durable.
    fn subscribe(&self) -> watch::Receiver<Option<u64>>;
}

#[derive(Debug, Default)]
struct Inner {
    entries: Vec<Vec<u8>>,
    media: BTreeMap<u64, MediaRef>,
    receipts: BTreeMap<u64, Receipt>,
    acked: BTreeSet<u64>,
}

/// An in-memory [`SyncStore`] whose media live as files in a folder.
#[derive(Debug)]
pub struct MemStore {
    dir: PathBuf,
    inner: Mutex<Inner>,
    head: watch::Sender<Option<u64>>,
}

impl MemStore {
    /// An empty store keeping media files in `dir`.
    pub fn new(dir: &Path) -> Self {
        MemStore {
            dir: dir.to_path_buf(),
            inner: Mutex::default(),
            head: watch::channel(None).0,
        }
    }

    /// Append a signed entry (and, for a segment, its media bytes), as the
    /// chain writer would once both are durable.
    ///
    /// # Errors
    /// I/O errors writing the media file.
    ///
    /// # Panics
    /// If the entry's seq is not the next one.
    pub fn push(&self, entry: &SignedEntry, media: Option<&[u8]>) -> io::Result<()> {
        let mut g = self.inner.lock().expect("lock");
        assert_eq!(entry.seq(), g.entries.len() as u64, "entries in seq order");
        if let (Some(seg), Some(bytes)) = (entry.entry.segment(), media) {
            let path = self.dir.join(format!("{:012}.ts", entry.seq()));
            std::fs::write(&path, bytes)?;
            g.media.insert(
                entry.seq(),
                MediaRef {
                    path,
                    len: seg.media_len,
                    sha256: seg.media_sha256,
                },
            );
        }
        g.entries.push(entry.to_bytes());
        let head = g.entries.len() as u64 - 1;
        drop(g);
        self.head.send_replace(Some(head));
        Ok(())
    }

    /// Receipts held, by seq.
    pub fn receipts(&self) -> BTreeMap<u64, Receipt> {
        self.inner.lock().expect("lock").receipts.clone()
    }

    /// Acknowledged media seqs.
    pub fn acked(&self) -> BTreeSet<u64> {
        self.inner.lock().expect("lock").acked.clone()
    }
}

impl SyncStore for MemStore {
    fn head(&self) -> Option<u64> {
        let g = self.inner.lock().expect("lock");
        (g.entries.len() as u64).checked_sub(1)
    }
    fn entry(&self, seq: u64) -> io::Result<Option<Vec<u8>>> {
        let g = self.inner.lock().expect("lock");
        Ok(usize::try_from(seq)
            .ok()
            .and_then(|i| g.entries.get(i))
            .cloned())
    }
    fn media(&self, seq: u64) -> io::Result<Option<MediaRef>> {
        Ok(self.inner.lock().expect("lock").media.get(&seq).cloned())
    }
    fn save_receipt(&self, r: &Receipt) -> io::Result<()> {
        // Round-trip through the encoding, as a durable store would.
        let r = Receipt::from_bytes(&r.to_bytes()).map_err(io::Error::other)?;
        self.inner.lock().expect("lock").receipts.insert(r.seq, r);
        Ok(())
    }
    fn media_acked(&self, ack: &MediaAck) -> io::Result<()> {
        self.inner.lock().expect("lock").acked.insert(ack.seq);
        Ok(())
    }
    fn is_acked(&self, seq: u64) -> bool {
        self.inner.lock().expect("lock").acked.contains(&seq)
    }
    fn has_receipt(&self, seq: u64) -> bool {
        self.inner.lock().expect("lock").receipts.contains_key(&seq)
    }
    fn subscribe(&self) -> watch::Receiver<Option<u64>> {
        self.head.subscribe()
    }
}

/// Conformance checks every [`SyncStore`] must pass, shared by [`MemStore`]
/// and the spool (STYLE.md item 5). `store` must hold exactly `chain`, with
/// the media of every segment, and no receipt or acknowledgement yet; the
/// server's receipt key is the one of seed `[9; 32]`.
///
/// # Panics
/// When the store does not behave.
pub fn conformance<S: SyncStore>(store: &S, chain: &fieldseal_proto::sample::SampleChain) {
    let last = chain.entries.len() as u64 - 1;
    assert_eq!(store.head(), Some(last));
    assert_eq!(*store.subscribe().borrow(), Some(last));
    for e in &chain.entries {
        let seq = e.seq();
        assert_eq!(store.entry(seq).unwrap(), Some(e.to_bytes()), "entry {seq}");
        match (e.entry.segment(), store.media(seq).unwrap()) {
            (Some(seg), Some(m)) => {
                assert_eq!((m.len, m.sha256), (seg.media_len, seg.media_sha256));
                assert_eq!(std::fs::read(&m.path).unwrap(), chain.media[&seq]);
            }
            (None, None) => {}
            (s, m) => panic!("seq {seq}: segment {} but media {m:?}", s.is_some()),
        }
        assert!(!store.has_receipt(seq) && !store.is_acked(seq));
    }
    assert_eq!(store.entry(last + 1).unwrap(), None);
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let e = &chain.entries[0];
    let r = Receipt::sign(e.entry.device, 0, e.hash(), 1, 0, &key);
    store.save_receipt(&r).unwrap();
    assert!(store.has_receipt(0));
    let seg = *chain.media.keys().next().expect("the chain has a segment");
    let m = store.media(seg).unwrap().expect("held");
    let ack = MediaAck::sign(e.entry.device, seg, (m.sha256, m.len), 2, &key);
    store.media_acked(&ack).unwrap();
    assert!(store.is_acked(seg));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let chain = fieldseal_proto::sample::build(&key, &[2], 64);
        let store = MemStore::new(dir.path());
        for e in &chain.entries {
            store
                .push(e, chain.media.get(&e.seq()).map(Vec::as_slice))
                .unwrap();
        }
        conformance(&store, &chain);
    }
}
