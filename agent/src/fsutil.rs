//! Durable file operations on the real filesystem that [`crate::spoolfs`]
//! builds on: its `write_atomic` is the one durable whole-file write.

use std::fs::File;
use std::io;
use std::path::Path;

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
    std::fs::create_dir_all(dir)?;
    for d in missing {
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => sync_dir(p)?,
            _ => sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}
