//! The long-running recorder: the thin driver around [`Recorder`] and [`Spool`].
//!
//! ```text
//!  capture thread ──segments──► bridge thread ─┐
//!  control socket thread ──commands──────────────┼─► chain writer (this loop): Recorder decides,
//!  signals / deadline ───────────────────────────┘   Spool writes media, signs, appends, fsyncs
//! ```
//!
//! The capture never waits for the writer: it hands segments over a bounded
//! channel and keeps any it cannot hand over in its own backlog (counted, and
//! signed into the chain as a capture-backlog event when it happens).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use fieldseal_proto::entry::{Event, StopReason};
use fieldseal_proto::identity::Signer;
use rand_core::RngCore;

use crate::capture::{
    Capture, CaptureConfig, CaptureHandle, CaptureStats, CaptureStatsSnapshot, CaptureSummary,
    CapturedSegment, FfmpegCapture, Pacing, SyntheticCapture,
};
use crate::clock::{Clock, SystemClock};
use crate::config::AgentConfig;
use crate::control::{self, Request, Response};
use crate::index::Index;
use crate::recorder::{Action, Command, Recorder, SegmentPlan};
use crate::spool::{SegmentDraft, Spool, SpoolError};

/// How a run is set up.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Source spec overriding the configuration (`lavfi`, `file:…`, `v4l2:…`, `synthetic`).
    pub source: Option<String>,
    /// Start recording at once with these tags (`record`).
    pub start: Option<(Option<String>, Option<String>)>,
    /// Record exactly this many seconds of media, then stop and exit (`record`).
    pub duration_secs: Option<u32>,
    /// Produce frames as fast as the encoder takes them (tests, benchmarks).
    pub fast: bool,
    /// Pre-event seconds overriding the configuration.
    pub pre_event_secs: Option<u32>,
}

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunSummary {
    /// Entries signed during the run.
    pub entries: u64,
    /// Segments signed during the run.
    pub segments: u64,
    /// Frames dropped by the capture (0 unless the device was overwhelmed).
    pub frames_dropped: u64,
    /// Segments the capture had to hold back because the writer was busy.
    pub segments_backlogged: u64,
    /// Whether the previous run had crashed.
    pub recovered_from_crash: bool,
    /// Segments salvaged at start.
    pub salvaged: usize,
}

enum Input {
    Segment(CapturedSegment),
    CaptureEnded(CaptureSummary),
    Request(Request, Sender<Response>),
}

/// A running capture: the handle (shared so mute works while the bridge owns
/// the stop), and the bridge thread that forwards its segments in order.
struct Session {
    handle: Arc<Mutex<Option<CaptureHandle>>>,
    stop: Arc<AtomicBool>,
    stats: Arc<CaptureStats>,
    bridge: Option<JoinHandle<()>>,
}

impl Session {
    fn start(
        cfg: &CaptureConfig,
        synthetic: bool,
        inputs: SyncSender<Input>,
    ) -> Result<Session, crate::capture::CaptureError> {
        // Two segments of slack: the writer is normally milliseconds behind.
        let (tx, rx) = mpsc::sync_channel::<CapturedSegment>(2);
        let handle = if synthetic {
            let mut c = SyntheticCapture::new(
                cfg.max_media_secs
                    .map(|s| u64::from(s / cfg.segment_secs.max(1)).max(1)),
            );
            c.config = cfg.clone();
            c.start(tx)?
        } else {
            FfmpegCapture::new(cfg.clone()).start(tx)?
        };
        let stats = handle.stats();
        let handle = Arc::new(Mutex::new(Some(handle)));
        let stop = Arc::new(AtomicBool::new(false));
        let (h2, s2) = (Arc::clone(&handle), Arc::clone(&stop));
        let bridge = std::thread::Builder::new()
            .name("capture-bridge".into())
            .spawn(move || bridge(rx, h2, s2, inputs))
            .expect("spawn bridge thread");
        Ok(Session {
            handle,
            stop,
            stats,
            bridge: Some(bridge),
        })
    }

