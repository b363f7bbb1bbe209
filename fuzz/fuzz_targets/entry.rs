//! Arbitrary bytes as a signed entry: decoding never panics, what decodes
//! re-encodes to exactly the same bytes (one encoding per entry), and the
//! chain verifier survives any bag of such entries.
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| checks::entry(data));
