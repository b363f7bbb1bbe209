//! Capture: camera + microphone → H.264/AAC → MPEG-TS segments cut at keyframes.
//!
//! This module turns a [`SourceSpec`] into a stream of [`CapturedSegment`]s handed over a bounded
//! channel. It does not hash, sign, spool or upload anything: the chain writer consumes the
//! segments and does that.
//!
//! # Use
//!
//! ```
//! use fieldseal_agent::capture::{Capture, SyntheticCapture};
//! // `FfmpegCapture::new(CaptureConfig { source: "v4l2:/dev/video0,alsa:hw:0".parse()?, .. })`
//! // in production; the synthetic twin has the same interface.
//! let capture = SyntheticCapture::new(Some(3));
//! let (tx, rx) = std::sync::mpsc::sync_channel(8);
//! let handle = capture.start(tx)?;
//! handle.set_muted(true); // e.g. on the officer's request; the chain writer logs the event
//! for segment in rx.iter() {
//!     // hash `segment.bytes`, write, fsync, sign an entry with its PTS range and counts …
//!     if segment.is_final {
//!         break;
//!     }
//! }
//! let summary = handle.stop();
//! assert!(summary.error.is_none() && summary.undelivered.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Shape
//!
//! ```text
//!  feed thread(s)                       capture thread
//!  lavfi graphs | demux+decode+filter   encode (libx264, aac) → interleave by DTS
//!  (paced to wall clock or live)  ───►  → ONE mpegts muxer → in-memory AVIO
//!       bounded frame channel           → cut before each video keyframe → Outbox ──► SyncSender
//! ```
//!
//! # Why one muxer for the whole recording
//!
//! A new muxer per segment restarts continuity counters, PCR and (unless forced) timestamps, so
//! the files would not concatenate into one clean stream. With a single `mpegts` muxer writing
//! into an in-memory byte sink, the recording *is* one continuous transport stream and a segment
//! is just a byte range of it: concatenating the segment files gives back exactly that stream,
//! with timestamps, continuity counters and PCR running on without a seam.
//!
//! # Where cuts happen
//!
//! The GOP is fixed (`segment length × fps` frames, rounded to a whole frame; no scene-cut
//! keyframes) so every keyframe starts a segment. Packets are interleaved by DTS by this module
//! (not by libavformat, whose interleaving queue would hide when a packet is really written)
//! and written with `av_write_frame`. Right before a video keyframe packet is written, the
//! muxer is flushed (`av_write_frame(NULL)` emits audio still buffered in a PES, then
//! `avio_flush`) and the bytes written so far become the previous segment. The mpegts muxer
//! re-emits PAT/PMT in front of every video keyframe, so each segment also plays on its own.
//! See `mux.rs` for the one place that needs FFI.
//!
//! Timestamps are in a 90 kHz timebase and start at [`PTS_BASE`] (not 0) so that DTS stays
//! positive under B-frame reordering and AAC priming. Segment `n`'s `end_pts` equals segment
//! `n+1`'s `start_pts`. A frame lasts a whole number of ticks (see [`FrameRate`]), so frame `n`
//! is at exactly `first_pts + n × ticks`, at 30000/1001 as at 25 fps.
//!
//! # The 33-bit wrap
//!
//! MPEG-TS carries PTS, DTS and PCR modulo 2^33 ticks: they wrap after 26.5 hours. The timeline
//! of this module never wraps: timestamps are counted here in `i64` (frames and samples sent to
//! the encoders, rescaled to 90 kHz) and only the muxer reduces them modulo 2^33 as it writes
//! each PES header and PCR, as the standard requires. So a [`CapturedSegment`]'s
//! `start_pts`/`end_pts` (and the chain entry's) keep growing across the wrap: no false gap, no
//! time going backwards, spans and frame counts right; they equal the file's timestamps modulo
//! 2^33. Nothing here reads timestamps back from the stream. [`CaptureConfig::first_pts`] lets
//! a test start a recording just before the wrap.
//!
//! # Never blocking the camera
//!
//! The capture thread never waits for the consumer: a segment the channel cannot take goes into
//! a bounded in-memory backlog (see [`CaptureStats`]) and is retried on every loop turn. Segments
//! still undelivered when the capture stops come back in [`CaptureSummary::undelivered`], so a
//! caller that stops the capture and then drains the channel on the same thread cannot deadlock.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

