//! A segment's `frames-dropped` event (issue 15) survives a power cut
//! between the segment's entry and the event: the segment's draft
//! (`.partial/SEQ.json`) keeps the drop until the event is durable, and the
//! next start signs the event from it. Without it, the segment would read as
//! a `frame-count-mismatch` (proto/src/chain/frames.rs) after recovery.

use fieldseal_proto::entry::Event;
use fieldseal_proto::identity::Signer;
use serde::{Deserialize, Serialize};

use super::{io_err, SegmentDraft, Spool, SpoolError};
use crate::clock::Clock;

/// Video frames the capture dropped inside a segment, as its draft keeps
/// them (the fields of the `frames-dropped` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedSpan {
    /// PTS (90 kHz) the first dropped frame would have had.
    pub first_pts: i64,
    /// End of the last dropped frame (90 kHz).
    pub end_pts: i64,
    /// How many video frames were dropped.
    pub frames: u32,
}

impl Spool {
    /// The segment `seq`'s `frames-dropped` event is durable: forget the
    /// draft kept for it, durably (else the next start would sign the event
    /// a second time).
    ///
    /// # Errors
    /// I/O errors fsyncing `.partial/`.
    pub fn drop_event_signed(&mut self, seq: u64) -> Result<(), SpoolError> {
        let partial = self.dir.join("media/.partial");
        let _ = self
            .fs
            .remove_file(&partial.join(format!("{seq:012}.json")));
        self.fs.sync_dir(&partial).map_err(io_err(&partial))
    }

    /// Drafts of signed segments (seq below the head) that still owe their
    /// `frames-dropped` event: a cut came between the two. Read before
    /// salvage, which signs new segments and writes drafts of its own.
    pub(super) fn owed_drop_events(&self) -> Result<Vec<SegmentDraft>, SpoolError> {
        let partial = self.dir.join("media/.partial");
        let mut owed = Vec::new();
        for e in self.fs.list(&partial).map_err(io_err(&partial))? {
            let Some(Ok(seq)) = e.name.strip_suffix(".json").map(str::parse::<u64>) else {
                continue;
            };
            if seq >= self.head.next_seq {
                continue;
            }
            let draft = self
                .fs
                .read(&partial.join(&e.name))
                .ok()
                .and_then(|b| serde_json::from_slice::<SegmentDraft>(&b).ok());
            if let Some(d) = draft.filter(|d| d.dropped.is_some()) {
                owed.push((seq, d));
            }
        }
        owed.sort_by_key(|(seq, _)| *seq);
        Ok(owed.into_iter().map(|(_, d)| d).collect())
    }

    /// Sign the events [`Spool::owed_drop_events`] found.
    pub(super) fn sign_owed_drop_events(
        &mut self,
        signer: &dyn Signer,
        clock: &dyn Clock,
        owed: Vec<SegmentDraft>,
    ) -> Result<(), SpoolError> {
        for d in owed {
            let Some(span) = d.dropped else { continue };
            let event = Event::FramesDropped {
                recording: d.recording,
                part: d.part,
                first_pts: span.first_pts,
                end_pts: span.end_pts,
                frames: span.frames,
            };
            self.append_event_at(signer, clock, d.position, event)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use fieldseal_proto::chain::FindingKind;

    use super::super::{unknown_draft, verify_dir};
    use super::*;
    use crate::clock::SystemClock;

    /// A cut after a segment with dropped frames was signed and before its
    /// `frames-dropped` event: the next start signs the event from the
    /// draft, and the segment is not a frame-count mismatch.
    #[test]
    fn a_cut_before_the_frames_dropped_event_is_signed_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
        let clock = SystemClock::new();
        let (mut spool, _) = Spool::open(dir.path(), &key, &clock).unwrap();
        let mut draft = unknown_draft(&clock);
        draft.flags = 0;
        (draft.recording, draft.part) = ([3; 16], 2);
        (draft.start_pts, draft.end_pts) = (90_000, 180_000);
        (draft.codec.fps_num, draft.codec.fps_den) = (30, 1);
        // One second at 30 fps holds 30 frames: 10 were dropped.
        draft.video_frames = 20;
        let span = DroppedSpan {
            first_pts: 120_000,
            end_pts: 150_000,
            frames: 10,
        };
        draft.dropped = Some(span);
        let seg = spool
            .append_segment(&key, &clock, draft, &[0x47; 188])
            .unwrap();
        drop(spool); // the cut, before the event

        let (_spool, _) = Spool::open(dir.path(), &key, &clock).unwrap();
        let report = verify_dir(dir.path(), &key.verifying_key(), None).unwrap();
        let kinds: Vec<_> = report.findings.iter().map(|f| (f.seq, f.kind)).collect();
        assert!(
            !kinds.contains(&(Some(seg.seq()), FindingKind::FrameCountMismatch)),
            "{:?}",
            report.findings
        );
        let log = std::fs::read(dir.path().join("chain.log")).unwrap();
        let events: Vec<Event> = fieldseal_proto::chainlog::split(&log)
            .unwrap()
            .records
            .iter()
            .filter_map(|r| {
                use fieldseal_proto::codec::Decode;
                let e = fieldseal_proto::entry::SignedEntry::from_bytes(r).unwrap();
                e.entry.event().cloned()
            })
            .filter(|e| matches!(e, Event::FramesDropped { .. }))
            .collect();
        assert_eq!(
            events,
            [Event::FramesDropped {
                recording: [3; 16],
                part: 2,
                first_pts: 120_000,
                end_pts: 150_000,
                frames: 10,
            }]
        );
        let partial = dir.path().join("media/.partial");
        assert_eq!(std::fs::read_dir(partial).unwrap().count(), 0);
    }
}
