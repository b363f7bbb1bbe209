//! Arbitrary bytes through the frame codec: `Frame::check`, `Frame::parse`,
//! exact decoding and `FrameBuffer` must never panic and must agree.
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| checks::frame(data));