    fn set_muted(&self, muted: bool) {
        if let Some(h) = self.handle.lock().expect("capture handle lock").as_ref() {
            h.set_muted(muted);
        }
    }

    fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.request_stop();
        if let Some(b) = self.bridge.take() {
            let _ = b.join();
        }
    }
}

/// Forward segments from the capture to the writer in order; on a stop
/// request, stop the capture and forward what it still had, then report its end.
fn bridge(
    rx: Receiver<CapturedSegment>,
    handle: Arc<Mutex<Option<CaptureHandle>>>,
    stop: Arc<AtomicBool>,
    inputs: SyncSender<Input>,
) {
    let mut stopped: Option<CaptureSummary> = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(seg) => {
                if inputs.send(Input::Segment(seg)).is_err() {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let finished = handle
            .lock()
            .expect("capture handle lock")
            .as_ref()
            .is_none_or(CaptureHandle::is_finished);
        if stopped.is_none() && (stop.load(Ordering::Relaxed) || finished) {
            let h = handle.lock().expect("capture handle lock").take();
            stopped = h.map(CaptureHandle::stop);
        }
    }
    let mut summary = match stopped {
        Some(s) => s,
        None => match handle.lock().expect("capture handle lock").take() {
            Some(h) => h.stop(),
            None => return,
        },
    };
    // The channel's segments came first (forwarded above); then the backlog.
    for seg in std::mem::take(&mut summary.undelivered) {
        if inputs.send(Input::Segment(seg)).is_err() {
            return;
        }
    }
    let _ = inputs.send(Input::CaptureEnded(summary));
}

/// Options a [`Writer`] is built with.
struct Writer<'a> {
    signer: &'a SigningKey,
    clock: &'a dyn Clock,
    spool: Spool,
    index: Index,
    recorder: Recorder,
    capture_cfg: CaptureConfig,
    synthetic: bool,
    inputs: SyncSender<Input>,
    session: Option<Session>,
    limit_bytes: u64,
    low_bytes: u64,
    low_signed: bool,
    storage_blocked: bool,
    last_stats: CaptureStatsSnapshot,
    clock_offset_us: i64,
    store: Arc<crate::syncstore::FsSyncStore>,
    sync_enabled: bool,
    keep_after_ack_us: i64,
    release_checked: Option<std::time::Instant>,
    battery_root: std::path::PathBuf,
    battery_checked: Option<std::time::Instant>,
    battery_warned: bool,
    battery_critical: bool,
    summary: RunSummary,
}

/// The event to sign, and the new wall−monotonic offset, when the wall clock
/// moved against the monotonic clock by more than [`CLOCK_JUMP_US`] since the
/// offset was last taken.
fn clock_jump(offset_us: i64, wall_us: i64, mono_us: i64) -> Option<(Event, i64)> {
    let now_offset = wall_us - mono_us;
    ((now_offset - offset_us).abs() > CLOCK_JUMP_US).then(|| {
        (
            Event::ClockAdjusted {
                old_wall_us: offset_us + mono_us,
                new_wall_us: wall_us,
            },
            now_offset,
        )
    })
}

/// How often acknowledged media is checked against the keep period: deleting
/// is never urgent, and each check walks the acknowledgement list.
const RELEASE_POLL: Duration = Duration::from_secs(10);

/// Battery levels, in percent: a warning is signed at `LOW`, and at
/// `CRITICAL` the recording is closed while there is still power to sign the
/// stop (a body camera at 3 % has a minute or two left). Re-armed above `LOW + 5`.
const BATTERY_LOW: u8 = 15;
const BATTERY_CRITICAL: u8 = 3;
/// Reading a sysfs file every 5 s costs nothing and is quick enough for a
/// battery that drains over hours.
const BATTERY_POLL: Duration = Duration::from_secs(5);

