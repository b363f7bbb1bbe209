//! A case's Article 27 compliance from what the archive holds: for each
//! activity, the devices its officers carried during it (device custody),
//! their chains as timelines in server time (`timeline.rs`), the officers'
//! certificates, and `compliance::check_activity` on the lot. The I/O side
//! of `compliance.rs`: it reads, and decides nothing itself.

use serde::Serialize;

use fieldseal_proto::codec::Decode;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::receipt::Receipt;

use crate::archive::{self, ArchiveError};
use crate::cases::{officer_at, Case, CaseError, StageKind};
use crate::catalogue::{Catalogue, Requirement};
use crate::chainindex::{ChainIndex, IndexError};
use crate::compliance::{self, ActivityFacts, Verdict};
use crate::db::DbError;
use crate::timeline::{device_timeline, Known};
use crate::Shared;

/// Why compliance could not be worked out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaseCheckError {
    /// The records failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The chain index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A chain log could not be read.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A stored record does not parse (an officer's dates).
    #[error(transparent)]
    Record(#[from] CaseError),
}

/// One activity's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct ActivityVerdict {
    /// The activity's id.
    pub id: String,
    /// Its type.
    pub kind: String,
    /// Start, µs.
    pub start_us: i64,
    /// End, µs.
    pub end_us: i64,
    /// The devices whose recordings were considered.
    pub devices: Vec<DeviceId>,
    /// The verdict.
    pub verdict: Verdict,
}

/// A case's compliance.
#[derive(Debug, Clone, Serialize)]
pub struct CaseCompliance {
    /// The case number.
    pub case: String,
    /// Every activity compliant and no stage missing.
    pub compliant: bool,
    /// Stages before the latest one recorded that have no record (Art. 27 ¶1).
    pub missing_stages: Vec<StageKind>,
    /// Per activity.
    pub activities: Vec<ActivityVerdict>,
}

/// Work out a case's compliance as of `now_us`.
///
/// # Errors
/// The index or a chain log could not be read.
pub fn case_compliance(
    shared: &Shared,
    catalogue: &Catalogue,
    case: &Case,
    now_us: i64,
) -> Result<CaseCompliance, CaseCheckError> {
    let db = &shared.db;
    let custody = db.custody_all()?;
    let mut activities = Vec::new();
    for a in &case.activities {
        // An activity whose type left the catalogue is judged as text: the
        // catalogue in force says what is required.
        let requirement = catalogue
            .get(&a.kind)
            .map_or(Requirement::Text, |t| t.requirement);
        let mut officers = Vec::new();
        for cert in &a.officers {
            if let Some(o) = db.officer(cert)? {
                officers.push(o.for_compliance()?);
            }
        }
        // Devices that an officer of the activity carried during it.
        let mut devices: Vec<DeviceId> = custody
            .iter()
            .filter(|c| a.officers.contains(&c.officer))
            .filter(|c| c.from_us < a.end_us && c.to_us.is_none_or(|t| t > a.start_us))
            .map(|c| c.device)
            .collect();
        devices.sort_unstable();
        devices.dedup();
        let (mut spans, mut reasons, mut identity) = (Vec::new(), Vec::new(), Vec::new());
        for &d in &devices {
            let chain = archive::accepted_chain(&shared.dir, db, d)?;
            let mut known = Vec::with_capacity(chain.len());
            for e in &chain {
                let seq = e.seq();
                let receipt_us = db
                    .entry(d, seq)?
                    .and_then(|x| Receipt::from_bytes(&x.receipt).ok())
                    .map(|r| r.server_time_us);
                // Expired media was held once: judged late or not by when
                // it arrived, reported as expired rather than missing.
                let expired = e.entry.segment().is_some() && db.expired(d, seq)?.is_some();
                let media_us = match e.entry.segment() {
                    Some(_) if expired || db.has_media(d, seq)? => {
                        // Held, time unknown (before upload times were
                        // recorded, or found again by reconciliation): not
                        // judged late.
                        Some(db.media_time(d, seq)?.unwrap_or(i64::MIN))
                    }
                    _ => None,
                };
                known.push(Known {
                    entry: e,
                    receipt_us,
                    verified: true,
                    media_us,
                    expired,
                });
            }
            let custody_of: Vec<_> = custody.iter().filter(|c| c.device == d).cloned().collect();
            let t = device_timeline(d, &known, |t| {
                officer_at(&custody_of, d, t).map(str::to_owned)
            });
            spans.extend(t.spans);
            reasons.extend(t.reasons);
            identity.extend(t.identity);
        }
        let verdict = compliance::check_activity(&ActivityFacts {
            requirement,
            start_us: a.start_us,
            end_us: a.end_us,
            officers: &officers,
            spans: &spans,
            reasons: &reasons,
            identity: &identity,
            upload_deadline_us: i64::try_from(shared.cfg.upload_deadline_secs)
                .unwrap_or(i64::MAX / 1_000_000)
                .saturating_mul(1_000_000),
            utc_offset_secs: shared.cfg.utc_offset_secs,
            now_us,
        });
        activities.push(ActivityVerdict {
            id: a.id.clone(),
            kind: a.kind.clone(),
            start_us: a.start_us,
            end_us: a.end_us,
            devices,
            verdict,
        });
    }
    let missing_stages = case.missing_stages();
    Ok(CaseCompliance {
        case: case.number.clone(),
        compliant: missing_stages.is_empty() && activities.iter().all(|a| a.verdict.compliant),
        missing_stages,
        activities,
    })
}
