//! The annual enforcement statistics report (Art. 35: each body publishes
//! one by 31 January): over every case, the activities whose start falls in
//! the year (local time, `utc_offset_secs`) — how many by type and by
//! enforcement body, the recorded coverage of those that need audio-video,
//! the stretches without media by their signed reason, late uploads,
//! compliance findings by kind — and the supervision letters issued in it.
//!
//! [`annual`] is a pure function of the cases and their compliance
//! (`casecheck::case_compliance`, whose verdicts it aggregates); [`build`]
//! reads them; [`AnnualReport::csv`] writes the CSV form.
//!
//! Media that expired under retention no longer counts as covered: a report
//! for a year long past, built again later, shows less coverage and
//! `expired-media` findings. Reports are meant to be built in January for
//! the year before.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::casecheck::{self, CaseCheckError, CaseCompliance};
use crate::cases::{civil_from_days, Case};
use crate::catalogue::Catalogue;
use crate::Shared;

/// Recorded coverage of the activities of one requirement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Coverage {
    /// Activities.
    pub activities: u64,
    /// Seconds the activities lasted: what had to be recorded.
    pub required_seconds: f64,
    /// Seconds covered by verified media (any run).
    pub covered_seconds: f64,
    /// Seconds covered by the best unbroken run of each activity.
    pub best_run_seconds: f64,
}

/// Stretches without media that share a reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Gaps {
    /// How many.
    pub count: u64,
    /// Their seconds.
    pub seconds: f64,
}

/// Segments uploaded later than the deadline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LateUploads {
    /// Findings (runs of consecutive late segments).
    pub findings: u64,
    /// Segments.
    pub segments: u64,
}

/// The report of one year.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnnualReport {
    /// The year (local time).
    pub year: i64,
    /// Offset of local time from UTC the year was cut at (s).
    pub utc_offset_secs: i64,
    /// Activities that started in the year.
    pub activities: u64,
    /// By catalogue type.
    pub by_type: BTreeMap<String, u64>,
    /// By enforcement body.
    pub by_body: BTreeMap<String, u64>,
    /// By requirement (`continuous-av`, `av`).
    pub coverage: BTreeMap<String, Coverage>,
    /// Stretches without media (`uncovered` findings) by the signed reason
    /// that explains them, or `unexplained`.
    pub gaps: BTreeMap<String, Gaps>,
    /// Late uploads.
    pub late_uploads: LateUploads,
    /// Compliance findings by kind.
    pub findings: BTreeMap<String, u64>,
    /// Supervision letters issued in the year (Art. 38).
    pub letters: u64,
}

/// The local year of `us` µs since the epoch.
pub fn local_year(us: i64, utc_offset_secs: i64) -> i64 {
    let day = us
        .saturating_add(utc_offset_secs.saturating_mul(1_000_000))
        .div_euclid(crate::retention::DAY_US);
    civil_from_days(day).0
}

/// Add one activity's verdict to the report.
fn add_verdict(out: &mut AnnualReport, a: &casecheck::ActivityVerdict) {
    let v = &a.verdict;
    if v.requirement.needs_media() {
        let c = out
            .coverage
            .entry(v.requirement.as_str().to_owned())
            .or_default();
        c.activities += 1;
        c.required_seconds += (a.end_us - a.start_us) as f64 / 1e6;
        c.covered_seconds += v.covered_seconds;
        c.best_run_seconds += v.best_run_seconds;
    }
    for f in &v.findings {
        *out.findings.entry(f.kind.to_owned()).or_default() += 1;
        match f.kind {
            "uncovered" => {
                let why = f
                    .explained_by
                    .as_ref()
                    .map_or_else(|| "unexplained".to_owned(), |r| r.reason.clone());
                let g = out.gaps.entry(why).or_default();
                g.count += 1;
                g.seconds += (f.to_us - f.from_us) as f64 / 1e6;
            }
            "late-upload" => {
                out.late_uploads.findings += 1;
                out.late_uploads.segments += f.entries.len() as u64;
            }
            _ => {}
        }
    }
}

