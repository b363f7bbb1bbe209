//! The access log through the API: logins, refusals and account changes
//! as custody leaves, the flood limit, `GET /api/audit` with proofs checked
//! by proto's own verifiers, and the admin's user API.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use fieldseal_proto::checkpoint::Checkpoint;
use fieldseal_proto::codec::Decode;
use fieldseal_proto::identity::Hash32;
use fieldseal_proto::leaf::{CustodyAction, Leaf};
use fieldseal_proto::merkle;

use super::tests::{archive_chain, call, get, json, login, post_json, state, user, with, PASSWORD};
use super::AppState;
use crate::audit::FLOOD_PER_ADDR;
use crate::chainindex::ChainIndex;

/// (action, actor, detail) of every custody leaf, oldest first.
fn leaves(s: &Arc<AppState>) -> Vec<(CustodyAction, String, String)> {
    s.shared
        .db
        .custody_leaves(0)
        .map(|l| match Leaf::from_bytes(&l.unwrap().1).unwrap() {
            Leaf::Custody {
                action,
                actor,
                detail,
                ..
            } => (action, actor, detail.unwrap_or_default()),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn login_as(user: &str, password: &str) -> Request<Body> {
    post_json(
        "/api/login",
        &format!(r#"{{"user":"{user}","password":"{password}"}}"#),
    )
}

fn from(mut req: Request<Body>, ip: &str) -> Request<Body> {
    let addr: SocketAddr = format!("{ip}:40000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

async fn metric(s: &Arc<AppState>, line: &str) -> u64 {
    let (_, _, m) = call(s, get("/metrics")).await;
    m.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {line} in {m}"))
}

#[tokio::test]
async fn each_login_and_refused_login_leaves_one_leaf_saying_why_where_the_answer_does_not() {
    let (_d, s) = state();
    let req = from(login_as("admin", PASSWORD), "192.0.2.1");
    assert_eq!(call(&s, req).await.0, StatusCode::OK);
    assert_eq!(
        leaves(&s),
        [(
            CustodyAction::Login,
            "admin".into(),
            "from 192.0.2.1".into()
        )]
    );
    let (st1, _, wrong) = call(&s, login_as("admin", "wrong-password")).await;
    let (st2, _, unknown) = call(&s, login_as("ghost", PASSWORD)).await;
    assert_eq!(
        (st1, st2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(wrong, unknown, "the answer does not tell which");
    call(&s, login_as("admin", "wrong-again")).await;
    let (st, _, _) = call(&s, login_as("admin", PASSWORD)).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    let failed = |who: &str, why: &str| {
        (
            CustodyAction::LoginFailed,
            who.to_owned(),
            format!("from unknown: {why}"),
        )
    };
    assert_eq!(
        leaves(&s)[1..],
        [
            failed("admin", "bad credentials"),
            failed("ghost", "bad credentials"),
            failed("admin", "bad credentials"),
            failed("admin", "throttled"),
        ],
        "one leaf each, no denied leaf for a refused login"
    );
    assert_eq!(
        metric(&s, "fieldseal_logins_total{outcome=\"ok\"}").await,
        1
    );
    assert_eq!(
        metric(&s, "fieldseal_logins_total{outcome=\"failed\"}").await,
        4
    );
    assert_eq!(metric(&s, "fieldseal_access_log_leaves_total").await, 5);
}

#[tokio::test]
async fn a_401_and_a_403_are_each_a_denied_leaf_by_the_time_the_answer_arrives() {
    let (_d, s) = state();
    let (st, _, _) = call(&s, from(get("/api/cases?x=secret"), "192.0.2.9")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(
        leaves(&s),
        [(
            CustodyAction::Denied,
            "-".into(),
            "GET /api/cases from 192.0.2.9: 401".into()
        )],
        "written before the answer; the query is not kept"
    );
    let officer = user(&s, "off", "officer").await;
    let (st, _, _) = call(&s, with(&officer, "GET", "/api/audit", "")).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, _) = call(&s, with(&officer, "POST", "/api/users", "{}")).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let got = leaves(&s);
    assert_eq!(
        got[2..],
        [
            (
                CustodyAction::Denied,
                "off".into(),
                "GET /api/audit from unknown: 403".into()
            ),
            (
                CustodyAction::Denied,
                "off".into(),
                "POST /api/users from unknown: 403".into()
            ),
        ]
    );
    assert_eq!(metric(&s, "fieldseal_http_denials_total").await, 3);
}

#[tokio::test]
async fn an_anonymous_flood_is_held_back_per_address_and_counted() {
    let (_d, s) = state();
    let n = FLOOD_PER_ADDR + 10;
    for _ in 0..n {
        let (st, _, _) = call(&s, from(get("/api/me"), "198.51.100.7")).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    let denied = |s: &Arc<AppState>| {
        leaves(s)
            .iter()
            .filter(|l| l.0 == CustodyAction::Denied)
            .count()
    };
    assert_eq!(denied(&s), FLOOD_PER_ADDR as usize);
    assert_eq!(metric(&s, "fieldseal_access_log_held_back_total").await, 10);
    assert_eq!(
        metric(&s, "fieldseal_http_denials_total").await,
        u64::from(n)
    );
    // Another address is still heard, and so is anyone with a session.
    call(&s, from(get("/api/me"), "198.51.100.8")).await;
    assert_eq!(denied(&s), FLOOD_PER_ADDR as usize + 1);
    let officer = user(&s, "off", "officer").await;
    for _ in 0..3 {
        let req = from(with(&officer, "GET", "/api/users", ""), "198.51.100.7");
        assert_eq!(call(&s, req).await.0, StatusCode::FORBIDDEN);
    }
    assert_eq!(denied(&s), FLOOD_PER_ADDR as usize + 4);
}

fn hex32(v: &serde_json::Value) -> Hash32 {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

/// Check one leaf of an `/api/audit` answer against the checkpoint with
/// proto's own code: its data hashes to its leaf hash, its proof leads to
/// the checkpoint's root, its fields are the data's.
fn verify_leaf(l: &serde_json::Value, cp: &Checkpoint) -> Result<(), merkle::MerkleError> {
    let data = hex::decode(l["leaf"].as_str().unwrap()).unwrap();
    let proof: Vec<Hash32> = l["proof"].as_array().unwrap().iter().map(hex32).collect();
    let Leaf::Custody { actor, action, .. } = Leaf::from_bytes(&data).unwrap() else {
        panic!("an entry leaf in the access log")
    };
    assert_eq!(l["actor"], actor);
    assert_eq!(l["action"], crate::audit::action_name(action));
    merkle::verify_inclusion(
        &merkle::leaf_hash(&data),
        l["index"].as_u64().unwrap(),
        cp.size,
        &proof,
        &cp.root,
    )
}

#[tokio::test]
async fn the_access_log_comes_with_proofs_that_proto_verifies_and_a_tampered_leaf_fails() {
    let (_d, s) = state();
    let admin = login(&s).await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
    let chain = archive_chain(&s, &key);
    call(&s, login_as("admin", "wrong-password")).await;
    let custodian = user(&s, "cus", "custodian").await;
    call(&s, with(&custodian, "GET", "/api/users", "")).await;
    let size = s.shared.db.log_size().unwrap();
    let (st, _, body) = call(&s, with(&custodian, "GET", "/api/audit", "")).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        s.shared.db.log_size().unwrap(),
        size,
        "reading is not logged"
    );
    let page = json(&body);
    let sh = &s.shared;
    let cp = Checkpoint::verify(
        page["checkpoint"].as_str().unwrap(),
        &crate::tlog::origin(&sh.cfg),
        &sh.receipt_key.verifying_key(),
    )
    .unwrap();
    assert_eq!(cp.size, size, "a checkpoint was signed to cover them all");
    let got = page["leaves"].as_array().unwrap();
    let actions: Vec<&str> = got.iter().map(|l| l["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["login", "login-failed", "login", "denied"]);
    let first_after_chain = chain.entries.len() as u64 + 1;
    assert_eq!(
        got[1]["index"].as_u64(),
        Some(first_after_chain),
        "entries skipped"
    );
    assert_eq!(page["next_from"].as_u64(), Some(size));
    for l in got {
        verify_leaf(l, &cp).unwrap();
        assert!(l["device"].is_null());
    }
    // One byte of the actor changed: the proof no longer leads to the root.
    let mut forged = got[0].clone();
    let leaf = forged["leaf"]
        .as_str()
        .unwrap()
        .replace("61646d696e", "61646d696f");
    forged["leaf"] = leaf.into();
    forged["actor"] = "admio".into();
    assert_eq!(
        verify_leaf(&forged, &cp),
        Err(merkle::MerkleError::RootMismatch)
    );
    // Filters and paging.
    let q = |q: &str| with(&admin, "GET", &format!("/api/audit?{q}"), "");
    let (_, _, body) = call(&s, q("action=login-failed")).await;
    let p = json(&body);
    assert_eq!(p["leaves"].as_array().unwrap().len(), 1);
    assert_eq!(p["leaves"][0]["actor"], "admin");
    let (_, _, body) = call(&s, q("actor=cus&limit=1")).await;
    let p = json(&body);
    assert_eq!(p["leaves"][0]["action"], "login");
    let next = p["next_from"].as_u64().unwrap();
    let (_, _, body) = call(&s, q(&format!("actor=cus&from={next}"))).await;
    assert_eq!(json(&body)["leaves"][0]["action"], "denied");
    for (bad, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("action=peek", "action"),
        ("device=zz", "device"),
        ("colour=red", "colour"),
        ("from=-1", "from"),
    ] {
        let (st, _, body) = call(&s, q(bad)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(json(&body)["field"], field, "{bad}: {body}");
    }
}

#[tokio::test]
async fn only_custodians_supervisors_and_admins_read_the_log_and_only_admins_manage_users() {
    let (_d, s) = state();
    let admin = login(&s).await;
    let tokens = [
        ("officer", user(&s, "off", "officer").await),
        ("custodian", user(&s, "cus", "custodian").await),
        ("supervisor", user(&s, "sup", "supervisor").await),
        ("admin", admin),
    ];
    for (role, t) in &tokens {
        let audit = call(&s, with(t, "GET", "/api/audit?limit=1", "")).await.0;
        let list = call(&s, with(t, "GET", "/api/users", "")).await.0;
        let change = r#"{"disabled":false}"#;
        let patch = call(&s, with(t, "PATCH", "/api/users/cus", change)).await.0;
        let reader = *role != "officer";
        let admin = *role == "admin";
        let want = |ok| {
            if ok {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            }
        };
        assert_eq!(
            (audit, list, patch),
            (want(reader), want(admin), want(admin)),
            "{role}"
        );
    }
    for uri in ["/api/audit", "/api/users"] {
        assert_eq!(
            call(&s, get(uri)).await.0,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
    }
}

#[tokio::test]
async fn the_user_api_refuses_bad_changes_naming_the_field_and_keeps_the_last_admin() {
    let (_d, s) = state();
    let admin = login(&s).await;
    let post = |body: &str| with(&admin, "POST", "/api/users", body);
    let good = r#"{"user":"cus","role":"custodian","password":"a long password"}"#;
    assert_eq!(call(&s, post(good)).await.0, StatusCode::CREATED);
    let before = leaves(&s).len();
    for (body, status, field) in [
        (
            r#"{"user":"x","role":"custodian","password":"a long password","colour":1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("colour"),
        ),
        (
            r#"{"user":"x","role":"custodian","password":"short"}"#,
            StatusCode::BAD_REQUEST,
            Some("password"),
        ),
        (
            r#"{"user":"x","role":"root","password":"a long password"}"#,
            StatusCode::BAD_REQUEST,
            Some("role"),
        ),
        (
            r#"{"user":"../x","role":"custodian","password":"a long password"}"#,
            StatusCode::BAD_REQUEST,
            Some("user"),
        ),
        (
            r#"{"user":"x","role":"officer","password":"a long password"}"#,
            StatusCode::BAD_REQUEST,
            Some("officer"),
        ),
        (good, StatusCode::CONFLICT, None),
    ] {
        let (st, _, resp) = call(&s, post(body)).await;
        assert_eq!(st, status, "{body}: {resp}");
        assert_eq!(json(&resp)["field"].as_str(), field, "{body}: {resp}");
    }
    assert_eq!(leaves(&s).len(), before, "no refusal is logged as a change");
    let patch = |who: &str, body: &str| with(&admin, "PATCH", &format!("/api/users/{who}"), body);
    for (who, body, status, code) in [
        ("cus", "{}", StatusCode::BAD_REQUEST, "invalid"),
        (
            "cus",
            r#"{"colour":1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            "zed",
            r#"{"disabled":true}"#,
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            "admin",
            r#"{"disabled":true}"#,
            StatusCode::CONFLICT,
            "last-admin",
        ),
        (
            "admin",
            r#"{"role":"supervisor"}"#,
            StatusCode::CONFLICT,
            "last-admin",
        ),
    ] {
        let (st, _, resp) = call(&s, patch(who, body)).await;
        assert_eq!(
            (st, json(&resp)["error"].as_str()),
            (status, Some(code)),
            "{who} {body}: {resp}"
        );
    }
    let (st, _, body) = call(&s, with(&admin, "GET", "/api/users", "")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(!body.contains("argon2") && !body.contains("hash"), "{body}");
    assert_eq!(json(&body).as_array().unwrap().len(), 2);
    assert_eq!(
        call(&s, with(&admin, "GET", "/api/me", "")).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_account_change_is_a_leaf_naming_who_and_ends_the_users_sessions() {
    let (_d, s) = state();
    let admin = login(&s).await;
    let add = r#"{"user":"cus","role":"custodian","password":"a long password"}"#;
    assert_eq!(
        call(&s, with(&admin, "POST", "/api/users", add)).await.0,
        StatusCode::CREATED
    );
    let (st, _, body) = call(&s, login_as("cus", "a long password")).await;
    assert_eq!(st, StatusCode::OK);
    let cus = json(&body)["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&s, with(&cus, "GET", "/api/me", "")).await.0,
        StatusCode::OK
    );
    let change = r#"{"role":"supervisor","password":"another long one"}"#;
    let (st, _, body) = call(&s, with(&admin, "PATCH", "/api/users/cus", change)).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["role"], "supervisor");
    assert_eq!(
        call(&s, with(&cus, "GET", "/api/me", "")).await.0,
        StatusCode::UNAUTHORIZED,
        "the session ended with the change"
    );
    // And from the command line, as `cli`.
    let sh = &s.shared;
    let resp = crate::control::apply(
        &sh.dir,
        &sh.db,
        sh.blobs.as_ref(),
        &sh.cfg,
        crate::control::Request::UserChange {
            name: "cus".into(),
            disabled: Some(true),
            password: None,
            role: None,
        },
        &std::sync::atomic::AtomicBool::new(false),
        |_| {},
    );
    assert!(
        matches!(resp, crate::control::Response::User(_)),
        "{resp:?}"
    );
    let accounts: Vec<(String, String)> = leaves(&s)
        .into_iter()
        .filter(|l| l.0 == CustodyAction::Account)
        .map(|l| (l.1, l.2))
        .collect();
    assert_eq!(
        accounts,
        [
            ("admin".into(), "cus: added as custodian".into()),
            (
                "admin".into(),
                "cus: role custodian\u{2192}supervisor, password changed".into()
            ),
            ("cli".into(), "cus: disabled".into()),
        ]
    );
}
