//! Step 11 of `docs/FORMAT.md` §4: a segment's frame count against its
//! span and frame rate, and the `frames-dropped` events that explain a
//! difference.

use std::collections::{BTreeMap, BTreeSet};

use super::{Finding, FindingKind};
use crate::entry::{Event, SignedEntry, PTS_HZ};

/// How many frames a segment's count may differ from its span before it is
/// a finding: one, for rounding at either end of a span that is not a whole
/// number of frames (a frame rate that does not divide 90 kHz).
const FRAME_COUNT_TOLERANCE: i128 = 1;

/// Step 11 of `docs/FORMAT.md` §4: a segment whose `video_frames` is more
/// than [`FRAME_COUNT_TOLERANCE`] away from `round(span × fps)` is
/// `frame-count-mismatch`, unless a kept `frames-dropped` event (anywhere
/// in the chain) names its recording and part. A salvaged segment
/// (RECOVERED) and one with a zero frame rate term state no rate to check.
pub(super) fn check_frame_counts(by_seq: &BTreeMap<u64, SignedEntry>, findings: &mut Vec<Finding>) {
    let declared: BTreeSet<([u8; 16], u32)> = by_seq
        .values()
        .filter_map(|e| match e.entry.event() {
            Some(Event::FramesDropped {
                recording, part, ..
            }) => Some((*recording, *part)),
            _ => None,
        })
        .collect();
    for (&seq, e) in by_seq {
        let Some(s) = e.entry.segment() else { continue };
        let Some(expected) = expected_frames(s) else {
            continue;
        };
        let counted = i128::from(s.video_frames);
        if (expected - counted).abs() > FRAME_COUNT_TOLERANCE
            && !declared.contains(&(s.recording, s.part))
        {
            findings.push(Finding {
                seq: Some(seq),
                kind: FindingKind::FrameCountMismatch,
                detail: format!(
                    "{counted} video frames, but {:.3} s at {}/{} fps hold {expected}, \
                     and no signed frames-dropped event names this segment",
                    s.seconds(),
                    s.codec.fps_num,
                    s.codec.fps_den
                ),
            });
        }
    }
}

/// The frames a segment's span holds at its frame rate, rounded to the
/// nearest (half up), exactly in 128 bits; `None` when the segment states no
/// rate (RECOVERED, or `fps_num` or `fps_den` 0).
fn expected_frames(s: &crate::entry::SegmentBody) -> Option<i128> {
    if s.recovered() || s.codec.fps_num == 0 || s.codec.fps_den == 0 {
        return None;
    }
    let span = i128::from(s.end_pts) - i128::from(s.start_pts);
    let den = i128::from(PTS_HZ) * i128::from(s.codec.fps_den);
    Some((2 * span * i128::from(s.codec.fps_num) + den) / (2 * den))
}
