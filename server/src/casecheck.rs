//! A case's Article 27 compliance from what the archive holds: for each
//! activity, the recordings that attach to it, their chains as timelines in
//! server time (`timeline.rs`), the officers' certificates, and
//! `compliance::check_activity` on the lot. The I/O side of
//! `compliance.rs`: it reads, and decides nothing itself.
//!
//! Recordings attach to an activity three ways, each reported with the
//! verdict ([`Attached`]):
//! - `custody`: a device an officer of the activity carried during it
//!   (`/api/custody`): all its segments count;
//! - `tags`: segments the agent signed with the case number and an activity
//!   type equal to the activity's, overlapping its window (`db/tags.rs`);
//!   only those segments count, not others of the same device;
//! - `link`: a range of entries a custodian linked to the activity
//!   (`db/links.rs`); the segments in it count.
//!
//! The signed reasons and identity marks of every attached device count.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use fieldseal_proto::entry::SignedEntry;
use fieldseal_proto::identity::DeviceId;

use crate::archive::{self, ArchiveError};
use crate::cases::{officer_at, Activity, Case, CaseError, Custody, StageKind};
use crate::catalogue::{Catalogue, Requirement};
use crate::chainindex::IndexError;
use crate::compliance::{self, ActivityFacts, Span, Verdict};
use crate::db::DbError;
use crate::timeline::{device_timeline, Known, Timeline};
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

/// Recordings of one device that attached to an activity, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attached {
    /// The device.
    pub device: DeviceId,
    /// `custody`, `tags` or `link`.
    pub by: &'static str,
    /// First seq attached (a segment's; for a link, the linked range's).
    pub first_seq: u64,
    /// Last seq attached (inclusive).
    pub last_seq: u64,
    /// Segments attached this way (for custody and tags: those overlapping
    /// the activity).
    pub segments: u64,
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
    /// Which recordings attached, and why.
    pub recordings: Vec<Attached>,
    /// The media the verdict looked at that overlaps the activity, in
    /// server time, as unbroken runs: what the web page's timeline draws.
    pub covered: Vec<CoveredRun>,
    /// The verdict.
    pub verdict: Verdict,
}

/// Consecutive segments of one recording with no frame between them, all
/// verified or all not, in server time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoveredRun {
    /// The device.
    pub device: DeviceId,
    /// The recording, 32 hex digits.
    pub recording: String,
    /// Its first segment's seq.
    pub first_seq: u64,
    /// Its last segment's seq.
    pub last_seq: u64,
    /// First frame, µs.
    pub start_us: i64,
    /// End of the last frame, µs.
    pub end_us: i64,
    /// Every segment of it verified (bytes held, hashing to the signed hash).
    pub verified: bool,
}

/// The spans that overlap `[start_us, end_us)`, joined into runs where a
/// segment continues the previous one of the same device with the same
/// verification state.
pub fn covered_runs(spans: &[Span], start_us: i64, end_us: i64) -> Vec<CoveredRun> {
    let mut out: Vec<CoveredRun> = Vec::new();
    for s in spans
        .iter()
        .filter(|s| s.end_us > start_us && s.start_us < end_us)
    {
        if let Some(r) = out.last_mut() {
            if r.device == s.device && s.continues == Some(r.last_seq) && r.verified == s.verified {
                r.last_seq = s.seq;
                r.end_us = s.end_us;
                continue;
            }
        }
        out.push(CoveredRun {
            device: s.device,
            recording: hex::encode(s.recording),
            first_seq: s.seq,
            last_seq: s.seq,
            start_us: s.start_us,
            end_us: s.end_us,
            verified: s.verified,
        });
    }
    out
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

/// What the archive holds for a case, read once for all its activities.
struct CaseFacts<'a> {
    shared: &'a Shared,
    custody: Vec<Custody>,
    /// Tagged entries of the case: (device, seq) → activity type.
    tags: HashMap<(DeviceId, u64), Option<String>>,
    /// Device timelines, made once per device.
    timelines: HashMap<DeviceId, Timeline>,
}

