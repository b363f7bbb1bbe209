//! Chain entries: what a device signs, byte for byte.
//!
//! Every device keeps one append-only chain of entries for its whole life. An
//! entry is either a **segment** (one media file, named by its SHA-256) or an
//! **event** (recording started or stopped, power loss recovered, clock
//! adjusted, …). [`Entry::signing_bytes`] is the one function that makes the
//! bytes that are hashed and signed:
//!
//! ```text
//! "fieldseal/entry/v1\0"    19  domain-separation prefix
//! version                u8  = 1
//! device_id              [8] see identity.rs
//! seq                    u64 0, 1, 2, … for the device's whole life
//! prev_hash              [32] entry hash of seq-1 (32 zero bytes for seq 0)
//! wall_us                i64 device wall clock, µs since 1970-01-01T00:00:00Z
//! mono_us                u64 device monotonic clock, µs, restarts with `boot`
//! boot                   u32 agent start counter
//! position               u8 tag 0 (none) | 1 point | 2 fix | 3 no fix, then its fields
//! kind                   u8 1 = segment, 2 = event
//! body                   segment or event body
//! ```
//!
//! entry hash = SHA-256(signing bytes); the signature is ed25519 over the same
//! bytes, and a signed entry is `signing bytes || signature[64]`. The complete
//! layout, with the bodies and test vectors, is in `docs/FORMAT.md`.
//!
//! The bodies live in submodules, re-exported here: [`SegmentBody`] and its
//! [`CodecParams`] in `segment`, [`Event`] and [`StopReason`] in `event`;
//! the position field ([`Position`], [`Point`], [`NoFix`]) in `position`.

mod event;
mod position;
mod segment;

use ed25519_dalek::{Signature, VerifyingKey};
use thiserror::Error;

pub use self::event::{Event, StopReason};
pub use self::position::{
    degrees_text, position_bytes, position_from_bytes, utc_text, NoFix, Point, Position,
    ACCURACY_UNKNOWN,
};
pub use self::segment::{segment_flags, CodecParams, SegmentBody};

use crate::codec::{put, Decode, DecodeError, Encode, Reader};
use crate::identity::{sha256, DeviceId, Hash32, SignError, Signer};

/// Domain-separation prefix of an entry's signing bytes.
pub const ENTRY_PREFIX: &[u8] = b"fieldseal/entry/v1\0";
/// The only entry format version this implementation reads and writes.
pub const ENTRY_VERSION: u8 = 1;
/// Longest case number, activity type, officer name or codec name, in bytes.
/// Case numbers in practice are ~30 characters (e.g. "昌州执法〔2026〕第00123号" is 34 bytes).
pub const MAX_TAG_LEN: usize = 64;
/// Longest codec name ("h264", "aac", "hevc"): short by nature.
pub const MAX_CODEC_LEN: usize = 16;
/// Upper bound on a signed entry's length. The largest possible entry (all text
/// fields at their maximum) is below 700 bytes; the bound leaves room for later
/// versions while keeping a receiver's buffer small.
pub const MAX_SIGNED_ENTRY: usize = 4096;
/// Timebase of presentation timestamps: MPEG-TS's 90 kHz clock.
pub const PTS_HZ: i64 = 90_000;

/// Errors from building or verifying one entry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EntryError {
    /// A text field is longer than the format allows or contains control characters.
    #[error("{what} is invalid: at most {max} bytes of text without control characters")]
    BadText {
        /// The field.
        what: &'static str,
        /// Its maximum length.
        max: usize,
    },
    /// A position outside the valid latitude/longitude ranges.
    #[error("position out of range")]
    BadPosition,
    /// The ed25519 signature does not verify under the device key.
    #[error("signature does not verify")]
    BadSignature,
    /// The entry names another device than the key it was checked against.
    #[error("entry belongs to device {found}, not {expected}")]
    WrongDevice {
        /// Device id derived from the verifying key.
        expected: DeviceId,
        /// Device id written in the entry.
        found: DeviceId,
    },
    /// The signer could not sign (a hardware key that failed).
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// Check a text field against its bound.
fn check_text(what: &'static str, s: &str, max: usize) -> Result<(), EntryError> {
    if s.len() > max || s.chars().any(char::is_control) {
        Err(EntryError::BadText { what, max })
    } else {
        Ok(())
    }
}

