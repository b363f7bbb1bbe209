//! The server's signed acknowledgement of one segment's media bytes.
//!
//! When the server holds the whole media file of a segment, verified against
//! the signed entry's hash and length and durable, it says so with a
//! `MediaAck`: it binds the device, the segment's seq, the media's SHA-256
//! and length to the server's clock, and signs all of it with the server's
//! receipt key (the key of [`crate::receipt`]). The agent deletes its copy of
//! the media only on such an acknowledgement, and keeps it as proof that the
//! server took the bytes over (`docs/FORMAT.md` §7.6 and §9, `acks.log`).
//!
//! As for receipts, the signed bytes are made by one function,
//! [`MediaAck::signing_bytes`], and the wire encoding is the signing bytes
//! without the domain prefix, then the signature. The prefix differs from the
//! receipt's, so neither signature can ever be taken for the other. Layout
//! (all integers big-endian):
//!
//! ```text
//! signing bytes (88 bytes):
//!   "fieldseal/media-ack/v1\0" 23 bytes  domain separation
//!   version                    u8        = 1
//!   device_id                  [u8; 8]
//!   seq                        u64       the segment entry's seq
//!   media_sha256               [u8; 32]  SHA-256 of the whole media file
//!   media_len                  u64       its length in bytes
//!   server_time_us             i64       when the server acknowledged, µs since the Unix epoch
//!
//! encoding (129 bytes):
//!   version ‖ device_id ‖ seq ‖ media_sha256 ‖ media_len ‖ server_time_us   (65 bytes)
//!   signature                  [u8; 64]  ed25519 over the signing bytes
//! ```

use ed25519_dalek::{Signature, VerifyingKey};
use thiserror::Error;

use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::identity::{DeviceId, Hash32, Signer};

/// Domain-separation prefix of the media acknowledgement signing bytes.
pub const MEDIA_ACK_PREFIX: &[u8] = b"fieldseal/media-ack/v1\0";

/// The acknowledgement format version this implementation writes and reads.
pub const MEDIA_ACK_VERSION: u8 = 1;

/// Length of [`MediaAck::signing_bytes`].
pub const MEDIA_ACK_SIGNING_LEN: usize = MEDIA_ACK_PREFIX.len() + MEDIA_ACK_BODY_LEN;

/// Length of an acknowledgement's encoding.
pub const MEDIA_ACK_LEN: usize = MEDIA_ACK_BODY_LEN + 64;

/// Version, device id, seq, media hash, media length, server time.
const MEDIA_ACK_BODY_LEN: usize = 1 + 8 + 8 + 32 + 8 + 8;

/// Why an acknowledgement does not prove the hand-over of a segment.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AckError {
    /// The signature does not verify under the server's receipt key.
    #[error("acknowledgement signature does not verify under the server's receipt key")]
    BadSignature,
    /// The acknowledgement names another device.
    #[error("acknowledgement names device {got}, not {want}")]
    WrongDevice {
        /// The device it names.
        got: DeviceId,
        /// The device it should name.
        want: DeviceId,
    },
    /// The acknowledgement names other media than the segment's signed entry.
    #[error(
        "acknowledgement names other media than segment {seq}'s entry (hash or length differ)"
    )]
    WrongMedia {
        /// The segment's seq.
        seq: u64,
    },
}

/// A server's signed statement that it holds the media of segment `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaAck {
    /// The device whose chain holds the segment entry.
    pub device_id: DeviceId,
    /// The segment entry's sequence number.
    pub seq: u64,
    /// SHA-256 of the whole media file (the entry's `media_sha256`).
    pub media_sha256: Hash32,
    /// Length of the media file in bytes (the entry's `media_len`).
    pub media_len: u64,
    /// The server's clock when it acknowledged, µs since the Unix epoch.
    pub server_time_us: i64,
    /// ed25519 signature by the server's receipt key over [`MediaAck::signing_bytes`].
    pub signature: [u8; 64],
}

impl MediaAck {
    /// Sign an acknowledgement for these fields. `server_time_us` is an
    /// argument: this crate never reads a clock.
    pub fn sign(
        device_id: DeviceId,
        seq: u64,
        media: (Hash32, u64),
        server_time_us: i64,
        signer: &impl Signer,
    ) -> MediaAck {
        let mut a = MediaAck {
            device_id,
            seq,
            media_sha256: media.0,
            media_len: media.1,
            server_time_us,
            signature: [0u8; 64],
        };
        a.signature = signer.sign(&a.signing_bytes()).to_bytes();
        a
    }

    /// The bytes the server signs: the domain prefix, then the version byte
    /// and the fields in declaration order, big-endian.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MEDIA_ACK_SIGNING_LEN);
        out.extend_from_slice(MEDIA_ACK_PREFIX);
        self.encode_body(&mut out);
        out
    }

    /// Everything but the prefix and the signature: shared by the signing
    /// bytes and the wire encoding so that the two can never drift apart.
    fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(MEDIA_ACK_VERSION);
        out.extend_from_slice(&self.device_id.0);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.media_sha256);
        out.extend_from_slice(&self.media_len.to_be_bytes());
        out.extend_from_slice(&self.server_time_us.to_be_bytes());
    }

    /// Check the signature against the server's receipt key (strict, as for
    /// receipts: one acknowledgement has one valid signature encoding).
    ///
    /// # Errors
    /// [`AckError::BadSignature`] when the signature does not verify.
    pub fn verify(&self, server_key: &VerifyingKey) -> Result<(), AckError> {
        let sig = Signature::from_bytes(&self.signature);
        server_key
            .verify_strict(&self.signing_bytes(), &sig)
            .map_err(|_| AckError::BadSignature)
    }

    /// Check that this acknowledgement proves the hand-over of segment `seq`
    /// of `device`, whose signed entry names `media` (SHA-256, length): the
    /// signature verifies under `server_key` and every field matches.
    ///
    /// # Errors
    /// The first [`AckError`] found: wrong device, other seq or media, bad signature.
    pub fn verify_for(
        &self,
        server_key: &VerifyingKey,
        device: DeviceId,
        seq: u64,
        media: (Hash32, u64),
    ) -> Result<(), AckError> {
        if self.device_id != device {
            return Err(AckError::WrongDevice {
                got: self.device_id,
                want: device,
            });
        }
        if self.seq != seq || (self.media_sha256, self.media_len) != media {
            return Err(AckError::WrongMedia { seq });
        }
        self.verify(server_key)
    }
}

