//! Writing a [`Plan`] as a ustar file: headers and small members from the
//! plan, segment bytes from the blob store in chunks, each checked against
//! its hash before the member is complete (a damaged blob stops the export
//! rather than ship a package that cannot verify).

use std::io::{self, Read, Write};

use base64::Engine;
use fieldseal_proto::identity::{Hash32, Sha256Stream};
use fieldseal_proto::ustar;

use super::{ExportError, Plan};

/// Opens the blob of a hash for reading: the blob store of a running
/// server, or the data folder's blob path for the command line (which must
/// not open the store itself while a server runs).
pub type BlobOpener<'a> = &'a (dyn Fn(&Hash32) -> io::Result<Box<dyn Read + Send>> + Sync);

/// Chunk size of the copy: big enough that syscalls do not dominate, small
/// enough for a progress bar to move smoothly.
const CHUNK: usize = 1 << 20;

/// Write the package of `plan` to `out`; `progress` is told the bytes
/// written so far after each chunk.
///
/// # Errors
/// I/O errors; [`ExportError::Damaged`] for a blob that does not hash to
/// its name or length.
pub fn write(
    plan: &Plan,
    open: BlobOpener<'_>,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<(), ExportError> {
    let mtime = u64::try_from(plan.created_us / 1_000_000).unwrap_or(0);
    let mut done = 0u64;
    let mut buf = vec![0u8; CHUNK];
    for m in &plan.members {
        let bad_name = |e: ustar::TarError| ExportError::Archive(e.to_string());
        out.write_all(&ustar::header(&m.name, m.size, mtime).map_err(bad_name)?)?;
        done += ustar::BLOCK as u64;
        match &m.bytes {
            Some(b64) => {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| ExportError::Archive(format!("plan member {}: {e}", m.name)))?;
                out.write_all(&data)?;
            }
            None => copy_blob(m, open, out, &mut buf, &mut |n| progress(done + n))?,
        }
        let pad = ustar::padding(m.size);
        out.write_all(&[0u8; ustar::BLOCK][..pad])?;
        done += m.size + pad as u64;
        progress(done);
    }
    out.write_all(&ustar::TRAILER)?;
    progress(done + ustar::TRAILER.len() as u64);
    out.flush()?;
    Ok(())
}

fn copy_blob(
    m: &super::PlanMember,
    open: BlobOpener<'_>,
    out: &mut dyn Write,
    buf: &mut [u8],
    progress: &mut dyn FnMut(u64),
) -> Result<(), ExportError> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&m.sha256, &mut hash)
        .map_err(|_| ExportError::Archive(format!("plan member {}: bad hash", m.name)))?;
    let mut r = open(&hash)?;
    let (mut h, mut n) = (Sha256Stream::new(), 0u64);
    loop {
        let k = match r.read(buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        n += k as u64;
        if n > m.size {
            return Err(ExportError::Damaged(m.sha256.clone()));
        }
        h.update(&buf[..k]);
        out.write_all(&buf[..k])?;
        progress(n);
    }
    if n != m.size || h.finish() != hash {
        return Err(ExportError::Damaged(m.sha256.clone()));
    }
    Ok(())
}
