//! In-memory twin of the ffmpeg capture: emits fake segments quickly, without FFmpeg, for unit
//! tests of code that consumes segments (chain writer, spool).

use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Instant;

use super::outbox::Outbox;
use super::{
    Capture, CaptureConfig, CaptureError, CaptureHandle, CaptureStats, CapturedSegment, Pacing,
    Shared, WorkerEnd,
};
use fieldseal_proto::entry::{CodecParams, PTS_HZ};

/// Emits `segments` fake segments (or until stopped when `None`) whose metadata follows the same
/// rules as the real capture: contiguous indexes, `end_pts` of one = `start_pts` of the next,
/// keyframe starts, frame and sample counts from the config. The bytes are a readable header
/// plus filler, deterministic from the index.
#[derive(Debug, Clone)]
pub struct SyntheticCapture {
    /// Frame rate, segment length, audio rate, pacing and backlog bound are taken from here.
    pub config: CaptureConfig,
    /// How many segments before finishing by itself (`None`: until stopped).
    pub segments: Option<u64>,
    /// Length of each fake segment's bytes.
    pub segment_len: usize,
}

impl SyntheticCapture {
    /// A synthetic capture of `segments` segments with the default config, as fast as possible.
    pub fn new(segments: Option<u64>) -> Self {
        SyntheticCapture {
            config: CaptureConfig {
                pacing: Pacing::AsFastAsPossible,
                ..CaptureConfig::default()
            },
            segments,
            segment_len: 1024,
        }
    }

    /// The bytes of fake segment `index`.
    pub fn fake_bytes(index: u64, len: usize) -> Vec<u8> {
        let mut bytes = format!("fieldseal synthetic segment {index}\n").into_bytes();
        let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        while bytes.len() < len {
            // xorshift: cheap, deterministic filler that does not compress to nothing.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.push(x.to_le_bytes()[0]);
        }
        bytes.truncate(len.max(1));
        bytes
    }
}

impl Capture for SyntheticCapture {
    fn start(&self, segments: SyncSender<CapturedSegment>) -> Result<CaptureHandle, CaptureError> {
        self.config.validate()?;
        let codec = self.config.codec_params()?;
        let shared = Arc::new(Shared::default());
        let me = self.clone();
        let thread_shared = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name("capture-synthetic".into())
            .spawn(move || WorkerEnd {
                undelivered: me.run(&thread_shared, segments, &codec),
                error: None,
            })
            .map_err(|_| CaptureError::Panicked)?;
        Ok(CaptureHandle::new(shared, worker))
    }
}