/// The report of `year` from the cases and their compliance (`checked`,
/// in any order; a case without one counts with its activities but adds no
/// coverage or findings).
pub fn annual(
    cases: &[Case],
    checked: &[CaseCompliance],
    year: i64,
    utc_offset_secs: i64,
) -> AnnualReport {
    let mut out = AnnualReport {
        year,
        utc_offset_secs,
        ..AnnualReport::default()
    };
    let in_year = |us: i64| local_year(us, utc_offset_secs) == year;
    for c in cases {
        out.letters += c.letters.iter().filter(|l| in_year(l.at_us)).count() as u64;
        let verdicts = checked.iter().find(|x| x.case == c.number);
        for a in c.activities.iter().filter(|a| in_year(a.start_us)) {
            out.activities += 1;
            *out.by_type.entry(a.kind.clone()).or_default() += 1;
            *out.by_body.entry(c.body.clone()).or_default() += 1;
            if let Some(v) = verdicts.and_then(|v| v.activities.iter().find(|x| x.id == a.id)) {
                add_verdict(&mut out, v);
            }
        }
    }
    out
}

/// Build the report of `year` from the archive as of `now_us`: compliance
/// is worked out for each case with an activity in the year.
///
/// # Errors
/// As [`casecheck::case_compliance`].
pub fn build(
    shared: &Shared,
    catalogue: &Catalogue,
    year: i64,
    now_us: i64,
) -> Result<AnnualReport, CaseCheckError> {
    let offset = shared.cfg.utc_offset_secs;
    let cases = shared.db.cases()?;
    let mut checked = Vec::new();
    for c in &cases {
        if c.activities
            .iter()
            .any(|a| local_year(a.start_us, offset) == year)
        {
            checked.push(casecheck::case_compliance(shared, catalogue, c, now_us)?);
        }
    }
    Ok(annual(&cases, &checked, year, offset))
}

/// One CSV field, quoted as RFC 4180 asks when it must be.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

impl AnnualReport {
    /// Every number as `(section, key, value)`, in a fixed order.
    pub fn rows(&self) -> Vec<(String, String, String)> {
        let mut rows = Vec::new();
        let mut row = |s: &str, k: &str, v: String| rows.push((s.to_owned(), k.to_owned(), v));
        row("report", "year", self.year.to_string());
        row(
            "report",
            "utc_offset_secs",
            self.utc_offset_secs.to_string(),
        );
        row("activities", "total", self.activities.to_string());
        for (k, n) in &self.by_type {
            row("activities_by_type", k, n.to_string());
        }
        for (k, n) in &self.by_body {
            row("activities_by_body", k, n.to_string());
        }
        for (r, c) in &self.coverage {
            let s = format!("coverage:{r}");
            row(&s, "activities", c.activities.to_string());
            row(&s, "required_seconds", c.required_seconds.to_string());
            row(&s, "covered_seconds", c.covered_seconds.to_string());
            row(&s, "best_run_seconds", c.best_run_seconds.to_string());
        }
        for (why, g) in &self.gaps {
            row("gaps_count", why, g.count.to_string());
            row("gaps_seconds", why, g.seconds.to_string());
        }
        row(
            "late_uploads",
            "findings",
            self.late_uploads.findings.to_string(),
        );
        row(
            "late_uploads",
            "segments",
            self.late_uploads.segments.to_string(),
        );
        for (k, n) in &self.findings {
            row("findings", k, n.to_string());
        }
        row("letters", "issued", self.letters.to_string());
        rows
    }

    /// The CSV form: a header `section,key,value`, then one row per number
    /// ([`AnnualReport::rows`]); RFC 4180 (CRLF line ends, quoted fields
    /// where needed).
    pub fn csv(&self) -> String {
        let mut out = String::from("section,key,value\r\n");
        for (s, k, v) in self.rows() {
            out.push_str(&format!("{},{},{}\r\n", field(&s), field(&k), field(&v)));
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests;
