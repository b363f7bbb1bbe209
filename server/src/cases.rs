//! Enforcement cases as Article 27 ¶1 sees them: a case number, the body
//! that enforces, its officers (Art. 36), the stages of the whole process —
//! start, investigation and evidence, review, decision, service, execution —
//! each with its time, text record and attachments, the legal review a major
//! decision needs first (Art. 28), and the activities that recordings attach
//! to. Officers carry enforcement certificates with validity dates; device
//! custody says who carried which device when.
//!
//! The types and their rules only: storing them is the index's business,
//! serving them the HTTP API's. Every check here is a pure function.

use serde::{Deserialize, Serialize};

use fieldseal_proto::identity::{DeviceId, Hash32};

use crate::catalogue::Catalogue;

/// The stages of the whole process (启动、调查取证、审核、决定、送达、执行), in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageKind {
    /// 启动: the case is opened.
    Start,
    /// 调查取证: investigation and evidence.
    Investigation,
    /// 审核: review.
    Review,
    /// 决定: the decision.
    Decision,
    /// 送达: service of the decision.
    Service,
    /// 执行: execution.
    Execution,
}

impl StageKind {
    /// Every stage, in order.
    pub const ALL: [StageKind; 6] = [
        StageKind::Start,
        StageKind::Investigation,
        StageKind::Review,
        StageKind::Decision,
        StageKind::Service,
        StageKind::Execution,
    ];
}

/// A file attached to a stage record, named by its hash (the bytes are a blob).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// File name, for people.
    pub name: String,
    /// SHA-256 of its bytes, hex.
    #[serde(with = "hex32")]
    pub sha256: Hash32,
    /// Length in bytes.
    pub len: u64,
}

/// The record of one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageRecord {
    /// Which stage.
    pub kind: StageKind,
    /// When it happened (µs since the epoch).
    pub at_us: i64,
    /// Its text record.
    pub text: String,
    /// Attached documents.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// The user who entered it.
    #[serde(default)]
    pub by: String,
}

/// The legal review of a major decision (重大行政执法决定法制审核, Art. 28).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegalReview {
    /// When the written opinion was given.
    pub at_us: i64,
    /// The reviewing office or person.
    pub reviewer: String,
    /// The written opinion.
    pub opinion: String,
    /// Did the decision pass review?
    pub approved: bool,
}

/// A supervision letter (Art. 38): a supervisor orders a correction, about
/// an activity's finding or the case as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Letter {
    /// When it was issued (µs; set by the server).
    #[serde(default)]
    pub at_us: i64,
    /// The supervisor who issued it (set by the server).
    #[serde(default)]
    pub by: String,
    /// The activity it is about, if one.
    #[serde(default)]
    pub activity: Option<String>,
    /// The kind of finding it answers (`uncovered`, `late-upload`, …), if one.
    #[serde(default)]
    pub finding: Option<String>,
    /// What must be corrected.
    pub text: String,
}

/// An activity of a case: what recordings attach to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activity {
    /// Id within the case (`a1`, `seizure-1`, …).
    pub id: String,
    /// Its type: an id of the catalogue.
    pub kind: String,
    /// Where.
    #[serde(default)]
    pub place: String,
    /// Start (µs since the epoch).
    pub start_us: i64,
    /// End (µs, after the start).
    pub end_us: i64,
    /// Certificate numbers of its officers.
    pub officers: Vec<String>,
}

/// A case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Case number (`CJ-2026-0001`).
    pub number: String,
    /// The enforcement body.
    pub body: String,
    /// Certificate numbers of the officers on the case.
    pub officers: Vec<String>,
    /// A major decision (重大行政执法决定): needs legal review first (Art. 28).
    #[serde(default)]
    pub major: bool,
    /// Stage records, in the order entered.
    #[serde(default)]
    pub stages: Vec<StageRecord>,
    /// The legal review, once given.
    #[serde(default)]
    pub review: Option<LegalReview>,
    /// Activities.
    #[serde(default)]
    pub activities: Vec<Activity>,
    /// Supervision letters issued on the case (Art. 38), in order.
    #[serde(default)]
    pub letters: Vec<Letter>,
}

/// An officer (Art. 36).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficerRecord {
    /// Enforcement-certificate number (staff number for auxiliaries): the key.
    pub certificate: String,
    /// Name.
    pub name: String,
    /// Auxiliary staff (执法辅助人员): may assist, not enforce.
    #[serde(default)]
    pub auxiliary: bool,
    /// First day the certificate is valid, `YYYY-MM-DD`.
    pub valid_from: String,
    /// Last day it is valid, `YYYY-MM-DD`.
    pub valid_until: String,
}

