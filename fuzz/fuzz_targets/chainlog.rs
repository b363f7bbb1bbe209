//! Arbitrary bytes as a chain log file: splitting never panics, and the
//! records plus the torn tail account for every byte when no error is reported.
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| checks::chainlog(data));
