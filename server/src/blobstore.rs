//! Where verified segment bytes are kept: a content-addressed store whose
//! names are the SHA-256 of the bytes.
//!
//! [`BlobStore`] is what the server needs from such a store, and no more, so
//! that an S3-compatible object store can implement it later: `stat` is a
//! HEAD, `open` a GET, `put` a PUT with a SHA-256 checksum that the store
//! checks, `adopt` a (multipart) upload of a local file, `quarantine` a copy
//! under a `damaged/` prefix followed by a delete, `delete` a DELETE, `list`
//! a LIST. Nothing in
//! the trait renames in place or appends: objects are written once, whole.
//!
//! Three implementations: [`FolderStore`] (the data folder, see `datadir.rs`
//! for the layout), [`s3::S3Store`] (an S3 bucket, `[blobs] kind = "s3"`)
//! and [`MemStore`] (the in-memory twin for tests). The [`conformance`]
//! checks run against all three ([`s3::S3Store`] against a Garage cluster,
//! `tests/tests/garage.rs`). [`open_configured`] opens the one `config.toml`
//! names.
//!
//! The contract every implementation keeps:
//! - a blob is visible under its name only once all its bytes are durable,
//!   and then never changes (a crash leaves it absent or complete);
//! - `put` refuses bytes that do not hash to the name, and stores nothing;
//! - a quarantined blob is no longer held (ingest then asks the device for
//!   the bytes again) but is kept, never deleted;
//! - `delete` is for the retention job alone (`retention.rs`), after its
//!   custody leaf is in the log; once it returns, the blob is durably gone;
//! - an I/O error is reported, never taken for success.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fieldseal_proto::identity::{Hash32, Sha256Stream};

use crate::config::{BlobsConfig, BlobsKind};
use crate::datadir::DataDir;
use crate::fsutil::{create_dir_durable, sync_dir};

pub mod s3;

/// Read size when copying or hashing blobs: large sequential reads keep a
/// disk busy with few syscalls, and 1 MiB per reader is memory nobody misses.
pub const READ_CHUNK: usize = 1024 * 1024;

/// A content-addressed store of verified segment bytes. See the module doc
/// for the contract.
pub trait BlobStore: Send + Sync + fmt::Debug {
    /// The length of a held blob, `None` if it is not held.
    ///
    /// # Errors
    /// I/O errors other than "not held".
    fn stat(&self, hash: &Hash32) -> io::Result<Option<u64>>;

