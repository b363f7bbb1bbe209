//! Durable files under the data folder: per-device chain logs, evidence of
//! equivocation and partial uploads. The whole layout:
//!
//! ```text
//! DIR/devices/<device_id>/chain.log          accepted signed entries (FORMAT.md §9 records)
//! DIR/devices/<device_id>/equivocations.log  refused conflicting entries (same record format)
//! DIR/leaves.log                             every leaf of the transparency log (leaflog.rs)
//! DIR/blobs/<aa>/<sha256hex>                 verified segment bytes (blobstore.rs)
//! DIR/partial/<device_id>-<seq>              bytes of an upload in progress
//! DIR/damaged/<sha256hex>                    blobs scrub found damaged, kept as found
//! DIR/damaged.log                            what scrub found, one JSON object per line
//! DIR/checkpoints.log                        signed log checkpoints (tlog.rs)
//! DIR/index/                                 the sled index (db.rs), rebuildable
//! ```
//!
//! Every write that an acknowledgement depends on is fsynced (file, and the
//! folder after a create or rename) before the acknowledgement is sent.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use fieldseal_proto::chainlog::{put_record, RECORD_HEADER};
use fieldseal_proto::identity::{DeviceId, Hash32, Sha256Stream};

/// The file layout of one data folder.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

/// fsync a folder, so that a create or rename in it survives a power loss.
///
/// # Errors
/// I/O errors.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Storage {
    /// The layout under `root`.
    pub fn new(root: &Path) -> Self {
        Storage {
            root: root.to_path_buf(),
        }
    }

    fn device_dir(&self, device: DeviceId) -> io::Result<PathBuf> {
        let d = self.root.join("devices").join(device.to_string());
        if !d.exists() {
            fs::create_dir_all(&d)?;
            sync_dir(d.parent().expect("has parent"))?;
        }
        Ok(d)
    }

    /// Keep a refused conflicting entry as evidence, durably.
    ///
    /// # Errors
    /// I/O errors.
    pub fn append_equivocation(&self, device: DeviceId, entry: &[u8]) -> io::Result<()> {
        let dir = self.device_dir(device)?;
        let path = dir.join("equivocations.log");
        let new = !path.exists();
        let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut rec = Vec::with_capacity(entry.len() + RECORD_HEADER);
        put_record(&mut rec, entry);
        f.write_all(&rec)?;
        f.sync_data()?;
        if new {
            sync_dir(&dir)?;
        }
        Ok(())
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
    ) -> io::Result<u64> {
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
    ) -> io::Result<u64> {
        let dir = self.device_dir(device)?;
        let path = dir.join("chain.log");
        let new = !path.exists();
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)?;
        let len = f.metadata()?.len();
        if len < indexed_len {
            return Err(io::Error::other(format!(
                "{} is {len} bytes, the index says {indexed_len}: damaged",
                path.display()
            )));
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
        self.root.join("partial").join(format!("{device}-{seq}"))
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
    pub fn open_partial(&self, device: DeviceId, seq: u64, offset: u64) -> io::Result<File> {
        let path = self.partial_path(device, seq);
        let dir = path.parent().expect("has parent").to_path_buf();
        fs::create_dir_all(&dir)?;
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        if f.metadata()?.len() != offset {
            return Err(io::Error::other("partial length changed"));
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
    pub fn part_writer(&self, device: DeviceId, seq: u64, offset: u64) -> io::Result<PartWriter> {
        let file = self.open_partial(device, seq, offset)?;
        let (held, len) = if offset == 0 {
            (Sha256Stream::new(), 0)
        } else {
            crate::blobstore::hash_prefix(&mut File::open(self.partial_path(device, seq))?, offset)?
        };
        if len != offset {
            return Err(io::Error::other("partial file shorter than its length"));
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
        crate::blobstore::hash_reader(&mut File::open(self.partial_path(device, seq))?)
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
        blobs: &dyn crate::blobstore::BlobStore,
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
        let path = dir
            .path()
            .join("devices")
            .join(dev.to_string())
            .join("chain.log");
        assert_eq!(fs::read(&path).unwrap(), want);
        assert_eq!(n2, want.len() as u64);
        assert!(s.append_entry(dev, b"x", n2 + 10).is_err());
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
        assert!(s.open_partial(dev, 5, 4).is_err(), "not the held length");
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
        assert_eq!(fs::read(blobs.path(&hash)).unwrap(), b"hello world");
        assert_eq!(s.partial_len(dev, 5).unwrap(), 0);
    }
}
