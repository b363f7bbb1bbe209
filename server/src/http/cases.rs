//! Officers, device custody and cases over HTTP. Who may do what:
//! - officers: read by custodians, supervisors and admins; written by admins;
//! - custody (check-out and return of a device): custodians and admins;
//! - cases: read by custodians, supervisors and admins, and by an officer
//!   for the cases that name them (any other case is "not found" to them,
//!   and their asking is a `denied` leaf of the access log); written by custodians and admins; a legal review is entered by a
//!   supervisor, custodian or admin.
//!
//! Every write is checked whole by `crate::cases` before it is stored; a
//! refusal names the field.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use fieldseal_proto::leaf::CustodyAction;

use crate::audit::{self, Access};
use crate::auth::Role;
use crate::cases::{
    valid_key, Activity, Case, CaseError, Custody, LegalReview, Letter, OfficerRecord, StageRecord,
};

use super::auth::{Authed, ClientAddr};
use super::error::{ErrorBody, Path};
use super::{ApiError, AppState};

const READERS: &[Role] = &[Role::Custodian, Role::Supervisor, Role::Admin];
const WRITERS: &[Role] = &[Role::Custodian, Role::Admin];

fn case_error(e: CaseError) -> ApiError {
    match e {
        CaseError::Invalid { field, why } => ApiError::invalid(field, why),
        CaseError::ReviewRequired => ApiError {
            status: StatusCode::CONFLICT,
            code: "review-required",
            field: Some("stages".into()),
            message: e.to_string(),
        },
    }
}

/// A case number or id in a path or body: 400 naming `field` unless it is a key.
pub(super) fn key_param(field: &'static str, v: &str) -> Result<(), ApiError> {
    if valid_key(v) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            "1 to 64 of A-Z, a-z, 0-9, - and _",
        ))
    }
}

