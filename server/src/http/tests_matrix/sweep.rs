//! The bad-input sweep of the matrix: path tricks in every id, bad bodies
//! and bad queries against every documented operation, each a 4xx JSON
//! error naming the field, with nothing changed.

use super::*;

// ---------------------------------------------------------------- the sweep

/// What each path parameter is replaced with, one at a time.
fn tricks() -> Vec<(&'static str, String)> {
    vec![
        ("dot-dot-slash", "..%2F..%2Fetc%2Fpasswd".to_owned()),
        ("NUL", "%00".to_owned()),
        ("dot", ".".to_owned()),
        ("unicode", "%E6%A1%88%E4%BB%B6%E2%80%AE".to_owned()),
        ("invalid UTF-8", "%FF%FE".to_owned()),
        ("10 kB", "a".repeat(10 * 1024)),
    ]
}

/// One bad request of the sweep and what it must get.
struct Bad {
    what: String,
    method: String,
    uri: String,
    body: Vec<u8>,
    content_type: &'static str,
    /// The statuses it may get (serde_json calls some wrong types syntax
    /// errors, 400, and others data errors, 422).
    status: &'static [StatusCode],
    /// The field the error must name, if one.
    field: Option<String>,
}

/// Send `b` as `c`; a complaint if the answer is not `b.status` with a JSON
/// error naming `b.field`, or if the index changed.
async fn try_bad(w: &World, c: Caller, b: Bad) -> Option<String> {
    let before = w.snapshot();
    let r = w
        .send_bytes(c, &b.method, &b.uri, b.body, b.content_type)
        .await;
    let after = w.snapshot();
    let what = &b.what;
    let Ok(v) = serde_json::from_slice::<Value>(&r.body) else {
        return Some(format!("{what}: {} not JSON: {}", r.status, r.text()));
    };
    let field = v.get("field").and_then(Value::as_str);
    if !b.status.contains(&r.status) || field != b.field.as_deref() {
        return Some(format!(
            "{what}: want {:?} field {:?}, got {} {}",
            b.status,
            b.field,
            r.status,
            r.text()
        ));
    }
    r.assert_error(what);
    if r.body.len() > 1024 {
        return Some(format!("{what}: a {} byte error", r.body.len()));
    }
    (before != after).then(|| format!("{what}: the index changed"))
}

/// Run a sweep's bad requests; fail listing every complaint.
async fn sweep(w: &World, name: &str, cases: Vec<(Caller, Bad)>) {
    let n = cases.len();
    let mut complaints = Vec::new();
    for (c, b) in cases {
        complaints.extend(try_bad(w, c, b).await);
    }
    println!("{name}: {n} bad requests, {} wrong", complaints.len());
    assert!(complaints.is_empty(), "{}", complaints.join("\n"));
}

#[tokio::test]
async fn a_trick_in_any_path_parameter_is_400_naming_it_and_changes_nothing() {
    let w = world().await;
    let mut cases = Vec::new();
    for o in doc_ops(&w.s) {
        let r = row_of(&o.op);
        let (method, path) = r.op.split_once(' ').unwrap();
        for p in &o.path_params {
            for (name, trick) in tricks() {
                let mut uri = w.fill(&path.replace(&format!("{{{p}}}"), &trick));
                if !r.query.is_empty() {
                    uri = format!("{uri}?{}", w.fill(r.query));
                }
                let b = Bad {
                    what: format!("{} with {p} = {name}", o.op),
                    method: method.to_owned(),
                    uri,
                    body: w.fill(r.body).into_bytes(),
                    content_type: "application/json",
                    status: &[StatusCode::BAD_REQUEST],
                    field: Some(p.clone()),
                };
                cases.push((sweeper(r), b));
            }
        }
    }
    sweep(&w, "path tricks", cases).await;
}

/// `v` with a value of another JSON type.
fn wrong_type(v: &Value) -> Value {
    match v {
        Value::String(_) => Value::from(7),
        Value::Number(_) | Value::Array(_) | Value::Object(_) => Value::from("seven"),
        Value::Bool(_) => Value::from("yes"),
        Value::Null => Value::from(vec![1]),
    }
}

/// A bad body: what it is, its bytes and content type, the statuses it
/// may get and the field it must name.
type BadBody = (
    String,
    Vec<u8>,
    &'static str,
    &'static [StatusCode],
    Option<String>,
);