// Every timestamp of this module is in proto's 90 kHz timebase (MPEG-TS's
// clock), the one the chain entries record: one constant, one owner.
use fieldseal_proto::entry::{CodecParams, PTS_HZ};

mod encode;
mod ffmpeg;
pub mod live;
// The only module with `unsafe`: flushing the muxer at a cut needs FFI (see mux.rs).
#[allow(unsafe_code)]
mod mux;
mod outbox;
mod rate;
mod source;
mod synthetic;
// The second: one `prctl` that keeps x264's buffers off huge pages (see thp.rs).
#[allow(unsafe_code)]
mod thp;

pub use self::ffmpeg::FfmpegCapture;
pub use self::live::{LiveArm, LiveSpill, StreamedFile};
pub use self::rate::{FrameRate, FrameRateError};
pub use self::synthetic::SyntheticCapture;

/// First video presentation timestamp of a recording (1 s at 90 kHz). Starting above zero keeps
/// the DTS of the first frames (two frames earlier with B-frames) and the AAC priming packet
/// (1024 samples earlier) positive, which MPEG-TS requires.
pub const PTS_BASE: i64 = PTS_HZ;

/// Where the pictures and sound come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// FFmpeg filter sources as a synthetic camera. `None` means the default: `testsrc2` at the
    /// configured size and rate, and a 1 kHz `sine` tone. Custom specs are lavfi filter chains
    /// (`"mandelbrot"`, `"sine=frequency=440"`); they are scaled/resampled to the configured
    /// format. Spelled `lavfi` or `lavfi:VIDEO[|AUDIO]`.
    Lavfi {
        /// Video source filter chain.
        video: Option<String>,
        /// Audio source filter chain.
        audio: Option<String>,
    },
    /// A media file played at its native rate. Spelled `file:PATH`. A file without audio is
    /// recorded with silence.
    File(PathBuf),
    /// A V4L2 camera and optionally an ALSA microphone (silence without one). Spelled
    /// `v4l2:/dev/videoN[,alsa:DEVICE]`.
    V4l2 {
        /// The camera's device node.
        device: PathBuf,
        /// ALSA capture device name (`hw:0`, `default`, …).
        alsa: Option<String>,
    },
}

impl Default for SourceSpec {
    fn default() -> Self {
        SourceSpec::Lavfi {
            video: None,
            audio: None,
        }
    }
}

/// A [`SourceSpec`] string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid source spec {spec:?}: {reason}")]
pub struct SourceSpecError {
    /// The text given.
    pub spec: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for SourceSpec {
    type Err = SourceSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| SourceSpecError {
            spec: s.to_owned(),
            reason,
        };
        let non_empty = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        if s == "lavfi" {
            return Ok(SourceSpec::default());
        }
        if let Some(rest) = s.strip_prefix("lavfi:") {
            let (video, audio) = match rest.split_once('|') {
                Some((v, a)) => (non_empty(v), non_empty(a)),
                None => (non_empty(rest), None),
            };
            return Ok(SourceSpec::Lavfi { video, audio });
        }
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err(err("file: needs a path"));
            }
            return Ok(SourceSpec::File(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("v4l2:") {
            let (device, alsa) = match rest.split_once(',') {
                Some((d, a)) => {
                    let a = a
                        .strip_prefix("alsa:")
                        .ok_or_else(|| err("the part after ',' must be alsa:DEVICE"))?;
                    if a.is_empty() {
                        return Err(err("alsa: needs a device name"));
                    }
                    (d, Some(a.to_owned()))
                }
                None => (rest, None),
            };
            if device.is_empty() {
                return Err(err("v4l2: needs a device path"));
            }
            return Ok(SourceSpec::V4l2 {
                device: PathBuf::from(device),
                alsa,
            });
        }
        Err(err(
            "expected lavfi, lavfi:VIDEO[|AUDIO], file:PATH or v4l2:DEV[,alsa:DEV]",
        ))
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Lavfi {
                video: None,
                audio: None,
            } => f.write_str("lavfi"),
            SourceSpec::Lavfi { video, audio } => {
                write!(f, "lavfi:{}", video.as_deref().unwrap_or(""))?;
                if let Some(a) = audio {
                    write!(f, "|{a}")?;
                }
                Ok(())
            }
            SourceSpec::File(p) => write!(f, "file:{}", p.display()),
            SourceSpec::V4l2 { device, alsa } => {
                write!(f, "v4l2:{}", device.display())?;
                if let Some(a) = alsa {
                    write!(f, ",alsa:{a}")?;
                }
                Ok(())
            }
        }
    }
}

