//! Golden vectors of the transparency log: Merkle roots and proofs
//! (`tests/vectors/merkle.json`) and a signed checkpoint
//! (`tests/vectors/checkpoint.txt`, `tests/vectors/checkpoint.vkey`).
//!
//! The tests recompute every vector and compare it with the files, so any
//! change to the hashing, the proofs, their encodings or the note format fails
//! here. They also verify the files' proofs and note as an independent verifier
//! would. After an intended format change, regenerate with
//! `FIELDSEAL_REGEN_VECTORS=1 cargo test -p fieldseal-proto --test log_vectors`
//! and update `docs/FORMAT.md`.

use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use fieldseal_proto::checkpoint::{Checkpoint, VerifierKey};
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::identity::Hash32;
use fieldseal_proto::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion,
    ConsistencyProof, InclusionProof,
};
use serde_json::{json, Value};

/// Leaves `b"leaf-0"` … `b"leaf-7"`.
const LEAVES: usize = 8;
const ORIGIN: &str = "fieldseal.example/log";
const TIME: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const CHECKPOINT_SIZE: usize = 7;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("vectors")
}

/// Compare `actual` with the file, or write it when regenerating.
fn golden(name: &str, actual: &str) {
    let path = vectors_dir().join(name);
    if std::env::var_os("FIELDSEAL_REGEN_VECTORS").is_some() {
        std::fs::create_dir_all(vectors_dir()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (regenerate, see the module doc)", path.display()));
    assert_eq!(actual, expected, "{name} differs from the golden file");
}

fn data() -> Vec<Vec<u8>> {
    (0..LEAVES)
        .map(|i| format!("leaf-{i}").into_bytes())
        .collect()
}

fn hexes(hs: &[Hash32]) -> Vec<String> {
    hs.iter().map(hex::encode).collect()
}

fn unhex32(v: &Value) -> Hash32 {
    let mut h = [0u8; 32];
    hex::decode_to_slice(v.as_str().unwrap(), &mut h).unwrap();
    h
}

fn merkle_vectors() -> Value {
    let data = data();
    let leaves: Vec<Hash32> = data.iter().map(|d| leaf_hash(d)).collect();
    let roots: Vec<Value> = (0..=LEAVES)
        .map(|n| json!({ "size": n, "root": hex::encode(root(&leaves[..n])) }))
        .collect();
    let mut inclusion = Vec::new();
    for n in 1..=LEAVES {
        for i in 0..n {
            let proof = inclusion_proof(&leaves[..n], i as u64).unwrap();
            let encoded = InclusionProof::new(i as u64, n as u64, proof.clone())
                .unwrap()
                .to_bytes();
            inclusion.push(json!({
                "leaf_index": i,
                "tree_size": n,
                "proof": hexes(&proof),
                "encoded": hex::encode(encoded),
            }));
        }
    }
    let mut consistency = Vec::new();
    for n in 1..=LEAVES {
        for m in 0..=n {
            let proof = consistency_proof(&leaves[..n], m as u64).unwrap();
            let encoded = ConsistencyProof::new(m as u64, n as u64, proof.clone())
                .unwrap()
                .to_bytes();
            consistency.push(json!({
                "old_size": m,
                "new_size": n,
                "proof": hexes(&proof),
                "encoded": hex::encode(encoded),
            }));
        }
    }
    json!({
        "description": "RFC 9162 Merkle tree over leaves b\"leaf-0\"..b\"leaf-7\": leaf hash = SHA-256(0x00 || data), node hash = SHA-256(0x01 || left || right). Hashes in lowercase hex. See docs/FORMAT.md.",
        "leaf_data": data.iter().map(hex::encode).collect::<Vec<_>>(),
        "leaf_hashes": hexes(&leaves),
        "roots": roots,
        "inclusion": inclusion,
        "consistency": consistency,
    })
}

#[test]
fn merkle_vectors_match_the_golden_file() {
    let text = serde_json::to_string_pretty(&merkle_vectors()).unwrap() + "\n";
    golden("merkle.json", &text);
}

/// Verify the file's contents with the verifier alone, as another
/// implementation would.
#[test]
fn merkle_golden_file_verifies() {
    let text = std::fs::read_to_string(vectors_dir().join("merkle.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let roots: Vec<Hash32> = v["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| unhex32(&r["root"]))
        .collect();
    let leaves: Vec<Hash32> = v["leaf_data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| leaf_hash(&hex::decode(d.as_str().unwrap()).unwrap()))
        .collect();
    for p in v["inclusion"].as_array().unwrap() {
        let (i, n) = (
            p["leaf_index"].as_u64().unwrap(),
            p["tree_size"].as_u64().unwrap(),
        );
        let proof: Vec<Hash32> = p["proof"].as_array().unwrap().iter().map(unhex32).collect();
        let root = roots[usize::try_from(n).unwrap()];
        verify_inclusion(&leaves[usize::try_from(i).unwrap()], i, n, &proof, &root).unwrap();
        let decoded =
            InclusionProof::from_bytes(&hex::decode(p["encoded"].as_str().unwrap()).unwrap())
                .unwrap();
        assert_eq!(
            (decoded.leaf_index(), decoded.tree_size(), decoded.hashes()),
            (i, n, &proof[..])
        );
    }
    for p in v["consistency"].as_array().unwrap() {
        let (m, n) = (
            p["old_size"].as_u64().unwrap(),
            p["new_size"].as_u64().unwrap(),
        );
        let proof: Vec<Hash32> = p["proof"].as_array().unwrap().iter().map(unhex32).collect();
        let (old, new) = (
            roots[usize::try_from(m).unwrap()],
            roots[usize::try_from(n).unwrap()],
        );
        verify_consistency(m, n, &old, &new, &proof).unwrap();
        let decoded =
            ConsistencyProof::from_bytes(&hex::decode(p["encoded"].as_str().unwrap()).unwrap())
                .unwrap();
        decoded.verify(&old, &new).unwrap();
    }
}

fn log_key() -> SigningKey {
    SigningKey::from_bytes(&[1u8; 32])
}

fn checkpoint() -> Checkpoint {
    let leaves: Vec<Hash32> = data().iter().map(|d| leaf_hash(d)).collect();
    Checkpoint {
        origin: ORIGIN.into(),
        size: CHECKPOINT_SIZE as u64,
        root: root(&leaves[..CHECKPOINT_SIZE]),
        time_unix: TIME,
    }
}

#[test]
fn checkpoint_matches_the_golden_file() {
    let note = checkpoint().sign(ORIGIN, &log_key()).unwrap();
    golden("checkpoint.txt", &note);
    let vkey = VerifierKey::new(ORIGIN, log_key().verifying_key()).unwrap();
    golden("checkpoint.vkey", &format!("{vkey}\n"));
}

#[test]
fn checkpoint_golden_file_verifies_with_the_golden_verifier_key() {
    let note = std::fs::read_to_string(vectors_dir().join("checkpoint.txt")).unwrap();
    let vkey: VerifierKey = std::fs::read_to_string(vectors_dir().join("checkpoint.vkey"))
        .unwrap()
        .trim_end()
        .parse()
        .unwrap();
    assert_eq!(vkey.verify_checkpoint(&note), Ok(checkpoint()));
}
