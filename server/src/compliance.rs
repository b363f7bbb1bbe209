//! Article 27 compliance of one enforcement activity, as a pure function of
//! what the archive knows about it (STYLE.md item 4: no file, index or clock
//! here; `now_us` is an argument).
//!
//! The caller gathers the [`ActivityFacts`]: the activity's window and
//! officers, every archived segment of the devices that were there as a
//! [`Span`] (its seconds, whether it verified, when its bytes arrived, which
//! officer carried the device), the signed reasons for stops, and the
//! identity-shown marks. [`check_activity`] gives the [`Verdict`]: the
//! requirement from the catalogue and findings that name the exact seconds
//! and entries.
//!
//! - `continuous-av`: one unbroken run of verified media (consecutive
//!   segments of one recording, each starting where the last ended) must
//!   cover the whole window. Seconds outside the best run are findings,
//!   whether or not a signed reason explains them: a reason makes a gap
//!   honest, not compliant.
//! - `av`: verified media within the window.
//! - For both: the officers' enforcement certificates valid on the day
//!   (Art. 36), not auxiliary staff alone, segment bytes received within the
//!   upload deadline, identity shown (Art. 26).
//! - `text`: nothing about media is asked.

use serde::Serialize;

use fieldseal_proto::identity::DeviceId;

use crate::catalogue::Requirement;

/// One archived segment, in the server's view of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The device that recorded it.
    pub device: DeviceId,
    /// Its entry.
    pub seq: u64,
    /// Its recording.
    pub recording: [u8; 16],
    /// First frame, µs since the epoch.
    pub start_us: i64,
    /// End of its last frame, µs since the epoch.
    pub end_us: i64,
    /// The seq of the segment of the same recording that it continues: it
    /// starts exactly where that one ended (presentation timestamps), so no
    /// frame lies between them. `None` for a recording's first segment or
    /// after a break.
    pub continues: Option<u64>,
    /// Its entry verified (signature, chain link) and its bytes are held
    /// and hash to what the entry signed.
    pub verified: bool,
    /// When the server held its bytes, `None` while they are missing.
    pub received_us: Option<i64>,
    /// Its bytes expired under retention: not verified now, but not
    /// missing either (`expired-media`, not `unverified-media`).
    pub expired: bool,
    /// The certificate number of the officer who carried the device then,
    /// `None` when no custody record covers it.
    pub officer: Option<String>,
}

/// A signed reason for a stretch without media (a stop, power loss, full storage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// Device and entry of the event that states it.
    pub device: DeviceId,
    /// The event's entry.
    pub seq: u64,
    /// From when it explains (µs).
    pub from_us: i64,
    /// Until when (µs).
    pub to_us: i64,
    /// The reason (`user-stop`, `power-loss`, `storage-full`, …).
    pub reason: String,
}

/// An identity-shown event (Art. 26): the officer showed the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityMark {
    /// Its device.
    pub device: DeviceId,
    /// Its entry.
    pub seq: u64,
    /// When (µs).
    pub at_us: i64,
}

/// An officer of the activity, with the certificate as it stood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Officer {
    /// Enforcement-certificate number (or staff number for auxiliaries).
    pub certificate: String,
    /// Auxiliary staff (执法辅助人员) may assist but not enforce alone.
    pub auxiliary: bool,
    /// First day the certificate is valid, as days since 1970-01-01 (local).
    pub valid_from_day: i64,
    /// Last day it is valid (inclusive).
    pub valid_until_day: i64,
}

impl Officer {
    fn valid_on(&self, day: i64) -> bool {
        !self.auxiliary && self.valid_from_day <= day && day <= self.valid_until_day
    }
}

