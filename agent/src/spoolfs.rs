//! The spool's file operations behind a narrow trait, with two
//! implementations: [`StdFs`] (the real filesystem) and [`MemFs`], an
//! in-memory twin that models what survives a power cut — the fault suite
//! uses it to drop unsynced data, tear the last write and fail fsync.
//!
//! The model of [`MemFs`], as POSIX promises and ext4/xfs deliver:
//!
//! - file contents survive a power loss only up to the last successful fsync
//!   of that file ([`SpoolFile::sync`]); with [`Fault::Tear`], a seeded prefix
//!   of the bytes written since survives too (a torn write);
//! - a name created, renamed or removed survives only once its folder was
//!   fsynced ([`SpoolFs::sync_dir`]);
//! - a failed fsync loses the unsynced bytes for good, as Linux does since
//!   "fsyncgate" (the pages are marked clean): retrying it succeeds but
//!   saves nothing, so a caller must never count a failed fsync as done.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fieldseal_proto::identity::{Hash32, Sha256Stream};

/// A file open for writing.
pub trait SpoolFile: std::fmt::Debug + Send {
    /// Write all of `bytes` at the end of what this handle wrote so far.
    ///
    /// # Errors
    /// The OS error (ENOSPC, EIO, …); some bytes may have been written.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// fsync: contents and length durable before it returns `Ok`.
    ///
    /// # Errors
    /// The OS error; the bytes written since the last sync may be lost.
    fn sync(&mut self) -> io::Result<()>;
    /// Cut the file to `len` bytes (not durable until [`SpoolFile::sync`]).
    ///
    /// # Errors
    /// The OS error.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// One entry of a folder listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirItem {
    /// File name.
    pub name: String,
    /// Length in bytes (0 for folders).
    pub len: u64,
    /// A regular file?
    pub is_file: bool,
}

/// The file operations of the spool.
pub trait SpoolFs: std::fmt::Debug + Send + Sync {
    /// Create a folder and its parents.
    ///
    /// # Errors
    /// The OS error.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Create (or truncate) `path` for writing.
    ///
    /// # Errors
    /// The OS error.
    fn create(&self, path: &Path) -> io::Result<Box<dyn SpoolFile>>;
    /// [`SpoolFs::create`] readable by the owner alone (mode 0600), for
    /// secrets: the mode is set when the file is made, before any byte is in
    /// it. (The twin does not model modes.)
    ///
    /// # Errors
    /// The OS error.
    fn create_private(&self, path: &Path) -> io::Result<Box<dyn SpoolFile>> {
        self.create(path)
    }
    /// Open `path` for appending, creating it if missing.
    ///
    /// # Errors
    /// The OS error.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn SpoolFile>>;
    /// The whole contents of `path`.
    ///
    /// # Errors
    /// The OS error (`NotFound` when missing).
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The contents of `path` from byte `offset` to its end (empty when
    /// `offset` is at or past the end): the new tail of an append-only file.
    ///
    /// # Errors
    /// The OS error (`NotFound` when missing).
    fn read_from(&self, path: &Path, offset: u64) -> io::Result<Vec<u8>> {
        let mut b = self.read(path)?;
        let at = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
        Ok(b.split_off(at))
    }
    /// Exactly `len` bytes of `path` from byte `offset`.
    ///
    /// # Errors
    /// The OS error; `UnexpectedEof` if the file ends before.
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let tail = self.read_from(path, offset)?;
        match tail.get(..len) {
            Some(b) => Ok(b.to_vec()),
            None => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
        }
    }
    /// Rename `from` to `to`, replacing `to`.
    ///
    /// # Errors
    /// The OS error.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Give the file `from` a second name `to`, which must not exist
    /// (link(2)): an atomic create-if-absent of a whole file.
    ///
    /// # Errors
    /// The OS error; `AlreadyExists` if `to` exists.
    fn link(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// fsync a folder: creates, renames and removes in it become durable.
    ///
    /// # Errors
    /// The OS error.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Remove a file.
    ///
    /// # Errors
    /// The OS error (`NotFound` when missing).
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// The entries of a folder.
    ///
    /// # Errors
    /// The OS error.
    fn list(&self, dir: &Path) -> io::Result<Vec<DirItem>>;
    /// Does `path` exist?
    fn exists(&self, path: &Path) -> bool;
    /// The length of a file.
    ///
    /// # Errors
    /// The OS error (`NotFound` when missing).
    fn len(&self, path: &Path) -> io::Result<u64>;
    /// SHA-256 and length of a file.
    ///
    /// # Errors
    /// The OS error of reading it.
    fn hash(&self, path: &Path) -> io::Result<(Hash32, u64)> {
        let b = self.read(path)?;
        let mut h = Sha256Stream::new();
        h.update(&b);
        Ok((h.finish(), b.len() as u64))
    }
}

/// How [`write_atomic_with`] treats the file it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtomicWrite {
    /// Replace a file already at the path (else refuse with `AlreadyExists`
    /// and leave it untouched).
    pub replace: bool,
    /// Readable by the owner alone (mode 0600) from its first byte: secrets.
    pub private: bool,
}

