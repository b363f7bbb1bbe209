//! One line of gpsd's JSON protocol, read into what the agent needs: the
//! `VERSION` banner (gpsd answers), and `TPV` reports (a fix, or not).
//!
//! A TPV is a fix only when everything needed is there and sane: `mode` 2
//! (2D) or 3 (3D); `lat` and `lon` finite and in range, and not both exactly
//! zero (receivers report 0°, 0° when they have nothing); `time`, the
//! receiver's time of the fix, an RFC 3339 UTC time. Anything else is "no
//! fix": never a zero or made-up position. Accuracy: `eph` (gpsd's
//! horizontal error estimate, metres), else the hypotenuse of `epx` and
//! `epy`, rounded up to whole metres; unknown (65535) when neither is
//! there or it is 65535 m or more.

use fieldseal_proto::entry::{Point, ACCURACY_UNKNOWN};
use serde_json::Value;

/// A fix from a TPV report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fix {
    /// Where.
    pub point: Point,
    /// The receiver's time of the fix, µs since the epoch.
    pub fix_us: i64,
}

/// What a line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// `{"class":"VERSION",…}`: the first thing gpsd sends.
    Version,
    /// A TPV report: a fix, or `None` when it is not one.
    Tpv(Option<Fix>),
    /// Any other class (`DEVICES`, `WATCH`, `SKY`, …): not needed.
    Other,
}

/// A line that is not a JSON object with a `class`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a gpsd report: {0}")]
pub struct BadLine(pub String);

/// Read one line (without its newline).
///
/// # Errors
/// [`BadLine`] when it is not JSON or not an object with a string `class`.
pub fn parse(line: &[u8]) -> Result<Report, BadLine> {
    let v: Value = serde_json::from_slice(line).map_err(|e| BadLine(e.to_string()))?;
    let class = v
        .get("class")
        .and_then(Value::as_str)
        .ok_or_else(|| BadLine("no class".into()))?;
    Ok(match class {
        "VERSION" => Report::Version,
        "TPV" => Report::Tpv(fix(&v)),
        _ => Report::Other,
    })
}

fn fix(v: &Value) -> Option<Fix> {
    let mode = v.get("mode")?.as_u64()?;
    if mode < 2 {
        return None;
    }
    let lat = finite(v, "lat")?;
    let lon = finite(v, "lon")?;
    if lat.abs() > 90.0 || lon.abs() > 180.0 || (lat == 0.0 && lon == 0.0) {
        return None;
    }
    let fix_us = rfc3339_us(v.get("time")?.as_str()?)?;
    // In range, so the products fit an i32 (|lon| · 1e7 ≤ 1.8e9).
    #[allow(clippy::cast_possible_truncation)]
    let point = Point {
        lat_e7: (lat * 1e7).round() as i32,
        lon_e7: (lon * 1e7).round() as i32,
        accuracy_m: accuracy(v),
    };
    point.valid().then_some(Fix { point, fix_us })
}

fn finite(v: &Value, key: &str) -> Option<f64> {
    v.get(key)?.as_f64().filter(|x| x.is_finite())
}

fn accuracy(v: &Value) -> u16 {
    let metres = finite(v, "eph").or_else(|| Some(finite(v, "epx")?.hypot(finite(v, "epy")?)));
    match metres {
        Some(m) if m >= 0.0 && m < f64::from(ACCURACY_UNKNOWN) => {
            // Below 65535 after the check, so the cast is exact.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let m = m.ceil() as u16;
            m
        }
        _ => ACCURACY_UNKNOWN,
    }
}

/// `2026-07-01T08:00:15.250Z` as µs since the epoch; `None` for any other
/// form (gpsd writes UTC with a `Z`, fractions of up to 9 digits).
pub fn rfc3339_us(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let d = b.get(r)?;
        if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(d).ok()?.parse().ok()
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b.last() != Some(&b'Z')
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let frac = &b[19..b.len() - 1];
    let micros = match frac {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            let n = num(20..19 + frac.len())?;
            // Scale to 9 digits (ns), then to µs.
            n * 10_i64.pow(9 - u32::try_from(digits.len()).ok()?) / 1000
        }
        _ => return None,
    };
    let days_in = [
        31,
        28 + i64::from(leap(y)),
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
    if !(1..=12).contains(&mo)
        || d < 1
        || d > days_in[usize::try_from(mo - 1).ok()?]
        || h > 23
        || mi > 59
        || sec > 60
    {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) * 1_000_000) + micros)
}