/// Whether a non-live source is slowed down to real time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Frames are released at wall-clock rate, like a camera (default).
    RealTime,
    /// Frames are produced as fast as the encoder takes them (tests, benchmarks). Live devices
    /// ignore this.
    AsFastAsPossible,
}

/// Everything the capture needs to know. `Default` is 1280x720@30, 2 Mbit/s, `veryfast`, 4 s
/// segments, 48 kHz mono AAC at 96 kbit/s, real-time pacing.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Where frames come from.
    pub source: SourceSpec,
    /// Encoded picture width (pixels, even).
    pub width: u32,
    /// Encoded picture height (pixels, even).
    pub height: u32,
    /// Frames per second, exact (body cameras run at 25, 30 or 30000/1001).
    pub fps: FrameRate,
    /// H.264 target bit rate (bit/s).
    pub video_bitrate: u64,
    /// x264 preset (`ultrafast` … `veryslow`).
    pub x264_preset: String,
    /// Segment length in whole seconds; the GOP is `segment_secs × fps` frames, rounded to
    /// the nearest (at 30000/1001, 4 s is 120 frames: 4.004 s).
    pub segment_secs: u32,
    /// AAC sample rate (Hz).
    pub sample_rate: u32,
    /// Audio channels (1 or 2).
    pub channels: u16,
    /// AAC bit rate (bit/s).
    pub audio_bitrate: u64,
    /// Real-time or as fast as possible.
    pub pacing: Pacing,
    /// Stop by itself after this many seconds of media (exact frame count), e.g. for tests.
    pub max_media_secs: Option<u32>,
    /// Segments held in memory when the consumer's channel is full. Past it the oldest is
    /// dropped and counted: memory on a body camera is finite, and the count makes the loss loud.
    pub max_backlog_segments: usize,
    /// PTS (90 kHz) of the recording's first video frame: [`PTS_BASE`], except in tests that
    /// start just before the 33-bit wrap (`FIELDSEAL_FIRST_PTS`, see `fault.rs`). At least
    /// [`PTS_BASE`], for the same reason.
    pub first_pts: i64,
    /// Where segments are streamed as they are encoded, while the writer asks for it
    /// (capture/live.rs); `None`: only in memory, written whole at their end.
    pub live: Option<Arc<LiveSpill>>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            source: SourceSpec::default(),
            width: 1280,
            height: 720,
            fps: FrameRate::DEFAULT,
            video_bitrate: 2_000_000,
            x264_preset: "veryfast".to_owned(),
            segment_secs: 4,
            sample_rate: 48_000,
            channels: 1,
            audio_bitrate: 96_000,
            pacing: Pacing::RealTime,
            max_media_secs: None,
            // 64 segments of 4 s at ~2 Mbit/s is ~64 MB, about 4 minutes of consumer stall.
            max_backlog_segments: 64,
            first_pts: PTS_BASE,
            live: None,
        }
    }
}

impl CaptureConfig {
    /// Frames per GOP (= per segment).
    pub fn gop(&self) -> u32 {
        // At most 60 s × 240 fps (validate), far inside u32.
        u32::try_from(self.fps.frames_in(self.segment_secs)).unwrap_or(u32::MAX)
    }

