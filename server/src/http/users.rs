//! The admin's user API: list, add and change users, through the same
//! functions as `fieldseal-server user …` (`crate::users`), so the same
//! checks hold (names, roles, an officer user's certificate, weak passwords,
//! the last enabled admin) and every change is an `account` leaf of the
//! access log with the admin as its actor. A change ends the user's
//! sessions at once. Password hashes never leave the server.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use crate::auth::{AuthError, Role};
use crate::users::{self, UserError, UserInfo};

use super::auth::Authed;
use super::error::{ErrorBody, Path};
use super::{ApiError, AppState};

fn user_error(e: UserError) -> ApiError {
    match e {
        e @ UserError::BadName(_) => ApiError::invalid("user", e.to_string()),
        e @ UserError::Exists(_) => ApiError::conflict(e.to_string()),
        e @ UserError::NoUser(_) => ApiError::not_found(e.to_string()),
        UserError::Officer(why) => ApiError::invalid(
            "officer",
            format!("an officer user needs the certificate of a known officer ({why})"),
        ),
        UserError::Auth(e @ AuthError::UnknownRole(_)) => ApiError::invalid("role", e.to_string()),
        UserError::Auth(e @ AuthError::WeakPassword) => {
            ApiError::invalid("password", e.to_string())
        }
        e @ UserError::LastAdmin(_) => ApiError {
            status: StatusCode::CONFLICT,
            code: "last-admin",
            field: None,
            message: e.to_string(),
        },
        other => ApiError::internal(other),
    }
}

/// Run a user change (argon2, an fsync of the log and the index) off the
/// async workers, logging it with the caller as actor.
async fn run<T: Send + 'static>(
    s: &Arc<AppState>,
    f: impl FnOnce(&crate::db::Db, users::Recorder<'_>) -> Result<T, UserError> + Send + 'static,
) -> Result<T, ApiError> {
    let sh = s.shared.clone();
    tokio::task::spawn_blocking(move || {
        let record = |a: &crate::audit::Access| crate::audit::record_blocking(&sh, a);
        f(&sh.db, &record)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(user_error)
}

/// Every user (no password hashes).
#[utoipa::path(get, path = "/api/users", tag = "users",
    responses((status = 200, description = "users: name, role, disabled, officer"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    State(s): State<Arc<AppState>>,
    who: Authed,
) -> Result<Json<Vec<UserInfo>>, ApiError> {
    who.require(&s, &[Role::Admin], "manage users")?;
    Ok(Json(users::list(&s.shared.db).map_err(user_error)?))
}

/// A new user.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name: 1 to 64 of A-Z, a-z, 0-9, - and _.
    user: String,
    /// `officer`, `custodian`, `supervisor` or `admin`.
    role: String,
    /// 10 to 1024 bytes.
    password: String,
    /// For an officer: the certificate number of a known officer.
    officer: Option<String>,
}

/// Add a user (admin).
#[utoipa::path(post, path = "/api/users", tag = "users", request_body = NewUser,
    responses((status = 201, description = "the user"), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_user(
    State(s): State<Arc<AppState>>,
    who: Authed,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<(StatusCode, Json<UserInfo>), ApiError> {
    who.require(&s, &[Role::Admin], "manage users")?;
    let Json(n) = body?;
    let actor = who.0.user;
    let u = run(&s, move |db, record| {
        let new = users::NewUser {
            name: &n.user,
            role: &n.role,
            officer: n.officer.as_deref(),
            password: &n.password,
        };
        users::add(db, record, &actor, new)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(u)))
}

/// A change to a user: only what is given changes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// A new role.
    role: Option<String>,
    /// Disable (true) or enable (false).
    disabled: Option<bool>,
    /// A new password.
    password: Option<String>,
    /// A new officer certificate number.
    officer: Option<String>,
}

/// Change a user (admin); every session of theirs ends.
#[utoipa::path(patch, path = "/api/users/{name}", tag = "users", request_body = UserChange,
    params(("name" = String, Path, description = "user name")),
    responses((status = 200, description = "the user"), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn change_user(
    State(s): State<Arc<AppState>>,
    who: Authed,
    Path(name): Path<String>,
    body: Result<Json<UserChange>, JsonRejection>,
) -> Result<Json<UserInfo>, ApiError> {
    who.require(&s, &[Role::Admin], "manage users")?;
    // A name no user can have is a bad request, not an unknown user (and
    // is not repeated back: it may be 10 kB).
    super::cases::key_param("name", &name)?;
    let Json(c) = body?;
    if c.role.is_none() && c.disabled.is_none() && c.password.is_none() && c.officer.is_none() {
        return Err(ApiError::invalid(
            "body",
            "nothing to change: give role, disabled, password or officer",
        ));
    }
    let actor = who.0.user;
    let whose = name.clone();
    let u = run(&s, move |db, record| {
        let change = users::Change {
            disabled: c.disabled,
            password: c.password.as_deref(),
            role: c.role.as_deref(),
            officer: c.officer.as_deref(),
        };
        users::change(db, record, &actor, &whose, change)
    })
    .await?;
    let ended = s.shared.sessions.revoke_user(&u.name);
    tracing::info!(
        user = u.name,
        sessions = ended,
        "user changed; sessions ended"
    );
    Ok(Json(u))
}
