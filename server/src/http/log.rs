//! The transparency log over HTTP, for devices, outside witnesses and
//! auditors (`docs/FORMAT.md` §6): the latest signed checkpoint and
//! consistency proofs without login (they name no device), inclusion proofs
//! of an entry's leaf for custodians, supervisors and admins.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use crate::auth::Role;
use crate::tlog::{self, ConsistencyOut, InclusionOut, TlogError};

use super::auth::Authed;
use super::error::ErrorBody;
use super::{ApiError, AppState};

fn tlog_error(e: TlogError) -> ApiError {
    match e {
        TlogError::NoCheckpoint => ApiError::not_found("no checkpoint signed yet"),
        e @ TlogError::NoEntry { .. } => ApiError::not_found(e.to_string()),
        e @ TlogError::NotCovered { .. } => ApiError::not_found(e.to_string()),
        e @ TlogError::Beyond { .. } => ApiError::invalid("from", e.to_string()),
        other => ApiError::internal(other),
    }
}

/// The latest signed checkpoint (C2SP signed note), as text.
#[utoipa::path(get, path = "/api/log/checkpoint", tag = "public",
    responses((status = 200, description = "the signed note", content_type = "text/plain"),
        (status = 404, body = ErrorBody)))]
pub async fn checkpoint(State(s): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let sh = s.shared.clone();
    let (_, note) =
        tokio::task::spawn_blocking(move || tlog::latest(&sh.dir, &sh.cfg, &sh.receipt_key))
            .await
            .map_err(ApiError::internal)?
            .map_err(tlog_error)?;
    // The note as stored: it ends with its own newline (C2SP signed-note).
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note))
}

/// The log's verifier key, as text: the public key that signs checkpoints
/// under the log's origin (`docs/FORMAT.md` §6.6).
#[utoipa::path(get, path = "/api/log/key", tag = "public",
    responses((status = 200, description = "<origin>+<key id>+<base64 key>", content_type = "text/plain"),
        (status = 500, body = ErrorBody)))]
pub async fn key(State(s): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let sh = &s.shared;
    let vkey =
        tlog::verifier_key(&sh.cfg, &sh.receipt_key.verifying_key()).map_err(ApiError::internal)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{vkey}\n"),
    ))
}

/// `?from=SIZE`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct From {
    /// The earlier tree size.
    from: u64,
}

/// A consistency proof from an earlier size to the latest checkpoint.
#[utoipa::path(get, path = "/api/log/proof/consistency", tag = "public", params(From),
    responses((status = 200, description = "old and new roots, the proof, the checkpoint"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn consistency(
    State(s): State<Arc<AppState>>,
    q: Result<Query<From>, QueryRejection>,
) -> Result<Json<ConsistencyOut>, ApiError> {
    let Query(q) = q?;
    let sh = s.shared.clone();
    let out = tokio::task::spawn_blocking(move || {
        tlog::consistency(&sh.dir, &sh.db, &sh.cfg, &sh.receipt_key, q.from)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(tlog_error)?;
    Ok(Json(out))
}

/// `?device=ID&seq=N`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Device id, 16 hex digits.
    device: String,
    /// The entry's seq.
    seq: u64,
}

/// An inclusion proof of an entry's leaf in the latest checkpoint.
#[utoipa::path(get, path = "/api/log/proof/inclusion", tag = "cases", params(Entry),
    responses((status = 200, description = "receipt, leaf, proof, checkpoint"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn inclusion(
    State(s): State<Arc<AppState>>,
    who: Authed,
    q: Result<Query<Entry>, QueryRejection>,
) -> Result<Json<InclusionOut>, ApiError> {
    who.require(
        &s,
        &[Role::Custodian, Role::Supervisor, Role::Admin],
        "read proofs of entries",
    )?;
    let Query(q) = q?;
    let device = q
        .device
        .parse()
        .map_err(|_| ApiError::invalid("device", "a device id is 16 hex digits"))?;
    let sh = s.shared.clone();
    let out = tokio::task::spawn_blocking(move || {
        tlog::prove(&sh.dir, &sh.db, &sh.cfg, &sh.receipt_key, device, q.seq)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(tlog_error)?;
    Ok(Json(out))
}
