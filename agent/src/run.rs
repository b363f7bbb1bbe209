//! The long-running recorder: the thin driver around [`Recorder`], [`Spool`]
//! and the [`crate::policy`] decisions.
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
//!
//! - `session`: a running capture and the bridge thread that forwards its segments;
//! - `writer`: the chain writer, which gathers readings (spool use, battery,
//!   clocks) for [`crate::policy`] and carries out its and the recorder's actions;
//! - `threads`: the sync client's thread and the control socket's listener;
//! - [`battery_percent`]: the battery reading from sysfs.

mod battery;
mod session;
mod threads;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use fieldseal_proto::entry::{Event, StopReason};
use rand_core::RngCore;

pub use self::battery::battery_percent;
use self::session::Input;
use self::threads::{spawn_control, Syncing};
use self::writer::Writer;
use crate::capture::{CaptureError, CaptureStatsSnapshot, Pacing};
use crate::clock::{Clock, SystemClock};
use crate::config::{AgentConfig, ConfigError};
use crate::control;
use crate::devicekey::{self, pin::PinSource, StoreError};
use crate::index::{Index, IndexError};
use crate::policy::Policy;
use crate::recorder::{Command, CommandError, Recorder};
use crate::spool::{Spool, SpoolError};

/// Why a run stopped with an error. Each variant shows the underlying
/// error's text, as the run's messages read before the errors were typed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The settings file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The device key: the file, or the token and its PIN.
    #[error(transparent)]
    Key(#[from] StoreError),
    /// The capture settings.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The camera did not start (the recording was closed with a signed stop).
    #[error("the camera could not start: {0}")]
    CameraStart(CaptureError),
    /// The data folder, the key or the index is open to other users.
    #[error(transparent)]
    NotPrivate(#[from] crate::fsutil::NotPrivate),
    /// The control socket could not be bound (another agent runs there).
    #[error(transparent)]
    Control(std::io::Error),
    /// Writing evidence failed: the run stops rather than go on without
    /// keeping what it records.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The index.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The sync store could not read the chain log.
    #[error(transparent)]
    SyncStore(std::io::Error),
    /// A start command given on the command line was refused.
    #[error(transparent)]
    Command(#[from] CommandError),
}

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
    /// Where the PIN of a device key in a token comes from, overriding
    /// `config.toml`'s `pin_file` (`--pin -`, `--pin-file`).
    pub pin: Option<PinSource>,
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

/// Run the recorder in `dir` until `shutdown` is set (or, with
/// `duration_secs`, until that much has been recorded).
///
/// # Errors
/// The data folder cannot be opened, the key is missing, the spool is damaged,
/// or writing evidence failed (the run stops rather than go on without
/// keeping what it records).
pub fn run(
    dir: &Path,
    opts: &RunOptions,
    shutdown: Arc<AtomicBool>,
) -> Result<RunSummary, RunError> {
    let cfg = AgentConfig::load(dir)?;
    // The one signer of this run: the chain writer signs entries with it,
    // and the sync thread its TLS handshakes (one token session for both).
    let signer = devicekey::open(dir, &cfg.key, opts.pin.as_ref())?;
    let (key, index) = (dir.join(crate::keyfile::KEY_FILE), dir.join("index"));
    crate::fsutil::check_private([dir, key.as_path(), index.as_path()])?;
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
    if let Some(pts) = crate::fault::first_pts() {
        capture_cfg.first_pts = pts;
    }
    capture_cfg.live = Some(crate::capture::LiveSpill::new(
        &dir.join("media/.partial"),
        cfg.capture.durable_every_ms,
    ));
    // `record` records exactly its duration: no pre-event buffer unless asked.
    let pre_event = opts
        .pre_event_secs
        .unwrap_or(if opts.duration_secs.is_some() {
            0
        } else {
            cfg.capture.pre_event_seconds
        });

    let listener = control::bind(dir).map_err(RunError::Control)?;
    // The index (a cache) is opened, and repaired if a power cut damaged it,
    // before the spool opens: the spool signs the power-loss event, and an
    // error after that would leave the crash marker for the next start to
    // sign the same cut again.
    let (index, _) = Index::open_repairing(dir)?;
    let (spool, open) = Spool::open(dir, &signer, &clock)?;
    let index = index.catch_up_or_repair(dir)?;
    if open.crashed {
        tracing::warn!(
            salvaged = open.salvaged.len(),
            "recovered from a crash or power loss"
        );
    }

    let store = Arc::new(crate::syncstore::FsSyncStore::open(dir).map_err(RunError::SyncStore)?);
    let mut sync = Syncing::start(dir, signer.clone(), &store);

    let (tx, rx) = mpsc::sync_channel::<Input>(8);
    spawn_control(listener, tx.clone(), Arc::clone(&shutdown));

    // Before the first entry, so that it states whether gpsd answers.
    let gps = cfg.gps.start();

    let limit = cfg.storage.limit_bytes;
    let mut w = Writer {
        signer: &signer,
        clock: &clock,
        spool,
        index: Some(index),
        recorder: Recorder::new(pre_event),
        policy: Policy::new(
            limit,
            limit / 100 * u64::from(cfg.storage.low_percent),
            clock.wall_us() - i64::try_from(clock.mono_us()).unwrap_or(0),
        ),
        capture_cfg,
        synthetic,
        inputs: tx,
        session: None,
        last_stats: CaptureStatsSnapshot::default(),
        store: Arc::clone(&store),
        sync_enabled: sync.enabled(),
        sync_progress: sync.enabled().then(|| sync.progress()),
        keep_after_ack_us: cfg.storage.keep_after_ack_seconds.saturating_mul(1_000_000),
        release_checked: None,
        // Tests point this at a fake power_supply folder.
        battery_root: std::env::var_os("FIELDSEAL_POWER_SUPPLY_DIR")
            .map_or_else(|| "/sys/class/power_supply".into(), Into::into),
        battery_checked: None,
        gps,
        seen_index: None,
        summary: RunSummary {
            recovered_from_crash: open.crashed,
            salvaged: open.salvaged.len(),
            ..RunSummary::default()
        },
    };
    w.event(Event::AgentStarted {
        software: format!("fieldseal-agent {}", env!("CARGO_PKG_VERSION")),
    })?;
    w.check_gps()?;
    let first = w.recorder.on_start();
    w.execute(first)?;
    if let Some((case, activity)) = opts.start.clone() {
        let mut id = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut id);
        let actions = w
            .recorder
            .handle_command(Command::Start { case, activity }, id)?;
        w.execute(actions)?;
        w.arm_live();
        if opts.duration_secs.is_some() {
            w.recorder.end_with(StopReason::User);
        }
    }

    let mut shutting_down = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Input::Segment(seg)) => {
                w.seen_index = Some(seg.index);
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
        w.arm_live();
        w.check_clock()?;
        w.check_gps()?;
        w.check_battery()?;
        w.release_acknowledged()?;
        sync.poll(dir, &store);
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
    // Give the last entries (the stop event) a moment to reach the server
    // hash-first; what does not make it goes with the next run or `sync`.
    sync.finish(&store, Duration::from_secs(5));
    let _ = std::fs::remove_file(control::socket_path(dir));
    Ok(summary)
}