/// A device carried by an officer from one time to another (a check-out at
/// the charging dock, and its return).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Custody {
    /// The device.
    #[serde(with = "device_hex")]
    pub device: DeviceId,
    /// The officer's certificate number.
    pub officer: String,
    /// Checked out (µs).
    pub from_us: i64,
    /// Returned (µs); `None` while out.
    #[serde(default)]
    pub to_us: Option<i64>,
}

/// Why a case, officer or change is refused. Each names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CaseError {
    /// A field's value is not acceptable.
    #[error("{field}: {why}")]
    Invalid {
        /// The field, as in the JSON.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// Art. 28: a major decision before an approved written legal review.
    #[error("stages: a major decision needs an approved legal review with a written opinion first (Art. 28)")]
    ReviewRequired,
}

fn invalid(field: &'static str, why: impl Into<String>) -> CaseError {
    CaseError::Invalid {
        field,
        why: why.into(),
    }
}

/// Ids that travel in URLs and signed tags: letters, digits, `-` and `_`,
/// 1 to 64 of them, never `.` or `/` (no path tricks).
pub fn valid_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The longest free text of a record (a stage's text, an opinion).
pub const MAX_TEXT: usize = 64 * 1024;

fn text(field: &'static str, s: &str, required: bool) -> Result<(), CaseError> {
    if required && s.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if s.len() > MAX_TEXT {
        return Err(invalid(field, format!("longer than {MAX_TEXT} bytes")));
    }
    Ok(())
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (proleptic Gregorian).
///
/// # Errors
/// Not a valid date.
pub fn parse_day(field: &'static str, s: &str) -> Result<i64, CaseError> {
    let bad = || invalid(field, format!("{s:?} is not a date YYYY-MM-DD"));
    let p: Vec<&str> = s.split('-').collect();
    let [y, m, d] = p.as_slice() else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let (y, m, d): (i64, i64, i64) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > days_in[usize::try_from(m - 1).map_err(|_| bad())?] {
        return Err(bad());
    }
    // Days from civil (H. Hinnant's algorithm, era of 400 years).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok(era * 146_097 + doe - 719_468)
}

/// The date `(year, month, day)` of a day number since 1970-01-01
/// (proleptic Gregorian): the inverse of [`parse_day`].
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // H. Hinnant's algorithm, era of 400 years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).expect("1..=12 by construction"),
        u32::try_from(d).expect("1..=31 by construction"),
    )
}