/// Everything compliance needs about one activity.
#[derive(Debug, Clone)]
pub struct ActivityFacts<'a> {
    /// What the catalogue asks of its type.
    pub requirement: Requirement,
    /// Start of the activity (µs).
    pub start_us: i64,
    /// End (µs, exclusive).
    pub end_us: i64,
    /// Its officers.
    pub officers: &'a [Officer],
    /// Segments of the devices present, in any order.
    pub spans: &'a [Span],
    /// Signed reasons for stretches without media.
    pub reasons: &'a [Reason],
    /// Identity-shown marks.
    pub identity: &'a [IdentityMark],
    /// Bytes must be held within this long after a segment ends (µs).
    pub upload_deadline_us: i64,
    /// Offset of local time from UTC (s): a certificate's validity is by local day.
    pub utc_offset_secs: i64,
    /// Now (µs): a missing segment is late once its deadline has passed.
    pub now_us: i64,
}

/// One thing wrong, with the seconds and entries it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What kind (`uncovered`, `split-coverage`, `no-media`, `unverified-media`,
    /// `expired-media`,
    /// `officer-unknown`, `certificate-invalid`, `auxiliary-only`, `late-upload`,
    /// `no-identity-shown`).
    pub kind: &'static str,
    /// From (µs).
    pub from_us: i64,
    /// To (µs).
    pub to_us: i64,
    /// The entries it names: (device, seq).
    pub entries: Vec<(DeviceId, u64)>,
    /// The signed reason that explains it, if one does.
    pub explained_by: Option<Reason>,
    /// For people.
    pub detail: String,
}

/// The verdict on one activity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// What the catalogue asks.
    pub requirement: Requirement,
    /// No finding.
    pub compliant: bool,
    /// Seconds of the window covered by verified media (any run).
    pub covered_seconds: f64,
    /// Seconds of the window the best single unbroken run covers.
    pub best_run_seconds: f64,
    /// What is wrong.
    pub findings: Vec<Finding>,
}

/// An unbroken run: consecutive verified segments of one recording.
#[derive(Debug, Clone, Copy)]
struct Run {
    start_us: i64,
    end_us: i64,
    /// Index of its last segment in the sorted list.
    last: usize,
}

const DAY_US: i64 = 86_400_000_000;

/// Identity may be shown shortly before the activity starts (on arrival).
const IDENTITY_GRACE_US: i64 = 10 * 60 * 1_000_000;

fn seconds(us: i64) -> f64 {
    us as f64 / 1e6
}

/// Check one activity.
pub fn check_activity(f: &ActivityFacts<'_>) -> Verdict {
    let (a, b) = (f.start_us, f.end_us.max(f.start_us));
    let mut findings = Vec::new();
    if !f.requirement.needs_media() {
        return Verdict {
            requirement: f.requirement,
            compliant: true,
            covered_seconds: 0.0,
            best_run_seconds: 0.0,
            findings,
        };
    }
    // Segments touching the window, by device, recording and time.
    let mut spans: Vec<&Span> = f
        .spans
        .iter()
        .filter(|s| s.end_us > a && s.start_us < b)
        .collect();
    spans.sort_by_key(|s| (s.device, s.recording, s.start_us, s.seq));
    let verified: Vec<&Span> = spans.iter().copied().filter(|s| s.verified).collect();
    let runs = runs(&verified);
    let covered = union_len(&verified, a, b);
    let best = runs.iter().max_by_key(|r| {
        (
            overlap(r.start_us, r.end_us, a, b),
            std::cmp::Reverse(r.start_us),
        )
    });
    let best_len = best.map_or(0, |r| overlap(r.start_us, r.end_us, a, b));
    for s in spans.iter().filter(|s| !s.verified) {
        let (kind, detail) = if s.expired {
            (
                "expired-media",
                "the segment's bytes were removed under retention (an expire leaf of the log)",
            )
        } else if s.received_us.is_none() {
            ("unverified-media", "the segment's bytes have not arrived")
        } else {
            ("unverified-media", "the segment does not verify")
        };
        findings.push(Finding {
            kind,
            from_us: s.start_us.max(a),
            to_us: s.end_us.min(b),
            entries: vec![(s.device, s.seq)],
            explained_by: None,
            detail: detail.into(),
        });
    }
    match f.requirement {
        Requirement::ContinuousAv => {
            let (rs, re) = best.map_or((b, b), |r| (r.start_us.max(a), r.end_us.min(b)));
            let mut outside = Vec::new();
            if rs > a {
                outside.push((a, rs));
            }
            if re < b && re >= rs {
                outside.push((re.max(a), b));
            }
            for (x, y) in outside {
                gap_findings(x, y, &verified, f.reasons, &mut findings);
            }
        }
        Requirement::Av => {
            if verified.is_empty() {
                findings.push(Finding {
                    kind: "no-media",
                    from_us: a,
                    to_us: b,
                    entries: Vec::new(),
                    explained_by: None,
                    detail: if spans.iter().any(|s| s.expired) {
                        "no verified audio-video within the activity: its media expired under retention".into()
                    } else {
                        "no verified audio-video within the activity".into()
                    },
                });
            }
        }
        Requirement::Text => {}
    }
    officer_findings(f, &verified, &mut findings);
    late_findings(f, &spans, &mut findings);
    let shown = f
        .identity
        .iter()
        .any(|m| m.at_us >= a - IDENTITY_GRACE_US && m.at_us < b);
    if !shown {
        findings.push(Finding {
            kind: "no-identity-shown",
            from_us: a,
            to_us: b,
            entries: Vec::new(),
            explained_by: None,
            detail: "no identity-shown mark within the activity (Art. 26)".into(),
        });
    }
    findings.sort_by_key(|x| (x.from_us, x.kind));
    Verdict {
        requirement: f.requirement,
        compliant: findings.is_empty(),
        covered_seconds: seconds(covered),
        best_run_seconds: seconds(best_len),
        findings,
    }
}

