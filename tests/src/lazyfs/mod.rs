//! A power-cut filesystem in the style of Jepsen's LazyFS (issue 13): a FUSE
//! filesystem, served from a thread of the test process, that keeps written
//! data in memory until the file is fsynced and a new name until its folder
//! is fsynced, and that can lose all of it at a "cut", cleanly or with the
//! last unsynced write of one file torn to a prefix.
//!
//! The semantics are those of [`model`] (read its doc); `fuse.rs` serves it.
//! A [`LazyFs`] is mounted on a folder; its disk is a plain folder (the
//! backing store): the durable side is loaded from it at mount and written
//! back to it at every cut, so that after a cut it holds exactly what a disk
//! would, for anyone who wants to look.
//!
//! A cut, as a scenario makes it:
//!
//! 1. the power goes: at the armed operation ([`LazyFs::arm`], the n-th
//!    write or fsync of a path) or now ([`LazyFs::power_off`]). From then on
//!    nothing becomes durable, and every fsync (and the armed operation) is
//!    left unanswered, so that no process acts on it;
//! 2. [`LazyFs::cut`] kills the processes using the folder (SIGKILL; the
//!    scenario hands them over), answers what was left waiting, unmounts,
//!    drops everything that was not durable and mounts again.
//!
//! Needs `/dev/fuse` and the right to mount (root, as in CI): [`LazyFs::mount`]
//! says why not otherwise, and the scenario is skipped loudly.

mod fuse;
pub mod model;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use model::{CutAt, Model, Op};

/// Worker threads serving the filesystem: an fsync left waiting after a cut
/// holds one, and the kernel needs others to answer the `flush` of every
/// file a killed process had open, or it cannot die.
const THREADS: usize = 16;

/// A mounted power-cut filesystem. Unmounted on drop.
#[derive(Debug)]
pub struct LazyFs {
    mountpoint: PathBuf,
    backing: PathBuf,
    shared: Arc<fuse::Shared>,
    session: Option<fuser::BackgroundSession>,
    cuts: u64,
}

/// Why the filesystem cannot be mounted here (the scenario is skipped).
pub fn unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is absent (no FUSE in this kernel or container)".into());
    }
    None
}

impl LazyFs {
    /// Mount on `mountpoint` (created if missing) a filesystem whose disk is
    /// the folder `backing` (created if missing; what it holds is the
    /// filesystem's durable content).
    ///
    /// # Errors
    /// Why it could not be mounted.
    pub fn mount(mountpoint: &Path, backing: &Path) -> Result<LazyFs, String> {
        if let Some(why) = unavailable() {
            return Err(why);
        }
        std::fs::create_dir_all(mountpoint).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(backing).map_err(|e| e.to_string())?;
        let model = load(backing).map_err(|e| format!("{}: {e}", backing.display()))?;
        let mut fs = LazyFs {
            mountpoint: mountpoint.to_path_buf(),
            backing: backing.to_path_buf(),
            shared: Arc::new(fuse::Shared::new(model)),
            session: None,
            cuts: 0,
        };
        fs.start()?;
        Ok(fs)
    }

