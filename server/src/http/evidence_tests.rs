//! The evidence endpoints, links and tag attachment, driven in process
//! over an archive filled through the real ingest path.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ed25519_dalek::SigningKey;
use fieldseal_proto::codec::Decode;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::leaf::{CustodyAction, Leaf};
use fieldseal_proto::receipt::Receipt;
use fieldseal_proto::sample::SampleChain;
use tower::ServiceExt;

use super::tests::{
    archive_chain, archive_chain_alone, call, json, login, state, user, with, OFFICER_1,
};
use super::{app, AppState};
use crate::compliance::Span;

fn leaves(s: &Arc<AppState>) -> Vec<Leaf> {
    s.shared
        .db
        .leaves_from(0)
        .unwrap()
        .iter()
        .map(|b| Leaf::from_bytes(b).unwrap())
        .collect()
}

/// The custody leaves after the first `from` leaves: (action, actor, first, last, case, detail).
type Custodial = (CustodyAction, String, u64, u64, Option<String>, String);

fn custody_leaves(s: &Arc<AppState>, from: usize) -> Vec<Custodial> {
    leaves(s)[from..]
        .iter()
        .filter_map(|l| match l {
            Leaf::Custody {
                action,
                actor,
                first_seq,
                last_seq,
                case,
                detail,
                ..
            } => Some((
                *action,
                actor.clone(),
                *first_seq,
                *last_seq,
                case.clone(),
                detail.clone().unwrap_or_default(),
            )),
            _ => None,
        })
        .collect()
}

/// The sample chain's segments in server time, as compliance places them.
fn spans(s: &Arc<AppState>, chain: &SampleChain) -> Vec<Span> {
    let device = chain.entries[0].entry.device;
    let known: Vec<crate::timeline::Known<'_>> = chain
        .entries
        .iter()
        .map(|e| {
            let a = crate::chainindex::ChainIndex::entry(&s.shared.db, device, e.seq())
                .unwrap()
                .unwrap();
            crate::timeline::Known {
                entry: e,
                receipt_us: Some(Receipt::from_bytes(&a.receipt).unwrap().server_time_us),
                verified: true,
                media_us: e.entry.segment().map(|_| 0),
                expired: false,
            }
        })
        .collect();
    crate::timeline::device_timeline(device, &known, |_| None).spans
}

/// Open case `number` with one activity `a1` of `kind` over spans 0..=2
/// (the first recording), officer CJ-001.
async fn case_over_first_recording(
    s: &Arc<AppState>,
    admin: &str,
    number: &str,
    kind: &str,
    sp: &[Span],
) {
    call(s, with(admin, "POST", "/api/officers", OFFICER_1)).await;
    let case = format!(
        r#"{{"number":"{number}","body":"b","officers":["CJ-001"],
            "activities":[{{"id":"a1","kind":"{kind}","start_us":{},"end_us":{},"officers":["CJ-001"]}}]}}"#,
        sp[0].start_us, sp[2].end_us
    );
    let (st, _, body) = call(s, with(admin, "POST", "/api/cases", &case)).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
}

async fn compliance(s: &Arc<AppState>, token: &str, number: &str) -> serde_json::Value {
    let (st, _, body) = call(
        s,
        with(token, "GET", &format!("/api/cases/{number}/compliance"), ""),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    json(&body)
}

#[tokio::test]
async fn signed_tags_attach_recordings_without_custody_and_reindex_rebuilds_them() {
    let (_d, s) = state();
    let admin = login(&s).await;
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let chain = archive_chain_alone(&s, &key);
    let device = chain.entries[0].entry.device;
    let sp = spans(&s, &chain);
    // The sample is tagged CJ-2026-0001 / seizure.
    case_over_first_recording(&s, &admin, "CJ-2026-0001", "seizure", &sp).await;
    let sup = user(&s, "sup", "supervisor").await;
    let v = compliance(&s, &sup, "CJ-2026-0001").await;
    let a = &v["activities"][0];
    assert_eq!(a["devices"][0], device.to_string(), "{v}");
    let want = serde_json::json!([{"device": device.to_string(), "by": "tags",
        "first_seq": 2, "last_seq": 4, "segments": 3}]);
    assert_eq!(a["recordings"], want, "{v}");
    assert_eq!(a["verdict"]["best_run_seconds"], 12.0, "{v}");
    // The same window under another case number or activity type: nothing.
    case_over_first_recording(&s, &admin, "CJ-2026-0002", "seizure", &sp).await;
    let v2 = compliance(&s, &sup, "CJ-2026-0002").await;
    assert_eq!(v2["activities"][0]["recordings"], serde_json::json!([]));
    let kinds: Vec<&str> = v2["activities"][0]["verdict"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"uncovered"), "{v2}");

    // Rebuild the index from the files: the same tags, the same verdict.
    let sh = &s.shared;
    let before = sh.db.tags_raw().unwrap();
    assert_eq!(
        before.len(),
        7,
        "two recording starts and five segments are tagged"
    );
    crate::reindex::reindex(&sh.dir, &sh.db, sh.blobs.as_ref(), &sh.receipt_key).unwrap();
    assert_eq!(sh.db.tags_raw().unwrap(), before);
    let again = compliance(&s, &sup, "CJ-2026-0001").await;
    assert_eq!(again["activities"][0]["recordings"], want);
}

