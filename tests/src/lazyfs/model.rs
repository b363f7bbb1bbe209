//! The filesystem as a power cut sees it: every file and folder twice, as the
//! processes see it now (the page cache) and as the disk holds it (durable).
//!
//! - A file's data reaches the durable side only when the file is fsynced
//!   (`fsync` or `fdatasync`; `sync_file_range` never reaches a FUSE
//!   filesystem, so it makes nothing durable, as the brief of issue 13 asks).
//! - A name (create, mknod, mkdir, link, rename, unlink, rmdir) reaches the
//!   durable side only when its folder is fsynced: the folder's whole entry
//!   list is copied then. A renamed file whose new folder is fsynced but not
//!   its old one is then durable under both names, as POSIX allows.
//! - Modes, owners and times are not modelled as volatile (none of the
//!   programs under test relies on them surviving, and a lost mode would only
//!   make `run` refuse an open folder).
//! - [`Model::cut`] drops everything that is not durable. A torn cut first
//!   lets one file's unsynced writes reach the disk, the last of them cut to a
//!   seeded prefix ([`Model::tear`]): the power went in the middle of it.
//!
//! Pure data: no FUSE here (`fuse.rs` adapts it), so it is tested as it is.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

/// A path with every run of digits written `#`: the files one program
/// makes one after another under numbered names (segments, blobs, sled's
/// blob files) count as one, so that "the 3rd fsync of a segment file" can
/// be cut at in a run that numbers them differently.
pub fn class(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut digits = false;
    for c in path.chars() {
        if c.is_ascii_digit() {
            if !digits {
                out.push('#');
            }
            digits = true;
        } else {
            out.push(c);
            digits = false;
        }
    }
    out
}

/// An inode number (1 is the root).
pub type Ino = u64;
/// The root folder's inode.
pub const ROOT: Ino = 1;

/// The operations a cut can be placed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// A write of file data (one FUSE write: the kernel splits large ones).
    Write,
    /// An fsync or fdatasync of a file or folder.
    Fsync,
}

impl Op {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Op::Write => "write",
            Op::Fsync => "fsync",
        }
    }
}

/// A cut at an exact operation: the `n`-th (from 1) `op` of the files or
/// folders at `path` (relative to the mount, as named when it happens, with
/// every run of digits written `#`: see [`class`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutAt {
    /// The path class, e.g. `agent/chain.log` or `agent/media/#.ts`.
    pub path: String,
    /// Which operation.
    pub op: Op,
    /// Which one of them (1 = the first).
    pub n: u64,
    /// Torn: part of the file's unsynced writes reach the disk.
    pub torn: bool,
    /// Where the torn write is cut.
    pub seed: u64,
}

/// What the caller of an operation must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done: answer the process.
    Done,
    /// The power is off: the process must not learn how it went (block it
    /// until it is killed).
    Blocked,
}

/// The kind of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
    /// A Unix socket, FIFO or device node (no data).
    Special,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Write { off: u64, len: u64 },
    Truncate(u64),
}

#[derive(Debug, Clone, Default)]
struct FileData {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Writes and truncations since the last fsync, in order.
    pending: Vec<Pending>,
}

#[derive(Debug, Clone, Default)]
struct DirData {
    entries: BTreeMap<OsString, Ino>,
    durable: BTreeMap<OsString, Ino>,
}

#[derive(Debug, Clone)]
enum Body {
    File(FileData),
    Dir(DirData),
    Special,
}

/// A node's attributes, as `stat` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// Kind.
    pub kind: Kind,
    /// Size in bytes (as the processes see it).
    pub size: u64,
    /// Permission bits (and the file type bits for special files).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a special file.
    pub rdev: u32,
    /// Last modification.
    pub mtime: SystemTime,
    /// Last change.
    pub ctime: SystemTime,
    /// Links to it (1 for files; 2 for folders, not counted exactly).
    pub nlink: u32,
}