/// The local date (`YYYY-MM-DD`) of `us` µs since the epoch at
/// `utc_offset_secs` from UTC.
pub fn local_date(us: i64, utc_offset_secs: i64) -> String {
    let day = us
        .saturating_add(utc_offset_secs.saturating_mul(1_000_000))
        .div_euclid(86_400_000_000);
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

impl OfficerRecord {
    /// Check the record.
    ///
    /// # Errors
    /// The first field that is wrong.
    pub fn check(&self) -> Result<(), CaseError> {
        if !valid_key(&self.certificate) {
            return Err(invalid("certificate", "1 to 64 of A-Z, a-z, 0-9, - and _"));
        }
        text("name", &self.name, true)?;
        let from = parse_day("valid_from", &self.valid_from)?;
        let until = parse_day("valid_until", &self.valid_until)?;
        if until < from {
            return Err(invalid("valid_until", "before valid_from"));
        }
        Ok(())
    }

    /// As compliance sees it.
    ///
    /// # Errors
    /// A date that does not parse (a record that was never checked).
    pub fn for_compliance(&self) -> Result<crate::compliance::Officer, CaseError> {
        Ok(crate::compliance::Officer {
            certificate: self.certificate.clone(),
            auxiliary: self.auxiliary,
            valid_from_day: parse_day("valid_from", &self.valid_from)?,
            valid_until_day: parse_day("valid_until", &self.valid_until)?,
        })
    }
}

impl Activity {
    /// Check against the catalogue and the case's officers.
    ///
    /// # Errors
    /// The first field that is wrong.
    pub fn check(&self, catalogue: &Catalogue, case_officers: &[String]) -> Result<(), CaseError> {
        if !valid_key(&self.id) {
            return Err(invalid("id", "1 to 64 of A-Z, a-z, 0-9, - and _"));
        }
        if catalogue.get(&self.kind).is_none() {
            return Err(invalid(
                "kind",
                format!("{:?} is not in the catalogue", self.kind),
            ));
        }
        text("place", &self.place, false)?;
        if self.end_us <= self.start_us {
            return Err(invalid("end_us", "must be after start_us"));
        }
        if self.officers.is_empty() {
            return Err(invalid("officers", "at least one officer"));
        }
        if let Some(o) = self.officers.iter().find(|o| !case_officers.contains(o)) {
            return Err(invalid(
                "officers",
                format!("{o} is not an officer of the case"),
            ));
        }
        Ok(())
    }
}

impl Case {
    /// Check a case (new or changed) against the catalogue and the known
    /// officers.
    ///
    /// # Errors
    /// The first field that is wrong, or [`CaseError::ReviewRequired`].
    pub fn check(
        &self,
        catalogue: &Catalogue,
        officer_known: impl Fn(&str) -> bool,
    ) -> Result<(), CaseError> {
        if !valid_key(&self.number) {
            return Err(invalid("number", "1 to 64 of A-Z, a-z, 0-9, - and _"));
        }
        text("body", &self.body, true)?;
        if self.officers.is_empty() {
            return Err(invalid("officers", "at least one officer"));
        }
        if let Some(o) = self.officers.iter().find(|o| !officer_known(o)) {
            return Err(invalid(
                "officers",
                format!("no officer with certificate {o}"),
            ));
        }
        for s in &self.stages {
            text("stages.text", &s.text, true)?;
            if s.attachments
                .iter()
                .any(|a| a.name.is_empty() || a.name.len() > 255)
            {
                return Err(invalid("stages.attachments.name", "1 to 255 bytes"));
            }
        }
        if let Some(r) = &self.review {
            text("review.opinion", &r.opinion, true)?;
            text("review.reviewer", &r.reviewer, true)?;
        }
        if self.major && self.stages.iter().any(|s| s.kind >= StageKind::Decision) {
            match &self.review {
                Some(r) if r.approved => {
                    let first_decision = self
                        .stages
                        .iter()
                        .filter(|s| s.kind >= StageKind::Decision)
                        .map(|s| s.at_us)
                        .min()
                        .unwrap_or(i64::MAX);
                    if r.at_us > first_decision {
                        return Err(CaseError::ReviewRequired);
                    }
                }
                _ => return Err(CaseError::ReviewRequired),
            }
        }
        for l in &self.letters {
            text("letters.text", &l.text, true)?;
            if let Some(a) = &l.activity {
                if !self.activities.iter().any(|x| &x.id == a) {
                    return Err(invalid(
                        "letters.activity",
                        format!("no activity {a} in the case"),
                    ));
                }
            }
            if l.finding.as_ref().is_some_and(|f| f.len() > 64) {
                return Err(invalid("letters.finding", "at most 64 bytes"));
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for a in &self.activities {
            a.check(catalogue, &self.officers)?;
            if !ids.insert(a.id.as_str()) {
                return Err(invalid("activities.id", format!("{} is used twice", a.id)));
            }
        }
        Ok(())
    }

    /// Stages the record lacks although a later stage is recorded: the whole
    /// process must be on record (Art. 27 ¶1).
    pub fn missing_stages(&self) -> Vec<StageKind> {
        let Some(last) = self.stages.iter().map(|s| s.kind).max() else {
            return Vec::new();
        };
        StageKind::ALL
            .into_iter()
            .filter(|k| *k < last && !self.stages.iter().any(|s| s.kind == *k))
            .collect()
    }
}

/// Who carried `device` at `t_us`, from custody records.
pub fn officer_at(custody: &[Custody], device: DeviceId, t_us: i64) -> Option<&str> {
    custody
        .iter()
        .filter(|c| c.device == device && c.from_us <= t_us && c.to_us.is_none_or(|e| t_us < e))
        .max_by_key(|c| c.from_us)
        .map(|c| c.officer.as_str())
}

pub(crate) mod device_hex {
    use fieldseal_proto::identity::DeviceId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &DeviceId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&d.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DeviceId, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("a SHA-256 is 32 bytes (64 hex digits)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case() -> Case {
        Case {
            number: "CJ-2026-0001".into(),
            body: "昌吉州市场监督管理局".into(),
            officers: vec!["CJ-001".into(), "AUX-7".into()],
            major: true,
            stages: vec![StageRecord {
                kind: StageKind::Start,
                at_us: 1_000,
                text: "立案".into(),
                attachments: vec![],
                by: "custodian".into(),
            }],
            review: None,
            activities: vec![Activity {
                id: "a1".into(),
                kind: "seizure".into(),
                place: "昌吉市".into(),
                start_us: 10_000,
                end_us: 20_000,
                officers: vec!["CJ-001".into()],
            }],
            letters: vec![],
        }
    }

    fn known(o: &str) -> bool {
        ["CJ-001", "AUX-7"].contains(&o)
    }

    #[test]
    fn a_major_decision_needs_an_approved_written_review_first() {
        let cat = Catalogue::article_27();
        let mut c = case();
        c.check(&cat, known).unwrap();
        c.stages.push(StageRecord {
            kind: StageKind::Decision,
            at_us: 50_000,
            text: "决定查封".into(),
            attachments: vec![],
            by: String::new(),
        });
        assert_eq!(c.check(&cat, known), Err(CaseError::ReviewRequired));
        c.review = Some(LegalReview {
            at_us: 40_000,
            reviewer: "法制科".into(),
            opinion: "合法、适当".into(),
            approved: false,
        });
        assert_eq!(
            c.check(&cat, known),
            Err(CaseError::ReviewRequired),
            "not approved"
        );
        c.review.as_mut().unwrap().approved = true;
        c.check(&cat, known).unwrap();
        c.review.as_mut().unwrap().at_us = 60_000;
        assert_eq!(
            c.check(&cat, known),
            Err(CaseError::ReviewRequired),
            "review after the decision"
        );
        c.major = false;
        c.check(&cat, known).unwrap();
        // Investigation and review are missing although a decision exists.
        assert_eq!(
            c.missing_stages(),
            vec![StageKind::Investigation, StageKind::Review]
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let cat = Catalogue::article_27();
        let field = |c: &Case| match c.check(&cat, known) {
            Err(CaseError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let mut c = case();
        c.number = "../etc/passwd".into();
        assert_eq!(field(&c), "number");
        let mut c = case();
        c.activities[0].kind = "picnic".into();
        assert_eq!(field(&c), "kind");
        let mut c = case();
        c.activities[0].end_us = c.activities[0].start_us;
        assert_eq!(field(&c), "end_us");
        let mut c = case();
        c.activities[0].officers = vec!["CJ-999".into()];
        assert_eq!(field(&c), "officers");
        let mut c = case();
        c.officers.push("CJ-404".into());
        assert_eq!(field(&c), "officers");
        let mut c = case();
        c.activities.push(c.activities[0].clone());
        assert_eq!(field(&c), "activities.id");
        let json = r#"{"number":"X","body":"b","officers":["CJ-001"],"colour":1}"#;
        let e = serde_json::from_str::<Case>(json).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }

    #[test]
    fn day_numbers_go_back_to_dates() {
        for day in [-800_000, -1, 0, 19_782, 20_635, 47_482, 2_000_000] {
            let (y, m, d) = civil_from_days(day);
            let text = format!("{y:04}-{m:02}-{d:02}");
            if (0..=9999).contains(&y) {
                assert_eq!(parse_day("d", &text), Ok(day), "{text}");
            }
        }
        assert_eq!(civil_from_days(20_635), (2026, 7, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        // 2026-06-30T23:00Z is already 1 July at UTC+8.
        assert_eq!(local_date(1_782_860_400_000_000, 8 * 3600), "2026-07-01");
        assert_eq!(local_date(1_782_860_400_000_000, 0), "2026-06-30");
    }

    #[test]
    fn dates_officers_and_custody() {
        assert_eq!(parse_day("d", "1970-01-01"), Ok(0));
        assert_eq!(parse_day("d", "2026-07-01"), Ok(20_635));
        assert_eq!(parse_day("d", "2024-02-29"), Ok(19_782));
        for bad in ["2025-02-29", "2026-13-01", "2026-7-1", "x", "2026-00-10"] {
            assert!(parse_day("d", bad).is_err(), "{bad}");
        }
        let o = OfficerRecord {
            certificate: "CJ-001".into(),
            name: "王五".into(),
            auxiliary: false,
            valid_from: "2026-01-01".into(),
            valid_until: "2025-12-31".into(),
        };
        assert!(matches!(
            o.check(),
            Err(CaseError::Invalid {
                field: "valid_until",
                ..
            })
        ));
        let d = DeviceId([1; 8]);
        let custody = [
            Custody {
                device: d,
                officer: "A".into(),
                from_us: 0,
                to_us: Some(100),
            },
            Custody {
                device: d,
                officer: "B".into(),
                from_us: 100,
                to_us: None,
            },
        ];
        assert_eq!(officer_at(&custody, d, 50), Some("A"));
        assert_eq!(officer_at(&custody, d, 100), Some("B"));
        assert_eq!(officer_at(&custody, d, -1), None);
        assert_eq!(officer_at(&custody, DeviceId([2; 8]), 50), None);
    }
}