    /// Read a held blob.
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`] if it is not held;
    /// [`io::ErrorKind::NetworkDown`] if the store could not be asked (it
    /// says nothing about the bytes); I/O errors.
    fn open(&self, hash: &Hash32) -> io::Result<Box<dyn Read + Send>>;

    /// Store the bytes read from `src` under `hash`, durably, after checking
    /// that they hash to it. Storing bytes that are already held is a no-op
    /// (after the check). Returns their length.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidData`] if the bytes do not hash to `hash`
    /// (nothing is stored); I/O errors (nothing is stored).
    fn put(&self, hash: &Hash32, src: &mut dyn Read) -> io::Result<u64>;

    /// Take over the local file `path`, whose bytes the caller has verified
    /// to hash to `hash` (an upload that just completed), and hold it under
    /// `hash`. The file is gone afterwards. The default reads it through
    /// [`BlobStore::put`], which checks the hash again.
    ///
    /// # Errors
    /// As [`BlobStore::put`]; the file cannot be read.
    fn adopt(&self, hash: &Hash32, path: &Path) -> io::Result<()> {
        let mut f = File::open(path)?;
        self.put(hash, &mut f)?;
        drop(f);
        fs::remove_file(path)
    }

    /// Move a held blob found damaged out of the store, keeping its bytes
    /// as found. Returns where they are now, for humans.
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`] if it is not held; I/O errors (the blob is
    /// then still held).
    fn quarantine(&self, hash: &Hash32) -> io::Result<String>;

    /// Was a blob with this name ever quarantined?
    ///
    /// # Errors
    /// I/O errors.
    fn was_quarantined(&self, hash: &Hash32) -> io::Result<bool>;

    /// Remove a held blob for good, durably: the retention job's expiry of
    /// media that no kept entry refers to. Returns false if it was not held
    /// (a second run after a crash: not an error).
    ///
    /// # Errors
    /// I/O errors (the blob may then still be held).
    fn delete(&self, hash: &Hash32) -> io::Result<bool>;

    /// The names of every held blob, sorted.
    ///
    /// # Errors
    /// I/O errors.
    fn list(&self) -> io::Result<Vec<Hash32>>;

    /// Blobs worth reading at once when every blob is re-hashed (`verify`,
    /// `scrub`), at least: a local disk is kept busy by one reader per core,
    /// an object store, whose reads wait on the network, by more.
    fn parallel_reads(&self) -> usize {
        1
    }
}

/// The blob store `[blobs]` in `config.toml` names for the data folder `dir`.
///
/// # Errors
/// The folder store cannot be opened; the S3 settings are incomplete or
/// their credentials unreadable (a credentials file open to others is
/// refused).
pub fn open_configured(dir: &Path, cfg: &BlobsConfig) -> io::Result<std::sync::Arc<dyn BlobStore>> {
    Ok(match cfg.kind {
        BlobsKind::Folder => std::sync::Arc::new(FolderStore::open(dir)?),
        BlobsKind::S3 => {
            let need = |v: &Option<String>, name: &str| {
                v.clone().ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("[blobs] kind = \"s3\" needs {name}"),
                    )
                })
            };
            let (access_key_id, secret_access_key) =
                s3::credentials(cfg.credentials_file.as_deref())?;
            std::sync::Arc::new(s3::S3Store::new(&s3::S3Settings {
                endpoint: need(&cfg.endpoint, "endpoint")?,
                bucket: need(&cfg.bucket, "bucket")?,
                region: cfg.region.clone(),
                access_key_id,
                secret_access_key,
            })?)
        }
    })
}

/// SHA-256 and length of everything `r` yields.
///
/// # Errors
/// I/O errors.
pub fn hash_reader(r: &mut dyn Read) -> io::Result<(Hash32, u64)> {
    copy_hashing(r, |_| Ok(()))
}

/// The SHA-256 state after the first `limit` bytes of `r` (fewer if it
/// ends first), and how many bytes that was: to go on hashing what is
/// appended after them.
///
/// # Errors
/// I/O errors.
pub fn hash_prefix(r: &mut dyn Read, limit: u64) -> io::Result<(Sha256Stream, u64)> {
    read_hashing(r, limit, |_| Ok(()))
}

/// Read `r` to its end in [`READ_CHUNK`]s, handing each chunk to `sink`;
/// returns the SHA-256 and length of what was read.
fn copy_hashing(
    r: &mut dyn Read,
    sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<(Hash32, u64)> {
    let (h, len) = read_hashing(r, u64::MAX, sink)?;
    Ok((h.finish(), len))
}

/// Read at most `limit` bytes of `r` in [`READ_CHUNK`]s, hashing each chunk
/// and handing it to `sink`.
fn read_hashing(
    r: &mut dyn Read,
    limit: u64,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<(Sha256Stream, u64)> {
    let mut h = Sha256Stream::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut len = 0u64;
    while len < limit {
        let want = usize::try_from((limit - len).min(READ_CHUNK as u64)).expect("≤ READ_CHUNK");
        let n = match r.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        sink(&buf[..n])?;
        len += n as u64;
    }
    Ok((h, len))
}

/// Re-hash a held blob: its actual SHA-256 and length.
///
/// # Errors
/// The blob is not held or cannot be read.
pub fn rehash(store: &dyn BlobStore, hash: &Hash32) -> io::Result<(Hash32, u64)> {
    hash_reader(&mut store.open(hash)?)
}

pub(crate) fn mismatch(want: &Hash32, got: &Hash32) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "bytes hash to {}, not to the name {}",
            hex::encode(got),
            hex::encode(want)
        ),
    )
}

/// Blobs in the data folder: held under `DIR/blobs/<aa>/<sha256hex>`, puts
/// in progress under `DIR/blobs/tmp/`, quarantined ones under `DIR/damaged/`
/// (the paths come from [`DataDir`]).
///
/// Writes go temp file → fsync → rename → fsync folder, so a crash leaves a
/// blob absent or whole, and a stray temp file is never taken for a blob.
#[derive(Debug)]
pub struct FolderStore {
    dir: DataDir,
    /// Tells concurrent puts' temp files apart.
    next_tmp: std::sync::atomic::AtomicU64,
}

impl FolderStore {
    /// The store under the data folder `dir`. Temp files of puts that a
    /// crash interrupted are removed.
    ///
    /// # Errors
    /// The temp folder cannot be cleaned.
    pub fn open(dir: &Path) -> io::Result<FolderStore> {
        let s = FolderStore {
            dir: DataDir::new(dir),
            next_tmp: std::sync::atomic::AtomicU64::new(0),
        };
        match fs::remove_dir_all(s.dir.blob_tmp()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(s)
    }

    /// Where the blob with this name lives (for tests and the demo).
    pub fn path(&self, hash: &Hash32) -> PathBuf {
        self.dir.blob(hash)
    }

    /// Rename a complete, fsynced file into place and make that durable.
    fn install(&self, hash: &Hash32, from: &Path) -> io::Result<()> {
        let to = self.path(hash);
        let dir = to.parent().expect("has parent");
        create_dir_durable(dir)?;
        fs::rename(from, &to)?;
        // The blob's folder only: a rename is one journal transaction, so
        // this makes it durable. Should the old name come back after a power
        // cut anyway, it is a stray temp or partial file, which start-up and
        // the next upload query clean away.
        sync_dir(dir)
    }
}

impl BlobStore for FolderStore {
    fn stat(&self, hash: &Hash32) -> io::Result<Option<u64>> {
        match fs::metadata(self.path(hash)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn open(&self, hash: &Hash32) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(File::open(self.path(hash))?))
    }

    fn put(&self, hash: &Hash32, src: &mut dyn Read) -> io::Result<u64> {
        let tmp_dir = self.dir.blob_tmp();
        crate::fsutil::create_dir_private(&tmp_dir)?;
        let n = self
            .next_tmp
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = tmp_dir.join(format!("{}.{}.{n}", hex::encode(hash), std::process::id()));
        let res = (|| {
            let mut f = crate::fsutil::private()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            let (got, len) = copy_hashing(src, |chunk| f.write_all(chunk))?;
            if got != *hash {
                return Err(mismatch(hash, &got));
            }
            f.sync_all()?;
            drop(f);
            self.install(hash, &tmp)?;
            Ok(len)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    /// Rename: the file is on the data folder's file system, and its bytes
    /// were hashed as they arrived.
    fn adopt(&self, hash: &Hash32, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()?;
        self.install(hash, path)
    }

    fn quarantine(&self, hash: &Hash32) -> io::Result<String> {
        let from = self.path(hash);
        if !from.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("blob {} is not held", hex::encode(hash)),
            ));
        }
        let damaged = self.dir.damaged();
        create_dir_durable(&damaged)?;
        let first = self.dir.damaged_blob(hash);
        let mut to = first.clone();
        let mut n = 1;
        // The same blob damaged again after a resend: keep every copy.
        while to.exists() {
            to = first.with_extension(n.to_string());
            n += 1;
        }
        fs::rename(&from, &to)?;
        sync_dir(&damaged)?;
        sync_dir(from.parent().expect("has parent"))?;
        Ok(to.display().to_string())
    }

    fn was_quarantined(&self, hash: &Hash32) -> io::Result<bool> {
        Ok(self.dir.damaged_blob(hash).exists())
    }

    fn delete(&self, hash: &Hash32) -> io::Result<bool> {
        let path = self.path(hash);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        // The unlink is durable once the folder is synced: a crash cannot
        // bring expired media back.
        sync_dir(path.parent().expect("has parent"))?;
        Ok(true)
    }

    fn list(&self) -> io::Result<Vec<Hash32>> {
        let mut out = Vec::new();
        let subdirs = match fs::read_dir(self.dir.blobs()) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for sub in subdirs {
            let sub = sub?;
            if !sub.file_type()?.is_dir() || sub.file_name().len() != 2 {
                continue; // tmp/, or something not ours
            }
            for f in fs::read_dir(sub.path())? {
                let name = f?.file_name();
                // Anything whose name is not a full hash is not a blob.
                if let Some(h) = name
                    .to_str()
                    .and_then(|s| hex::decode(s).ok())
                    .and_then(|v| Hash32::try_from(v).ok())
                {
                    out.push(h);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }
}

/// The in-memory twin of [`FolderStore`], for tests. Blobs can be damaged
/// on purpose with [`MemStore::corrupt`].
#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<MemInner>,
}

#[derive(Debug, Default)]
struct MemInner {
    blobs: BTreeMap<Hash32, Vec<u8>>,
    damaged: Vec<(Hash32, Vec<u8>)>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Flip one bit of a held blob (bit rot). Returns false if not held.
    pub fn corrupt(&self, hash: &Hash32, byte: usize) -> bool {
        let mut g = self.inner.lock().expect("lock");
        match g.blobs.get_mut(hash) {
            Some(b) if !b.is_empty() => {
                let i = byte % b.len();
                b[i] ^= 1;
                true
            }
            _ => false,
        }
    }
}

impl BlobStore for MemStore {
    fn stat(&self, hash: &Hash32) -> io::Result<Option<u64>> {
        let g = self.inner.lock().expect("lock");
        Ok(g.blobs.get(hash).map(|b| b.len() as u64))
    }

    fn open(&self, hash: &Hash32) -> io::Result<Box<dyn Read + Send>> {
        let g = self.inner.lock().expect("lock");
        match g.blobs.get(hash) {
            Some(b) => Ok(Box::new(io::Cursor::new(b.clone()))),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "blob not held")),
        }
    }

    fn put(&self, hash: &Hash32, src: &mut dyn Read) -> io::Result<u64> {
        let mut bytes = Vec::new();
        src.read_to_end(&mut bytes)?;
        let got = fieldseal_proto::identity::sha256(&bytes);
        if got != *hash {
            return Err(mismatch(hash, &got));
        }
        let len = bytes.len() as u64;
        self.inner
            .lock()
            .expect("lock")
            .blobs
            .entry(*hash)
            .or_insert(bytes);
        Ok(len)
    }

    fn quarantine(&self, hash: &Hash32) -> io::Result<String> {
        let mut g = self.inner.lock().expect("lock");
        let Some(b) = g.blobs.remove(hash) else {
            return Err(io::Error::new(io::ErrorKind::NotFound, "blob not held"));
        };
        g.damaged.push((*hash, b));
        Ok(format!("memory: damaged copy {}", g.damaged.len()))
    }

    fn was_quarantined(&self, hash: &Hash32) -> io::Result<bool> {
        let g = self.inner.lock().expect("lock");
        Ok(g.damaged.iter().any(|(h, _)| h == hash))
    }

    fn delete(&self, hash: &Hash32) -> io::Result<bool> {
        Ok(self
            .inner
            .lock()
            .expect("lock")
            .blobs
            .remove(hash)
            .is_some())
    }

    fn list(&self) -> io::Result<Vec<Hash32>> {
        Ok(self
            .inner
            .lock()
            .expect("lock")
            .blobs
            .keys()
            .copied()
            .collect())
    }
}

/// Checks every [`BlobStore`] must pass. Each takes a fresh, empty store and
/// panics with a message on failure; [`run_all`] runs them all.
pub mod conformance {
    use super::{rehash, BlobStore};
    use fieldseal_proto::identity::{sha256, Hash32};
    use std::io::{self, Read};

    fn read_all(s: &dyn BlobStore, h: &Hash32) -> Vec<u8> {
        let mut v = Vec::new();
        s.open(h)
            .expect("open a held blob")
            .read_to_end(&mut v)
            .expect("read a held blob");
        v
    }

    /// Bytes put come back whole; stat gives their length; list names them.
    pub fn put_then_read(s: &dyn BlobStore) {
        let small = b"segment bytes".to_vec();
        let big: Vec<u8> = (0..3 * super::READ_CHUNK + 17)
            .map(|i| u8::try_from(i % 251).expect("below 251"))
            .collect();
        for b in [&small, &big, &Vec::new()] {
            let h = sha256(b);
            assert_eq!(s.stat(&h).unwrap(), None, "held before put");
            assert_eq!(s.put(&h, &mut b.as_slice()).unwrap(), b.len() as u64);
            assert_eq!(s.stat(&h).unwrap(), Some(b.len() as u64));
            assert_eq!(&read_all(s, &h), b, "bytes changed");
            assert_eq!(rehash(s, &h).unwrap(), (h, b.len() as u64));
        }
        let mut want = vec![sha256(&small), sha256(&big), sha256(b"")];
        want.sort_unstable();
        assert_eq!(s.list().unwrap(), want, "list");
    }

    /// Bytes that do not hash to the name are refused and leave nothing.
    pub fn wrong_bytes_are_refused(s: &dyn BlobStore) {
        let h = sha256(b"the real bytes");
        let err = s.put(&h, &mut &b"other bytes"[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert_eq!(s.stat(&h).unwrap(), None, "wrong bytes stored");
        assert!(
            s.list().unwrap().is_empty(),
            "something stored: {:?}",
            s.list()
        );
        assert_eq!(
            s.open(&h).err().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
    }

    /// A second put of the same bytes changes nothing; a reader that fails
    /// midway stores nothing.
    pub fn idempotent_and_failed_reads(s: &dyn BlobStore) {
        let b = b"twice".to_vec();
        let h = sha256(&b);
        s.put(&h, &mut b.as_slice()).unwrap();
        s.put(&h, &mut b.as_slice()).unwrap();
        assert_eq!(s.list().unwrap(), vec![h]);
        assert_eq!(read_all(s, &h), b);

        struct Broken(usize);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk went away"));
                }
                let n = self.0.min(buf.len());
                buf[..n].fill(7);
                self.0 -= n;
                Ok(n)
            }
        }
        let h2 = sha256(&[7u8; 100]);
        assert!(s.put(&h2, &mut Broken(50)).is_err());
        assert_eq!(s.stat(&h2).unwrap(), None, "a failed put left a blob");
        assert_eq!(s.list().unwrap(), vec![h]);
    }

    /// A quarantined blob is no longer held, is remembered, and can be put
    /// again (the device resends it); quarantining twice keeps both copies.
    pub fn quarantine_keeps_and_releases(s: &dyn BlobStore) {
        let b = b"rotting".to_vec();
        let h = sha256(&b);
        assert!(!s.was_quarantined(&h).unwrap());
        assert_eq!(
            s.quarantine(&h).err().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
        s.put(&h, &mut b.as_slice()).unwrap();
        let first = s.quarantine(&h).unwrap();
        assert_eq!(s.stat(&h).unwrap(), None);
        assert!(s.list().unwrap().is_empty());
        assert!(s.was_quarantined(&h).unwrap());
        s.put(&h, &mut b.as_slice()).unwrap();
        assert_eq!(read_all(s, &h), b);
        let second = s.quarantine(&h).unwrap();
        assert_ne!(first, second, "the second copy overwrote the first");
    }

    /// `adopt` takes a verified local file over.
    pub fn adopt_takes_the_file(s: &dyn BlobStore) {
        // No tempfile crate outside tests: a name of our own in the temp folder.
        let p = std::env::temp_dir().join(format!(
            "fieldseal-adopt-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&p, b"uploaded").unwrap();
        let h = sha256(b"uploaded");
        s.adopt(&h, &p).unwrap();
        assert!(!p.exists(), "the file is still there");
        assert_eq!(read_all(s, &h), b"uploaded");
    }

    /// Puts from several threads at once, some of the same bytes.
    pub fn concurrent_puts(s: &dyn BlobStore) {
        std::thread::scope(|t| {
            for i in 0..8u8 {
                t.spawn(move || {
                    let b = vec![i % 3; 10_000];
                    s.put(&sha256(&b), &mut b.as_slice()).unwrap();
                });
            }
        });
        assert_eq!(s.list().unwrap().len(), 3);
        for i in 0..3u8 {
            let b = vec![i; 10_000];
            assert_eq!(read_all(s, &sha256(&b)), b);
        }
    }

    /// A deleted blob is gone, and only it; deleting it again says so; the
    /// same bytes can be put again afterwards.
    pub fn delete_removes_only_that_blob(s: &dyn BlobStore) {
        let (a, b) = (b"expired".to_vec(), b"kept".to_vec());
        let (ha, hb) = (sha256(&a), sha256(&b));
        assert!(!s.delete(&ha).unwrap(), "deleted a blob never held");
        s.put(&ha, &mut a.as_slice()).unwrap();
        s.put(&hb, &mut b.as_slice()).unwrap();
        assert!(s.delete(&ha).unwrap());
        assert_eq!(s.stat(&ha).unwrap(), None, "still held after delete");
        assert_eq!(
            s.open(&ha).err().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
        assert_eq!(s.list().unwrap(), vec![hb], "the other blob went too");
        assert!(
            !s.was_quarantined(&ha).unwrap(),
            "a delete is no quarantine"
        );
        assert!(!s.delete(&ha).unwrap(), "a second delete found it");
        s.put(&ha, &mut a.as_slice()).unwrap();
        assert_eq!(read_all(s, &ha), a);
    }

    /// Every check, each on a fresh store from `make`.
    pub fn run_all(make: &dyn Fn() -> Box<dyn BlobStore>) {
        delete_removes_only_that_blob(make().as_ref());
        put_then_read(make().as_ref());
        wrong_bytes_are_refused(make().as_ref());
        idempotent_and_failed_reads(make().as_ref());
        quarantine_keeps_and_releases(make().as_ref());
        adopt_takes_the_file(make().as_ref());
        concurrent_puts(make().as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_store_conforms() {
        let dirs = Mutex::new(Vec::new());
        conformance::run_all(&|| {
            let d = tempfile::tempdir().unwrap();
            let s = FolderStore::open(d.path()).unwrap();
            dirs.lock().unwrap().push(d);
            Box::new(s)
        });
    }

    #[test]
    fn mem_store_conforms() {
        conformance::run_all(&|| Box::new(MemStore::new()));
    }

    #[test]
    fn folder_store_ignores_and_cleans_temp_files() {
        let d = tempfile::tempdir().unwrap();
        let s = FolderStore::open(d.path()).unwrap();
        let h = fieldseal_proto::identity::sha256(b"x");
        s.put(&h, &mut &b"x"[..]).unwrap();
        // A put that crashed before its rename, and a stray file.
        let tmp = DataDir::new(d.path()).blob_tmp();
        fs::create_dir_all(&tmp).unwrap();
        fs::write(tmp.join("abc.1.0"), b"half").unwrap();
        fs::write(s.path(&h).with_file_name("not-a-blob"), b"?").unwrap();
        assert_eq!(s.list().unwrap(), vec![h]);
        let s = FolderStore::open(d.path()).unwrap();
        assert!(!tmp.exists());
        assert_eq!(s.list().unwrap(), vec![h]);
    }

    #[test]
    fn mem_store_corrupt_is_seen_by_rehash() {
        let s = MemStore::new();
        let h = fieldseal_proto::identity::sha256(b"abc");
        s.put(&h, &mut &b"abc"[..]).unwrap();
        assert!(s.corrupt(&h, 1));
        assert_ne!(rehash(&s, &h).unwrap().0, h);
    }
}