#[derive(Debug, Clone)]
struct Node {
    body: Body,
    attr: Attr,
    /// The folder and name it was last linked under (for paths in reports).
    parent: Ino,
    name: OsString,
}

/// Errors, as errno values.
pub type Errno = i32;

/// The whole filesystem.
#[derive(Debug, Clone)]
pub struct Model {
    nodes: HashMap<Ino, Node>,
    next: Ino,
    /// Writes and fsyncs per path since [`Model::reset_counts`].
    counts: BTreeMap<(String, Op), u64>,
    armed: Option<CutAt>,
    /// `Some(what)` once the power is off.
    off: Option<String>,
}

impl Default for Model {
    fn default() -> Self {
        Model::new(0o700, 0, 0)
    }
}

impl Model {
    /// An empty filesystem whose root has `mode`, `uid`, `gid`.
    pub fn new(mode: u32, uid: u32, gid: u32) -> Model {
        let now = SystemTime::now();
        let root = Node {
            body: Body::Dir(DirData::default()),
            attr: Attr {
                ino: ROOT,
                kind: Kind::Dir,
                size: 0,
                mode,
                uid,
                gid,
                rdev: 0,
                mtime: now,
                ctime: now,
                nlink: 2,
            },
            parent: ROOT,
            name: OsString::new(),
        };
        Model {
            nodes: HashMap::from([(ROOT, root)]),
            next: ROOT + 1,
            counts: BTreeMap::new(),
            armed: None,
            off: None,
        }
    }

