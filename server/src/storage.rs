//! Durable files under the data folder: per-device chain logs and partial
//! uploads (the evidence of equivocation is `equivocation.rs`'s). Where they live is [`DataDir`]'s
//! business (its doc has the whole layout); the blobs themselves are the
//! blob store's (`blobstore.rs`), which this module hands finished uploads to.
//!
//! Every write that an acknowledgement depends on is fsynced (file, and the
//! folder after a create or rename) before the acknowledgement is sent.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use fieldseal_proto::chainlog::{put_record, RECORD_HEADER};
use fieldseal_proto::identity::{DeviceId, Hash32, Sha256Stream};

use crate::blobstore::{hash_prefix, hash_reader, BlobStore};
use crate::datadir::DataDir;
use crate::fsutil::{create_dir_durable, sync_dir};

/// Why a chain log or partial upload could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The file system failed (a full disk, EIO): nothing is acknowledged.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A chain log is shorter than the index says: durable data was lost.
    /// Nothing is written to it.
    #[error("{} is {len} bytes, the index says {indexed}: damaged", path.display())]
    LogShorterThanIndex {
        /// The chain log.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The length the index knows.
        indexed: u64,
    },
    /// A partial upload does not hold the bytes the caller counted on (a
    /// second writer, or a file changed underneath).
    #[error("{}: holds {held} bytes, not {expected}", path.display())]
    PartialLength {
        /// The partial file.
        path: PathBuf,
        /// What it holds.
        held: u64,
        /// What the caller expected.
        expected: u64,
    },
}

/// The chain logs and partial uploads of one data folder.
#[derive(Debug, Clone)]
pub struct Storage {
    dir: DataDir,
}

impl Storage {
    /// The layout under `root`.
    pub fn new(root: &Path) -> Self {
        Storage {
            dir: DataDir::new(root),
        }
    }

    /// The device's folder, created (durably) if it is new.
    fn device_dir(&self, device: DeviceId) -> io::Result<PathBuf> {
        let d = self.dir.device(device);
        create_dir_durable(&d)?;
        Ok(d)
    }

    /// Append an accepted signed entry to the device's chain log, durably.
    /// `indexed_len` is the log length the index knows: a longer file has a
    /// tail from an acceptance that crashed before it was indexed, which is
    /// cut off first so that every entry is in the log exactly once.
    /// Returns the new length.
    ///
    /// # Errors
    /// I/O errors; a log shorter than the index says (damage: refuse to write).
    pub fn append_entry(
        &self,
        device: DeviceId,
        entry: &[u8],
        indexed_len: u64,
    ) -> Result<u64, StorageError> {
        self.append_entries(device, &[entry], indexed_len)
    }

