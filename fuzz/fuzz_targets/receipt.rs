//! Arbitrary bytes as a receipt: decoding never panics, what decodes re-encodes
//! to the same bytes, and verification of garbage fails without panicking.
#![no_main]

use ed25519_dalek::SigningKey;
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::receipt::Receipt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Receipt::from_bytes(data) {
        assert_eq!(r.to_bytes(), data);
        let key = SigningKey::from_bytes(&[9u8; 32]).verifying_key();
        // A forged signature over fuzzer-chosen fields must not verify
        // (the fuzzer cannot find an ed25519 signature by chance).
        assert!(r.verify(&key).is_err());
    }
});
