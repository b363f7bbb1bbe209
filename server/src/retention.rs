//! Retention: which segments' media may leave the archive, and the job that
//! removes it. The rule (DESIGN.md, "Access"; issue 14):
//!
//! - media is kept at least `retention_days` (config; 183 by default) from
//!   the end of the latest activity it belongs to;
//! - media of an activity whose case reached its **decision** stage (or a
//!   later one) is kept for good: it is evidence in a decided case;
//! - media under a legal hold that is not released is kept;
//! - media that belongs to no activity is kept `retention_days` from its
//!   own end, taken as its entry's **receipt time** (server time: hash-first
//!   sync sends an entry as soon as the segment ends, and a device clock
//!   may be wrong);
//! - a segment expires when `now ≥ end + retention_days` exactly.
//!
//! "Belongs to an activity" is [`activities_of`], the one place that says
//! it: today the relation `casecheck.rs` uses (a device carried by one of the
//! activity's officers during the activity, and the segment overlapping the
//! activity in server time). Attachment by signed tags or by a custodian's
//! link is to be added there, and nowhere else.
//!
//! The job removes **media bytes** only: never a chain entry, a receipt or a
//! leaf. For each run of contiguous expiring segments of a device it first
//! appends an `expire` custody leaf (actor `retention`, the seq range, why)
//! through [`crate::audit`], then notes each segment expired in the index
//! (no longer held, never asked of the device again, `verify` and compliance
//! say "expired"), and only then deletes blobs that no kept entry refers to
//! (one blob may be the bytes of several segments). A crash in between
//! leaves a leaf without the deletion — the next run finishes it — never a
//! deletion without its leaf.
//!
//! [`decide`] is the rule as a pure function; [`run`] gathers the facts and
//! carries out the decisions. No HTTP endpoint deletes anything.

use std::collections::{BTreeMap, BTreeSet};

use fieldseal_proto::codec::Decode;
use fieldseal_proto::identity::{DeviceId, Hash32};
use fieldseal_proto::leaf::CustodyAction;
use fieldseal_proto::receipt::Receipt;
use serde::{Deserialize, Serialize};

use crate::archive::{self, ArchiveError};
use crate::audit::{self, Access};
use crate::cases::{local_date, Case, Custody, StageKind};
use crate::chainindex::{ChainIndex, IndexError};
use crate::db::DbError;
use crate::timeline::{device_timeline, Known};
use crate::Shared;

/// One day, µs.
pub const DAY_US: i64 = 86_400_000_000;

/// The actor of the job's leaves.
pub const ACTOR: &str = "retention";

/// A segment whose media expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Expired {
    /// When (server time, µs).
    pub at_us: i64,
    /// The index of the `expire` leaf that records it.
    pub leaf: u64,
}

/// A legal hold: the media of entries `first_seq..=last_seq` of a device is
/// kept, whatever retention says, until the hold is released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Hold {
    /// Its id.
    pub id: u64,
    /// The case it is for, if one.
    pub case: Option<String>,
    /// The device, 16 hex digits.
    pub device: String,
    /// First entry held.
    pub first_seq: u64,
    /// Last entry held (inclusive).
    pub last_seq: u64,
    /// Why.
    pub reason: String,
    /// Who placed it.
    pub by: String,
    /// When (µs).
    pub at_us: i64,
    /// Its `hold` leaf.
    pub leaf: u64,
    /// Its release, once released.
    pub released: Option<Release>,
}

/// The release of a hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Release {
    /// Who released it.
    pub by: String,
    /// When (µs).
    pub at_us: i64,
    /// Why.
    pub reason: String,
    /// Its `release` leaf.
    pub leaf: u64,
}

impl Hold {
    /// Does this hold keep the media of `(device, seq)` now?
    pub fn keeps(&self, device: DeviceId, seq: u64) -> bool {
        self.released.is_none()
            && self.device == device.to_string()
            && (self.first_seq..=self.last_seq).contains(&seq)
    }
}

/// An activity as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRef {
    /// Its case.
    pub case: String,
    /// Its id in the case.
    pub activity: String,
    /// Start (µs).
    pub start_us: i64,
    /// End (µs).
    pub end_us: i64,
    /// Its officers' certificate numbers.
    pub officers: Vec<String>,
    /// Its case reached the decision stage (or a later one).
    pub decided: bool,
    /// Segments signed with its case number and its activity type
    /// (filled by [`attach_evidence`]).
    pub tagged: std::collections::HashSet<(DeviceId, u64)>,
    /// Entry ranges a custodian linked to it, inclusive.
    pub linked: Vec<(DeviceId, u64, u64)>,
}

