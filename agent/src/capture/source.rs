//! Feeds: threads that produce raw frames, already in the encoders' format.
//!
//! Every feed delivers video as `yuv420p` at the configured size and constant frame rate (the
//! `fps` filter duplicates or drops to get there) and audio as planar float at the configured
//! rate and layout in frames of [`AAC_FRAME`] samples. The capture thread numbers frames and
//! samples itself, so feeds need not carry timestamps.
//!
//! Non-live feeds (lavfi, file) sleep until each frame's media time on the wall clock when paced,
//! and block on a full channel when not paced (nothing is lost in tests). Live feeds and paced
//! feeds never block: a frame that finds the channel full is dropped and counted, because a
//! camera that is not read drops frames anyway, and the count tells.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ffmpeg_next::{
    channel_layout::ChannelLayout, codec, decoder, device, filter, format, frame, media,
    Dictionary, Error as FfError, Packet,
};

use super::{
    CaptureConfig, CaptureError, CaptureStats, FfCtx, FrameRate, Pacing, Shared, SourceSpec,
};

/// Samples per AAC frame: audio is cut into frames of this size for the encoder.
pub(crate) const AAC_FRAME: usize = 1024;

/// Raw frames buffered between feeds and encoders, video and audio together: at 30 fps and
/// 48 kHz (~47 AAC frames a second) that is ~0.3 s of media, enough for encoder hiccups. Video
/// in it is further bounded by [`RAW_VIDEO_BUDGET_BYTES`], since FFmpeg's frame pools keep as
/// many video frames as were ever queued at once.
const FRAME_CHANNEL_CAPACITY: usize = 24;

/// Bytes of raw video a live or paced feed may have queued for the encoder; past it a frame is
/// dropped (and counted) as when the channel is full. Each queued frame stays in FFmpeg's frame
/// pool for good, so this is what a stall adds to the peak: 12 MB is 8 frames at 1280x720
/// (~0.27 s) and 3 at 1920x1080 (0.1 s), where the channel alone let ~10 frames (31 MB at
/// 1080p) pile up when the encoder was starved (docs/PERFORMANCE.md). The frame being encoded
/// counts: at 1080p that leaves two of slack. (7 MB, one less at 1080p, was tried: it saves
/// memory only in a stall, and there it drops a frame instead.) Never fewer than
/// [`MIN_RAW_VIDEO_FRAMES`].
const RAW_VIDEO_BUDGET_BYTES: usize = 12_000_000;

/// Raw video frames always allowed in the queue, whatever their size: the frame being handed
/// over and one behind it.
const MIN_RAW_VIDEO_FRAMES: usize = 2;

/// Raw video frames the queue may hold at this picture size (yuv420p: 1.5 bytes a pixel).
fn raw_video_budget(width: u32, height: u32) -> usize {
    let frame = (width as usize * height as usize * 3 / 2).max(1);
    (RAW_VIDEO_BUDGET_BYTES / frame).max(MIN_RAW_VIDEO_FRAMES)
}

/// What a feed hands the capture thread.
pub(crate) enum Raw {
    Video(frame::Video),
    Audio(frame::Audio),
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Raw::Video(v) => write!(f, "Video({}x{})", v.width(), v.height()),
            Raw::Audio(a) => write!(f, "Audio({} samples)", a.samples()),
        }
    }
}

/// A raw frame and when it was captured.
#[derive(Debug)]
pub(crate) struct RawFrame {
    pub(crate) raw: Raw,
    pub(crate) captured_at: Instant,
    /// Media dropped just before this frame (video frames or audio samples) because the channel
    /// was full: the capture thread leaves that gap in the timestamps, so a loss stays visible
    /// and audio and video stay in step.
    pub(crate) skipped: u64,
}

type FeedThread = JoinHandle<Result<(), CaptureError>>;

/// Running feeds: their frames arrive on `rx` until every feed has ended.
#[derive(Debug)]
pub(crate) struct Feeds {
    pub(crate) rx: Receiver<RawFrame>,
    pub(crate) threads: Vec<FeedThread>,
    /// Whether any feed produces audio (if not, the capture thread encodes silence).
    pub(crate) has_audio: bool,
}