/// Why one device is looked at for an activity.
#[derive(Debug, Default)]
struct Candidate {
    custody: bool,
    tagged: HashSet<u64>,
    linked: Vec<(u64, u64)>,
}

impl Candidate {
    fn counts(&self, seq: u64) -> bool {
        self.custody
            || self.tagged.contains(&seq)
            || self.linked.iter().any(|&(a, b)| a <= seq && seq <= b)
    }
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
    let mut facts = CaseFacts {
        shared,
        custody: db.custody_all()?,
        tags: db
            .tagged(&case.number)?
            .into_iter()
            .map(|t| ((t.device, t.seq), t.activity))
            .collect(),
        timelines: HashMap::new(),
    };
    let mut activities = Vec::new();
    for a in &case.activities {
        activities.push(activity_verdict(
            &mut facts,
            catalogue,
            &case.number,
            a,
            now_us,
        )?);
    }
    let missing_stages = case.missing_stages();
    Ok(CaseCompliance {
        case: case.number.clone(),
        compliant: missing_stages.is_empty() && activities.iter().all(|a| a.verdict.compliant),
        missing_stages,
        activities,
    })
}

/// The devices that may attach to `a`, and why.
fn candidates(
    facts: &CaseFacts<'_>,
    case: &str,
    a: &Activity,
) -> Result<BTreeMap<DeviceId, Candidate>, CaseCheckError> {
    let mut out: BTreeMap<DeviceId, Candidate> = BTreeMap::new();
    // Devices that an officer of the activity carried during it.
    for c in &facts.custody {
        if a.officers.contains(&c.officer)
            && c.from_us < a.end_us
            && c.to_us.is_none_or(|t| t > a.start_us)
        {
            out.entry(c.device).or_default().custody = true;
        }
    }
    for ((device, seq), kind) in &facts.tags {
        if kind.as_deref() == Some(a.kind.as_str()) {
            out.entry(*device).or_default().tagged.insert(*seq);
        }
    }
    for l in facts.shared.db.links(case, &a.id)? {
        out.entry(l.device)
            .or_default()
            .linked
            .push((l.first_seq, l.last_seq));
    }
    Ok(out)
}

/// One activity's verdict from the recordings that attach to it.
fn activity_verdict(
    facts: &mut CaseFacts<'_>,
    catalogue: &Catalogue,
    case: &str,
    a: &Activity,
    now_us: i64,
) -> Result<ActivityVerdict, CaseCheckError> {
    let shared = facts.shared;
    // An activity whose type left the catalogue is judged as text: the
    // catalogue in force says what is required.
    let requirement = catalogue
        .get(&a.kind)
        .map_or(Requirement::Text, |t| t.requirement);
    let mut officers = Vec::new();
    for cert in &a.officers {
        if let Some(o) = shared.db.officer(cert)? {
            officers.push(o.for_compliance()?);
        }
    }
    let (mut spans, mut reasons, mut identity) = (Vec::new(), Vec::new(), Vec::new());
    let (mut devices, mut recordings) = (Vec::new(), Vec::new());
    for (d, cand) in candidates(facts, case, a)? {
        let t = facts.timeline(d)?;
        let attached = attachments(d, &cand, &t.spans, a);
        if attached.is_empty() && !cand.custody {
            continue;
        }
        devices.push(d);
        recordings.extend(attached);
        spans.extend(t.spans.iter().filter(|s| cand.counts(s.seq)).cloned());
        reasons.extend(t.reasons.iter().cloned());
        identity.extend(t.identity.iter().copied());
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
    Ok(ActivityVerdict {
        id: a.id.clone(),
        kind: a.kind.clone(),
        start_us: a.start_us,
        end_us: a.end_us,
        devices,
        recordings,
        covered: covered_runs(&spans, a.start_us, a.end_us),
        verdict,
    })
}

/// What of device `d` attaches to `a`, and why: custody and tags by the
/// segments that overlap the activity, links as linked.
fn attachments(d: DeviceId, cand: &Candidate, spans: &[Span], a: &Activity) -> Vec<Attached> {
    let overlaps = |s: &&Span| s.end_us > a.start_us && s.start_us < a.end_us;
    let summary = |by: &'static str, seqs: &mut dyn Iterator<Item = u64>| {
        let mut out: Option<Attached> = None;
        for seq in seqs {
            let x = out.get_or_insert(Attached {
                device: d,
                by,
                first_seq: seq,
                last_seq: seq,
                segments: 0,
            });
            x.first_seq = x.first_seq.min(seq);
            x.last_seq = x.last_seq.max(seq);
            x.segments += 1;
        }
        out
    };
    let mut out = Vec::new();
    if cand.custody {
        out.extend(summary(
            "custody",
            &mut spans.iter().filter(overlaps).map(|s| s.seq),
        ));
    }
    out.extend(summary(
        "tags",
        &mut spans
            .iter()
            .filter(overlaps)
            .filter(|s| cand.tagged.contains(&s.seq))
            .map(|s| s.seq),
    ));
    for &(first, last) in &cand.linked {
        out.push(Attached {
            device: d,
            by: "link",
            first_seq: first,
            last_seq: last,
            segments: spans
                .iter()
                .filter(|s| first <= s.seq && s.seq <= last)
                .count() as u64,
        });
    }
    out
}