#[tokio::test]
async fn a_custodian_links_and_unlinks_recordings_and_each_is_a_custody_leaf() {
    let (_d, s) = state();
    let admin = login(&s).await;
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let chain = archive_chain_alone(&s, &key);
    let device = chain.entries[0].entry.device;
    let sp = spans(&s, &chain);
    // A hearing: the recording's signed tag (seizure) does not attach it.
    case_over_first_recording(&s, &admin, "CJ-2026-0001", "hearing", &sp).await;
    let cus = user(&s, "cus", "custodian").await;
    let sup = user(&s, "sup", "supervisor").await;
    let no_media = |v: &serde_json::Value| {
        v["activities"][0]["verdict"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "no-media")
    };
    assert!(no_media(&compliance(&s, &sup, "CJ-2026-0001").await));
    let uri = "/api/cases/CJ-2026-0001/activities/a1/links";
    let body = format!(r#"{{"device":"{device}","first_seq":2,"last_seq":4}}"#);
    for who in [&sup, &admin] {
        assert_eq!(
            call(&s, with(who, "POST", uri, &body)).await.0,
            StatusCode::FORBIDDEN
        );
    }
    let n = leaves(&s).len();
    assert_eq!(
        call(&s, with(&cus, "POST", uri, &body)).await.0,
        StatusCode::CREATED
    );
    let l = custody_leaves(&s, n);
    assert_eq!(l.len(), 1);
    assert_eq!(
        (l[0].0, l[0].1.as_str(), l[0].2, l[0].3, l[0].4.as_deref()),
        (CustodyAction::Link, "cus", 2, 4, Some("CJ-2026-0001"))
    );
    assert!(l[0].5.contains("activity a1"), "{}", l[0].5);
    let v = compliance(&s, &sup, "CJ-2026-0001").await;
    assert!(!no_media(&v), "{v}");
    assert_eq!(
        v["activities"][0]["recordings"],
        serde_json::json!([{"device": device.to_string(), "by": "link",
            "first_seq": 2, "last_seq": 4, "segments": 3}])
    );
    assert_eq!(
        call(&s, with(&cus, "POST", uri, &body)).await.0,
        StatusCode::CONFLICT
    );
    let n = leaves(&s).len();
    assert_eq!(
        call(&s, with(&cus, "DELETE", uri, &body)).await.0,
        StatusCode::NO_CONTENT
    );
    let l = custody_leaves(&s, n);
    assert_eq!((l.len(), l[0].0), (1, CustodyAction::Unlink));
    assert!(no_media(&compliance(&s, &sup, "CJ-2026-0001").await));
    assert_eq!(
        call(&s, with(&cus, "DELETE", uri, &body)).await.0,
        StatusCode::NOT_FOUND
    );
    // The entries are still there: unlinking deletes no evidence.
    let (st, _, _) = call(
        &s,
        with(&cus, "GET", &format!("/api/devices/{device}/entries/3"), ""),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn a_bad_link_names_the_field_and_leaves_no_leaf() {
    let (_d, s) = state();
    let admin = login(&s).await;
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let chain = archive_chain_alone(&s, &key);
    let device = chain.entries[0].entry.device;
    let sp = spans(&s, &chain);
    case_over_first_recording(&s, &admin, "CJ-2026-0001", "hearing", &sp).await;
    let cus = user(&s, "cus", "custodian").await;
    let uri = "/api/cases/CJ-2026-0001/activities/a1/links";
    let n = leaves(&s).len();
    let range =
        |d: &str, a: u64, b: u64| format!(r#"{{"device":"{d}","first_seq":{a},"last_seq":{b}}}"#);
    let d = device.to_string();
    for (body, status, field) in [
        (range("zz", 1, 2), StatusCode::BAD_REQUEST, Some("device")),
        (
            range("00000000000000ff", 1, 2),
            StatusCode::BAD_REQUEST,
            Some("device"),
        ),
        (range(&d, 4, 2), StatusCode::BAD_REQUEST, Some("last_seq")),
        (range(&d, 2, 10), StatusCode::BAD_REQUEST, Some("last_seq")),
        (
            range(&d, 0, 100_000),
            StatusCode::BAD_REQUEST,
            Some("last_seq"),
        ),
        (
            format!(r#"{{"device":"{d}","first_seq":1,"last_seq":2,"x":1}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("x"),
        ),
    ] {
        let (st, _, text) = call(&s, with(&cus, "POST", uri, &body)).await;
        assert_eq!(
            (st, json(&text)["field"].as_str()),
            (status, field),
            "{body}: {text}"
        );
    }
    for path in [
        "/api/cases/CJ-2026-0001/activities/nope/links",
        "/api/cases/CJ-2026-0404/activities/a1/links",
    ] {
        let (st, _, _) = call(&s, with(&cus, "POST", path, &range(&d, 1, 2))).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}");
    }
    let (st, _, text) = call(
        &s,
        with(
            &cus,
            "POST",
            "/api/cases/CJ-2026-0001/activities/a.b/links",
            &range(&d, 1, 2),
        ),
    )
    .await;
    assert_eq!(
        (st, json(&text)["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("activity"))
    );
    assert_eq!(leaves(&s).len(), n, "a refused link is no link leaf");
}

async fn raw(
    s: &Arc<AppState>,
    token: &str,
    uri: &str,
    range: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::get(uri).header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(r) = range {
        req = req.header(header::RANGE, r);
    }
    let resp = app(s.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (st, h) = (resp.status(), resp.headers().clone());
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (st, h, body.to_vec())
}

#[tokio::test]
async fn media_is_served_whole_and_in_ranges_after_a_view_leaf() {
    let (_d, s) = state();
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let chain = archive_chain(&s, &key);
    let device = chain.entries[0].entry.device;
    let cus = user(&s, "cus", "custodian").await;
    let bytes = &chain.media[&3];
    let uri = format!("/api/devices/{device}/entries/3/media");
    let etag = format!(
        "\"{}\"",
        hex::encode(fieldseal_proto::identity::sha256(bytes))
    );
    let n = leaves(&s).len();
    let (st, h, body) = raw(&s, &cus, &uri, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(&body, bytes);
    assert_eq!(h[header::ETAG], etag.as_str());
    assert_eq!(h[header::CONTENT_TYPE], "video/mp2t");
    assert_eq!(h[header::CONTENT_LENGTH], "1000");
    for (r, from, to) in [
        ("bytes=10-19", 10, 19),
        ("bytes=990-", 990, 999),
        ("bytes=-5", 995, 999),
        ("bytes=0-5000", 0, 999),
    ] {
        let (st, h, body) = raw(&s, &cus, &uri, Some(r)).await;
        assert_eq!(st, StatusCode::PARTIAL_CONTENT, "{r}");
        assert_eq!(&body[..], &bytes[from..=to], "{r}");
        assert_eq!(
            h[header::CONTENT_RANGE].to_str().unwrap(),
            format!("bytes {from}-{to}/1000")
        );
        assert_eq!(h[header::ETAG], etag.as_str());
    }
    let views = custody_leaves(&s, n);
    let details: Vec<&str> = views.iter().map(|v| v.5.as_str()).collect();
    assert_eq!(views.len(), 5);
    assert!(views
        .iter()
        .all(|v| v.0 == CustodyAction::View && v.2 == 3 && v.3 == 3));
    assert!(details[0].starts_with("media bytes 0-999"), "{details:?}");
    assert!(details[1].starts_with("media bytes 10-19"), "{details:?}");
    for r in ["bytes=1000-", "bytes=5-4", "bytes=0-1,4-5", "lines=1-2"] {
        let (st, h, body) = raw(&s, &cus, &uri, Some(r)).await;
        assert_eq!(st, StatusCode::RANGE_NOT_SATISFIABLE, "{r}");
        assert_eq!(h[header::CONTENT_RANGE], "bytes */1000");
        assert_eq!(json(&String::from_utf8(body).unwrap())["field"], "range");
    }
    assert_eq!(leaves(&s).len(), n + 5, "no leaf for a refused range");
    // An event has no media.
    let (st, _, _) = raw(
        &s,
        &cus,
        &format!("/api/devices/{device}/entries/1/media"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_damaged_blob_is_never_served_whole() {
    let (_d, s) = state();
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let chain = archive_chain(&s, &key);
    let device = chain.entries[0].entry.device;
    let cus = user(&s, "cus", "custodian").await;
    let bytes = &chain.media[&3];
    let path =
        crate::datadir::DataDir::new(&s.shared.dir).blob(&fieldseal_proto::identity::sha256(bytes));
    let mut bad = bytes.clone();
    bad[500] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    let req = Request::get(format!("/api/devices/{device}/entries/3/media"))
        .header(header::AUTHORIZATION, format!("Bearer {cus}"))
        .header(header::RANGE, "bytes=0-99")
        .body(Body::empty())
        .unwrap();
    let resp = app(s.clone()).oneshot(req).await.unwrap();
    assert!(
        axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .is_err(),
        "the body ends in an error, short of its length"
    );
}

#[tokio::test]
async fn an_entry_comes_with_its_signed_bytes_key_and_receipt_and_lists_page() {
    let (_d, s) = state();
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let chain = archive_chain(&s, &key);
    let device = chain.entries[0].entry.device;
    let sup = user(&s, "sup", "supervisor").await;
    let n = leaves(&s).len();
    let (st, _, body) = call(
        &s,
        with(&sup, "GET", &format!("/api/devices/{device}/entries/3"), ""),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let e = json(&body);
    let signed = hex::decode(e["signed_entry"].as_str().unwrap()).unwrap();
    let entry = fieldseal_proto::entry::SignedEntry::from_bytes(&signed).unwrap();
    assert_eq!(entry, chain.entries[3]);
    let dkey: [u8; 32] = hex::decode(e["device_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    entry
        .verify(&ed25519_dalek::VerifyingKey::from_bytes(&dkey).unwrap())
        .unwrap();
    let r = Receipt::from_bytes(&hex::decode(e["receipt"].as_str().unwrap()).unwrap()).unwrap();
    r.verify(&s.shared.receipt_key.verifying_key()).unwrap();
    assert_eq!((r.seq, r.entry_hash), (3, entry.hash()));
    assert_eq!(e["kind"], "segment");
    assert_eq!(e["case"], "CJ-2026-0001");
    assert_eq!(e["activity"], "seizure");
    assert_eq!(e["media"]["held"], true);
    assert_eq!(e["media"]["len"], 1000);
    // Where the device was: the sample states a point without fix time.
    assert_eq!(
        e["position"],
        serde_json::json!({"status": "fix", "lat_e7": 440_110_000, "lon_e7": 873_080_000,
            "accuracy_m": 8, "fix_us": null, "no_fix": null})
    );
    assert_eq!(e["receipt_us"].as_i64(), Some(r.server_time_us));
    let l = custody_leaves(&s, n);
    assert_eq!((l.len(), l[0].0, l[0].2), (1, CustodyAction::View, 3));
    assert!(l[0].5.starts_with("entry"), "{}", l[0].5);
    // A page of 4 from seq 2, and where the next starts; one leaf for it.
    let n = leaves(&s).len();
    let (st, _, body) = call(
        &s,
        with(
            &sup,
            "GET",
            &format!("/api/devices/{device}/entries?from=2&limit=4"),
            "",
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let page = json(&body);
    let seqs: Vec<u64> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![2, 3, 4, 5]);
    assert_eq!(page["entries"][3]["kind"], "recording-stopped");
    assert_eq!(page["next"], 6);
    let l = custody_leaves(&s, n);
    assert_eq!((l.len(), l[0].2, l[0].3), (1, 2, 5));
    let (_, _, body) = call(
        &s,
        with(
            &sup,
            "GET",
            &format!("/api/devices/{device}/entries?from=6"),
            "",
        ),
    )
    .await;
    assert_eq!(json(&body)["next"], serde_json::Value::Null);
    assert_eq!(json(&body)["entries"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn an_officer_reads_only_what_they_carried_and_an_admin_nothing() {
    let (_d, s) = state();
    let admin = login(&s).await;
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let chain = archive_chain_alone(&s, &key);
    let device = chain.entries[0].entry.device;
    // CJ-001 carried the device until the second recording started, CJ-002 after.
    let split = chain.entries[6].entry.wall_us;
    for (officer, from_us, to_us) in [("CJ-001", 0, Some(split)), ("CJ-002", split, None)] {
        s.shared
            .db
            .put_custody(&crate::cases::Custody {
                device,
                officer: officer.into(),
                from_us,
                to_us,
            })
            .unwrap();
    }
    let off = user(&s, "off", "officer").await; // CJ-001
    let base = format!("/api/devices/{device}/entries");
    let (st, _, body) = raw(&s, &off, &format!("{base}/3/media"), None).await;
    assert_eq!((st, &body), (StatusCode::OK, &chain.media[&3]));
    let (st, _, body) = call(&s, with(&off, "GET", &base, "")).await;
    assert_eq!(st, StatusCode::OK);
    let seqs: Vec<u64> = json(&body)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5], "only what CJ-001 carried");
    // Seq 7 was recorded while CJ-002 carried the device.
    let other = &chain.media[&7];
    for uri in [format!("{base}/7/media"), format!("{base}/7")] {
        let n = leaves(&s).len();
        let (st, _, body) = raw(&s, &off, &uri, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{uri}");
        let text = String::from_utf8(body.clone()).unwrap();
        assert_eq!(json(&text)["error"], "not-found");
        assert!(!body
            .windows(16)
            .any(|w| other.windows(16).next() == Some(w)));
        assert!(!text.contains(&hex::encode(&other[..8])) && !text.contains("signed_entry"));
        let l = custody_leaves(&s, n);
        assert_eq!(
            (l.len(), l[0].0, l[0].1.as_str(), l[0].2),
            (1, CustodyAction::Denied, "off", 7),
            "{uri}"
        );
        // The same answer as for evidence that does not exist.
        let (_, _, missing) = raw(&s, &off, &format!("{base}/999"), None).await;
        assert_eq!(missing, body);
    }
    for uri in [base.clone(), format!("{base}/3"), format!("{base}/3/media")] {
        let (st, _, body) = raw(&s, &admin, &uri, None).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{uri}");
        assert!(!String::from_utf8(body).unwrap().contains("signed_entry"));
    }
}

#[tokio::test]
async fn path_tricks_and_bad_queries_are_400_naming_the_field() {
    let (_d, s) = state();
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let chain = archive_chain(&s, &key);
    let d = chain.entries[0].entry.device;
    let cus = user(&s, "cus", "custodian").await;
    for (uri, field) in [
        ("/api/devices/..%2F..%2Fetc/entries".to_owned(), "device"),
        ("/api/devices/../entries".to_owned(), "device"),
        ("/api/devices/ABCDEF0123456789/entries".to_owned(), "device"),
        (
            "/api/devices/0123456789abcdef00/entries".to_owned(),
            "device",
        ),
        (
            format!("/api/devices/{}/entries", "a".repeat(5000)),
            "device",
        ),
        (
            "/api/devices/zzzzzzzzzzzzzzzz/entries/1".to_owned(),
            "device",
        ),
        (
            "/api/devices/0123456789abcde%00/entries/1/media".to_owned(),
            "device",
        ),
        (format!("/api/devices/{d}/entries/-1"), "seq"),
        (format!("/api/devices/{d}/entries/..%2F1"), "seq"),
        (
            format!("/api/devices/{d}/entries/99999999999999999999/media"),
            "seq",
        ),
        (format!("/api/devices/{d}/entries?limit=0"), "limit"),
        (format!("/api/devices/{d}/entries?limit=1001"), "limit"),
        (format!("/api/devices/{d}/entries?from=x"), "from"),
    ] {
        let (st, _, body) = call(&s, with(&cus, "GET", &uri, "")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(json(&body)["field"], field, "{uri}: {body}");
    }
    let unknown = DeviceId([0x77; 8]);
    let (st, _, _) = call(
        &s,
        with(&cus, "GET", &format!("/api/devices/{unknown}/entries"), ""),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _, _) = call(
        &s,
        with(&cus, "GET", &format!("/api/devices/{d}/entries/10"), ""),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "past the chain's end");
}
