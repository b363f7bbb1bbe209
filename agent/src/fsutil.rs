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