/// The charge of the first battery under `root` (Linux `power_supply` class):
/// `None` on mains-only machines.
pub fn battery_percent(root: &Path) -> Option<u8> {
    let mut dirs: Vec<_> = std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .collect();
    dirs.sort_by_key(std::fs::DirEntry::file_name);
    dirs.into_iter().find_map(|d| {
        let kind = std::fs::read_to_string(d.path().join("type")).ok()?;
        if kind.trim() != "Battery" {
            return None;
        }
        let cap: u32 = std::fs::read_to_string(d.path().join("capacity"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        u8::try_from(cap.min(100)).ok()
    })
}

/// A wall clock that disagrees with the monotonic clock by more than this has
/// been set: sign a clock-adjusted event. 2 s is far above NTP slew and
/// scheduling noise, far below any change that matters to a timeline.
const CLOCK_JUMP_US: i64 = 2_000_000;

impl Writer<'_> {
    fn execute(&mut self, actions: Vec<Action>) -> anyhow::Result<()> {
        for a in actions {
            match a {
                Action::Event(e) => self.event(e)?,
                Action::Segment(plan) => self.segment(plan)?,
                Action::StartCapture => {
                    match Session::start(&self.capture_cfg, self.synthetic, self.inputs.clone()) {
                        Ok(s) => {
                            self.last_stats = s.stats.snapshot();
                            self.session = Some(s);
                        }
                        Err(err) => {
                            tracing::error!(error = %err, "the camera could not start");
                            let more = self.recorder.capture_ended(StopReason::Error);
                            self.execute(more)?;
                            anyhow::bail!("the camera could not start: {err}");
                        }
                    }
                }
                Action::StopCapture => {
                    if let Some(s) = &self.session {
                        s.request_stop();
                    }
                }
                Action::SetMuted(m) => {
                    if let Some(s) = &self.session {
                        s.set_muted(m);
                    }
                }
            }
        }
        Ok(())
    }

    /// Sign an event, after a clock-adjusted event if the wall clock jumped
    /// since the last check: an entry must never carry a jumped wall time
    /// ahead of the event that explains it (the fault suite caught entries
    /// signed between a jump and the loop's next clock check).
    fn event(&mut self, e: Event) -> anyhow::Result<()> {
        self.check_clock()?;
        self.sign_event(e)
    }

    fn sign_event(&mut self, e: Event) -> anyhow::Result<()> {
        let name = e.name();
        let entry = self.spool.append_event(self.signer, self.clock, e)?;
        self.index.add(&entry, self.spool.log_len())?;
        // Hash-first: the sync client sends the entry as soon as it is durable.
        self.store.refresh()?;
        self.summary.entries += 1;
        tracing::info!(seq = entry.seq(), event = name, "signed");
        Ok(())
    }

    fn segment(&mut self, plan: SegmentPlan) -> anyhow::Result<()> {
        self.check_clock()?;
        let len = plan.segment.bytes.len() as u64;
        let used = self.spool.used_bytes();
        if used + len > self.limit_bytes {
            tracing::error!(
                used,
                limit = self.limit_bytes,
                "storage full: recording stops"
            );
            let actions = self.recorder.storage_full(used, self.limit_bytes);
            return self.execute(actions);
        }
        let s = &plan.segment;
        let draft = SegmentDraft {
            recording: plan.recording,
            part: plan.part,
            start_pts: s.start_pts,
            end_pts: s.end_pts,
            start_mono_us: self.clock.mono_of(s.start_mono),
            video_frames: s.video_frames,
            audio_samples: s.audio_samples,
            // The entry's own type, converted with checks when the capture
            // started (CaptureConfig::codec_params): nothing to clamp here.
            codec: s.codec.clone(),
            flags: plan.flags,
            case: plan.case,
            activity: plan.activity,
        };
        let entry =
            match self
                .spool
                .append_segment(self.signer, self.clock, draft, &plan.segment.bytes)
            {
                Ok(e) => e,
                // The disk filled before the configured limit: the same
                // signed stop as at the limit, if the chain log still takes
                // the event (else the error ends the run and the next start
                // signs the gap). The torn segment stays in .partial/ and is
                // salvaged, signed as recovered, at the next start.
                Err(SpoolError::Io { path, source })
                    if source.kind() == std::io::ErrorKind::StorageFull =>
                {
                    tracing::error!(path = %path.display(), "the disk is full: recording stops");
                    let used = self.spool.used_bytes();
                    let actions = self.recorder.storage_full(used, used);
                    return self.execute(actions);
                }
                Err(e) => return Err(e.into()),
            };
        self.index.add(&entry, self.spool.log_len())?;
        self.store.refresh()?;
        self.summary.entries += 1;
        self.summary.segments += 1;
        tracing::debug!(seq = entry.seq(), bytes = len, "segment recorded");
        let used = self.spool.used_bytes();
        // Low: past the configured share, or no room left for two more
        // segments like this one, whichever comes first, so the warning always
        // precedes the stop.
        let nearly_full = self.limit_bytes.saturating_sub(used) < 2 * len;
        if !self.low_signed && (used >= self.low_bytes || nearly_full) {
            self.low_signed = true;
            self.event(Event::StorageLow {
                used_bytes: used,
                limit_bytes: self.limit_bytes,
            })?;
        }
        self.check_capture_stats()
    }

    /// Sign a capture-backlog event when the capture had to hold segments back
    /// or drop frames since the last look.
    fn check_capture_stats(&mut self) -> anyhow::Result<()> {
        let Some(s) = &self.session else {
            return Ok(());
        };
        let now = s.stats.snapshot();
        let more_backlog = now.segments_backlogged > self.last_stats.segments_backlogged;
        let more_drops = now.frames_dropped > self.last_stats.frames_dropped
            || now.segments_dropped > self.last_stats.segments_dropped;
        if more_backlog || more_drops {
            self.event(Event::CaptureBacklog {
                pending_segments: u32::try_from(now.backlog_high_water).unwrap_or(u32::MAX),
                dropped_frames: now.frames_dropped,
            })?;
        }
        self.last_stats = now;
        Ok(())
    }

    /// Sign a clock-adjusted event when the wall clock moved against the
    /// monotonic clock.
    fn check_clock(&mut self) -> anyhow::Result<()> {
        let wall = self.clock.wall_us();
        let mono = i64::try_from(self.clock.mono_us()).unwrap_or(i64::MAX);
        if let Some((event, offset)) = clock_jump(self.clock_offset_us, wall, mono) {
            self.clock_offset_us = offset;
            self.sign_event(event)?;
        }
        Ok(())
    }

    /// Sign battery warnings, and close the recording when the battery is
    /// about to die.
    fn check_battery(&mut self) -> anyhow::Result<()> {
        if self
            .battery_checked
            .is_some_and(|t| t.elapsed() < BATTERY_POLL)
        {
            return Ok(());
        }
        self.battery_checked = Some(std::time::Instant::now());
        let Some(percent) = battery_percent(&self.battery_root) else {
            return Ok(());
        };
        if percent <= BATTERY_CRITICAL && !self.battery_critical {
            self.battery_critical = true;
            self.battery_warned = true;
            tracing::error!(percent, "battery critical: closing the recording");
            let actions = self.recorder.battery_critical(percent);
            return self.execute(actions);
        }
        if percent > BATTERY_CRITICAL {
            self.battery_critical = false;
        }
        if percent <= BATTERY_LOW && !self.battery_warned {
            self.battery_warned = true;
            self.event(Event::BatteryLow { percent })?;
        } else if percent > BATTERY_LOW + 5 {
            self.battery_warned = false;
        }
        Ok(())
    }

    /// Delete media the server acknowledged more than the keep period ago.
    fn release_acknowledged(&mut self) -> anyhow::Result<()> {
        if self
            .release_checked
            .is_some_and(|t| t.elapsed() < RELEASE_POLL)
        {
            return Ok(());
        }
        self.release_checked = Some(std::time::Instant::now());
        let due = self.store.releasable(
            self.clock.wall_us(),
            self.keep_after_ack_us,
            self.spool.released(),
        );
        for seq in due {
            self.spool.release_media(seq)?;
            tracing::debug!(seq, "media released after the server's acknowledgement");
        }
        if self.storage_blocked && self.spool.used_bytes() < self.low_bytes {
            // The server took the backlog: recording may start again, and the
            // next approach to the limit is warned about again.
            self.recorder.storage_available();
            self.storage_blocked = false;
            self.low_signed = false;
        }
        Ok(())
    }

    fn status(&self) -> serde_json::Value {
        let head = self.spool.head();
        let (no_receipt, not_acked) = self.store.backlog();
        let stats = self.session.as_ref().map(|s| s.stats.snapshot());
        serde_json::json!({
            "running": true,
            "state": self.recorder.state_name(),
            "device": self.signer.device_id().to_string(),
            "next_seq": head.next_seq,
            "head_hash": hex::encode(head.last_hash),
            "boot": self.spool.boot(),
            "spool_bytes": self.spool.used_bytes(),
            "limit_bytes": self.limit_bytes,
            "pre_event_seconds": self.recorder.prebuffer_seconds(),
            "camera_on": self.session.is_some(),
            "frames_captured": stats.map(|s| s.frames_captured),
            "frames_dropped": stats.map(|s| s.frames_dropped),
            "entries_this_run": self.summary.entries,
            "entries_without_receipt": no_receipt,
            "segments_not_acknowledged": not_acked,
            "sync": if self.sync_enabled { "enabled" } else { "not enrolled" },
        })
    }

    fn handle_request(&mut self, req: Request) -> Response {
        let cmd = match req {
            Request::Status => {
                let mut r = Response::ok(self.recorder.state_name());
                r.data = Some(self.status());
                return r;
            }
            Request::Start { case, activity } => Command::Start { case, activity },
            Request::Stop => Command::Stop,
            Request::Tag { case, activity } => Command::Tag { case, activity },
            Request::IdentityShown { officer } => Command::IdentityShown { officer },
            Request::Mute => Command::Mute,
            Request::Unmute => Command::Unmute,
        };
        let mut id = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut id);
        match self.recorder.handle_command(cmd, id) {
            Ok(actions) => match self.execute(actions) {
                Ok(()) => Response::ok(self.recorder.state_name()),
                Err(e) => Response::err(format!("{e:#}")),
            },
            Err(e) => Response::err(e.to_string()),
        }
    }
}

