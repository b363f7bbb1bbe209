//! Arbitrary bytes as a signed entry: decoding never panics, what decodes
//! re-encodes to exactly the same bytes (one encoding per entry), and the
//! chain verifier survives any bag of such entries.
#![no_main]

use ed25519_dalek::SigningKey;
use fieldseal_proto::chain::{verify_chain, VerifyOptions};
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::entry::SignedEntry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = SignedEntry::from_bytes(data) {
        assert_eq!(e.to_bytes(), data);
    }
    // Split the input into several entries at 0xff 0xfe markers and verify them together.
    let parts: Vec<&[u8]> = data.split(|&b| b == 0xfe).collect();
    let key = SigningKey::from_bytes(&[9u8; 32]).verifying_key();
    let r = verify_chain(&key, parts.iter().copied(), &VerifyOptions { ordered: true, ..Default::default() });
    assert_eq!(r.ok, r.findings.is_empty());
});