impl AtomicWrite {
    /// Replace what is there; ordinary permissions.
    pub const REPLACE: AtomicWrite = AtomicWrite {
        replace: true,
        private: false,
    };
    /// A secret that must never overwrite one already there (a device key:
    /// replacing it would orphan the chain it signed).
    pub const NEW_SECRET: AtomicWrite = AtomicWrite {
        replace: false,
        private: true,
    };
}

/// Write `bytes` to `path` durably: temp file → fsync → rename → fsync folder.
/// The one durable whole-file write of the agent (spool markers, enrolment
/// files, key files); see [`write_atomic_with`].
///
/// # Errors
/// Any OS error; on error `path` is unchanged (the temp file may remain).
pub fn write_atomic(fs: &dyn SpoolFs, path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(fs, path, bytes, AtomicWrite::REPLACE)
}

/// [`write_atomic`] with a choice of `how`. Without `replace`, the temp file
/// is linked to `path` rather than renamed over it, so that an existing file
/// is refused atomically, not after a racy check.
///
/// The folder's fsync is what makes the new name durable: without it a power
/// loss may bring back the old file, or none (the twin, [`MemFs`], models
/// this).
///
/// # Errors
/// Any OS error; `AlreadyExists` without `replace` when `path` exists. On
/// error `path` is unchanged (the temp file may remain, except after a
/// refusal to replace).
pub fn write_atomic_with(
    fs: &dyn SpoolFs,
    path: &Path,
    bytes: &[u8],
    how: AtomicWrite,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut f = if how.private {
        // A temp file left by an interrupted write keeps the mode it was
        // made with; creating it anew guarantees 0600.
        match fs.remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fs.create_private(&tmp)?
    } else {
        fs.create(&tmp)?
    };
    f.write_all(bytes)?;
    f.sync()?;
    drop(f);
    if how.replace {
        fs.rename(&tmp, path)?;
    } else {
        let linked = fs.link(&tmp, path);
        // The temp name goes whether or not the link was made: after a
        // refusal it would hold a secret that nothing uses.
        let removed = fs.remove_file(&tmp);
        linked?;
        removed?;
    }
    fs.sync_dir(dir)
}

/// The real filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile(File);

impl SpoolFile for StdFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl SpoolFs for StdFs {
    // Folders 0700 and files 0600 whatever the umask (`fsutil.rs`): every
    // file of the data folder is evidence, a key or its index.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        crate::fsutil::create_dir_private(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn SpoolFile>> {
        self.create_private(path)
    }
    fn create_private(&self, path: &Path) -> io::Result<Box<dyn SpoolFile>> {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        Ok(Box::new(StdFile(f)))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn SpoolFile>> {
        let f = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(crate::fsutil::FILE_MODE)
            .open(path)?;
        Ok(Box::new(StdFile(f)))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }
    // Seek rather than read the whole file: the sync store reads the new
    // tail of a chain log that grows all day.
    fn read_from(&self, path: &Path, offset: u64) -> io::Result<Vec<u8>> {
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut b = Vec::new();
        f.read_to_end(&mut b)?;
        Ok(b)
    }
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut b = vec![0u8; len];
        f.read_exact(&mut b)?;
        Ok(b)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn link(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::hard_link(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        crate::fsutil::sync_dir(dir)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<DirItem>> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            let is_file = e.file_type().is_ok_and(|t| t.is_file());
            out.push(DirItem {
                name: e.file_name().to_string_lossy().into_owned(),
                len: if is_file {
                    e.metadata().map(|m| m.len()).unwrap_or(0)
                } else {
                    0
                },
                is_file,
            });
        }
        Ok(out)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn len(&self, path: &Path) -> io::Result<u64> {
        fs::metadata(path).map(|m| m.len())
    }
    fn hash(&self, path: &Path) -> io::Result<(Hash32, u64)> {
        // In blocks: a segment is never read into memory twice.
        crate::spool::hash_file(path)
    }
}

/// A fault [`MemFs`] injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The process stops at this operation: it and every later one fail
    /// (the power is gone); call [`MemFs::power_loss`] to see what survived.
    Crash,
    /// This fsync fails with EIO and its unsynced bytes are lost.
    FailSync,
    /// This write fails with ENOSPC after writing a part of its bytes.
    NoSpace,
}

