//! The API driven in process with `oneshot`: no socket.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use tower::ServiceExt;

use super::{app, router_and_doc, AppState};
use crate::catalogue::Catalogue;

const PASSWORD: &str = "test-password-long";

fn state() -> (tempfile::TempDir, Arc<AppState>) {
    let dir = tempfile::tempdir().unwrap();
    crate::admin::init(dir.path(), &[], Some(PASSWORD.into())).unwrap();
    let cfg = crate::config::Config::load(dir.path()).unwrap();
    let shared = Arc::new(crate::Shared::load(dir.path(), cfg).unwrap());
    (
        dir,
        Arc::new(AppState::new(shared, Catalogue::article_27())),
    )
}

async fn call(
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

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn post_json(uri: &str, json: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json.to_owned()))
        .unwrap()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

async fn login(s: &Arc<AppState>) -> String {
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
    assert!(m.contains("fieldseal_login_failures_total 4"), "{m}");
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
}
