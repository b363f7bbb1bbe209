//! The export package, built from an archive filled through the real ingest
//! path and downloaded through `GET /api/cases/{number}/export`, verified by
//! `fieldseal_proto::package::verify`; then each class of tampering of
//! issue 16, one test each, named after it.

use std::sync::Arc;

use axum::http::{header, StatusCode};
use ed25519_dalek::SigningKey;
use fieldseal_proto::chainlog;
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::entry::{Body, Event, SignedEntry};
use fieldseal_proto::identity::{sha256, DeviceId};
use fieldseal_proto::package::{self as pkg, Manifest, ManifestMember, PackageReport};
use fieldseal_proto::receipt::Receipt;
use fieldseal_proto::ustar;
use tower::ServiceExt;

use super::tests::{archive_chain, call, login, state, user, with, OFFICER_1};
use super::AppState;

const CASE_NO: &str = "CJ-2026-0042";

/// An archive with the sample chain of device key 0x42 (seqs 0..=9: two
/// recordings of 3 and 2 segments), a case whose one activity covers all
/// five segments, and its package as a custodian downloads it.
struct Fixture {
    _dir: tempfile::TempDir,
    s: Arc<AppState>,
    package: Vec<u8>,
    device: DeviceId,
}

async fn exported() -> Fixture {
    let (dir, s) = state();
    let admin = login(&s).await;
    call(&s, with(&admin, "POST", "/api/officers", OFFICER_1)).await;
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let chain = archive_chain(&s, &key);
    let device = chain.entries[0].entry.device;
    let (first, last) = (&chain.entries[2], &chain.entries[8]);
    let case = format!(
        r#"{{"number":"{CASE_NO}","body":"b","officers":["CJ-001"],
            "activities":[{{"id":"a1","kind":"seizure","start_us":{},"end_us":{},"officers":["CJ-001"]}}]}}"#,
        first.entry.wall_us - 5_000_000,
        last.entry.wall_us + 1_000_000,
    );
    assert_eq!(
        call(&s, with(&admin, "POST", "/api/cases", &case)).await.0,
        StatusCode::CREATED
    );
    let custodian = user(&s, "keeper", "custodian").await;
    let uri = format!("/api/cases/{CASE_NO}/export");
    let resp = super::app(s.clone())
        .oneshot(with(&custodian, "GET", &uri, ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers().clone();
    let package = axum::body::to_bytes(resp.into_body(), 1 << 26)
        .await
        .unwrap()
        .to_vec();
    assert_eq!(h[header::CONTENT_TYPE], "application/x-tar");
    assert_eq!(
        h[header::CONTENT_LENGTH],
        package.len().to_string().as_str()
    );
    assert_eq!(
        h[header::CONTENT_DISPOSITION],
        format!("attachment; filename=\"{CASE_NO}-fieldseal.tar\"").as_str()
    );
    Fixture {
        _dir: dir,
        s,
        package,
        device,
    }
}

fn members(p: &[u8]) -> Vec<(String, Vec<u8>)> {
    ustar::members(p)
        .unwrap()
        .into_iter()
        .map(|(n, d)| (n, d.to_vec()))
        .collect()
}

fn verify(m: &[(String, Vec<u8>)]) -> PackageReport {
    let ms: Vec<pkg::Member<'_>> = m
        .iter()
        .map(|(n, d)| pkg::Member::from_bytes(n, d))
        .collect();
    pkg::verify(&ms)
}

fn kinds(r: &PackageReport) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.kind).collect()
}

fn get<'a>(m: &'a mut [(String, Vec<u8>)], name: &str) -> &'a mut Vec<u8> {
    &mut m.iter_mut().find(|(n, _)| n == name).unwrap().1
}

/// What an attacker without the server's key can do about the manifest:
/// list the members as they now are, and keep the old signature.
fn redo_manifest(m: &mut [(String, Vec<u8>)], edit: impl FnOnce(&mut Manifest)) {
    let name = pkg::manifest();
    let mut man: Manifest = serde_json::from_slice(get(m, &name)).unwrap();
    man.members = m
        .iter()
        .filter(|(n, _)| *n != name && *n != pkg::manifest_sig())
        .map(|(n, d)| ManifestMember {
            name: n.clone(),
            size: d.len() as u64,
            sha256: hex::encode(sha256(d)),
        })
        .collect();
    edit(&mut man);
    *get(m, &name) = serde_json::to_vec_pretty(&man).unwrap();
}

fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
    chainlog::split(bytes)
        .unwrap()
        .records
        .iter()
        .map(|r| r.to_vec())
        .collect()
}

fn log_of(recs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in recs {
        chainlog::put_record(&mut out, r);
    }
    out
}

/// Re-sign `entries` as one chain from the first one's seq and prev hash.
fn resign(entries: Vec<SignedEntry>, key: &SigningKey) -> Vec<Vec<u8>> {
    let mut prev = entries[0].entry.prev_hash;
    let start = entries[0].seq();
    let dev = DeviceId::from_key(&key.verifying_key());
    let mut out = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        let mut en = e.entry;
        en.seq = start + i as u64;
        en.prev_hash = prev;
        en.device = dev;
        let s = en.sign(key).unwrap();
        prev = s.hash();
        out.push(s.to_bytes());
    }
    out
}

#[tokio::test]
async fn the_package_verifies_and_proves_its_own_export() {
    let f = exported().await;
    let m = members(&f.package);
    let r = verify(&m);
    assert!(r.ok, "{r}");
    let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
    let d = f.device;
    let mut want = vec![
        pkg::readme(),
        pkg::ca_cert(),
        pkg::receipt_pub(),
        pkg::log_vkey(),
    ];
    want.extend([
        pkg::device_pub(d),
        pkg::device_crt(d),
        pkg::chain_log(d),
        pkg::receipts_log(d),
    ]);
    want.extend([2, 3, 4, 7, 8].map(|s| pkg::media(d, s)));
    want.extend([
        pkg::compliance(),
        pkg::checkpoint(),
        pkg::proofs(),
        pkg::manifest(),
        pkg::manifest_sig(),
    ]);
    assert_eq!(names, want);
    // The covered range is the case's segments and their two neighbours.
    assert_eq!(r.devices[0].entries, 9);
    assert_eq!(r.devices[0].media_verified, 5);
    let export = r
        .custody
        .iter()
        .find(|c| c.action == fieldseal_proto::leaf::CustodyAction::Export)
        .expect("the export leaf is in the package");
    assert_eq!((export.first_seq, export.last_seq), (2, 8));
    assert_eq!(export.actor, "keeper");
    // The fingerprints are those of this server's keys.
    let sh = &f.s.shared;
    let receipt = pkg::fingerprint(&sh.receipt_key.verifying_key());
    assert_eq!(r.fingerprints.receipt.as_deref(), Some(receipt.as_str()));
    assert_eq!(r.fingerprints.log.as_deref(), Some(receipt.as_str()));
    assert!(r.fingerprints.ca.is_some());
    // And the log itself holds the export leaf (the checkpoint after it).
    let audit = sh.db.custody_leaves(0).count();
    assert!(audit >= 1);
}

#[tokio::test]
async fn the_package_holds_no_private_key() {
    let f = exported().await;
    let dir = &f.s.shared.dir;
    let dd = crate::datadir::DataDir::new(dir);
    let mut secrets: Vec<Vec<u8>> = vec![SigningKey::from_bytes(&[0x42; 32]).to_bytes().to_vec()];
    secrets.push(f.s.shared.receipt_key.to_bytes().to_vec());
    for path in [dd.ca_key(), dd.server_key()] {
        let der = crate::pki::read_key(&path).unwrap();
        let der = der.secret_der();
        // The Ed25519 seed: the OCTET STRING in an OCTET STRING of RFC 8410
        // (a v2 key has the public key after it, which is public).
        let at = der
            .windows(4)
            .position(|w| w == [0x04, 0x22, 0x04, 0x20])
            .unwrap()
            + 4;
        secrets.push(der[at..at + 32].to_vec());
        secrets.push(der.to_vec());
    }
    // Every key file as it is on disk, too (PEM and hex texts).
    for path in [dd.ca_key(), dd.server_key(), dd.receipt_key()] {
        let text = std::fs::read(&path).unwrap();
        secrets.push(text.trim_ascii().to_vec());
    }
    for s in &secrets {
        assert!(
            !f.package.windows(s.len()).any(|w| w == s.as_slice()),
            "a private key's bytes are in the package"
        );
        let h = hex::encode(s);
        assert!(!f.package.windows(h.len()).any(|w| w == h.as_bytes()));
    }
}

