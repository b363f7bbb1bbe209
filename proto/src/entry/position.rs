//! Where the device was when it signed an entry: the `position` field of the
//! entry header (`docs/FORMAT.md` §3.1). One tag byte, then that tag's fields:
//!
//! ```text
//! tag 0   nothing said                (entries of devices without positions)
//! tag 1   point                       lat_e7 i32, lon_e7 i32, accuracy_m u16
//! tag 2   fix                         lat_e7 i32, lon_e7 i32, accuracy_m u16, fix_us i64
//! tag 3   no fix                      why u8: 1 no-receiver, 2 receiver-unreachable,
//!                                             3 no-fix-yet, 4 fix-lost
//! ```
//!
//! Tags 0 and 1 are the two values the field had before fix times and "no
//! fix" existed (`opt<pos>`), so every entry signed then decodes to the same
//! value and re-encodes to the same bytes: its hash and signature are
//! unchanged. Tag 1 is never written any more: a fix always has its time.
//! "No fix" is said in words, never as a zero position.

use serde::Serialize;

use crate::codec::{DecodeError, Reader};

/// A place on the earth, with its accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Point {
    /// Latitude in units of 1e-7 degree, −90° … +90°.
    pub lat_e7: i32,
    /// Longitude in units of 1e-7 degree, −180° … +180°.
    pub lon_e7: i32,
    /// Estimated accuracy radius in metres (65535 = unknown or worse).
    pub accuracy_m: u16,
}

/// Accuracy value meaning "unknown, or 65535 m or worse".
pub const ACCURACY_UNKNOWN: u16 = u16::MAX;

impl Point {
    /// Whether latitude and longitude are in their ranges (the format's rule;
    /// nothing else about the values is checked).
    pub fn valid(&self) -> bool {
        self.lat_e7.unsigned_abs() <= 900_000_000 && self.lon_e7.unsigned_abs() <= 1_800_000_000
    }
}

/// Why an entry has no fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoFix {
    /// The device has no positioning receiver configured.
    NoReceiver = 1,
    /// A receiver is configured, but its service (gpsd) does not answer.
    ReceiverUnreachable = 2,
    /// The receiver answers but has had no fix since it became reachable.
    NotYet = 3,
    /// The receiver had a fix, but none recent enough.
    Lost = 4,
}

impl NoFix {
    /// The reason as it appears in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            NoFix::NoReceiver => "no-receiver",
            NoFix::ReceiverUnreachable => "receiver-unreachable",
            NoFix::NotYet => "no-fix-yet",
            NoFix::Lost => "fix-lost",
        }
    }

    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        Ok(match v {
            1 => NoFix::NoReceiver,
            2 => NoFix::ReceiverUnreachable,
            3 => NoFix::NotYet,
            4 => NoFix::Lost,
            _ => {
                return Err(DecodeError::InvalidValue {
                    what: "no-fix reason",
                    value: u64::from(v),
                })
            }
        })
    }
}

/// What an entry states about where the device was (tags 1 to 3; an
/// entry that states nothing has `position: None`, tag 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Tag 1: a place without the time of its fix, as entries were signed
    /// before fix times were recorded. Read, never written.
    Point(Point),
    /// Tag 2: a receiver's fix.
    Fix {
        /// Where.
        point: Point,
        /// When the receiver took the fix, by its own clock (GPS time), µs
        /// since the Unix epoch.
        fix_us: i64,
    },
    /// Tag 3: no fix, and why.
    NoFix(NoFix),
}

impl Position {
    /// Whether the fields are in their ranges.
    pub fn valid(&self) -> bool {
        match self {
            Position::Point(p) | Position::Fix { point: p, .. } => p.valid(),
            Position::NoFix(_) => true,
        }
    }

    /// The place, if the entry states one.
    pub fn point(&self) -> Option<Point> {
        match self {
            Position::Point(p) | Position::Fix { point: p, .. } => Some(*p),
            Position::NoFix(_) => None,
        }
    }
}

