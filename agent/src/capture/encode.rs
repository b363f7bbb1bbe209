//! The capture thread: encode, interleave by DTS, mux, cut at keyframes, hand over.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ffmpeg_next::{
    channel_layout::ChannelLayout, codec, encoder, format, frame, picture, Dictionary,
    Error as FfError, Packet, Rational,
};

use super::live::{LiveCursor, LiveSegment};
use super::mux::{TsMuxer, AUDIO_STREAM, VIDEO_STREAM};
use super::outbox::Outbox;
use super::source::{Feeds, Raw, RawFrame, AAC_FRAME};
use super::{
    CaptureConfig, CaptureError, CaptureStats, CapturedSegment, DroppedFrames, FfCtx, Shared,
    WorkerEnd,
};
use fieldseal_proto::entry::{CodecParams, PTS_HZ};

/// How long the capture thread waits for a frame before retrying the backlog.
const IDLE_TICK: Duration = Duration::from_millis(50);

/// Encoded packets held for interleaving before one stream is written without waiting for the
/// other: a microphone that stalls must not make video pile up (≈ 3 s at 30 fps).
const MAX_INTERLEAVE_QUEUE: usize = 90;

/// x264 settings that bound the encoder's memory, the largest part of the agent's: x264 keeps
/// every frame it holds with padding, and the frames it references with three half-pel planes
/// besides: ~10 MB a reference frame and ~6 MB an input frame (with its quarter-size lookahead
/// planes) at 1920x1080, about half that at 720p. Each value is the number of frames held, and
/// `make bench` gives its ffmpeg baseline the same settings (docs/PERFORMANCE.md). Peak RSS of
/// the ffmpeg CLI at 1920x1080@30, veryfast, fixed 4 s GOP (2026-11-28, machine loaded):
///
/// - `threads=2:rc-lookahead=5:sync-lookahead=0` (the settings before these): 236 MB. Two
///   frame threads, one per core of a 2-core body-camera SoC (x264's own default is 3 there);
///   5 frames of rate-control lookahead instead of veryfast's 10; no separate lookahead thread
///   with its own queue of frames (it runs on the capture thread instead).
/// - `b-pyramid=none`: 212 MB (−24). With B-frames used as references x264 keeps 4 reference
///   frames whatever `ref` says (the H.264 level's decoded-picture buffer for a pyramid); without,
///   2. Costs a few % of compression at the same bit rate.
/// - `sliced-threads=1`: 192 MB (−20). The two threads encode two halves of the same frame
///   instead of two frames, so one frame is in flight, not one per thread. Also lowers latency;
///   each frame carries two slices (a little bit rate).
/// - `bframes=2:rc-lookahead=2`: 172 MB (−20). Input frames wait in the lookahead for B-frame
///   decisions and mb-tree; 2 instead of 3 and 5. With a fixed GOP and no scene cuts the lookahead
///   only shapes bit allocation inside the GOP.
/// - `bframes=0:rc-lookahead=0` (2026-11-29; `b-pyramid` is moot without B-frames): 149 MB
///   against 177 MB for `bframes=2:rc-lookahead=2` in the same hour (−28). In the agent at
///   1080p (`/proc/PID/smaps` at the peak) x264's buffers went from 3 reference and 7 input
///   frames (71 MB) to 2 and 3 (38 MB): a B-frame needs a decoded picture on each side besides
///   the one being reconstructed, and it makes the P-frame after it wait in the encoder, with
///   the lookahead frames behind that. Without B-frames and lookahead a frame leaves the
///   encoder as a packet by the next send (a test checks that). A lookahead of 0 also
///   turns mb-tree off, which needs one; with 2 frames it did little. CPU went down by a
///   fifth to a quarter (no B-frame decisions). The cost is compression at the same bit rate,
///   measured on 6 s at 1080p, 2 Mbit/s, against `bframes=2:rc-lookahead=2`: PSNR 37.58 →
///   37.44 dB and SSIM 0.983 → 0.982 on `testsrc2`; 26.29 → 25.57 dB and 0.892 → 0.871 on
///   `mandelbrot`, a picture far harder than a street (there x264 also undershot the bit rate
///   by 10 %).
///
/// The agent peaked at 235–242 MB at 1080p before, 167–170 MB with the first four and huge
/// pages off (thp.rs), 145 MB with the raw-video budget of source.rs, and 120.4–120.7 MB with
/// the last (runs without drops; docs/PERFORMANCE.md says where the rest is); 720p went from
/// 137 to ~110 MB and then ~90. Fewer frames inside the encoder also means less video lost
/// with them at a sudden power loss: they are gone before any segment is written.
pub(crate) const X264_MEMORY_PARAMS: &str =
    "threads=2:sliced-threads=1:bframes=0:rc-lookahead=0:sync-lookahead=0";