/// Run the recorder in `dir` until `shutdown` is set (or, with
/// `duration_secs`, until that much has been recorded).
///
/// # Errors
/// The data folder cannot be opened, the key is missing, the spool is damaged,
/// or writing evidence failed (the run stops rather than go on without
/// keeping what it records).
pub fn run(dir: &Path, opts: &RunOptions, shutdown: Arc<AtomicBool>) -> anyhow::Result<RunSummary> {
    let cfg = AgentConfig::load(dir)?;
    let signer = crate::keyfile::load(dir)?;
    let clock = SystemClock::new();
    let synthetic = opts.source.as_deref() == Some("synthetic");
    let mut capture_cfg = cfg.capture_config(if synthetic {
        None
    } else {
        opts.source.as_deref()
    })?;
    if opts.fast {
        capture_cfg.pacing = Pacing::AsFastAsPossible;
    }
    capture_cfg.max_media_secs = opts.duration_secs;
    // `record` records exactly its duration: no pre-event buffer unless asked.
    let pre_event = opts
        .pre_event_secs
        .unwrap_or(if opts.duration_secs.is_some() {
            0
        } else {
            cfg.capture.pre_event_seconds
        });

    let listener = control::bind(dir)?;
    let (spool, open) = Spool::open(dir, &signer, &clock)?;
    let index = Index::open(dir)?;
    index.catch_up(dir)?;
    if open.crashed {
        tracing::warn!(
            salvaged = open.salvaged.len(),
            "recovered from a crash or power loss"
        );
    }

    let store = Arc::new(crate::syncstore::FsSyncStore::open(dir)?);
    let sync = SyncThread::start(dir, Arc::clone(&store));

    let (tx, rx) = mpsc::sync_channel::<Input>(8);
    spawn_control(listener, tx.clone(), Arc::clone(&shutdown));

    let limit = cfg.storage.limit_bytes;
    let mut w = Writer {
        signer: &signer,
        clock: &clock,
        spool,
        index,
        recorder: Recorder::new(pre_event),
        capture_cfg,
        synthetic,
        inputs: tx,
        session: None,
        limit_bytes: limit,
        low_bytes: limit / 100 * u64::from(cfg.storage.low_percent),
        low_signed: false,
        storage_blocked: false,
        last_stats: CaptureStatsSnapshot::default(),
        clock_offset_us: clock.wall_us() - i64::try_from(clock.mono_us()).unwrap_or(0),
        store: Arc::clone(&store),
        sync_enabled: sync.is_some(),
        keep_after_ack_us: i64::try_from(cfg.storage.keep_after_ack_seconds)
            .unwrap_or(i64::MAX / 1_000_000)
            .saturating_mul(1_000_000),
        release_checked: None,
        // Tests point this at a fake power_supply folder.
        battery_root: std::env::var_os("FIELDSEAL_POWER_SUPPLY_DIR")
            .map_or_else(|| "/sys/class/power_supply".into(), Into::into),
        battery_checked: None,
        battery_warned: false,
        battery_critical: false,
        summary: RunSummary {
            recovered_from_crash: open.crashed,
            salvaged: open.salvaged.len(),
            ..RunSummary::default()
        },
    };
    w.event(Event::AgentStarted {
        software: format!("fieldseal-agent {}", env!("CARGO_PKG_VERSION")),
    })?;
    let first = w.recorder.on_start();
    w.execute(first)?;
    if let Some((case, activity)) = opts.start.clone() {
        let mut id = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut id);
        let actions = w
            .recorder
            .handle_command(Command::Start { case, activity }, id)?;
        w.execute(actions)?;
        if opts.duration_secs.is_some() {
            w.recorder.end_with(StopReason::User);
        }
    }

    let mut shutting_down = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Input::Segment(seg)) => {
                let actions = w.recorder.handle_segment(seg);
                w.execute(actions)?;
            }
            Ok(Input::CaptureEnded(summary)) => {
                w.summary.frames_dropped += summary.stats.frames_dropped;
                w.summary.segments_backlogged += summary.stats.segments_backlogged;
                let reason = if summary.error.is_some() {
                    StopReason::Error
                } else if shutting_down {
                    StopReason::Shutdown
                } else {
                    StopReason::User
                };
                if let Some(e) = &summary.error {
                    tracing::error!(error = %e, "the camera stopped with an error");
                }
                w.check_capture_stats()?;
                w.session = None;
                let actions = w.recorder.capture_ended(reason);
                w.execute(actions)?;
                if opts.duration_secs.is_some() {
                    break;
                }
            }
            Ok(Input::Request(req, reply)) => {
                let resp = w.handle_request(req);
                let _ = reply.send(resp);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        w.check_clock()?;
        w.check_battery()?;
        w.release_acknowledged()?;
        if shutdown.load(Ordering::Relaxed) && !shutting_down {
            shutting_down = true;
            tracing::info!("shutting down: finishing the segment in progress");
            let actions = w.recorder.shutdown();
            w.execute(actions)?;
        }
        if shutting_down && w.session.is_none() && !w.recorder.is_recording() {
            break;
        }
    }
    drop(w.session.take());
    let summary = w.summary.clone();
    w.spool.close()?;
    if let Some(sync) = sync {
        // Give the last entries (the stop event) a moment to reach the server
        // hash-first; what does not make it goes with the next run or `sync`.
        sync.finish(&store, Duration::from_secs(5));
    }
    let _ = std::fs::remove_file(control::socket_path(dir));
    Ok(summary)
}