    fn node(&self, ino: Ino) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn dir(&self, ino: Ino) -> Result<&DirData, Errno> {
        match &self.node(ino)?.body {
            Body::Dir(d) => Ok(d),
            _ => Err(libc::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut DirData, Errno> {
        match &mut self.node_mut(ino)?.body {
            Body::Dir(d) => Ok(d),
            _ => Err(libc::ENOTDIR),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> Result<&mut FileData, Errno> {
        match &mut self.node_mut(ino)?.body {
            Body::File(f) => Ok(f),
            Body::Dir(_) => Err(libc::EISDIR),
            Body::Special => Err(libc::EINVAL),
        }
    }

    /// The path of `ino` relative to the root, by the names it was last
    /// linked under (`""` for the root).
    pub fn path(&self, ino: Ino) -> String {
        let mut parts = Vec::new();
        let mut at = ino;
        while at != ROOT && parts.len() < 64 {
            let Some(n) = self.nodes.get(&at) else { break };
            parts.push(n.name.to_string_lossy().into_owned());
            at = n.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    /// The attributes of `ino`.
    ///
    /// # Errors
    /// `ENOENT`.
    pub fn attr(&self, ino: Ino) -> Result<Attr, Errno> {
        let n = self.node(ino)?;
        let mut a = n.attr;
        if let Body::File(f) = &n.body {
            a.size = f.data.len() as u64;
        }
        Ok(a)
    }

    /// Look `name` up in folder `parent`.
    ///
    /// # Errors
    /// `ENOENT`, `ENOTDIR`.
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr, Errno> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or(libc::ENOENT)?;
        self.attr(ino)
    }

    /// The entries of folder `ino`, in name order.
    ///
    /// # Errors
    /// `ENOENT`, `ENOTDIR`.
    pub fn readdir(&self, ino: Ino) -> Result<Vec<(OsString, Ino, Kind)>, Errno> {
        let d = self.dir(ino)?;
        Ok(d.entries
            .iter()
            .filter_map(|(n, i)| self.nodes.get(i).map(|x| (n.clone(), *i, x.attr.kind)))
            .collect())
    }

    /// Make a new node `name` in `parent` (a file, folder or special file).
    ///
    /// # Errors
    /// `EEXIST`, `ENOENT`, `ENOTDIR`.
    // The arguments are those of mknod(2) plus the owner FUSE hands over;
    // a struct for them would only be unpacked again here.
    #[allow(clippy::too_many_arguments)]
    pub fn make(
        &mut self,
        parent: Ino,
        name: &OsStr,
        kind: Kind,
        mode: u32,
        uid: u32,
        gid: u32,
        rdev: u32,
    ) -> Result<Attr, Errno> {
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next;
        self.next += 1;
        let now = SystemTime::now();
        let body = match kind {
            Kind::File => Body::File(FileData::default()),
            Kind::Dir => Body::Dir(DirData::default()),
            Kind::Special => Body::Special,
        };
        let attr = Attr {
            ino,
            kind,
            size: 0,
            mode,
            uid,
            gid,
            rdev,
            mtime: now,
            ctime: now,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
        };
        self.nodes.insert(
            ino,
            Node {
                body,
                attr,
                parent,
                name: name.to_owned(),
            },
        );
        self.dir_mut(parent)?.entries.insert(name.to_owned(), ino);
        self.touch(parent);
        Ok(attr)
    }

    fn touch(&mut self, ino: Ino) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            let now = SystemTime::now();
            n.attr.mtime = now;
            n.attr.ctime = now;
        }
    }

    /// A new name `name` in `parent` for `ino` (a hard link).
    ///
    /// # Errors
    /// `EEXIST`, `EPERM` for a folder.
    pub fn link(&mut self, ino: Ino, parent: Ino, name: &OsStr) -> Result<Attr, Errno> {
        if self.node(ino)?.attr.kind == Kind::Dir {
            return Err(libc::EPERM);
        }
        let d = self.dir_mut(parent)?;
        if d.entries.contains_key(name) {
            return Err(libc::EEXIST);
        }
        d.entries.insert(name.to_owned(), ino);
        self.touch(parent);
        self.attr(ino)
    }

    /// Remove the name `name` from `parent`; `dir` says whether it must be
    /// an (empty) folder (`rmdir`) or must not be one (`unlink`).
    ///
    /// # Errors
    /// `ENOENT`, `EISDIR`, `ENOTDIR`, `ENOTEMPTY`.
    pub fn remove(&mut self, parent: Ino, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or(libc::ENOENT)?;
        match (&self.node(ino)?.body, dir) {
            (Body::Dir(d), true) if !d.entries.is_empty() => return Err(libc::ENOTEMPTY),
            (Body::Dir(_), false) => return Err(libc::EISDIR),
            (Body::File(_) | Body::Special, true) => return Err(libc::ENOTDIR),
            _ => {}
        }
        self.dir_mut(parent)?.entries.remove(name);
        self.touch(parent);
        Ok(())
    }

    /// Rename `parent/name` to `newparent/newname` (`noreplace`: fail if the
    /// target exists; `exchange`: swap the two).
    ///
    /// # Errors
    /// `ENOENT`, `EEXIST`, `ENOTEMPTY`, `EISDIR`, `ENOTDIR`.
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        noreplace: bool,
        exchange: bool,
    ) -> Result<(), Errno> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or(libc::ENOENT)?;
        let target = self.dir(newparent)?.entries.get(newname).copied();
        if exchange {
            let other = target.ok_or(libc::ENOENT)?;
            self.dir_mut(parent)?.entries.insert(name.to_owned(), other);
            self.dir_mut(newparent)?
                .entries
                .insert(newname.to_owned(), ino);
            self.relink(other, parent, name);
            self.relink(ino, newparent, newname);
            return Ok(());
        }
        if let Some(t) = target {
            if t == ino {
                return Ok(());
            }
            if noreplace {
                return Err(libc::EEXIST);
            }
            let src_dir = self.node(ino)?.attr.kind == Kind::Dir;
            match &self.node(t)?.body {
                Body::Dir(d) if !d.entries.is_empty() => return Err(libc::ENOTEMPTY),
                Body::Dir(_) if !src_dir => return Err(libc::EISDIR),
                Body::File(_) | Body::Special if src_dir => return Err(libc::ENOTDIR),
                _ => {}
            }
        }
        self.dir_mut(parent)?.entries.remove(name);
        self.dir_mut(newparent)?
            .entries
            .insert(newname.to_owned(), ino);
        self.relink(ino, newparent, newname);
        self.touch(parent);
        self.touch(newparent);
        Ok(())
    }

    fn relink(&mut self, ino: Ino, parent: Ino, name: &OsStr) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.parent = parent;
            n.name = name.to_owned();
        }
    }

