//! The real capture: FFmpeg sources, libx264 + AAC, one MPEG-TS muxer.

use std::sync::mpsc::SyncSender;
use std::sync::{Arc, OnceLock};

use super::encode::{open_audio_encoder, open_video_encoder, Pipeline};
use super::mux::TsMuxer;
use super::outbox::Outbox;
use super::source::start_feeds;
use super::{Capture, CaptureConfig, CaptureError, CaptureHandle, CapturedSegment, FfCtx, Shared};

/// Captures from FFmpeg sources according to its [`CaptureConfig`].
///
/// ```no_run
/// use fieldseal_agent::capture::{Capture, CaptureConfig, FfmpegCapture};
/// let (tx, rx) = std::sync::mpsc::sync_channel(8);
/// let handle = FfmpegCapture::new(CaptureConfig::default()).start(tx)?;
/// let first = rx.recv().expect("a segment");
/// let summary = handle.stop();
/// assert!(summary.error.is_none());
/// # Ok::<(), fieldseal_agent::capture::CaptureError>(())
/// ```
#[derive(Debug, Clone)]
pub struct FfmpegCapture {
    /// What to capture and how to encode it.
    pub config: CaptureConfig,
}

impl FfmpegCapture {
    /// A capture with this configuration.
    pub fn new(config: CaptureConfig) -> Self {
        FfmpegCapture { config }
    }
}

/// Initialises FFmpeg (and its devices) once per process.
fn init_ffmpeg() -> Result<(), CaptureError> {
    static INIT: OnceLock<Result<(), ffmpeg_next::Error>> = OnceLock::new();
    (*INIT.get_or_init(|| {
        // Before any encoder allocates its frames (thp.rs says why).
        if let Err(e) = super::thp::disable_transparent_huge_pages() {
            tracing::warn!(error = %e, "cannot turn off transparent huge pages; x264 uses more memory");
        }
        ffmpeg_next::init()?;
        // Quiet by default: FFmpeg's own log goes to stderr, bypassing tracing.
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Error);
        Ok(())
    }))
    .ctx("initialising ffmpeg")
}

impl Capture for FfmpegCapture {
    fn start(&self, segments: SyncSender<CapturedSegment>) -> Result<CaptureHandle, CaptureError> {
        self.config.validate()?;
        init_ffmpeg()?;
        let cfg = self.config.clone();
        let shared = Arc::new(Shared::default());
        // Encoders and muxer first, so that a bad encoder setting fails before any device opens.
        let venc = open_video_encoder(&cfg)?;
        let aenc = open_audio_encoder(&cfg)?;
        let mux = TsMuxer::new(&venc, &aenc)?;
        let feeds = start_feeds(&cfg, &shared)?;
        let outbox = Outbox::new(
            segments,
            cfg.max_backlog_segments,
            Arc::clone(&shared.stats),
        );
        let pipeline = Pipeline::new(cfg, Arc::clone(&shared), feeds, venc, aenc, mux, outbox)
            .inspect_err(|_| {
                // The feeds already run: make them end.
                shared
                    .stop
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            })?;
        let worker = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || pipeline.run())
            .map_err(|e| {
                // The feeds already run: make them end.
                shared
                    .stop
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                CaptureError::Source(format!("cannot start capture thread: {e}"))
            })?;
        Ok(CaptureHandle::new(shared, worker))
    }
}