/// The sync client, on its own thread with a small tokio runtime, so that the
/// network never touches the capture or the chain writer.
struct SyncThread {
    stop: tokio::sync::watch::Sender<bool>,
    thread: JoinHandle<()>,
}

impl SyncThread {
    /// Start syncing if the device is enrolled (`DIR/server.txt` exists).
    fn start(dir: &Path, store: Arc<crate::syncstore::FsSyncStore>) -> Option<SyncThread> {
        if !dir.join("server.txt").exists() {
            return None;
        }
        let cfg = match crate::sync::SyncConfig::from_data_dir(dir) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "sync is not configured correctly; recording goes on without it");
                return None;
            }
        };
        let (stop, rx) = tokio::sync::watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("sync".into())
            .spawn(move || {
                // One worker: uploads must not take CPU from the encoder.
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "no runtime for sync");
                        return;
                    }
                };
                let progress = Arc::new(crate::sync::driver::Progress::default());
                if let Err(e) = rt.block_on(crate::sync::driver::run_sync(store, cfg, progress, rx))
                {
                    tracing::error!(error = %e, "sync stopped");
                }
            })
            .expect("spawn sync thread");
        Some(SyncThread { stop, thread })
    }

    fn finish(self, store: &crate::syncstore::FsSyncStore, grace: Duration) {
        let deadline = std::time::Instant::now() + grace;
        while store.backlog().0 > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.stop.send(true);
        let _ = self.thread.join();
    }
}

