//! Playback over HLS: a recording's playlist (RFC 8216) whose segment URIs
//! are the archived originals, `GET /api/devices/{device}/entries/{seq}/media`
//! — the MPEG-TS files the device signed, never remuxed or changed.
//!
//! One playlist per recording (the 16-byte id every segment of it signs):
//! `VOD` with `#EXT-X-ENDLIST` once the chain shows the recording ended,
//! `EVENT` while it may still grow (the player reloads it: the live view).
//! Each segment carries `#EXT-X-PROGRAM-DATE-TIME`, the device's wall clock
//! at its first frame, so the page shows the device's time at the current
//! position; the URI names the seq, and the segment's title (`#EXTINF:D,seq
//! N · …`) where its entry says it was recorded (`position::title`), which
//! players ignore and the page shows. `#EXT-X-DISCONTINUITY` goes where the
//! timestamps do not run on (a segment's first PTS is not the previous
//! one's end) or where a segment is left out: a VOD playlist leaves out
//! segments whose bytes are not held (not arrived, damaged, expired), and
//! an EVENT playlist stops before the first such one, since EVENT playlists
//! may only grow at their end and the bytes may still arrive.
//!
//! Who may read: as for the media. An officer's playlist lists only the
//! segments they may read. Reading a playlist is a `view` leaf of the range
//! it lists, like an entry list.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use fieldseal_proto::entry::{Entry, Event, SignedEntry, PTS_HZ};
use fieldseal_proto::identity::DeviceId;

use super::auth::{Authed, ClientAddr};
use super::error::{ErrorBody, Path};
use super::evidence::{self, device_param, Scope};
use super::{ApiError, AppState};
use crate::chainindex::ChainIndex;
use crate::Shared;

/// One segment of a recording, as the playlist needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaySegment {
    /// Its seq.
    pub seq: u64,
    /// First presentation timestamp, 90 kHz.
    pub start_pts: i64,
    /// End of presentation, 90 kHz.
    pub end_pts: i64,
    /// Device wall clock at its first frame, µs since the epoch.
    pub wall_us: i64,
    /// Its verified bytes are held (and so can be served).
    pub held: bool,
    /// Where its entry says it was recorded.
    pub position: Option<fieldseal_proto::entry::Position>,
}

impl PlaySegment {
    fn seconds(&self) -> f64 {
        // PTS values of one segment are far below 2^53.
        #[allow(clippy::cast_precision_loss)]
        let s = (self.end_pts.saturating_sub(self.start_pts)).max(0) as f64 / PTS_HZ as f64;
        s
    }
}

