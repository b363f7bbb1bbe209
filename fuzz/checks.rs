//! The properties each fuzz target checks, one function per target, shared by
//! the cargo-fuzz targets (`fuzz_targets/*.rs`) and by the corpus replay test
//! of the workspace (`tests/tests/fuzz_corpus.rs`), which runs every stored
//! input through every decoder in `cargo test`.
#![allow(dead_code)] // each includer uses some of the functions

use ed25519_dalek::SigningKey;
use fieldseal_proto::ack::MediaAck;
use fieldseal_proto::chain::{verify_chain, VerifyOptions};
use fieldseal_proto::chainlog;
use fieldseal_proto::checkpoint::{Checkpoint, Note};
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::enroll::{EnrollRequest, EnrollResponse};
use fieldseal_proto::entry::SignedEntry;
use fieldseal_proto::frame::{Frame, FrameBuffer};
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::merkle::{self, ConsistencyProof, InclusionProof};
use fieldseal_proto::msg::Message;
use fieldseal_proto::receipt::Receipt;

/// Arbitrary bytes through the frame codec: `Frame::check`, `Frame::parse`,
/// exact decoding and `FrameBuffer` must never panic and must agree.
pub fn frame(data: &[u8]) {
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
}

/// Arbitrary bytes as a receipt and as a media acknowledgement (the two
/// signed statements of the server, of one length): decoding never panics,
/// what decodes re-encodes to the same bytes, and verification of garbage
/// fails without panicking.
pub fn receipt(data: &[u8]) {
    let key = SigningKey::from_bytes(&[9u8; 32]).verifying_key();
    if let Ok(r) = Receipt::from_bytes(data) {
        assert_eq!(r.to_bytes(), data);
        // A forged signature over fuzzer-chosen fields must not verify
        // (the fuzzer cannot find an ed25519 signature by chance).
        assert!(r.verify(&key).is_err());
    }
    if let Ok(a) = MediaAck::from_bytes(data) {
        assert_eq!(a.to_bytes(), data);
        assert!(a.verify(&key).is_err());
    }
}

/// Arbitrary bytes as a signed entry: decoding never panics, what decodes
/// re-encodes to exactly the same bytes (one encoding per entry), and the
/// chain verifier survives any bag of such entries.
pub fn entry(data: &[u8]) {
    if let Ok(e) = SignedEntry::from_bytes(data) {
        assert_eq!(e.to_bytes(), data);
    }
    // Split the input into several entries at 0xff 0xfe markers and verify them together.
    let parts: Vec<&[u8]> = data.split(|&b| b == 0xfe).collect();
    let key = SigningKey::from_bytes(&[9u8; 32]).verifying_key();
    let r = verify_chain(
        &key,
        parts.iter().copied(),
        &VerifyOptions {
            ordered: true,
            ..Default::default()
        },
    );
    assert_eq!(r.ok, r.findings.is_empty());
}

/// Arbitrary bytes as a chain log file: splitting never panics, and the
/// records plus the torn tail account for every byte when no error is reported.
pub fn chainlog(data: &[u8]) {
    let (log, err) = chainlog::split_lossy(data);
    let framed: usize = log.records.iter().map(|r| r.len() + 2).sum();
    assert_eq!(framed, log.complete_len);
    if err.is_none() {
        assert_eq!(log.complete_len + log.torn_tail, data.len());
    }
}

/// Arbitrary text as a signed checkpoint note: parsing never panics and never
/// accepts a note the fuzzer could not have signed.
pub fn checkpoint(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Note::parse(text);
    let _ = Checkpoint::parse_body(text);
    let key = SigningKey::from_bytes(&[9u8; 32]).verifying_key();
    assert!(Checkpoint::verify(text, "fuzz.example/log", &key).is_err());
}

/// Arbitrary bytes as inclusion and consistency proofs: decoding never panics,
/// what decodes re-encodes identically, and verification of garbage against a
/// real root fails without panicking.
pub fn proof(data: &[u8]) {
    let leaves: Vec<_> = (0u8..5).map(|i| merkle::leaf_hash(&[i])).collect();
    let root = merkle::root(&leaves);
    if let Ok(p) = InclusionProof::from_bytes(data) {
        assert_eq!(p.to_bytes(), data);
        let _ = merkle::verify_inclusion(
            &merkle::leaf_hash(b"x"),
            p.leaf_index(),
            p.tree_size(),
            p.hashes(),
            &root,
        );
    }
    if let Ok(p) = ConsistencyProof::from_bytes(data) {
        assert_eq!(p.to_bytes(), data);
        let _ = merkle::verify_consistency(p.old_size(), p.new_size(), &root, &root, p.hashes());
    }
}

/// Arbitrary bytes as a transparency-log leaf: decoding never panics and what
/// decodes re-encodes to the same bytes.
pub fn leaf(data: &[u8]) {
    if let Ok(l) = Leaf::from_bytes(data) {
        assert_eq!(l.to_bytes(), data);
        assert!(l.validate().is_ok());
    }
}

/// Arbitrary bytes as enrolment request and response: decoding never panics
/// and what decodes re-encodes to the same bytes.
pub fn enroll(data: &[u8]) {
    if let Ok(r) = EnrollRequest::from_bytes(data) {
        assert_eq!(r.to_bytes(), data);
    }
    if let Ok(r) = EnrollResponse::from_bytes(data) {
        assert_eq!(r.to_bytes(), data);
    }
}