/// Opens libx264 with a fixed GOP of one segment and no scene-cut keyframes.
pub(crate) fn open_video_encoder(cfg: &CaptureConfig) -> Result<encoder::Video, CaptureError> {
    let codec = encoder::find_by_name("libx264")
        .ok_or_else(|| CaptureError::Source("this FFmpeg has no libx264 encoder".into()))?;
    let mut enc = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .ctx("creating video encoder")?;
    enc.set_width(cfg.width);
    enc.set_height(cfg.height);
    enc.set_format(format::Pixel::YUV420P);
    // One tick of the encoder's clock is one frame: pts = frame number.
    enc.set_time_base(frame_tb(cfg)?);
    enc.set_frame_rate(Some(frame_tb(cfg)?.invert()));
    enc.set_gop(cfg.gop());
    enc.set_bit_rate(usize::try_from(cfg.video_bitrate).unwrap_or(usize::MAX));
    let mut opts = Dictionary::new();
    opts.set("preset", &cfg.x264_preset);
    // Every keyframe must be a segment boundary and every boundary a keyframe: fixed IDR
    // interval, no early keyframes on scene cuts.
    let g = cfg.gop();
    opts.set(
        "x264-params",
        &format!("keyint={g}:min-keyint={g}:scenecut=0:{X264_MEMORY_PARAMS}"),
    );
    enc.open_with(opts).ctx("opening libx264")
}

/// Opens FFmpeg's native AAC encoder for planar float input.
pub(crate) fn open_audio_encoder(cfg: &CaptureConfig) -> Result<encoder::Audio, CaptureError> {
    let codec = encoder::find(codec::Id::AAC)
        .ok_or_else(|| CaptureError::Source("this FFmpeg has no AAC encoder".into()))?;
    let mut enc = codec::context::Context::new_with_codec(codec)
        .encoder()
        .audio()
        .ctx("creating audio encoder")?;
    let rate = i32::try_from(cfg.sample_rate).map_err(|_| CaptureError::InvalidConfig("rate"))?;
    let layout = ChannelLayout::default(i32::from(cfg.channels));
    enc.set_rate(rate);
    enc.set_channel_layout(layout);
    // FFmpeg 5.1 still reads the legacy channel count next to the layout.
    enc.set_channels(i32::from(cfg.channels));
    enc.set_format(format::Sample::F32(format::sample::Type::Planar));
    enc.set_bit_rate(usize::try_from(cfg.audio_bitrate).unwrap_or(usize::MAX));
    enc.set_time_base(Rational::new(1, rate));
    enc.open_as(codec).ctx("opening aac encoder")
}

/// The segment being accumulated.
#[derive(Debug, Default)]
struct SegAcc {
    start_pts: Option<i64>,
    end_pts: i64,
    video_frames: u32,
    audio_samples: u64,
    keyframe_start: bool,
    start_mono: Option<Instant>,
}

/// Everything the capture thread owns.
pub(crate) struct Pipeline {
    cfg: CaptureConfig,
    /// What every segment's entry records, converted once, with checks.
    codec: CodecParams,
    shared: Arc<Shared>,
    feeds: Feeds,
    venc: encoder::Video,
    aenc: encoder::Audio,
    mux: Option<TsMuxer>,
    outbox: Outbox,
    /// Encoded video packets (90 kHz) waiting for interleaving.
    vq: VecDeque<Packet>,
    /// Encoded audio packets (90 kHz) and their sample counts.
    aq: VecDeque<(Packet, u64)>,
    /// Video frames and audio samples sent to the encoders.
    vn: i64,
    an: i64,
    /// Capture instants of the video frames inside the encoder, by 90 kHz PTS.
    capture_times: VecDeque<(i64, Instant)>,
    seg: SegAcc,
    /// Holes the source left in the video (frames dropped while encoding
    /// was behind), in PTS order, not yet given to a segment.
    drops: VecDeque<DroppedFrames>,
    index: u64,
    frame_ticks: i64,
    /// The segment being encoded, streamed to its partial file (capture/live.rs).
    live: Option<LiveCursor>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("index", &self.index)
            .field("vn", &self.vn)
            .field("an", &self.an)
            .finish_non_exhaustive()
    }
}

