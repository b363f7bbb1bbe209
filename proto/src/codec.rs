//! The one codec discipline every encoded structure in fieldseal follows.
//!
//! All integers are big-endian (network order). Variable-length fields carry a
//! length prefix whose maximum is a named `MAX_*` constant, checked **before**
//! anything is allocated. Decoding a structure from "its exact bytes" rejects
//! trailing data. Running out of input is [`DecodeError::Incomplete`]; input that
//! can never become valid is one of the other variants ("malformed, reject").
//!
//! The byte layouts themselves are specified in `docs/FORMAT.md`.

use thiserror::Error;

/// Why a decoder refused its input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// More bytes are needed; the bytes seen so far may still become valid.
    #[error("incomplete: {needed} more byte(s) needed")]
    Incomplete {
        /// How many more bytes the decoder needs at least.
        needed: usize,
    },
    /// A length field exceeds the maximum the format allows for it.
    #[error("{what} length {len} exceeds the maximum {max}")]
    TooLong {
        /// The field whose length is out of bounds.
        what: &'static str,
        /// The length found on the wire.
        len: u64,
        /// The maximum the format allows.
        max: u64,
    },
    /// A tag, flag or enumerated value is not one the format defines.
    #[error("{what}: invalid value {value}")]
    InvalidValue {
        /// The field being decoded.
        what: &'static str,
        /// The value found.
        value: u64,
    },
    /// A domain-separation prefix or magic number did not match.
    #[error("bad prefix for {what}")]
    BadPrefix {
        /// The structure being decoded.
        what: &'static str,
    },
    /// The format version is not one this implementation understands.
    #[error("{what}: unsupported version {version}")]
    UnsupportedVersion {
        /// The structure being decoded.
        what: &'static str,
        /// The version found.
        version: u8,
    },
    /// A text field is not valid UTF-8 or contains a control character.
    #[error("{what}: not valid text")]
    BadText {
        /// The field being decoded.
        what: &'static str,
    },
    /// The structure decoded completely but bytes remained after it.
    #[error("{count} trailing byte(s) after {what}")]
    TrailingData {
        /// The structure that was decoded.
        what: &'static str,
        /// How many bytes remained.
        count: usize,
    },
}

impl DecodeError {
    /// True when more input could make the bytes decodable.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, DecodeError::Incomplete { .. })
    }
}

/// A cursor over a byte slice. Every read either succeeds or leaves a typed error.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// How many bytes have been consumed.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The bytes consumed so far.
    pub fn consumed(&self) -> &'a [u8] {
        &self.buf[..self.pos]
    }

    /// Take exactly `n` bytes.
    ///
    /// # Errors
    /// [`DecodeError::Incomplete`] if fewer than `n` bytes remain.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Incomplete {
                needed: n - self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Take a fixed-size array.
    ///
    /// # Errors
    /// [`DecodeError::Incomplete`] if fewer than `N` bytes remain.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// # Errors
    /// [`DecodeError::Incomplete`] at the end of input.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// # Errors
    /// [`DecodeError::Incomplete`] at the end of input.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// # Errors
    /// [`DecodeError::Incomplete`] at the end of input.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// # Errors
    /// [`DecodeError::Incomplete`] at the end of input.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// # Errors
    /// [`DecodeError::Incomplete`] at the end of input.
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    /// # Errors
    /// [`DecodeError::Incomplete`] at the end of input.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// A boolean encoded as one byte, 0 or 1; anything else is malformed.
    ///
    /// # Errors
    /// [`DecodeError::Incomplete`] at the end of input, [`DecodeError::InvalidValue`]
    /// for a byte other than 0 or 1.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::InvalidValue {
                what,
                value: u64::from(v),
            }),
        }
    }

    /// A UTF-8 string with a one-byte length prefix, at most `max` bytes, no
    /// control characters.
    ///
    /// # Errors
    /// [`DecodeError::TooLong`] when the prefix exceeds `max` (checked before the
    /// bytes are read), [`DecodeError::BadText`] for invalid UTF-8 or control
    /// characters, [`DecodeError::Incomplete`] at the end of input.
    pub fn text8(&mut self, what: &'static str, max: usize) -> Result<String, DecodeError> {
        let len = usize::from(self.u8()?);
        check_len(what, len, max)?;
        let bytes = self.take(len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::BadText { what })?;
        if s.chars().any(char::is_control) {
            return Err(DecodeError::BadText { what });
        }
        Ok(s.to_owned())
    }

    /// Bytes with a four-byte length prefix, at most `max` bytes.
    ///
    /// # Errors
    /// [`DecodeError::TooLong`] when the prefix exceeds `max` (checked before the
    /// bytes are read), [`DecodeError::Incomplete`] at the end of input.
    pub fn bytes32(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        check_len(what, len, max)?;
        self.take(len)
    }

    /// Require that the whole input has been consumed.
    ///
    /// # Errors
    /// [`DecodeError::TrailingData`] if any byte remains.
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingData { what, count }),
        }
    }
}

