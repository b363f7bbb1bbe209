//! Writing a [`Plan`] as a ustar file: headers and small members from the
//! plan, segment bytes from the blob store in chunks, each checked against
//! its hash before the member is complete (a damaged blob stops the export
//! rather than ship a package that cannot verify).
//!
//! The blobs are read and hashed on a thread of their own, a few chunks
//! ahead of the writes, so that checking a segment overlaps writing the one
//! before it (on 2 cores, with the package hashed on a third thread by the
//! file writer, this is what brings the export near `tar`'s rate).

use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use base64::Engine;
use fieldseal_proto::identity::{Hash32, Sha256Stream};
use fieldseal_proto::ustar;

use super::{ExportError, Plan, PlanMember};

/// Opens the blob of a hash for reading: the blob store of a running
/// server, or the data folder's blob path for the command line (which must
/// not open the store itself while a server runs).
pub type BlobOpener<'a> = &'a (dyn Fn(&Hash32) -> io::Result<Box<dyn Read + Send>> + Sync);

/// Chunk size of the copy: big enough that syscalls do not dominate, small
/// enough for a progress bar to move smoothly.
const CHUNK: usize = 1 << 20;

/// Chunks the reader may be ahead of the writer: enough to ride out a slow
/// write or a slow open, `AHEAD` MiB of memory at most.
const AHEAD: usize = 8;

/// What the reader hands the writer, member by member, in plan order.
enum Piece {
    /// The next bytes of the current blob member.
    Chunk(Vec<u8>),
    /// The current blob member is complete: `Ok` once every byte was read
    /// and hashed to the member's name and length.
    End(Result<(), ExportError>),
}

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
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel(AHEAD);
        let (spare_tx, spare_rx) = mpsc::channel();
        let reader = s.spawn(move || read_blobs(plan, open, &tx, &spare_rx));
        let res = write_members(plan, out, progress, &rx, &spare_tx);
        // On an error the reader stops at its next send.
        drop(rx);
        match reader.join() {
            Ok(()) => res,
            Err(_) => res.and(Err(ExportError::Archive("the blob reader panicked".into()))),
        }
    })
}

fn write_members(
    plan: &Plan,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
    pieces: &Receiver<Piece>,
    spare: &Sender<Vec<u8>>,
) -> Result<(), ExportError> {
    let mtime = u64::try_from(plan.created_us / 1_000_000).unwrap_or(0);
    let mut done = 0u64;
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
            None => {
                let mut n = 0u64;
                loop {
                    match pieces.recv() {
                        Ok(Piece::Chunk(buf)) => {
                            out.write_all(&buf)?;
                            n += buf.len() as u64;
                            progress(done + n);
                            // The reader may have finished: then the buffer is freed.
                            let _ = spare.send(buf);
                        }
                        Ok(Piece::End(r)) => break r?,
                        Err(_) => {
                            return Err(ExportError::Archive("the blob reader stopped".into()))
                        }
                    }
                }
            }
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

/// The reader thread: every blob member of the plan in order, as chunks
/// followed by an end. Stops at the first damaged member, or when the
/// writer is gone.
fn read_blobs(
    plan: &Plan,
    open: BlobOpener<'_>,
    pieces: &SyncSender<Piece>,
    spare: &Receiver<Vec<u8>>,
) {
    for m in plan.members.iter().filter(|m| m.bytes.is_none()) {
        let end = read_blob(m, open, pieces, spare);
        let failed = end.is_err();
        if pieces.send(Piece::End(end)).is_err() || failed {
            return;
        }
    }
}

fn read_blob(
    m: &PlanMember,
    open: BlobOpener<'_>,
    pieces: &SyncSender<Piece>,
    spare: &Receiver<Vec<u8>>,
) -> Result<(), ExportError> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&m.sha256, &mut hash)
        .map_err(|_| ExportError::Archive(format!("plan member {}: bad hash", m.name)))?;
    let mut r = open(&hash)?;
    let (mut h, mut n) = (Sha256Stream::new(), 0u64);
    loop {
        let mut buf = spare.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
        let k = fill(&mut r, &mut buf)?;
        if k == 0 {
            break;
        }
        n += k as u64;
        if n > m.size {
            return Err(ExportError::Damaged(m.sha256.clone()));
        }
        buf.truncate(k);
        h.update(&buf);
        if pieces.send(Piece::Chunk(buf)).is_err() {
            // The writer failed; it reports why.
            return Ok(());
        }
    }
    if n != m.size || h.finish() != hash {
        return Err(ExportError::Damaged(m.sha256.clone()));
    }
    Ok(())
}

