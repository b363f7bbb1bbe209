//! The agent's one reader of `DIR/chain.log`, over [`SpoolFs`].
//!
//! The records are framed as proto's [`fieldseal_proto::chainlog`] says
//! (`len u16 || signed entry`, docs/FORMAT.md §9), and proto owns the header
//! size ([`RECORD_HEADER`]). Three parts of the agent read the log: the spool
//! when it opens (head, torn tail, damage), the sled index when it catches up
//! and the sync store when it follows new entries and fetches one to send.
//! They all read through this module, and through [`SpoolFs`], so the
//! power-loss twin ([`crate::spoolfs::MemFs`]) exercises each of them.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use fieldseal_proto::chainlog::{self, RECORD_HEADER};
use fieldseal_proto::codec::DecodeError;

use crate::spoolfs::SpoolFs;

/// File name of the chain log in the data folder.
pub const CHAIN_LOG: &str = "chain.log";

/// Path of the chain log in data folder `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(CHAIN_LOG)
}

/// One whole record of a chain log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Offset of the record (its header) in the file.
    pub offset: u64,
    /// The signed entry it holds, not yet decoded.
    pub bytes: &'a [u8],
}

impl Record<'_> {
    /// Offset just past the record: where the next one starts.
    pub fn end(&self) -> u64 {
        self.offset + (RECORD_HEADER + self.bytes.len()) as u64
    }
}

/// What a chain log holds from some offset on.
#[derive(Debug, Clone, Default)]
pub struct LogRead {
    /// Offset in the file where the read began.
    start: u64,
    bytes: Vec<u8>,
    /// The entries' bytes within `bytes`, in file order.
    records: Vec<Range<usize>>,
    /// Length of the prefix of `bytes` made of whole records.
    complete_len: usize,
    torn_tail: usize,
    damage: Option<DecodeError>,
}

impl LogRead {
    /// The whole records, in file order.
    pub fn records(&self) -> impl DoubleEndedIterator<Item = Record<'_>> + '_ {
        self.records.iter().map(|r| Record {
            offset: self.start + (r.start - RECORD_HEADER) as u64,
            bytes: &self.bytes[r.clone()],
        })
    }

    /// The last whole record.
    pub fn last(&self) -> Option<Record<'_>> {
        self.records().next_back()
    }

    /// Offset in the file just past the last whole record (the read's start
    /// when there is none): where a torn tail or damage begins, and where the
    /// next read of new appends starts.
    pub fn end(&self) -> u64 {
        self.start + self.complete_len as u64
    }

    /// Bytes after the last whole record that make no whole record: a torn
    /// final append (0 when the reading stopped at damage).
    pub fn torn_tail(&self) -> usize {
        self.torn_tail
    }

    /// Why the reading stopped before the end of the file, if a record length
    /// was impossible there (the damage starts at [`LogRead::end`]).
    pub fn damage(&self) -> Option<&DecodeError> {
        self.damage.as_ref()
    }
}

/// Read the chain log at `path` from byte `offset` (the start of a record)
/// to its end. A missing file reads as empty.
///
/// # Errors
/// The OS error of reading it. Damage is not an error here: see
/// [`LogRead::damage`].
pub fn read_from(fs: &dyn SpoolFs, path: &Path, offset: u64) -> io::Result<LogRead> {
    let bytes = match fs.read_from(path, offset) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let (log, damage) = chainlog::split_lossy(&bytes);
    // The records are contiguous from the start of `bytes`.
    let mut records = Vec::with_capacity(log.records.len());
    let mut at = 0;
    for r in &log.records {
        let from = at + RECORD_HEADER;
        records.push(from..from + r.len());
        at = from + r.len();
    }
    debug_assert_eq!(at, log.complete_len);
    let (complete_len, torn_tail) = (log.complete_len, log.torn_tail);
    Ok(LogRead {
        start: offset,
        bytes,
        records,
        complete_len,
        torn_tail,
        damage,
    })
}

/// The signed entry of the record at `offset` of the chain log at `path`:
/// its header, then exactly the bytes the header announces.
///
/// # Errors
/// The OS error; `UnexpectedEof` if the file ends inside the record;
/// `InvalidData` if no record starts at `offset`.
pub fn read_record(fs: &dyn SpoolFs, path: &Path, offset: u64) -> io::Result<Vec<u8>> {
    let header = fs.read_at(path, offset, RECORD_HEADER)?;
    let header: [u8; RECORD_HEADER] = header
        .as_slice()
        .try_into()
        .map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    let len =
        chainlog::record_len(header).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    fs.read_at(path, offset + RECORD_HEADER as u64, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spoolfs::{MemFs, SpoolFs};

    fn log_of(records: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            chainlog::put_record(&mut out, r);
        }
        out
    }

    fn mem_with(bytes: &[u8]) -> (MemFs, PathBuf) {
        let fs = MemFs::new(1);
        let dir = PathBuf::from("/d");
        fs.create_dir_all(&dir).unwrap();
        let p = path(&dir);
        let mut f = fs.create(&p).unwrap();
        f.write_all(bytes).unwrap();
        (fs, p)
    }

    #[test]
    fn records_carry_their_offsets_and_a_read_can_resume_at_the_end() {
        let mut bytes = log_of(&[b"first", b"second"]);
        let whole = bytes.len() as u64;
        bytes.extend_from_slice(&[0, 9, b'x']);
        let (fs, p) = mem_with(&bytes);
        let log = read_from(&fs, &p, 0).unwrap();
        let recs: Vec<_> = log.records().collect();
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].offset, recs[0].bytes), (0, b"first".as_slice()));
        assert_eq!(recs[1].offset, recs[0].end());
        assert_eq!(recs[1].end(), whole);
        assert_eq!((log.end(), log.torn_tail()), (whole, 3));
        assert!(log.damage().is_none());
        // From the second record on; and nothing new past the end.
        let tail = read_from(&fs, &p, recs[1].offset).unwrap();
        assert_eq!(tail.last().unwrap().bytes, b"second");
        assert_eq!(tail.last().unwrap().offset, recs[1].offset);
        let none = read_from(&fs, &p, whole).unwrap();
        assert_eq!((none.records().count(), none.end()), (0, whole));
        assert_eq!(read_record(&fs, &p, recs[1].offset).unwrap(), b"second");
    }

    #[test]
    fn a_missing_log_is_empty_and_damage_stops_the_reading() {
        let fs = MemFs::new(1);
        let empty = read_from(&fs, Path::new("/none/chain.log"), 0).unwrap();
        assert_eq!((empty.records().count(), empty.end()), (0, 0));
        let mut bytes = log_of(&[b"ok"]);
        let at = bytes.len() as u64;
        bytes.extend_from_slice(&[0, 0, 1, 2]);
        let (fs, p) = mem_with(&bytes);
        let log = read_from(&fs, &p, 0).unwrap();
        assert_eq!(log.records().count(), 1);
        assert_eq!(log.end(), at);
        assert!(log.damage().is_some());
        assert_eq!(log.torn_tail(), 0);
        let e = read_record(&fs, &p, at).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