impl Encode for MediaAck {
    fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(MEDIA_ACK_LEN);
        self.encode_body(out);
        out.extend_from_slice(&self.signature);
    }
}

impl Decode for MediaAck {
    const NAME: &'static str = "media ack";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if version != MEDIA_ACK_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: Self::NAME,
                version,
            });
        }
        Ok(MediaAck {
            device_id: DeviceId(r.array()?),
            seq: r.u64()?,
            media_sha256: r.array()?,
            media_len: r.u64()?,
            server_time_us: r.i64()?,
            signature: r.array()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::Receipt;
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    const DEV: DeviceId = DeviceId([1, 2, 3, 4, 5, 6, 7, 8]);

    fn server_key() -> SigningKey {
        SigningKey::from_bytes(&[9u8; 32])
    }

    fn sample() -> MediaAck {
        MediaAck::sign(
            DEV,
            42,
            ([0xab; 32], 1000),
            1_751_328_000_000_000,
            &server_key(),
        )
    }

    #[test]
    fn sizes_match_the_layout() {
        let a = sample();
        assert_eq!(a.signing_bytes().len(), MEDIA_ACK_SIGNING_LEN);
        assert_eq!(MEDIA_ACK_SIGNING_LEN, 88);
        assert_eq!(a.to_bytes().len(), MEDIA_ACK_LEN);
        assert_eq!(MEDIA_ACK_LEN, 129);
        assert_eq!(
            &a.to_bytes()[..MEDIA_ACK_BODY_LEN],
            &a.signing_bytes()[MEDIA_ACK_PREFIX.len()..]
        );
    }

    #[test]
    fn a_signed_ack_verifies_for_its_segment_only() {
        let a = sample();
        let k = server_key().verifying_key();
        assert_eq!(MediaAck::from_bytes(&a.to_bytes()), Ok(a.clone()));
        a.verify_for(&k, DEV, 42, ([0xab; 32], 1000)).unwrap();
        let other = SigningKey::from_bytes(&[10u8; 32]).verifying_key();
        assert_eq!(
            a.verify_for(&other, DEV, 42, ([0xab; 32], 1000)),
            Err(AckError::BadSignature)
        );
        assert!(matches!(
            a.verify_for(&k, DeviceId([0; 8]), 42, ([0xab; 32], 1000)),
            Err(AckError::WrongDevice { .. })
        ));
        for (seq, media) in [
            (41, ([0xab; 32], 1000)),
            (42, ([0xac; 32], 1000)),
            (42, ([0xab; 32], 999)),
        ] {
            assert_eq!(
                a.verify_for(&k, DEV, seq, media),
                Err(AckError::WrongMedia { seq })
            );
        }
    }

    #[test]
    fn a_receipt_signature_is_never_an_ack_signature() {
        // Same key, same 129-byte length, overlapping field layout: the
        // domain prefixes keep one from passing for the other.
        let r = Receipt::sign(DEV, 42, [0xab; 32], 7, 1000, &server_key());
        let a = MediaAck::from_bytes(&r.to_bytes()).expect("same length and version byte");
        assert_eq!(
            a.verify(&server_key().verifying_key()),
            Err(AckError::BadSignature)
        );
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let key = server_key().verifying_key();
        let bytes = sample().to_bytes();
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            match MediaAck::from_bytes(&b) {
                Err(DecodeError::UnsupportedVersion { .. }) => assert!(bit < 8),
                Err(e) => panic!("bit {bit}: unexpected {e}"),
                Ok(a) => assert_eq!(a.verify(&key), Err(AckError::BadSignature), "bit {bit}"),
            }
        }
    }

    #[test]
    fn every_prefix_is_incomplete_and_trailing_data_is_refused() {
        let b = sample().to_bytes();
        for n in 0..b.len() {
            assert!(
                MediaAck::from_bytes(&b[..n]).unwrap_err().is_incomplete(),
                "prefix {n}"
            );
        }
        let mut long = b.clone();
        long.push(0);
        assert!(matches!(
            MediaAck::from_bytes(&long),
            Err(DecodeError::TrailingData { .. })
        ));
    }

    proptest! {
        #[test]
        fn acks_round_trip(
            dev in any::<[u8; 8]>(), seq in any::<u64>(), hash in any::<[u8; 32]>(),
            len in any::<u64>(), t in any::<i64>(),
        ) {
            let key = server_key();
            let a = MediaAck::sign(DeviceId(dev), seq, (hash, len), t, &key);
            let back = MediaAck::from_bytes(&a.to_bytes()).unwrap();
            prop_assert!(back.verify(&key.verifying_key()).is_ok());
            prop_assert_eq!(back, a);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(a) = MediaAck::from_bytes(&b) {
                prop_assert_eq!(a.to_bytes(), b);
                let _ = a.verify(&server_key().verifying_key());
            }
        }
    }
}