    fn start(&mut self) -> Result<(), String> {
        let mut cfg = fuser::Config::default();
        cfg.mount_options = vec![
            fuser::MountOption::FSName("lazyfs".into()),
            fuser::MountOption::Subtype("fieldseal-powercut".into()),
            fuser::MountOption::Dev,
            fuser::MountOption::Suid,
        ];
        cfg.acl = fuser::SessionACL::All;
        cfg.n_threads = Some(THREADS);
        cfg.clone_fd = true;
        let s = fuser::spawn_mount(fuse::Fs(self.shared.clone()), &self.mountpoint, &cfg)
            .map_err(|e| format!("mounting FUSE on {}: {e}", self.mountpoint.display()))?;
        self.session = Some(s);
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Cuts made so far.
    pub fn cuts(&self) -> u64 {
        self.cuts
    }

    /// Arm a cut at an exact operation (counts restart from zero).
    pub fn arm(&self, cut: CutAt) {
        self.shared.model().arm(cut);
    }

    /// The power goes now; with `torn`, one file with unsynced writes
    /// (chosen by the seed) has its last write torn. Returns the torn file.
    pub fn power_off(&self, torn: Option<u64>) -> Option<String> {
        self.shared.model().power_off(torn)
    }

    /// What the cut was, once the power is off.
    pub fn off(&self) -> Option<String> {
        self.shared.model().off().map(str::to_string)
    }

    /// Wait until the power is off (the armed cut fired), at most `limit`.
    pub fn wait_off(&self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(o) = self.off() {
                return Some(o);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Writes and fsyncs per path since the last arm or cut.
    pub fn counts(&self) -> BTreeMap<(String, Op), u64> {
        self.shared.model().counts().clone()
    }

    /// Forget the counts.
    pub fn reset_counts(&self) {
        self.shared.model().reset_counts();
    }

    /// Cut the power (now, if it is not off yet): SIGKILL `procs`, answer
    /// what they left waiting, unmount, drop what was not durable, write the
    /// disk to the backing folder and mount again. Returns what the cut was.
    ///
    /// # Errors
    /// The remount failed.
    pub fn cut(&mut self, procs: &mut [&mut Child]) -> Result<String, String> {
        let what = {
            let mut m = self.shared.model();
            if m.off().is_none() {
                m.power_off(None);
            }
            m.off().unwrap_or_default().to_string()
        };
        for p in procs.iter_mut() {
            let _ = p.kill();
        }
        self.shared.release();
        for p in procs.iter_mut() {
            let _ = p.wait();
        }
        self.stop();
        self.shared.model().cut();
        self.cuts += 1;
        save(&self.shared.model(), &self.backing).map_err(|e| e.to_string())?;
        self.start()?;
        Ok(what)
    }

    /// Bytes the model holds in memory.
    pub fn bytes(&self) -> usize {
        self.shared.model().bytes()
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        self.shared.release();
        self.stop();
    }
}

/// The model of a folder's content, all of it durable.
fn load(dir: &Path) -> std::io::Result<Model> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir)?;
    let mut m = Model::new(meta.mode() & 0o7777, meta.uid(), meta.gid());
    let mut stack = vec![(dir.to_path_buf(), model::ROOT)];
    while let Some((path, ino)) = stack.pop() {
        for e in std::fs::read_dir(&path)? {
            let e = e?;
            let meta = e.metadata()?;
            let mode = meta.mode() & 0o7777;
            let name = e.file_name();
            if meta.is_dir() {
                let a = m
                    .make(
                        ino,
                        &name,
                        model::Kind::Dir,
                        mode,
                        meta.uid(),
                        meta.gid(),
                        0,
                    )
                    .map_err(std::io::Error::from_raw_os_error)?;
                stack.push((e.path(), a.ino));
            } else if meta.is_file() {
                let a = m
                    .make(
                        ino,
                        &name,
                        model::Kind::File,
                        mode,
                        meta.uid(),
                        meta.gid(),
                        0,
                    )
                    .map_err(std::io::Error::from_raw_os_error)?;
                m.write(a.ino, 0, &std::fs::read(e.path())?)
                    .map_err(std::io::Error::from_raw_os_error)?;
                m.fsync(a.ino).map_err(std::io::Error::from_raw_os_error)?;
            }
        }
        m.fsync(ino).map_err(std::io::Error::from_raw_os_error)?;
    }
    m.reset_counts();
    Ok(m)
}

/// Write the durable side of `m` to `dir`, replacing what it held.
fn save(m: &Model, dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    for (path, data, mode) in m.durable_image() {
        let p = dir.join(&path);
        match data {
            None => std::fs::create_dir_all(&p)?,
            Some(d) => {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&p, d)?;
            }
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_saved_and_loaded_again_is_the_same_disk() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        std::fs::create_dir_all(a.join("sub")).unwrap();
        std::fs::write(a.join("sub/f"), b"data").unwrap();
        let m = load(&a).unwrap();
        let b = t.path().join("b");
        std::fs::create_dir_all(&b).unwrap();
        save(&m, &b).unwrap();
        assert_eq!(std::fs::read(b.join("sub/f")).unwrap(), b"data");
        assert_eq!(load(&b).unwrap().durable_image(), m.durable_image());
    }
}