impl CaseFacts<'_> {
    /// Device `d`'s timeline in server time, read once per case.
    fn timeline(&mut self, d: DeviceId) -> Result<&Timeline, CaseCheckError> {
        if !self.timelines.contains_key(&d) {
            let t = read_timeline(self.shared, &self.custody, d)?;
            self.timelines.insert(d, t);
        }
        Ok(&self.timelines[&d])
    }
}

/// Read device `d`'s accepted chain with its receipts and media times and
/// make its timeline.
fn read_timeline(
    shared: &Shared,
    custody: &[Custody],
    d: DeviceId,
) -> Result<Timeline, CaseCheckError> {
    let chain = archive::accepted_chain(&shared.dir, &shared.db, d)?;
    let held = Held::read(&shared.db, d)?;
    let known: Vec<Known<'_>> = chain.iter().map(|e| held.known(e)).collect();
    let custody_of: Vec<_> = custody.iter().filter(|c| c.device == d).cloned().collect();
    Ok(device_timeline(d, &known, |t| {
        officer_at(&custody_of, d, t).map(str::to_owned)
    }))
}

/// What the index holds of one device's entries, read in one pass over
/// each tree rather than four lookups per entry (an 8 h recording has
/// 7,200 segments; see docs/PERFORMANCE.md).
struct Held {
    receipts: BTreeMap<u64, Option<i64>>,
    media: HashSet<u64>,
    media_times: HashMap<u64, i64>,
    expired: BTreeMap<u64, crate::retention::Expired>,
}

impl Held {
    fn read(db: &crate::db::Db, d: DeviceId) -> Result<Held, CaseCheckError> {
        Ok(Held {
            receipts: db.receipt_times(d)?,
            media: db.media_held(d)?,
            media_times: db.media_times(d)?,
            expired: db.expired_of(d)?,
        })
    }