fn spawn_control(
    listener: std::os::unix::net::UnixListener,
    tx: SyncSender<Input>,
    shutdown: Arc<AtomicBool>,
) {
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                if shutdown.load(Ordering::Relaxed) {
                    // Requests after a shutdown began are refused, not queued.
                    if let Ok(s) = stream {
                        let _ = control::write_response(
                            &s,
                            &Response::err("the agent is shutting down"),
                        );
                    }
                    continue;
                }
                let Ok(stream) = stream else { continue };
                let resp = match control::read_request(&stream) {
                    Ok(req) => {
                        let (rtx, rrx) = mpsc::channel();
                        if tx.send(Input::Request(req, rtx)).is_err() {
                            return;
                        }
                        rrx.recv()
                            .unwrap_or_else(|_| Response::err("the agent stopped"))
                    }
                    // The OS error alone, as before the typed error: the
                    // client already knows it is talking to the socket.
                    Err(control::ControlError::Io(e)) => Response::err(e.to_string()),
                    Err(e) => Response::err(e.to_string()),
                };
                let _ = control::write_response(&stream, &resp);
            }
        })
        .expect("spawn control thread");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_jumps_past_the_threshold_are_events_and_drift_is_not() {
        let offset = 1_000_000_000;
        // 1 s of drift: NTP slewing, not an adjustment.
        assert!(clock_jump(offset, offset + 50_000_000 + 1_000_000, 50_000_000).is_none());
        // Set back by an hour.
        let (ev, new) =
            clock_jump(offset, offset + 50_000_000 - 3_600_000_000, 50_000_000).unwrap();
        assert_eq!(
            ev,
            Event::ClockAdjusted {
                old_wall_us: offset + 50_000_000,
                new_wall_us: offset + 50_000_000 - 3_600_000_000
            }
        );
        assert_eq!(new, offset - 3_600_000_000);
        // Forward by 3 s.
        assert!(clock_jump(offset, offset + 10 + 3_000_000, 10).is_some());
    }

    #[test]
    fn battery_is_read_from_the_power_supply_class() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(battery_percent(t.path()), None);
        std::fs::create_dir_all(t.path().join("AC")).unwrap();
        std::fs::write(t.path().join("AC/type"), "Mains\n").unwrap();
        assert_eq!(battery_percent(t.path()), None);
        std::fs::create_dir_all(t.path().join("BAT0")).unwrap();
        std::fs::write(t.path().join("BAT0/type"), "Battery\n").unwrap();
        std::fs::write(t.path().join("BAT0/capacity"), "42\n").unwrap();
        assert_eq!(battery_percent(t.path()), Some(42));
    }
}