#[derive(Debug, Default, Clone)]
struct Inode {
    data: Vec<u8>,
    /// The contents as of the last successful fsync.
    synced: Vec<u8>,
    /// Bytes lost to a failed fsync: they never reach the disk.
    lost: bool,
}

#[derive(Debug, Default)]
struct MemState {
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    /// Names as processes see them.
    names: BTreeMap<PathBuf, u64>,
    /// Names as a power loss would leave them.
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: std::collections::BTreeSet<PathBuf>,
    /// Operations counted so far (writes, syncs, renames, …).
    ops: u64,
    /// Faults by operation number.
    faults: BTreeMap<u64, Fault>,
    crashed: bool,
    /// The inode written last (a power loss may tear it).
    last_written: Option<u64>,
    /// Seeded state for tearing.
    rng: u64,
}

impl MemState {
    /// Count an operation; the fault planned for it, if any.
    fn op(&mut self) -> io::Result<Option<Fault>> {
        if self.crashed {
            return Err(io::Error::other("power lost"));
        }
        self.ops += 1;
        match self.faults.get(&self.ops).copied() {
            Some(Fault::Crash) => {
                self.crashed = true;
                Err(io::Error::other("power lost"))
            }
            f => Ok(f),
        }
    }
    fn next_rand(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The in-memory twin of the filesystem, with power loss (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct MemFs {
    state: Arc<Mutex<MemState>>,
}

#[derive(Debug)]
struct MemFile {
    state: Arc<Mutex<MemState>>,
    inode: u64,
}

fn enoent(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: not found", path.display()),
    )
}

impl MemFs {
    /// An empty filesystem; `seed` decides how much of a torn write survives.
    pub fn new(seed: u64) -> MemFs {
        let fs = MemFs::default();
        fs.state.lock().expect("lock").rng = seed;
        fs
    }

    /// Inject `fault` at operation number `op` (1-based; see [`MemFs::ops`]).
    pub fn inject(&self, op: u64, fault: Fault) {
        self.state.lock().expect("lock").faults.insert(op, fault);
    }

    /// Operations so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().expect("lock").ops
    }

    /// Has a [`Fault::Crash`] happened?
    pub fn crashed(&self) -> bool {
        self.state.lock().expect("lock").crashed
    }

    /// The power comes back: names are those last made durable, contents
    /// those last synced; with `tear`, the file written last also keeps a
    /// seeded prefix of its unsynced bytes. Faults are cleared.
    pub fn power_loss(&self, tear: bool) {
        let mut s = self.state.lock().expect("lock");
        let torn = if tear { s.last_written } else { None };
        let cut = s.next_rand();
        let names = s.durable_names.clone();
        let mut inodes = BTreeMap::new();
        for ino in names.values() {
            let Some(old) = s.inodes.get(ino) else {
                continue;
            };
            let mut data = old.synced.clone();
            if Some(*ino) == torn
                && !old.lost
                && old.data.len() > data.len()
                && old.data.starts_with(&data)
            {
                let extra = old.data.len() - data.len();
                let keep = usize::try_from(cut % (extra as u64 + 1)).unwrap_or(0);
                data.extend_from_slice(&old.data[old.synced.len()..old.synced.len() + keep]);
            }
            inodes.insert(
                *ino,
                Inode {
                    synced: data.clone(),
                    data,
                    lost: false,
                },
            );
        }
        s.inodes = inodes;
        s.names = names;
        s.faults.clear();
        s.crashed = false;
        s.last_written = None;
    }

    /// A copy of the current contents of every file (for checks).
    pub fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let s = self.state.lock().expect("lock");
        s.names
            .iter()
            .filter_map(|(p, i)| s.inodes.get(i).map(|n| (p.clone(), n.data.clone())))
            .collect()
    }
}

