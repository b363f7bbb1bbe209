//! A fault-injecting [`BlobStore`]: wraps any store and, by plan, fails a
//! `put` part-way (ENOSPC, EIO), fails reads (EIO), or hands out rotted
//! bytes (one flipped bit) — what a dying disk or a flaky object store does.
//! The server's verify and scrub must report each, never take it for
//! success (the `BlobStore` contract: "an I/O error is reported, never taken
//! for success").

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};

use fieldseal_proto::identity::Hash32;
use fieldseal_server::blobstore::BlobStore;

/// What goes wrong, and for which blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobFault {
    /// Reads of this blob fail with EIO.
    ReadError,
    /// Reads of this blob return its bytes with bit `n` (mod length) flipped.
    Rot(u64),
    /// A `put` or `adopt` of this blob fails with ENOSPC after reading the
    /// source (nothing may be stored).
    NoSpace,
}

/// A [`BlobStore`] that injects [`BlobFault`]s into `inner`.
#[derive(Debug)]
pub struct FaultyBlobs {
    inner: Arc<dyn BlobStore>,
    plan: Mutex<BTreeMap<Hash32, BlobFault>>,
}

impl FaultyBlobs {
    /// Wrap `inner`, with no fault planned.
    pub fn new(inner: Arc<dyn BlobStore>) -> FaultyBlobs {
        FaultyBlobs {
            inner,
            plan: Mutex::default(),
        }
    }

    /// Plan `fault` for blob `hash` (replacing any other).
    pub fn plan(&self, hash: Hash32, fault: BlobFault) {
        self.plan.lock().expect("lock").insert(hash, fault);
    }

    fn fault(&self, hash: &Hash32) -> Option<BlobFault> {
        self.plan.lock().expect("lock").get(hash).copied()
    }
}

struct Rotted {
    bytes: io::Cursor<Vec<u8>>,
}

impl Read for Rotted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.bytes.read(buf)
    }
}

impl BlobStore for FaultyBlobs {
    fn stat(&self, hash: &Hash32) -> io::Result<Option<u64>> {
        self.inner.stat(hash)
    }
    fn open(&self, hash: &Hash32) -> io::Result<Box<dyn Read + Send>> {
        match self.fault(hash) {
            Some(BlobFault::ReadError) => Err(io::Error::other("injected: input/output error")),
            Some(BlobFault::Rot(bit)) => {
                let mut b = Vec::new();
                self.inner.open(hash)?.read_to_end(&mut b)?;
                if !b.is_empty() {
                    let bit = bit % (b.len() as u64 * 8);
                    let at = usize::try_from(bit / 8).unwrap_or(0);
                    b[at] ^= 1 << (bit % 8);
                }
                Ok(Box::new(Rotted {
                    bytes: io::Cursor::new(b),
                }))
            }
            _ => self.inner.open(hash),
        }
    }
    fn put(&self, hash: &Hash32, src: &mut dyn Read) -> io::Result<u64> {
        if self.fault(hash) == Some(BlobFault::NoSpace) {
            io::copy(src, &mut io::sink())?;
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected: no space left on device",
            ));
        }
        self.inner.put(hash, src)
    }
    fn adopt(&self, hash: &Hash32, path: &Path) -> io::Result<()> {
        if self.fault(hash) == Some(BlobFault::NoSpace) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected: no space left on device",
            ));
        }
        self.inner.adopt(hash, path)
    }
    fn quarantine(&self, hash: &Hash32) -> io::Result<String> {
        self.inner.quarantine(hash)
    }
    fn was_quarantined(&self, hash: &Hash32) -> io::Result<bool> {
        self.inner.was_quarantined(hash)
    }
    fn delete(&self, hash: &Hash32) -> io::Result<bool> {
        self.inner.delete(hash)
    }
    fn list(&self) -> io::Result<Vec<Hash32>> {
        self.inner.list()
    }
}
