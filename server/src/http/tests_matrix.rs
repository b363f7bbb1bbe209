//! The access-control and bad-input matrix of the whole API, driven from
//! the OpenAPI document (`router_and_doc`), never from a list of paths of
//! its own: what the document lists is what is tested.
//!
//! [`ROWS`] says, per operation, who may call it; the first test fails if an
//! operation of the document has no row or a row names none. Path
//! parameters are filled with real ids of a small seeded archive
//! ([`World`]): two devices ingested through the real path, each carried by
//! its own officer, a case of each officer, a hold, a user.
//!
//! - The matrix: each operation × no token, an expired token, a revoked
//!   token, and each role (with the ids of officer A's evidence, asked by
//!   officer A and by officer B). Refused: 401, 403, or 404 where the API
//!   hides that something exists (officer B and A's case or evidence);
//!   every refusal is exactly one `denied` custody leaf and carries no
//!   evidence byte. Permitted: neither 401 nor 403, never 5xx.
//! - The sweep: every path parameter, query parameter and JSON body given
//!   bad input answers 4xx with a JSON `{"error","field"?,"message"}` naming
//!   the field at fault, never 5xx, and changes nothing in the index.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use ed25519_dalek::SigningKey;
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::leaf::{CustodyAction, Leaf};
use fieldseal_proto::sample::SampleChain;
use serde_json::Value;
use tower::ServiceExt;

use super::tests::{archive_chain, archive_chain_alone, state, OFFICER_1, OFFICER_2, PASSWORD};
use super::{app, router_and_doc, AppState};
use crate::auth::{Role, Session, SESSION_US};
use crate::chainindex::ChainIndex;

// ---------------------------------------------------------------- the table

/// What one caller gets from one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    /// Permitted: anything but 401, 403 or 5xx.
    Yes,
    /// 403: the role may not.
    No,
    /// 404 with a `denied` leaf: the API hides that it exists.
    Hid,
}
use Out::{Hid, No, Yes};

/// Who may call an operation.
#[derive(Debug, Clone, Copy)]
enum Who {
    /// Public: no session needed, every caller permitted.
    Anyone,
    /// By role: officer A (whose evidence the ids name), officer B,
    /// custodian, supervisor, admin.
    Roles([Out; 5]),
}

/// One operation of the document: who may call it, and a request that
/// succeeds for a permitted caller (the query and body, with `{device}`
/// and `{password}` filled in).
struct Row {
    op: &'static str,
    query: &'static str,
    body: &'static str,
    who: Who,
}

const fn row(op: &'static str, who: Who) -> Row {
    Row {
        op,
        query: "",
        body: "",
        who,
    }
}

const fn query(op: &'static str, query: &'static str, who: Who) -> Row {
    Row {
        op,
        query,
        body: "",
        who,
    }
}

const fn body(op: &'static str, body: &'static str, who: Who) -> Row {
    Row {
        op,
        query: "",
        body,
        who,
    }
}

const ANYONE: Who = Who::Anyone;
// Each `Roles` names, in order: officer A, officer B, custodian, supervisor, admin.
const EVERY_ROLE: Who = Who::Roles([Yes, Yes, Yes, Yes, Yes]);
const OWN_CASE: Who = Who::Roles([Yes, Hid, Yes, Yes, Yes]);
const OWN_EVIDENCE: Who = Who::Roles([Yes, Hid, Yes, Yes, No]);
const STAFF: Who = Who::Roles([No, No, Yes, Yes, Yes]);
/// Devices: every role sees the list (an officer only the devices carried).
const SEERS: Who = Who::Roles([Yes, Yes, Yes, Yes, Yes]);
/// One device: officer B is told it does not exist.
const OWN_DEVICE: Who = Who::Roles([Yes, Hid, Yes, Yes, Yes]);
const CUSTODIAN_ADMIN: Who = Who::Roles([No, No, Yes, No, Yes]);
const CUSTODIAN_SUPERVISOR: Who = Who::Roles([No, No, Yes, Yes, No]);
const CUSTODIAN: Who = Who::Roles([No, No, Yes, No, No]);
const SUPERVISOR: Who = Who::Roles([No, No, No, Yes, No]);
const ADMIN: Who = Who::Roles([No, No, No, No, Yes]);