    /// Entry `e` with what the server knows of it.
    fn known<'a>(&self, e: &'a SignedEntry) -> Known<'a> {
        let seq = e.seq();
        // Expired media was held once: judged late or not by when it
        // arrived, reported as expired rather than missing.
        let expired = e.entry.segment().is_some() && self.expired.contains_key(&seq);
        let media_us = match e.entry.segment() {
            // Held, time unknown (before upload times were recorded, or
            // found again by reconciliation): not judged late.
            Some(_) if expired || self.media.contains(&seq) => {
                Some(self.media_times.get(&seq).copied().unwrap_or(i64::MIN))
            }
            _ => None,
        };
        Known {
            entry: e,
            receipt_us: self.receipts.get(&seq).copied().flatten(),
            verified: true,
            media_us,
            expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chainindex::ChainIndex;
    use crate::retention::Expired;
    use ed25519_dalek::SigningKey;
    use fieldseal_proto::codec::{Decode, Encode};
    use fieldseal_proto::receipt::Receipt;
    use fieldseal_proto::sample;

    /// What the index says of one entry, one lookup at a time (as
    /// `read_timeline` read it before the batch reads).
    fn one_by_one(
        db: &crate::db::Db,
        d: DeviceId,
        e: &SignedEntry,
    ) -> (Option<i64>, Option<i64>, bool) {
        let seq = e.seq();
        let receipt_us = db
            .entry(d, seq)
            .unwrap()
            .and_then(|x| Receipt::from_bytes(&x.receipt).ok())
            .map(|r| r.server_time_us);
        let expired = e.entry.segment().is_some() && db.expired(d, seq).unwrap().is_some();
        let media_us = match e.entry.segment() {
            Some(_) if expired || db.has_media(d, seq).unwrap() => {
                Some(db.media_time(d, seq).unwrap().unwrap_or(i64::MIN))
            }
            _ => None,
        };
        (receipt_us, media_us, expired)
    }

    #[test]
    fn batch_reads_of_a_device_agree_with_lookups_entry_by_entry() {
        let dir = tempfile::tempdir().unwrap();
        crate::admin::init(dir.path(), &[], Some("test-password-long".into())).unwrap();
        let sh = Shared::open(dir.path()).unwrap();
        // Two devices side by side in every tree: a prefix scan must not
        // read the other's keys.
        let mut chains = Vec::new();
        for seed in [0x42u8, 0x43] {
            let key = SigningKey::from_bytes(&[seed; 32]);
            let chain = sample::build(&key, &[4, 3], 100);
            for e in &chain.entries {
                crate::ingest::submit_blocking(&sh, key.verifying_key(), &e.to_bytes());
            }
            chains.push((DeviceId::from_key(&key.verifying_key()), chain));
        }
        let (a, ca) = &chains[0];
        let segs: Vec<u64> = ca.media.keys().copied().collect();
        // Device A: media held with a time, held without one, expired, and
        // not held; device B: all held, other times.
        sh.db.put_media(*a, segs[0]).unwrap();
        sh.db.put_media_time_unflushed(*a, segs[0], 111).unwrap();
        sh.db.put_media(*a, segs[1]).unwrap();
        sh.db.put_media_time_unflushed(*a, segs[2], 333).unwrap();
        sh.db
            .expire_media(*a, segs[2], Expired { at_us: 5, leaf: 9 })
            .unwrap();
        let (b, cb) = &chains[1];
        for (i, seq) in cb.media.keys().enumerate() {
            sh.db.put_media(*b, *seq).unwrap();
            sh.db
                .put_media_time_unflushed(*b, *seq, 1000 + i as i64)
                .unwrap();
        }
        for (d, chain) in &chains {
            let held = Held::read(&sh.db, *d).unwrap();
            for e in &chain.entries {
                let k = held.known(e);
                assert_eq!(
                    (k.receipt_us, k.media_us, k.expired),
                    one_by_one(&sh.db, *d, e),
                    "device {d} seq {}",
                    e.seq()
                );
                assert!(k.receipt_us.is_some());
            }
        }
    }

    fn span(seq: u64, start_s: i64, continues: Option<u64>, verified: bool) -> Span {
        Span {
            device: DeviceId([7; 8]),
            seq,
            recording: [1; 16],
            start_us: start_s * 1_000_000,
            end_us: (start_s + 1) * 1_000_000,
            continues,
            verified,
            received_us: None,
            expired: false,
            officer: None,
        }
    }

    #[test]
    fn covered_runs_join_continuing_segments_and_split_at_breaks() {
        let spans = [
            span(1, 0, None, true), // before the window: left out
            span(2, 10, Some(1), true),
            span(3, 11, Some(2), true),
            span(4, 12, Some(3), false), // unverified: a run of its own
            span(6, 14, None, true),     // after a break
            span(7, 15, Some(6), true),
        ];
        let runs = covered_runs(&spans, 10_500_000, 15_500_000);
        let got: Vec<(u64, u64, bool)> = runs
            .iter()
            .map(|r| (r.first_seq, r.last_seq, r.verified))
            .collect();
        assert_eq!(got, [(2, 3, true), (4, 4, false), (6, 7, true)]);
        assert_eq!((runs[0].start_us, runs[0].end_us), (10_000_000, 12_000_000));
    }
}