    /// Change mode, owner or times (not size: [`Model::truncate`]).
    ///
    /// # Errors
    /// `ENOENT`.
    pub fn set_attr(
        &mut self,
        ino: Ino,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        mtime: Option<SystemTime>,
    ) -> Result<Attr, Errno> {
        let n = self.node_mut(ino)?;
        if let Some(m) = mode {
            n.attr.mode = (n.attr.mode & !0o7777) | (m & 0o7777);
        }
        if let Some(u) = uid {
            n.attr.uid = u;
        }
        if let Some(g) = gid {
            n.attr.gid = g;
        }
        if let Some(t) = mtime {
            n.attr.mtime = t;
        }
        n.attr.ctime = SystemTime::now();
        self.attr(ino)
    }

    /// Read up to `size` bytes at `off` of what the processes see.
    ///
    /// # Errors
    /// `ENOENT`, `EISDIR`.
    pub fn read(&mut self, ino: Ino, off: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let f = self.file_mut(ino)?;
        let start = usize::try_from(off).map_err(|_| libc::EINVAL)?;
        if start >= f.data.len() {
            return Ok(Vec::new());
        }
        let end = f.data.len().min(start.saturating_add(size as usize));
        Ok(f.data[start..end].to_vec())
    }

    /// Write `bytes` at `off` into the page cache. If it is the armed cut,
    /// the power goes now (with a torn cut, part of it reaches the disk).
    ///
    /// # Errors
    /// `ENOENT`, `EISDIR`.
    pub fn write(&mut self, ino: Ino, off: u64, bytes: &[u8]) -> Result<Outcome, Errno> {
        let f = self.file_mut(ino)?;
        let start = usize::try_from(off).map_err(|_| libc::EINVAL)?;
        let end = start + bytes.len();
        if f.data.len() < end {
            f.data.resize(end, 0);
        }
        f.data[start..end].copy_from_slice(bytes);
        f.pending.push(Pending::Write {
            off,
            len: bytes.len() as u64,
        });
        self.touch(ino);
        Ok(self.count(ino, Op::Write))
    }

    /// Set the size of a file (truncate or extend with zeros).
    ///
    /// # Errors
    /// `ENOENT`, `EISDIR`.
    pub fn truncate(&mut self, ino: Ino, len: u64) -> Result<(), Errno> {
        let f = self.file_mut(ino)?;
        f.data
            .resize(usize::try_from(len).map_err(|_| libc::EFBIG)?, 0);
        f.pending.push(Pending::Truncate(len));
        self.touch(ino);
        Ok(())
    }

    /// fsync or fdatasync of a file or folder: what it holds becomes
    /// durable, unless the power is off (then the caller is blocked), or
    /// this is the armed cut (the power goes instead).
    ///
    /// # Errors
    /// `ENOENT`.
    pub fn fsync(&mut self, ino: Ino) -> Result<Outcome, Errno> {
        self.node(ino)?;
        if self.count(ino, Op::Fsync) == Outcome::Blocked || self.off.is_some() {
            return Ok(Outcome::Blocked);
        }
        match &mut self.node_mut(ino)?.body {
            Body::File(f) => {
                f.durable.clone_from(&f.data);
                f.pending.clear();
            }
            Body::Dir(d) => d.durable.clone_from(&d.entries),
            Body::Special => {}
        }
        Ok(Outcome::Done)
    }