const TYPE_ERROR: &[StatusCode] = &[StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY];

/// The bad bodies of one row, made from its good one.
fn bad_bodies(good: &str) -> Vec<BadBody> {
    let json = "application/json";
    let huge = format!(r#"{{"pad":"{}"}}"#, "a".repeat(crate::http::MAX_BODY + 1));
    let good = good.as_bytes().to_vec();
    let mut out: Vec<BadBody> = vec![
        (
            "oversized".into(),
            huge.into_bytes(),
            json,
            &[StatusCode::PAYLOAD_TOO_LARGE],
            None,
        ),
        (
            "malformed".into(),
            b"{not json".to_vec(),
            json,
            &[StatusCode::BAD_REQUEST],
            None,
        ),
        (
            "not an object".into(),
            b"\"x\"".to_vec(),
            json,
            TYPE_ERROR,
            None,
        ),
        (
            "text/plain".into(),
            good.clone(),
            "text/plain",
            &[StatusCode::UNSUPPORTED_MEDIA_TYPE],
            None,
        ),
        (
            "no content type".into(),
            good.clone(),
            "",
            &[StatusCode::UNSUPPORTED_MEDIA_TYPE],
            None,
        ),
    ];
    let obj: serde_json::Map<String, Value> = serde_json::from_slice(&good).unwrap();
    let mut unknown = obj.clone();
    unknown.insert("zz_unknown".into(), Value::from(1));
    out.push((
        "an unknown field".into(),
        Value::Object(unknown).to_string().into_bytes(),
        json,
        TYPE_ERROR,
        Some("zz_unknown".into()),
    ));
    for (k, v) in &obj {
        let mut bad = obj.clone();
        bad.insert(k.clone(), wrong_type(v));
        out.push((
            format!("{k} of the wrong type"),
            Value::Object(bad).to_string().into_bytes(),
            json,
            TYPE_ERROR,
            Some(k.clone()),
        ));
    }
    out
}

#[tokio::test]
async fn a_bad_body_is_4xx_naming_the_field_and_changes_nothing() {
    let w = world().await;
    let mut cases = Vec::new();
    for r in ROWS.iter().filter(|r| !r.body.is_empty()) {
        let (method, uri) = w.row_uri(r);
        for (name, body, content_type, status, field) in bad_bodies(&w.fill(r.body)) {
            let b = Bad {
                what: format!("{} with {name}", r.op),
                method: method.clone(),
                uri: uri.clone(),
                body,
                content_type,
                status,
                field,
            };
            cases.push((sweeper(r), b));
        }
    }
    sweep(&w, "bad bodies", cases).await;
}

#[tokio::test]
async fn a_bad_query_is_400_naming_the_parameter_and_changes_nothing() {
    let w = world().await;
    let mut cases = Vec::new();
    for o in doc_ops(&w.s).iter().filter(|o| !o.query_params.is_empty()) {
        let r = row_of(&o.op);
        let (method, uri) = w.row_uri(r);
        let path = uri.split('?').next().unwrap();
        let good: Vec<(String, String)> = w
            .fill(r.query)
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.split_once('=').unwrap())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let join = |q: &[(String, String)]| {
            let q: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{path}?{}", q.join("&"))
        };
        let mut bad: Vec<(String, String, String)> = Vec::new();
        let mut unknown = good.clone();
        unknown.push(("zz_unknown".into(), "1".into()));
        bad.push((
            "an unknown parameter".into(),
            join(&unknown),
            "zz_unknown".into(),
        ));
        for (i, (k, _)) in good.iter().enumerate() {
            let mut q = good.clone();
            q[i].1 = "x%00".into();
            bad.push((format!("{k} = x%00"), join(&q), k.clone()));
        }
        for (k, _) in o.query_params.iter().filter(|(_, required)| *required) {
            let q: Vec<_> = good.iter().filter(|(g, _)| g != k).cloned().collect();
            bad.push((format!("without {k}"), join(&q), k.clone()));
        }
        for (name, uri, field) in bad {
            let b = Bad {
                what: format!("{} with {name}", o.op),
                method: method.clone(),
                uri,
                body: Vec::new(),
                content_type: "",
                status: &[StatusCode::BAD_REQUEST],
                field: Some(field),
            };
            cases.push((sweeper(r), b));
        }
    }
    sweep(&w, "bad queries", cases).await;
}