/// Who may call what. Officer B asking for officer A's case or evidence
/// gets `Hid`: 404 as for something that does not exist (cases.rs,
/// evidence.rs), logged as a denial. Role checks come before any lookup, so
/// an officer asking to write a case is 403 whoever's case it is.
const ROWS: &[Row] = &[
    row("GET /healthz", ANYONE),
    row("GET /metrics", ANYONE),
    row("GET /api/catalogue", ANYONE),
    body(
        "POST /api/login",
        r#"{"user":"admin","password":"{password}"}"#,
        ANYONE,
    ),
    row("POST /api/logout", EVERY_ROLE),
    row("GET /api/me", EVERY_ROLE),
    row("GET /api/officers", STAFF),
    body("POST /api/officers", OFFICER_1, ADMIN),
    body(
        "POST /api/custody",
        r#"{"device":"{device}","officer":"CJ-001","from_us":0}"#,
        CUSTODIAN_ADMIN,
    ),
    row("GET /api/cases", EVERY_ROLE),
    body(
        "POST /api/cases",
        r#"{"number":"CJ-2026-0003","body":"昌吉州市场监督管理局","officers":["CJ-001"]}"#,
        CUSTODIAN_ADMIN,
    ),
    row("GET /api/cases/{number}", OWN_CASE),
    body(
        "POST /api/cases/{number}/stages",
        r#"{"kind":"start","at_us":500,"text":"立案"}"#,
        CUSTODIAN_ADMIN,
    ),
    body(
        "POST /api/cases/{number}/review",
        r#"{"at_us":800,"reviewer":"法制科","opinion":"合法","approved":true}"#,
        STAFF,
    ),
    body(
        "POST /api/cases/{number}/activities",
        r#"{"id":"a9","kind":"hearing","place":"昌吉市","start_us":1000,"end_us":2000,"officers":["CJ-001"]}"#,
        CUSTODIAN_ADMIN,
    ),
    row("GET /api/cases/{number}/compliance", OWN_CASE),
    row("GET /api/cases/{number}/export", CUSTODIAN),
    body(
        "POST /api/cases/{number}/letters",
        r#"{"text":"补充执法记录","finding":"uncovered"}"#,
        SUPERVISOR,
    ),
    body(
        "POST /api/cases/{number}/activities/{activity}/links",
        r#"{"device":"{device}","first_seq":2,"last_seq":4}"#,
        CUSTODIAN,
    ),
    body(
        "DELETE /api/cases/{number}/activities/{activity}/links",
        r#"{"device":"{device}","first_seq":2,"last_seq":4}"#,
        CUSTODIAN,
    ),
    row("GET /api/log/checkpoint", ANYONE),
    row("GET /api/log/key", ANYONE),
    query("GET /api/log/proof/consistency", "from=1", ANYONE),
    query(
        "GET /api/log/proof/inclusion",
        "device={device}&seq=3",
        STAFF,
    ),
    query(
        "GET /api/devices/{device}/entries",
        "from=0&limit=10",
        OWN_EVIDENCE,
    ),
    row("GET /api/devices/{device}/entries/{seq}", OWN_EVIDENCE),
    row("GET /api/devices", SEERS),
    row("GET /api/devices/{device}", OWN_DEVICE),
    row("GET /api/devices/{device}/equivocations", OWN_DEVICE),
    row(
        "GET /api/devices/{device}/recordings/{recording}/playlist.m3u8",
        OWN_EVIDENCE,
    ),
    row(
        "GET /api/devices/{device}/entries/{seq}/media",
        OWN_EVIDENCE,
    ),
    query("GET /api/audit", "limit=5", STAFF),
    row("GET /api/users", ADMIN),
    body(
        "POST /api/users",
        r#"{"user":"newcomer","role":"custodian","password":"a-long-enough-password"}"#,
        ADMIN,
    ),
    body("PATCH /api/users/{name}", r#"{"disabled":false}"#, ADMIN),
    row("GET /api/holds", STAFF),
    body(
        "POST /api/holds",
        r#"{"device":"{device}","first_seq":1,"last_seq":4,"reason":"法院调取证据"}"#,
        CUSTODIAN_SUPERVISOR,
    ),
    body(
        "POST /api/holds/{id}/release",
        r#"{"reason":"判决已生效"}"#,
        CUSTODIAN_SUPERVISOR,
    ),
    query("GET /api/reports/annual", "year=2026", CUSTODIAN_SUPERVISOR),
];

// ------------------------------------------------------------- the callers

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    NoToken,
    Expired,
    Revoked,
    /// Officer A (CJ-001), who carried device A and is on case A.
    Officer,
    /// Officer B (CJ-002), who carried device B and is on case B only.
    OtherOfficer,
    Custodian,
    Supervisor,
    Admin,
}