    /// Count an operation; if it is the armed cut, the power goes.
    fn count(&mut self, ino: Ino, op: Op) -> Outcome {
        if self.off.is_some() {
            // Nothing after the cut is counted: it is not on any disk.
            return Outcome::Done;
        }
        let path = class(&self.path(ino));
        let n = self.counts.entry((path.clone(), op)).or_insert(0);
        *n += 1;
        let n = *n;
        let hit = self
            .armed
            .as_ref()
            .is_some_and(|c| c.path == path && c.op == op && c.n == n);
        if !hit {
            return Outcome::Done;
        }
        let cut = self.armed.take().expect("armed");
        if cut.torn {
            self.tear(ino, cut.seed);
        }
        self.off = Some(format!(
            "{} {} #{n} of {path}",
            if cut.torn { "torn" } else { "clean" },
            op.name()
        ));
        Outcome::Blocked
    }

    /// Arm a cut at an exact operation (counts restart from zero).
    pub fn arm(&mut self, cut: CutAt) {
        self.counts.clear();
        self.armed = Some(cut);
    }

    /// Has the armed cut been reached, or [`Model::power_off`] been called?
    /// Says what the cut was.
    pub fn off(&self) -> Option<&str> {
        self.off.as_deref()
    }

    /// Writes and fsyncs per path since the last [`Model::reset_counts`] or
    /// [`Model::arm`].
    pub fn counts(&self) -> &BTreeMap<(String, Op), u64> {
        &self.counts
    }

    /// Forget the counts.
    pub fn reset_counts(&mut self) {
        self.counts.clear();
    }

    /// The power goes now (a cut at a random moment). With `torn`, one file
    /// with unsynced writes (chosen by the seed) has them reach the disk, the
    /// last one torn. Returns the path of the torn file, if any.
    pub fn power_off(&mut self, torn: Option<u64>) -> Option<String> {
        if self.off.is_some() {
            return None;
        }
        self.armed = None;
        let mut torn_path = None;
        if let Some(seed) = torn {
            let mut dirty: Vec<Ino> = self
                .nodes
                .iter()
                .filter(|(_, n)| matches!(&n.body, Body::File(f) if !f.pending.is_empty()))
                .map(|(i, _)| *i)
                .collect();
            dirty.sort_unstable();
            if !dirty.is_empty() {
                let ino = dirty[usize::try_from(seed % dirty.len() as u64).unwrap_or(0)];
                self.tear(ino, seed / 7);
                torn_path = Some(self.path(ino));
            }
        }
        self.off = Some(match &torn_path {
            Some(p) => format!("torn at a random moment ({p} torn)"),
            None => "clean at a random moment".to_string(),
        });
        torn_path
    }

    /// Let a file's unsynced writes reach the disk, the last one cut to a
    /// prefix chosen by `seed` (shorter than the whole write).
    pub fn tear(&mut self, ino: Ino, seed: u64) {
        let Ok(f) = self.file_mut(ino) else { return };
        let Some((last, before)) = f.pending.split_last() else {
            return;
        };
        let mut disk = f.durable.clone();
        let apply = |disk: &mut Vec<u8>, p: &Pending, keep: Option<u64>| match *p {
            Pending::Truncate(len) => {
                if keep.is_none_or(|k| k > 0) {
                    disk.resize(usize::try_from(len).unwrap_or(usize::MAX), 0);
                }
            }
            Pending::Write { off, len } => {
                let len = keep.map_or(len, |k| k.min(len));
                let at = |x: u64| usize::try_from(x).unwrap_or(usize::MAX);
                let (s, e) = (at(off), at(off + len));
                if disk.len() < e {
                    disk.resize(e, 0);
                }
                // The bytes as they are now (a later write over the same
                // range is what a disk that kept both would show).
                let have = f.data.len().min(e);
                if have > s {
                    disk[s..have].copy_from_slice(&f.data[s..have]);
                }
            }
        };
        for p in before {
            apply(&mut disk, p, None);
        }
        let keep = match *last {
            Pending::Write { len, .. } if len > 0 => seed % len,
            _ => seed % 2,
        };
        apply(&mut disk, last, Some(keep));
        f.durable = disk;
    }