/// Fill in each activity's tagged segments and linked ranges from the
/// index (one prefix scan per case, one per activity).
///
/// # Errors
/// Index errors.
pub fn attach_evidence(
    db: &crate::db::Db,
    cases: &[Case],
    refs: &mut [ActivityRef],
) -> Result<(), DbError> {
    for c in cases {
        let tags = db.tagged(&c.number)?;
        for a in &c.activities {
            let Some(r) = refs
                .iter_mut()
                .find(|r| r.case == c.number && r.activity == a.id)
            else {
                continue;
            };
            r.tagged = tags
                .iter()
                .filter(|t| t.activity.as_deref() == Some(a.kind.as_str()))
                .map(|t| (t.device, t.seq))
                .collect();
            r.linked = db
                .links(&c.number, &a.id)?
                .iter()
                .map(|l| (l.device, l.first_seq, l.last_seq))
                .collect();
        }
    }
    Ok(())
}

/// Every activity of `cases`.
pub fn activity_refs(cases: &[Case]) -> Vec<ActivityRef> {
    let mut out = Vec::new();
    for c in cases {
        let decided = c.stages.iter().any(|s| s.kind >= StageKind::Decision);
        for a in &c.activities {
            out.push(ActivityRef {
                case: c.number.clone(),
                activity: a.id.clone(),
                start_us: a.start_us,
                end_us: a.end_us,
                officers: a.officers.clone(),
                decided,
                tagged: std::collections::HashSet::new(),
                linked: Vec::new(),
            });
        }
    }
    out
}

/// The activities the segment `(device, seq)`, recorded over `span` (server
/// time, µs), belongs to — the three ways `casecheck::case_compliance`
/// attaches recordings: a custodian linked it; or it overlaps the
/// activity's window and either an officer of the activity carried
/// `device` during it, or the segment is signed with the activity's case
/// number and type. **The one place** this relation is decided for
/// retention.
pub fn activities_of<'a>(
    activities: &'a [ActivityRef],
    custody: &[Custody],
    device: DeviceId,
    seq: u64,
    span: (i64, i64),
) -> Vec<&'a ActivityRef> {
    activities
        .iter()
        .filter(|a| {
            let linked = a
                .linked
                .iter()
                .any(|&(d, first, last)| d == device && (first..=last).contains(&seq));
            let overlaps = span.1 > a.start_us && span.0 < a.end_us;
            let carried = custody.iter().any(|c| {
                c.device == device
                    && a.officers.contains(&c.officer)
                    && c.from_us < a.end_us
                    && c.to_us.is_none_or(|t| t > a.start_us)
            });
            linked || (overlaps && (carried || a.tagged.contains(&(device, seq))))
        })
        .collect()
}

/// What retention knows about one segment whose media is held.
#[derive(Debug, Clone)]
pub struct SegmentFacts<'a> {
    /// Server time of its entry's receipt (µs): its end when it belongs to
    /// no activity.
    pub receipt_us: i64,
    /// The activities it belongs to ([`activities_of`]).
    pub activities: Vec<&'a ActivityRef>,
    /// A hold that keeps it, if one.
    pub hold: Option<u64>,
}

/// Why a segment's media is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// Hold `id` keeps it.
    Held(u64),
    /// Its activity's case reached the decision stage: kept for good.
    Decided(String),
    /// Kept until this time (µs).
    Until(i64),
}

/// What to do with a segment's media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Keep it.
    Keep(Keep),
    /// Remove it; the text says why (the leaf's detail).
    Expire(String),
}

/// The retention rule (module doc) for one segment at `now_us`.
pub fn decide(
    f: &SegmentFacts<'_>,
    retention_days: u64,
    utc_offset_secs: i64,
    now_us: i64,
) -> Decision {
    if let Some(id) = f.hold {
        return Decision::Keep(Keep::Held(id));
    }
    if let Some(a) = f.activities.iter().find(|a| a.decided) {
        return Decision::Keep(Keep::Decided(a.case.clone()));
    }
    let keep_us = i64::try_from(retention_days)
        .unwrap_or(i64::MAX)
        .saturating_mul(DAY_US);
    let (end, what) = match f.activities.iter().max_by_key(|a| a.end_us) {
        Some(a) => (a.end_us, format!("activity {}/{}", a.case, a.activity)),
        None => (f.receipt_us, "unlinked".to_owned()),
    };
    let until = end.saturating_add(keep_us);
    if now_us < until {
        return Decision::Keep(Keep::Until(until));
    }
    Decision::Expire(format!(
        "{what}, ended {}, {retention_days} days",
        local_date(end, utc_offset_secs)
    ))
}