const CALLERS: [Caller; 8] = [
    Caller::NoToken,
    Caller::Expired,
    Caller::Revoked,
    Caller::Officer,
    Caller::OtherOfficer,
    Caller::Custodian,
    Caller::Supervisor,
    Caller::Admin,
];

impl Caller {
    /// The user, role and certificate of a role caller.
    fn user(self) -> Option<(&'static str, Role, Option<&'static str>)> {
        Some(match self {
            Caller::Officer => ("off-a", Role::Officer, Some("CJ-001")),
            Caller::OtherOfficer => ("off-b", Role::Officer, Some("CJ-002")),
            Caller::Custodian => ("cus", Role::Custodian, None),
            Caller::Supervisor => ("sup", Role::Supervisor, None),
            Caller::Admin => ("admin", Role::Admin, None),
            Caller::NoToken | Caller::Expired | Caller::Revoked => return None,
        })
    }

    /// What this caller should get from `who`: `None` for 401.
    fn expect(self, who: Who) -> Option<Out> {
        let Who::Roles(roles) = who else {
            return Some(Yes);
        };
        let i = match self {
            Caller::NoToken | Caller::Expired | Caller::Revoked => return None,
            Caller::Officer => 0,
            Caller::OtherOfficer => 1,
            Caller::Custodian => 2,
            Caller::Supervisor => 3,
            Caller::Admin => 4,
        };
        Some(roles[i])
    }
}

/// A fresh token for `c` (a new session each call: logout ends one, and an
/// expired one is dropped when first seen), or none.
fn token(s: &AppState, c: Caller) -> Option<String> {
    let now = crate::now_us();
    let session = |user: &str, role, officer: Option<&str>, expires_us| Session {
        user: user.into(),
        role,
        officer: officer.map(str::to_owned),
        expires_us,
    };
    let start = |sess| s.shared.sessions.start(sess, &mut rand_core::OsRng);
    match c {
        Caller::NoToken => None,
        Caller::Expired => Some(start(session("cus", Role::Custodian, None, now - 1))),
        Caller::Revoked => {
            let t = start(session("admin", Role::Admin, None, now + SESSION_US));
            assert!(s.shared.sessions.revoke(&t));
            Some(t)
        }
        _ => {
            let (user, role, cert) = c.user().expect("a role caller");
            Some(start(session(user, role, cert, now + SESSION_US)))
        }
    }
}

// ---------------------------------------------------------------- the world

/// The seeded archive and the ids that fill path parameters.
struct World {
    _dir: tempfile::TempDir,
    s: Arc<AppState>,
    /// Path parameter → value (officer A's case, device, a segment, …).
    ids: BTreeMap<&'static str, String>,
    /// Officer B's device.
    device_b: String,
    /// Every 24-byte window of the evidence: media bytes, their hex, and
    /// the hex of every signed entry, of both devices.
    secrets: HashSet<Vec<u8>>,
}

/// Bytes of evidence a refusal's body must not contain: 24 bytes is long
/// enough that no error message matches by chance.
const WINDOW: usize = 24;

