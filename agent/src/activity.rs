//! What a custodian reads in `status` and `verify`: the recordings of a
//! chain (case, activity, when each started and stopped, and why) and its
//! events, gathered from the signed entries. The values are machine values
//! (µs since the epoch, as signed: the device's wall clock), serialised so
//! in `status --json`; [`Activity::render`] writes them for people in local
//! time (`localtime.rs`).
//!
//! What it does not do: judge anything (the chain verifier does), or read
//! files (the callers hand it entries: all of `chain.log` for `verify`, the
//! newest ones through the sync store's offsets for `status`).

use std::fmt::Write as _;

use fieldseal_proto::codec::Decode;
use fieldseal_proto::entry::{Entry, Event, SegmentBody, SignedEntry, PTS_HZ};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::localtime::format_us_in;

/// One recording: from a `recording-started` event (or its first segment,
/// when the start is not among the entries looked at) to its stop.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    /// Its id, 32 hex digits.
    pub id: String,
    /// The case number it is tagged with (the latest tag).
    pub case: Option<String>,
    /// The activity type it is tagged with (the latest tag).
    pub activity: Option<String>,
    /// Device wall clock when it started (its start event, else its first
    /// frame), µs.
    pub started_us: Option<i64>,
    /// Device wall clock when it stopped (its stop event, else the end of
    /// its last segment when something else ended it), µs.
    pub stopped_us: Option<i64>,
    /// Why it stopped: a stop event's reason (`user-stop`, `storage-full`,
    /// …), or `no-stop-signed` when a restart or power loss ended it.
    pub stop_reason: Option<String>,
    /// Its segments among the entries looked at.
    pub segments: u64,
    /// Seconds of media in them.
    pub media_seconds: f64,
}

/// One event of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLine {
    /// Its seq.
    pub seq: u64,
    /// Device wall clock it was signed at, µs.
    pub wall_us: i64,
    /// Its name (`recording-started`, …).
    pub name: String,
    /// What it says, in words (no times: those are `wall_us`).
    pub detail: String,
}

/// The recordings and events of some entries of a chain, in chain order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// The recordings, oldest first.
    pub recordings: Vec<Recording>,
    /// The events, oldest first.
    pub events: Vec<EventLine>,
    /// Entries looked at.
    pub entries: u64,
}

/// Device wall clock (µs) at a segment's first frame: the entry's wall
/// time less the monotonic time since that frame.
fn segment_start(e: &Entry, s: &SegmentBody) -> i64 {
    let since = i64::try_from(e.mono_us.saturating_sub(s.start_mono_us)).unwrap_or(0);
    e.wall_us.saturating_sub(since)
}

fn segment_us(s: &SegmentBody) -> i64 {
    let ticks = i128::from(s.end_pts) - i128::from(s.start_pts);
    i64::try_from(ticks * 1_000_000 / i128::from(PTS_HZ)).unwrap_or(0)
}

fn tags(case: Option<&str>, activity: Option<&str>) -> String {
    match (case, activity) {
        (None, None) => "no case".into(),
        (Some(c), None) => format!("case {c}"),
        (None, Some(a)) => format!("activity {a}"),
        (Some(c), Some(a)) => format!("case {c}, activity {a}"),
    }
}

/// How long before `at_us` (an entry's wall time) the receiver took a fix,
/// in words: time-zone free, as the receiver's clock and the device's are
/// both UTC.
fn fix_age(fix_us: i64, at_us: i64) -> String {
    let s = (i128::from(at_us) - i128::from(fix_us)) as f64 / 1e6;
    if s >= 0.0 {
        format!("{s:.1} s before")
    } else {
        format!("{:.1} s after", -s)
    }
}

/// What an event signed at `at_us` says, in words.
fn detail(ev: &Event, at_us: i64) -> String {
    match ev {
        Event::AgentStarted { software } => software.clone(),
        Event::RecordingStarted { case, activity, .. } | Event::TagChanged { case, activity } => {
            tags(case.as_deref(), activity.as_deref())
        }
        Event::RecordingStopped { reason, .. } => reason.as_str().into(),
        Event::PreEventAttached {
            segments, media_us, ..
        } => format!(
            "{segments} segment(s), {:.1} s from before the start",
            *media_us as f64 / 1e6
        ),
        Event::AudioMuted | Event::AudioUnmuted => String::new(),
        Event::StorageLow {
            used_bytes,
            limit_bytes,
        }
        | Event::StorageFull {
            used_bytes,
            limit_bytes,
        } => format!("{used_bytes} of {limit_bytes} bytes used"),
        Event::BatteryLow { percent } => format!("{percent}% left"),
        Event::ClockAdjusted {
            old_wall_us,
            new_wall_us,
        } => format!(
            "set by {:+.1} s",
            (i128::from(*new_wall_us) - i128::from(*old_wall_us)) as f64 / 1e6
        ),
        Event::PowerLossRecovered {
            gap_us, salvaged, ..
        } => format!(
            "{:.1} s without power, {salvaged} torn segment(s) salvaged",
            *gap_us as f64 / 1e6
        ),
        Event::IdentityShown { officer } => officer
            .as_deref()
            .map_or_else(String::new, |o| format!("officer {o}")),
        Event::CaptureBacklog {
            pending_segments,
            dropped_frames,
        } => format!("{pending_segments} segment(s) waiting, {dropped_frames} frame(s) dropped"),
        Event::FixAcquired { fix_us } => format!("fix taken {}", fix_age(*fix_us, at_us)),
        Event::FixLost { last_fix_us } => format!("last fix {}", fix_age(*last_fix_us, at_us)),
        Event::ReceiverUnreachable { last_fix_us } => last_fix_us.map_or_else(
            || "gpsd does not answer; no fix yet".into(),
            |f| format!("gpsd does not answer; last fix {}", fix_age(f, at_us)),
        ),
        Event::ReceiverBack => "gpsd answers again".into(),
        Event::FramesDropped {
            part,
            first_pts,
            end_pts,
            frames,
            ..
        } => format!(
            "{frames} video frame(s) dropped in part {part} of the recording, over {:.2} s",
            (i128::from(*end_pts) - i128::from(*first_pts)) as f64 / 90_000.0
        ),
    }
}

