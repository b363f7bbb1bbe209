//! The annual report (Art. 35) over HTTP, as JSON or CSV, for supervisors
//! (reports are theirs) and custodians. Admins manage accounts, not
//! enforcement, and officers see their own cases only: both are refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::Role;
use crate::report::{self, AnnualReport};

use super::auth::Authed;
use super::error::ErrorBody;
use super::{ApiError, AppState};

/// The years a report may be asked for: the regulation is from 2025, and a
/// bound keeps nonsense out of file names and loops.
const YEARS: std::ops::RangeInclusive<i64> = 2000..=2100;

/// The year and format asked for.
fn params(q: &BTreeMap<String, String>) -> Result<(i64, bool), ApiError> {
    if let Some(k) = q.keys().find(|k| *k != "year" && *k != "format") {
        return Err(ApiError::invalid(k.clone(), "unknown parameter"));
    }
    let year = q
        .get("year")
        .and_then(|y| y.parse::<i64>().ok())
        .filter(|y| YEARS.contains(y))
        .ok_or_else(|| ApiError::invalid("year", "a year from 2000 to 2100"))?;
    let csv = match q.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::invalid("format", "json or csv")),
    };
    Ok((year, csv))
}

/// The annual enforcement statistics of a year (Art. 35): activities by
/// type and body, recorded coverage, gaps by reason, late uploads, findings
/// by kind, supervision letters issued.
#[utoipa::path(get, path = "/api/reports/annual", tag = "reports",
    params(("year" = i64, Query, description = "the year, 2000 to 2100 (local time)"),
        ("format" = Option<String>, Query, description = "json (default) or csv")),
    responses((status = 200, description = "the report", body = AnnualReport),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn annual(
    State(s): State<Arc<AppState>>,
    who: Authed,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    who.require(
        &s,
        &[Role::Supervisor, Role::Custodian],
        "read annual reports",
    )?;
    let Query(q) = q?;
    let (year, csv) = params(&q)?;
    let st = s.clone();
    let r = tokio::task::spawn_blocking(move || {
        report::build(&st.shared, &st.catalogue, year, crate::now_us())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    if !csv {
        return Ok(Json(r).into_response());
    }
    let disposition = format!("attachment; filename=\"fieldseal-annual-{year}.csv\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        r.csv(),
    )
        .into_response())
}