/// Opens the source and starts its feed threads. Opening happens here, on the caller's thread,
/// so that a missing device or file is reported by `start()`.
pub(crate) fn start_feeds(
    cfg: &CaptureConfig,
    shared: &Arc<Shared>,
) -> Result<Feeds, CaptureError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(FRAME_CHANNEL_CAPACITY);
    let fmt = Formats::new(cfg);
    let limits = Limits::new(cfg);
    let paced = cfg.pacing == Pacing::RealTime;
    let mut threads = Vec::new();
    let has_audio;
    match &cfg.source {
        SourceSpec::Lavfi { video, audio } => {
            let vchain = match video {
                Some(spec) => format!("{spec},{}", fmt.video_chain()),
                // The default synthetic camera is made at the encoder's size and rate: the `fps`
                // filter would pass each frame on only once it holds the next, one more 3.1 MB
                // buffer in the pool at 1080p. A custom spec, a file or a camera keeps it.
                None => format!(
                    "testsrc2=size={}x{}:rate={},format=yuv420p",
                    cfg.width, cfg.height, cfg.fps
                ),
            };
            let aspec = audio
                .clone()
                .unwrap_or_else(|| format!("sine=frequency=1000:sample_rate={}", cfg.sample_rate));
            let vgraph = source_graph(&vchain, true)?;
            let agraph = source_graph(&format!("{aspec},{}", fmt.audio_chain()), false)?;
            let out = FeedOut::new(tx, shared, !paced, &fmt);
            let feed = LavfiFeed {
                vgraph,
                agraph,
                fmt,
                limits,
                pacer: Pacer::new(paced),
                out,
            };
            threads.push(spawn("capture-lavfi", shared, move || feed.run())?);
            has_audio = true;
        }
        SourceSpec::File(path) => {
            if !path.exists() {
                return Err(CaptureError::NotFound(path.display().to_string()));
            }
            let ictx = format::input(path).ctx("opening input file")?;
            let feed = DemuxFeed::new(ictx, &fmt, true, true, limits, Pacer::new(paced))?;
            if feed.video.is_none() {
                return Err(CaptureError::Source(format!(
                    "{} has no video stream",
                    path.display()
                )));
            }
            has_audio = feed.audio.is_some();
            let out = FeedOut::new(tx, shared, !paced, &fmt);
            threads.push(spawn("capture-file", shared, move || feed.run(out))?);
        }
        SourceSpec::V4l2 { device, alsa } => {
            let ictx = open_v4l2(device, cfg)?;
            let vfeed = DemuxFeed::new(ictx, &fmt, true, false, limits, Pacer::new(false))?;
            if vfeed.video.is_none() {
                return Err(CaptureError::Source(format!(
                    "{} gives no video",
                    device.display()
                )));
            }
            let afeed = match alsa {
                Some(name) => {
                    let ictx = open_alsa(name, cfg)?;
                    let afeed = DemuxFeed::new(ictx, &fmt, false, true, limits, Pacer::new(false))?;
                    if afeed.audio.is_none() {
                        return Err(CaptureError::Source(format!("alsa:{name} gives no audio")));
                    }
                    Some(afeed)
                }
                None => None,
            };
            has_audio = afeed.is_some();
            // Live devices: never block the device reader.
            let out = FeedOut::new(tx.clone(), shared, false, &fmt);
            threads.push(spawn("capture-v4l2", shared, move || vfeed.run(out))?);
            if let Some(afeed) = afeed {
                let out = FeedOut::new(tx, shared, false, &fmt);
                threads.push(spawn("capture-alsa", shared, move || afeed.run(out))?);
            }
        }
    }
    Ok(Feeds {
        rx,
        threads,
        has_audio,
    })
}

/// Starts a feed thread. A feed that fails stops the whole capture (a camera that died must
/// not leave an audio-only recording running unnoticed); the error reaches `CaptureSummary`.
fn spawn(
    name: &str,
    shared: &Arc<Shared>,
    f: impl FnOnce() -> Result<(), CaptureError> + Send + 'static,
) -> Result<FeedThread, CaptureError> {
    let shared = Arc::clone(shared);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let result = f();
            if let Err(e) = &result {
                tracing::error!(error = %e, "capture feed failed; stopping the capture");
                shared.stop.store(true, Ordering::Relaxed);
            }
            result
        })
        .map_err(|e| CaptureError::Source(format!("cannot start {name} thread: {e}")))
}