/// Check a decoded length against its bound.
///
/// # Errors
/// [`DecodeError::TooLong`] when `len > max`.
pub fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), DecodeError> {
    if len > max {
        Err(DecodeError::TooLong {
            what,
            len: len as u64,
            max: max as u64,
        })
    } else {
        Ok(())
    }
}

/// Types that have one canonical encoding.
pub trait Encode {
    /// Append the canonical encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// The canonical encoding as a new vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Types that can be decoded from a [`Reader`].
pub trait Decode: Sized {
    /// The name used in error messages.
    const NAME: &'static str;

    /// Decode one value, leaving the reader after it.
    ///
    /// # Errors
    /// Any [`DecodeError`]; `Incomplete` only if the input ended early.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Decode from exactly `bytes`: trailing data is an error.
    ///
    /// # Errors
    /// Any [`DecodeError`], including [`DecodeError::TrailingData`].
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Self::decode(&mut r)?;
        r.finish(Self::NAME)?;
        Ok(v)
    }
}

/// Writers for the primitive encodings, mirroring [`Reader`].
pub mod put {
    /// Append a one-byte-length-prefixed string. The caller guarantees `s.len() <= 255`;
    /// constructors of every type that holds text enforce their own smaller `MAX_*`.
    pub fn text8(out: &mut Vec<u8>, s: &str) {
        let len = u8::try_from(s.len()).expect("text length is bounded by its constructor");
        out.push(len);
        out.extend_from_slice(s.as_bytes());
    }

    /// Append a four-byte-length-prefixed byte string.
    pub fn bytes32(out: &mut Vec<u8>, b: &[u8]) {
        let len = u32::try_from(b.len()).expect("byte string length is bounded by its constructor");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(b);
    }

    /// Append a boolean as one byte.
    pub fn bool(out: &mut Vec<u8>, v: bool) {
        out.push(u8::from(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_is_distinct_from_malformed() {
        let mut r = Reader::new(&[0, 1]);
        assert_eq!(r.u32(), Err(DecodeError::Incomplete { needed: 2 }));
        let mut r = Reader::new(&[2]);
        assert!(matches!(r.bool("x"), Err(DecodeError::InvalidValue { .. })));
    }

    #[test]
    fn length_is_checked_before_reading() {
        // A length prefix of 200 with only 3 bytes behind it: the bound (10) fails
        // first, so the caller learns "malformed" rather than "send more".
        let mut r = Reader::new(&[200, b'a', b'b', b'c']);
        assert!(matches!(
            r.text8("t", 10),
            Err(DecodeError::TooLong { len: 200, .. })
        ));
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            r.bytes32("b", 1024),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn control_characters_are_rejected_in_text() {
        let mut r = Reader::new(&[2, b'a', b'\n']);
        assert!(matches!(r.text8("t", 10), Err(DecodeError::BadText { .. })));
    }

    #[test]
    fn finish_rejects_trailing_bytes() {
        let mut r = Reader::new(&[1, 2]);
        r.u8().unwrap();
        assert_eq!(
            r.finish("x"),
            Err(DecodeError::TrailingData {
                what: "x",
                count: 1
            })
        );
    }
}
