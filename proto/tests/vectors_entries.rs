//! Golden vectors for entries and the verification report: the format must not
//! change by accident. Regenerate deliberately with
//! `FIELDSEAL_BLESS=1 cargo test -p fieldseal-proto --test vectors_entries`
//! and update docs/FORMAT.md in the same commit.

use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use fieldseal_proto::chain::{verify_chain, MediaObservation, VerifyOptions};
use fieldseal_proto::codec::Encode;
use fieldseal_proto::identity::{sha256, Signer};
use fieldseal_proto::sample;
use serde_json::{json, Value};

fn vectors() -> Value {
    let seed = [0x42u8; 32];
    let key = SigningKey::from_bytes(&seed);
    let s = sample::build(&key, &[2], 48);
    let entries: Vec<Value> = s
        .entries
        .iter()
        .map(|e| {
            json!({
                "seq": e.seq(),
                "signed_entry": hex::encode(e.to_bytes()),
                "signing_bytes_len": e.encoded_len() - 64,
                "entry_hash": hex::encode(e.hash()),
            })
        })
        .collect();
    let media: Vec<Value> = s
        .media
        .iter()
        .map(|(seq, b)| json!({"seq": seq, "bytes": hex::encode(b), "sha256": hex::encode(sha256(b))}))
        .collect();
    let opts = VerifyOptions {
        media: Some(
            s.media
                .iter()
                .map(|(&q, b)| {
                    (
                        q,
                        MediaObservation::Present {
                            sha256: sha256(b),
                            len: b.len() as u64,
                        },
                    )
                })
                .collect(),
        ),
        ordered: true,
        ..Default::default()
    };
    let bytes: Vec<Vec<u8>> = s.entries.iter().map(Encode::to_bytes).collect();
    let report = verify_chain(&key.verifying_key(), bytes.iter().map(Vec::as_slice), &opts);
    json!({
        "comment": "fieldseal entry vectors; see docs/FORMAT.md. Secret key seed is for tests only.",
        "secret_key_seed": hex::encode(seed),
        "public_key": hex::encode(key.verifying_key().as_bytes()),
        "device_id": key.device_id().to_string(),
        "entries": entries,
        "media": media,
        "report": serde_json::to_value(&report).unwrap(),
    })
}

#[test]
fn entry_vectors_match_the_file() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/entries.json");
    let now = vectors();
    if std::env::var_os("FIELDSEAL_BLESS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&now).unwrap() + "\n").unwrap();
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(stored, now, "the entry format changed; see the module doc");
}
