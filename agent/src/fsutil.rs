//! Durable file operations on the real filesystem that [`crate::spoolfs`]
//! builds on: its `write_atomic` is the one durable whole-file write.
//!
//! It owns the modes too: every folder the agent makes is 0700 and every
//! file 0600 ([`DIR_MODE`], [`FILE_MODE`]: the folder holds the device key
//! and evidence), and [`check_private`] is what `run` asks before it starts.

use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of every folder the agent makes.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every file the agent makes.
pub const FILE_MODE: u32 = 0o600;

/// Create `dir` and its missing parents with [`DIR_MODE`].
///
/// # Errors
/// I/O errors.
pub fn create_dir_private(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Run `f` (which makes a name the OS takes no mode for: a Unix socket)
/// under the umask 0o077, then put the umask back. Only group and others
/// lose bits, so a file another thread makes meanwhile loses nothing it
/// asked for; a lock keeps two of these from restoring each other's umask.
pub fn with_private_umask<T>(f: impl FnOnce() -> T) -> T {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let out = f();
    rustix::process::umask(old);
    out
}

/// A file or folder other users may read or write, found by [`check_private`].
#[derive(Debug, thiserror::Error)]
#[error(
    "{} is open to other users (mode {mode:o}): run `chmod {fix} {}` (and check its owner)",
    path.display(),
    path.display()
)]
pub struct NotPrivate {
    /// The file or folder.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
    /// The mode to give it: `700` for a folder, `600` for a file.
    pub fix: &'static str,
}

/// Check that none of `paths` that exist gives group or others any access.
/// Missing paths are skipped: whoever needs them says so.
///
/// # Errors
/// [`NotPrivate`] naming the first path found open and the `chmod` that
/// closes it.
pub fn check_private<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Result<(), NotPrivate> {
    for p in paths {
        let Ok(meta) = fs::metadata(p) else { continue };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            let fix = if meta.is_dir() { "700" } else { "600" };
            return Err(NotPrivate {
                path: p.to_path_buf(),
                mode,
                fix,
            });
        }
    }
    Ok(())
}

/// fsync a folder, so that a rename or a new file in it survives power loss.
///
/// # Errors
/// The OS error of opening or syncing the folder.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Create `dir` and any missing parents, and fsync the folder that holds each
/// one created, so that its name survives a power loss (`init`'s data folder).
///
/// # Errors
/// The OS error of creating a folder or syncing its parent.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .collect();
    create_dir_private(dir)?;
    for d in missing {
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => sync_dir(p)?,
            _ => sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}