fn leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Howard Hinnant's days_from_civil: days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"class":"TPV","device":"/dev/pts/3","mode":3,"time":"2026-07-01T08:00:08.000Z","ept":0.005,"lat":44.011071667,"lon":87.300100000,"altHAE":552.0000,"eph":17.100}"#;

    fn tpv(line: &str) -> Option<Fix> {
        match parse(line.as_bytes()) {
            Ok(Report::Tpv(f)) => f,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn a_tpv_from_gpsd_is_a_fix() {
        assert_eq!(
            tpv(GOOD),
            Some(Fix {
                point: Point {
                    lat_e7: 440_110_717,
                    lon_e7: 873_001_000,
                    accuracy_m: 18,
                },
                fix_us: 1_782_892_808_000_000,
            })
        );
        // Without eph, from epx and epy: hypot(3, 4) = 5.
        let l = r#"{"class":"TPV","mode":2,"time":"2026-07-01T08:00:08.5Z","lat":-33.8688,"lon":151.2093,"epx":3.0,"epy":4.0}"#;
        let f = tpv(l).unwrap();
        assert_eq!(
            (f.point.lat_e7, f.point.lon_e7, f.point.accuracy_m),
            (-338_688_000, 1_512_093_000, 5)
        );
        assert_eq!(f.fix_us, 1_782_892_808_500_000);
        assert_eq!(
            parse(br#"{"class":"VERSION","release":"3.22"}"#),
            Ok(Report::Version)
        );
        assert_eq!(
            parse(br#"{"class":"SKY","satellites":[]}"#),
            Ok(Report::Other)
        );
    }

    #[test]
    fn accuracy_is_unknown_when_gpsd_gives_none_or_too_much() {
        let with = |extra: &str| {
            let l = format!(
                r#"{{"class":"TPV","mode":3,"time":"2026-07-01T08:00:08Z","lat":44.0,"lon":87.0{extra}}}"#
            );
            tpv(&l).unwrap().point.accuracy_m
        };
        assert_eq!(with(""), ACCURACY_UNKNOWN);
        assert_eq!(with(r#","epx":3.0"#), ACCURACY_UNKNOWN);
        assert_eq!(with(r#","eph":65535.0"#), ACCURACY_UNKNOWN);
        assert_eq!(with(r#","eph":1e300"#), ACCURACY_UNKNOWN);
        assert_eq!(with(r#","eph":-1"#), ACCURACY_UNKNOWN);
        assert_eq!(with(r#","eph":0.2"#), 1);
        assert_eq!(with(r#","eph":65534.0"#), 65534);
    }

    /// Malformed input is refused or read as "no fix", never as a position
    /// made of zeros or defaults.
    #[test]
    fn malformed_reports_are_never_a_fix() {
        for bad in [
            "",
            "not json",
            "{",
            r#"{"class":"TPV","mode":3"#,
            "[1,2]",
            r#"{"mode":3,"lat":44.0,"lon":87.0}"#,
            r#"{"class":7}"#,
            // NaN and Infinity are not JSON.
            r#"{"class":"TPV","mode":3,"time":"2026-07-01T08:00:08Z","lat":NaN,"lon":87.0}"#,
            r#"{"class":"TPV","mode":3,"time":"2026-07-01T08:00:08Z","lat":44.0,"lon":Infinity}"#,
            // Beyond a double.
            r#"{"class":"TPV","mode":3,"time":"2026-07-01T08:00:08Z","lat":1e400,"lon":87.0}"#,
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let t = r#""time":"2026-07-01T08:00:08Z""#;
        for not_a_fix in [
            // No fix: mode 0 (unknown) or 1.
            format!(r#"{{"class":"TPV","mode":1,{t},"lat":44.0,"lon":87.0}}"#),
            format!(r#"{{"class":"TPV","mode":0,{t},"lat":44.0,"lon":87.0}}"#),
            format!(r#"{{"class":"TPV",{t},"lat":44.0,"lon":87.0}}"#),
            format!(r#"{{"class":"TPV","mode":"3",{t},"lat":44.0,"lon":87.0}}"#),
            format!(r#"{{"class":"TPV","mode":-3,{t},"lat":44.0,"lon":87.0}}"#),
            // Missing, non-numeric or out-of-range coordinates.
            format!(r#"{{"class":"TPV","mode":3,{t},"lon":87.0}}"#),
            format!(r#"{{"class":"TPV","mode":3,{t},"lat":"44.0","lon":87.0}}"#),
            format!(r#"{{"class":"TPV","mode":3,{t},"lat":null,"lon":87.0}}"#),
            format!(r#"{{"class":"TPV","mode":3,{t},"lat":90.5,"lon":87.0}}"#),
            format!(r#"{{"class":"TPV","mode":3,{t},"lat":44.0,"lon":-180.01}}"#),
            // 0°, 0°: what a receiver with nothing says.
            format!(r#"{{"class":"TPV","mode":3,{t},"lat":0.0,"lon":0.0}}"#),
            // No time, or a time that is not RFC 3339 UTC.
            r#"{"class":"TPV","mode":3,"lat":44.0,"lon":87.0}"#.to_string(),
            r#"{"class":"TPV","mode":3,"time":1782892808,"lat":44.0,"lon":87.0}"#.to_string(),
            r#"{"class":"TPV","mode":3,"time":"2026-07-01 08:00:08","lat":44.0,"lon":87.0}"#
                .to_string(),
            r#"{"class":"TPV","mode":3,"time":"2026-02-30T08:00:08Z","lat":44.0,"lon":87.0}"#
                .to_string(),
        ] {
            assert_eq!(tpv(&not_a_fix), None, "{not_a_fix}");
        }
    }

    #[test]
    fn times_are_read_exactly() {
        assert_eq!(rfc3339_us("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_us("1969-12-31T23:59:59.999999Z"), Some(-1));
        assert_eq!(
            rfc3339_us("2000-02-29T00:00:00Z"),
            Some(951_782_400_000_000)
        );
        assert_eq!(
            rfc3339_us("2026-07-01T08:00:15.123456789Z"),
            Some(1_782_892_815_123_456)
        );
        for bad in [
            "2026-07-01T08:00:15",
            "2026-07-01T08:00:15+08:00",
            "2026-07-01T08:00:15.Z",
            "2026-07-01T08:00:15.1234567890Z",
            "2026-13-01T08:00:15Z",
            "2026-07-01T24:00:15Z",
            "2026-07-01T08:00:15.1e3Z",
            "+026-07-01T08:00:15Z",
            "2026-07-01T08:00:1éZ",
        ] {
            assert_eq!(rfc3339_us(bad), None, "{bad}");
        }
    }
}
