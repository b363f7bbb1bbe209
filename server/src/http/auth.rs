//! Logging in and out, and finding the caller's session: a bearer token
//! (`Authorization: Bearer …`, for programs) or the `fieldseal_session`
//! cookie (HttpOnly, Secure, SameSite=Strict, for the web page).
//!
//! Every login and refused login is a custody leaf (`login`,
//! `login-failed`), durable before the answer; a refused login's leaf says
//! why (`bad credentials`, `throttled`) where the answer does not say which
//! of a wrong password, an unknown or a disabled user it was. Refused
//! requests are logged by `super::denied`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};

use fieldseal_proto::leaf::CustodyAction;

use crate::audit::Access;
use crate::auth::{Role, Session, SESSION_US};

use super::{ApiError, AppState};

/// The session cookie's name.
pub const COOKIE: &str = "fieldseal_session";

/// The caller's address, or `unknown` where the listener gave none (tests).
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string()),
        ))
    }
}

/// The token a request carries, from its bearer header or its cookie.
pub(super) fn token_of(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v.strip_prefix("Bearer ") {
            return Some(t.trim().to_owned());
        }
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// A request with a live session.
#[derive(Debug, Clone)]
pub struct Authed(pub Session);

impl FromRequestParts<Arc<AppState>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &Arc<AppState>) -> Result<Self, ApiError> {
        let session =
            token_of(&parts.headers).and_then(|t| s.shared.sessions.get(&t, crate::now_us()));
        // The refusal is counted and logged by `super::denied`.
        session.map(Authed).ok_or_else(ApiError::unauthenticated)
    }
}

impl Authed {
    /// Refuse unless the caller has one of `roles`. The refusal is counted
    /// and logged (durably, before the answer) by `super::denied`, which
    /// sees every 403.
    ///
    /// # Errors
    /// 403 naming `what`.
    pub fn require(&self, _s: &AppState, roles: &[Role], what: &str) -> Result<(), ApiError> {
        if roles.contains(&self.0.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(what))
        }
    }
}

/// A login.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// User name.
    user: String,
    /// Password.
    password: String,
}

/// A session, as login gives it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoggedIn {
    /// The bearer token (also set as the session cookie).
    token: String,
    /// The user.
    user: String,
    /// The user's role.
    #[schema(value_type = String)]
    role: Role,
    /// When the session ends, µs since the epoch.
    expires_us: i64,
}

/// Log in with a user name and password.
#[utoipa::path(post, path = "/api/login", tag = "session", request_body = Login,
    responses((status = 200, body = LoggedIn), (status = 401, body = super::error::ErrorBody),
        (status = 429, body = super::error::ErrorBody)))]
pub async fn login(
    State(s): State<Arc<AppState>>,
    ClientAddr(addr): ClientAddr,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(l) = body?;
    let now = crate::now_us();
    let keys = [format!("user:{}", l.user), format!("addr:{addr}")];
    if let Err(wait) = s.throttle.check(&keys, now) {
        refused(&s, &l.user, &addr, "throttled").await;
        return Err(ApiError::too_many(wait));
    }
    let Some((role, officer)) = check_password(&s, &l.user, &l.password).await? else {
        s.throttle.failed(&keys, now);
        refused(&s, &l.user, &addr, "bad credentials").await;
        return Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "bad-credentials",
            field: None,
            message: "wrong user name or password".into(),
        });
    };
    s.throttle.succeeded(&keys);
    // Logged before the session exists: no session the log does not know.
    let a = Access::new(CustodyAction::Login, &l.user).detail(format!("from {addr}"));
    crate::audit::record(&s.shared, a)
        .await
        .map_err(ApiError::internal)?;
    s.metrics.logins_ok.fetch_add(1, Ordering::Relaxed);
    let expires_us = now + SESSION_US;
    let token = s.shared.sessions.start(
        Session {
            user: l.user.clone(),
            role,
            officer,
            expires_us,
        },
        &mut rand_core::OsRng,
    );
    tracing::info!(user = l.user, addr, role = role.as_str(), "login");
    let cookie = format!(
        "{COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_US / 1_000_000
    );
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(LoggedIn {
            token,
            user: l.user,
            role,
            expires_us,
        }),
    ))
}

/// A refused login: counted, and logged with `why`, which the answer does
/// not tell (the flood limit applies: there is no session).
async fn refused(s: &Arc<AppState>, user: &str, addr: &str, why: &str) {
    s.metrics.logins_failed.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(user, addr, why, "login refused");
    let a = Access::new(CustodyAction::LoginFailed, user);
    super::denied::record_anonymous(s, addr, a, format!("from {addr}: {why}")).await;
}

/// The role and officer of `user` if `password` is theirs and they are
/// enabled; `None` otherwise.
async fn check_password(
    s: &AppState,
    user: &str,
    password: &str,
) -> Result<Option<(Role, Option<String>)>, ApiError> {
    let user = s.shared.db.user(user).map_err(ApiError::internal)?;
    // Verify against a fixed hash when the user is unknown, so that the
    // answer takes as long and says as little either way.
    // A disabled user is refused like an unknown one, after the same work.
    let (stored, role, officer) = match user {
        Some(u) if !u.disabled => (u.password_hash, Some(u.role), u.officer),
        _ => (dummy_hash().to_owned(), None, None),
    };
    let password = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || crate::auth::verify_password(&stored, &password))
        .await
        .map_err(ApiError::internal)?
        .unwrap_or(false);
    Ok(match (ok, role.as_deref().map(Role::parse)) {
        (true, Some(Ok(r))) => Some((r, officer)),
        _ => None,
    })
}

/// The hash of a random password nobody has, verified when the user is
/// unknown (made once, with the same argon2 settings as real ones).
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let mut raw = [0u8; 24];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
        crate::auth::hash_password(&hex::encode(raw)).unwrap_or_default()
    })
}

/// End the caller's session.
#[utoipa::path(post, path = "/api/logout", tag = "session",
    responses((status = 204, description = "logged out"), (status = 401, body = super::error::ErrorBody)))]
pub async fn logout(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    _who: Authed,
) -> impl IntoResponse {
    if let Some(t) = token_of(&headers) {
        s.shared.sessions.revoke(&t);
    }
    let expire = format!("{COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0");
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, expire)])
}

/// Who the caller is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    /// The user.
    user: String,
    /// The role.
    #[schema(value_type = String)]
    role: Role,
    /// When the session ends.
    expires_us: i64,
}

/// The caller's session.
#[utoipa::path(get, path = "/api/me", tag = "session",
    responses((status = 200, body = Me), (status = 401, body = super::error::ErrorBody)))]
pub async fn me(Authed(s): Authed) -> Json<Me> {
    Json(Me {
        user: s.user,
        role: s.role,
        expires_us: s.expires_us,
    })
}