/// The playlist of `segs` (one recording, in seq order): VOD if
/// `finished`, EVENT otherwise; `uri` gives a segment's URI by seq.
pub fn render(segs: &[PlaySegment], finished: bool, uri: impl Fn(u64) -> String) -> String {
    let listed: Vec<(&PlaySegment, bool)> = listed(segs, finished);
    let target = listed
        .iter()
        .map(|(s, _)| s.seconds().ceil())
        .fold(1.0_f64, f64::max);
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n");
    let kind = if finished { "VOD" } else { "EVENT" };
    // `write!` to a String cannot fail.
    let _ = write!(
        out,
        "#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:{kind}\n#EXT-X-INDEPENDENT-SEGMENTS\n"
    );
    for (s, discontinuity) in listed {
        if discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let place = super::position::title(s.position.as_ref())
            .map(|t| format!(" · {t}"))
            .unwrap_or_default();
        let _ = write!(
            out,
            "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{:.3},seq {}{place}\n{}\n",
            rfc3339_ms(s.wall_us),
            s.seconds(),
            s.seq,
            uri(s.seq)
        );
    }
    if finished {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// The segments a playlist lists, each with whether a discontinuity comes
/// before it: its first PTS is not the end of the one listed before it (a
/// segment left out between them makes such a jump too).
fn listed(segs: &[PlaySegment], finished: bool) -> Vec<(&PlaySegment, bool)> {
    let mut out = Vec::new();
    let mut prev: Option<&PlaySegment> = None;
    for s in segs {
        if !s.held {
            if !finished {
                break;
            }
            continue;
        }
        out.push((s, prev.is_some_and(|p| p.end_pts != s.start_pts)));
        prev = Some(s);
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of µs since the epoch (UTC).
pub fn rfc3339_ms(us: i64) -> String {
    let ms = us.div_euclid(1000);
    let (day, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = crate::cases::civil_from_days(day);
    let s = ms_of_day / 1000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms_of_day % 1000
    )
}

/// Whether `e`, after a segment of `rec`, shows that `rec` has ended: its
/// stop, a later start, a restart of the agent, or a segment of another
/// recording.
pub(super) fn ends(e: &Entry, rec: &[u8; 16]) -> bool {
    if let Some(s) = e.segment() {
        return &s.recording != rec;
    }
    match e.event() {
        Some(Event::RecordingStopped { recording, .. }) => recording == rec,
        Some(
            Event::RecordingStarted { .. }
            | Event::AgentStarted { .. }
            | Event::PowerLossRecovered { .. },
        ) => true,
        _ => false,
    }
}

/// The readable segments of recording `rec` of `d` and whether it ended;
/// whether the scope could read any segment of it at all.
fn recording(
    sh: &Shared,
    scope: &Scope,
    d: DeviceId,
    rec: &[u8; 16],
) -> Result<(Vec<PlaySegment>, bool, bool), ApiError> {
    if sh.db.device(d).map_err(ApiError::internal)?.is_none() {
        return Err(ApiError::not_found("no such evidence"));
    }
    let all = crate::archive::accepted_range(&sh.dir, &sh.db, d, 0, usize::MAX)
        .map_err(ApiError::internal)?;
    let (mut segs, mut finished, mut any, mut seen) = (Vec::new(), false, false, false);
    for (e, _) in &all {
        match e.entry.segment() {
            Some(s) if &s.recording == rec => {
                seen = true;
                if !evidence::may_read(sh, scope, d, e.entry.wall_us)? {
                    continue;
                }
                any = true;
                segs.push(play_segment(sh, e, s)?);
            }
            _ if seen && ends(&e.entry, rec) => finished = true,
            _ => {}
        }
    }
    if !seen {
        return Err(ApiError::not_found("no such evidence"));
    }
    Ok((segs, finished, any))
}

fn play_segment(
    sh: &Shared,
    e: &SignedEntry,
    s: &fieldseal_proto::entry::SegmentBody,
) -> Result<PlaySegment, ApiError> {
    Ok(PlaySegment {
        seq: e.seq(),
        start_pts: s.start_pts,
        end_pts: s.end_pts,
        wall_us: evidence::segment_start_wall(&e.entry, s),
        held: sh
            .db
            .has_media(e.entry.device, e.seq())
            .map_err(ApiError::internal)?,
        position: e.entry.position,
    })
}

fn recording_param(v: &str) -> Result<[u8; 16], ApiError> {
    let bad = || ApiError::invalid("recording", "32 lower-case hex digits");
    if v.len() != 32 || !v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    let raw = hex::decode(v).map_err(|_| bad())?;
    raw.try_into().map_err(|_| bad())
}

/// A recording's HLS playlist over its original segments (RFC 8216):
/// `VOD` once the recording ended, `EVENT` while it may still grow.
#[utoipa::path(get, path = "/api/devices/{device}/recordings/{recording}/playlist.m3u8", tag = "evidence",
    params(("device" = String, Path, description = "device id, 16 hex digits"),
        ("recording" = String, Path, description = "recording id, 32 hex digits")),
    responses((status = 200, description = "the playlist", content_type = "application/vnd.apple.mpegurl"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn playlist(
    State(s): State<Arc<AppState>>,
    who: Authed,
    ClientAddr(addr): ClientAddr,
    Path((device, rec)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let scope = evidence::scope(&s, &who)?;
    let (d, rec) = (device_param(&device)?, recording_param(&rec)?);
    let st = s.clone();
    let (segs, finished, any) =
        tokio::task::spawn_blocking(move || recording(&st.shared, &scope, d, &rec))
            .await
            .map_err(ApiError::internal)??;
    if !any {
        return Err(evidence::deny(&s, &who, &addr, d, (0, 0), "playlist").await);
    }
    if let (Some(a), Some(b)) = (segs.first(), segs.last()) {
        evidence::viewed(&s, &who, &addr, d, (a.seq, b.seq), "playlist").await?;
    }
    let body = render(&segs, finished, |seq| {
        format!("/api/devices/{d}/entries/{seq}/media")
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::{render, rfc3339_ms, PlaySegment};

    /// Segments of one second each, continuous, held.
    fn segs(n: u64) -> Vec<PlaySegment> {
        (0..n)
            .map(|i| PlaySegment {
                seq: 10 + 2 * i,
                start_pts: 90_000 * i64::try_from(i).unwrap(),
                end_pts: 90_000 * i64::try_from(i + 1).unwrap(),
                wall_us: 1_780_000_000_000_000 + 1_000_000 * i64::try_from(i).unwrap(),
                held: true,
                position: None,
            })
            .collect()
    }

    fn uri(seq: u64) -> String {
        format!("/m/{seq}")
    }

    #[test]
    fn a_finished_recording_is_a_vod_playlist_of_its_original_segments() {
        let p = render(&segs(3), true, uri);
        assert_eq!(
            p,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n\
             #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:40.000Z\n#EXTINF:1.000,seq 10\n/m/10\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:41.000Z\n#EXTINF:1.000,seq 12\n/m/12\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:42.000Z\n#EXTINF:1.000,seq 14\n/m/14\n\
             #EXT-X-ENDLIST\n"
        );
    }

    #[test]
    fn a_timestamp_jump_or_a_left_out_segment_is_a_discontinuity() {
        let mut s = segs(4);
        s[2].start_pts += 9000;
        s[2].end_pts += 9000;
        s[3].start_pts = s[2].end_pts;
        s[3].end_pts = s[3].start_pts + 90_000;
        let p = render(&s, true, uri);
        assert_eq!(p.matches("#EXT-X-DISCONTINUITY\n/m").count(), 0);
        assert!(
            p.contains("#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:42"),
            "{p}"
        );
        assert_eq!(p.matches("DISCONTINUITY").count(), 1, "{p}");
        // Not held: left out of a VOD playlist, with a discontinuity.
        let mut s = segs(4);
        s[1].held = false;
        let p = render(&s, true, uri);
        assert!(!p.contains("/m/12"), "{p}");
        assert!(
            p.contains("#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2026-05-28T20:26:42"),
            "{p}"
        );
        assert_eq!(p.matches("DISCONTINUITY").count(), 1, "{p}");
    }

    #[test]
    fn a_recording_in_progress_is_an_event_playlist_that_only_grows() {
        let mut s = segs(4);
        s[2].held = false;
        let p = render(&s, false, uri);
        assert!(p.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"), "{p}");
        assert!(!p.contains("ENDLIST"), "{p}");
        // Stops before the segment whose bytes have not arrived.
        assert!(
            p.contains("/m/12\n") && !p.contains("/m/14") && !p.contains("/m/16"),
            "{p}"
        );
        assert!(!p.contains("DISCONTINUITY"), "{p}");
    }

    #[test]
    fn each_segment_title_says_where_it_was_recorded() {
        use fieldseal_proto::entry::{NoFix, Point, Position};
        let mut s = segs(2);
        s[0].position = Some(Position::Fix {
            point: Point {
                lat_e7: 440_110_183,
                lon_e7: 873_000_250,
                accuracy_m: 18,
            },
            fix_us: 1_782_892_802_000_000,
        });
        s[1].position = Some(Position::NoFix(NoFix::Lost));
        let p = render(&s, true, uri);
        assert!(
            p.contains(
                "#EXTINF:1.000,seq 10 · 44.0110183 87.3000250 ±18 m · fix 2026-07-01T08:00:02.000Z\n/m/10\n"
            ),
            "{p}"
        );
        assert!(
            p.contains("#EXTINF:1.000,seq 12 · no fix (fix-lost)\n/m/12\n"),
            "{p}"
        );
    }

    #[test]
    fn target_duration_is_the_longest_segment_rounded_up() {
        let mut s = segs(2);
        s[1].end_pts = s[1].start_pts + 4 * 90_000 + 1;
        assert!(render(&s, true, uri).contains("#EXT-X-TARGETDURATION:5\n"));
        assert!(render(&[], false, uri).contains("#EXT-X-TARGETDURATION:1\n"));
    }

    #[test]
    fn times_print_as_rfc_3339_in_utc() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_999), "1970-01-01T00:00:00.001Z");
        assert_eq!(rfc3339_ms(-1_000), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(951_782_400_123_000), "2000-02-29T00:00:00.123Z");
    }
}