fn is_again(e: &FfError) -> bool {
    matches!(e, FfError::Other { errno } if *errno == ffmpeg_next::util::error::EAGAIN)
}

/// Which queue [`Pipeline::interleave`] writes from next, given the DTS at the front of the video
/// and audio queues and their lengths: `Some(true)` video, `Some(false)` audio, `None` wait for
/// more packets. One queue empty means wait for the other stream, unless told to empty both
/// (`all`) or the non-empty one is past [`MAX_INTERLEAVE_QUEUE`]. (It once answered "audio" for
/// queued video and no audio, and the caller spun at 100 % CPU when audio frames were being
/// dropped under load.)
fn next_stream(
    video_dts: Option<i64>,
    audio_dts: Option<i64>,
    (video_len, audio_len): (usize, usize),
    all: bool,
) -> Option<bool> {
    match (video_dts, audio_dts) {
        (Some(v), Some(a)) => Some(v <= a),
        (Some(_), None) if all || video_len > MAX_INTERLEAVE_QUEUE => Some(true),
        (None, Some(_)) if all || audio_len > MAX_INTERLEAVE_QUEUE => Some(false),
        _ => None,
    }
}

impl Pipeline {
    pub(crate) fn new(
        cfg: CaptureConfig,
        shared: Arc<Shared>,
        feeds: Feeds,
        venc: encoder::Video,
        aenc: encoder::Audio,
        mux: TsMuxer,
        outbox: Outbox,
    ) -> Result<Self, CaptureError> {
        let frame_ticks = cfg.fps.frame_ticks();
        let codec = cfg.codec_params()?;
        let live = cfg.live.clone().and_then(LiveCursor::new);
        Ok(Pipeline {
            cfg,
            codec,
            shared,
            feeds,
            venc,
            aenc,
            mux: Some(mux),
            outbox,
            vq: VecDeque::new(),
            aq: VecDeque::new(),
            vn: 0,
            an: 0,
            capture_times: VecDeque::new(),
            seg: SegAcc::default(),
            drops: VecDeque::new(),
            index: 0,
            frame_ticks,
            live,
        })
    }

    /// Runs until every feed has ended (end of source, limit, or stop), then flushes and emits
    /// the final segment. Returns the segments the consumer did not take and the first error.
    pub(crate) fn run(mut self) -> WorkerEnd {
        let result = self.run_loop().and_then(|()| self.finish());
        if result.is_err() {
            // Make the feeds end: they check the flag before each frame.
            self.shared.stop.store(true, Ordering::Relaxed);
        }
        let Pipeline { feeds, outbox, .. } = self;
        let Feeds { rx, threads, .. } = feeds;
        drop(rx);
        let mut error = result.err();
        for t in threads {
            let r = t.join().map_err(|_| CaptureError::Panicked).and_then(|r| r);
            if let (None, Err(e)) = (&error, r) {
                error = Some(e);
            }
        }
        if let Some(e) = &error {
            tracing::error!(error = %e, "capture ended with an error");
        }
        WorkerEnd {
            undelivered: outbox.finish(),
            error,
        }
    }

