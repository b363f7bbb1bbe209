//! Arbitrary text as a signed checkpoint note: parsing never panics and never
//! accepts a note the fuzzer could not have signed.
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| checks::checkpoint(data));
