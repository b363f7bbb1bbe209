//! `fieldseal-server export`: plan through the running server's control
//! socket (or the data folder when none runs), then write the package to a
//! temporary file beside the target, reading blobs straight from the data
//! folder, and put it in place without ever overwriting a file.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use fieldseal_proto::identity::{Hash32, Sha256Stream};

use super::{write, ExportError, Plan};
use crate::control::{self, Request, Response};
use crate::datadir::DataDir;

/// A package written by [`to_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Where.
    pub path: PathBuf,
    /// Its length.
    pub bytes: u64,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
    /// The plan it was written from (export id, fingerprints).
    pub plan: Plan,
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256Stream,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Export case `case` of the data folder `data` to `out`; `progress` is
/// told (bytes written, bytes in all) as it goes.
///
/// # Errors
/// `out` exists; no such case; the archive or the file system failed.
pub fn to_file(
    data: &Path,
    case: &str,
    out: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Written, ExportError> {
    if out.symlink_metadata().is_ok() {
        return Err(ExportError::Exists(out.to_owned()));
    }
    let plan = match control::request(
        data,
        Request::ExportPlan {
            case: case.to_owned(),
        },
    ) {
        Ok(Response::Export(p)) => *p,
        Ok(Response::Error { message }) => return Err(ExportError::Archive(message)),
        Ok(other) => return Err(ExportError::Archive(format!("unexpected answer {other:?}"))),
        Err(e) => return Err(ExportError::Archive(e.to_string())),
    };
    let name = out
        .file_name()
        .map_or_else(|| "package".into(), |n| n.to_string_lossy().into_owned());
    let tmp = out.with_file_name(format!(".{name}.part-{}", std::process::id()));
    let res = write_tmp(data, &plan, &tmp, progress).and_then(|(bytes, sha256)| {
        // A hard link fails if `out` appeared meanwhile: never overwrite.
        fs::hard_link(&tmp, out).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => ExportError::Exists(out.to_owned()),
            _ => e.into(),
        })?;
        Ok((bytes, sha256))
    });
    let _ = fs::remove_file(&tmp);
    let (bytes, sha256) = res?;
    if let Some(dir) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(Written {
        path: out.to_owned(),
        bytes,
        sha256,
        plan,
    })
}

fn write_tmp(
    data: &Path,
    plan: &Plan,
    tmp: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(u64, String), ExportError> {
    let f = crate::fsutil::private()
        .write(true)
        .create_new(true)
        .open(tmp)?;
    let dir = DataDir::new(data);
    let open = move |h: &Hash32| -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(File::open(dir.blob(h))?))
    };
    let mut w = Hashing {
        inner: BufWriter::with_capacity(1 << 20, f),
        hash: Sha256Stream::new(),
    };
    let total = plan.len();
    let mut done = 0;
    write(plan, &open, &mut w, &mut |n| {
        done = n;
        progress(n, total);
    })?;
    let Hashing { inner, hash } = w;
    let f = inner.into_inner().map_err(io::IntoInnerError::into_error)?;
    f.sync_all()?;
    Ok((done, hex::encode(hash.finish())))
}
