//! The server's signed receipt for one chain entry.
//!
//! When the server accepts a signed entry it answers with a receipt: it binds the
//! entry (device, sequence number, entry hash) to the server's own clock and to
//! the entry's index in the transparency log, and signs all of it with the
//! server's ed25519 key. The agent keeps receipts; they prove that the footage
//! existed at the server's time, long before its bytes arrived, and they are how
//! device clock skew is measured (see DESIGN.md, "Time").
//!
//! The signed bytes are made by one function, [`Receipt::signing_bytes`]. The
//! wire encoding is the signing bytes without the domain prefix, followed by the
//! signature, so a receipt read from the wire is checked over exactly the bytes
//! that were received. Layout (all integers big-endian; see `docs/FORMAT.md`,
//! "Receipt"):
//!
//! ```text
//! signing bytes (86 bytes):
//!   "fieldseal/receipt/v1\0"   21 bytes  domain separation
//!   version                    u8        = 1
//!   device_id                  [u8; 8]
//!   seq                        u64
//!   entry_hash                 [u8; 32]  the entry hash: SHA-256 of the entry's signing
//!                                        bytes, without the signature (FORMAT.md §3.2)
//!   server_time_us             i64       microseconds since the Unix epoch
//!   log_index                  u64       leaf index in the transparency log
//!
//! encoding (129 bytes):
//!   version ‖ device_id ‖ seq ‖ entry_hash ‖ server_time_us ‖ log_index   (65 bytes)
//!   signature                  [u8; 64]  ed25519 over the signing bytes
//! ```

use ed25519_dalek::{Signature, VerifyingKey};
use thiserror::Error;

use crate::codec::{Decode, DecodeError, Encode, Reader};
use crate::identity::{DeviceId, Hash32, Signer};

/// Domain-separation prefix of the receipt signing bytes.
pub const RECEIPT_PREFIX: &[u8] = b"fieldseal/receipt/v1\0";

/// The receipt format version this implementation writes and reads.
pub const RECEIPT_VERSION: u8 = 1;

/// Length of [`Receipt::signing_bytes`].
pub const RECEIPT_SIGNING_LEN: usize = RECEIPT_PREFIX.len() + RECEIPT_BODY_LEN;

/// Length of a receipt's encoding.
pub const RECEIPT_LEN: usize = RECEIPT_BODY_LEN + 64;

/// Version, device id, seq, entry hash, server time, log index.
const RECEIPT_BODY_LEN: usize = 1 + 8 + 8 + 32 + 8 + 8;

/// Why a receipt failed verification.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// The signature does not verify under the server key over these fields.
    #[error("receipt signature does not verify")]
    BadSignature,
}

/// A server's signed statement that it accepted entry `seq` of `device_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The device whose chain holds the entry.
    pub device_id: DeviceId,
    /// The entry's sequence number in that chain.
    pub seq: u64,
    /// The entry's hash ([`crate::entry::SignedEntry::hash`]): SHA-256 of its
    /// signing bytes, without the signature (`docs/FORMAT.md` §3.2).
    pub entry_hash: Hash32,
    /// The server's clock when it accepted the entry, in microseconds since the Unix epoch.
    pub server_time_us: i64,
    /// The index of the entry's leaf in the server's transparency log.
    pub log_index: u64,
    /// ed25519 signature by the server key over [`Receipt::signing_bytes`].
    pub signature: [u8; 64],
}

impl Receipt {
    /// Sign a receipt for these fields. `server_time_us` is an argument: this
    /// crate never reads a clock.
    pub fn sign(
        device_id: DeviceId,
        seq: u64,
        entry_hash: Hash32,
        server_time_us: i64,
        log_index: u64,
        signer: &impl Signer,
    ) -> Receipt {
        let mut r = Receipt {
            device_id,
            seq,
            entry_hash,
            server_time_us,
            log_index,
            signature: [0u8; 64],
        };
        r.signature = signer.sign(&r.signing_bytes()).to_bytes();
        r
    }

    /// The bytes the server signs: the domain prefix, then the version byte and
    /// the fields in declaration order, big-endian.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECEIPT_SIGNING_LEN);
        out.extend_from_slice(RECEIPT_PREFIX);
        self.encode_body(&mut out);
        out
    }

    /// Everything but the prefix and the signature: shared by the signing bytes
    /// and the wire encoding so that the two can never drift apart.
    fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(RECEIPT_VERSION);
        out.extend_from_slice(&self.device_id.0);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.entry_hash);
        out.extend_from_slice(&self.server_time_us.to_be_bytes());
        out.extend_from_slice(&self.log_index.to_be_bytes());
    }

    /// Check the signature against the server's public key.
    ///
    /// Uses `verify_strict`, which rejects non-canonical signatures and weak
    /// keys, so one receipt has exactly one valid signature encoding.
    ///
    /// # Errors
    /// [`ReceiptError::BadSignature`] when the signature does not verify.
    pub fn verify(&self, server_key: &VerifyingKey) -> Result<(), ReceiptError> {
        let sig = Signature::from_bytes(&self.signature);
        server_key
            .verify_strict(&self.signing_bytes(), &sig)
            .map_err(|_| ReceiptError::BadSignature)
    }
}