    fn run_loop(&mut self) -> Result<(), CaptureError> {
        loop {
            match self.feeds.rx.recv_timeout(IDLE_TICK) {
                Ok(frame) => self.on_frame(frame)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            self.outbox.pump();
        }
    }

    fn on_frame(&mut self, frame: RawFrame) -> Result<(), CaptureError> {
        match frame.raw {
            Raw::Video(mut f) => {
                let skipped = i64::try_from(frame.skipped).unwrap_or(0);
                if skipped > 0 {
                    self.drops.push_back(DroppedFrames {
                        first_pts: self.cfg.first_pts + self.vn * self.frame_ticks,
                        end_pts: self.cfg.first_pts + (self.vn + skipped) * self.frame_ticks,
                        // Frames skipped between two sent frames: far below
                        // 2^32 (that is 4.5 years at 30 fps).
                        frames: u32::try_from(skipped).unwrap_or(u32::MAX),
                    });
                }
                self.vn += skipped;
                let pts = self.vn;
                f.set_pts(Some(pts));
                f.set_kind(picture::Type::None);
                self.capture_times.push_back((
                    self.cfg.first_pts + pts * self.frame_ticks,
                    frame.captured_at,
                ));
                self.venc.send_frame(&f).ctx("encoding video")?;
                // x264 has copied the picture; the frame goes back to its pool on drop.
                drop(f);
                self.shared.raw_video_queued.fetch_sub(1, Ordering::Relaxed);
                self.vn += 1;
                crate::fault::capture_clock(self.cfg.first_pts + self.vn * self.frame_ticks);
                self.drain_video()?;
                if !self.feeds.has_audio {
                    self.fill_silence()?;
                }
            }
            Raw::Audio(f) => {
                self.an += i64::try_from(frame.skipped).unwrap_or(0);
                self.encode_audio(f)?;
            }
        }
        self.interleave(false)
    }

    /// Without a microphone, keeps audio in step with video with silent frames.
    fn fill_silence(&mut self) -> Result<(), CaptureError> {
        let (num, den) = (i64::from(self.cfg.fps.num()), i64::from(self.cfg.fps.den()));
        let sr = i64::from(self.cfg.sample_rate);
        // an / sr < vn / fps, with fps = num / den.
        while self.an * num < self.vn * sr * den {
            let layout = ChannelLayout::default(i32::from(self.cfg.channels));
            let mut f = frame::Audio::new(
                format::Sample::F32(format::sample::Type::Planar),
                AAC_FRAME,
                layout,
            );
            f.set_rate(self.cfg.sample_rate);
            self.encode_audio(f)?;
        }
        Ok(())
    }

    fn encode_audio(&mut self, mut f: frame::Audio) -> Result<(), CaptureError> {
        if self.shared.muted.load(Ordering::Relaxed) || !self.feeds.has_audio {
            // Zero bytes are 0.0 in float: silence with the same timing.
            for plane in 0..f.planes() {
                f.data_mut(plane).fill(0);
            }
        }
        let n = f.samples() as i64;
        f.set_pts(Some(self.an));
        self.aenc.send_frame(&f).ctx("encoding audio")?;
        self.an += n;
        CaptureStats::add(&self.shared.stats.audio_samples, n as u64);
        self.drain_audio()
    }

    fn drain_video(&mut self) -> Result<(), CaptureError> {
        let src_tb = frame_tb(&self.cfg)?;
        loop {
            let mut pkt = Packet::empty();
            match self.venc.receive_packet(&mut pkt) {
                Ok(()) => {}
                Err(FfError::Eof) => return Ok(()),
                Err(e) if is_again(&e) => return Ok(()),
                Err(e) => {
                    return Err(CaptureError::Ffmpeg {
                        context: "receiving video packet",
                        source: e,
                    })
                }
            }
            // Exact: a frame is a whole number of 90 kHz ticks (FrameRate).
            pkt.rescale_ts(src_tb, tb90());
            let base = self.cfg.first_pts;
            pkt.set_pts(pkt.pts().map(|p| p + base));
            pkt.set_dts(pkt.dts().map(|d| d + base));
            pkt.set_duration(self.frame_ticks);
            pkt.set_stream(VIDEO_STREAM);
            CaptureStats::add(&self.shared.stats.frames_encoded, 1);
            self.vq.push_back(pkt);
        }
    }

    fn drain_audio(&mut self) -> Result<(), CaptureError> {
        let src_tb = Rational::new(1, i32::try_from(self.cfg.sample_rate).unwrap_or(48_000));
        loop {
            let mut pkt = Packet::empty();
            match self.aenc.receive_packet(&mut pkt) {
                Ok(()) => {}
                Err(FfError::Eof) => return Ok(()),
                Err(e) if is_again(&e) => return Ok(()),
                Err(e) => {
                    return Err(CaptureError::Ffmpeg {
                        context: "receiving audio packet",
                        source: e,
                    })
                }
            }
            let samples = u64::try_from(pkt.duration()).unwrap_or(0);
            pkt.rescale_ts(src_tb, tb90());
            let base = self.cfg.first_pts;
            pkt.set_pts(pkt.pts().map(|p| p + base));
            pkt.set_dts(pkt.dts().map(|d| d + base));
            pkt.set_stream(AUDIO_STREAM);
            self.aq.push_back((pkt, samples));
        }
    }

    /// Writes queued packets in DTS order; with `all`, empties both queues.
    fn interleave(&mut self, all: bool) -> Result<(), CaptureError> {
        loop {
            let next = next_stream(
                self.vq.front().map(|v| v.dts().unwrap_or(0)),
                self.aq.front().map(|(a, _)| a.dts().unwrap_or(0)),
                (self.vq.len(), self.aq.len()),
                all,
            );
            let Some(video_first) = next else {
                return Ok(());
            };
            if video_first {
                if let Some(p) = self.vq.pop_front() {
                    self.write_video(&p)?;
                }
            } else if let Some((p, samples)) = self.aq.pop_front() {
                self.seg.audio_samples += samples;
                self.mux()?.write(&p)?;
            }
        }
    }

    fn mux(&mut self) -> Result<&mut TsMuxer, CaptureError> {
        self.mux
            .as_mut()
            .ok_or(CaptureError::Source("muxer already finished".into()))
    }

    fn write_video(&mut self, p: &Packet) -> Result<(), CaptureError> {
        let pts = p.pts().unwrap_or(0);
        if p.is_key() && self.seg.video_frames > 0 {
            // The cut: everything written so far is the previous segment. It
            // ends where this one starts, so frames dropped just before the
            // cut lie inside its span, not in a gap between the two.
            self.seg.end_pts = self.seg.end_pts.max(pts);
            let bytes = self.mux()?.cut()?;
            self.live_complete(&bytes);
            self.emit(bytes, false);
        }
        if self.seg.start_pts.is_none() {
            self.seg.start_pts = Some(pts);
            self.seg.keyframe_start = p.is_key();
            self.seg.start_mono = self.capture_time_of(pts);
        }
        self.seg.video_frames += 1;
        self.seg.end_pts = self.seg.end_pts.max(pts + self.frame_ticks);
        self.mux()?.write(p)?;
        self.live_after_write();
        Ok(())
    }

    /// Stream the segment to its partial file, durable every `durable_every_ms` of media.
    fn live_after_write(&mut self) {
        if let (Some(live), Some(mux)) = (self.live.as_mut(), self.mux.as_mut()) {
            live.after_write(
                mux,
                &live_segment(self.index, &self.seg, &self.codec, self.cfg.first_pts),
            );
        }
    }

    /// At a cut: the rest of the segment to its partial file, durable.
    fn live_complete(&mut self, bytes: &[u8]) {
        if let Some(live) = self.live.as_mut() {
            live.complete(
                bytes,
                &live_segment(self.index, &self.seg, &self.codec, self.cfg.first_pts),
            );
        }
    }

    fn capture_time_of(&mut self, pts: i64) -> Option<Instant> {
        while let Some(&(k, t)) = self.capture_times.front() {
            if k > pts {
                break;
            }
            self.capture_times.pop_front();
            if k == pts {
                return Some(t);
            }
        }
        None
    }

    fn emit(&mut self, bytes: Vec<u8>, is_final: bool) {
        let seg = std::mem::take(&mut self.seg);
        let start_pts = seg.start_pts.unwrap_or(self.cfg.first_pts);
        let end_pts = seg.end_pts.max(start_pts);
        let dropped = self.take_drops(end_pts, is_final);
        let segment = CapturedSegment {
            index: self.index,
            bytes,
            start_pts,
            end_pts,
            video_frames: seg.video_frames,
            audio_samples: seg.audio_samples,
            keyframe_start: seg.keyframe_start,
            codec: self.codec.clone(),
            start_mono: seg.start_mono.unwrap_or_else(Instant::now),
            is_final,
            dropped,
            streamed: self.live.as_mut().and_then(LiveCursor::take_done),
        };
        tracing::debug!(?segment, "segment cut");
        self.index += 1;
        self.outbox.push(segment);
    }

    /// The drops that start before `end_pts` (all of them for the final
    /// segment), as one span. A drop before the first frame of a recording
    /// goes to its first segment.
    fn take_drops(&mut self, end_pts: i64, is_final: bool) -> Option<DroppedFrames> {
        let mut out: Option<DroppedFrames> = None;
        while let Some(d) = self.drops.front().copied() {
            if !is_final && d.first_pts >= end_pts {
                break;
            }
            self.drops.pop_front();
            out = Some(match out {
                None => d,
                Some(o) => DroppedFrames {
                    first_pts: o.first_pts.min(d.first_pts),
                    end_pts: o.end_pts.max(d.end_pts),
                    // A segment cannot hold 2^32 frames (4.5 years at 30 fps).
                    frames: o.frames.saturating_add(d.frames),
                },
            });
        }
        if let Some(d) = &out {
            tracing::warn!(?d, index = self.index, "segment has dropped frames");
        }
        out
    }

    /// Drains the encoders, writes the trailer and emits the last segment.
    fn finish(&mut self) -> Result<(), CaptureError> {
        self.venc.send_eof().ctx("flushing video encoder")?;
        self.drain_video()?;
        self.aenc.send_eof().ctx("flushing audio encoder")?;
        self.drain_audio()?;
        self.interleave(true)?;
        let mux = self
            .mux
            .take()
            .ok_or(CaptureError::Source("muxer already finished".into()))?;
        let bytes = mux.finish()?;
        if self.seg.video_frames > 0 || self.seg.audio_samples > 0 || !bytes.is_empty() {
            self.live_complete(&bytes);
            self.emit(bytes, true);
        }
        Ok(())
    }
}

/// The video encoder's time base: one frame, `den / num` seconds.
fn frame_tb(cfg: &CaptureConfig) -> Result<Rational, CaptureError> {
    // A reduced FrameRate's num divides 90000 and den <= num: both fit.
    let num = i32::try_from(cfg.fps.num()).map_err(|_| CaptureError::InvalidConfig("fps"))?;
    let den = i32::try_from(cfg.fps.den()).map_err(|_| CaptureError::InvalidConfig("fps"))?;
    Ok(Rational::new(den, num))
}

/// The segment being encoded, as its live file states it.
fn live_segment<'a>(
    index: u64,
    seg: &SegAcc,
    codec: &'a CodecParams,
    first_pts: i64,
) -> LiveSegment<'a> {
    LiveSegment {
        index,
        start_pts: seg.start_pts.unwrap_or(first_pts),
        end_pts: seg.end_pts,
        video_frames: seg.video_frames,
        audio_samples: seg.audio_samples,
        start_mono: seg.start_mono,
        codec,
    }
}