fn put_point(out: &mut Vec<u8>, p: &Point) {
    out.extend_from_slice(&p.lat_e7.to_be_bytes());
    out.extend_from_slice(&p.lon_e7.to_be_bytes());
    out.extend_from_slice(&p.accuracy_m.to_be_bytes());
}

/// Append the field's bytes (tag and fields).
pub(super) fn encode(out: &mut Vec<u8>, p: Option<&Position>) {
    match p {
        None => out.push(0),
        Some(Position::Point(p)) => {
            out.push(1);
            put_point(out, p);
        }
        Some(Position::Fix { point, fix_us }) => {
            out.push(2);
            put_point(out, point);
            out.extend_from_slice(&fix_us.to_be_bytes());
        }
        Some(Position::NoFix(why)) => {
            out.push(3);
            out.push(*why as u8);
        }
    }
}

fn get_point(r: &mut Reader<'_>) -> Result<Point, DecodeError> {
    let p = Point {
        lat_e7: r.i32()?,
        lon_e7: r.i32()?,
        accuracy_m: r.u16()?,
    };
    if p.valid() {
        Ok(p)
    } else {
        Err(DecodeError::InvalidValue {
            what: "position",
            value: 0,
        })
    }
}

/// Read the field.
pub(super) fn decode(r: &mut Reader<'_>) -> Result<Option<Position>, DecodeError> {
    Ok(match r.u8()? {
        0 => None,
        1 => Some(Position::Point(get_point(r)?)),
        2 => Some(Position::Fix {
            point: get_point(r)?,
            fix_us: r.i64()?,
        }),
        3 => Some(Position::NoFix(NoFix::from_u8(r.u8()?)?)),
        t => {
            return Err(DecodeError::InvalidValue {
                what: "position tag",
                value: u64::from(t),
            })
        }
    })
}

/// The field's bytes (tag and fields) as they are in the signing bytes: how
/// a writer keeps a position it will sign later.
pub fn position_bytes(p: Option<&Position>) -> Vec<u8> {
    let mut out = Vec::with_capacity(19);
    encode(&mut out, p);
    out
}

/// The position whose field bytes are exactly `b`.
///
/// # Errors
/// As the entry decoder for the field; trailing bytes are
/// [`DecodeError::TrailingData`].
pub fn position_from_bytes(b: &[u8]) -> Result<Option<Position>, DecodeError> {
    let mut r = Reader::new(b);
    let p = decode(&mut r)?;
    if r.remaining() > 0 {
        return Err(DecodeError::TrailingData {
            what: "position",
            count: r.remaining(),
        });
    }
    Ok(p)
}

/// A time in µs since the Unix epoch as UTC text, `2026-07-01T08:00:15.250Z`
/// (milliseconds shown when not zero): for human reports, which proto
/// writes without a date library. Proleptic Gregorian calendar, any i64.
pub fn utc_text(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days, in i128 so that no i64 overflows.
    let z = i128::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i128::from(m <= 2);
    let (h, mi, s) = (sod / 3600, sod % 3600 / 60, sod % 60);
    let frac = if micros == 0 {
        String::new()
    } else if micros % 1000 == 0 {
        format!(".{:03}", micros / 1000)
    } else {
        format!(".{micros:06}")
    };
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}Z")
}

/// Degrees from units of 1e-7 degree, exactly as text: `44.0110000`.
pub fn degrees_text(e7: i32) -> String {
    let sign = if e7 < 0 { "-" } else { "" };
    let a = e7.unsigned_abs();
    format!("{sign}{}.{:07}", a / 10_000_000, a % 10_000_000)
}