    /// The power comes back: everything not durable is gone. Returns how
    /// many files and folders lost something.
    pub fn cut(&mut self) -> usize {
        let mut reachable = Vec::new();
        let mut stack = vec![(ROOT, ROOT, OsString::new())];
        let mut seen = std::collections::HashSet::new();
        while let Some((ino, parent, name)) = stack.pop() {
            if !seen.insert(ino) {
                continue;
            }
            reachable.push((ino, parent, name));
            if let Some(Node {
                body: Body::Dir(d), ..
            }) = self.nodes.get(&ino)
            {
                for (n, i) in &d.durable {
                    stack.push((*i, ino, n.clone()));
                }
            }
        }
        let mut changed = 0;
        let mut keep = HashMap::new();
        for (ino, parent, name) in reachable {
            let Some(mut n) = self.nodes.remove(&ino) else {
                continue;
            };
            match &mut n.body {
                Body::File(f) => {
                    if f.data != f.durable {
                        changed += 1;
                    }
                    f.data.clone_from(&f.durable);
                    f.pending.clear();
                }
                Body::Dir(d) => {
                    if d.entries != d.durable {
                        changed += 1;
                    }
                    d.entries.clone_from(&d.durable);
                }
                Body::Special => {}
            }
            if ino != ROOT {
                n.parent = parent;
                n.name = name;
            }
            keep.insert(ino, n);
        }
        self.nodes = keep;
        self.off = None;
        self.armed = None;
        self.counts.clear();
        changed
    }

    /// Every file and folder on the durable side, as (path, contents) with
    /// `None` for a folder: what a disk image after a cut would hold.
    pub fn durable_image(&self) -> Vec<(String, Option<Vec<u8>>, u32)> {
        let mut out = Vec::new();
        let mut stack = vec![(ROOT, String::new())];
        while let Some((ino, path)) = stack.pop() {
            let Some(n) = self.nodes.get(&ino) else {
                continue;
            };
            match &n.body {
                Body::Dir(d) => {
                    if ino != ROOT {
                        out.push((path.clone(), None, n.attr.mode));
                    }
                    for (name, i) in &d.durable {
                        let p = if path.is_empty() {
                            name.to_string_lossy().into_owned()
                        } else {
                            format!("{path}/{}", name.to_string_lossy())
                        };
                        stack.push((*i, p));
                    }
                }
                Body::File(f) => out.push((path, Some(f.durable.clone()), n.attr.mode)),
                Body::Special => {}
            }
        }
        out.sort();
        out
    }