impl Activity {
    /// Gather the recordings and events of `entries` (in chain order; bytes
    /// that do not decode are passed over: the verifier reports them).
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Activity {
        let mut a = Activity::default();
        // The recording still open: its index in `a.recordings`, and the
        // end of its last segment.
        let mut open: Option<(usize, Option<i64>)> = None;
        for bytes in entries {
            a.entries += 1;
            let Ok(e) = SignedEntry::from_bytes(bytes) else {
                continue;
            };
            let x = &e.entry;
            match &x.body {
                fieldseal_proto::entry::Body::Segment(s) => {
                    let id = hex::encode(s.recording);
                    let start = segment_start(x, s);
                    let end = start.saturating_add(segment_us(s));
                    let i = match open {
                        Some((i, _)) if a.recordings[i].id == id => i,
                        _ => {
                            a.close(open, "no-stop-signed");
                            a.recordings.push(Recording {
                                id,
                                started_us: Some(start),
                                ..Recording::default()
                            });
                            a.recordings.len() - 1
                        }
                    };
                    let r = &mut a.recordings[i];
                    r.segments += 1;
                    r.media_seconds += s.seconds();
                    if r.case.is_none() && r.activity.is_none() {
                        r.case.clone_from(&s.case);
                        r.activity.clone_from(&s.activity);
                    }
                    open = Some((i, Some(end)));
                }
                fieldseal_proto::entry::Body::Event(ev) => {
                    a.events.push(EventLine {
                        seq: e.seq(),
                        wall_us: x.wall_us,
                        name: ev.name().into(),
                        detail: detail(ev, x.wall_us),
                    });
                    match ev {
                        Event::RecordingStarted {
                            recording,
                            case,
                            activity,
                        } => {
                            let id = hex::encode(recording);
                            // Pre-event segments may come first, already
                            // under this recording's id.
                            let i = match open {
                                Some((i, _)) if a.recordings[i].id == id => i,
                                _ => {
                                    a.close(open, "no-stop-signed");
                                    a.recordings.push(Recording {
                                        id,
                                        ..Recording::default()
                                    });
                                    a.recordings.len() - 1
                                }
                            };
                            let r = &mut a.recordings[i];
                            r.started_us = Some(x.wall_us);
                            r.case.clone_from(case);
                            r.activity.clone_from(activity);
                            open = Some((i, open.and_then(|(_, end)| end)));
                        }
                        Event::TagChanged { case, activity } => {
                            if let Some((i, _)) = open {
                                a.recordings[i].case.clone_from(case);
                                a.recordings[i].activity.clone_from(activity);
                            }
                        }
                        Event::RecordingStopped { reason, .. } => {
                            if let Some((i, _)) = open.take() {
                                a.recordings[i].stopped_us = Some(x.wall_us);
                                a.recordings[i].stop_reason = Some(reason.as_str().into());
                            }
                        }
                        Event::AgentStarted { .. } | Event::PowerLossRecovered { .. } => {
                            a.close(open.take(), "no-stop-signed");
                        }
                        _ => {}
                    }
                }
            }
        }
        a
    }

    /// Close a recording that ended without its stop event, at the end of
    /// its last segment.
    fn close(&mut self, open: Option<(usize, Option<i64>)>, why: &str) {
        if let Some((i, end)) = open {
            let r = &mut self.recordings[i];
            if r.stop_reason.is_none() {
                r.stopped_us = end;
                r.stop_reason = Some(why.into());
            }
        }
    }

    /// Keep the newest `recordings` recordings and `events` events.
    pub fn newest(mut self, recordings: usize, events: usize) -> Activity {
        let r = self.recordings.len().saturating_sub(recordings);
        self.recordings.drain(..r);
        let e = self.events.len().saturating_sub(events);
        self.events.drain(..e);
        self
    }

