//! A custodian links a range of a device's entries to an activity of a
//! case, or removes such a link, for recordings whose signed tags do not
//! say what they belong to. Compliance then considers them (`"by": "link"`,
//! `casecheck.rs`). Removing a link deletes no evidence: the entries stay in
//! the archive and the log.
//!
//! Each link and unlink is a `link` / `unlink` custody leaf (actor, device,
//! seq range, case, and the activity in the detail), appended before the
//! link is stored: the access log never misses a change.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use fieldseal_proto::leaf::CustodyAction;

use crate::audit::{self, Access};
use crate::auth::Role;
use crate::chainindex::ChainIndex;
use crate::db::Link;

use super::auth::{Authed, ClientAddr};
use super::cases::key_param;
use super::error::{ErrorBody, Path};
use super::evidence::device_param;
use super::{ApiError, AppState};

/// Most entries one link covers: a long day of 4 s segments is ~20,000;
/// a bound keeps one request from naming a whole device's life.
pub const MAX_LINK_ENTRIES: u64 = 100_000;

/// The entries to link or unlink.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRange {
    /// Device id, 16 hex digits.
    device: String,
    /// First seq.
    first_seq: u64,
    /// Last seq (inclusive).
    last_seq: u64,
}

/// A checked request: the case and activity exist, the range is within
/// the device's accepted chain.
struct Checked {
    case: String,
    activity: String,
    device: fieldseal_proto::identity::DeviceId,
    first: u64,
    last: u64,
}

fn check(
    s: &AppState,
    number: String,
    activity: String,
    r: &LinkRange,
) -> Result<Checked, ApiError> {
    key_param("number", &number)?;
    key_param("activity", &activity)?;
    let db = &s.shared.db;
    let case = db.case(&number).map_err(ApiError::internal)?;
    let Some(case) = case else {
        return Err(ApiError::not_found(format!("no case {number}")));
    };
    if !case.activities.iter().any(|a| a.id == activity) {
        return Err(ApiError::not_found(format!(
            "no activity {activity} in case {number}"
        )));
    }
    let device = device_param(&r.device)?;
    if db.device(device).map_err(ApiError::internal)?.is_none() {
        return Err(ApiError::invalid("device", "no such device"));
    }
    if r.last_seq < r.first_seq {
        return Err(ApiError::invalid(
            "last_seq",
            "must not be before first_seq",
        ));
    }
    if r.last_seq - r.first_seq >= MAX_LINK_ENTRIES {
        return Err(ApiError::invalid(
            "last_seq",
            format!("at most {MAX_LINK_ENTRIES} entries in one link"),
        ));
    }
    let (head, _) = db.head_and_log_len(device).map_err(ApiError::internal)?;
    if r.last_seq >= head.next_seq {
        return Err(ApiError::invalid(
            "last_seq",
            format!(
                "the device's accepted chain ends at seq {}",
                head.next_seq.saturating_sub(1)
            ),
        ));
    }
    Ok(Checked {
        case: number,
        activity,
        device,
        first: r.first_seq,
        last: r.last_seq,
    })
}

async fn leaf(
    s: &AppState,
    who: &Authed,
    addr: &str,
    action: CustodyAction,
    c: &Checked,
) -> Result<(), ApiError> {
    let a = Access::new(action, &who.0.user)
        .entries(c.device, c.first, c.last)
        .case(&c.case)
        .detail(format!("activity {} from {addr}", c.activity));
    audit::record(&s.shared, a)
        .await
        .map(|_| ())
        .map_err(ApiError::internal)
}

/// Link a range of a device's entries to an activity (custodians).
#[utoipa::path(post, path = "/api/cases/{number}/activities/{activity}/links", tag = "evidence",
    params(("number" = String, Path, description = "case number"),
        ("activity" = String, Path, description = "activity id")),
    request_body = LinkRange,
    responses((status = 201, description = "linked"), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn link(
    State(s): State<Arc<AppState>>,
    who: Authed,
    ClientAddr(addr): ClientAddr,
    Path((number, activity)): Path<(String, String)>,
    body: Result<Json<LinkRange>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    who.require(&s, &[Role::Custodian], "link recordings to activities")?;
    let Json(r) = body?;
    let c = check(&s, number, activity, &r)?;
    let db = &s.shared.db;
    let linked = db.links(&c.case, &c.activity).map_err(ApiError::internal)?;
    if linked
        .iter()
        .any(|l| (l.device, l.first_seq, l.last_seq) == (c.device, c.first, c.last))
    {
        return Err(ApiError::conflict(
            "this range is linked to the activity already",
        ));
    }
    leaf(&s, &who, &addr, CustodyAction::Link, &c).await?;
    let l = Link {
        device: c.device,
        first_seq: c.first,
        last_seq: c.last,
        by: who.0.user.clone(),
        at_us: crate::now_us(),
    };
    db.put_link(&c.case, &c.activity, &l)
        .map_err(ApiError::internal)?;
    Ok(StatusCode::CREATED)
}

/// Remove a link (custodians). The entries stay in the archive.
#[utoipa::path(delete, path = "/api/cases/{number}/activities/{activity}/links", tag = "evidence",
    params(("number" = String, Path, description = "case number"),
        ("activity" = String, Path, description = "activity id")),
    request_body = LinkRange,
    responses((status = 204, description = "unlinked"), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn unlink(
    State(s): State<Arc<AppState>>,
    who: Authed,
    ClientAddr(addr): ClientAddr,
    Path((number, activity)): Path<(String, String)>,
    body: Result<Json<LinkRange>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    who.require(&s, &[Role::Custodian], "unlink recordings from activities")?;
    let Json(r) = body?;
    let c = check(&s, number, activity, &r)?;
    let db = &s.shared.db;
    let linked = db.links(&c.case, &c.activity).map_err(ApiError::internal)?;
    if !linked
        .iter()
        .any(|l| (l.device, l.first_seq, l.last_seq) == (c.device, c.first, c.last))
    {
        return Err(ApiError::not_found("no such link"));
    }
    leaf(&s, &who, &addr, CustodyAction::Unlink, &c).await?;
    db.remove_link(&c.case, &c.activity, c.device, (c.first, c.last))
        .map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}
