//! Devices as a supervisor sees them: which exist, whether each is
//! connected now, when it last sent something, the recording it is
//! making — what the web page's device and live views show — and whether it
//! ever equivocated (signed two entries with one seq): how many times, the
//! first and latest, and the refused entries kept (`equivocation.rs`).
//!
//! Who may read: custodians, supervisors and admins every device; an
//! officer only the devices they have carried (custody), others are "not
//! found" to them. These are not evidence reads (no `view` leaf): they say
//! that entries exist, not what they hold; the entries and media are read
//! through `evidence.rs`.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use fieldseal_proto::codec::Decode;
use fieldseal_proto::entry::SignedEntry;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::receipt::Receipt;

use super::auth::{Authed, ClientAddr};
use super::error::{ErrorBody, Path};
use super::evidence::device_param;
use super::{ApiError, AppState};
use crate::auth::Role;
use crate::chainindex::ChainIndex;
use crate::db::DeviceRecord;
use crate::Shared;

/// Roles that see devices (an officer only those they carried).
const SEERS: &[Role] = &[
    Role::Custodian,
    Role::Supervisor,
    Role::Admin,
    Role::Officer,
];

/// How many of the newest entries are looked at for the recording in
/// progress: far more than the events a device signs between segments.
const TAIL: usize = 64;

/// A device and what the server knows of it now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceStatus {
    /// Its id.
    #[schema(value_type = String)]
    pub id: DeviceId,
    /// Its name.
    pub name: String,
    /// When it enrolled (µs).
    pub enrolled_us: i64,
    /// When it was revoked (µs).
    pub revoked_us: Option<i64>,
    /// How many entries the server accepted (the next seq).
    pub entries: u64,
    /// Server time of the receipt of its newest entry (µs): when it last
    /// sent something new.
    pub last_receipt_us: Option<i64>,
    /// A sync connection of it is open now.
    pub connected: bool,
    /// Its equivocations: each an alarm; all zero for an honest device.
    pub equivocations: crate::equivocation::Summary,
}

/// One device, with its newest entry and the recording it is making.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceDetail {
    /// What the list says of it.
    #[serde(flatten)]
    pub status: DeviceStatus,
    /// Its newest entry's kind (`segment` or the event's name).
    pub last_kind: Option<String>,
    /// The recording of its newest segment, if no later entry ended it
    /// (32 hex digits): what the live view plays.
    pub recording_now: Option<String>,
    /// The recording of its newest segment, ended or not.
    pub last_recording: Option<String>,
}

fn status(sh: &Shared, d: &DeviceRecord) -> Result<DeviceStatus, ApiError> {
    let (head, _) = sh.db.head_and_log_len(d.id).map_err(ApiError::internal)?;
    let last_receipt_us = match head.next_seq.checked_sub(1) {
        Some(seq) => match sh.db.entry(d.id, seq).map_err(ApiError::internal)? {
            Some(a) => Some(
                Receipt::from_bytes(&a.receipt)
                    .map_err(ApiError::internal)?
                    .server_time_us,
            ),
            None => None,
        },
        None => None,
    };
    Ok(DeviceStatus {
        id: d.id,
        name: d.name.clone(),
        enrolled_us: d.enrolled_us,
        revoked_us: d.revoked_us,
        entries: head.next_seq,
        last_receipt_us,
        connected: sh.is_live(d.id),
        equivocations: sh.equivocations.summary(d.id),
    })
}

/// Whether the caller may see device `d`.
fn may_see(sh: &Shared, who: &Authed, d: DeviceId) -> Result<bool, ApiError> {
    if who.0.role != Role::Officer {
        return Ok(true);
    }
    let cert = who.0.officer.clone().unwrap_or_default();
    Ok(sh
        .db
        .custody_of(d)
        .map_err(ApiError::internal)?
        .iter()
        .any(|c| c.officer == cert))
}

async fn blocking<T: Send + 'static>(
    s: &Arc<AppState>,
    f: impl FnOnce(&Shared) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let st = s.clone();
    tokio::task::spawn_blocking(move || f(&st.shared))
        .await
        .map_err(ApiError::internal)?
}