#[tokio::test]
async fn tamper_flipped_bit_in_a_segment() {
    let f = exported().await;
    let mut m = members(&f.package);
    get(&mut m, &pkg::media(f.device, 3))[100] ^= 0x01;
    let k = kinds(&verify(&m));
    assert!(
        k.contains(&"member-altered") && k.contains(&"media-mismatch"),
        "{k:?}"
    );
}

#[tokio::test]
async fn tamper_segment_removed() {
    let f = exported().await;
    let mut m = members(&f.package);
    m.retain(|(n, _)| *n != pkg::media(f.device, 3));
    let k = kinds(&verify(&m));
    assert!(
        k.contains(&"member-missing") && k.contains(&"missing-media"),
        "{k:?}"
    );
    // Also with the manifest redone: the chain still names the segment.
    redo_manifest(&mut m, |_| {});
    let k = kinds(&verify(&m));
    assert!(
        k.contains(&"missing-media") && k.contains(&"manifest-signature"),
        "{k:?}"
    );
}

#[tokio::test]
async fn tamper_segments_reordered() {
    let f = exported().await;
    let mut m = members(&f.package);
    let (a, b) = (pkg::media(f.device, 2), pkg::media(f.device, 3));
    // The files swapped under their names: each is the other's bytes.
    let (ia, ib) = (
        m.iter().position(|(n, _)| *n == a).unwrap(),
        m.iter().position(|(n, _)| *n == b).unwrap(),
    );
    let tmp = m[ia].1.clone();
    m[ia].1 = m[ib].1.clone();
    m[ib].1 = tmp;
    let k = kinds(&verify(&m));
    assert_eq!(
        k.iter().filter(|x| **x == "media-mismatch").count(),
        2,
        "{k:?}"
    );
    // The members moved in the archive, bytes intact.
    let mut m = members(&f.package);
    m.swap(ia, ib);
    let k = kinds(&verify(&m));
    assert_eq!(k, vec!["member-order"]);
}

#[tokio::test]
async fn tamper_segment_replaced_by_another_valid_one() {
    let f = exported().await;
    let mut m = members(&f.package);
    let other = get(&mut m, &pkg::media(f.device, 7)).clone();
    *get(&mut m, &pkg::media(f.device, 3)) = other;
    redo_manifest(&mut m, |_| {});
    let r = verify(&m);
    let k = kinds(&r);
    assert!(
        k.contains(&"media-mismatch") && k.contains(&"manifest-signature"),
        "{k:?}"
    );
    assert!(r
        .findings
        .iter()
        .any(|x| x.kind == "media-mismatch" && x.seq == Some(3)));
}

#[tokio::test]
async fn tamper_entry_edited() {
    let f = exported().await;
    let mut m = members(&f.package);
    let log = get(&mut m, &pkg::chain_log(f.device));
    let mut recs = records(log);
    // Entry 3's wall clock (after prefix, version, device, seq, prev hash).
    recs[2][19 + 1 + 8 + 8 + 32 + 7] ^= 0x10;
    *log = log_of(&recs);
    redo_manifest(&mut m, |_| {});
    let k = kinds(&verify(&m));
    assert!(
        k.contains(&"bad-signature") && k.contains(&"manifest-signature"),
        "{k:?}"
    );
}

#[tokio::test]
async fn tamper_event_deleted_and_chain_resigned_with_the_device_key() {
    let f = exported().await;
    let mut m = members(&f.package);
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let log = get(&mut m, &pkg::chain_log(f.device));
    let mut entries: Vec<SignedEntry> = records(log)
        .iter()
        .map(|r| SignedEntry::from_bytes(r).unwrap())
        .collect();
    // Delete the start of the second recording (seq 6) and re-sign the
    // rest: a chain that verifies on its own.
    let stop = entries.iter().position(|e| e.seq() == 6).unwrap();
    assert!(matches!(
        entries[stop].entry.body,
        Body::Event(Event::RecordingStarted { .. })
    ));
    entries.remove(stop);
    *log = log_of(&resign(entries, &key));
    let rl = get(&mut m, &pkg::receipts_log(f.device));
    let mut rs = records(rl);
    rs.remove(stop);
    *rl = log_of(&rs);
    // The media of the moved segments, renamed to their new seqs.
    for (old, new) in [(7, 6), (8, 7)] {
        let name = pkg::media(f.device, old);
        m.iter_mut().find(|(n, _)| *n == name).unwrap().0 = pkg::media(f.device, new);
    }
    redo_manifest(&mut m, |man| {
        man.devices[0].to_seq = 8;
        man.devices[0].last_seq = 7;
        man.devices[0].head_seq = 8;
    });
    let r = verify(&m);
    // The chain alone is fine now; the server's receipts are not.
    assert!(r.devices[0].findings.is_empty(), "{r}");
    let receipts = r
        .findings
        .iter()
        .filter(|x| x.kind == "receipt" && x.seq.is_some_and(|s| s >= 6))
        .count();
    assert_eq!(receipts, 3, "{r}");
}

