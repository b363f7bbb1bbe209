//! The chain log: how signed entries are laid end to end in a file (the agent's
//! `chain.log`, an export package's `chain.log`).
//!
//! ```text
//! record = len u16 || signed entry [len]        repeated; see docs/FORMAT.md §9
//! ```
//!
//! The length prefix lets a reader skip a damaged record and go on (so that
//! one flipped bit costs one entry, not the rest of the file), and tells a torn
//! final record (power loss mid-append) from a complete one.

use crate::codec::{DecodeError, Reader};
use crate::entry::MAX_SIGNED_ENTRY;

/// Append one record to `out`.
///
/// # Panics
/// If `signed_entry` is longer than [`MAX_SIGNED_ENTRY`], which no encoder in
/// this crate produces.
pub fn put_record(out: &mut Vec<u8>, signed_entry: &[u8]) {
    assert!(signed_entry.len() <= MAX_SIGNED_ENTRY);
    let len = u16::try_from(signed_entry.len()).expect("bounded by MAX_SIGNED_ENTRY");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(signed_entry);
}

/// What a chain log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLog<'a> {
    /// The records' contents (signed entries, not yet decoded), in file order.
    pub records: Vec<&'a [u8]>,
    /// Length of the file prefix made of whole records.
    pub complete_len: usize,
    /// Bytes after the last whole record: a torn final append. A writer
    /// recovering from power loss truncates them; a verifier reports them.
    pub torn_tail: usize,
}

/// Split a chain log into records.
///
/// # Errors
/// [`DecodeError::TooLong`] if a record claims more than [`MAX_SIGNED_ENTRY`]
/// bytes: the file is damaged at that offset (the records before it are not
/// returned; use [`split_lossy`] to get them).
pub fn split(bytes: &[u8]) -> Result<ChainLog<'_>, DecodeError> {
    let log = split_lossy(bytes);
    match log.1 {
        Some(e) => Err(e),
        None => Ok(log.0),
    }
}

/// Split as far as the file is sound, returning the records read and the
/// error that stopped the reading, if any other than a torn tail.
pub fn split_lossy(bytes: &[u8]) -> (ChainLog<'_>, Option<DecodeError>) {
    let mut r = Reader::new(bytes);
    let mut records = Vec::new();
    let mut complete_len = 0;
    let mut error = None;
    while r.remaining() > 0 {
        let mut attempt = r.clone();
        let rec = attempt
            .u16()
            .map(usize::from)
            .and_then(|len| {
                crate::codec::check_len("chain log record", len, MAX_SIGNED_ENTRY).map(|()| len)
            })
            .and_then(|len| attempt.take(len));
        match rec {
            Ok(rec) => {
                records.push(rec);
                r = attempt;
                complete_len = r.position();
            }
            Err(e) if e.is_incomplete() => break,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let torn_tail = if error.is_none() {
        bytes.len() - complete_len
    } else {
        0
    };
    (
        ChainLog {
            records,
            complete_len,
            torn_tail,
        },
        error,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_is_separated_from_whole_records() {
        let mut log = Vec::new();
        put_record(&mut log, b"first");
        put_record(&mut log, b"second");
        let whole = log.len();
        log.extend_from_slice(&[0, 9, b'x']);
        let parsed = split(&log).unwrap();
        assert_eq!(
            parsed.records,
            vec![b"first".as_slice(), b"second".as_slice()]
        );
        assert_eq!(parsed.complete_len, whole);
        assert_eq!(parsed.torn_tail, 3);
    }

    #[test]
    fn oversized_record_length_is_malformed() {
        let mut log = Vec::new();
        put_record(&mut log, b"ok");
        log.extend_from_slice(&[0xff, 0xff, 1, 2, 3]);
        assert!(matches!(split(&log), Err(DecodeError::TooLong { .. })));
        let (partial, err) = split_lossy(&log);
        assert_eq!(partial.records.len(), 1);
        assert!(err.is_some());
    }
}