fn tb90() -> Rational {
    Rational::new(1, i32::try_from(PTS_HZ).unwrap_or(90_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frames x264 holds are most of the agent's memory (`X264_MEMORY_PARAMS`): with no
    /// B-frames and no lookahead a frame sent comes back as a packet by the next send at the
    /// latest, so at most one is inside. With `bframes=2:rc-lookahead=2` three were.
    #[test]
    fn the_video_encoder_holds_at_most_one_frame() {
        ffmpeg_next::init().unwrap();
        let cfg = CaptureConfig {
            width: 320,
            height: 240,
            ..CaptureConfig::default()
        };
        let mut enc = open_video_encoder(&cfg).unwrap();
        let (mut sent, mut received, mut most_inside) = (0i64, 0i64, 0i64);
        for i in 0..40 {
            let mut f = frame::Video::new(format::Pixel::YUV420P, cfg.width, cfg.height);
            for plane in 0..f.planes() {
                // A moving gradient, so that frames differ.
                let (stride, data) = (f.stride(plane), f.data_mut(plane));
                for (j, b) in data.iter_mut().enumerate() {
                    *b = u8::try_from((j % stride + j / stride + 3 * i) % 256).unwrap_or(0);
                }
            }
            f.set_pts(Some(i as i64));
            enc.send_frame(&f).unwrap();
            sent += 1;
            let mut pkt = Packet::empty();
            while enc.receive_packet(&mut pkt).is_ok() {
                received += 1;
            }
            most_inside = most_inside.max(sent - received);
        }
        assert!(
            most_inside <= 1,
            "{most_inside} frames held inside x264 after a send_frame"
        );
        enc.send_eof().unwrap();
        let mut pkt = Packet::empty();
        while enc.receive_packet(&mut pkt).is_ok() {
            received += 1;
        }
        assert_eq!(received, sent);
    }

    #[test]
    fn interleaving_writes_in_dts_order_and_waits_for_the_missing_stream() {
        assert_eq!(next_stream(Some(10), Some(20), (1, 1), false), Some(true));
        assert_eq!(next_stream(Some(20), Some(10), (1, 1), false), Some(false));
        assert_eq!(next_stream(Some(10), Some(10), (1, 1), false), Some(true));
        // Video queued, no audio yet: wait (this used to pick the empty audio queue and spin).
        assert_eq!(next_stream(Some(10), None, (1, 0), false), None);
        assert_eq!(next_stream(None, Some(10), (0, 1), false), None);
        assert_eq!(next_stream(None, None, (0, 0), true), None);
        // Flushing, or a stream silent for too long: write what is there.
        assert_eq!(next_stream(Some(10), None, (1, 0), true), Some(true));
        assert_eq!(next_stream(None, Some(10), (0, 1), true), Some(false));
        let past = MAX_INTERLEAVE_QUEUE + 1;
        assert_eq!(next_stream(Some(10), None, (past, 0), false), Some(true));
        assert_eq!(next_stream(None, Some(10), (0, past), false), Some(false));
    }
}
