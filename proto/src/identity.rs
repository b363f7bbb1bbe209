//! Device identity, hashing helpers and the [`Signer`] trait.
//!
//! A device is its ed25519 public key. Its short **device id** is the first
//! 8 bytes of `SHA-256("fieldseal/device-id/v1\0" || public_key)`, written as 16
//! lowercase hex digits (see `docs/FORMAT.md`, "Device identity").

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash32 = [u8; 32];

/// Domain-separation prefix for the device id.
pub const DEVICE_ID_PREFIX: &[u8] = b"fieldseal/device-id/v1\0";

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash32 {
    Sha256::digest(data).into()
}

/// SHA-256 over several parts, as if concatenated.
pub fn sha256_parts(parts: &[&[u8]]) -> Hash32 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Incremental SHA-256, for callers that hash a file while reading or writing it.
#[derive(Debug, Clone, Default)]
pub struct Sha256Stream(Sha256);

impl Sha256Stream {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }
    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The digest of everything fed so far.
    pub fn finish(self) -> Hash32 {
        self.0.finalize().into()
    }
}

/// The short identifier of a device, derived from its public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub [u8; 8]);

impl DeviceId {
    /// No device: what a custody leaf about an account (a login, a denial)
    /// names instead of one. A key whose id is all zero is not a concern:
    /// finding one means a 64-bit preimage of SHA-256.
    pub const NONE: DeviceId = DeviceId([0; 8]);

    /// The device id of a public key.
    pub fn from_key(key: &VerifyingKey) -> Self {
        let h = sha256_parts(&[DEVICE_ID_PREFIX, key.as_bytes()]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&h[..8]);
        DeviceId(id)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

/// A device id string that is not 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a device id is 16 lowercase hex digits")]
pub struct BadDeviceId;

impl FromStr for DeviceId {
    type Err = BadDeviceId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(BadDeviceId);
        }
        let mut id = [0u8; 8];
        hex::decode_to_slice(s, &mut id).map_err(|_| BadDeviceId)?;
        Ok(DeviceId(id))
    }
}

impl serde::Serialize for DeviceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A signature a [`Signer`] could not make: a hardware key that is gone,
/// locked, or refused the operation. In-memory keys never fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the key could not sign: {0}")]
pub struct SignError(pub String);

/// Something that can sign on behalf of a device: a key in memory (a key
/// file, the server's keys) or a hardware key (a PKCS#11 token, a secure
/// element, a TPM) whose private key never leaves it.
///
/// As in the `signature` crate, [`Signer::try_sign`] is the operation and
/// [`Signer::sign`] the convenience for keys that cannot fail; whatever may
/// hold a hardware key (the device's chain entries, through
/// [`crate::entry::Entry::sign`]) calls `try_sign`.
pub trait Signer {
    /// The public key that verifies this signer's signatures.
    fn public_key(&self) -> VerifyingKey;
    /// Sign `msg` (ed25519, RFC 8032, no pre-hash).
    ///
    /// # Errors
    /// [`SignError`] when a key held outside memory could not sign.
    fn try_sign(&self, msg: &[u8]) -> Result<Signature, SignError>;
    /// [`Signer::try_sign`] for a key that cannot fail (one in memory).
    ///
    /// # Panics
    /// If `try_sign` fails: call `try_sign` wherever the key may be hardware.
    fn sign(&self, msg: &[u8]) -> Signature {
        match self.try_sign(msg) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }
    /// The device id of [`Signer::public_key`].
    fn device_id(&self) -> DeviceId {
        DeviceId::from_key(&self.public_key())
    }
}

impl Signer for SigningKey {
    fn public_key(&self) -> VerifyingKey {
        self.verifying_key()
    }
    fn try_sign(&self, msg: &[u8]) -> Result<Signature, SignError> {
        Ok(ed25519_dalek::Signer::sign(self, msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_round_trips_and_rejects_bad_text() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let id = key.device_id();
        assert_eq!(id.to_string().parse::<DeviceId>(), Ok(id));
        assert!("ABCDEF0123456789".parse::<DeviceId>().is_err());
        assert!("abc".parse::<DeviceId>().is_err());
        assert!("zzzzzzzzzzzzzzzz".parse::<DeviceId>().is_err());
    }
}