impl Encode for Receipt {
    fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(RECEIPT_LEN);
        self.encode_body(out);
        out.extend_from_slice(&self.signature);
    }
}

impl Decode for Receipt {
    const NAME: &'static str = "receipt";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if version != RECEIPT_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: Self::NAME,
                version,
            });
        }
        Ok(Receipt {
            device_id: DeviceId(r.array()?),
            seq: r.u64()?,
            entry_hash: r.array()?,
            server_time_us: r.i64()?,
            log_index: r.u64()?,
            signature: r.array()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    fn server_key() -> SigningKey {
        SigningKey::from_bytes(&[9u8; 32])
    }

    fn sample() -> Receipt {
        Receipt::sign(
            DeviceId([1, 2, 3, 4, 5, 6, 7, 8]),
            42,
            [0xab; 32],
            1_751_328_000_000_000,
            7,
            &server_key(),
        )
    }

    #[test]
    fn sizes_match_the_layout() {
        let r = sample();
        assert_eq!(r.signing_bytes().len(), RECEIPT_SIGNING_LEN);
        assert_eq!(RECEIPT_SIGNING_LEN, 86);
        assert_eq!(r.to_bytes().len(), RECEIPT_LEN);
        assert_eq!(RECEIPT_LEN, 129);
        // The encoding is the signing bytes without the prefix, then the signature.
        assert_eq!(
            &r.to_bytes()[..RECEIPT_BODY_LEN],
            &r.signing_bytes()[RECEIPT_PREFIX.len()..]
        );
    }

    #[test]
    fn signed_receipt_verifies_and_round_trips() {
        let r = sample();
        r.verify(&server_key().verifying_key()).unwrap();
        assert_eq!(Receipt::from_bytes(&r.to_bytes()), Ok(r));
    }

    #[test]
    fn wrong_key_fails() {
        let other = SigningKey::from_bytes(&[10u8; 32]).verifying_key();
        assert_eq!(sample().verify(&other), Err(ReceiptError::BadSignature));
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let key = server_key().verifying_key();
        let bytes = sample().to_bytes();
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            match Receipt::from_bytes(&b) {
                // Only the version byte can make decoding fail; everything else
                // must be caught by the signature.
                Err(DecodeError::UnsupportedVersion { .. }) => assert!(bit < 8),
                Err(e) => panic!("bit {bit}: unexpected {e}"),
                Ok(r) => assert_eq!(r.verify(&key), Err(ReceiptError::BadSignature), "bit {bit}"),
            }
        }
    }

    #[test]
    fn bad_version_and_trailing_data_are_rejected() {
        let mut b = sample().to_bytes();
        b[0] = 2;
        assert_eq!(
            Receipt::from_bytes(&b),
            Err(DecodeError::UnsupportedVersion {
                what: "receipt",
                version: 2
            })
        );
        let mut b = sample().to_bytes();
        b.push(0);
        assert_eq!(
            Receipt::from_bytes(&b),
            Err(DecodeError::TrailingData {
                what: "receipt",
                count: 1
            })
        );
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let b = sample().to_bytes();
        for n in 0..b.len() {
            assert!(
                Receipt::from_bytes(&b[..n]).unwrap_err().is_incomplete(),
                "prefix {n}"
            );
        }
    }

    proptest! {
        #[test]
        fn receipts_round_trip(
            dev in any::<[u8; 8]>(), seq in any::<u64>(), hash in any::<[u8; 32]>(),
            t in any::<i64>(), idx in any::<u64>(),
        ) {
            let key = server_key();
            let r = Receipt::sign(DeviceId(dev), seq, hash, t, idx, &key);
            let bytes = r.to_bytes();
            prop_assert_eq!(bytes.len(), RECEIPT_LEN);
            let back = Receipt::from_bytes(&bytes).unwrap();
            prop_assert!(back.verify(&key.verifying_key()).is_ok());
            prop_assert_eq!(back, r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(r) = Receipt::from_bytes(&b) {
                prop_assert_eq!(r.to_bytes(), b);
                let _ = r.verify(&server_key().verifying_key());
            }
        }
    }
}
