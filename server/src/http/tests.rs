//! The API driven in process with `oneshot`: no socket.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use tower::ServiceExt;

use super::{app, router_and_doc, AppState};
use crate::catalogue::Catalogue;

pub(super) const PASSWORD: &str = "test-password-long";

pub(super) fn state() -> (tempfile::TempDir, Arc<AppState>) {
    let dir = tempfile::tempdir().unwrap();
    crate::admin::init(dir.path(), &[], Some(PASSWORD.into())).unwrap();
    let cfg = crate::config::Config::load(dir.path()).unwrap();
    let shared = Arc::new(crate::Shared::load(dir.path(), cfg).unwrap());
    (
        dir,
        Arc::new(AppState::new(shared, Catalogue::article_27())),
    )
}

pub(super) async fn call(
    s: &Arc<AppState>,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = app(s.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

pub(super) fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

pub(super) fn post_json(uri: &str, json: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json.to_owned()))
        .unwrap()
}

pub(super) fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

pub(super) async fn login(s: &Arc<AppState>) -> String {
    let (st, _, body) = call(
        s,
        post_json(
            "/api/login",
            &format!(r#"{{"user":"admin","password":"{PASSWORD}"}}"#),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    json(&body)["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn health_and_the_catalogue_need_no_login() {
    let (_d, s) = state();
    let (st, _, body) = call(&s, get("/healthz")).await;
    assert_eq!((st, body.as_str()), (StatusCode::OK, "ok\n"));
    let (st, _, body) = call(&s, get("/api/catalogue")).await;
    assert_eq!(st, StatusCode::OK);
    let c: Catalogue = serde_json::from_str(&body).unwrap();
    assert_eq!(c, Catalogue::article_27());
    let (st, _, body) = call(&s, get("/api/nothing/../etc/passwd")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(json(&body)["error"], "not-found");
}

#[tokio::test]
async fn login_gives_a_token_and_a_cookie_that_logout_ends() {
    let (_d, s) = state();
    let (st, _, body) = call(&s, get("/api/me")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&body)["error"], "unauthenticated");
    let (st, headers, body) = call(
        &s,
        post_json(
            "/api/login",
            &format!(r#"{{"user":"admin","password":"{PASSWORD}"}}"#),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let token = json(&body)["token"].as_str().unwrap().to_owned();
    assert_eq!(json(&body)["role"], "admin");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let bearer = |uri: &str, method: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let (st, _, body) = call(&s, bearer("/api/me", "GET")).await;
    assert_eq!(
        (st, json(&body)["user"].as_str()),
        (StatusCode::OK, Some("admin"))
    );
    let by_cookie = Request::get("/api/me")
        .header(
            header::COOKIE,
            format!("other=1; fieldseal_session={token}"),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&s, by_cookie).await.0, StatusCode::OK);
    assert_eq!(
        call(&s, bearer("/api/logout", "POST")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&s, bearer("/api/me", "GET")).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn failed_logins_are_refused_alike_and_then_slowed() {
    let (_d, s) = state();
    for (user, pw) in [
        ("admin", "wrong-password"),
        ("nobody", PASSWORD),
        ("admin", ""),
    ] {
        let (st, _, body) = call(
            &s,
            post_json(
                "/api/login",
                &format!(r#"{{"user":"{user}","password":"{pw}"}}"#),
            ),
        )
        .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{user}");
        assert_eq!(json(&body)["error"], "bad-credentials");
    }
    // Three failures from this address: the right password must now wait.
    let (st, _, body) = call(
        &s,
        post_json(
            "/api/login",
            &format!(r#"{{"user":"admin","password":"{PASSWORD}"}}"#),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let (_, _, m) = call(&s, get("/metrics")).await;
    assert!(
        m.contains("fieldseal_logins_total{outcome=\"failed\"} 4\n"),
        "{m}"
    );
}

#[tokio::test]
async fn bad_bodies_get_a_json_error_naming_the_field() {
    let (_d, s) = state();
    let (st, _, body) = call(
        &s,
        post_json(
            "/api/login",
            r#"{"user":"admin","password":"x","colour":1}"#,
        ),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(json(&body)["field"], "colour");
    let (st, _, body) = call(&s, post_json("/api/login", r#"{"user":"admin"}"#)).await;
    assert!(st.is_client_error());
    assert_eq!(json(&body)["field"], "password");
    let (st, _, body) = call(&s, post_json("/api/login", "{not json")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(json(&body)["error"], "invalid");
    let text = Request::post("/api/login")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("user=admin"))
        .unwrap();
    let (st, _, body) = call(&s, text).await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(json(&body)["error"], "unsupported-media-type");
    let huge = format!(
        r#"{{"user":"{}","password":"x"}}"#,
        "a".repeat(super::MAX_BODY + 1)
    );
    let (st, _, body) = call(&s, post_json("/api/login", &huge)).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap();
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_served() {
    let (_d, s) = state();
    let (st, _, body) = call(&s, get("/api/openapi.json")).await;
    assert_eq!(st, StatusCode::OK);
    let doc = json(&body);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let (_, spec) = router_and_doc(s.clone());
    let token = login(&s).await;
    let mut n = 0;
    for (path, item) in &spec.paths.paths {
        for (method, op) in [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
            ("PATCH", &item.patch),
        ] {
            if op.is_none() {
                continue;
            }
            n += 1;
            let req = Request::builder()
                .method(method)
                .uri(path.as_str())
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let (st, _, body) = call(&s, req).await;
            // Served: anything but the fallback's 404 or a 405.
            let fallback = st == StatusCode::NOT_FOUND && body.contains("no such endpoint");
            assert!(
                !fallback && st != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: {st} {body}"
            );
        }
    }
    assert!(n >= 6, "{n} operations documented");
    assert!(doc["paths"]["/api/catalogue"]["get"].is_object());
    // An entry's position is documented with its members.
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["EntryInfo"]["properties"]["position"].is_object(),
        "{}",
        schemas["EntryInfo"]
    );
    for member in [
        "status",
        "lat_e7",
        "lon_e7",
        "accuracy_m",
        "fix_us",
        "no_fix",
    ] {
        assert!(
            schemas["EntryPosition"]["properties"][member].is_object(),
            "{member}: {}",
            schemas["EntryPosition"]
        );
    }
}

/// A user of `role` (an officer carries certificate `CJ-001`), logged in.
pub(super) async fn user(s: &Arc<AppState>, name: &str, role: &str) -> String {
    let hash = crate::auth::hash_password(PASSWORD).unwrap();
    s.shared
        .db
        .put_user(&crate::db::UserRecord {
            name: name.into(),
            role: role.into(),
            password_hash: hash,
            disabled: false,
            officer: (role == "officer").then(|| "CJ-001".into()),
        })
        .unwrap();
    let (st, _, body) = call(
        s,
        post_json(
            "/api/login",
            &format!(r#"{{"user":"{name}","password":"{PASSWORD}"}}"#),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    json(&body)["token"].as_str().unwrap().to_owned()
}

pub(super) fn with(token: &str, method: &str, uri: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

pub(super) const OFFICER_1: &str = r#"{"certificate":"CJ-001","name":"王五","valid_from":"2026-01-01","valid_until":"2027-12-31"}"#;
pub(super) const OFFICER_2: &str = r#"{"certificate":"CJ-002","name":"赵六","valid_from":"2026-01-01","valid_until":"2027-12-31"}"#;
const CASE: &str =
    r#"{"number":"CJ-2026-0001","body":"昌吉州市场监督管理局","officers":["CJ-001"],"major":true}"#;
const OTHER_CASE: &str =
    r#"{"number":"CJ-2026-0002","body":"昌吉州市场监督管理局","officers":["CJ-002"]}"#;

#[tokio::test]
async fn a_case_is_opened_recorded_in_stages_and_guarded_by_art_28() {
    let (_d, s) = state();
    let admin = login(&s).await;
    let custodian = user(&s, "cus", "custodian").await;
    let supervisor = user(&s, "sup", "supervisor").await;
    for o in [OFFICER_1, OFFICER_2] {
        assert_eq!(
            call(&s, with(&admin, "POST", "/api/officers", o)).await.0,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        call(&s, with(&custodian, "POST", "/api/cases", CASE))
            .await
            .0,
        StatusCode::CREATED
    );
    let (st, _, body) = call(&s, with(&custodian, "POST", "/api/cases", CASE)).await;
    assert_eq!(
        (st, json(&body)["error"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    let activity = r#"{"id":"a1","kind":"seizure","place":"昌吉市","start_us":1000,"end_us":2000,"officers":["CJ-001"]}"#;
    let uri = "/api/cases/CJ-2026-0001";
    assert_eq!(
        call(
            &s,
            with(&custodian, "POST", &format!("{uri}/activities"), activity)
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let start = r#"{"kind":"start","at_us":500,"text":"立案"}"#;
    assert_eq!(
        call(
            &s,
            with(&custodian, "POST", &format!("{uri}/stages"), start)
        )
        .await
        .0,
        StatusCode::CREATED
    );
    // A major decision before the legal review: refused, nothing stored.
    let decision = r#"{"kind":"decision","at_us":9000,"text":"决定查封"}"#;
    let (st, _, body) = call(
        &s,
        with(&custodian, "POST", &format!("{uri}/stages"), decision),
    )
    .await;
    assert_eq!(
        (st, json(&body)["error"].as_str()),
        (StatusCode::CONFLICT, Some("review-required")),
        "{body}"
    );
    let review = r#"{"at_us":8000,"reviewer":"法制科","opinion":"合法、适当","approved":true}"#;
    assert_eq!(
        call(
            &s,
            with(&supervisor, "POST", &format!("{uri}/review"), review)
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(
        call(
            &s,
            with(&custodian, "POST", &format!("{uri}/stages"), decision)
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let (st, _, body) = call(&s, with(&supervisor, "GET", uri, "")).await;
    assert_eq!(st, StatusCode::OK);
    let c = json(&body);
    assert_eq!(c["stages"].as_array().unwrap().len(), 2);
    assert_eq!(
        c["stages"][1]["by"], "cus",
        "the stage names who entered it"
    );
    assert_eq!(c["activities"][0]["kind"], "seizure");
    // Bad input names the field and changes nothing.
    let bad = r#"{"id":"a2","kind":"picnic","start_us":1,"end_us":2,"officers":["CJ-001"]}"#;
    let (st, _, body) = call(
        &s,
        with(&custodian, "POST", &format!("{uri}/activities"), bad),
    )
    .await;
    assert_eq!(
        (st, json(&body)["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("kind"))
    );
    let (_, _, body) = call(&s, with(&supervisor, "GET", uri, "")).await;
    assert_eq!(json(&body)["activities"].as_array().unwrap().len(), 1);
    for path in ["/api/cases/..%2Fetc", "/api/cases/a.b", "/api/cases/%00"] {
        let (st, _, body) = call(&s, with(&custodian, "GET", path, "")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(json(&body)["field"], "number");
    }
}

#[tokio::test]
async fn every_role_sees_and_does_only_what_it_may() {
    let (_d, s) = state();
    let admin = login(&s).await;
    for o in [OFFICER_1, OFFICER_2] {
        call(&s, with(&admin, "POST", "/api/officers", o)).await;
    }
    call(&s, with(&admin, "POST", "/api/cases", CASE)).await;
    call(&s, with(&admin, "POST", "/api/cases", OTHER_CASE)).await;
    let officer = user(&s, "off", "officer").await;
    let custodian = user(&s, "cus", "custodian").await;
    let supervisor = user(&s, "sup", "supervisor").await;
    // (token, method, uri, body, expected status)
    let cases: Vec<(&str, &str, &str, &str, StatusCode)> = vec![
        ("", "GET", "/api/cases", "", StatusCode::UNAUTHORIZED),
        (
            "expired-or-forged",
            "GET",
            "/api/cases",
            "",
            StatusCode::UNAUTHORIZED,
        ),
        (&officer, "GET", "/api/officers", "", StatusCode::FORBIDDEN),
        (
            &officer,
            "POST",
            "/api/officers",
            OFFICER_1,
            StatusCode::FORBIDDEN,
        ),
        (
            &custodian,
            "POST",
            "/api/officers",
            OFFICER_1,
            StatusCode::FORBIDDEN,
        ),
        (
            &supervisor,
            "POST",
            "/api/cases",
            OTHER_CASE,
            StatusCode::FORBIDDEN,
        ),
        (
            &officer,
            "POST",
            "/api/cases",
            OTHER_CASE,
            StatusCode::FORBIDDEN,
        ),
        (
            &officer,
            "GET",
            "/api/cases/CJ-2026-0001",
            "",
            StatusCode::OK,
        ),
        // Another officer's case does not exist as far as this officer knows.
        (
            &officer,
            "GET",
            "/api/cases/CJ-2026-0002",
            "",
            StatusCode::NOT_FOUND,
        ),
        (
            &officer,
            "POST",
            "/api/cases/CJ-2026-0002/review",
            r#"{"at_us":1,"reviewer":"x","opinion":"y","approved":true}"#,
            StatusCode::FORBIDDEN,
        ),
        (
            &supervisor,
            "GET",
            "/api/cases/CJ-2026-0002",
            "",
            StatusCode::OK,
        ),
        (&custodian, "GET", "/api/officers", "", StatusCode::OK),
    ];
    for (token, method, uri, body, want) in cases {
        let req = if token.is_empty() {
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap()
        } else {
            with(token, method, uri, body)
        };
        let (st, _, text) = call(&s, req).await;
        assert_eq!(st, want, "{method} {uri}: {text}");
        if !st.is_success() {
            assert!(
                !text.contains("CJ-2026-0002\",\"body") && !text.contains("赵六"),
                "no record in a refusal: {text}"
            );
            json(&text);
        }
    }
    // Supervision letters (Art. 38): supervisors only, author and time set
    // by the server, the activity must exist.
    let letter = r#"{"text":"补充执法记录","finding":"uncovered"}"#;
    let uri = "/api/cases/CJ-2026-0001/letters";
    assert_eq!(
        call(&s, with(&custodian, "POST", uri, letter)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&s, with(&supervisor, "POST", uri, letter)).await.0,
        StatusCode::CREATED
    );
    let bad = r#"{"text":"x","activity":"nope"}"#;
    let (st, _, body) = call(&s, with(&supervisor, "POST", uri, bad)).await;
    assert_eq!(
        (st, json(&body)["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("letters.activity"))
    );
    let (st, _, body) = call(&s, with(&supervisor, "POST", uri, r#"{"text":" "}"#)).await;
    assert_eq!(
        (st, json(&body)["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("letters.text"))
    );
    let (_, _, body) = call(&s, with(&supervisor, "GET", "/api/cases/CJ-2026-0001", "")).await;
    let letters = json(&body)["letters"].clone();
    assert_eq!(letters.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(letters[0]["by"], "sup");
    assert!(letters[0]["at_us"].as_i64().unwrap() > 0);
    let (_, _, body) = call(&s, with(&officer, "GET", "/api/cases", "")).await;
    let listed: Vec<String> = json(&body)
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["number"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        listed,
        vec!["CJ-2026-0001"],
        "an officer lists only their own cases"
    );
    let (_, _, m) = call(&s, get("/metrics")).await;
    assert!(!m.contains("fieldseal_http_denials_total 0\n"), "{m}");
}

/// Ingest a device's sample chain with its media through the real ingest
/// path, with custody by officer CJ-001 from the epoch on.
pub(super) fn archive_chain(
    s: &Arc<AppState>,
    key: &ed25519_dalek::SigningKey,
) -> fieldseal_proto::sample::SampleChain {
    let chain = archive_chain_alone(s, key);
    s.shared
        .db
        .put_custody(&crate::cases::Custody {
            device: chain.entries[0].entry.device,
            officer: "CJ-001".into(),
            from_us: 0,
            to_us: None,
        })
        .unwrap();
    chain
}

/// As [`archive_chain`], with no custody record.
pub(super) fn archive_chain_alone(
    s: &Arc<AppState>,
    key: &ed25519_dalek::SigningKey,
) -> fieldseal_proto::sample::SampleChain {
    use fieldseal_proto::codec::Encode;
    use fieldseal_proto::identity::{sha256, DeviceId};
    use std::io::Write;
    let sh = &s.shared;
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
    let chain = fieldseal_proto::sample::build(key, &[3, 2], 1000);
    for e in &chain.entries {
        let m = crate::ingest::submit_blocking(sh, key.verifying_key(), &e.to_bytes());
        assert!(
            matches!(m, fieldseal_proto::msg::Message::EntryReceipt(_)),
            "{m:?}"
        );
        if let Some(bytes) = chain.media.get(&e.seq()) {
            let mut f = sh.storage.open_partial(device, e.seq(), 0).unwrap();
            f.write_all(bytes).unwrap();
            drop(f);
            sh.storage
                .commit_partial(device, e.seq(), &sha256(bytes), sh.blobs.as_ref())
                .unwrap();
            crate::chainindex::ChainIndex::put_media(&sh.db, device, e.seq()).unwrap();
            // Held a second after it was signed: uploaded in time (the
            // sample chain's clock is in the past, and it reaches the
            // server now in one burst, so its clock is taken as it is).
            sh.db
                .put_media_time_unflushed(device, e.seq(), e.entry.wall_us + 1_000_000)
                .unwrap();
        }
    }
    chain
}

#[tokio::test]
async fn compliance_of_a_case_names_the_gap_between_two_recordings() {
    let (_d, s) = state();
    let admin = login(&s).await;
    call(&s, with(&admin, "POST", "/api/officers", OFFICER_1)).await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
    let chain = archive_chain(&s, &key);
    // The spans as the server sees them (its time), to place the activities.
    let device = chain.entries[0].entry.device;
    let known: Vec<crate::timeline::Known<'_>> = chain
        .entries
        .iter()
        .map(|e| {
            let a = crate::chainindex::ChainIndex::entry(&s.shared.db, device, e.seq())
                .unwrap()
                .unwrap();
            let r =
                <fieldseal_proto::receipt::Receipt as fieldseal_proto::codec::Decode>::from_bytes(
                    &a.receipt,
                )
                .unwrap();
            crate::timeline::Known {
                entry: e,
                receipt_us: Some(r.server_time_us),
                verified: true,
                media_us: e.entry.segment().map(|_| 0),
                expired: false,
            }
        })
        .collect();
    let spans = crate::timeline::device_timeline(device, &known, |_| None).spans;
    assert_eq!(spans.len(), 5);
    let case = format!(
        r#"{{"number":"CJ-2026-0009","body":"b","officers":["CJ-001"],
            "activities":[
              {{"id":"first","kind":"seizure","start_us":{},"end_us":{},"officers":["CJ-001"]}},
              {{"id":"both","kind":"seizure","start_us":{},"end_us":{},"officers":["CJ-001"]}},
              {{"id":"talk","kind":"hearing","start_us":{},"end_us":{},"officers":["CJ-001"]}}]}}"#,
        spans[0].start_us,
        spans[2].end_us,
        spans[0].start_us,
        spans[4].end_us,
        spans[3].start_us,
        spans[3].end_us,
    );
    assert_eq!(
        call(&s, with(&admin, "POST", "/api/cases", &case)).await.0,
        StatusCode::CREATED
    );
    let supervisor = user(&s, "sup", "supervisor").await;
    let (st, _, body) = call(
        &s,
        with(&supervisor, "GET", "/api/cases/CJ-2026-0009/compliance", ""),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v = json(&body);
    let kinds = |i: usize| -> Vec<String> {
        v["activities"][i]["verdict"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    // The sample chain has no identity-shown event: that is the one finding
    // of a recording that covers its activity without a break.
    assert_eq!(kinds(0), vec!["no-identity-shown"], "{body}");
    assert_eq!(v["activities"][0]["verdict"]["best_run_seconds"], 12.0);
    // Across the stop between the recordings: the seconds without media,
    // explained by the signed user stop but not excused, and the second
    // recording outside the best run.
    let both = kinds(1);
    assert!(
        both.contains(&"uncovered".to_owned()) && both.contains(&"split-coverage".to_owned()),
        "{body}"
    );
    let hole = v["activities"][1]["verdict"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "uncovered")
        .unwrap()
        .clone();
    assert_eq!(hole["from_us"].as_i64(), Some(spans[2].end_us));
    assert_eq!(hole["to_us"].as_i64(), Some(spans[3].start_us));
    assert_eq!(hole["explained_by"]["reason"], "user-stop");
    assert_eq!(v["activities"][1]["devices"][0], device.to_string());
    assert_eq!(
        kinds(2),
        vec!["no-identity-shown"],
        "av within the hearing: {body}"
    );
    assert_eq!(v["compliant"], false);
    // The officer on the case (CJ-001) may read its compliance too.
    let officer = user(&s, "off", "officer").await;
    let (st, _, _) = call(
        &s,
        with(&officer, "GET", "/api/cases/CJ-2026-0009/compliance", ""),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn checkpoints_and_proofs_verify_with_the_proto_code() {
    let (_d, s) = state();
    let admin = login(&s).await;
    // No checkpoint yet.
    let (st, _, _) = call(&s, get("/api/log/checkpoint")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
    let chain = archive_chain(&s, &key);
    let sh = &s.shared;
    crate::tlog::checkpoint(&sh.dir, &sh.db, &sh.cfg, &sh.receipt_key, crate::now_us()).unwrap();
    let (st, _, note) = call(&s, get("/api/log/checkpoint")).await;
    assert_eq!(st, StatusCode::OK);
    let origin = crate::tlog::origin(&sh.cfg);
    let cp = fieldseal_proto::checkpoint::Checkpoint::verify(
        &note,
        &origin,
        &sh.receipt_key.verifying_key(),
    )
    .unwrap();
    // The published verifier key (no login) checks the same note.
    let (st, _, vkey) = call(&s, get("/api/log/key")).await;
    assert_eq!(st, StatusCode::OK);
    let vkey: fieldseal_proto::checkpoint::VerifierKey = vkey.trim_end().parse().unwrap();
    assert_eq!(vkey.name(), origin);
    assert_eq!(vkey.verify_checkpoint(&note).unwrap(), cp);
    // The entries, and the admin's login before them.
    assert_eq!(cp.size, chain.entries.len() as u64 + 1);
    // Consistency from 2 to now, checked with proto's verifier.
    let (st, _, body) = call(&s, get("/api/log/proof/consistency?from=2")).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let c = json(&body);
    let hex32 = |v: &serde_json::Value| -> [u8; 32] {
        hex::decode(v.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap()
    };
    let proof: Vec<[u8; 32]> = c["proof"].as_array().unwrap().iter().map(hex32).collect();
    fieldseal_proto::merkle::verify_consistency(
        2,
        cp.size,
        &hex32(&c["old_root"]),
        &cp.root,
        &proof,
    )
    .unwrap();
    let (st, _, body) = call(&s, get("/api/log/proof/consistency?from=999")).await;
    assert_eq!(
        (st, json(&body)["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("from"))
    );
    let (st, _, _) = call(&s, get("/api/log/proof/consistency?from=x")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Inclusion needs a session; the proof leads to the checkpoint's root.
    let device = chain.entries[0].entry.device;
    let uri = format!("/api/log/proof/inclusion?device={device}&seq=3");
    assert_eq!(call(&s, get(&uri)).await.0, StatusCode::UNAUTHORIZED);
    let (st, _, body) = call(&s, with(&admin, "GET", &uri, "")).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let p = json(&body);
    let proof: Vec<[u8; 32]> = p["proof"].as_array().unwrap().iter().map(hex32).collect();
    fieldseal_proto::merkle::verify_inclusion(
        &hex32(&p["leaf_hash"]),
        p["leaf_index"].as_u64().unwrap(),
        cp.size,
        &proof,
        &cp.root,
    )
    .unwrap();
    let (st, _, body) = call(
        &s,
        with(
            &admin,
            "GET",
            "/api/log/proof/inclusion?device=zz&seq=1",
            "",
        ),
    )
    .await;
    assert_eq!(
        (st, json(&body)["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("device"))
    );
    let (st, _, _) = call(
        &s,
        with(
            &admin,
            "GET",
            &format!("/api/log/proof/inclusion?device={device}&seq=999"),
            "",
        ),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// Legal holds and the annual report.
mod holds_reports;