    /// Bytes held in memory (both sides), for the memory check of a soak.
    pub fn bytes(&self) -> usize {
        self.nodes
            .values()
            .map(|n| match &n.body {
                Body::File(f) => f.data.len() + f.durable.len(),
                _ => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(m: &mut Model, parent: Ino, name: &str) -> Ino {
        m.make(parent, OsStr::new(name), Kind::File, 0o600, 0, 0, 0)
            .unwrap()
            .ino
    }

    fn read_all(m: &mut Model, ino: Ino) -> Vec<u8> {
        m.read(ino, 0, u32::MAX).unwrap()
    }

    #[test]
    fn unsynced_data_and_names_are_lost_synced_ones_kept() {
        let mut m = Model::default();
        let a = file(&mut m, ROOT, "a");
        m.write(a, 0, b"hello").unwrap();
        assert_eq!(read_all(&mut m, a), b"hello", "reads see the cache");
        m.fsync(ROOT).unwrap();
        m.cut();
        let a = m.lookup(ROOT, OsStr::new("a")).unwrap().ino;
        assert_eq!(read_all(&mut m, a), b"", "the name survived, not the data");
        m.write(a, 0, b"hello").unwrap();
        m.fsync(a).unwrap();
        m.write(a, 5, b" world").unwrap();
        let b = file(&mut m, ROOT, "b");
        m.fsync(b).unwrap();
        m.cut();
        assert_eq!(read_all(&mut m, a), b"hello");
        assert_eq!(m.lookup(ROOT, OsStr::new("b")), Err(libc::ENOENT));
    }

    #[test]
    fn a_rename_is_durable_once_its_folders_are_fsynced() {
        let mut m = Model::default();
        let d = m
            .make(ROOT, OsStr::new("d"), Kind::Dir, 0o700, 0, 0, 0)
            .unwrap()
            .ino;
        let t = file(&mut m, d, "x.tmp");
        m.write(t, 0, b"new").unwrap();
        m.fsync(t).unwrap();
        m.fsync(d).unwrap();
        m.fsync(ROOT).unwrap();
        m.rename(d, OsStr::new("x.tmp"), d, OsStr::new("x"), false, false)
            .unwrap();
        let mut lost = m.clone();
        lost.cut();
        assert!(lost.lookup(d, OsStr::new("x")).is_err());
        assert!(lost.lookup(d, OsStr::new("x.tmp")).is_ok());
        m.fsync(d).unwrap();
        m.cut();
        let x = m.lookup(d, OsStr::new("x")).unwrap().ino;
        assert_eq!(read_all(&mut m, x), b"new");
        assert_eq!(m.path(x), "d/x");
    }

    #[test]
    fn an_armed_cut_fires_at_its_operation_and_blocks_what_follows() {
        let mut m = Model::default();
        let a = file(&mut m, ROOT, "a");
        m.fsync(ROOT).unwrap();
        m.arm(CutAt {
            path: "a".into(),
            op: Op::Write,
            n: 2,
            torn: true,
            seed: 3,
        });
        assert_eq!(m.write(a, 0, b"0123456789").unwrap(), Outcome::Done);
        assert_eq!(m.write(a, 10, b"abcdefgh").unwrap(), Outcome::Blocked);
        assert!(m.off().unwrap().contains("torn write #2 of a"));
        assert_eq!(
            m.fsync(a).unwrap(),
            Outcome::Blocked,
            "no fsync after a cut"
        );
        m.cut();
        assert_eq!(read_all(&mut m, a), b"0123456789abc", "the last write torn");
    }

    #[test]
    fn a_clean_cut_at_an_fsync_keeps_only_what_was_synced_before() {
        let mut m = Model::default();
        let a = file(&mut m, ROOT, "a");
        m.fsync(ROOT).unwrap();
        m.write(a, 0, b"one").unwrap();
        m.fsync(a).unwrap();
        m.write(a, 3, b"two").unwrap();
        m.arm(CutAt {
            path: "a".into(),
            op: Op::Fsync,
            n: 1,
            torn: false,
            seed: 0,
        });
        assert_eq!(m.fsync(a).unwrap(), Outcome::Blocked);
        assert_eq!(m.counts().get(&("a".into(), Op::Fsync)), Some(&1));
        m.cut();
        assert_eq!(read_all(&mut m, a), b"one");
    }

    #[test]
    fn a_torn_random_cut_tears_one_dirty_file() {
        let mut m = Model::default();
        let a = file(&mut m, ROOT, "a");
        m.fsync(ROOT).unwrap();
        m.write(a, 0, b"xxxxxxxx").unwrap();
        assert_eq!(m.power_off(Some(5)).as_deref(), Some("a"));
        m.cut();
        let got = read_all(&mut m, a);
        assert!(got.len() < 8 && got.iter().all(|b| *b == b'x'), "{got:?}");
    }
}