/// The encoders' input format.
#[derive(Debug, Clone, Copy)]
struct Formats {
    width: u32,
    height: u32,
    fps: FrameRate,
    sample_rate: u32,
    channels: u16,
}

impl Formats {
    fn new(cfg: &CaptureConfig) -> Self {
        Formats {
            width: cfg.width,
            height: cfg.height,
            fps: cfg.fps,
            sample_rate: cfg.sample_rate,
            channels: cfg.channels,
        }
    }

    /// Filters that bring any video to the encoder's format at a constant frame rate.
    fn video_chain(&self) -> String {
        format!(
            "scale={}:{},fps={},format=yuv420p",
            self.width, self.height, self.fps
        )
    }

    /// Filters that bring any audio to the encoder's format in AAC-sized frames.
    fn audio_chain(&self) -> String {
        let layout = if self.channels == 1 { "mono" } else { "stereo" };
        format!(
            "aresample={},aformat=sample_fmts=fltp:channel_layouts={layout},asetnsamples=n={AAC_FRAME}:p=0",
            self.sample_rate
        )
    }
}

/// Stop after this much media (`u64::MAX`: never).
#[derive(Debug, Clone, Copy)]
struct Limits {
    video_frames: u64,
    audio_samples: u64,
}

impl Limits {
    fn new(cfg: &CaptureConfig) -> Self {
        match cfg.max_media_secs {
            Some(s) => Limits {
                video_frames: cfg.fps.frames_in(s),
                audio_samples: u64::from(s) * u64::from(cfg.sample_rate),
            },
            None => Limits {
                video_frames: u64::MAX,
                audio_samples: u64::MAX,
            },
        }
    }
}

/// Sleeps until a frame's media time has come on the wall clock (when pacing).
#[derive(Debug)]
struct Pacer {
    paced: bool,
    t0: Option<Instant>,
}

impl Pacer {
    fn new(paced: bool) -> Self {
        Pacer { paced, t0: None }
    }

    fn wait(&mut self, media_time: Duration) {
        let t0 = *self.t0.get_or_insert_with(Instant::now);
        if self.paced {
            std::thread::sleep((t0 + media_time).saturating_duration_since(Instant::now()));
        }
    }
}

fn media_time(count: u64, rate: u32) -> Duration {
    Duration::from_micros(count.saturating_mul(1_000_000) / u64::from(rate.max(1)))
}

/// A feed's end of the frame channel.
#[derive(Debug)]
struct FeedOut {
    tx: SyncSender<RawFrame>,
    shared: Arc<Shared>,
    block: bool,
    /// Raw video frames that may be queued when not blocking.
    video_budget: usize,
    /// Video frames dropped since the last one sent.
    skipped_frames: u64,
    /// Audio samples dropped since the last frame sent.
    skipped_samples: u64,
}

impl FeedOut {
    fn new(tx: SyncSender<RawFrame>, shared: &Arc<Shared>, block: bool, fmt: &Formats) -> Self {
        FeedOut {
            tx,
            shared: Arc::clone(shared),
            block,
            video_budget: raw_video_budget(fmt.width, fmt.height),
            skipped_frames: 0,
            skipped_samples: 0,
        }
    }

