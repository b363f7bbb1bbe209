//! Legal holds (role matrix, validation, their leaves) and the annual
//! report (JSON numbers, CSV form, roles, the year) over HTTP.

use super::*;

use fieldseal_proto::codec::Decode;
use fieldseal_proto::leaf::{CustodyAction, Leaf};

/// The custody leaf at `index`.
fn leaf(s: &Arc<AppState>, index: u64) -> Leaf {
    let bytes = s.shared.db.leaves_from(index).unwrap();
    Leaf::from_bytes(&bytes[0]).unwrap()
}

fn hold_body(device: &str, first: u64, last: u64, reason: &str) -> String {
    serde_json::json!({"device": device, "first_seq": first, "last_seq": last, "reason": reason})
        .to_string()
}

#[tokio::test]
async fn holds_are_placed_listed_and_released_by_the_right_roles_only() {
    let (_d, s) = state();
    let admin = login(&s).await;
    let cus = user(&s, "cus", "custodian").await;
    let sup = user(&s, "sup", "supervisor").await;
    let off = user(&s, "off", "officer").await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
    let chain = archive_chain(&s, &key);
    let dev = chain.entries[0].entry.device.to_string();
    let body = hold_body(&dev, 1, 4, "法院调取证据");

    for (who, want) in [(&admin, 403), (&off, 403)] {
        let (st, _, b) = call(&s, with(who, "POST", "/api/holds", &body)).await;
        assert_eq!(st.as_u16(), want, "{b}");
    }
    let (st, _, _) = call(&s, post_json("/api/holds", &body)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, b) = call(&s, with(&cus, "POST", "/api/holds", &body)).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let h = json(&b);
    let Leaf::Custody {
        action,
        actor,
        device,
        first_seq,
        last_seq,
        detail,
        ..
    } = leaf(&s, h["leaf"].as_u64().unwrap())
    else {
        panic!("not custody")
    };
    assert_eq!(
        (
            action,
            actor.as_str(),
            device.to_string(),
            first_seq,
            last_seq
        ),
        (CustodyAction::Hold, "cus", dev.clone(), 1, 4)
    );
    assert_eq!(detail.as_deref(), Some("法院调取证据"));
    let (st, _, b) = call(&s, with(&sup, "POST", "/api/holds", &body)).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert_ne!(json(&b)["id"], h["id"]);

    for who in [&cus, &sup, &admin] {
        let (st, _, b) = call(&s, with(who, "GET", "/api/holds", "")).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(json(&b).as_array().unwrap().len(), 2);
    }
    assert_eq!(
        call(&s, with(&off, "GET", "/api/holds", "")).await.0,
        StatusCode::FORBIDDEN
    );

    let id = h["id"].as_u64().unwrap();
    let uri = format!("/api/holds/{id}/release");
    let release = r#"{"reason":"判决已生效"}"#;
    for who in [&admin, &off] {
        assert_eq!(
            call(&s, with(who, "POST", &uri, release)).await.0,
            StatusCode::FORBIDDEN
        );
    }
    let (st, _, b) = call(&s, with(&sup, "POST", &uri, release)).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let r = json(&b);
    assert_eq!(r["released"]["by"], "sup");
    let Leaf::Custody { action, detail, .. } = leaf(&s, r["released"]["leaf"].as_u64().unwrap())
    else {
        panic!("not custody")
    };
    assert_eq!(
        (action, detail.as_deref()),
        (CustodyAction::Release, Some("判决已生效"))
    );
    assert!(!s.shared.db.hold(id).unwrap().unwrap().keeps(device, 2));
    let (st, _, _) = call(&s, with(&cus, "POST", &uri, release)).await;
    assert_eq!(st, StatusCode::CONFLICT, "released twice");
    let (st, _, b) = call(&s, with(&cus, "POST", "/api/holds/abc/release", release)).await;
    assert_eq!(
        (st, json(&b)["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("id"))
    );
    let (st, _, _) = call(&s, with(&cus, "POST", "/api/holds/999/release", release)).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _, b) = call(
        &s,
        with(&cus, "POST", "/api/holds/2/release", r#"{"reason":""}"#),
    )
    .await;
    assert_eq!(json(&b)["field"], "reason", "{st} {b}");
}

#[tokio::test]
async fn a_hold_that_does_not_make_sense_is_refused_naming_the_field() {
    let (_d, s) = state();
    let cus = user(&s, "cus", "custodian").await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
    let dev = archive_chain(&s, &key).entries[0].entry.device.to_string();
    let refused = |body: String, status: u16, field: &'static str| {
        let s = s.clone();
        let cus = cus.clone();
        async move {
            let (st, _, b) = call(&s, with(&cus, "POST", "/api/holds", &body)).await;
            assert_eq!(st.as_u16(), status, "{body}: {b}");
            if !field.is_empty() {
                assert_eq!(json(&b)["field"], field, "{body}: {b}");
            }
            b
        }
    };
    refused(hold_body(&dev, 0, 1, ""), 400, "reason").await;
    refused(hold_body(&dev, 0, 1, "   "), 400, "reason").await;
    refused(hold_body(&dev, 0, 1, &"证".repeat(201)), 400, "reason").await;
    refused(hold_body(&dev, 0, 1, "a\nb"), 400, "reason").await;
    refused(hold_body(&dev, 5, 4, "x"), 400, "last_seq").await;
    refused(hold_body(&dev, 0, 1_000_000, "x"), 400, "last_seq").await;
    refused(hold_body("../../etc", 0, 1, "x"), 400, "device").await;
    let b = refused(hold_body("00000000000000ff", 0, 1, "x"), 404, "").await;
    assert!(
        b.contains("00000000000000ff"),
        "the 404 names the device: {b}"
    );
    let mut v: serde_json::Value = serde_json::from_str(&hold_body(&dev, 0, 1, "x")).unwrap();
    v["case"] = "NO-SUCH".into();
    let b = refused(v.to_string(), 404, "").await;
    assert!(b.contains("NO-SUCH"), "{b}");
    v["case"] = "../x".into();
    refused(v.to_string(), 400, "case").await;
    v["colour"] = 1.into();
    let (st, _, b) = call(&s, with(&cus, "POST", "/api/holds", &v.to_string())).await;
    assert!(
        st.is_client_error() && json(&b)["field"] == "colour",
        "{st} {b}"
    );
    // The limits themselves are fine: 200 characters, a million entries.
    let (st, _, b) = call(
        &s,
        with(
            &cus,
            "POST",
            "/api/holds",
            &hold_body(&dev, 0, 999_999, &"证".repeat(200)),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
}

/// µs of `date` at `hh:00` local (UTC+8).
fn local(date: &str, hh: i64) -> i64 {
    let day = crate::cases::parse_day("d", date).unwrap();
    (day * 86_400 + (hh - 8) * 3600) * 1_000_000
}

#[tokio::test]
async fn the_annual_report_counts_a_hand_built_year_as_json_and_csv() {
    let (_d, s) = state();
    let admin = login(&s).await;
    let cus = user(&s, "cus", "custodian").await;
    let sup = user(&s, "sup", "supervisor").await;
    let off = user(&s, "off", "officer").await;
    call(&s, with(&admin, "POST", "/api/officers", OFFICER_1)).await;
    // This year, so that the letter the server dates now falls in it.
    let y = crate::report::local_year(crate::now_us(), 8 * 3600);
    let act = |id: &str, kind: &str, date: String, hours: i64| {
        let start = local(&date, 10);
        serde_json::json!({"id": id, "kind": kind, "start_us": start,
            "end_us": start + hours * 3_600_000_000, "officers": ["CJ-001"]})
    };
    let cases = [
        serde_json::json!({"number": "CJ-A", "body": "市场监管局", "officers": ["CJ-001"],
            "activities": [act("a1", "seizure", format!("{y}-03-01"), 1),
                           act("a2", "hearing", format!("{y}-04-01"), 2)]}),
        serde_json::json!({"number": "CJ-B", "body": "城管局, 东区", "officers": ["CJ-001"],
            "activities": [act("b1", "seizure", format!("{y}-05-01"), 1),
                           act("b0", "seizure", format!("{}-05-01", y - 1), 1)]}),
    ];
    for c in &cases {
        let (st, _, b) = call(&s, with(&cus, "POST", "/api/cases", &c.to_string())).await;
        assert_eq!(st, StatusCode::CREATED, "{b}");
    }
    let (st, _, _) = call(
        &s,
        with(
            &sup,
            "POST",
            "/api/cases/CJ-A/letters",
            r#"{"text":"补录"}"#,
        ),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);

    let uri = format!("/api/reports/annual?year={y}");
    let (st, _, b) = call(&s, with(&sup, "GET", &uri, "")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let r = json(&b);
    assert_eq!(r["activities"], 3, "{b}");
    assert_eq!(r["by_type"]["seizure"], 2);
    assert_eq!(r["by_type"]["hearing"], 1);
    assert_eq!(r["by_body"]["市场监管局"], 2);
    assert_eq!(r["by_body"]["城管局, 东区"], 1);
    assert_eq!(r["coverage"]["continuous-av"]["required_seconds"], 7200.0);
    assert_eq!(r["coverage"]["continuous-av"]["covered_seconds"], 0.0);
    assert_eq!(r["coverage"]["av"]["activities"], 1);
    assert_eq!(r["coverage"]["av"]["required_seconds"], 7200.0);
    // No recording at all: each seizure is one unexplained stretch of an
    // hour, the hearing has no media, nobody showed identity.
    assert_eq!(r["gaps"]["unexplained"]["count"], 2);
    assert_eq!(r["gaps"]["unexplained"]["seconds"], 7200.0);
    assert_eq!(r["findings"]["no-media"], 1);
    assert_eq!(r["findings"]["no-identity-shown"], 3);
    assert_eq!(r["late_uploads"]["findings"], 0);
    assert_eq!(r["letters"], 1);

    let (st, h, csv) = call(&s, with(&cus, "GET", &format!("{uri}&format=csv"), "")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    let disp = h[header::CONTENT_DISPOSITION].to_str().unwrap();
    assert!(
        disp.contains(&format!("fieldseal-annual-{y}.csv")),
        "{disp}"
    );
    let rows = crate::report::tests::parse_csv(&csv);
    assert_eq!(rows[0], ["section", "key", "value"]);
    let num = |sec: &str, key: &str| -> f64 {
        rows.iter()
            .find(|x| x[0] == sec && x[1] == key)
            .unwrap_or_else(|| panic!("{sec},{key}: {csv}"))[2]
            .parse()
            .unwrap()
    };
    assert_eq!(
        num("activities", "total"),
        r["activities"].as_f64().unwrap()
    );
    assert_eq!(num("activities_by_body", "城管局, 东区"), 1.0);
    assert_eq!(num("coverage:continuous-av", "required_seconds"), 7200.0);
    assert_eq!(num("gaps_seconds", "unexplained"), 7200.0);
    assert_eq!(num("findings", "no-identity-shown"), 3.0);
    assert_eq!(num("letters", "issued"), 1.0);

    for who in [&admin, &off] {
        assert_eq!(
            call(&s, with(who, "GET", &uri, "")).await.0,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(call(&s, get(&uri)).await.0, StatusCode::UNAUTHORIZED);
    for (q, field) in [
        ("year=1999", "year"),
        ("year=2101", "year"),
        ("year=abc", "year"),
        ("", "year"),
        ("year=2026&format=xml", "format"),
        ("year=2026&colour=1", "colour"),
    ] {
        let (st, _, b) = call(
            &s,
            with(&sup, "GET", &format!("/api/reports/annual?{q}"), ""),
        )
        .await;
        assert_eq!(
            (st, json(&b)["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{q}: {b}"
        );
    }
    let (st, _, _) = call(&s, with(&sup, "GET", "/api/reports/annual?year=2100", "")).await;
    assert_eq!(st, StatusCode::OK);
}