    /// The recordings and events for people, in `tz`, each line indented
    /// by `indent`.
    pub fn render(&self, tz: &TimeZone, indent: &str) -> String {
        let t = |us: Option<i64>| us.map_or_else(|| "?".into(), |us| format_us_in(us, tz));
        let mut out = String::new();
        for r in &self.recordings {
            let until = match (&r.stop_reason, r.stopped_us) {
                (None, _) => "still recording".to_owned(),
                (Some(why), at) if why == "no-stop-signed" => {
                    format!("ended {} without a signed stop", t(at))
                }
                (Some(why), at) => format!("stopped {} ({why})", t(at)),
            };
            let _ = writeln!(
                out,
                "{indent}recording {}  {}\n{indent}  started {}, {until}; {} segment(s), {:.1} s",
                &r.id[..r.id.len().min(8)],
                tags(r.case.as_deref(), r.activity.as_deref()),
                t(r.started_us),
                r.segments,
                r.media_seconds
            );
        }
        for e in &self.events {
            let detail = if e.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", e.detail)
            };
            let _ = writeln!(
                out,
                "{indent}{}  seq {}  {}{detail}",
                format_us_in(e.wall_us, tz),
                e.seq,
                e.name
            );
        }
        out
    }
}

/// The newest entries of the store, enough to hold the latest recording's
/// start: looking back from the head until a `recording-started` event, at
/// most `max` entries (a day of 4 s segments is about 20,000).
///
/// # Errors
/// I/O errors of the store.
pub fn recent(store: &dyn crate::sync::SyncStore, max: u64) -> std::io::Result<Vec<Vec<u8>>> {
    let Some(head) = store.head() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for seq in (head.saturating_sub(max.saturating_sub(1))..=head).rev() {
        let Some(bytes) = store.entry(seq)? else {
            break;
        };
        let started = SignedEntry::from_bytes(&bytes)
            .is_ok_and(|e| matches!(e.entry.event(), Some(Event::RecordingStarted { .. })));
        out.push(bytes);
        if started {
            break;
        }
    }
    out.reverse();
    Ok(out)
}

/// Entries `status` looks back at most for the latest recording's start: a
/// day of 4 s segments, each a read of a few hundred bytes at a known
/// offset.
pub const STATUS_LOOK_BACK: u64 = 20_000;

/// The latest recording and the last few events, as `status` shows them
/// (`null` in its JSON if the store cannot be read).
pub fn status_recent(store: &dyn crate::sync::SyncStore) -> serde_json::Value {
    match recent(store, STATUS_LOOK_BACK) {
        Ok(entries) => {
            let a = Activity::from_entries(entries.iter().map(Vec::as_slice)).newest(1, 5);
            serde_json::to_value(a).unwrap_or_default()
        }
        Err(e) => {
            tracing::warn!(error = %e, "status: the newest entries could not be read");
            serde_json::Value::Null
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldseal_proto::codec::Encode;

    #[test]
    fn recordings_have_their_tags_start_stop_and_reason() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        // Agent start, then two recordings of 2 and 1 segments, stopped by
        // the user (the sample chain's day).
        let chain = fieldseal_proto::sample::build(&key, &[2, 1], 100);
        let bytes: Vec<Vec<u8>> = chain.entries.iter().map(Encode::to_bytes).collect();
        let a = Activity::from_entries(bytes.iter().map(Vec::as_slice));
        assert_eq!(a.entries, chain.entries.len() as u64);
        assert_eq!(a.recordings.len(), 2, "{a:?}");
        for r in &a.recordings {
            assert_eq!(r.stop_reason.as_deref(), Some("user-stop"), "{r:?}");
            assert!(r.started_us.unwrap() < r.stopped_us.unwrap(), "{r:?}");
            assert!(r.case.is_some(), "{r:?}");
        }
        assert_eq!(a.recordings[0].segments, 2);
        assert_eq!(a.recordings[1].segments, 1);
        let names: Vec<&str> = a.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names.first(), Some(&"agent-started"), "{names:?}");
        assert_eq!(
            names.iter().filter(|n| **n == "recording-stopped").count(),
            2
        );

        // Cut before the last stop: the last recording is still going.
        let cut = bytes.len() - 1;
        let open = Activity::from_entries(bytes[..cut].iter().map(Vec::as_slice));
        assert_eq!(open.recordings.last().unwrap().stop_reason, None);

        // Rendered in the zone given, with the offset.
        let cst = TimeZone::posix("CST-8").unwrap();
        let text = a.render(&cst, "  ");
        let first = &a.recordings[0];
        assert!(
            text.contains(&format!(
                "started {}",
                format_us_in(first.started_us.unwrap(), &cst)
            )),
            "{text}"
        );
        assert!(text.contains("+08:00 (user-stop)"), "{text}");
        assert!(
            !text.contains(&first.started_us.unwrap().to_string()),
            "{text}"
        );

        let newest = a.clone().newest(1, 2);
        assert_eq!(newest.recordings, a.recordings[1..]);
        assert_eq!(newest.events, a.events[a.events.len() - 2..]);
    }
}
