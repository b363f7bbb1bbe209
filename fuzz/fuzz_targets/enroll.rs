//! Arbitrary bytes as enrolment request and response: decoding never panics
//! and what decodes re-encodes to the same bytes.
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| checks::enroll(data));
