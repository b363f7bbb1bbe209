//! Arbitrary bytes as a receipt: decoding never panics, what decodes re-encodes
//! to the same bytes, and verification of garbage fails without panicking.
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| checks::receipt(data));
