//! The golden export package, `proto/tests/vectors/export-package.tar`:
//! made by the real export path ([`super::plan_as`], [`super::write`]) from
//! an archive filled through the real ingest path, with every input fixed
//! (keys, server times, export time and id), so that it comes out the same
//! byte for byte. `docs/FORMAT.md` §10.7 prints it whole, and the proto
//! tests (`proto/tests/vectors_package.rs`) check the report and the text
//! against it. Regenerate deliberately with
//! `FIELDSEAL_BLESS=1 cargo test -p fieldseal-server --lib golden`,
//! then bless the proto test too.

use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use fieldseal_proto::codec::Encode;
use fieldseal_proto::identity::{sha256, DeviceId};
use fieldseal_proto::msg::Message;

use crate::cases::{Case, Custody, OfficerRecord};
use crate::catalogue::Catalogue;
use crate::datadir::DataDir;
use crate::Shared;

/// The sample device's secret key seed (FORMAT.md §2).
const DEVICE_SEED: [u8; 32] = [0x42; 32];
/// The CA's secret key seed.
const CA_SEED: [u8; 32] = [0xca; 32];
/// The receipt (and log) key's seed: the receipt key of FORMAT.md §7.7.
const RECEIPT_SEED: [u8; 32] = [0x09; 32];
/// 2026-07-02T09:00:00Z, a day after the recording.
const CREATED_US: i64 = 1_782_982_800_000_000;
const EXPORT_ID: &str = "0123456789abcdef0123456789abcdef";
const CASE_NO: &str = "CJ-2026-0001";

fn vector_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto/tests/vectors/export-package.tar")
}

/// A data folder whose CA and receipt keys are the fixed ones.
fn fixed_server() -> (tempfile::TempDir, Shared) {
    let dir = tempfile::tempdir().unwrap();
    crate::admin::init(dir.path(), &[], Some("golden-password".into())).unwrap();
    let data = DataDir::new(dir.path());
    let (ca_crt, ca_key) = crate::pki::ca_from_seed(&CA_SEED).unwrap();
    std::fs::write(data.ca_cert(), ca_crt).unwrap();
    std::fs::write(data.ca_key(), ca_key).unwrap();
    let receipt = SigningKey::from_bytes(&RECEIPT_SEED);
    let hex_line = |b: &[u8]| format!("{}\n", hex::encode(b));
    std::fs::write(data.receipt_key(), hex_line(&receipt.to_bytes())).unwrap();
    std::fs::write(
        data.receipt_pub(),
        hex_line(receipt.verifying_key().as_bytes()),
    )
    .unwrap();
    let cfg = crate::config::Config::load(dir.path()).unwrap();
    let shared = Shared::load(dir.path(), cfg).unwrap();
    (dir, shared)
}

/// The sample chain of FORMAT.md §8.1, accepted one entry at a time a
/// second after the device signed it, its media held a second later.
fn archive_sample(sh: &Shared) {
    let key = SigningKey::from_bytes(&DEVICE_SEED);
    let device = DeviceId::from_key(&key.verifying_key());
    sh.db
        .put_device(&crate::db::DeviceRecord {
            id: device,
            name: "cam1".into(),
            key: key.verifying_key(),
            enrolled_us: 0,
            revoked_us: None,
        })
        .unwrap();
    let chain = fieldseal_proto::sample::build(&key, &[2], 48);
    for e in &chain.entries {
        let at = e.entry.wall_us + 1_000_000;
        let items = [(key.verifying_key(), e.to_bytes())];
        let m = crate::ingest::submit_group_at(sh, &items, || at).pop();
        assert!(matches!(m, Some(Message::EntryReceipt(_))), "{m:?}");
        if let Some(bytes) = chain.media.get(&e.seq()) {
            let mut f = sh.storage.open_partial(device, e.seq(), 0).unwrap();
            std::io::Write::write_all(&mut f, bytes).unwrap();
            drop(f);
            sh.storage
                .commit_partial(device, e.seq(), &sha256(bytes), sh.blobs.as_ref())
                .unwrap();
            crate::chainindex::ChainIndex::put_media(&sh.db, device, e.seq()).unwrap();
            sh.db
                .put_media_time_unflushed(device, e.seq(), at + 1_000_000)
                .unwrap();
        }
    }
    let first = &chain.entries[1].entry;
    let last = &chain.entries[4].entry;
    let officer: OfficerRecord = serde_json::from_value(serde_json::json!({
        "certificate": "CJ-001", "name": "王五",
        "valid_from": "2026-01-01", "valid_until": "2027-12-31"
    }))
    .unwrap();
    sh.db.put_officer(&officer).unwrap();
    sh.db
        .put_custody(&Custody {
            device,
            officer: "CJ-001".into(),
            from_us: 0,
            to_us: None,
        })
        .unwrap();
    let case: Case = serde_json::from_value(serde_json::json!({
        "number": CASE_NO, "body": "昌吉州市场监督管理局", "officers": ["CJ-001"],
        "activities": [{"id": "a1", "kind": "seizure", "officers": ["CJ-001"],
            "start_us": first.wall_us, "end_us": last.wall_us + 2_000_000}]
    }))
    .unwrap();
    sh.db.put_case(&case).unwrap();
}

/// The golden package's bytes, made now.
fn golden_package() -> Vec<u8> {
    let (_dir, sh) = fixed_server();
    archive_sample(&sh);
    let cat = Catalogue::article_27();
    let plan = super::plan_as(&sh, &cat, CASE_NO, "custodian", CREATED_US, EXPORT_ID).unwrap();
    let open = |h: &fieldseal_proto::identity::Hash32| sh.blobs.open(h);
    let mut out = Vec::new();
    super::write(&plan, &open, &mut out, &mut |_| {}).unwrap();
    out
}

#[test]
fn golden_package_is_made_the_same_every_time() {
    // Twice in one run: nothing random (export id, certificate serial,
    // signature nonce) and no clock reading slipped in.
    let now = golden_package();
    assert_eq!(now, golden_package(), "two exports of one archive differ");
    let path = vector_path();
    if std::env::var_os("FIELDSEAL_BLESS").is_some() {
        std::fs::write(&path, &now).unwrap();
    }
    let stored = std::fs::read(&path).unwrap_or_default();
    assert!(
        stored == now,
        "{} differs from the package the export makes now; if the change is \
         deliberate regenerate it (see this module's doc) and FORMAT.md §10.7",
        path.display()
    );
}