/// Consecutive segments of one recording, each continuing the one before.
fn runs(sorted: &[&Span]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for (i, s) in sorted.iter().enumerate() {
        let joins = i > 0 && {
            let p = sorted[i - 1];
            p.device == s.device && p.recording == s.recording && s.continues == Some(p.seq)
        };
        match out.last_mut() {
            Some(r) if joins && r.last == i - 1 => {
                r.end_us = r.end_us.max(s.end_us);
                r.last = i;
            }
            _ => out.push(Run {
                start_us: s.start_us,
                end_us: s.end_us,
                last: i,
            }),
        }
    }
    out
}

fn overlap(x: i64, y: i64, a: i64, b: i64) -> i64 {
    (y.min(b) - x.max(a)).max(0)
}

/// Length of the union of the spans within [a, b).
fn union_len(spans: &[&Span], a: i64, b: i64) -> i64 {
    let mut iv: Vec<(i64, i64)> = spans
        .iter()
        .map(|s| (s.start_us.max(a), s.end_us.min(b)))
        .filter(|(x, y)| y > x)
        .collect();
    iv.sort_unstable();
    let (mut total, mut cur): (i64, Option<(i64, i64)>) = (0, None);
    for (x, y) in iv {
        cur = match cur {
            Some((cx, cy)) if x <= cy => Some((cx, cy.max(y))),
            Some((cx, cy)) => {
                total += cy - cx;
                Some((x, y))
            }
            None => Some((x, y)),
        };
    }
    total + cur.map_or(0, |(x, y)| y - x)
}