fn secrets(chains: &[&SampleChain]) -> HashSet<Vec<u8>> {
    let mut out = HashSet::new();
    for c in chains {
        let mut blobs: Vec<Vec<u8>> = Vec::new();
        for m in c.media.values() {
            blobs.push(m.clone());
            blobs.push(hex::encode(m).into_bytes());
        }
        for e in &c.entries {
            blobs.push(hex::encode(e.to_bytes()).into_bytes());
        }
        for b in blobs {
            out.extend(b.windows(WINDOW).map(<[u8]>::to_vec));
        }
    }
    out
}

fn put_user(s: &AppState, name: &str, role: &str, officer: Option<&str>) {
    s.shared
        .db
        .put_user(&crate::db::UserRecord {
            name: name.into(),
            role: role.into(),
            // Never logged in with: sessions are started directly.
            password_hash: "unused".into(),
            disabled: false,
            officer: officer.map(str::to_owned),
        })
        .unwrap();
}

fn put_case(s: &AppState, number: &str, officer: &str, activity: &str) {
    let case: crate::cases::Case = serde_json::from_value(serde_json::json!({
        "number": number, "body": "昌吉州市场监督管理局", "officers": [officer],
        "activities": [{"id": activity, "kind": "seizure", "start_us": 1000,
            "end_us": 2000, "officers": [officer]}]}))
    .unwrap();
    s.shared.db.put_case(&case).unwrap();
}

/// Two devices with entries and media through the real ingest path, device
/// A carried by officer A (CJ-001), device B by officer B (CJ-002); a case
/// of each; a hold on A's media; the users; a signed checkpoint.
async fn world() -> World {
    let (dir, s) = state();
    for o in [OFFICER_1, OFFICER_2] {
        s.shared
            .db
            .put_officer(&serde_json::from_str(o).unwrap())
            .unwrap();
    }
    let a = archive_chain(&s, &SigningKey::from_bytes(&[0x42; 32]));
    let b = archive_chain_alone(&s, &SigningKey::from_bytes(&[0x43; 32]));
    let (device_a, device_b) = (a.entries[0].entry.device, b.entries[0].entry.device);
    let recording_a = a
        .entries
        .iter()
        .find_map(|e| e.entry.segment().map(|s| hex::encode(s.recording)))
        .unwrap();
    s.shared
        .db
        .put_custody(&crate::cases::Custody {
            device: device_b,
            officer: "CJ-002".into(),
            from_us: 0,
            to_us: None,
        })
        .unwrap();
    put_case(&s, "CJ-2026-0001", "CJ-001", "a1");
    put_case(&s, "CJ-2026-0002", "CJ-002", "b1");
    put_user(&s, "off-a", "officer", Some("CJ-001"));
    put_user(&s, "off-b", "officer", Some("CJ-002"));
    put_user(&s, "cus", "custodian", None);
    put_user(&s, "sup", "supervisor", None);
    put_user(&s, "target", "custodian", None);
    let sh = &s.shared;
    crate::tlog::checkpoint(&sh.dir, &sh.db, &sh.cfg, &sh.receipt_key, crate::now_us()).unwrap();
    let mut w = World {
        secrets: secrets(&[&a, &b]),
        ids: BTreeMap::new(),
        device_b: device_b.to_string(),
        _dir: dir,
        s,
    };
    let hold = format!(r#"{{"device":"{device_a}","first_seq":1,"last_seq":4,"reason":"种子"}}"#);
    let r = w
        .send(
            Caller::Custodian,
            "POST",
            "/api/holds",
            &hold,
            "application/json",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let ids = [
        ("number", "CJ-2026-0001".to_owned()),
        ("activity", "a1".to_owned()),
        ("device", device_a.to_string()),
        ("seq", "3".to_owned()),
        ("recording", recording_a),
        ("id", r.json()["id"].to_string()),
        ("name", "target".to_owned()),
    ];
    w.ids.extend(ids);
    w
}

// ---------------------------------------------------------------- requests

/// An answer, its body as bytes (media is binary).
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(300)
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    /// The body is `{"error","field"?,"message"}` and nothing else.
    fn assert_error(&self, what: &str) -> Value {
        let v: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", self.text()));
        let keys: BTreeSet<&str> = v
            .as_object()
            .unwrap_or_else(|| panic!("{what}: {v}"))
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            keys.contains("error")
                && keys.contains("message")
                && keys
                    .iter()
                    .all(|k| ["error", "field", "message"].contains(k)),
            "{what}: {v}"
        );
        v
    }
}

