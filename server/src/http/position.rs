//! Where an entry says the device was (`docs/FORMAT.md` §3.1.1), as the API
//! and the playlists show it: the same members as a position object of the
//! verification report (§5), and a short text for a playlist's segment
//! titles that the web page reads.

use fieldseal_proto::chain::SegmentPosition;
use fieldseal_proto::entry::{degrees_text, Position, ACCURACY_UNKNOWN};
use serde::Serialize;

use super::playlist::rfc3339_ms;

/// What an entry states about where the device was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EntryPosition {
    /// `fix`, `no-fix`, or `unstated` (the entry says nothing).
    pub status: String,
    /// Latitude, 1e-7 degree (a fix).
    pub lat_e7: Option<i32>,
    /// Longitude, 1e-7 degree (a fix).
    pub lon_e7: Option<i32>,
    /// Accuracy radius, metres; 65535: unknown (a fix).
    pub accuracy_m: Option<u16>,
    /// When the receiver took the fix, µs since the epoch (its clock); null
    /// for a fix signed before fix times were recorded.
    pub fix_us: Option<i64>,
    /// Why there is no fix: `no-receiver`, `receiver-unreachable`,
    /// `no-fix-yet` or `fix-lost`.
    pub no_fix: Option<String>,
}

impl From<Option<&Position>> for EntryPosition {
    fn from(p: Option<&Position>) -> Self {
        // The report's form, without its seq: one mapping for both.
        let r = SegmentPosition::new(0, p);
        EntryPosition {
            status: r.status.to_owned(),
            lat_e7: r.lat_e7,
            lon_e7: r.lon_e7,
            accuracy_m: r.accuracy_m,
            fix_us: r.fix_us,
            no_fix: r.no_fix.map(str::to_owned),
        }
    }
}

/// The position part of a segment's title in a playlist (`#EXTINF:4.000,seq
/// 12 · TITLE`), or nothing when the entry states none:
/// `44.0110183 87.3000250 ±18 m · fix 2026-07-01T08:00:02.000Z`, `±? m` when
/// the accuracy is unknown, no `· fix …` for a fix signed without its time,
/// `no fix (fix-lost)`. No commas: players split titles at them.
pub fn title(p: Option<&Position>) -> Option<String> {
    let place = |pt: &fieldseal_proto::entry::Point| {
        let acc = if pt.accuracy_m == ACCURACY_UNKNOWN {
            "?".to_owned()
        } else {
            pt.accuracy_m.to_string()
        };
        format!(
            "{} {} ±{acc} m",
            degrees_text(pt.lat_e7),
            degrees_text(pt.lon_e7)
        )
    };
    Some(match p? {
        Position::Point(pt) => place(pt),
        Position::Fix { point, fix_us } => {
            format!("{} · fix {}", place(point), rfc3339_ms(*fix_us))
        }
        Position::NoFix(why) => format!("no fix ({})", why.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldseal_proto::entry::{NoFix, Point};

    #[test]
    fn titles_and_api_members() {
        let point = Point {
            lat_e7: 440_110_183,
            lon_e7: -873_000_250,
            accuracy_m: 18,
        };
        let fix = Position::Fix {
            point,
            fix_us: 1_782_892_802_000_000,
        };
        assert_eq!(
            title(Some(&fix)).unwrap(),
            "44.0110183 -87.3000250 ±18 m · fix 2026-07-01T08:00:02.000Z"
        );
        let unknown = Position::Point(Point {
            accuracy_m: ACCURACY_UNKNOWN,
            ..point
        });
        assert_eq!(
            title(Some(&unknown)).unwrap(),
            "44.0110183 -87.3000250 ±? m"
        );
        let lost = Position::NoFix(NoFix::Lost);
        assert_eq!(title(Some(&lost)).unwrap(), "no fix (fix-lost)");
        assert_eq!(title(None), None);
        let api = serde_json::to_value(EntryPosition::from(Some(&fix))).unwrap();
        assert_eq!(
            api,
            serde_json::json!({"status": "fix", "lat_e7": 440_110_183, "lon_e7": -873_000_250,
                "accuracy_m": 18, "fix_us": 1_782_892_802_000_000_i64, "no_fix": null})
        );
        let api = serde_json::to_value(EntryPosition::from(Some(&lost))).unwrap();
        assert_eq!(api["status"], "no-fix");
        assert_eq!(api["no_fix"], "fix-lost");
        assert_eq!(EntryPosition::from(None).status, "unstated");
    }
}
