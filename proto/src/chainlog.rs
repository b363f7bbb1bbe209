//! The chain log: how signed entries are laid end to end in a file (the agent's
//! `chain.log`, an export package's `chain.log`).
//!
//! ```text
//! record = len u16 || signed entry [len]        repeated; see docs/FORMAT.md §9
//! ```
//!
//! A record whose length is sane (1 ..= 4096) but whose content does not decode
//! costs that one entry: the reader steps over it. A length of 0 or above 4096
//! cannot belong to a record, so the file is damaged at that offset and the
//! reader cannot know where the next record starts: reading stops there. The
//! length also tells a torn final record (power loss mid-append) from a whole
//! one.

use crate::codec::{DecodeError, Reader};
use crate::entry::MAX_SIGNED_ENTRY;

/// Bytes of a record's header (the big-endian `u16` length before the entry).
/// Every reader and writer of a chain log, on the agent and the server,
/// steps over records with this constant rather than its value, so that the
/// framing has one owner.
pub const RECORD_HEADER: usize = 2;

/// The length a record's header announces, checked as [`split_lossy`] checks
/// it: for a reader that fetches one record at a known offset (header first,
/// then exactly that many bytes) instead of splitting a whole file.
///
/// # Errors
/// [`DecodeError::InvalidValue`] for a length of 0, [`DecodeError::TooLong`]
/// above [`MAX_SIGNED_ENTRY`]: no record starts here.
pub fn record_len(header: [u8; RECORD_HEADER]) -> Result<usize, DecodeError> {
    let len = usize::from(u16::from_be_bytes(header));
    if len == 0 {
        // No signed entry is empty: this is damage, not a record.
        return Err(DecodeError::InvalidValue {
            what: "chain log record length",
            value: 0,
        });
    }
    crate::codec::check_len("chain log record", len, MAX_SIGNED_ENTRY)?;
    Ok(len)
}

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
/// bytes, [`DecodeError::InvalidValue`] if it claims 0 bytes: the file is
/// damaged at that offset (the records before it are not returned; use
/// [`split_lossy`] to get them).
pub fn split(bytes: &[u8]) -> Result<ChainLog<'_>, DecodeError> {
    let log = split_lossy(bytes);
    match log.1 {
        Some(e) => Err(e),
        None => Ok(log.0),
    }
}

/// Split as far as the file is sound, returning the records read and the
/// error that stopped the reading, if any other than a torn tail. A record
/// length of 0 or above [`MAX_SIGNED_ENTRY`] stops the reading (the damage is
/// at `complete_len`); there is then no torn tail.
pub fn split_lossy(bytes: &[u8]) -> (ChainLog<'_>, Option<DecodeError>) {
    let mut r = Reader::new(bytes);
    let mut records = Vec::new();
    let mut complete_len = 0;
    let mut error = None;
    while r.remaining() > 0 {
        let mut attempt = r.clone();
        let rec = attempt
            .u16()
            .and_then(|len| record_len(len.to_be_bytes()))
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

    #[test]
    fn zero_record_length_is_damage() {
        let mut log = Vec::new();
        put_record(&mut log, b"ok");
        let at = log.len();
        log.extend_from_slice(&[0, 0]);
        put_record(&mut log, b"after");
        assert!(matches!(split(&log), Err(DecodeError::InvalidValue { .. })));
        let (partial, err) = split_lossy(&log);
        assert_eq!(partial.records, vec![b"ok".as_slice()]);
        assert_eq!(partial.complete_len, at);
        assert_eq!(partial.torn_tail, 0);
        assert!(err.is_some());
    }
}
