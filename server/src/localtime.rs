//! Times for people: µs since the epoch (how every file and signed entry
//! holds them) written as local time with its UTC offset,
//! `2026-11-29 15:04:05 +08:00`, in the zone the `TZ` variable names (an
//! IANA name such as `Asia/Shanghai`, a POSIX rule such as `CST-8`, or a
//! `:path`), else `/etc/localtime`, else UTC — as `date` and `ls` do. The
//! offset is that of the instant shown, so daylight saving time is right on
//! both sides of a change.
//!
//! Only human output uses it (`device list`, a new token's expiry): the API,
//! `--json` and every file keep µs since the epoch. The same as the agent's
//! `localtime.rs` (neither crate depends on the other, and `proto` reads no
//! clock or zone).

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// The local time zone, as described in the module doc.
pub fn zone() -> TimeZone {
    TimeZone::system()
}

/// `us` (µs since the epoch) in local time with its UTC offset.
pub fn format_us(us: i64) -> String {
    format_us_in(us, &zone())
}

/// `us` (µs since the epoch) as a time in `tz` with its UTC offset; a value
/// outside the years -9999 to 9999 as the number it is.
pub fn format_us_in(us: i64, tz: &TimeZone) -> String {
    match Timestamp::from_microsecond(us) {
        Ok(t) => t
            .to_zoned_datetime(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S %:z")
            .to_string(),
        Err(_) => format!("{us} µs since the epoch"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-07-01T09:00:00Z.
    const JULY: i64 = 1_782_896_400_000_000;

    #[test]
    fn times_are_shown_in_the_zone_with_their_offset() {
        let cst = TimeZone::posix("CST-8").unwrap();
        assert_eq!(format_us_in(JULY, &cst), "2026-07-01 17:00:00 +08:00");
        assert_eq!(
            format_us_in(JULY, &TimeZone::UTC),
            "2026-07-01 09:00:00 +00:00"
        );
        // Daylight saving time: the offset of each instant.
        let ny = TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap();
        assert_eq!(format_us_in(JULY, &ny), "2026-07-01 05:00:00 -04:00");
        let january = JULY + 200 * 86_400 * 1_000_000;
        assert_eq!(format_us_in(january, &ny), "2027-01-17 04:00:00 -05:00");
        // Fractions of a second are cut, not rounded.
        assert_eq!(
            format_us_in(JULY + 999_999, &cst),
            "2026-07-01 17:00:00 +08:00"
        );
        assert_eq!(
            format_us_in(i64::MAX, &cst),
            format!("{} µs since the epoch", i64::MAX)
        );
    }
}