/// Every officer.
#[utoipa::path(get, path = "/api/officers", tag = "cases",
    responses((status = 200, description = "officers"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_officers(
    State(s): State<Arc<AppState>>,
    who: Authed,
) -> Result<Json<Vec<OfficerRecord>>, ApiError> {
    who.require(&s, READERS, "read the officers")?;
    Ok(Json(s.shared.db.officers().map_err(ApiError::internal)?))
}

/// Add or change an officer (admin).
#[utoipa::path(post, path = "/api/officers", tag = "cases",
    responses((status = 201, description = "stored"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_officer(
    State(s): State<Arc<AppState>>,
    who: Authed,
    body: Result<Json<OfficerRecord>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    who.require(&s, &[Role::Admin], "manage officers")?;
    let Json(o) = body?;
    o.check().map_err(case_error)?;
    s.shared.db.put_officer(&o).map_err(ApiError::internal)?;
    tracing::info!(
        by = who.0.user,
        certificate = o.certificate,
        "officer stored"
    );
    Ok(StatusCode::CREATED)
}

/// Record a device check-out, or its return (the same record with `to_us`).
#[utoipa::path(post, path = "/api/custody", tag = "cases",
    responses((status = 201, description = "stored"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn put_custody(
    State(s): State<Arc<AppState>>,
    who: Authed,
    body: Result<Json<Custody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    who.require(&s, WRITERS, "record device custody")?;
    let Json(c) = body?;
    let db = &s.shared.db;
    if db.device(c.device).map_err(ApiError::internal)?.is_none() {
        return Err(ApiError::invalid("device", "no such device"));
    }
    if db
        .officer(&c.officer)
        .map_err(ApiError::internal)?
        .is_none()
    {
        return Err(ApiError::invalid(
            "officer",
            "no officer with this certificate",
        ));
    }
    if c.to_us.is_some_and(|t| t <= c.from_us) {
        return Err(ApiError::invalid("to_us", "must be after from_us"));
    }
    db.put_custody(&c).map_err(ApiError::internal)?;
    Ok(StatusCode::CREATED)
}

/// May the caller see this case? Officers see the cases that name them.
fn visible(who: &Authed, c: &Case) -> bool {
    match who.0.role {
        Role::Officer => who
            .0
            .officer
            .as_ref()
            .is_some_and(|o| c.officers.contains(o)),
        _ => true,
    }
}

/// The case, if it exists and the caller may see it (404 otherwise: an
/// officer learns nothing of other officers' cases). A case hidden from an
/// officer is a refusal like any other: a `denied` leaf of the access log,
/// durable before the answer.
async fn load_case(s: &AppState, who: &Authed, addr: &str, number: &str) -> Result<Case, ApiError> {
    key_param("number", number)?;
    match s.shared.db.case(number).map_err(ApiError::internal)? {
        Some(c) if visible(who, &c) => Ok(c),
        Some(_) => Err(hidden(s, who, addr, number).await),
        None => Err(ApiError::not_found(format!("no case {number}"))),
    }
}

/// Log an officer's refused look at another officer's case; the same
/// "not found" as for a case that does not exist.
async fn hidden(s: &AppState, who: &Authed, addr: &str, number: &str) -> ApiError {
    s.metrics
        .denials
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let a = Access::new(CustodyAction::Denied, &who.0.user)
        .case(number)
        .detail(format!("case from {addr}: not the officer's case"));
    match audit::record(&s.shared, a).await {
        Ok(_) => ApiError::not_found(format!("no case {number}")),
        Err(e) => ApiError::internal(e),
    }
}

fn store(s: &AppState, c: &Case) -> Result<(), ApiError> {
    let db = &s.shared.db;
    c.check(&s.catalogue, |o| matches!(db.officer(o), Ok(Some(_))))
        .map_err(case_error)?;
    db.put_case(c).map_err(ApiError::internal)
}

/// The cases the caller may see.
#[utoipa::path(get, path = "/api/cases", tag = "cases",
    responses((status = 200, description = "cases"), (status = 401, body = ErrorBody)))]
pub async fn list_cases(
    State(s): State<Arc<AppState>>,
    who: Authed,
) -> Result<Json<Vec<Case>>, ApiError> {
    let all = s.shared.db.cases().map_err(ApiError::internal)?;
    Ok(Json(all.into_iter().filter(|c| visible(&who, c)).collect()))
}

/// Open a case.
#[utoipa::path(post, path = "/api/cases", tag = "cases",
    responses((status = 201, description = "opened"), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_case(
    State(s): State<Arc<AppState>>,
    who: Authed,
    body: Result<Json<Case>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    who.require(&s, WRITERS, "open cases")?;
    let Json(c) = body?;
    key_param("number", &c.number)?;
    if s.shared
        .db
        .case(&c.number)
        .map_err(ApiError::internal)?
        .is_some()
    {
        return Err(ApiError::conflict(format!("case {} exists", c.number)));
    }
    store(&s, &c)?;
    tracing::info!(by = who.0.user, case = c.number, "case opened");
    Ok(StatusCode::CREATED)
}

/// One case.
#[utoipa::path(get, path = "/api/cases/{number}", tag = "cases",
    params(("number" = String, Path, description = "case number")),
    responses((status = 200, description = "the case"), (status = 404, body = ErrorBody)))]
pub async fn get_case(
    State(s): State<Arc<AppState>>,
    who: Authed,
    ClientAddr(addr): ClientAddr,
    Path(number): Path<String>,
) -> Result<Json<Case>, ApiError> {
    Ok(Json(load_case(&s, &who, &addr, &number).await?))
}

/// Add a stage record (Art. 27 ¶1). A major decision needs the legal review first (Art. 28).
#[utoipa::path(post, path = "/api/cases/{number}/stages", tag = "cases",
    params(("number" = String, Path, description = "case number")),
    responses((status = 201, description = "added"), (status = 409, body = ErrorBody)))]
pub async fn add_stage(
    State(s): State<Arc<AppState>>,
    who: Authed,
    ClientAddr(addr): ClientAddr,
    Path(number): Path<String>,
    body: Result<Json<StageRecord>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    who.require(&s, WRITERS, "record stages")?;
    let Json(mut st) = body?;
    let mut c = load_case(&s, &who, &addr, &number).await?;
    st.by.clone_from(&who.0.user);
    c.stages.push(st);
    store(&s, &c)?;
    Ok(StatusCode::CREATED)
}

/// Enter the legal review of a major decision, with its written opinion.
#[utoipa::path(post, path = "/api/cases/{number}/review", tag = "cases",
    params(("number" = String, Path, description = "case number")),
    responses((status = 201, description = "entered"), (status = 400, body = ErrorBody)))]