#[tokio::test]
async fn tamper_timestamp_changed_and_chain_resigned_with_the_device_key() {
    let f = exported().await;
    let mut m = members(&f.package);
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let log = get(&mut m, &pkg::chain_log(f.device));
    let mut entries: Vec<SignedEntry> = records(log)
        .iter()
        .map(|r| SignedEntry::from_bytes(r).unwrap())
        .collect();
    // Entry 6 signed a second later, and every later entry re-linked: the
    // chain verifies alone, seqs and receipts line up one to one.
    entries[5].entry.wall_us += 1_000_000;
    *log = log_of(&resign(entries, &key));
    redo_manifest(&mut m, |_| {});
    let r = verify(&m);
    assert!(r.devices[0].findings.is_empty(), "{r}");
    let hit: Vec<u64> = r
        .findings
        .iter()
        .filter(|x| x.kind == "receipt")
        .filter_map(|x| x.seq)
        .collect();
    assert_eq!(hit, vec![6, 7, 8, 9], "{r}");
}

#[tokio::test]
async fn tamper_chain_resigned_under_a_new_key_with_the_key_replaced() {
    let f = exported().await;
    let mut m = members(&f.package);
    let new = SigningKey::from_bytes(&[0x77; 32]);
    let log = get(&mut m, &pkg::chain_log(f.device));
    let entries: Vec<SignedEntry> = records(log)
        .iter()
        .map(|r| SignedEntry::from_bytes(r).unwrap())
        .collect();
    *log = log_of(&resign(entries, &new));
    *get(&mut m, &pkg::device_pub(f.device)) = pkg::key_member(&new.verifying_key());
    redo_manifest(&mut m, |_| {});
    let r = verify(&m);
    let k = kinds(&r);
    assert!(
        k.contains(&"certificate"),
        "the CA never certified the new key: {k:?}"
    );
    assert!(k.contains(&"receipt"), "{k:?}");
}

#[tokio::test]
async fn tamper_forged_receipt() {
    let f = exported().await;
    let mut m = members(&f.package);
    let rl = get(&mut m, &pkg::receipts_log(f.device));
    let mut rs = records(rl);
    let r = Receipt::from_bytes(&rs[3]).unwrap();
    let forger = SigningKey::from_bytes(&[0x66; 32]);
    let forged = Receipt::sign(
        r.device_id,
        r.seq,
        r.entry_hash,
        r.server_time_us,
        r.log_index,
        &forger,
    );
    rs[3] = forged.to_bytes();
    *rl = log_of(&rs);
    redo_manifest(&mut m, |_| {});
    let r = verify(&m);
    assert!(
        r.findings
            .iter()
            .any(|x| x.kind == "receipt" && x.seq == Some(4)),
        "{r}"
    );
}

#[tokio::test]
async fn tamper_altered_receipt() {
    let f = exported().await;
    let mut m = members(&f.package);
    let rl = get(&mut m, &pkg::receipts_log(f.device));
    let mut rs = records(rl);
    // The server time of entry 4's receipt, one second earlier.
    rs[3][1 + 8 + 8 + 32 + 5] ^= 0x01;
    *rl = log_of(&rs);
    redo_manifest(&mut m, |_| {});
    let r = verify(&m);
    assert!(
        r.findings
            .iter()
            .any(|x| x.kind == "receipt" && x.seq == Some(4)),
        "{r}"
    );
}