    /// Checks the numbers make sense.
    ///
    /// # Errors
    /// [`CaptureError::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<(), CaptureError> {
        let bad = |what: &'static str| Err(CaptureError::InvalidConfig(what));
        if self.width == 0 || self.height == 0 || self.width % 2 != 0 || self.height % 2 != 0 {
            return bad("width and height must be even and non-zero");
        }
        // `FrameRate` holds only rates with a whole number of 90 kHz ticks
        // per frame, between 1 and 240 fps: every PTS is exact.
        if self.segment_secs == 0 || self.segment_secs > 60 {
            return bad("segment_secs must be in 1..=60");
        }
        if !(8_000..=96_000).contains(&self.sample_rate) {
            return bad("sample_rate must be in 8000..=96000");
        }
        if !(1..=2).contains(&self.channels) {
            return bad("channels must be 1 or 2");
        }
        if self.video_bitrate == 0 || self.audio_bitrate == 0 {
            return bad("bit rates must be non-zero");
        }
        if self.max_backlog_segments == 0 {
            return bad("max_backlog_segments must be at least 1");
        }
        // Below PTS_BASE the first DTS would go negative; a year of ticks
        // above 2^33 is more than any test needs and keeps i64 far away.
        if !(PTS_BASE..=(1 << 33) + 365 * 86_400 * PTS_HZ).contains(&self.first_pts) {
            return bad("first_pts must be in PTS_BASE..=2^33 + one year");
        }
        // A value the chain entry cannot hold stops the capture here, before
        // any segment exists: it is never clamped into signed evidence.
        self.codec_params()?;
        Ok(())
    }

    /// The codec parameters every segment of this capture carries, in the
    /// chain entry's own type, converted from the configuration's wider
    /// integers with checks.
    ///
    /// # Errors
    /// [`CaptureError::InvalidConfig`] naming the field whose value the entry
    /// cannot hold (width or height above 65535, channels above 255).
    pub fn codec_params(&self) -> Result<CodecParams, CaptureError> {
        let bad = CaptureError::InvalidConfig;
        Ok(CodecParams {
            video: "h264".into(),
            width: u16::try_from(self.width).map_err(|_| bad("width must be at most 65535"))?,
            height: u16::try_from(self.height).map_err(|_| bad("height must be at most 65535"))?,
            fps_num: self.fps.num(),
            fps_den: self.fps.den(),
            audio: "aac".into(),
            sample_rate: self.sample_rate,
            channels: u8::try_from(self.channels)
                .map_err(|_| bad("channels must be at most 255"))?,
        })
    }
}

/// One finished MPEG-TS segment: a byte range of the recording's single transport stream.
#[derive(Clone, PartialEq, Eq)]
pub struct CapturedSegment {
    /// 0 for the first segment of a recording, contiguous.
    pub index: u64,
    /// The exact bytes of the `.ts` file.
    pub bytes: Vec<u8>,
    /// PTS of the first video frame (90 kHz).
    pub start_pts: i64,
    /// Exclusive end: last video frame's PTS + one frame duration (90 kHz). Equals the next
    /// segment's `start_pts`.
    pub end_pts: i64,
    /// Video frames in the segment.
    pub video_frames: u32,
    /// Audio samples (per channel) in the segment.
    pub audio_samples: u64,
    /// Whether the segment starts with a video keyframe (always true from the ffmpeg capture).
    pub keyframe_start: bool,
    /// Codec parameters, as the segment's chain entry records them.
    pub codec: CodecParams,
    /// Monotonic clock when the segment's first frame was captured.
    pub start_mono: Instant,
    /// The last segment of the recording (possibly shorter than the others).
    pub is_final: bool,
    /// Video frames the source dropped inside this segment's span because
    /// encoding fell behind (signed as a `frames-dropped` event after it).
    pub dropped: Option<DroppedFrames>,
    /// The same bytes, already durable in `.partial/` (streamed as they were
    /// produced, capture/live.rs), if the writer asked for them.
    pub streamed: Option<Arc<StreamedFile>>,
}

