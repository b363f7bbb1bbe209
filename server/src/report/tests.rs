use super::*;

use fieldseal_proto::identity::DeviceId;

use crate::casecheck::ActivityVerdict;
use crate::cases::{Activity, Letter};
use crate::catalogue::Requirement;
use crate::compliance::{Finding, Reason, Verdict};

const S: i64 = 1_000_000;
const UTC8: i64 = 8 * 3600;
/// 2026-03-01T10:00 at UTC+8.
const MAR1: i64 = 1_772_330_400 * S;

fn activity(id: &str, kind: &str, start_us: i64, minutes: i64) -> Activity {
    Activity {
        id: id.into(),
        kind: kind.into(),
        place: String::new(),
        start_us,
        end_us: start_us + minutes * 60 * S,
        officers: vec!["CJ-001".into()],
    }
}

fn letter(at_us: i64) -> Letter {
    Letter {
        at_us,
        by: "sup".into(),
        activity: None,
        finding: None,
        text: "改正".into(),
    }
}

fn case(number: &str, body: &str, activities: Vec<Activity>, letters: Vec<Letter>) -> Case {
    Case {
        number: number.into(),
        body: body.into(),
        officers: vec!["CJ-001".into()],
        major: false,
        stages: vec![],
        review: None,
        activities,
        letters,
    }
}

fn finding(kind: &'static str, seconds: i64, entries: usize, reason: Option<&str>) -> Finding {
    Finding {
        kind,
        from_us: MAR1,
        to_us: MAR1 + seconds * S,
        entries: (0..entries as u64).map(|s| (DeviceId([1; 8]), s)).collect(),
        explained_by: reason.map(|r| Reason {
            device: DeviceId([1; 8]),
            seq: 9,
            from_us: MAR1,
            to_us: MAR1 + seconds * S,
            reason: r.into(),
        }),
        detail: String::new(),
    }
}

fn verdict(
    a: &Activity,
    r: Requirement,
    covered: f64,
    best: f64,
    f: Vec<Finding>,
) -> ActivityVerdict {
    ActivityVerdict {
        id: a.id.clone(),
        kind: a.kind.clone(),
        start_us: a.start_us,
        end_us: a.end_us,
        devices: vec![],
        recordings: vec![],
        covered: vec![],
        verdict: Verdict {
            requirement: r,
            compliant: f.is_empty(),
            covered_seconds: covered,
            best_run_seconds: best,
            findings: f,
        },
    }
}

/// Two cases, three activities in 2026 (local time), one just after it.
fn year() -> (Vec<Case>, Vec<CaseCompliance>) {
    let a1 = activity("a1", "seizure", MAR1, 10);
    // 2026-12-31T23:30 local: still 2026, though 15:30 UTC.
    let a2 = activity("a2", "hearing", 1_798_731_000 * S, 20);
    // 2027-01-01T00:10 local: 2027, though 2026 in UTC.
    let a3 = activity("a3", "seizure", 1_798_733_400 * S, 5);
    let b1 = activity("b1", "seizure", MAR1 + 92 * 86_400 * S, 10);
    let cases = vec![
        case(
            "CJ-1",
            "局A",
            vec![a1.clone(), a2.clone(), a3],
            // 2026-05-01, and 2025-12-31T17:00Z = 2026-01-01 01:00 local.
            vec![letter(1_777_600_800 * S), letter(1_767_200_400 * S)],
        ),
        case(
            "CJ-2",
            "局B, \"东区\"",
            vec![b1.clone()],
            vec![letter(1_800_000_000 * S)], // 2027
        ),
    ];
    let checked = vec![
        CaseCompliance {
            case: "CJ-1".into(),
            compliant: false,
            missing_stages: vec![],
            activities: vec![
                verdict(
                    &a1,
                    Requirement::ContinuousAv,
                    500.0,
                    400.0,
                    vec![
                        finding("uncovered", 100, 2, Some("user-stop")),
                        finding("split-coverage", 100, 3, None),
                        finding("late-upload", 12, 3, None),
                    ],
                ),
                verdict(&a2, Requirement::Av, 60.0, 60.0, vec![]),
            ],
        },
        CaseCompliance {
            case: "CJ-2".into(),
            compliant: false,
            missing_stages: vec![],
            activities: vec![verdict(
                &b1,
                Requirement::ContinuousAv,
                0.0,
                0.0,
                vec![
                    finding("uncovered", 600, 0, None),
                    finding("no-identity-shown", 600, 0, None),
                ],
            )],
        },
    ];
    (cases, checked)
}