impl SpoolFile for MemFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.state.lock().expect("lock");
        let fault = s.op()?;
        s.last_written = Some(self.inode);
        let n = if fault == Some(Fault::NoSpace) {
            bytes.len() / 2
        } else {
            bytes.len()
        };
        let node = s.inodes.entry(self.inode).or_default();
        node.data.extend_from_slice(&bytes[..n]);
        if fault == Some(Fault::NoSpace) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device",
            ));
        }
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        let mut s = self.state.lock().expect("lock");
        let fault = s.op()?;
        let node = s.inodes.entry(self.inode).or_default();
        if fault == Some(Fault::FailSync) {
            // fsyncgate: the dirty pages are dropped and marked clean.
            node.lost = true;
            node.data.truncate(node.synced.len());
            return Err(io::Error::other("fsync: input/output error"));
        }
        node.synced = node.data.clone();
        node.lost = false;
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut s = self.state.lock().expect("lock");
        s.op()?;
        let node = s.inodes.entry(self.inode).or_default();
        node.data
            .resize(usize::try_from(len).map_err(io::Error::other)?, 0);
        Ok(())
    }
}

impl MemFs {
    fn check_parent(s: &MemState, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() && !s.dirs.contains(p) => Err(enoent(p)),
            _ => Ok(()),
        }
    }
}

impl SpoolFs for MemFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock().expect("lock");
        s.op()?;
        // Folders are durable at once: the spool creates them before any
        // evidence goes in, and a lost folder would only lose empty ones.
        for a in dir.ancestors() {
            if !a.as_os_str().is_empty() {
                s.dirs.insert(a.to_path_buf());
            }
        }
        Ok(())
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn SpoolFile>> {
        let mut s = self.state.lock().expect("lock");
        s.op()?;
        Self::check_parent(&s, path)?;
        s.next_inode += 1;
        let ino = s.next_inode;
        s.inodes.insert(ino, Inode::default());
        s.names.insert(path.to_path_buf(), ino);
        Ok(Box::new(MemFile {
            state: self.state.clone(),
            inode: ino,
        }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn SpoolFile>> {
        let mut s = self.state.lock().expect("lock");
        s.op()?;
        Self::check_parent(&s, path)?;
        let ino = match s.names.get(path) {
            Some(i) => *i,
            None => {
                s.next_inode += 1;
                let i = s.next_inode;
                s.inodes.insert(i, Inode::default());
                s.names.insert(path.to_path_buf(), i);
                i
            }
        };
        Ok(Box::new(MemFile {
            state: self.state.clone(),
            inode: ino,
        }))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let s = self.state.lock().expect("lock");
        let ino = s.names.get(path).ok_or_else(|| enoent(path))?;
        Ok(s.inodes
            .get(ino)
            .map(|n| n.data.clone())
            .unwrap_or_default())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock().expect("lock");
        s.op()?;
        Self::check_parent(&s, to)?;
        let ino = s.names.remove(from).ok_or_else(|| enoent(from))?;
        s.names.insert(to.to_path_buf(), ino);
        Ok(())
    }
    fn link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock().expect("lock");
        s.op()?;
        Self::check_parent(&s, to)?;
        if s.names.contains_key(to) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists", to.display()),
            ));
        }
        let ino = *s.names.get(from).ok_or_else(|| enoent(from))?;
        s.names.insert(to.to_path_buf(), ino);
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock().expect("lock");
        s.op()?;
        let in_dir = |p: &Path| p.parent() == Some(dir);
        s.durable_names.retain(|p, _| !in_dir(p));
        let now: Vec<(PathBuf, u64)> = s
            .names
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        s.durable_names.extend(now);
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock().expect("lock");
        s.op()?;
        s.names.remove(path).map(|_| ()).ok_or_else(|| enoent(path))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<DirItem>> {
        let s = self.state.lock().expect("lock");
        if !s.dirs.contains(dir) {
            return Err(enoent(dir));
        }
        let mut out: Vec<DirItem> = s
            .names
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, i)| DirItem {
                name: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                len: s.inodes.get(i).map_or(0, |n| n.data.len() as u64),
                is_file: true,
            })
            .collect();
        out.extend(s.dirs.iter().filter(|d| d.parent() == Some(dir)).map(|d| {
            DirItem {
                name: d
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                len: 0,
                is_file: false,
            }
        }));
        Ok(out)
    }
    fn exists(&self, path: &Path) -> bool {
        let s = self.state.lock().expect("lock");
        s.names.contains_key(path) || s.dirs.contains(path)
    }
    fn len(&self, path: &Path) -> io::Result<u64> {
        let s = self.state.lock().expect("lock");
        let ino = s.names.get(path).ok_or_else(|| enoent(path))?;
        Ok(s.inodes.get(ino).map_or(0, |n| n.data.len() as u64))
    }
}
