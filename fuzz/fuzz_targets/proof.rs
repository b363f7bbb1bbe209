//! Arbitrary bytes as inclusion and consistency proofs: decoding never panics,
//! what decodes re-encodes identically, and verification of garbage against a
//! real root fails without panicking.
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| checks::proof(data));