fn put_opt_text(out: &mut Vec<u8>, s: &Option<String>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put::text8(out, s);
        }
    }
}

fn get_opt_text(
    r: &mut Reader<'_>,
    what: &'static str,
    max: usize,
) -> Result<Option<String>, DecodeError> {
    if r.bool(what)? {
        Ok(Some(r.text8(what, max)?))
    } else {
        Ok(None)
    }
}

/// What an entry records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// One media file.
    Segment(SegmentBody),
    /// Something that happened.
    Event(Event),
}

/// One chain entry, unsigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The device whose chain this is.
    pub device: DeviceId,
    /// Position in the chain, contiguous from 0.
    pub seq: u64,
    /// Entry hash of `seq - 1`; all zeros for seq 0.
    pub prev_hash: Hash32,
    /// Device wall clock when signed, µs since the Unix epoch (UTC).
    pub wall_us: i64,
    /// Device monotonic clock when signed, µs; restarts when `boot` changes.
    pub mono_us: u64,
    /// Agent start counter: increments every time the agent process starts.
    pub boot: u32,
    /// Where the device was: a fix, or no fix and why; `None` when the
    /// entry says nothing (tag 0).
    pub position: Option<Position>,
    /// Segment or event.
    pub body: Body,
}

impl Entry {
    /// The canonical bytes: what is hashed and signed. See the module doc.
    ///
    /// # Panics
    /// If a text field exceeds 255 bytes, which [`Entry::validate`] prevents;
    /// every constructor in this crate validates first.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(ENTRY_PREFIX);
        out.push(ENTRY_VERSION);
        out.extend_from_slice(&self.device.0);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.prev_hash);
        out.extend_from_slice(&self.wall_us.to_be_bytes());
        out.extend_from_slice(&self.mono_us.to_be_bytes());
        out.extend_from_slice(&self.boot.to_be_bytes());
        position::encode(&mut out, self.position.as_ref());
        match &self.body {
            Body::Segment(s) => {
                out.push(1);
                s.encode(&mut out);
            }
            Body::Event(e) => {
                out.push(2);
                e.encode(&mut out);
            }
        }
        out
    }

    /// SHA-256 of the signing bytes.
    pub fn hash(&self) -> Hash32 {
        sha256(&self.signing_bytes())
    }

    /// Check every bound the encoding relies on.
    ///
    /// # Errors
    /// [`EntryError::BadText`] or [`EntryError::BadPosition`].
    pub fn validate(&self) -> Result<(), EntryError> {
        if let Some(p) = &self.position {
            if !p.valid() {
                return Err(EntryError::BadPosition);
            }
        }
        match &self.body {
            Body::Segment(s) => s.validate(),
            Body::Event(e) => e.validate(),
        }
    }

    /// Validate and sign.
    ///
    /// # Errors
    /// As [`Entry::validate`]; [`EntryError::Sign`] if the signer failed.
    pub fn sign(self, signer: &(impl Signer + ?Sized)) -> Result<SignedEntry, EntryError> {
        self.validate()?;
        let bytes = self.signing_bytes();
        let signature = signer.try_sign(&bytes)?.to_bytes();
        let hash = sha256(&bytes);
        Ok(SignedEntry {
            entry: self,
            signature,
            hash,
            len: bytes.len(),
        })
    }

    /// The segment body, if this is a segment.
    pub fn segment(&self) -> Option<&SegmentBody> {
        match &self.body {
            Body::Segment(s) => Some(s),
            Body::Event(_) => None,
        }
    }

    /// The event, if this is an event.
    pub fn event(&self) -> Option<&Event> {
        match &self.body {
            Body::Event(e) => Some(e),
            Body::Segment(_) => None,
        }
    }
}

impl Decode for Entry {
    const NAME: &'static str = "entry";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let prefix = r.take(ENTRY_PREFIX.len())?;
        if prefix != ENTRY_PREFIX {
            return Err(DecodeError::BadPrefix { what: "entry" });
        }
        let version = r.u8()?;
        if version != ENTRY_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "entry",
                version,
            });
        }
        let device = DeviceId(r.array()?);
        let seq = r.u64()?;
        let prev_hash = r.array()?;
        let wall_us = r.i64()?;
        let mono_us = r.u64()?;
        let boot = r.u32()?;
        let position = position::decode(r)?;
        let body = match r.u8()? {
            1 => Body::Segment(SegmentBody::decode(r)?),
            2 => Body::Event(Event::decode(r)?),
            k => {
                return Err(DecodeError::InvalidValue {
                    what: "entry kind",
                    value: u64::from(k),
                })
            }
        };
        Ok(Entry {
            device,
            seq,
            prev_hash,
            wall_us,
            mono_us,
            boot,
            position,
            body,
        })
    }
}