    /// Sends a frame; false when the capture thread is gone or stopping.
    fn send(&mut self, raw: Raw) -> bool {
        if self.shared.stopping() {
            return false;
        }
        let stats = &self.shared.stats;
        let (is_video, samples) = match &raw {
            Raw::Video(_) => (true, 0),
            Raw::Audio(a) => (false, a.samples() as u64),
        };
        // Test hook (FIELDSEAL_DROP_FRAMES, see `fault`): this video frame
        // takes the path of a frame the encoder had no room for.
        let forced_drop = is_video
            && crate::fault::drop_video_frame(stats.frames_captured.load(Ordering::Relaxed));
        if is_video {
            CaptureStats::add(&stats.frames_captured, 1);
        }
        let frame = RawFrame {
            raw,
            captured_at: Instant::now(),
            skipped: if is_video {
                self.skipped_frames
            } else {
                self.skipped_samples
            },
        };
        // Counted before sending: the capture thread subtracts as soon as it has encoded it.
        let queued = &self.shared.raw_video_queued;
        if self.block && !forced_drop {
            if is_video {
                queued.fetch_add(1, Ordering::Relaxed);
            }
            // The skips this frame carries are told; only the test hook
            // makes any in this mode.
            if is_video {
                self.skipped_frames = 0;
            } else {
                self.skipped_samples = 0;
            }
            return self.tx.send(frame).is_ok();
        }
        let over_budget = is_video && queued.fetch_add(1, Ordering::Relaxed) >= self.video_budget;
        let sent = if over_budget || forced_drop {
            Err(TrySendError::Full(frame))
        } else {
            self.tx.try_send(frame)
        };
        if is_video && sent.is_err() {
            queued.fetch_sub(1, Ordering::Relaxed);
        }
        match sent {
            Ok(()) => {
                if is_video {
                    self.skipped_frames = 0;
                } else {
                    self.skipped_samples = 0;
                }
                true
            }
            Err(TrySendError::Full(_)) => {
                CaptureStats::add(&stats.frames_dropped, 1);
                if is_video {
                    self.skipped_frames += 1;
                } else {
                    self.skipped_samples += samples;
                }
                tracing::warn!(is_video, "encoder behind: raw frame dropped");
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// A filter graph whose sources are in `spec` (lavfi), ending in a sink named `out`.
fn source_graph(spec: &str, video: bool) -> Result<filter::Graph, CaptureError> {
    let mut graph = filter::Graph::new();
    add_sink(&mut graph, video)?;
    graph
        .input("out", 0)
        .and_then(|p| p.parse(spec))
        .map_err(|e| CaptureError::Source(format!("bad lavfi graph {spec:?}: {e}")))?;
    graph.validate().ctx("validating lavfi graph")?;
    Ok(graph)
}

fn add_sink(graph: &mut filter::Graph, video: bool) -> Result<(), CaptureError> {
    let name = if video { "buffersink" } else { "abuffersink" };
    let sink = filter::find(name).ok_or(CaptureError::Source(format!("no {name} filter")))?;
    graph.add(&sink, "out", "").ctx("adding filter sink")?;
    Ok(())
}

fn find_filter(name: &str) -> Result<filter::Filter, CaptureError> {
    filter::find(name).ok_or_else(|| CaptureError::Source(format!("no {name} filter")))
}

/// Pulls one frame from the graph's sink: `Ok(false)` when it needs more input or has ended.
fn pull<F: std::ops::DerefMut<Target = frame::Frame>>(
    graph: &mut filter::Graph,
    frame: &mut F,
) -> Result<bool, CaptureError> {
    let mut out = graph
        .get("out")
        .ok_or(CaptureError::Source("filter graph lost its sink".into()))?;
    match out.sink().frame(frame) {
        Ok(()) => Ok(true),
        Err(FfError::Eof) => Ok(false),
        Err(FfError::Other { errno }) if errno == ffmpeg_next::util::error::EAGAIN => Ok(false),
        Err(e) => Err(CaptureError::Ffmpeg {
            context: "pulling filtered frame",
            source: e,
        }),
    }
}

/// Synthetic camera: a lavfi video graph and a lavfi audio graph, merged in time order.
struct LavfiFeed {
    vgraph: filter::Graph,
    agraph: filter::Graph,
    fmt: Formats,
    limits: Limits,
    pacer: Pacer,
    out: FeedOut,
}

impl LavfiFeed {
    fn run(mut self) -> Result<(), CaptureError> {
        let (mut vn, mut an) = (0u64, 0u64);
        let (num, den) = (u64::from(self.fmt.fps.num()), u64::from(self.fmt.fps.den()));
        let sr = u64::from(self.fmt.sample_rate);
        loop {
            let video_left = vn < self.limits.video_frames;
            let audio_left = an < self.limits.audio_samples;
            // Emit whichever stream is behind in media time: vn/fps <= an/sr,
            // with fps = num/den.
            let video_next = video_left && (!audio_left || vn * sr * den <= an * num);
            let raw = if video_next {
                // Wait first, then make the picture: a frame pulled before the wait would sit
                // in hand for a frame interval while the graph (the `fps` filter) holds the
                // next, one more 3.1 MB buffer in the pool at 1080p for nothing.
                self.pacer.wait(self.fmt.fps.media_time(vn));
                let mut f = frame::Video::empty();
                if !pull(&mut self.vgraph, &mut f)? {
                    return Ok(());
                }
                vn += 1;
                Raw::Video(f)
            } else if audio_left {
                let mut f = frame::Audio::empty();
                if !pull(&mut self.agraph, &mut f)? {
                    return Ok(());
                }
                self.pacer.wait(media_time(an, self.fmt.sample_rate));
                let left = self.limits.audio_samples - an;
                if (f.samples() as u64) > left {
                    // Exact media length in tests: the last audio frame is cut to the limit.
                    f.set_samples(usize::try_from(left).unwrap_or(AAC_FRAME));
                }
                an += f.samples() as u64;
                Raw::Audio(f)
            } else {
                return Ok(());
            };
            if !self.out.send(raw) {
                return Ok(());
            }
        }
    }
}

/// Decoder + normalising filter graph for one input stream.
struct StreamPath<D> {
    index: usize,
    decoder: D,
    graph: filter::Graph,
}

/// A demuxed input (file, camera or microphone) decoded and normalised.
struct DemuxFeed {
    ictx: format::context::Input,
    video: Option<StreamPath<decoder::Video>>,
    audio: Option<StreamPath<decoder::Audio>>,
    fmt: Formats,
    limits: Limits,
    pacer: Pacer,
    vn: u64,
    an: u64,
}

impl DemuxFeed {
    fn new(
        ictx: format::context::Input,
        fmt: &Formats,
        want_video: bool,
        want_audio: bool,
        limits: Limits,
        pacer: Pacer,
    ) -> Result<Self, CaptureError> {
        let mut video = None;
        let mut audio = None;
        if want_video {
            if let Some(st) = ictx.streams().best(media::Type::Video) {
                let dec = codec::context::Context::from_parameters(st.parameters())
                    .ctx("video decoder parameters")?
                    .decoder()
                    .video()
                    .ctx("opening video decoder")?;
                let tb = st.time_base();
                let pix = dec.format().descriptor().map_or("yuv420p", |d| d.name());
                let sar = dec.aspect_ratio();
                let sar = if sar.numerator() <= 0 {
                    ffmpeg_next::Rational::new(1, 1)
                } else {
                    sar
                };
                let args = format!(
                    "video_size={}x{}:pix_fmt={pix}:time_base={}/{}:pixel_aspect={}/{}",
                    dec.width(),
                    dec.height(),
                    tb.numerator(),
                    tb.denominator().max(1),
                    sar.numerator(),
                    sar.denominator().max(1)
                );
                let graph = fed_graph("buffer", &args, &fmt.video_chain(), true)?;
                video = Some(StreamPath {
                    index: st.index(),
                    decoder: dec,
                    graph,
                });
            }
        }
        if want_audio {
            if let Some(st) = ictx.streams().best(media::Type::Audio) {
                let dec = codec::context::Context::from_parameters(st.parameters())
                    .ctx("audio decoder parameters")?
                    .decoder()
                    .audio()
                    .ctx("opening audio decoder")?;
                let tb = st.time_base();
                let mut layout = dec.channel_layout();
                if layout.bits() == 0 {
                    layout = ChannelLayout::default(i32::from(dec.channels()));
                }
                let args = format!(
                    "time_base={}/{}:sample_rate={}:sample_fmt={}:channel_layout=0x{:x}",
                    tb.numerator(),
                    tb.denominator().max(1),
                    dec.rate(),
                    dec.format().name(),
                    layout.bits()
                );
                let graph = fed_graph("abuffer", &args, &fmt.audio_chain(), false)?;
                audio = Some(StreamPath {
                    index: st.index(),
                    decoder: dec,
                    graph,
                });
            }
        }
        Ok(DemuxFeed {
            ictx,
            video,
            audio,
            fmt: *fmt,
            limits,
            pacer,
            vn: 0,
            an: 0,
        })
    }

    fn done(&self) -> bool {
        let v_done = self.video.is_none() || self.vn >= self.limits.video_frames;
        let a_done = self.audio.is_none() || self.an >= self.limits.audio_samples;
        v_done && a_done
    }

    fn run(mut self, mut out: FeedOut) -> Result<(), CaptureError> {
        let mut packet = Packet::empty();
        loop {
            if self.done() {
                return Ok(());
            }
            match packet.read(&mut self.ictx) {
                Ok(()) => {}
                Err(FfError::Eof) => break,
                Err(FfError::Other { errno }) if errno == ffmpeg_next::util::error::EAGAIN => {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                Err(e) => {
                    return Err(CaptureError::Ffmpeg {
                        context: "reading input",
                        source: e,
                    })
                }
            }
            let idx = packet.stream();
            if self.video.as_ref().is_some_and(|p| p.index == idx) {
                if let Some(p) = self.video.as_mut() {
                    // A corrupt packet from a camera or file is skipped, not fatal.
                    if let Err(e) = p.decoder.send_packet(&packet) {
                        tracing::debug!(error = %e, "video packet not decodable");
                    }
                }
                if !self.drain_video(&mut out, false)? {
                    return Ok(());
                }
            } else if self.audio.as_ref().is_some_and(|p| p.index == idx) {
                if let Some(p) = self.audio.as_mut() {
                    if let Err(e) = p.decoder.send_packet(&packet) {
                        tracing::debug!(error = %e, "audio packet not decodable");
                    }
                }
                if !self.drain_audio(&mut out, false)? {
                    return Ok(());
                }
            }
        }
        // End of input: flush decoders and filters so the last frames come out.
        if let Some(p) = self.video.as_mut() {
            let _ = p.decoder.send_eof();
        }
        if let Some(p) = self.audio.as_mut() {
            let _ = p.decoder.send_eof();
        }
        if self.drain_video(&mut out, true)? {
            self.drain_audio(&mut out, true)?;
        }
        Ok(())
    }

    /// Moves decoded video through the filter to `out`; false when the feed must end.
    fn drain_video(&mut self, out: &mut FeedOut, eof: bool) -> Result<bool, CaptureError> {
        let Some(p) = self.video.as_mut() else {
            return Ok(true);
        };
        let mut decoded = frame::Video::empty();
        while p.decoder.receive_frame(&mut decoded).is_ok() {
            let ts = decoded.timestamp();
            decoded.set_pts(ts);
            src(&mut p.graph)?
                .source()
                .add(&decoded)
                .ctx("filtering video")?;
        }
        if eof {
            src(&mut p.graph)?
                .source()
                .flush()
                .ctx("flushing video filter")?;
        }
        let mut f = frame::Video::empty();
        while self.vn < self.limits.video_frames && pull(&mut p.graph, &mut f)? {
            self.pacer.wait(self.fmt.fps.media_time(self.vn));
            self.vn += 1;
            if !out.send(Raw::Video(std::mem::replace(&mut f, frame::Video::empty()))) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Moves decoded audio through the filter to `out`; false when the feed must end.
    fn drain_audio(&mut self, out: &mut FeedOut, eof: bool) -> Result<bool, CaptureError> {
        let Some(p) = self.audio.as_mut() else {
            return Ok(true);
        };
        let mut decoded = frame::Audio::empty();
        while p.decoder.receive_frame(&mut decoded).is_ok() {
            let ts = decoded.timestamp();
            decoded.set_pts(ts);
            src(&mut p.graph)?
                .source()
                .add(&decoded)
                .ctx("filtering audio")?;
        }
        if eof {
            src(&mut p.graph)?
                .source()
                .flush()
                .ctx("flushing audio filter")?;
        }
        let mut f = frame::Audio::empty();
        while self.an < self.limits.audio_samples && pull(&mut p.graph, &mut f)? {
            self.pacer.wait(media_time(self.an, self.fmt.sample_rate));
            let left = self.limits.audio_samples - self.an;
            if (f.samples() as u64) > left {
                f.set_samples(usize::try_from(left).unwrap_or(AAC_FRAME));
            }
            self.an += f.samples() as u64;
            if !out.send(Raw::Audio(std::mem::replace(&mut f, frame::Audio::empty()))) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn src(graph: &mut filter::Graph) -> Result<filter::Context, CaptureError> {
    graph
        .get("in")
        .ok_or(CaptureError::Source("filter graph lost its source".into()))
}

/// A filter graph fed by a `buffer`/`abuffer` source named `in`, ending in a sink named `out`.
fn fed_graph(
    source: &str,
    args: &str,
    chain: &str,
    video: bool,
) -> Result<filter::Graph, CaptureError> {
    let mut graph = filter::Graph::new();
    graph
        .add(&find_filter(source)?, "in", args)
        .map_err(|e| CaptureError::Source(format!("{source} with {args:?}: {e}")))?;
    add_sink(&mut graph, video)?;
    graph
        .output("in", 0)
        .and_then(|p| p.input("out", 0))
        .and_then(|p| p.parse(chain))
        .map_err(|e| CaptureError::Source(format!("bad filter chain {chain:?}: {e}")))?;
    graph.validate().ctx("validating filter graph")?;
    Ok(graph)
}

fn find_device(video: bool, name: &str) -> Result<ffmpeg_next::Format, CaptureError> {
    // Device names can be lists of aliases: v4l2 is "video4linux2,v4l2".
    let matches = |f: &ffmpeg_next::Format| f.name().split(',').any(|n| n == name);
    let found = if video {
        device::input::video().find(matches)
    } else {
        device::input::audio().find(matches)
    };
    found.ok_or_else(|| CaptureError::Source(format!("this FFmpeg has no {name} input device")))
}

fn open_v4l2(dev: &Path, cfg: &CaptureConfig) -> Result<format::context::Input, CaptureError> {
    if !dev.exists() {
        return Err(CaptureError::NotFound(dev.display().to_string()));
    }
    let fmt = find_device(true, "v4l2")?;
    let mut opts = Dictionary::new();
    opts.set("framerate", &cfg.fps.to_string());
    opts.set("video_size", &format!("{}x{}", cfg.width, cfg.height));
    match format::open_with(dev, &fmt, opts).ctx("opening v4l2 camera")? {
        format::context::Context::Input(i) => Ok(i),
        format::context::Context::Output(_) => {
            Err(CaptureError::Source("v4l2 opened as output".into()))
        }
    }
}

fn open_alsa(name: &str, cfg: &CaptureConfig) -> Result<format::context::Input, CaptureError> {
    // ALSA names are not paths; a `hw:N` card that does not exist shows up as ENOENT/EIO here.
    let fmt = find_device(false, "alsa")?;
    let mut opts = Dictionary::new();
    opts.set("sample_rate", &cfg.sample_rate.to_string());
    opts.set("channels", &cfg.channels.to_string());
    match format::open_with(name, &fmt, opts) {
        Ok(format::context::Context::Input(i)) => Ok(i),
        Ok(format::context::Context::Output(_)) => {
            Err(CaptureError::Source("alsa opened as output".into()))
        }
        Err(e) => Err(CaptureError::NotFound(format!("alsa:{name} ({e})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_video_budget_scales_with_the_picture() {
        assert_eq!(raw_video_budget(1280, 720), 8);
        assert_eq!(raw_video_budget(1920, 1080), 3);
        assert_eq!(raw_video_budget(3840, 2160), MIN_RAW_VIDEO_FRAMES);
        assert!(raw_video_budget(320, 240) > 50);
    }

    #[test]
    fn camera_and_microphone_devices_are_found() {
        ffmpeg_next::init().unwrap();
        assert!(find_device(true, "v4l2").is_ok());
        assert!(find_device(false, "alsa").is_ok());
        assert!(find_device(true, "no-such-device").is_err());
    }
}