impl SyntheticCapture {
    fn run(
        &self,
        shared: &Shared,
        tx: SyncSender<CapturedSegment>,
        codec: &CodecParams,
    ) -> Vec<CapturedSegment> {
        let cfg = &self.config;
        let stats = &shared.stats;
        let mut outbox = Outbox::new(tx, cfg.max_backlog_segments, Arc::clone(stats));
        let frames = cfg.gop();
        let frame_ticks = cfg.fps.frame_ticks();
        // The samples of the segment's span (4.004 s of them at 30000/1001).
        let samples = u64::from(frames)
            * u64::try_from(frame_ticks).unwrap_or(0)
            * u64::from(cfg.sample_rate)
            / PTS_HZ as u64;
        let t0 = Instant::now();
        let mut index = 0u64;
        loop {
            let last = self.segments.is_some_and(|n| index + 1 >= n) || shared.stopping();
            if self.segments == Some(0) {
                break;
            }
            let start_mono = t0 + cfg.fps.media_time(index * u64::from(frames));
            if cfg.pacing == Pacing::RealTime {
                std::thread::sleep(start_mono.saturating_duration_since(Instant::now()));
            }
            let start_pts = cfg.first_pts
                + i64::try_from(index).unwrap_or(i64::MAX) * frame_ticks * i64::from(frames);
            CaptureStats::add(&stats.frames_captured, u64::from(frames));
            CaptureStats::add(&stats.frames_encoded, u64::from(frames));
            CaptureStats::add(&stats.audio_samples, samples);
            outbox.push(CapturedSegment {
                index,
                bytes: Self::fake_bytes(index, self.segment_len),
                start_pts,
                end_pts: start_pts + frame_ticks * i64::from(frames),
                video_frames: frames,
                audio_samples: samples,
                keyframe_start: true,
                codec: codec.clone(),
                start_mono,
                is_final: last,
                dropped: None,
                streamed: None,
            });
            index += 1;
            if last {
                break;
            }
        }
        outbox.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::PTS_BASE;
    use std::sync::mpsc::sync_channel;

    #[test]
    fn emits_contiguous_segments() {
        let (tx, rx) = sync_channel(16);
        let handle = SyntheticCapture::new(Some(5)).start(tx).unwrap();
        let summary = handle.wait();
        let segs: Vec<_> = rx.try_iter().collect();
        assert_eq!(segs.len(), 5);
        assert!(summary.undelivered.is_empty());
        for (i, w) in segs.windows(2).enumerate() {
            assert_eq!(w[0].index, i as u64);
            assert_eq!(w[0].end_pts, w[1].start_pts);
            assert!(!w[0].is_final);
        }
        assert!(segs[4].is_final);
        assert_eq!(segs[0].start_pts, PTS_BASE);
        assert_eq!(segs[0].video_frames, 120);
        assert_eq!(summary.stats.segments_delivered, 5);
    }

    #[test]
    fn ntsc_segments_run_on_across_the_33_bit_wrap() {
        let (tx, rx) = sync_channel(16);
        let mut cap = SyntheticCapture::new(Some(4));
        cap.config.fps = crate::capture::FrameRate::NTSC;
        cap.config.first_pts = (1 << 33) - 2 * 360_360;
        let summary = cap.start(tx).unwrap().wait();
        assert!(summary.undelivered.is_empty());
        let segs: Vec<_> = rx.try_iter().collect();
        for w in segs.windows(2) {
            assert_eq!(w[0].end_pts, w[1].start_pts);
        }
        for s in &segs {
            // 120 frames of 3003 ticks: 4.004 s, and its audio.
            assert_eq!((s.video_frames, s.end_pts - s.start_pts), (120, 360_360));
            assert_eq!(s.audio_samples, 192_192);
            assert_eq!((s.codec.fps_num, s.codec.fps_den), (30_000, 1001));
        }
        // Past 2^33 the timeline goes on growing; it is not reduced.
        assert_eq!(segs[2].start_pts, 1 << 33);
        assert_eq!(segs[3].end_pts, (1 << 33) + 2 * 360_360);
    }

    #[test]
    fn full_channel_backlogs_and_returns_undelivered_without_blocking() {
        let (tx, rx) = sync_channel(1);
        let mut cap = SyntheticCapture::new(Some(6));
        cap.config.max_backlog_segments = 3;
        let summary = cap.start(tx).unwrap().wait();
        let got: Vec<_> = rx.try_iter().collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].index, 0);
        // 1 in the channel, 3 kept, 2 oldest of the backlog dropped.
        let kept: Vec<u64> = summary.undelivered.iter().map(|s| s.index).collect();
        assert_eq!(kept, vec![3, 4, 5]);
        assert_eq!(summary.stats.segments_dropped, 2);
        assert_eq!(summary.stats.backlog_high_water, 3);
        assert_eq!(summary.stats.segments_backlogged, 5);
    }

    #[test]
    fn stop_ends_an_unbounded_capture() {
        let (tx, rx) = sync_channel(1000);
        let mut cap = SyntheticCapture::new(None);
        cap.config.pacing = Pacing::RealTime;
        cap.config.segment_secs = 1;
        let handle = cap.start(tx).unwrap();
        let first = rx.recv().unwrap();
        assert_eq!(first.index, 0);
        let summary = handle.stop();
        let rest: Vec<_> = rx.try_iter().collect();
        assert!(rest.last().is_some_and(|s| s.is_final));
        assert!(summary.stats.segments_emitted >= 2);
    }

    #[test]
    fn fake_bytes_are_deterministic() {
        assert_eq!(
            SyntheticCapture::fake_bytes(7, 100),
            SyntheticCapture::fake_bytes(7, 100)
        );
        assert_ne!(
            SyntheticCapture::fake_bytes(7, 100),
            SyntheticCapture::fake_bytes(8, 100)
        );
        assert_eq!(SyntheticCapture::fake_bytes(1, 10).len(), 10);
    }
}