/// Video frames dropped inside one segment: where and how many. The encoder's
/// clock goes on over a drop, so the segment's span holds them and its
/// `video_frames` does not; several drops in one segment make one span, from
/// the first dropped frame to the end of the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DroppedFrames {
    /// PTS (90 kHz) the first dropped frame would have had.
    pub first_pts: i64,
    /// PTS of the end of the last dropped frame (its PTS plus one frame).
    pub end_pts: i64,
    /// How many video frames were dropped.
    pub frames: u32,
}

impl fmt::Debug for CapturedSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bytes are megabytes of video; show their length only.
        f.debug_struct("CapturedSegment")
            .field("index", &self.index)
            .field("len", &self.bytes.len())
            .field("start_pts", &self.start_pts)
            .field("end_pts", &self.end_pts)
            .field("video_frames", &self.video_frames)
            .field("audio_samples", &self.audio_samples)
            .field("keyframe_start", &self.keyframe_start)
            .field("codec", &self.codec)
            .field("start_mono", &self.start_mono)
            .field("is_final", &self.is_final)
            .field("dropped", &self.dropped)
            .field("streamed", &self.streamed)
            .finish()
    }
}

/// Live counters of a capture, shared with its thread.
#[derive(Debug, Default)]
pub struct CaptureStats {
    /// Video frames delivered by the source.
    pub frames_captured: AtomicU64,
    /// Video frames out of the encoder.
    pub frames_encoded: AtomicU64,
    /// Video and audio frames the source had to drop because encoding fell behind (should be 0).
    pub frames_dropped: AtomicU64,
    /// Audio samples (per channel) encoded.
    pub audio_samples: AtomicU64,
    /// Segments produced.
    pub segments_emitted: AtomicU64,
    /// Segments handed to the channel.
    pub segments_delivered: AtomicU64,
    /// Segments that found the channel full and went to the backlog.
    pub segments_backlogged: AtomicU64,
    /// Segments dropped because the backlog was full (evidence lost: should be 0).
    pub segments_dropped: AtomicU64,
    /// Most segments ever held in the backlog at once.
    pub backlog_high_water: AtomicU64,
    /// Bytes of all segments produced.
    pub bytes_emitted: AtomicU64,
}

/// A copy of [`CaptureStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)] // Same fields as `CaptureStats`.
pub struct CaptureStatsSnapshot {
    pub frames_captured: u64,
    pub frames_encoded: u64,
    pub frames_dropped: u64,
    pub audio_samples: u64,
    pub segments_emitted: u64,
    pub segments_delivered: u64,
    pub segments_backlogged: u64,
    pub segments_dropped: u64,
    pub backlog_high_water: u64,
    pub bytes_emitted: u64,
}

