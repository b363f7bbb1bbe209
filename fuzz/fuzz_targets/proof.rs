//! Arbitrary bytes as inclusion and consistency proofs: decoding never panics,
//! what decodes re-encodes identically, and verification of garbage against a
//! real root fails without panicking.
#![no_main]

use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::merkle::{self, ConsistencyProof, InclusionProof};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let leaves: Vec<_> = (0u8..5).map(|i| merkle::leaf_hash(&[i])).collect();
    let root = merkle::root(&leaves);
    if let Ok(p) = InclusionProof::from_bytes(data) {
        assert_eq!(p.to_bytes(), data);
        let _ = merkle::verify_inclusion(&merkle::leaf_hash(b"x"), p.leaf_index(), p.tree_size(), p.hashes(), &root);
    }
    if let Ok(p) = ConsistencyProof::from_bytes(data) {
        assert_eq!(p.to_bytes(), data);
        let _ = merkle::verify_consistency(p.old_size(), p.new_size(), &root, &root, p.hashes());
    }
});