/// Each request comes from its own address, so the flood limit on leaves
/// of callers without a session never holds one back here.
fn next_addr() -> SocketAddr {
    static N: AtomicU32 = AtomicU32::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + n), 40000))
}

impl World {
    /// Fill `{param}`s of a path, query or body with the world's ids.
    fn fill(&self, template: &str) -> String {
        let mut out = template.replace("{password}", PASSWORD);
        for (k, v) in &self.ids {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        out
    }

    fn row_uri(&self, r: &Row) -> (String, String) {
        let (method, path) = r.op.split_once(' ').unwrap();
        let mut uri = self.fill(path);
        if !r.query.is_empty() {
            uri = format!("{uri}?{}", self.fill(r.query));
        }
        (method.to_owned(), uri)
    }

    async fn send(
        &self,
        c: Caller,
        method: &str,
        uri: &str,
        body: &str,
        content_type: &str,
    ) -> Reply {
        self.send_bytes(c, method, uri, body.as_bytes().to_vec(), content_type)
            .await
    }

    async fn send_bytes(
        &self,
        c: Caller,
        method: &str,
        uri: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token(&self.s, c) {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if !content_type.is_empty() {
            req = req.header(header::CONTENT_TYPE, content_type);
        }
        let mut req = req.body(Body::from(body)).unwrap();
        req.extensions_mut().insert(ConnectInfo(next_addr()));
        let resp = app(self.s.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap_or_else(|e| panic!("{method} {uri}: the body broke off: {e}"));
        Reply {
            status,
            body: body.to_vec(),
        }
    }

    /// The custody leaves from leaf index `from` on, decoded.
    fn leaves_since(&self, from: u64) -> Vec<Leaf> {
        self.s
            .shared
            .db
            .custody_leaves(from)
            .map(|l| Leaf::from_bytes(&l.unwrap().1).unwrap())
            .collect()
    }

    fn log_size(&self) -> u64 {
        self.s.shared.db.log_size().unwrap()
    }

    /// Everything the index holds, as one checksum, and the log's size.
    fn snapshot(&self) -> (u32, u64) {
        (self.s.shared.db.checksum().unwrap(), self.log_size())
    }

    /// The first 24-byte window of evidence in `body`, if any.
    fn leak(&self, body: &[u8]) -> Option<String> {
        body.windows(WINDOW)
            .find(|w| self.secrets.contains(*w))
            .map(hex::encode)
    }
}

// ------------------------------------------------------------ the document

/// One operation of the OpenAPI document.
#[derive(Debug)]
struct DocOp {
    /// `METHOD /path/{param}`, as the rows name it.
    op: String,
    /// Its path parameters, in order.
    path_params: Vec<String>,
    /// Its query parameters: (name, required).
    query_params: Vec<(String, bool)>,
    /// It documents a request body.
    has_body: bool,
}

fn doc_ops(s: &Arc<AppState>) -> Vec<DocOp> {
    let (_, doc) = router_and_doc(s.clone());
    let doc = serde_json::to_value(&doc).unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "delete", "patch"] {
            let Some(op) = item.get(method) else { continue };
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let named = |kind: &str| {
                params
                    .iter()
                    .filter(|p| p["in"] == kind)
                    .map(|p| {
                        (
                            p["name"].as_str().unwrap().to_owned(),
                            p["required"] == true,
                        )
                    })
                    .collect::<Vec<_>>()
            };
            out.push(DocOp {
                op: format!("{} {path}", method.to_uppercase()),
                path_params: named("path").into_iter().map(|(n, _)| n).collect(),
                query_params: named("query"),
                has_body: op.get("requestBody").is_some(),
            });
        }
    }
    out
}

fn row_of(op: &str) -> &'static Row {
    ROWS.iter()
        .find(|r| r.op == op)
        .unwrap_or_else(|| panic!("{op} is in the OpenAPI document but has no row in ROWS"))
}

