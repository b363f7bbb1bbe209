//! `GET /api/audit`: the access log (the custody leaves of the
//! transparency log, never the entry leaves), each leaf with its data, its
//! hash and an inclusion proof against the latest signed checkpoint, which
//! comes once with the answer. A checkpoint is signed first if the log grew,
//! so every leaf returned is proved; leaves appended after it come with the
//! next page. The proofs are those of `/api/log/proof/inclusion` (RFC 9162
//! audit paths, hex, the leaf's sibling first): anyone holding the server's
//! key checks them with `fieldseal-proto` alone.
//!
//! Custodians (who keep custody), supervisors and admins read it. Reading it
//! is not itself logged: every read would add a leaf to what it reads.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use fieldseal_proto::codec::Decode;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::leaf::{CustodyAction, Leaf};
use serde::{Deserialize, Serialize};

use crate::auth::Role;
use crate::chainindex::ChainIndex;
use crate::tlog;
use crate::Shared;

use super::auth::Authed;
use super::error::ErrorBody;
use super::{ApiError, AppState};

/// The most leaves one answer holds.
pub const MAX_LIMIT: u32 = 1000;
/// Leaves returned when no limit is given.
pub const DEFAULT_LIMIT: u32 = 100;
/// The most custody leaves one request looks at, matching or not: a filter
/// that matches nothing must not read the whole log in one request. The
/// answer's `next_from` says where to go on.
const MAX_SCAN: usize = 100_000;

/// `?from=LEAF&limit=N&actor=&action=&device=&case=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// The first leaf index to look at (default 0).
    from: Option<u64>,
    /// At most this many leaves (1 to 1000, default 100).
    limit: Option<u32>,
    /// Only leaves by this actor.
    actor: Option<String>,
    /// Only this action (`login`, `login-failed`, `denied`, `account`, `view`, …).
    action: Option<String>,
    /// Only leaves about this device (16 hex digits).
    device: Option<String>,
    /// Only leaves about this case.
    case: Option<String>,
}

/// The filters, checked.
struct Filter {
    from: u64,
    limit: usize,
    actor: Option<String>,
    action: Option<CustodyAction>,
    device: Option<DeviceId>,
    case: Option<String>,
}

impl Filter {
    fn parse(q: AuditQuery) -> Result<Filter, ApiError> {
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid("limit", "1 to 1000"));
        }
        let action = match q.action.as_deref() {
            None => None,
            Some(a) => Some(crate::audit::parse_action(a).ok_or_else(|| {
                ApiError::invalid("action", format!("not a custody action: {a:?}"))
            })?),
        };
        let device = match q.device.as_deref() {
            None => None,
            Some(d) => Some(
                d.parse()
                    .map_err(|_| ApiError::invalid("device", "a device id is 16 hex digits"))?,
            ),
        };
        Ok(Filter {
            from: q.from.unwrap_or(0),
            limit: limit as usize,
            actor: q.actor,
            action,
            device,
            case: q.case,
        })
    }

    fn matches(&self, l: &AuditLeaf, device: DeviceId) -> bool {
        self.actor.as_ref().is_none_or(|a| *a == l.actor)
            && self
                .action
                .is_none_or(|a| crate::audit::action_name(a) == l.action)
            && self.device.is_none_or(|d| d == device)
            && self
                .case
                .as_ref()
                .is_none_or(|c| l.case.as_ref() == Some(c))
    }
}

/// One access-log leaf, decoded, with its proof.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditLeaf {
    /// Leaf index in the log.
    pub index: u64,
    /// Server time, µs since the epoch.
    pub time_us: i64,
    /// The action (kebab-case, FORMAT.md §6.8).
    pub action: String,
    /// Who.
    pub actor: String,
    /// Whose recordings (absent for events about no device).
    pub device: Option<String>,
    /// First seq concerned.
    pub first_seq: u64,
    /// Last seq concerned.
    pub last_seq: u64,
    /// The case.
    pub case: Option<String>,
    /// The rest: address, path, outcome, what changed.
    pub detail: Option<String>,
    /// The leaf data, hex (§6.8).
    pub leaf: String,
    /// Its leaf hash, hex (§6.1).
    pub leaf_hash: String,
    /// Its audit path to the checkpoint's root, hex, the sibling first.
    pub proof: Vec<String>,
}

/// A page of the access log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// The signed checkpoint every proof leads to (C2SP signed note).
    pub checkpoint: String,
    /// Its tree size.
    pub tree_size: u64,
    /// The leaves, oldest first.
    pub leaves: Vec<AuditLeaf>,
    /// Where the next page starts (`from=`); equal to `tree_size` when
    /// everything up to the checkpoint has been read.
    pub next_from: u64,
}

/// The access log with inclusion proofs against the latest checkpoint.
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn audit(
    State(s): State<Arc<AppState>>,
    who: Authed,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    who.require(
        &s,
        &[Role::Custodian, Role::Supervisor, Role::Admin],
        "read the access log",
    )?;
    let Query(q) = q?;
    let f = Filter::parse(q)?;
    let sh = s.shared.clone();
    let page = tokio::task::spawn_blocking(move || page(&sh, &f))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(page))
}

/// Sign a checkpoint if the log grew, then read one page against it.
fn page(sh: &Shared, f: &Filter) -> Result<AuditPage, ApiError> {
    let err = |e: tlog::TlogError| match e {
        tlog::TlogError::NoCheckpoint => ApiError::not_found("the log is empty"),
        e => ApiError::internal(e),
    };
    tlog::checkpoint_if_grown(&sh.dir, &sh.db, &sh.cfg, &sh.receipt_key, crate::now_us())
        .map_err(err)?;
    let (cp, note) = tlog::latest(&sh.dir, &sh.cfg, &sh.receipt_key).map_err(err)?;
    let mut leaves = Vec::new();
    let mut next_from = cp.size.max(f.from);
    for (scanned, item) in sh.db.custody_leaves(f.from).enumerate() {
        let (index, data) = item.map_err(ApiError::internal)?;
        if index >= cp.size {
            break;
        }
        if scanned >= MAX_SCAN {
            next_from = index;
            break;
        }
        let (l, device) = decode(index, &data)?;
        if f.matches(&l, device) {
            let proof = sh
                .db
                .log_inclusion(index, cp.size)
                .map_err(ApiError::internal)?;
            leaves.push(AuditLeaf {
                proof: proof.iter().map(hex::encode).collect(),
                ..l
            });
            if leaves.len() == f.limit {
                next_from = index + 1;
                break;
            }
        }
    }
    Ok(AuditPage {
        checkpoint: note,
        tree_size: cp.size,
        leaves,
        next_from,
    })
}

/// A stored custody leaf, decoded (without its proof yet), and its device.
fn decode(index: u64, data: &[u8]) -> Result<(AuditLeaf, DeviceId), ApiError> {
    let Ok(Leaf::Custody {
        time_us,
        action,
        actor,
        device,
        first_seq,
        last_seq,
        case,
        detail,
    }) = Leaf::from_bytes(data)
    else {
        return Err(ApiError::internal(format!(
            "leaf {index} is not a custody leaf"
        )));
    };
    let l = AuditLeaf {
        index,
        time_us,
        action: crate::audit::action_name(action),
        actor,
        device: (device != DeviceId::NONE).then(|| device.to_string()),
        first_seq,
        last_seq,
        case,
        detail,
        leaf: hex::encode(data),
        leaf_hash: hex::encode(fieldseal_proto::merkle::leaf_hash(data)),
        proof: Vec::new(),
    };
    Ok((l, device))
}