impl CaptureStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> CaptureStatsSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CaptureStatsSnapshot {
            frames_captured: r(&self.frames_captured),
            frames_encoded: r(&self.frames_encoded),
            frames_dropped: r(&self.frames_dropped),
            audio_samples: r(&self.audio_samples),
            segments_emitted: r(&self.segments_emitted),
            segments_delivered: r(&self.segments_delivered),
            segments_backlogged: r(&self.segments_backlogged),
            segments_dropped: r(&self.segments_dropped),
            backlog_high_water: r(&self.backlog_high_water),
            bytes_emitted: r(&self.bytes_emitted),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Errors of the capture.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A configuration value is out of range.
    #[error("invalid capture config: {0}")]
    InvalidConfig(&'static str),
    /// The source spec does not parse.
    #[error(transparent)]
    InvalidSource(#[from] SourceSpecError),
    /// A camera, microphone or file named by the source does not exist.
    #[error("capture device or file not found: {0}")]
    NotFound(String),
    /// The source opened but cannot be used (no video stream, unknown device format, …).
    #[error("unusable source: {0}")]
    Source(String),
    /// An FFmpeg call failed.
    #[error("ffmpeg: {context}: {source}")]
    Ffmpeg {
        /// What was being done.
        context: &'static str,
        /// FFmpeg's error.
        source: ffmpeg_next::Error,
    },
    /// A capture thread panicked.
    #[error("capture thread panicked")]
    Panicked,
}

/// Shortcut to wrap FFmpeg errors with what was being done.
pub(crate) trait FfCtx<T> {
    fn ctx(self, context: &'static str) -> Result<T, CaptureError>;
}

impl<T> FfCtx<T> for Result<T, ffmpeg_next::Error> {
    fn ctx(self, context: &'static str) -> Result<T, CaptureError> {
        self.map_err(|source| CaptureError::Ffmpeg { context, source })
    }
}

/// A source of segments: the real ffmpeg pipeline or an in-memory twin.
pub trait Capture {
    /// Starts capturing on a new thread; segments go to `segments` in order.
    ///
    /// # Errors
    /// Invalid configuration, a missing device or file, or FFmpeg refusing to open the source
    /// or an encoder. Errors after start are returned by [`CaptureHandle::stop`].
    fn start(&self, segments: SyncSender<CapturedSegment>) -> Result<CaptureHandle, CaptureError>;
}

/// State shared between a [`CaptureHandle`] and the threads it controls.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) stop: AtomicBool,
    pub(crate) muted: AtomicBool,
    pub(crate) stats: Arc<CaptureStats>,
    /// Raw video frames a feed has sent that the encoder has not taken yet (source.rs bounds it).
    pub(crate) raw_video_queued: AtomicUsize,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// What a finished capture leaves.
#[derive(Debug)]
#[must_use = "a capture can end with an error; check `error`"]
pub struct CaptureSummary {
    /// Final counters.
    pub stats: CaptureStatsSnapshot,
    /// Segments (in order, after everything sent) the channel could not take before the end.
    /// Present even when the capture ended with an error, so no finished segment is lost.
    pub undelivered: Vec<CapturedSegment>,
    /// Why the capture ended early, if it did: a source or encoder failure, or a panic. The
    /// segments finished before it are delivered or in `undelivered`.
    pub error: Option<CaptureError>,
}

/// What a capture thread returns.
#[derive(Debug, Default)]
pub(crate) struct WorkerEnd {
    pub(crate) undelivered: Vec<CapturedSegment>,
    pub(crate) error: Option<CaptureError>,
}

type Worker = JoinHandle<WorkerEnd>;

/// Controls a running capture. Dropping it stops the capture and waits for it.
#[derive(Debug)]
pub struct CaptureHandle {
    shared: Arc<Shared>,
    worker: Option<Worker>,
}

impl CaptureHandle {
    pub(crate) fn new(shared: Arc<Shared>, worker: Worker) -> Self {
        CaptureHandle {
            shared,
            worker: Some(worker),
        }
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<CaptureStats> {
        Arc::clone(&self.shared.stats)
    }

    /// Mutes (silence is encoded, timing unchanged) or unmutes the audio. Takes effect from the
    /// next audio frame (within ~21 ms).
    pub fn set_muted(&self, muted: bool) {
        self.shared.muted.store(muted, Ordering::Relaxed);
    }

    /// Whether audio is muted.
    pub fn is_muted(&self) -> bool {
        self.shared.muted.load(Ordering::Relaxed)
    }

    /// Whether the capture ended by itself (end of file, `max_media_secs`, or an error).
    pub fn is_finished(&self) -> bool {
        self.worker.as_ref().is_none_or(|w| w.is_finished())
    }

    /// Stops the capture: the encoders are flushed and the last, possibly short, segment is
    /// emitted. Blocks until the capture threads are done (at most about one frame interval
    /// for lavfi and files; a camera that delivers nothing can hold it until its read returns).
    pub fn stop(mut self) -> CaptureSummary {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    /// Waits until the capture ends by itself (end of file or `max_media_secs`).
    pub fn wait(mut self) -> CaptureSummary {
        self.join()
    }

    fn join(&mut self) -> CaptureSummary {
        let end = match self.worker.take().map(JoinHandle::join) {
            Some(Ok(end)) => end,
            Some(Err(_)) | None => WorkerEnd {
                undelivered: Vec::new(),
                error: Some(CaptureError::Panicked),
            },
        };
        CaptureSummary {
            stats: self.shared.stats.snapshot(),
            undelivered: end.undelivered,
            error: end.error,
        }
    }
}

impl Drop for CaptureHandle {
    fn drop(&mut self) {
        if self.worker.is_some() {
            self.shared.stop.store(true, Ordering::Relaxed);
            let summary = self.join();
            if let Some(e) = summary.error {
                tracing::warn!(error = %e, "capture ended with an error while its handle was dropped");
            }
            if !summary.undelivered.is_empty() {
                tracing::error!(
                    count = summary.undelivered.len(),
                    "capture handle dropped with undelivered segments; use stop() to get them"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_specs_parse_and_print() {
        for s in [
            "lavfi",
            "lavfi:mandelbrot",
            "lavfi:testsrc|sine=frequency=440",
            "file:/tmp/a b.mp4",
            "v4l2:/dev/video0",
            "v4l2:/dev/video2,alsa:hw:1",
        ] {
            let spec: SourceSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        assert_eq!(
            "lavfi".parse::<SourceSpec>().unwrap(),
            SourceSpec::default()
        );
        assert_eq!(
            "v4l2:/dev/video2,alsa:hw:1".parse::<SourceSpec>().unwrap(),
            SourceSpec::V4l2 {
                device: "/dev/video2".into(),
                alsa: Some("hw:1".into())
            }
        );
        for bad in [
            "",
            "rtsp://x",
            "file:",
            "v4l2:",
            "v4l2:/dev/video0,pulse:x",
            "v4l2:/dev/v,alsa:",
        ] {
            assert!(
                bad.parse::<SourceSpec>().is_err(),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn config_validation() {
        assert!(CaptureConfig::default().validate().is_ok());
        assert_eq!(CaptureConfig::default().gop(), 120);
        let c = CaptureConfig {
            width: 641,
            ..CaptureConfig::default()
        };
        assert!(matches!(c.validate(), Err(CaptureError::InvalidConfig(_))));
        let c = CaptureConfig {
            segment_secs: 0,
            ..CaptureConfig::default()
        };
        assert!(c.validate().is_err());
        let c = CaptureConfig {
            first_pts: 0,
            ..CaptureConfig::default()
        };
        assert!(c.validate().is_err());
        let ntsc = CaptureConfig {
            fps: FrameRate::NTSC,
            ..CaptureConfig::default()
        };
        assert!(ntsc.validate().is_ok());
        assert_eq!(ntsc.gop(), 120);
        let p = ntsc.codec_params().unwrap();
        assert_eq!((p.fps_num, p.fps_den), (30_000, 1001));
    }

    #[test]
    fn a_value_the_entry_cannot_hold_is_refused_not_clamped() {
        let ok = CaptureConfig::default().codec_params().unwrap();
        assert_eq!((ok.width, ok.height, ok.channels), (1280, 720, 1));
        // Even and otherwise valid, but wider than the entry's u16.
        let wide = CaptureConfig {
            width: 70_000,
            ..CaptureConfig::default()
        };
        assert!(matches!(
            wide.codec_params(),
            Err(CaptureError::InvalidConfig(w)) if w.contains("width")
        ));
        assert!(matches!(
            wide.validate(),
            Err(CaptureError::InvalidConfig(w)) if w.contains("width")
        ));
        let tall = CaptureConfig {
            height: 65_538,
            ..CaptureConfig::default()
        };
        assert!(tall.codec_params().is_err());
        let loud = CaptureConfig {
            channels: 256,
            ..CaptureConfig::default()
        };
        assert!(matches!(
            loud.codec_params(),
            Err(CaptureError::InvalidConfig(w)) if w.contains("channels")
        ));
        // The capture refuses to start: no segment, so nothing is signed.
        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
        let mut synthetic = SyntheticCapture::new(Some(1));
        synthetic.config = wide;
        assert!(matches!(
            synthetic.start(tx),
            Err(CaptureError::InvalidConfig(_))
        ));
    }
}
