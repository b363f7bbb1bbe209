//! Ed25519 signatures made by hand, for the tests of batch verification:
//! what an honest signer never makes but a key's holder can, such as an `R`
//! with a torsion component, a small-order `R` or key, or `S + L`, each
//! checked against `verify_strict`. Shared by `sigbatch.rs` and
//! `chain_batch.rs` (each uses part of it).
#![allow(dead_code)]

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use ed25519_dalek::{Signature, VerifyingKey};
use fieldseal_proto::identity::{SignError, Signer};
use sha2::{Digest, Sha512};

/// What a hand-made signature looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Craft {
    /// An ordinary signature: `R = [r]B`.
    Honest,
    /// `R = [r]B + T` for the torsion point `EIGHT_TORSION[t]` (t in 1..8),
    /// and `S` made for it: the cofactorless equation misses by `T`.
    MixedR(usize),
    /// `R = EIGHT_TORSION[t]` and `S = k·a`: for `t = 0` (the neutral
    /// point) the cofactorless equation holds, but `R` is of small order.
    SmallR(usize),
    /// The neutral point as `R` with the sign bit of its `x = 0` set (a
    /// non-canonical encoding that decompresses), `S = k·a`.
    NonCanonicalR,
    /// An honest signature with `S + L` in place of `S`.
    SPlusL,
}

/// A key whose secret scalar is known, so that any `R` can be signed for.
#[derive(Debug, Clone)]
pub struct HandKey {
    /// The secret scalar.
    pub a: Scalar,
    /// `[a]B`, plus a torsion point for [`HandKey::with_torsion`].
    pub point: EdwardsPoint,
    /// Its public key.
    pub public: VerifyingKey,
    /// How it signs through [`Signer`].
    pub craft: Craft,
}

fn scalar_of(parts: &[&[u8]]) -> Scalar {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

impl HandKey {
    /// An ordinary key from a seed.
    pub fn new(seed: u8) -> HandKey {
        HandKey::with_torsion(seed, 0)
    }

    /// `[a]B + EIGHT_TORSION[t]`: mixed order for t in 1..8 (verify_strict
    /// accepts its signatures only where `k·T` is neutral).
    pub fn with_torsion(seed: u8, t: usize) -> HandKey {
        let a = scalar_of(&[b"hand key", &[seed]]);
        let point = EdwardsPoint::mul_base(&a) + EIGHT_TORSION[t];
        HandKey {
            a,
            point,
            public: VerifyingKey::from(point),
            craft: Craft::Honest,
        }
    }

    /// The small-order key `EIGHT_TORSION[t]` (secret scalar 0): every
    /// signature by it is rejected by `verify_strict`.
    pub fn weak(t: usize) -> HandKey {
        HandKey {
            a: Scalar::ZERO,
            point: EIGHT_TORSION[t],
            public: VerifyingKey::from(EIGHT_TORSION[t]),
            craft: Craft::Honest,
        }
    }

    /// The same key, signing through [`Signer`] as `craft` says.
    pub fn crafting(&self, craft: Craft) -> HandKey {
        HandKey {
            craft,
            ..self.clone()
        }
    }

    /// `R‖S` over `msg`, made as `craft` says.
    pub fn sign_as(&self, msg: &[u8], craft: Craft) -> [u8; 64] {
        let r = scalar_of(&[b"nonce", self.a.as_bytes(), msg]);
        let r_point = match craft {
            Craft::Honest | Craft::SPlusL => EdwardsPoint::mul_base(&r),
            Craft::MixedR(t) => EdwardsPoint::mul_base(&r) + EIGHT_TORSION[t],
            Craft::SmallR(t) => EIGHT_TORSION[t],
            Craft::NonCanonicalR => EdwardsPoint::identity(),
        };
        let mut r_bytes = r_point.compress().to_bytes();
        if craft == Craft::NonCanonicalR {
            r_bytes[31] |= 0x80;
            assert!(CompressedEdwardsY(r_bytes).decompress().is_some());
        }
        let k = scalar_of(&[&r_bytes, self.public.as_bytes(), msg]);
        let s = match craft {
            Craft::SmallR(_) | Craft::NonCanonicalR => k * self.a,
            _ => r + k * self.a,
        };
        let mut s_bytes = s.to_bytes();
        if craft == Craft::SPlusL {
            s_bytes = add_le(&s_bytes, &L);
        }
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r_bytes);
        sig[32..].copy_from_slice(&s_bytes);
        sig
    }
}

/// The order of the base point, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// `a + b` of two 256-bit little-endian numbers (no overflow for `S + L`).
fn add_le(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = v.to_le_bytes()[0];
        carry = v >> 8;
    }
    assert_eq!(carry, 0);
    out
}

impl Signer for HandKey {
    fn public_key(&self) -> VerifyingKey {
        self.public
    }
    fn try_sign(&self, msg: &[u8]) -> Result<Signature, SignError> {
        Ok(Signature::from_bytes(&self.sign_as(msg, self.craft)))
    }
}

/// `verify_strict`, the reference.
pub fn strict(key: &VerifyingKey, msg: &[u8], sig: &[u8; 64]) -> bool {
    key.verify_strict(msg, &Signature::from_bytes(sig)).is_ok()
}