/// Every device the caller may see, enrolled ones only.
#[utoipa::path(get, path = "/api/devices", tag = "evidence",
    responses((status = 200, body = [DeviceStatus]), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list(
    State(s): State<Arc<AppState>>,
    who: Authed,
) -> Result<Json<Vec<DeviceStatus>>, ApiError> {
    who.require(&s, SEERS, "see devices")?;
    let out = blocking(&s, move |sh| {
        let mut out = Vec::new();
        for d in sh.db.devices().map_err(ApiError::internal)? {
            if may_see(sh, &who, d.id)? {
                out.push(status(sh, &d)?);
            }
        }
        Ok(out)
    })
    .await?;
    Ok(Json(out))
}

/// One device: connected or not, when it last sent, and the recording it
/// is making now.
#[utoipa::path(get, path = "/api/devices/{device}", tag = "evidence",
    params(("device" = String, Path, description = "device id, 16 hex digits")),
    responses((status = 200, body = DeviceDetail), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<Arc<AppState>>,
    who: Authed,
    ClientAddr(addr): ClientAddr,
    Path(device): Path<String>,
) -> Result<Json<DeviceDetail>, ApiError> {
    who.require(&s, SEERS, "see devices")?;
    let d = device_param(&device)?;
    let caller = who.clone();
    let out = blocking(&s, move |sh| {
        let rec = sh.db.device(d).map_err(ApiError::internal)?;
        let rec = match rec {
            Some(r) if may_see(sh, &caller, d)? => r,
            // Hidden from this officer: answered as missing, logged below.
            Some(_) => return Ok(None),
            // The same answer as a hidden one (evidence::deny).
            None => return Err(ApiError::not_found("no such evidence")),
        };
        let status = status(sh, &rec)?;
        let from = status.entries.saturating_sub(TAIL as u64);
        let tail = crate::archive::accepted_range(&sh.dir, &sh.db, d, from, TAIL)
            .map_err(ApiError::internal)?;
        Ok(Some(detail(status, &tail)))
    })
    .await?;
    match out {
        Some(detail) => Ok(Json(detail)),
        None => Err(super::evidence::deny(&s, &who, &addr, d, (0, 0), "device").await),
    }
}

/// The detail of a device from its newest entries.
fn detail(status: DeviceStatus, tail: &[(SignedEntry, Vec<u8>)]) -> DeviceDetail {
    let last_kind = tail.last().map(|(e, _)| {
        e.entry
            .event()
            .map_or_else(|| "segment".to_owned(), |ev| ev.name().to_owned())
    });
    let last_seg = tail.iter().rposition(|(e, _)| e.entry.segment().is_some());
    let (mut now, mut last) = (None, None);
    if let Some(i) = last_seg {
        let rec = tail[i].0.entry.segment().map(|s| s.recording);
        if let Some(r) = rec {
            let ended = tail[i + 1..]
                .iter()
                .any(|(e, _)| super::playlist::ends(&e.entry, &r));
            last = Some(hex::encode(r));
            if !ended {
                now.clone_from(&last);
            }
        }
    }
    DeviceDetail {
        status,
        last_kind,
        recording_now: now,
        last_recording: last,
    }
}

/// A refused conflicting entry as kept in `equivocations.log`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Equivocation {
    /// Its seq (absent if the kept bytes do not decode).
    pub seq: Option<u64>,
    /// Its entry hash, hex.
    pub hash: Option<String>,
    /// The hash of the entry the server accepted with that seq, hex.
    pub accepted_hash: Option<String>,
    /// The device's wall clock it was signed with (µs).
    pub wall_us: Option<i64>,
    /// `segment`, or the event's name.
    pub kind: Option<String>,
    /// The signed entry, exactly as the device sent it, hex: it verifies
    /// under the device's key.
    pub signed: String,
}

/// A device's equivocations: the count of every one, and the first ones in
/// full.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Equivocations {
    /// How many, when, and how many are kept.
    #[serde(flatten)]
    pub summary: crate::equivocation::Summary,
    /// The kept ones, in the order they were refused.
    pub kept_entries: Vec<Equivocation>,
}

fn equivocation(sh: &Shared, d: DeviceId, signed: &[u8]) -> Result<Equivocation, ApiError> {
    let Ok(e) = SignedEntry::from_bytes(signed) else {
        return Ok(Equivocation {
            seq: None,
            hash: None,
            accepted_hash: None,
            wall_us: None,
            kind: None,
            signed: hex::encode(signed),
        });
    };
    let accepted = sh.db.entry(d, e.seq()).map_err(ApiError::internal)?;
    Ok(Equivocation {
        seq: Some(e.seq()),
        hash: Some(hex::encode(e.hash())),
        accepted_hash: accepted.map(|a| hex::encode(a.entry_hash)),
        wall_us: Some(e.entry.wall_us),
        kind: Some(
            e.entry
                .event()
                .map_or_else(|| "segment".to_owned(), |ev| ev.name().to_owned()),
        ),
        signed: hex::encode(signed),
    })
}

/// A device's equivocations: how many it signed, the first and the
/// latest, and the refused entries kept in full (the first
/// `equivocations_kept` of config.toml). Readable by whoever may see the
/// device.
#[utoipa::path(get, path = "/api/devices/{device}/equivocations", tag = "evidence",
    params(("device" = String, Path, description = "device id, 16 hex digits")),
    responses((status = 200, body = Equivocations), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn equivocations(
    State(s): State<Arc<AppState>>,
    who: Authed,
    ClientAddr(addr): ClientAddr,
    Path(device): Path<String>,
) -> Result<Json<Equivocations>, ApiError> {
    who.require(&s, SEERS, "see devices")?;
    let d = device_param(&device)?;
    let caller = who.clone();
    let out = blocking(&s, move |sh| {
        match sh.db.device(d).map_err(ApiError::internal)? {
            Some(_) if may_see(sh, &caller, d)? => {}
            Some(_) => return Ok(None),
            None => return Err(ApiError::not_found("no such evidence")),
        }
        let kept = crate::equivocation::kept_entries(&sh.dir, d).map_err(ApiError::internal)?;
        let kept_entries = kept
            .iter()
            .map(|b| equivocation(sh, d, b))
            .collect::<Result<_, _>>()?;
        Ok(Some(Equivocations {
            summary: sh.equivocations.summary(d),
            kept_entries,
        }))
    })
    .await?;
    match out {
        Some(e) => Ok(Json(e)),
        None => Err(super::evidence::deny(&s, &who, &addr, d, (0, 0), "device").await),
    }
}