pub async fn set_review(
    State(s): State<Arc<AppState>>,
    who: Authed,
    ClientAddr(addr): ClientAddr,
    Path(number): Path<String>,
    body: Result<Json<LegalReview>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    who.require(
        &s,
        &[Role::Custodian, Role::Supervisor, Role::Admin],
        "enter legal reviews",
    )?;
    let Json(r) = body?;
    let mut c = load_case(&s, &who, &addr, &number).await?;
    c.review = Some(r);
    store(&s, &c)?;
    Ok(StatusCode::CREATED)
}

/// Add an activity (type from the catalogue, place, window, officers).
#[utoipa::path(post, path = "/api/cases/{number}/activities", tag = "cases",
    params(("number" = String, Path, description = "case number")),
    responses((status = 201, description = "added"), (status = 400, body = ErrorBody)))]
pub async fn add_activity(
    State(s): State<Arc<AppState>>,
    who: Authed,
    ClientAddr(addr): ClientAddr,
    Path(number): Path<String>,
    body: Result<Json<Activity>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    who.require(&s, WRITERS, "record activities")?;
    let Json(a) = body?;
    let mut c = load_case(&s, &who, &addr, &number).await?;
    if c.activities.iter().any(|x| x.id == a.id) {
        return Err(ApiError::conflict(format!("activity {} exists", a.id)));
    }
    c.activities.push(a);
    store(&s, &c)?;
    Ok(StatusCode::CREATED)
}

/// Article 27 compliance of a case: per activity its requirement and a
/// verdict whose findings name the exact seconds and entries; missing stages.
#[utoipa::path(get, path = "/api/cases/{number}/compliance", tag = "cases",
    params(("number" = String, Path, description = "case number")),
    responses((status = 200, description = "the verdicts"), (status = 404, body = ErrorBody)))]
pub async fn compliance(
    State(s): State<Arc<AppState>>,
    who: Authed,
    ClientAddr(addr): ClientAddr,
    Path(number): Path<String>,
) -> Result<Json<crate::casecheck::CaseCompliance>, ApiError> {
    let c = load_case(&s, &who, &addr, &number).await?;
    let st = s.clone();
    let out = tokio::task::spawn_blocking(move || {
        crate::casecheck::case_compliance(&st.shared, &st.catalogue, &c, crate::now_us())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(Json(out))
}

/// Issue a supervision letter on the case (Art. 38): supervisors only. The
/// server sets its time and author.
#[utoipa::path(post, path = "/api/cases/{number}/letters", tag = "cases",
    params(("number" = String, Path, description = "case number")),
    responses((status = 201, description = "issued"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn add_letter(
    State(s): State<Arc<AppState>>,
    who: Authed,
    ClientAddr(addr): ClientAddr,
    Path(number): Path<String>,
    body: Result<Json<Letter>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    who.require(&s, &[Role::Supervisor], "issue supervision letters")?;
    let Json(mut l) = body?;
    let mut c = load_case(&s, &who, &addr, &number).await?;
    l.at_us = crate::now_us();
    l.by.clone_from(&who.0.user);
    c.letters.push(l);
    store(&s, &c)?;
    tracing::info!(
        by = who.0.user,
        case = c.number,
        "supervision letter issued"
    );
    Ok(StatusCode::CREATED)
}