/// The caller the sweep uses for a row: public rows need none; else the
/// first role permitted (officer A last: staff see the most).
fn sweeper(r: &Row) -> Caller {
    let Who::Roles(roles) = r.who else {
        return Caller::NoToken;
    };
    let order = [
        (2, Caller::Custodian),
        (3, Caller::Supervisor),
        (4, Caller::Admin),
        (0, Caller::Officer),
    ];
    order
        .iter()
        .find(|(i, _)| roles[*i] == Yes)
        .map(|(_, c)| *c)
        .expect("a row permits some role")
}

// ------------------------------------------------------------------- tests

#[tokio::test]
async fn every_documented_operation_has_one_row_and_every_row_an_operation() {
    let (_d, s) = state();
    let ops = doc_ops(&s);
    let documented: BTreeSet<&str> = ops.iter().map(|o| o.op.as_str()).collect();
    for o in &ops {
        let r = row_of(&o.op);
        // The document's path parameters are the path's `{…}`s (a query
        // struct without `parameter_in = Query` is listed as path ones).
        let templated: Vec<&str> = o.op.split(['{', '}']).skip(1).step_by(2).collect();
        assert_eq!(o.path_params, templated, "{}: path parameters", o.op);
        // A documented body or required query must be in the row's request.
        assert!(!o.has_body || !r.body.is_empty(), "{}: needs a body", o.op);
        for (q, required) in &o.query_params {
            assert!(
                !required || r.query.contains(&format!("{q}=")),
                "{}: the row's query lacks {q}",
                o.op
            );
        }
    }
    let mut named = BTreeSet::new();
    for r in ROWS {
        assert!(
            documented.contains(r.op),
            "ROWS names {}: not in the document",
            r.op
        );
        assert!(named.insert(r.op), "ROWS names {} twice", r.op);
    }
    assert_eq!(named.len(), documented.len());
}

/// Check one (operation, caller) answer against the table and the
/// custody leaves it left.
fn check_cell(w: &World, what: &str, want: Option<Out>, r: &Reply, path: &str, new: &[Leaf]) {
    let denied: Vec<(&str, &str, String)> = new
        .iter()
        .filter_map(|l| match l {
            Leaf::Custody {
                action: CustodyAction::Denied,
                actor,
                device,
                case,
                detail,
                ..
            } => {
                let about = case.clone().unwrap_or_else(|| device.to_string());
                Some((actor.as_str(), detail.as_deref().unwrap_or(""), about))
            }
            _ => None,
        })
        .collect();
    assert!(
        !r.status.is_server_error(),
        "{what}: {} {}",
        r.status,
        r.text()
    );
    if want == Some(Yes) {
        assert!(
            r.status != StatusCode::UNAUTHORIZED && r.status != StatusCode::FORBIDDEN,
            "{what}: permitted, got {} {}",
            r.status,
            r.text()
        );
        assert!(
            denied.is_empty(),
            "{what}: a permitted call logged {denied:?}"
        );
        return;
    }
    let status = match want {
        None => StatusCode::UNAUTHORIZED,
        Some(No) => StatusCode::FORBIDDEN,
        _ => StatusCode::NOT_FOUND,
    };
    assert_eq!(r.status, status, "{what}: {}", r.text());
    r.assert_error(what);
    assert_eq!(w.leak(&r.body), None, "{what}: evidence in a refusal");
    assert_eq!(new.len(), 1, "{what}: one leaf, a denial; got {new:?}");
    assert_eq!(denied.len(), 1, "{what}: {new:?}");
    let (actor, detail, about) = &denied[0];
    if status == StatusCode::NOT_FOUND {
        // Officer B asking for A's case or evidence: B's denial, naming it.
        assert_eq!(*actor, "off-b", "{what}");
        assert!(
            [&w.ids["number"], &w.ids["device"]].contains(&about),
            "{what}: the leaf names the case or device: {about}"
        );
    } else {
        let method = what.split(' ').nth(1).unwrap();
        assert!(
            detail.starts_with(&format!("{method} {path} from 10."))
                && detail.ends_with(&format!(": {}", status.as_u16())),
            "{what}: the leaf names the path and status: {detail}"
        );
    }
}

