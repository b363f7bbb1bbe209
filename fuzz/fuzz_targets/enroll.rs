//! Arbitrary bytes as enrolment request and response: decoding never panics
//! and what decodes re-encodes to the same bytes.
#![no_main]

use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::enroll::{EnrollRequest, EnrollResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = EnrollRequest::from_bytes(data) {
        assert_eq!(r.to_bytes(), data);
    }
    if let Ok(r) = EnrollResponse::from_bytes(data) {
        assert_eq!(r.to_bytes(), data);
    }
});
