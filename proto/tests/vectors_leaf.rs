//! Golden vectors for transparency-log leaves (docs/FORMAT.md §6.8).
//! Regenerate deliberately with `FIELDSEAL_BLESS=1`.

use std::path::PathBuf;

use fieldseal_proto::codec::Encode;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::leaf::{CustodyAction, Leaf};
use serde_json::{json, Value};

fn vectors() -> Value {
    let entry = Leaf::Entry {
        device: DeviceId([0xfb, 0xde, 0x64, 0x2c, 0xa4, 0x62, 0xee, 0x6f]),
        seq: 4,
        entry_hash: [0xb5; 32],
        server_time_us: 1_782_896_460_000_000,
    };
    let custody = Leaf::Custody {
        time_us: 1_782_900_000_000_000,
        action: CustodyAction::Export,
        actor: "custodian".into(),
        device: DeviceId([0xfb, 0xde, 0x64, 0x2c, 0xa4, 0x62, 0xee, 0x6f]),
        first_seq: 0,
        last_seq: 4,
        case: Some("CJ-2026-0001".into()),
        detail: None,
    };
    let login = Leaf::Custody {
        time_us: 1_782_900_060_000_000,
        action: CustodyAction::LoginFailed,
        actor: "custodian".into(),
        device: DeviceId::NONE,
        first_seq: 0,
        last_seq: 0,
        case: None,
        detail: Some("from 127.0.0.1: wrong password".into()),
    };
    let one =
        |l: &Leaf| json!({"data": hex::encode(l.to_bytes()), "leaf_hash": hex::encode(l.hash())});
    json!({"entry_leaf": one(&entry), "custody_leaf": one(&custody), "login_failed_leaf": one(&login)})
}

#[test]
fn leaf_vectors_match_the_file() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/leaves.json");
    let now = vectors();
    if std::env::var_os("FIELDSEAL_BLESS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&now).unwrap() + "\n").unwrap();
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(stored, now, "the leaf format changed");
}