/// A time given on the command line: µs since the epoch, or RFC 3339
/// (`2026-07-01T09:00:00Z`, `2026-07-01T17:00:00.5+08:00`). `None` if it
/// is neither.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(us) = s.parse::<i64>() {
        return Some(us);
    }
    let (date, rest) = s.split_once(['T', 't', ' '])?;
    let day = crate::cases::parse_day("time", date).ok()?;
    let (clock, offset_s) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let i = rest.rfind(['+', '-'])?;
        let (c, off) = rest.split_at(i);
        let (h, m) = off[1..].split_once(':')?;
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        (c, sign * (h * 3600 + m * 60))
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let p: Vec<i64> = hms
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = p.as_slice() else {
        return None;
    };
    if !(0..24).contains(h) || !(0..60).contains(m) || !(0..61).contains(sec) {
        return None;
    }
    let frac_us: i64 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
        digits.parse().ok()?
    };
    let secs = day * 86_400 + h * 3600 + m * 60 + sec - offset_s;
    secs.checked_mul(1_000_000)?.checked_add(frac_us)
}

/// Why the job could not run to the end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetentionError {
    /// The index failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A chain log could not be read.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The blob store failed.
    #[error("blob store: {0}")]
    Blobs(#[from] std::io::Error),
}

impl From<IndexError> for RetentionError {
    fn from(e: IndexError) -> Self {
        RetentionError::Db(e.into())
    }
}

/// A run of contiguous segments of one device expired (or to be) together:
/// one `expire` leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpiredRange {
    /// Device id.
    pub device: String,
    /// First entry of the range.
    pub first_seq: u64,
    /// Last entry (inclusive); events in between have no media.
    pub last_seq: u64,
    /// The segments in it.
    pub segments: Vec<u64>,
    /// Why (the leaf's detail).
    pub detail: String,
    /// The `expire` leaf; `None` in a dry run.
    pub leaf: Option<u64>,
}

/// What a run did, or would do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetentionOutcome {
    /// Nothing was changed.
    pub dry_run: bool,
    /// The time the rule was applied at (µs).
    pub now_us: i64,
    /// What expired.
    pub expired: Vec<ExpiredRange>,
    /// Blobs deleted (SHA-256, hex): no kept entry refers to them.
    pub blobs_deleted: Vec<String>,
    /// Segments kept by a legal hold.
    pub kept_held: u64,
    /// Segments kept for good: their case reached its decision.
    pub kept_decided: u64,
    /// Segments kept because their time has not come.
    pub kept_recent: u64,
}

impl RetentionOutcome {
    /// The text for humans.
    pub fn human(&self) -> String {
        let verb = if self.dry_run {
            "would expire"
        } else {
            "expired"
        };
        let mut out = String::new();
        for r in &self.expired {
            out.push_str(&format!(
                "{verb} media of device {} seq {}..={} ({} segment(s)): {}",
                r.device,
                r.first_seq,
                r.last_seq,
                r.segments.len(),
                r.detail
            ));
            match r.leaf {
                Some(l) => out.push_str(&format!(" [expire leaf {l}]\n")),
                None => out.push('\n'),
            }
        }
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for b in &self.blobs_deleted {
            out.push_str(&format!("{verb} blob {b}\n"));
        }
        out.push_str(&format!(
            "kept: {} under legal hold, {} of decided cases, {} not yet due\n",
            self.kept_held, self.kept_decided, self.kept_recent
        ));
        out
    }
}

/// Everything the rule needs that is not per device.
struct World {
    activities: Vec<ActivityRef>,
    custody: Vec<Custody>,
    holds: Vec<Hold>,
}

/// A segment's seq, its span in server time (µs, as compliance places it)
/// and its receipt's time.
type SegmentTime = (u64, (i64, i64), Option<i64>);

/// The segments of `device`, in seq order.
fn segment_times(shared: &Shared, device: DeviceId) -> Result<Vec<SegmentTime>, RetentionError> {
    let db = &shared.db;
    let chain = archive::accepted_chain(&shared.dir, db, device)?;
    let mut known = Vec::with_capacity(chain.len());
    for e in &chain {
        let receipt_us = db
            .entry(device, e.seq())?
            .and_then(|a| Receipt::from_bytes(&a.receipt).ok())
            .map(|r| r.server_time_us);
        known.push(Known {
            entry: e,
            receipt_us,
            verified: true,
            media_us: None,
            expired: false,
        });
    }
    let receipts: BTreeMap<u64, Option<i64>> = known
        .iter()
        .map(|k| (k.entry.seq(), k.receipt_us))
        .collect();
    Ok(device_timeline(device, &known, |_| None)
        .spans
        .iter()
        .map(|s| {
            (
                s.seq,
                (s.start_us, s.end_us),
                receipts.get(&s.seq).copied().flatten(),
            )
        })
        .collect())
}