impl std::fmt::Display for Position {
    /// `44.0110000, 87.3080000 ±8 m, fix 2026-07-01T08:00:15Z`, or
    /// `no fix (fix-lost)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let point = |f: &mut std::fmt::Formatter<'_>, p: &Point| {
            write!(f, "{}, {}", degrees_text(p.lat_e7), degrees_text(p.lon_e7))?;
            if p.accuracy_m == ACCURACY_UNKNOWN {
                write!(f, " (accuracy unknown)")
            } else {
                write!(f, " ±{} m", p.accuracy_m)
            }
        };
        match self {
            Position::Point(p) => {
                point(f, p)?;
                write!(f, ", fix time not recorded")
            }
            Position::Fix { point: p, fix_us } => {
                point(f, p)?;
                write!(f, ", fix {}", utc_text(*fix_us))
            }
            Position::NoFix(why) => write!(f, "no fix ({})", why.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(p: Option<Position>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, p.as_ref());
        let mut r = Reader::new(&out);
        assert_eq!(decode(&mut r).unwrap(), p);
        assert_eq!(r.remaining(), 0);
        out
    }

    #[test]
    fn every_tag_round_trips_and_the_old_two_keep_their_bytes() {
        let pt = Point {
            lat_e7: 440_110_000,
            lon_e7: 873_080_000,
            accuracy_m: 8,
        };
        assert_eq!(round_trip(None), [0]);
        // The bytes `opt<pos>` gave before fix times existed.
        assert_eq!(
            hex::encode(round_trip(Some(Position::Point(pt)))),
            "011a3b8bb0340a24c00008"
        );
        assert_eq!(
            hex::encode(round_trip(Some(Position::Fix {
                point: pt,
                fix_us: 1_782_892_815_000_000
            }))),
            "021a3b8bb0340a24c000080006558814e921c0"
        );
        for (why, byte) in [
            (NoFix::NoReceiver, 1),
            (NoFix::ReceiverUnreachable, 2),
            (NoFix::NotYet, 3),
            (NoFix::Lost, 4),
        ] {
            assert_eq!(round_trip(Some(Position::NoFix(why))), [3, byte]);
        }
    }

    #[test]
    fn bad_tags_reasons_and_ranges_are_malformed() {
        for bad in [
            &[4u8][..],
            &[255],
            &[3, 0],
            &[3, 5],
            // latitude 90.0000001°
            &[
                2, 0x35, 0xa4, 0xe9, 0x01, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        ] {
            let e = decode(&mut Reader::new(bad)).unwrap_err();
            assert!(
                matches!(e, DecodeError::InvalidValue { .. }),
                "{bad:?}: {e:?}"
            );
        }
        // Cut short: incomplete, not malformed.
        assert!(decode(&mut Reader::new(&[2, 0, 0]))
            .unwrap_err()
            .is_incomplete());
    }

    #[test]
    fn times_and_degrees_read_as_people_write_them() {
        assert_eq!(utc_text(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_text(1_782_892_815_000_000), "2026-07-01T08:00:15Z");
        assert_eq!(utc_text(1_782_892_815_250_000), "2026-07-01T08:00:15.250Z");
        assert_eq!(utc_text(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(utc_text(951_782_400_000_000), "2000-02-29T00:00:00Z");
        // The extremes do not panic.
        let _ = (utc_text(i64::MIN), utc_text(i64::MAX));
        assert_eq!(degrees_text(440_110_000), "44.0110000");
        assert_eq!(degrees_text(-5), "-0.0000005");
        assert_eq!(degrees_text(-1_800_000_000), "-180.0000000");
        let p = Position::Fix {
            point: Point {
                lat_e7: 440_110_000,
                lon_e7: 873_080_000,
                accuracy_m: 8,
            },
            fix_us: 1_782_892_815_000_000,
        };
        assert_eq!(
            p.to_string(),
            "44.0110000, 87.3080000 ±8 m, fix 2026-07-01T08:00:15Z"
        );
        assert_eq!(
            Position::NoFix(NoFix::ReceiverUnreachable).to_string(),
            "no fix (receiver-unreachable)"
        );
    }
}
