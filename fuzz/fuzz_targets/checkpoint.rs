//! Arbitrary text as a signed checkpoint note: parsing never panics and never
//! accepts a note the fuzzer could not have signed.
#![no_main]

use ed25519_dalek::SigningKey;
use fieldseal_proto::checkpoint::{Checkpoint, Note};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Note::parse(text);
    let _ = Checkpoint::parse_body(text);
    let key = SigningKey::from_bytes(&[9u8; 32]).verifying_key();
    assert!(Checkpoint::verify(text, "fuzz.example/log", &key).is_err());
});