#[test]
fn a_hand_built_year_adds_up() {
    let (cases, checked) = year();
    let r = annual(&cases, &checked, 2026, UTC8);
    assert_eq!(r.activities, 3);
    assert_eq!(r.by_type["seizure"], 2);
    assert_eq!(r.by_type["hearing"], 1);
    assert_eq!(r.by_body["局A"], 2);
    assert_eq!(r.by_body["局B, \"东区\""], 1);
    let c = &r.coverage["continuous-av"];
    assert_eq!((c.activities, c.required_seconds), (2, 1200.0));
    assert_eq!((c.covered_seconds, c.best_run_seconds), (500.0, 400.0));
    let c = &r.coverage["av"];
    assert_eq!(
        (c.activities, c.required_seconds, c.covered_seconds),
        (1, 1200.0, 60.0)
    );
    assert_eq!(
        r.gaps["user-stop"],
        Gaps {
            count: 1,
            seconds: 100.0
        }
    );
    assert_eq!(
        r.gaps["unexplained"],
        Gaps {
            count: 1,
            seconds: 600.0
        }
    );
    assert_eq!(
        r.late_uploads,
        LateUploads {
            findings: 1,
            segments: 3
        }
    );
    assert_eq!(r.findings["uncovered"], 2);
    assert_eq!(r.findings["split-coverage"], 1);
    assert_eq!(r.findings["no-identity-shown"], 1);
    assert_eq!(r.letters, 2, "two letters in 2026 local time");
    // 2027 has the late-night activity and the third letter only.
    let next = annual(&cases, &checked, 2027, UTC8);
    assert_eq!((next.activities, next.letters), (1, 1));
    assert!(
        next.coverage.is_empty(),
        "a3 has no verdict: counted, not judged"
    );
}

/// Split one RFC 4180 record list (CRLF, quoted fields with doubled quotes).
pub(crate) fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => assert_eq!(chars.next(), Some('\n'), "CR without LF"),
            (false, '\n') => panic!("a bare LF ends a record"),
            (false, c) => field.push(c),
        }
        if !quoted && c == '\r' {
            row.push(std::mem::take(&mut field));
            rows.push(std::mem::take(&mut row));
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "last record without CRLF"
    );
    rows
}

#[test]
fn the_csv_parses_back_to_the_same_numbers() {
    let (cases, checked) = year();
    let r = annual(&cases, &checked, 2026, UTC8);
    let csv = r.csv();
    assert!(csv.contains("\"局B, \"\"东区\"\"\""), "{csv}");
    let rows = parse_csv(&csv);
    assert_eq!(rows[0], ["section", "key", "value"]);
    let back: Vec<(String, String, String)> = rows[1..]
        .iter()
        .map(|r| {
            assert_eq!(r.len(), 3, "{r:?}");
            (r[0].clone(), r[1].clone(), r[2].clone())
        })
        .collect();
    assert_eq!(back, r.rows());
    let get = |s: &str, k: &str| -> f64 {
        back.iter()
            .find(|(a, b, _)| a == s && b == k)
            .unwrap_or_else(|| panic!("{s},{k} missing"))
            .2
            .parse()
            .unwrap()
    };
    assert_eq!(get("activities", "total"), 3.0);
    assert_eq!(get("activities_by_body", "局B, \"东区\""), 1.0);
    assert_eq!(get("coverage:continuous-av", "covered_seconds"), 500.0);
    assert_eq!(get("gaps_seconds", "unexplained"), 600.0);
    assert_eq!(get("late_uploads", "segments"), 3.0);
    assert_eq!(get("letters", "issued"), 2.0);
}