#[tokio::test]
async fn every_operation_answers_every_caller_as_the_table_says_and_logs_each_refusal() {
    let w = world().await;
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    let mut cells = 0;
    let ops = doc_ops(&w.s);
    for o in &ops {
        let r = row_of(&o.op);
        let (method, uri) = w.row_uri(r);
        let path = uri.split('?').next().unwrap().to_owned();
        let mut succeeded = false;
        for c in CALLERS {
            let want = c.expect(r.who);
            let before = w.log_size();
            let reply = w
                .send(c, &method, &uri, &w.fill(r.body), "application/json")
                .await;
            let what = format!("{c:?} {method} {uri}");
            check_cell(&w, &what, want, &reply, &path, &w.leaves_since(before));
            succeeded |= reply.status.is_success();
            cells += 1;
            *tally
                .entry(match want {
                    None => "401",
                    Some(No) => "403",
                    Some(Hid) => "404 hidden",
                    Some(Yes) => "permitted",
                })
                .or_default() += 1;
        }
        // The row's request is a real one: some permitted caller succeeds.
        assert!(succeeded, "{}: no caller succeeded; fix its row", o.op);
    }
    println!(
        "access matrix: {} operations x {} callers = {cells} cases: {tally:?}",
        ops.len(),
        CALLERS.len()
    );
    assert_eq!(cells, ops.len() * CALLERS.len());
}

#[tokio::test]
async fn another_officers_evidence_and_case_are_not_found_logged_and_bare() {
    let w = world().await;
    let b = &w.device_b;
    let nobody = "7777777777777777";
    // (officer B's, something that does not exist): officer A asks for both.
    let pairs = [
        (
            format!("/api/devices/{b}/entries"),
            format!("/api/devices/{nobody}/entries"),
        ),
        (
            format!("/api/devices/{b}/entries/3"),
            format!("/api/devices/{b}/entries/999"),
        ),
        (
            format!("/api/devices/{b}/entries/3/media"),
            format!("/api/devices/{b}/entries/999/media"),
        ),
        (
            "/api/cases/CJ-2026-0002".to_owned(),
            "/api/cases/CJ-2026-0404".to_owned(),
        ),
        (
            "/api/cases/CJ-2026-0002/compliance".to_owned(),
            "/api/cases/CJ-2026-0404/compliance".to_owned(),
        ),
    ];
    for (theirs, missing) in &pairs {
        let before = w.log_size();
        let r = w.send(Caller::Officer, "GET", theirs, "", "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{theirs}: {}", r.text());
        r.assert_error(theirs);
        assert_eq!(w.leak(&r.body), None, "{theirs}: evidence in the refusal");
        let new = w.leaves_since(before);
        let ok = matches!(&new[..], [Leaf::Custody { action: CustodyAction::Denied, actor, device, case, .. }]
            if actor == "off-a"
                && (device.to_string() == *b || case.as_deref() == Some("CJ-2026-0002")));
        assert!(ok, "{theirs}: one denied leaf naming it: {new:?}");
        // The same answer as for nothing at all (but the number asked for).
        let m = w.send(Caller::Officer, "GET", missing, "", "").await;
        assert_eq!(m.status, StatusCode::NOT_FOUND, "{missing}");
        assert_eq!(
            r.text().replace("CJ-2026-0002", "N"),
            m.text().replace("CJ-2026-0404", "N"),
            "{theirs} tells more than {missing}"
        );
    }
    // Officer B reads them: the 404s were about whose they are.
    let mine = w
        .send(Caller::OtherOfficer, "GET", &pairs[2].0, "", "")
        .await;
    assert_eq!(mine.status, StatusCode::OK);
    assert!(w.leak(&mine.body).is_some(), "B's own media is served");
    let case = w
        .send(Caller::OtherOfficer, "GET", &pairs[3].0, "", "")
        .await;
    assert_eq!(case.status, StatusCode::OK);
}

mod sweep;
