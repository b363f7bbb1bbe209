//! Durable file writes on a local file system: the one place that knows
//! what makes a create, an append or a rename survive a power cut (the
//! write order of `docs/DESIGN.md`: data fsynced, then the folder fsynced
//! after a create or rename).
//!
//! What it does not do: know the data folder's layout (`datadir.rs`), frame
//! records (`fieldseal_proto::chainlog`) or recover from a failed fsync
//! (callers decide; `leaflog.rs` refuses later appends).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// fsync a folder, so that a create or rename in it survives a power loss.
///
/// # Errors
/// I/O errors.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Create `dir` (and its missing parents), and make each new name durable
/// in its parent, outermost first. A folder that exists is left alone.
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
    fs::create_dir_all(dir)?;
    for d in missing.iter().rev() {
        sync_folder_of(d)?;
    }
    Ok(())
}

/// Who may read a file written by [`create_durable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The process's umask decides (certificates, public keys, config).
    Public,
    /// The owner alone (mode 0600): private keys.
    OwnerOnly,
}

/// Create the new file `path` holding `data`: written, fsynced, then its
/// folder fsynced, so that after a power cut it is either absent or whole.
///
/// # Errors
/// [`io::ErrorKind::AlreadyExists`] if it exists (nothing is overwritten);
/// I/O errors.
pub fn create_durable(path: &Path, data: &[u8], access: Access) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    if access == Access::OwnerOnly {
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
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
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(data)?;
    f.sync_data()?;
    if new {
        sync_folder_of(path)?;
    }
    Ok(())
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
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_refuses_to_overwrite_and_keeps_secrets_private() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key");
        create_durable(&p, b"secret", Access::OwnerOnly).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = create_durable(&p, b"other", Access::Public).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"secret");
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
