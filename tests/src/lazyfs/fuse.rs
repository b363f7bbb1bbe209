//! The [`Model`] served to the kernel through FUSE (the `fuser` crate, its
//! pure-Rust mount: no libfuse, and as root no `fusermount` either).
//!
//! Every request takes the model's lock, does its work and answers. An
//! operation the model says is [`Outcome::Blocked`] (the power is off) is
//! not answered until the test has killed the processes and calls
//! [`Shared::release`]: the process must never learn that an fsync after the
//! cut "succeeded". It is then answered with `EIO` (nobody is left to read
//! it). Several worker threads keep the other requests flowing meanwhile: a
//! process killed with files open sends `flush` requests that must be
//! answered for it to die.

use std::ffi::OsStr;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};

use super::model::{Attr, Kind, Model, Outcome};

/// How long the kernel may cache names and attributes: every change goes
/// through this filesystem, and a cut remounts it, so the cache is never
/// stale.
const TTL: Duration = Duration::from_secs(1);
/// How long a blocked operation waits for the test to kill its process
/// before it is answered with `EIO` anyway (a test that forgot to cut).
const BLOCK_LIMIT: Duration = Duration::from_secs(30);

/// The model and the gate that blocked operations wait at.
#[derive(Debug, Default)]
pub struct Shared {
    model: Mutex<Model>,
    released: Mutex<u64>,
    gate: Condvar,
}

impl Shared {
    /// A filesystem holding `model`.
    pub fn new(model: Model) -> Shared {
        Shared {
            model: Mutex::new(model),
            released: Mutex::new(0),
            gate: Condvar::new(),
        }
    }

    /// The model, locked.
    pub fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answer every blocked operation (with `EIO`): call once the processes
    /// that made them are killed.
    pub fn release(&self) {
        *self.released.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.gate.notify_all();
    }

    /// Wait until [`Shared::release`] is called after `epoch` was read.
    fn block(&self, epoch: u64) {
        let g = self.released.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .gate
            .wait_timeout_while(g, BLOCK_LIMIT, |r| *r == epoch)
            .unwrap_or_else(PoisonError::into_inner);
    }

    fn epoch(&self) -> u64 {
        *self.released.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The FUSE side: a handle on the shared model.
#[derive(Debug)]
pub struct Fs(pub std::sync::Arc<Shared>);

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

fn file_attr(a: &Attr) -> FileAttr {
    let kind = match a.kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Special => special_type(a.mode),
    };
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind,
        perm: u16::try_from(a.mode & 0o7777).unwrap_or(0o600),
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 4096,
        flags: 0,
    }
}

fn special_type(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

fn dirent_type(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Special => FileType::Socket,
    }
}

impl Fs {
    fn model(&self) -> MutexGuard<'_, Model> {
        self.0.model()
    }

    /// Answer a write or fsync: at once, or after the processes are killed.
    fn finish(&self, r: Result<(Outcome, u64), i32>) -> Result<(), Errno> {
        match r {
            Ok((Outcome::Done, _)) => Ok(()),
            Ok((Outcome::Blocked, epoch)) => {
                self.0.block(epoch);
                Err(Errno::EIO)
            }
            Err(e) => Err(errno(e)),
        }
    }
}

impl Fs {
    /// `fsync` and `fsyncdir`: a file's data, or a folder's names, become
    /// durable.
    fn sync(&self, ino: INodeNo, reply: ReplyEmpty) {
        let epoch = self.0.epoch();
        let r = self.model().fsync(ino.0).map(|o| (o, epoch));
        match self.finish(r) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.model().lookup(parent.0, name) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.model().attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut m = self.model();
        if let Some(len) = size {
            if let Err(e) = m.truncate(ino.0, len) {
                return reply.error(errno(e));
            }
        }
        let mtime = mtime.map(|t| match t {
            TimeOrNow::SpecificTime(t) => t,
            TimeOrNow::Now => SystemTime::now(),
        });
        match m.set_attr(ino.0, mode, uid, gid, mtime) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let kind = if mode & libc::S_IFMT == libc::S_IFREG {
            Kind::File
        } else {
            Kind::Special
        };
        let mode = mode & !(umask & 0o777);
        match self
            .model()
            .make(parent.0, name, kind, mode, req.uid(), req.gid(), rdev)
        {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mode = mode & !umask & 0o7777;
        match self
            .model()
            .make(parent.0, name, Kind::Dir, mode, req.uid(), req.gid(), 0)
        {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.model().remove(parent.0, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.model().remove(parent.0, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = self.model().rename(
            parent.0,
            name,
            newparent.0,
            newname,
            flags.contains(RenameFlags::RENAME_NOREPLACE),
            flags.contains(RenameFlags::RENAME_EXCHANGE),
        );
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match self.model().link(ino.0, newparent.0, newname) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut m = self.model();
        if flags.0 & libc::O_TRUNC != 0 {
            if let Err(e) = m.truncate(ino.0, 0) {
                return reply.error(errno(e));
            }
        }
        match m.attr(ino.0) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut m = self.model();
        let made = match m.lookup(parent.0, name) {
            Ok(_) if flags & libc::O_EXCL != 0 => Err(libc::EEXIST),
            Ok(a) => {
                if flags & libc::O_TRUNC != 0 && a.kind == Kind::File {
                    m.truncate(a.ino, 0).and_then(|()| m.attr(a.ino))
                } else {
                    Ok(a)
                }
            }
            Err(_) => m.make(
                parent.0,
                name,
                Kind::File,
                mode & !umask & 0o7777,
                req.uid(),
                req.gid(),
                0,
            ),
        };
        match made {
            Ok(a) => reply.created(
                &TTL,
                &file_attr(&a),
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.model().read(ino.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let epoch = self.0.epoch();
        let r = self.model().write(ino.0, offset, data).map(|o| (o, epoch));
        let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
        match self.finish(r) {
            Ok(()) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(ino, reply);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.model().readdir(ino.0) {
            Ok(e) => e,
            Err(e) => return reply.error(errno(e)),
        };
        let dots = [
            (OsStr::new(".").to_owned(), ino.0, Kind::Dir),
            (OsStr::new("..").to_owned(), ino.0, Kind::Dir),
        ];
        let all = dots.into_iter().chain(entries);
        for (i, (name, child, kind)) in all.enumerate().skip(usize::try_from(offset).unwrap_or(0)) {
            if reply.add(INodeNo(child), i as u64 + 1, dirent_type(kind), &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(ino, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // 16 GiB with half free: the agent's storage policy must not stop
        // recording for want of space (that is another scenario).
        reply.statfs(1 << 22, 1 << 21, 1 << 21, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::from_i32(libc::ENODATA));
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(Errno::from_i32(libc::EOPNOTSUPP));
        }
        let mut m = self.model();
        let r = m.attr(ino.0).and_then(|a| {
            let end = offset + length;
            if end > a.size {
                m.truncate(ino.0, end)
            } else {
                Ok(())
            }
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }
}