/// Decide every held segment of `device`; push expiring runs to `out`.
fn plan_device(
    shared: &Shared,
    w: &World,
    device: DeviceId,
    now_us: i64,
    out: &mut RetentionOutcome,
) -> Result<(), RetentionError> {
    let db = &shared.db;
    let mut run: Option<ExpiredRange> = None;
    for (seq, span, receipt_us) in segment_times(shared, device)? {
        let decision = match receipt_us {
            Some(receipt_us) if db.has_media(device, seq)? => decide(
                &SegmentFacts {
                    receipt_us,
                    activities: activities_of(&w.activities, &w.custody, device, seq, span),
                    hold: w.holds.iter().find(|h| h.keeps(device, seq)).map(|h| h.id),
                },
                shared.cfg.retention_days,
                shared.cfg.utc_offset_secs,
                now_us,
            ),
            // Nothing held (never arrived, or expired already): nothing to do.
            _ => Decision::Keep(Keep::Until(i64::MAX)),
        };
        match decision {
            Decision::Expire(detail) => match &mut run {
                Some(r) if r.detail == detail => {
                    r.last_seq = seq;
                    r.segments.push(seq);
                }
                _ => {
                    out.expired.extend(run.take());
                    run = Some(ExpiredRange {
                        device: device.to_string(),
                        first_seq: seq,
                        last_seq: seq,
                        segments: vec![seq],
                        detail,
                        leaf: None,
                    });
                }
            },
            Decision::Keep(k) => {
                out.expired.extend(run.take());
                match k {
                    Keep::Held(_) => out.kept_held += 1,
                    Keep::Decided(_) => out.kept_decided += 1,
                    Keep::Until(t) if t < i64::MAX => out.kept_recent += 1,
                    Keep::Until(_) => {}
                }
            }
        }
    }
    out.expired.extend(run);
    Ok(())
}

/// Blobs held whose every referring entry has expired (or is in `also`):
/// no kept entry needs their bytes.
fn unreferenced_blobs(
    shared: &Shared,
    also: &BTreeSet<(DeviceId, u64)>,
) -> Result<Vec<Hash32>, RetentionError> {
    let db = &shared.db;
    let mut out = Vec::new();
    for (hash, refs) in db.media_refs()? {
        let mut all_expired = true;
        for &(d, seq) in &refs {
            if !also.contains(&(d, seq)) && db.expired(d, seq)?.is_none() {
                all_expired = false;
                break;
            }
        }
        if all_expired && shared.blobs.stat(&hash)?.is_some() {
            out.push(hash);
        }
    }
    Ok(out)
}

/// Apply the retention rule at `now_us` (module doc). With `dry_run`,
/// change nothing and say what would be done.
///
/// # Errors
/// The index, a chain log, the log or the blob store failed; what was done
/// before stays done (each expiry's leaf precedes it).
pub fn run(
    shared: &Shared,
    now_us: i64,
    dry_run: bool,
) -> Result<RetentionOutcome, RetentionError> {
    let db = &shared.db;
    let cases = db.cases()?;
    let mut activities = activity_refs(&cases);
    attach_evidence(db, &cases, &mut activities)?;
    let world = World {
        activities,
        custody: db.custody_all()?,
        holds: db.holds()?,
    };
    let mut out = RetentionOutcome {
        dry_run,
        now_us,
        ..RetentionOutcome::default()
    };
    for d in db.devices()? {
        if shared.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        plan_device(shared, &world, d.id, now_us, &mut out)?;
    }
    let mut planned = BTreeSet::new();
    for r in &mut out.expired {
        let device: DeviceId = r.device.parse().expect("written from a DeviceId");
        planned.extend(r.segments.iter().map(|&s| (device, s)));
        if dry_run {
            continue;
        }
        let access = Access::new(CustodyAction::Expire, ACTOR)
            .entries(device, r.first_seq, r.last_seq)
            .detail(r.detail.clone());
        // The leaf first: no media leaves without its record in the log.
        let leaf = audit::record_blocking(shared, &access)?;
        r.leaf = Some(leaf);
        for &seq in &r.segments {
            db.expire_media(
                device,
                seq,
                Expired {
                    at_us: now_us,
                    leaf,
                },
            )?;
        }
    }
    // In a dry run nothing expired: count the planned as if they had.
    let doomed = unreferenced_blobs(shared, &planned)?;
    for hash in doomed {
        if !dry_run {
            shared.blobs.delete(&hash)?;
        }
        out.blobs_deleted.push(hex::encode(hash));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
