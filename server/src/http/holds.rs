//! Legal holds over HTTP: a hold keeps the media of a range of a device's
//! entries from the retention job (`crate::retention`) until it is
//! released. Placed and released by custodians and supervisors; listed for
//! them and admins. Each placement and release is a `hold` / `release`
//! custody leaf of the log with its reason. Nothing here deletes anything.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::leaf::CustodyAction;
use serde::Deserialize;

use crate::audit::{self, Access};
use crate::auth::Role;
use crate::cases::valid_key;
use crate::retention::{Hold, Release};

use super::auth::Authed;
use super::error::{ErrorBody, Path};
use super::{ApiError, AppState};

const WRITERS: &[Role] = &[Role::Custodian, Role::Supervisor];
const READERS: &[Role] = &[Role::Custodian, Role::Supervisor, Role::Admin];

/// The most entries one hold may name: a day of 4 s segments of one device
/// is about 20,000; a million is years, and still a bounded range.
pub const MAX_HOLD_ENTRIES: u64 = 1_000_000;

/// The longest reason, in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// A new hold.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHold {
    /// The case it is for, if one (must exist).
    #[serde(default)]
    case: Option<String>,
    /// Device id, 16 hex digits.
    device: String,
    /// First entry held.
    first_seq: u64,
    /// Last entry held (inclusive).
    last_seq: u64,
    /// Why: 1 to 200 characters.
    reason: String,
}

/// The release of a hold.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseHold {
    /// Why: 1 to 200 characters.
    reason: String,
}

fn check_reason(r: &str) -> Result<(), ApiError> {
    if r.trim().is_empty() || r.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::invalid(
            "reason",
            format!("1 to {MAX_REASON_CHARS} characters"),
        ));
    }
    if r.chars().any(char::is_control) {
        return Err(ApiError::invalid("reason", "no control characters"));
    }
    Ok(())
}

/// Check a new hold; its device.
fn check_new(s: &AppState, h: &NewHold) -> Result<DeviceId, ApiError> {
    check_reason(&h.reason)?;
    if h.last_seq < h.first_seq {
        return Err(ApiError::invalid("last_seq", "before first_seq"));
    }
    if h.last_seq - h.first_seq >= MAX_HOLD_ENTRIES {
        return Err(ApiError::invalid(
            "last_seq",
            format!("a hold names at most {MAX_HOLD_ENTRIES} entries"),
        ));
    }
    let device: DeviceId = h
        .device
        .parse()
        .map_err(|_| ApiError::invalid("device", "16 hex digits"))?;
    let db = &s.shared.db;
    if db.device(device).map_err(ApiError::internal)?.is_none() {
        return Err(ApiError::not_found(format!("no device {device}")));
    }
    if let Some(c) = &h.case {
        if !valid_key(c) {
            return Err(ApiError::invalid(
                "case",
                "1 to 64 of A-Z, a-z, 0-9, - and _",
            ));
        }
        if db.case(c).map_err(ApiError::internal)?.is_none() {
            return Err(ApiError::not_found(format!("no case {c}")));
        }
    }
    Ok(device)
}

/// Put media on legal hold: the retention job keeps it until released.
#[utoipa::path(post, path = "/api/holds", tag = "holds", request_body = NewHold,
    responses((status = 201, description = "the hold", body = Hold), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn place(
    State(s): State<Arc<AppState>>,
    who: Authed,
    body: Result<Json<NewHold>, JsonRejection>,
) -> Result<(StatusCode, Json<Hold>), ApiError> {
    who.require(&s, WRITERS, "place legal holds")?;
    let Json(h) = body?;
    let device = check_new(&s, &h)?;
    let mut access = Access::new(CustodyAction::Hold, &who.0.user)
        .entries(device, h.first_seq, h.last_seq)
        .detail(h.reason.clone());
    if let Some(c) = &h.case {
        access = access.case(c);
    }
    let id = s.shared.db.next_hold_id().map_err(ApiError::internal)?;
    // The leaf first: a hold exists only once the log says so.
    let leaf = audit::record(&s.shared, access)
        .await
        .map_err(ApiError::internal)?;
    let hold = Hold {
        id,
        case: h.case,
        device: device.to_string(),
        first_seq: h.first_seq,
        last_seq: h.last_seq,
        reason: h.reason,
        by: who.0.user.clone(),
        at_us: crate::now_us(),
        leaf,
        released: None,
    };
    s.shared.db.put_hold(&hold).map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(hold)))
}

/// Every hold, released or not.
#[utoipa::path(get, path = "/api/holds", tag = "holds",
    responses((status = 200, description = "holds", body = Vec<Hold>), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(s): State<Arc<AppState>>,
    who: Authed,
) -> Result<Json<Vec<Hold>>, ApiError> {
    who.require(&s, READERS, "read legal holds")?;
    Ok(Json(s.shared.db.holds().map_err(ApiError::internal)?))
}

/// Release a hold: its media falls under retention again.
#[utoipa::path(post, path = "/api/holds/{id}/release", tag = "holds", request_body = ReleaseHold,
    params(("id" = u64, Path, description = "hold id")),
    responses((status = 200, description = "the released hold", body = Hold), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn release(
    State(s): State<Arc<AppState>>,
    who: Authed,
    Path(id): Path<String>,
    body: Result<Json<ReleaseHold>, JsonRejection>,
) -> Result<Json<Hold>, ApiError> {
    who.require(&s, WRITERS, "release legal holds")?;
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::invalid("id", "a hold id is a number"))?;
    let Json(r) = body?;
    check_reason(&r.reason)?;
    let db = &s.shared.db;
    let mut hold = db
        .hold(id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no hold {id}")))?;
    if hold.released.is_some() {
        return Err(ApiError::conflict(format!("hold {id} is already released")));
    }
    let device: DeviceId = hold.device.parse().map_err(ApiError::internal)?;
    let mut access = Access::new(CustodyAction::Release, &who.0.user)
        .entries(device, hold.first_seq, hold.last_seq)
        .detail(r.reason.clone());
    if let Some(c) = &hold.case {
        access = access.case(c);
    }
    let leaf = audit::record(&s.shared, access)
        .await
        .map_err(ApiError::internal)?;
    hold.released = Some(Release {
        by: who.0.user.clone(),
        at_us: crate::now_us(),
        reason: r.reason,
        leaf,
    });
    db.put_hold(&hold).map_err(ApiError::internal)?;
    Ok(Json(hold))
}
