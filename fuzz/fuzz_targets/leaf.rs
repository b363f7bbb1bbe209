//! Arbitrary bytes as a transparency-log leaf: decoding never panics and what
//! decodes re-encodes to the same bytes.
#![no_main]

use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::leaf::Leaf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(l) = Leaf::from_bytes(data) {
        assert_eq!(l.to_bytes(), data);
        assert!(l.validate().is_ok());
    }
});