/// An entry with its signature, as stored on disk and sent on the wire:
/// `signing bytes || signature[64]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedEntry {
    /// The entry.
    pub entry: Entry,
    /// ed25519 signature over the entry's signing bytes.
    pub signature: [u8; 64],
    hash: Hash32,
    len: usize,
}

impl SignedEntry {
    /// The entry hash (SHA-256 of the signing bytes), computed once.
    pub fn hash(&self) -> Hash32 {
        self.hash
    }

    /// Sequence number.
    pub fn seq(&self) -> u64 {
        self.entry.seq
    }

    /// Verify the signature under `key` (ed25519 `verify_strict`) and that the
    /// entry names the device of that key.
    ///
    /// # Errors
    /// [`EntryError::WrongDevice`] or [`EntryError::BadSignature`].
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), EntryError> {
        let expected = DeviceId::from_key(key);
        if self.entry.device != expected {
            return Err(EntryError::WrongDevice {
                expected,
                found: self.entry.device,
            });
        }
        let sig = Signature::from_bytes(&self.signature);
        key.verify_strict(&self.entry.signing_bytes(), &sig)
            .map_err(|_| EntryError::BadSignature)
    }

    /// Length of the encoded signed entry.
    pub fn encoded_len(&self) -> usize {
        self.len + 64
    }
}

impl Encode for SignedEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.entry.signing_bytes());
        out.extend_from_slice(&self.signature);
    }
}

impl Decode for SignedEntry {
    const NAME: &'static str = "signed entry";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let start = r.position();
        let entry = Entry::decode(r)?;
        let len = r.position() - start;
        if len + 64 > MAX_SIGNED_ENTRY {
            return Err(DecodeError::TooLong {
                what: "signed entry",
                len: (len + 64) as u64,
                max: MAX_SIGNED_ENTRY as u64,
            });
        }
        // Hash the bytes as received: decoding is canonical (every field has
        // exactly one encoding), so these are the signing bytes.
        let hash = sha256(&r.consumed()[start..]);
        let signature = r.array()?;
        Ok(SignedEntry {
            entry,
            signature,
            hash,
            len,
        })
    }
}

/// The state needed to append to a chain: the next sequence number and the
/// hash of the last entry. The agent keeps one; the server keeps one per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// Sequence number the next entry gets.
    pub next_seq: u64,
    /// Hash of entry `next_seq - 1`, or zeros for an empty chain.
    pub last_hash: Hash32,
}

impl ChainHead {
    /// The head of an empty chain.
    pub const GENESIS: ChainHead = ChainHead {
        next_seq: 0,
        last_hash: [0u8; 32],
    };

    /// The head after `entry`.
    pub fn after(entry: &SignedEntry) -> Self {
        ChainHead {
            next_seq: entry.seq() + 1,
            last_hash: entry.hash(),
        }
    }

    /// Make, sign and append the next entry. The head moves only on success.
    ///
    /// # Errors
    /// As [`Entry::sign`].
    pub fn append(
        &mut self,
        signer: &(impl Signer + ?Sized),
        clock: Clock,
        position: Option<Position>,
        body: Body,
    ) -> Result<SignedEntry, EntryError> {
        let entry = Entry {
            device: signer.device_id(),
            seq: self.next_seq,
            prev_hash: self.last_hash,
            wall_us: clock.wall_us,
            mono_us: clock.mono_us,
            boot: clock.boot,
            position,
            body,
        };
        let signed = entry.sign(signer)?;
        *self = ChainHead::after(&signed);
        Ok(signed)
    }
}

/// The device's clocks at one moment, passed in by the caller (proto reads no clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Wall clock, µs since the Unix epoch.
    pub wall_us: i64,
    /// Monotonic clock, µs.
    pub mono_us: u64,
    /// Agent start counter.
    pub boot: u32,
}
