//! Arbitrary bytes through the frame codec: `Frame::check`, `Frame::parse`,
//! exact decoding and `FrameBuffer` must never panic and must agree.
#![no_main]

use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::frame::{Frame, FrameBuffer};
use fieldseal_proto::msg::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // 1. check and parse agree; what decodes re-encodes to the same bytes.
    match Frame::check(data) {
        Ok(n) => {
            assert!(n <= data.len());
            match Frame::parse(data) {
                Ok((msg, used)) => {
                    assert_eq!(used, n, "parse consumed other than check said");
                    assert_eq!(msg.to_bytes(), &data[..n], "non-canonical encoding");
                    let exact = Message::from_bytes(&data[..n]);
                    assert_eq!(exact.as_ref(), Ok(&msg));
                }
                Err(e) => assert!(!e.is_incomplete(), "complete frame reported incomplete"),
            }
        }
        Err(e) => assert_eq!(Frame::parse(data).unwrap_err(), e),
    }

    // 2. A FrameBuffer fed in pieces (sizes taken from the data itself) yields
    //    the same messages as parsing frame after frame from a slice.
    let mut expected = Vec::new();
    let mut expected_err = None;
    let mut rest = data;
    loop {
        match Frame::parse(rest) {
            Ok((m, n)) => {
                expected.push(m);
                rest = &rest[n..];
            }
            Err(e) if e.is_incomplete() => break,
            Err(e) => {
                expected_err = Some(e);
                break;
            }
        }
    }

    let mut fb = FrameBuffer::new();
    let mut got = Vec::new();
    let mut got_err = None;
    let mut input = data;
    let piece = usize::from(data.first().copied().unwrap_or(1)).max(1);
    'feed: while !input.is_empty() {
        let took = fb.push(&input[..piece.min(input.len())]);
        input = &input[took..];
        loop {
            match fb.next_message() {
                Ok(Some(m)) => got.push(m),
                Ok(None) => break,
                Err(e) => {
                    got_err = Some(e);
                    break 'feed;
                }
            }
        }
        assert!(took > 0, "FrameBuffer stalled");
    }
    assert_eq!(got, expected);
    assert_eq!(got_err, expected_err);
});