    /// [`Storage::append_entry`] for several entries of one device, in
    /// order, with one write and one fsync (group commit).
    ///
    /// # Errors
    /// As [`Storage::append_entry`].
    pub fn append_entries(
        &self,
        device: DeviceId,
        entries: &[&[u8]],
        indexed_len: u64,
    ) -> Result<u64, StorageError> {
        let dir = self.device_dir(device)?;
        let path = self.dir.chain_log(device);
        let new = !path.exists();
        let mut f = crate::fsutil::private()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)?;
        let len = f.metadata()?.len();
        if len < indexed_len {
            return Err(StorageError::LogShorterThanIndex {
                path,
                len,
                indexed: indexed_len,
            });
        }
        if len > indexed_len {
            tracing::warn!(%device, len, indexed_len, "cutting an unindexed tail off the chain log");
            f.set_len(indexed_len)?;
        }
        io::Seek::seek(&mut f, io::SeekFrom::Start(indexed_len))?;
        let mut rec = Vec::with_capacity(entries.iter().map(|e| e.len() + RECORD_HEADER).sum());
        for e in entries {
            put_record(&mut rec, e);
        }
        f.write_all(&rec)?;
        f.sync_data()?;
        if new {
            sync_dir(&dir)?;
        }
        Ok(indexed_len + rec.len() as u64)
    }

    /// Where the partial upload of (device, seq) lives.
    pub fn partial_path(&self, device: DeviceId, seq: u64) -> PathBuf {
        self.dir.partial(device, seq)
    }

    /// The durable length of a partial upload (0 when there is none). Bytes
    /// are fsynced before the length can be observed by a later query, see
    /// [`Storage::open_partial`].
    ///
    /// # Errors
    /// I/O errors other than "not found".
    pub fn partial_len(&self, device: DeviceId, seq: u64) -> io::Result<u64> {
        match fs::metadata(self.partial_path(device, seq)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Open the partial file for appending at `offset` (its current length,
    /// which the caller checked). Uploads go through [`Storage::part_writer`],
    /// which hashes what the file holds; a file left complete by an earlier
    /// upload is checked with [`Storage::hash_partial`].
    ///
    /// # Errors
    /// I/O errors; the file's length is not `offset`.
    pub fn open_partial(
        &self,
        device: DeviceId,
        seq: u64,
        offset: u64,
    ) -> Result<File, StorageError> {
        let path = self.partial_path(device, seq);
        let dir = self.dir.partials();
        create_dir_durable(&dir)?;
        let f = crate::fsutil::private()
            .create(true)
            .append(true)
            .open(&path)?;
        let held = f.metadata()?.len();
        if held != offset {
            return Err(StorageError::PartialLength {
                path,
                held,
                expected: offset,
            });
        }
        if offset == 0 {
            sync_dir(&dir)?;
        }
        Ok(f)
    }

    /// Open the partial upload of (device, seq) for appending at `offset`,
    /// with the SHA-256 of the `offset` bytes it holds read back from disk,
    /// so that the hash of the whole file is known when the last byte is
    /// written ([`PartWriter::finish`]) without reading it all again.
    ///
    /// # Errors
    /// As [`Storage::open_partial`]; the file is shorter than `offset`.
    pub fn part_writer(
        &self,
        device: DeviceId,
        seq: u64,
        offset: u64,
    ) -> Result<PartWriter, StorageError> {
        let file = self.open_partial(device, seq, offset)?;
        let (held, len) = if offset == 0 {
            (Sha256Stream::new(), 0)
        } else {
            hash_prefix(&mut File::open(self.partial_path(device, seq))?, offset)?
        };
        if len != offset {
            return Err(StorageError::PartialLength {
                path: self.partial_path(device, seq),
                held: len,
                expected: offset,
            });
        }
        Ok(PartWriter {
            file,
            hash: held,
            len,
            unsynced: 0,
        })
    }

    /// SHA-256 and length of a partial upload as it is on disk.
    ///
    /// # Errors
    /// I/O errors.
    pub fn hash_partial(&self, device: DeviceId, seq: u64) -> io::Result<(Hash32, u64)> {
        hash_reader(&mut File::open(self.partial_path(device, seq))?)
    }

    /// Hand a complete, verified partial file over to the blob store.
    ///
    /// # Errors
    /// I/O errors (the partial file is then still there).
    pub fn commit_partial(
        &self,
        device: DeviceId,
        seq: u64,
        hash: &Hash32,
        blobs: &dyn BlobStore,
    ) -> io::Result<()> {
        crate::fault::point("blob-before-rename");
        blobs.adopt(hash, &self.partial_path(device, seq))
    }

    /// Drop a partial file whose bytes turned out wrong.
    ///
    /// # Errors
    /// I/O errors other than "not found".
    pub fn discard_partial(&self, device: DeviceId, seq: u64) -> io::Result<()> {
        match fs::remove_file(self.partial_path(device, seq)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// A partial upload being appended to ([`Storage::part_writer`]): every
/// byte is hashed as it is handed to the file, so the SHA-256 of the whole
/// file is ready with the last write.
///
/// What it reports is what the file holds: each write is checked whole
/// (`write_all` on a `std::fs::File`, whose errors — ENOSPC, EIO — come back
/// from the call itself, unlike a buffered async file), the held prefix was
/// read back from disk, and the caller fsyncs before it acknowledges.
#[derive(Debug)]
pub struct PartWriter {
    file: File,
    hash: Sha256Stream,
    len: u64,
    unsynced: u64,
}

impl PartWriter {
    /// Append `bytes`.
    ///
    /// # Errors
    /// I/O errors; what was written before stays, for a resume.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.hash.update(bytes);
        self.len += bytes.len() as u64;
        self.unsynced += bytes.len() as u64;
        Ok(())
    }

    /// Bytes held so far (prefix included).
    pub fn held(&self) -> u64 {
        self.len
    }

    /// Bytes written since the last [`PartWriter::sync`].
    pub fn unsynced(&self) -> u64 {
        self.unsynced
    }

    /// fsync what was written, so that a resume after a crash starts from it.
    ///
    /// # Errors
    /// I/O errors.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.unsynced = 0;
        Ok(())
    }

    /// The SHA-256 and length of everything the file holds. Not synced:
    /// the blob store fsyncs when it adopts the file.
    pub fn finish(self) -> (Hash32, u64) {
        (self.hash.finish(), self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unindexed_tail_is_cut_and_short_log_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::new(dir.path());
        let dev = DeviceId([1; 8]);
        let n1 = s.append_entry(dev, b"first", 0).unwrap();
        assert_eq!(n1, 7);
        // Crash after appending "second" but before indexing it.
        s.append_entry(dev, b"second", n1).unwrap();
        // The entry is accepted again with the index's length.
        let n2 = s.append_entry(dev, b"second", n1).unwrap();
        let mut want = Vec::new();
        put_record(&mut want, b"first");
        put_record(&mut want, b"second");
        let path = DataDir::new(dir.path()).chain_log(dev);
        assert_eq!(fs::read(&path).unwrap(), want);
        assert_eq!(n2, want.len() as u64);
        assert!(matches!(
            s.append_entry(dev, b"x", n2 + 10),
            Err(StorageError::LogShorterThanIndex { .. })
        ));
    }

    #[test]
    fn partial_upload_resumes_with_the_hash_of_what_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::new(dir.path());
        let dev = DeviceId([2; 8]);
        let mut f = s.open_partial(dev, 5, 0).unwrap();
        f.write_all(b"hello ").unwrap();
        drop(f);
        assert_eq!(s.partial_len(dev, 5).unwrap(), 6);
        assert!(
            matches!(
                s.open_partial(dev, 5, 4),
                Err(StorageError::PartialLength {
                    held: 6,
                    expected: 4,
                    ..
                })
            ),
            "not the held length"
        );
        let mut f = s.open_partial(dev, 5, 6).unwrap();
        f.write_all(b"world").unwrap();
        drop(f);
        let (hash, _) = s.hash_partial(dev, 5).unwrap();
        assert_eq!(hash, fieldseal_proto::identity::sha256(b"hello world"));
        // A writer resuming at the held length hashes the prefix from disk.
        let mut w = s.part_writer(dev, 5, 11).unwrap();
        assert!(s.part_writer(dev, 5, 12).is_err(), "not the held length");
        w.write(b"!").unwrap();
        assert_eq!(w.held(), 12);
        let (h2, n2) = w.finish();
        assert_eq!((h2, n2), s.hash_partial(dev, 5).unwrap());
        assert_eq!(h2, fieldseal_proto::identity::sha256(b"hello world!"));
        s.discard_partial(dev, 5).unwrap();
        let mut f = s.open_partial(dev, 5, 0).unwrap();
        f.write_all(b"hello world").unwrap();
        drop(f);
        let blobs = crate::blobstore::FolderStore::open(dir.path()).unwrap();
        s.commit_partial(dev, 5, &hash, &blobs).unwrap();
        assert_eq!(
            fs::read(DataDir::new(dir.path()).blob(&hash)).unwrap(),
            b"hello world"
        );
        assert_eq!(s.partial_len(dev, 5).unwrap(), 0);
    }
}