fn edit_proofs(m: &mut [(String, Vec<u8>)], edit: impl FnOnce(&mut pkg::Proofs)) {
    let p = get(m, &pkg::proofs());
    let mut proofs: pkg::Proofs = serde_json::from_slice(p).unwrap();
    edit(&mut proofs);
    *p = serde_json::to_vec_pretty(&proofs).unwrap();
    redo_manifest(m, |_| {});
}

#[tokio::test]
async fn tamper_truncated_proof() {
    let f = exported().await;
    let mut m = members(&f.package);
    edit_proofs(&mut m, |p| _ = p.leaves[0].proof.pop());
    let k = kinds(&verify(&m));
    assert!(k.contains(&"inclusion"), "{k:?}");
}

#[tokio::test]
async fn tamper_altered_proof() {
    let f = exported().await;
    let mut m = members(&f.package);
    edit_proofs(&mut m, |p| {
        let h = &mut p.leaves[2].proof[0];
        let flipped = if h.starts_with('0') { "1" } else { "0" };
        h.replace_range(0..1, flipped);
    });
    let k = kinds(&verify(&m));
    assert!(k.contains(&"inclusion"), "{k:?}");
}

#[tokio::test]
async fn tamper_forged_checkpoint() {
    let f = exported().await;
    let mut m = members(&f.package);
    let note = String::from_utf8(get(&mut m, &pkg::checkpoint()).clone()).unwrap();
    let cp = fieldseal_proto::checkpoint::Note::parse(&note).unwrap();
    let body = fieldseal_proto::checkpoint::Checkpoint::parse_body(cp.text()).unwrap();
    // Same origin, same tree, signed by another key under the log's name.
    let forger = SigningKey::from_bytes(&[0x55; 32]);
    let forged = body.sign(&body.origin, &forger).unwrap();
    *get(&mut m, &pkg::checkpoint()) = forged.into_bytes();
    redo_manifest(&mut m, |_| {});
    let k = kinds(&verify(&m));
    assert!(k.contains(&"checkpoint"), "{k:?}");
}

/// Cut the last entries (the second recording's last segment and its stop)
/// with their media and receipts.
fn cut_tail(m: &mut Vec<(String, Vec<u8>)>, d: DeviceId) {
    for name in [pkg::chain_log(d), pkg::receipts_log(d)] {
        let b = get(m, &name);
        let mut recs = records(b);
        recs.truncate(recs.len() - 2);
        *b = log_of(&recs);
    }
    m.retain(|(n, _)| *n != pkg::media(d, 8));
}

#[tokio::test]
async fn tamper_cut_tail_with_the_manifest_redone_without_the_server_key() {
    let f = exported().await;
    let mut m = members(&f.package);
    cut_tail(&mut m, f.device);
    redo_manifest(&mut m, |man| {
        man.devices[0].to_seq = 7;
        man.devices[0].last_seq = 7;
        man.devices[0].head_seq = 7;
    });
    let r = verify(&m);
    // Every member agrees with the manifest now; its signature does not.
    let k = kinds(&r);
    assert!(k.contains(&"manifest-signature"), "{k:?}");
    assert!(
        !k.contains(&"member-missing") && !k.contains(&"member-altered"),
        "{k:?}"
    );
    // And the export leaf names the range as it was exported.
    assert!(k.contains(&"custody"), "{k:?}");
}

#[tokio::test]
async fn tamper_cut_tail_with_the_manifest_left_as_it_is() {
    let f = exported().await;
    let mut m = members(&f.package);
    cut_tail(&mut m, f.device);
    let r = verify(&m);
    let k = kinds(&r);
    assert!(
        k.contains(&"member-missing") && k.contains(&"member-altered"),
        "{k:?}"
    );
    assert!(k.contains(&"range"), "{k:?}");
    assert!(r.findings.iter().any(|x| x.kind == "member-missing"
        && x.member.as_deref() == Some(pkg::media(f.device, 8).as_str())));
}

#[tokio::test]
async fn only_custodians_export_and_an_unknown_case_is_404() {
    let (_d, s) = state();
    let sup = user(&s, "sup", "supervisor").await;
    let (st, _, _) = call(
        &s,
        with(&sup, "GET", &format!("/api/cases/{CASE_NO}/export"), ""),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let keeper = user(&s, "keeper", "custodian").await;
    let (st, _, _) = call(&s, with(&keeper, "GET", "/api/cases/NO-SUCH/export", "")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}
