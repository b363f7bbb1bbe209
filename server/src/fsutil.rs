//! Durable file writes on a local file system: the one place that knows
//! what makes a create, an append or a rename survive a power cut (the
//! write order of `docs/DESIGN.md`: data fsynced, then the folder fsynced
//! after a create or rename).
//!
//! It also owns the modes: every folder it makes is 0700 and every file
//! 0600 ([`DIR_MODE`], [`FILE_MODE`]), set when the name is made, so no
//! other user can read a key, a blob or the index for an instant; and
//! [`check_private`] is what `run` asks before it starts on a folder.
//!
//! What it does not do: know the data folder's layout (`datadir.rs`), frame
//! records (`fieldseal_proto::chainlog`) or recover from a failed fsync
//! (callers decide; `leaflog.rs` refuses later appends).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of every folder the server makes: the owner's alone.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every file the server makes: the owner's alone (the data
/// folder holds keys, the admin's password hash and evidence).
pub const FILE_MODE: u32 = 0o600;

/// `OpenOptions` that create a file with [`FILE_MODE`]; add `write`,
/// `append`, `create`… as usual.
pub fn private() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Create `dir` and its missing parents with [`DIR_MODE`] (not durable: see
/// [`create_dir_durable`]).
///
/// # Errors
/// I/O errors.
pub fn create_dir_private(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Run `f` (which makes a name the OS gives no mode argument for: a Unix
/// socket) with the umask 0o077, so that the name is the owner's alone
/// from its first instant; the umask is then put back. Only group and
/// others lose bits, so another thread creating a file meanwhile gets
/// nothing it would not have asked for; a lock keeps two of these from
/// restoring each other's umask.
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

/// A file or folder that other users may read or write, found by
/// [`check_private`].
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

/// Check that none of `paths` that exist gives group or others any access
/// (mode & 0o077 == 0). Missing paths are skipped: whoever needs them says so.
///
/// # Errors
/// [`NotPrivate`] naming the first path found open, and the `chmod` that
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

/// fsync a folder, so that a create or rename in it survives a power loss.
///
/// # Errors
/// I/O errors.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Create `dir` (and its missing parents) with [`DIR_MODE`], and make each
/// new name durable in its parent, outermost first. A folder that exists is
/// left alone.
///
/// # Errors
/// I/O errors.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .collect();
    create_dir_private(dir)?;
    for d in missing.iter().rev() {
        sync_folder_of(d)?;
    }
    Ok(())
}

/// Create the new file `path` holding `data` with [`FILE_MODE`]: written,
/// fsynced, then its folder fsynced, so that after a power cut it is either
/// absent or whole. Certificates and public keys are 0600 too: the owner
/// hands them out.
///
/// # Errors
/// [`io::ErrorKind::AlreadyExists`] if it exists (nothing is overwritten);
/// I/O errors.
pub fn create_durable(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = private().write(true).create_new(true).open(path)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    sync_folder_of(path)
}

/// Append `data` to `path` (created if missing) and fsync it; after a
/// create, fsync the folder too.
///
/// # Errors
/// I/O errors: the bytes may then be partly written, and the caller must
/// not count them as durable.
pub fn append_durable(path: &Path, data: &[u8]) -> io::Result<()> {
    let new = !path.exists();
    let mut f = private().create(true).append(true).open(path)?;
    f.write_all(data)?;
    f.sync_data()?;
    if new {
        sync_folder_of(path)?;
    }
    Ok(())
}

/// Put `data` in place of `path` (made if missing): written to a temp file
/// beside it and fsynced, renamed over it, then the folder fsynced, so that
/// after a power cut `path` holds either the old bytes or the new ones,
/// whole. A temp file left by a crash is overwritten by the next call.
///
/// # Errors
/// I/O errors: `path` then still holds what it held.
pub fn replace_durable(path: &Path, data: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut f = private()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_folder_of(path)
}

/// fsync the folder that holds `path`.
///
/// # Errors
/// I/O errors.
pub fn sync_folder_of(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => sync_dir(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Modes come from the call, not the umask: made under umask 0 they
    /// are still the owner's alone.
    #[test]
    fn folders_and_files_are_private_whatever_the_umask() {
        let d = tempfile::tempdir().unwrap();
        let old = rustix::process::umask(rustix::fs::Mode::empty());
        let a = d.path().join("a/b");
        create_dir_durable(&a).unwrap();
        append_durable(&a.join("log"), b"x").unwrap();
        private()
            .write(true)
            .create(true)
            .open(a.join("f"))
            .unwrap();
        rustix::process::umask(old);
        for p in [d.path().join("a"), a.clone(), a.join("log"), a.join("f")] {
            let m = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(m & 0o077, 0, "{}: {m:o}", p.display());
        }
        check_private([d.path().join("a").as_path(), a.as_path()]).unwrap();
        fs::set_permissions(&a, fs::Permissions::from_mode(0o755)).unwrap();
        let e = check_private([a.as_path()]).unwrap_err().to_string();
        assert!(e.contains(&format!("chmod 700 {}", a.display())), "{e}");
    }

    #[test]
    fn create_refuses_to_overwrite_and_keeps_secrets_private() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key");
        create_durable(&p, b"secret").unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = create_durable(&p, b"other").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"secret");
    }

    #[test]
    fn replace_puts_new_bytes_in_place_privately() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("summary.json");
        replace_durable(&p, b"one").unwrap();
        replace_durable(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("summary.json")],
            "no temp file left"
        );
    }

    #[test]
    fn append_creates_then_appends() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b/log");
        create_dir_durable(p.parent().unwrap()).unwrap();
        create_dir_durable(p.parent().unwrap()).unwrap();
        append_durable(&p, b"one ").unwrap();
        append_durable(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one two");
    }
}