/// Findings for [x, y), which the best run does not cover: stretches no
/// verified segment covers (`uncovered`), and stretches only other runs
/// cover (`split-coverage`).
fn gap_findings(x: i64, y: i64, verified: &[&Span], reasons: &[Reason], out: &mut Vec<Finding>) {
    // Cut [x, y) at every segment edge inside it, then merge neighbours of
    // the same kind.
    let mut cuts = vec![x, y];
    for s in verified {
        for t in [s.start_us, s.end_us] {
            if t > x && t < y {
                cuts.push(t);
            }
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces: Vec<(i64, i64, bool)> = Vec::new();
    for w in cuts.windows(2) {
        let (p, q) = (w[0], w[1]);
        let covered = verified.iter().any(|s| s.start_us <= p && s.end_us >= q);
        match pieces.last_mut() {
            Some(last) if last.2 == covered && last.1 == p => last.1 = q,
            _ => pieces.push((p, q, covered)),
        }
    }
    for (p, q, covered) in pieces {
        let before = verified
            .iter()
            .filter(|s| s.end_us <= p)
            .max_by_key(|s| (s.end_us, s.seq));
        let after = verified
            .iter()
            .filter(|s| s.start_us >= q)
            .min_by_key(|s| (s.start_us, s.seq));
        let mut entries: Vec<(DeviceId, u64)> = before
            .iter()
            .chain(after.iter())
            .map(|s| (s.device, s.seq))
            .collect();
        if covered {
            entries = verified
                .iter()
                .filter(|s| s.end_us > p && s.start_us < q)
                .map(|s| (s.device, s.seq))
                .collect();
        }
        let explained_by = if covered {
            None
        } else {
            reasons
                .iter()
                .filter(|r| r.from_us < q && r.to_us > p)
                .max_by_key(|r| overlap(r.from_us, r.to_us, p, q))
                .cloned()
        };
        let secs = seconds(q - p);
        let detail = match (&explained_by, covered) {
            (_, true) => format!(
                "{secs:.1} s covered only by another recording: the record is not one unbroken run"
            ),
            (Some(r), false) => format!(
                "{secs:.1} s without media ({}): explained, but not continuous",
                r.reason
            ),
            (None, false) => format!("{secs:.1} s without media and without a signed reason"),
        };
        out.push(Finding {
            kind: if covered {
                "split-coverage"
            } else {
                "uncovered"
            },
            from_us: p,
            to_us: q,
            entries,
            explained_by,
            detail,
        });
    }
}

fn local_day(us: i64, offset_secs: i64) -> i64 {
    (us + offset_secs * 1_000_000).div_euclid(DAY_US)
}

fn officer_findings(f: &ActivityFacts<'_>, verified: &[&Span], out: &mut Vec<Finding>) {
    if !f.officers.is_empty() && f.officers.iter().all(|o| o.auxiliary) {
        out.push(Finding {
            kind: "auxiliary-only",
            from_us: f.start_us,
            to_us: f.end_us,
            entries: Vec::new(),
            explained_by: None,
            detail: "only auxiliary staff on an activity that needs a certified officer (Art. 36)"
                .into(),
        });
    }
    // One finding per officer and kind, naming every segment concerned.
    let mut unknown: Vec<&Span> = Vec::new();
    let mut invalid: Vec<(&str, Vec<&Span>)> = Vec::new();
    for s in verified {
        let Some(cert) = s.officer.as_deref() else {
            unknown.push(s);
            continue;
        };
        let day = local_day(s.start_us, f.utc_offset_secs);
        let ok = f
            .officers
            .iter()
            .any(|o| o.certificate == cert && o.valid_on(day));
        if !ok {
            match invalid.iter_mut().find(|(c, _)| *c == cert) {
                Some((_, v)) => v.push(s),
                None => invalid.push((cert, vec![s])),
            }
        }
    }
    let finding = |kind: &'static str, spans: &[&Span], detail: String| Finding {
        kind,
        from_us: spans.iter().map(|s| s.start_us).min().unwrap_or(f.start_us),
        to_us: spans.iter().map(|s| s.end_us).max().unwrap_or(f.end_us),
        entries: spans.iter().map(|s| (s.device, s.seq)).collect(),
        explained_by: None,
        detail,
    };
    if !unknown.is_empty() {
        out.push(finding(
            "officer-unknown",
            &unknown,
            "media not resolved to an officer (no device custody record)".into(),
        ));
    }
    for (cert, spans) in invalid {
        out.push(finding(
            "certificate-invalid",
            &spans,
            format!("recorded by {cert}, who held no valid enforcement certificate that day or is not on the activity"),
        ));
    }
}

fn late_findings(f: &ActivityFacts<'_>, spans: &[&Span], out: &mut Vec<Finding>) {
    let late: Vec<&Span> = spans
        .iter()
        .copied()
        .filter(|s| {
            let due = s.end_us.saturating_add(f.upload_deadline_us);
            match s.received_us {
                Some(t) => t > due,
                None => f.now_us > due,
            }
        })
        .collect();
    // Consecutive late segments of one device make one finding.
    let mut i = 0;
    while i < late.len() {
        let mut j = i;
        while j + 1 < late.len()
            && late[j + 1].device == late[i].device
            && late[j + 1].seq == late[j].seq + 1
        {
            j += 1;
        }
        let group = &late[i..=j];
        let worst = group
            .iter()
            .map(|s| s.received_us.unwrap_or(f.now_us) - s.end_us)
            .max()
            .unwrap_or(0);
        out.push(Finding {
            kind: "late-upload",
            from_us: group[0].start_us,
            to_us: group[group.len() - 1].end_us,
            entries: group.iter().map(|s| (s.device, s.seq)).collect(),
            explained_by: None,
            detail: format!(
                "{} segment(s) uploaded later than the deadline of {:.0} s (worst {:.0} s after recording)",
                group.len(),
                seconds(f.upload_deadline_us),
                seconds(worst)
            ),
        });
        i = j + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;
    /// 2026-07-01 09:00 UTC.
    const T0: i64 = 1_782_896_400 * S;

    fn dev(n: u8) -> DeviceId {
        DeviceId([n; 8])
    }

    /// `n` segments of 4 s of one recording from `start`, first seq `seq0`.
    fn recording(d: u8, rec: u8, seq0: u64, start: i64, n: usize) -> Vec<Span> {
        (0..n)
            .map(|i| {
                let s = start + 4 * S * i as i64;
                Span {
                    device: dev(d),
                    seq: seq0 + i as u64,
                    recording: [rec; 16],
                    start_us: s,
                    end_us: s + 4 * S,
                    continues: (i > 0).then(|| seq0 + i as u64 - 1),
                    verified: true,
                    received_us: Some(s + 5 * S),
                    expired: false,
                    officer: Some("CJ-001".into()),
                }
            })
            .collect()
    }

    fn officer() -> Vec<Officer> {
        vec![Officer {
            certificate: "CJ-001".into(),
            auxiliary: false,
            valid_from_day: local_day(T0, 8 * 3600) - 30,
            valid_until_day: local_day(T0, 8 * 3600) + 30,
        }]
    }

    fn facts<'a>(
        requirement: Requirement,
        minutes: i64,
        officers: &'a [Officer],
        spans: &'a [Span],
        reasons: &'a [Reason],
        identity: &'a [IdentityMark],
    ) -> ActivityFacts<'a> {
        ActivityFacts {
            requirement,
            start_us: T0,
            end_us: T0 + minutes * 60 * S,
            officers,
            spans,
            reasons,
            identity,
            upload_deadline_us: 24 * 3600 * S,
            utc_offset_secs: 8 * 3600,
            now_us: T0 + 2 * 24 * 3600 * S,
        }
    }

    fn kinds(v: &Verdict) -> Vec<&'static str> {
        v.findings.iter().map(|f| f.kind).collect()
    }

    const SHOWN: [IdentityMark; 1] = [IdentityMark {
        device: DeviceId([1; 8]),
        seq: 1,
        at_us: T0 + 5 * S,
    }];

    #[test]
    fn a_seizure_recorded_without_interruption_complies() {
        // 10 minutes = 150 segments, from 8 s before the start.
        let spans = recording(1, 1, 2, T0 - 8 * S, 152);
        let o = officer();
        let v = check_activity(&facts(
            Requirement::ContinuousAv,
            10,
            &o,
            &spans,
            &[],
            &SHOWN,
        ));
        assert!(v.compliant, "{:?}", v.findings);
        assert_eq!(v.best_run_seconds, 600.0);
        assert_eq!(v.covered_seconds, 600.0);
    }

    #[test]
    fn media_expired_under_retention_is_named_so_not_missing_nor_late() {
        let mut spans = recording(1, 1, 2, T0, 5);
        for s in &mut spans[1..3] {
            s.verified = false;
            s.expired = true;
        }
        let o = officer();
        let v = check_activity(&facts(Requirement::Av, 1, &o, &spans, &[], &SHOWN));
        assert_eq!(
            kinds(&v),
            vec!["expired-media", "expired-media"],
            "{:?}",
            v.findings
        );
        assert_eq!(v.findings[0].entries, vec![(dev(1), 3)]);
        assert_eq!(v.covered_seconds, 12.0, "expired bytes cover nothing now");
        // All of it expired: still no media, and the finding says why.
        for s in &mut spans {
            s.verified = false;
            s.expired = true;
        }
        let v = check_activity(&facts(Requirement::Av, 1, &o, &spans, &[], &SHOWN));
        let none = v.findings.iter().find(|f| f.kind == "no-media").unwrap();
        assert!(
            none.detail.contains("expired under retention"),
            "{}",
            none.detail
        );
        assert!(!kinds(&v).contains(&"unverified-media"));
    }

    #[test]
    fn a_stop_in_the_middle_is_one_finding_with_its_seconds_entries_and_reason() {
        let mut spans = recording(1, 1, 2, T0, 60); // 0–240 s
        spans.extend(recording(1, 2, 70, T0 + 270 * S, 83)); // 270–602 s
        let reasons = [Reason {
            device: dev(1),
            seq: 62,
            from_us: T0 + 240 * S,
            to_us: T0 + 270 * S,
            reason: "user-stop".into(),
        }];
        let o = officer();
        let v = check_activity(&facts(
            Requirement::ContinuousAv,
            10,
            &o,
            &spans,
            &reasons,
            &SHOWN,
        ));
        assert!(!v.compliant);
        // The best run is the later one (332 s); everything before it is
        // outside: 240 s covered by the first run, then the 30 s hole.
        assert_eq!(kinds(&v), vec!["split-coverage", "uncovered"]);
        let hole = &v.findings[1];
        assert_eq!((hole.from_us, hole.to_us), (T0 + 240 * S, T0 + 270 * S));
        assert_eq!(hole.entries, vec![(dev(1), 61), (dev(1), 70)]);
        assert_eq!(
            hole.explained_by.as_ref().map(|r| r.reason.as_str()),
            Some("user-stop")
        );
        assert!(hole.detail.contains("30.0 s"), "{}", hole.detail);
        assert_eq!(v.best_run_seconds, 330.0);
    }

    #[test]
    fn storage_full_and_power_loss_explain_a_gap_without_excusing_it() {
        for reason in ["storage-full", "power-loss"] {
            let mut spans = recording(1, 1, 0, T0 - 4 * S, 30); // to 116 s
            spans.extend(recording(1, 2, 40, T0 + 200 * S, 20)); // 200–280 s
            let reasons = [Reason {
                device: dev(1),
                seq: 31,
                from_us: T0 + 116 * S,
                to_us: T0 + 200 * S,
                reason: reason.into(),
            }];
            let o = officer();
            let v = check_activity(&facts(
                Requirement::ContinuousAv,
                4,
                &o,
                &spans,
                &reasons,
                &SHOWN,
            ));
            let holes: Vec<&Finding> = v
                .findings
                .iter()
                .filter(|f| f.kind == "uncovered")
                .collect();
            assert_eq!(holes.len(), 1, "{reason}: {:?}", v.findings);
            assert_eq!(
                (holes[0].from_us, holes[0].to_us),
                (T0 + 116 * S, T0 + 200 * S)
            );
            assert_eq!(holes[0].explained_by.as_ref().unwrap().reason, reason);
        }
    }

    #[test]
    fn an_unexplained_hole_says_so() {
        let mut spans = recording(1, 1, 0, T0, 10);
        spans.remove(4); // a deleted segment: the run breaks at 16–20 s
        spans[4].continues = Some(4); // still says it follows the lost one
        let o = officer();
        let v = check_activity(&facts(
            Requirement::ContinuousAv,
            1,
            &o,
            &spans,
            &[],
            &SHOWN,
        ));
        let hole = v.findings.iter().find(|f| f.kind == "uncovered").unwrap();
        assert!(hole.explained_by.is_none());
        assert!(hole.detail.contains("without a signed reason"));
    }

    #[test]
    fn each_other_failing_is_exactly_its_own_finding() {
        let base = recording(1, 1, 0, T0, 15); // 60 s
        let o = officer();
        // An expired certificate.
        let mut expired = officer();
        expired[0].valid_until_day = local_day(T0, 8 * 3600) - 1;
        let v = check_activity(&facts(
            Requirement::ContinuousAv,
            1,
            &expired,
            &base,
            &[],
            &SHOWN,
        ));
        assert_eq!(kinds(&v), vec!["certificate-invalid"]);
        assert_eq!(v.findings[0].entries.len(), 15);
        // A late upload of two consecutive segments.
        let mut late = base.clone();
        for s in &mut late[3..5] {
            s.received_us = Some(s.end_us + 25 * 3600 * S);
        }
        let v = check_activity(&facts(Requirement::ContinuousAv, 1, &o, &late, &[], &SHOWN));
        assert_eq!(kinds(&v), vec!["late-upload"]);
        assert_eq!(v.findings[0].entries, vec![(dev(1), 3), (dev(1), 4)]);
        // No identity shown.
        let v = check_activity(&facts(Requirement::ContinuousAv, 1, &o, &base, &[], &[]));
        assert_eq!(kinds(&v), vec!["no-identity-shown"]);
        // Auxiliary staff alone.
        let mut aux = officer();
        aux[0].auxiliary = true;
        let v = check_activity(&facts(Requirement::Av, 1, &aux, &base, &[], &SHOWN));
        assert!(kinds(&v).contains(&"auxiliary-only"), "{:?}", kinds(&v));
        // No custody record for the device.
        let mut nobody = base.clone();
        nobody[0].officer = None;
        let v = check_activity(&facts(Requirement::Av, 1, &o, &nobody, &[], &SHOWN));
        assert_eq!(kinds(&v), vec!["officer-unknown"]);
    }

    #[test]
    fn av_needs_some_media_and_text_needs_none() {
        let o = officer();
        let v = check_activity(&facts(Requirement::Av, 5, &o, &[], &[], &SHOWN));
        assert_eq!(kinds(&v), vec!["no-media"]);
        let some = recording(1, 1, 0, T0 + 60 * S, 3);
        let v = check_activity(&facts(Requirement::Av, 5, &o, &some, &[], &SHOWN));
        assert!(v.compliant, "{:?}", v.findings);
        let v = check_activity(&facts(Requirement::Text, 5, &o, &[], &[], &[]));
        assert!(v.compliant);
    }

    #[test]
    fn missing_bytes_are_unverified_and_leave_a_hole() {
        let mut spans = recording(1, 1, 0, T0, 15);
        spans[7].verified = false;
        spans[7].received_us = None;
        let o = officer();
        let mut f = facts(Requirement::ContinuousAv, 1, &o, &spans, &[], &SHOWN);
        f.now_us = T0 + 3600 * S; // before the deadline: not late yet
        let v = check_activity(&f);
        // Two runs of 28 s: the earlier counts as best; the hole 28–32 s
        // and the later run are outside it.
        assert_eq!(
            kinds(&v),
            vec!["uncovered", "unverified-media", "split-coverage"]
        );
        assert_eq!(
            (v.findings[0].from_us, v.findings[0].to_us),
            (T0 + 28 * S, T0 + 32 * S)
        );
        let un = &v.findings[1];
        assert_eq!(un.entries, vec![(dev(1), 7)]);
        assert!(un.detail.contains("not arrived"));
    }

    #[test]
    fn a_handover_between_two_devices_is_not_one_unbroken_run() {
        let mut spans = recording(1, 1, 0, T0, 8); // 0–32 s
        spans.extend(recording(2, 9, 0, T0 + 28 * S, 8)); // 28–60 s
        let o = officer();
        let v = check_activity(&facts(
            Requirement::ContinuousAv,
            1,
            &o,
            &spans,
            &[],
            &SHOWN,
        ));
        assert_eq!(kinds(&v), vec!["split-coverage"]);
        assert_eq!(v.covered_seconds, 60.0);
    }
}