/// Read into the whole of `buf` (grown back to a full chunk) unless the
/// blob ends first; the number of bytes read.
fn fill(r: &mut dyn Read, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.resize(CHUNK, 0);
    let mut k = 0;
    while k < buf.len() {
        match r.read(&mut buf[k..]) {
            Ok(0) => break,
            Ok(n) => k += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::{self, Read};

    use base64::Engine;
    use fieldseal_proto::identity::{sha256, Hash32};
    use fieldseal_proto::ustar;

    use super::{write, ExportError, Plan, PlanMember, CHUNK};

    fn blob(name: &str, data: &[u8]) -> PlanMember {
        PlanMember {
            name: name.into(),
            size: data.len() as u64,
            sha256: hex::encode(sha256(data)),
            bytes: None,
        }
    }

    fn small(name: &str, data: &[u8]) -> PlanMember {
        PlanMember {
            name: name.into(),
            size: data.len() as u64,
            sha256: hex::encode(sha256(data)),
            bytes: Some(base64::engine::general_purpose::STANDARD.encode(data)),
        }
    }

    fn plan(members: Vec<PlanMember>) -> Plan {
        Plan {
            case: "C".into(),
            export_id: "e".into(),
            created_us: 1_700_000_000_000_000,
            members,
            fingerprints: Default::default(),
        }
    }

    /// Blobs of several chunks, one empty, one of a chunk and a byte, and
    /// small members between them.
    fn sample() -> (Plan, HashMap<Hash32, Vec<u8>>) {
        let bytes = |n: usize, k: u8| {
            (0..n)
                .map(|i| u8::try_from(i % 251).unwrap() ^ k)
                .collect::<Vec<u8>>()
        };
        let blobs = [
            bytes(3 * CHUNK + 17, 1),
            Vec::new(),
            bytes(CHUNK + 1, 2),
            bytes(5, 3),
        ];
        let mut members = vec![small("README.txt", b"hello")];
        for (i, b) in blobs.iter().enumerate() {
            members.push(blob(&format!("media/{i}.ts"), b));
            members.push(small(&format!("entries/{i}"), &bytes(i * 700, 4)));
        }
        let store = blobs.into_iter().map(|b| (sha256(&b), b)).collect();
        (plan(members), store)
    }

    /// The package as a plain loop would write it: header, bytes, padding.
    fn expected(plan: &Plan, store: &HashMap<Hash32, Vec<u8>>) -> Vec<u8> {
        let mtime = u64::try_from(plan.created_us / 1_000_000).unwrap();
        let mut out = Vec::new();
        for m in &plan.members {
            out.extend(ustar::header(&m.name, m.size, mtime).unwrap());
            match &m.bytes {
                Some(b) => out.extend(base64::engine::general_purpose::STANDARD.decode(b).unwrap()),
                None => {
                    let mut h = [0u8; 32];
                    hex::decode_to_slice(&m.sha256, &mut h).unwrap();
                    out.extend(&store[&h]);
                }
            }
            out.extend(vec![0u8; ustar::padding(m.size)]);
        }
        out.extend(ustar::TRAILER);
        out
    }

    fn export(plan: &Plan, open: super::BlobOpener<'_>) -> (Result<(), ExportError>, Vec<u8>) {
        let mut out = Vec::new();
        let mut last = 0;
        let r = write(plan, open, &mut out, &mut |n| {
            assert!(n >= last, "progress went back from {last} to {n}");
            last = n;
        });
        (r, out)
    }

    #[test]
    fn the_reader_thread_keeps_every_byte_in_plan_order() {
        let (plan, store) = sample();
        let open = |h: &Hash32| -> io::Result<Box<dyn Read + Send>> {
            Ok(Box::new(io::Cursor::new(store[h].clone())))
        };
        let (r, out) = export(&plan, &open);
        r.unwrap();
        assert_eq!(out.len() as u64, plan.len());
        assert!(out == expected(&plan, &store), "the package bytes differ");
    }

    /// A blob that reads back other bytes, one byte short, one byte long,
    /// or fails to open stops the export with the member named, and the
    /// members after it are never written.
    #[test]
    fn a_damaged_or_missing_blob_stops_the_export_at_that_member() {
        let (plan, store) = sample();
        let bad = plan.members[5].sha256.clone(); // media/2.ts, a chunk and a byte
        let mut h = [0u8; 32];
        hex::decode_to_slice(&bad, &mut h).unwrap();
        let good = &store[&h];
        let mut flipped = good.clone();
        flipped[CHUNK] ^= 1;
        let mut long = good.clone();
        long.push(0);
        let cases: [(&str, Option<Vec<u8>>); 4] = [
            ("flipped", Some(flipped)),
            ("short", Some(good[..good.len() - 1].to_vec())),
            ("long", Some(long)),
            ("missing", None),
        ];
        for (what, damaged) in cases {
            let open = |k: &Hash32| -> io::Result<Box<dyn Read + Send>> {
                if *k != h {
                    return Ok(Box::new(io::Cursor::new(store[k].clone())));
                }
                match &damaged {
                    Some(d) => Ok(Box::new(io::Cursor::new(d.clone()))),
                    None => Err(io::Error::new(io::ErrorKind::NotFound, "no blob")),
                }
            };
            let (r, out) = export(&plan, &open);
            match (what, r) {
                ("missing", Err(ExportError::Io(e))) => {
                    assert_eq!(e.kind(), io::ErrorKind::NotFound)
                }
                (_, Err(ExportError::Damaged(name))) => assert_eq!(name, bad, "{what}"),
                (_, other) => panic!("{what}: {other:?}"),
            }
            let next = "entries/2";
            assert!(
                !out.windows(next.len()).any(|w| w == next.as_bytes()),
                "{what}: a member after the damaged one was written"
            );
        }
    }

    /// A writer that fails stops the reader too (the scope would hang on a
    /// reader blocked on a full channel otherwise).
    #[test]
    fn a_failing_writer_ends_the_export_with_its_error() {
        struct Full(usize);
        impl io::Write for Full {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                if self.0 < b.len() {
                    return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
                }
                self.0 -= b.len();
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (plan, store) = sample();
        let open = |h: &Hash32| -> io::Result<Box<dyn Read + Send>> {
            Ok(Box::new(io::Cursor::new(store[h].clone())))
        };
        let r = write(&plan, &open, &mut Full(CHUNK), &mut |_| {});
        match r {
            Err(ExportError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::StorageFull),
            other => panic!("{other:?}"),
        }
    }
}
